"""Watching a study: the live view's rows, counts and ETA on hand-made events, and the tiny study on a terminal (a
pty) with none of the libraries' chatter on the screen and each trial's lines in its own log file."""

import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from study.record.folder import DRIVER_LOG, LOGS, train_run, trial_log
from study.search.watch import StudyView, live_wanted
from tests.conftest import TIMEOUT, tiny_space

OBJECTIVES = [{"metric": "bias/amplification", "mode": "min"}, {"metric": "world/score", "mode": "max"}]


def test_the_view_counts_the_trials_and_estimates_from_measured_times(tmp_path):
    view = StudyView("s", str(tmp_path), OBJECTIVES, total=5, concurrent=2)
    view.started("a", "mode=cda")
    view.started("b", "mode=none")
    view.ended("a", "done", {"bias/amplification": 0.1234, "world/score": 55.5})
    view.ended("b", "failed")
    view.trials["a"]["seconds"] = 100.0  # as measured: 100 s for the one finished trial
    view.started("c", "mode=mixup")
    assert view.eta() == pytest.approx(100.0 * 3 / 2)  # 3 trials left (c among them), 2 at a time
    c_log, d_log = trial_log(tmp_path, train_run("c")), trial_log(tmp_path, train_run("d"))
    c_log.parent.mkdir()
    # as the trial's file handler writes them (study.runtime.setup_worker_logging): a timestamp, then the line
    c_log.write_text(f"2026-12-02 01:51:01,840 [{train_run('c')}] step 2/6 loss 3.1, eta 4s\n")
    view.started("d", "mode=none")
    d_log.write_text(f"2026-12-02 02:02:17,587 [{train_run('d')}] evaluating: 4 jobs\n"
                     "2026-12-02 02:02:17,590   world/world_sts: 77.73\n")
    console = Console(width=160, record=True)
    console.print(view.render())
    text = console.export_text()
    assert "1/5 done, 2 running, 1 failed" in text and "about 150s left" in text
    assert "0.1234" in text and "55.5" in text and "step 2/6 loss 3.1 " in text and "eta" not in text
    assert "world/world_sts: 77.73" in text and "2026" not in text and f"[{train_run('c')}]" not in text
    assert c_log.name in text and f"logs in {tmp_path / LOGS}" in text


def test_no_live_view_off_a_terminal_or_with_verbose(monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not live_wanted(0)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert live_wanted(0) and not live_wanted(1)


CHATTER = ["Ray deduplicates logs", "A new study created", "Creating initial MLflow database",
           "Configuration for experiment", "RayTrainWorker pid", "(raylet)", "tensorboard", "repeated"]


@pytest.mark.slow
@pytest.mark.usefixtures("no_ray_left_behind")
def test_the_tiny_study_on_a_terminal_shows_no_library_chatter(tiny_world, tmp_path):
    raw = tiny_space(num_samples=2, max_concurrent_trials="auto")  # as smoke.yaml: the view counts the cores
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(raw))
    env = {**{k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"},  # the study's own SQLite store
           "RAY_AUTH_MODE": "disabled", "COLUMNS": "160", "LINES": "50",
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    leader, follower = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "run", str(tmp_path / "space.yaml"), "--study-dir",
                             str(tmp_path / "study")], stdin=follower, stdout=follower, stderr=follower, env=env,
                            start_new_session=True)
    os.close(follower)
    screen = b""
    while True:  # read the terminal until the driver ends
        ready, _, _ = select.select([leader], [], [], TIMEOUT)
        if not ready:
            proc.kill()
            raise AssertionError(f"no output for {TIMEOUT}s: {screen[-2000:]!r}")
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the driver closed the terminal
            break
        if not chunk:
            break
        screen += chunk
    assert proc.wait(timeout=60) == 0, screen[-3000:]
    text = screen.decode(errors="replace")
    assert [c for c in CHATTER if c in text] == []
    # kdstudy's own lines go above the view, through its console: none is written onto the view's last line (which
    # would push the view down a line, leaving a stale copy of its top on the screen)
    footers = list(re.finditer(r"logs in \S*logs", text))
    assert footers and not [m for m in footers if re.sub(r"\x1b\[[0-9;]*m", "", text[m.end():m.end() + 40])
                            .startswith("[")]
    assert "tiny-study: Pareto front" in text and "trial" in text and "2/2 done" in text
    logs = sorted((tmp_path / "study" / LOGS).glob(trial_log("", train_run("*")).name))
    assert len(logs) == 2 and all("step 6/6" in p.read_text() for p in logs)
    assert "study" in (tmp_path / "study" / LOGS / DRIVER_LOG).read_text().lower()
