"""Faults a real cluster has, each on real parts: Ctrl-C on a running study, the tracking server down mid-study, a
Ray node lost mid-trial. The study driver runs as its own process in its own session (as in test_search_resume), so
the test can signal it and find every process it started."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import pytest
import ray
import yaml

from study.config import parse_config
from study.search import run_study
from tests.test_search import OBJECTIVES, tiny_space
from tests.test_search_resume import TIMEOUT, _children, _kill_session, _wait

pytestmark = pytest.mark.slow  # real Ray clusters, real signals, a real mlflow server


@pytest.fixture(autouse=True)
def no_ray_left_behind():
    yield
    ray.shutdown()


def _driver(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "study.cli", *argv], stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})})


def _session_processes(sid: int) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["pid"]):
        try:
            if os.getsid(p.pid) == sid:
                found.append(p)
        except (ProcessLookupError, psutil.Error, PermissionError):
            pass
    return found


def _ray_processes_of(sid: int) -> list[str]:
    names = []
    for p in _session_processes(sid):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "ray" in cmd.lower():
            names.append(cmd[:120])
    return names


def _space(root: Path, **search) -> Path:
    raw = tiny_space(**search)
    raw["distill"].update({"steps": 300, "checkpoint_every": 20, "log_every": 20})
    path = root / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_ctrl_c_stops_the_study_cleanly_and_resume_finishes_it(tiny_world, tmp_path, capfd):
    space, study_dir, log = _space(tmp_path, num_samples=1), tmp_path / "study", tmp_path / "driver.log"
    proc = _driver(["run", str(space), "--study-dir", str(study_dir)], log)
    try:
        _wait(lambda: "step 20/300" in log.read_text(), "the trial's first progress line", proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground process group
        assert proc.wait(timeout=120) == 130
        deadline = time.monotonic() + 30  # Ray's own processes end a moment after the driver
        while _ray_processes_of(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _ray_processes_of(proc.pid) == []
    finally:
        _kill_session(proc)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    resume = f"--study-dir {study_dir} --resume"
    assert lines[-1].startswith("kdstudy run ") and lines[-1].endswith(resume), lines[-5:]
    after = log.read_text().split("stopping the study")[1]  # (before: Ray's own noise on a busy machine)
    assert "Traceback" not in after and "Error" not in after, after
    assert not (study_dir / "driver.lock").exists()

    argv = lines[-1].split()[1:]  # the printed command, as the user would paste it
    capfd.readouterr()
    assert main_exit(argv) == 0
    assert "resuming from" in capfd.readouterr().err  # the trial went on from its last checkpoint
    children = _children(study_dir)
    assert [r.info.status for r in children] == ["FINISHED"]  # one run for the one trial, not two
    assert children[0].data.metrics["distill/steps"] == 300 and set(OBJECTIVES) <= set(children[0].data.metrics)
    ot = optuna.load_study(study_name="tiny-study", storage=f"sqlite:///{study_dir}/optuna.db")
    assert [t.state.name for t in ot.trials] == ["COMPLETE"]


def main_exit(argv: list[str]) -> int:
    from study.cli import main

    return main(argv)
