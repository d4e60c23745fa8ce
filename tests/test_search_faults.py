"""Faults a real cluster has, each on real parts: Ctrl-C on a running record, the tracking server down mid-study, a
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
import yaml

from study.record import folder
from study.record.optuna_store import optuna_storage
from tests.conftest import (
    OBJECTIVES,
    SLOW_POLL,
    TIMEOUT,
    free_port,
    kill_session,
    non_dominated,
    tiny_space,
    trial_runs,
    wait_for,
)

pytestmark = [pytest.mark.slow,  # real Ray clusters, real signals, a real mlflow server
              pytest.mark.usefixtures("no_ray_left_behind")]


def _driver(argv: list[str], log: Path, env: dict | None = None) -> subprocess.Popen:
    """The driver, with -v: the workers' lines (steps, resuming) in its output, where the test watches for them."""
    return subprocess.Popen([sys.executable, "-m", "study.cli", "-v", *argv], stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})})


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
    proc = _driver(["run", str(space), "--study-dir", str(study_dir)], log, env=SLOW_POLL)  # Ctrl-C lands mid-trial
    try:
        wait_for(lambda: "step 20/300" in log.read_text(), "the trial's first progress line", proc)
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: the whole foreground process group
        assert proc.wait(timeout=120) == 130
        deadline = time.monotonic() + 30  # Ray's own processes end a moment after the driver
        while _ray_processes_of(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _ray_processes_of(proc.pid) == []
    finally:
        kill_session(proc)
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    resume = f"--study-dir {study_dir} --resume"
    assert lines[-1].startswith("kdstudy run ") and lines[-1].endswith(resume), lines[-5:]
    after = log.read_text().split("stopping the study")[1]  # (before: Ray's own noise on a busy machine)
    assert "Traceback" not in after and "Error" not in after, after
    assert not (study_dir / folder.LOCK).exists()

    argv = lines[-1].split()[1:]  # the printed command, as the user would paste it
    capfd.readouterr()
    assert main_exit(["-v", *argv]) == 0  # (-v: the workers' lines on the screen)
    assert "resuming from" in capfd.readouterr().err  # the trial went on from its last checkpoint
    children = trial_runs(study_dir)
    assert [r.info.status for r in children] == ["FINISHED"]  # one run for the one trial, not two
    assert children[0].data.metrics["distill/steps"] == 300 and set(OBJECTIVES) <= set(children[0].data.metrics)
    ot = optuna.load_study(study_name="tiny-study", storage=optuna_storage(study_dir))
    assert [t.state.name for t in ot.trials] == ["COMPLETE"]


def main_exit(argv: list[str]) -> int:
    from study.cli import main

    return main(argv)


def test_the_tracking_server_down_mid_study_loses_nothing(tiny_world, tmp_path, mlflow_server):
    server = mlflow_server(tmp_path / "tracking")
    raw = tiny_space(num_samples=3, max_concurrent_trials=1)
    raw["tracking"] = {"uri": server.url}
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    study_dir, log = tmp_path / "study", tmp_path / "driver.log"
    proc = _driver(["run", str(space), "--study-dir", str(study_dir)], log)
    try:
        def finished() -> int:
            return log.read_text().count(" finished: ")

        wait_for(lambda: finished() >= 1, "the first trial finished", proc)
        server.stop()
        wait_for(lambda: finished() >= 2, "the second trial finished, with the server down", proc)
        assert "wait in" in log.read_text()  # the outage was noticed, and said
        server.start()
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        kill_session(proc)
    text = log.read_text()
    assert not any(line.startswith("Traceback") for line in text.splitlines())  # (Ray's lines start "(pid=")
    warnings = [line for line in text.splitlines() if line.startswith("warning: tracking at")]
    assert len(warnings) == 1, warnings  # one line per outage, not one per event
    assert not (study_dir / folder.OUTBOX).exists()  # everything waiting was sent

    from mlflow import MlflowClient

    client = MlflowClient(server.url)
    meta = json.loads((study_dir / folder.META).read_text())
    children = [r for r in client.search_runs([meta["experiment_id"]]) if "trial_id" in r.data.tags]
    assert sorted(r.info.status for r in children) == ["FINISHED"] * 3
    assert len({r.data.tags["trial_id"] for r in children}) == 3  # exactly one run per trial
    for run in children:
        assert set(OBJECTIVES) <= set(run.data.metrics)
        assert len(client.get_metric_history(run.info.run_id, "world/score")) == 1  # logged once
    points = {r.data.tags["trial_id"]: (r.data.metrics[OBJECTIVES[0]], r.data.metrics[OBJECTIVES[1]])
              for r in children}
    assert {r.data.tags["trial_id"] for r in children if r.data.tags["pareto"] == "true"} == non_dominated(points)
    ot = optuna.load_study(study_name="tiny-study", storage=optuna_storage(study_dir))
    assert sorted(t.values for t in ot.trials) == sorted(list(p) for p in points.values())  # the same results


def _progress(text: str) -> dict[int, str]:
    """{step: loss as printed} of a trial's progress lines ("[train-...] step 40/200 loss 11.397 ...")."""
    found = {}
    for line in text.splitlines():
        if "] step " in line and " loss " in line:
            words = line.split("] step ", 1)[1].split()
            found[int(words[0].split("/")[0])] = words[2]
    return found


class LocalCluster:
    """A Ray cluster of several nodes on this machine, each node a `ray start` in a process session of its own, so
    that one node can be lost (every process of its session SIGKILLed, as a preempted VM loses them) while the others
    go on."""

    def __init__(self, root: Path):
        self.root, self.port, self.sessions = root, free_port(), {}
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", **SLOW_POLL}  # a node is lost mid-trial

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, name: str, cpus: int, resources: dict | None = None) -> None:
        where = ["--head", f"--port={self.port}", f"--dashboard-port={free_port()}"] if not self.sessions else \
            [f"--address={self.address}"]
        argv = ["ray", "start", *where, f"--num-cpus={cpus}", f"--resources={json.dumps(resources or {})}",
                "--object-store-memory=100000000", "--disable-usage-stats"]
        with (self.root / f"ray-{name}.log").open("w") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
            assert proc.wait(timeout=TIMEOUT) == 0, (self.root / f"ray-{name}.log").read_text()
        self.sessions[name] = proc.pid

    def lose(self, name: str) -> int:
        """SIGKILL every process of the node; returns how many there were."""
        victims = _session_processes(self.sessions.pop(name))
        for p in victims:
            try:
                p.kill()
            except psutil.Error:
                pass
        return len(victims)

    def stop(self) -> None:
        for name in list(self.sessions):
            self.lose(name)
        subprocess.run(["ray", "stop", "--force"], capture_output=True, env=self.env, timeout=120)


@pytest.fixture
def local_cluster(tmp_path):
    cluster = LocalCluster(tmp_path)
    yield cluster
    cluster.stop()


def _lose_a_node_mid_trial(tmp_path, cluster: LocalCluster, scaling: dict, node_cpus: int, trials: int) -> str:
    """A study of `trials` trials on `cluster` (its head and a node called "spot" started), that node lost once the
    first trial has reported two checkpoints and another node of `node_cpus` started; returns the driver's log, after
    checking the study's runs: one per trial, all finished."""
    raw = tiny_space(num_samples=trials, max_concurrent_trials=1, max_failures=2, scaling=scaling)
    raw["distill"].update({"steps": 200, "checkpoint_every": 20, "log_every": 20})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    study_dir, log = tmp_path / "study", tmp_path / "driver.log"
    proc = _driver(["run", str(space), "--study-dir", str(study_dir), "--address", cluster.address], log)
    try:
        # the progress line of step 60 comes after the checkpoints of steps 20 and 40 were reported
        wait_for(lambda: "step 60/200" in log.read_text(), "two reported checkpoints", proc)
        assert cluster.lose("spot") > 0
        cluster.start("spot-2", cpus=node_cpus)  # what the autoscaler would bring
        assert proc.wait(timeout=TIMEOUT) == 0, log.read_text()[-3000:]
    finally:
        kill_session(proc)
    children = trial_runs(study_dir)
    assert sorted(r.info.status for r in children) == ["FINISHED"] * trials  # one run per trial, all finished
    assert len({r.data.tags["trial_id"] for r in children}) == trials
    for run in children:
        assert run.data.metrics["distill/steps"] == 200 and set(OBJECTIVES) <= set(run.data.metrics)
    ot = optuna.load_study(study_name="tiny-study", storage=optuna_storage(study_dir))
    assert [t.state.name for t in ot.trials] == ["COMPLETE"] * trials
    text = log.read_text()
    assert not any(line.startswith("Traceback") for line in text.splitlines())  # (Ray's lines start "(pid=")
    return text


def _went_on_from_a_checkpoint(log: str) -> None:
    first = log.split(" finished: ", 1)[0]  # the first trial's lines
    assert "resuming from" in first  # the new node's worker loaded the last reported checkpoint
    before, after = (_progress(part) for part in first.split("resuming from", 1))
    assert min(after) > 20 and max(before) >= 60, (before, after)  # it went on from a checkpoint, not from step 0
    # the steps done twice gave the same losses: the resumed run is the uninterrupted one, continued
    assert all(after[step] == loss for step, loss in before.items() if step in after)


def test_a_lost_node_with_train_workers_costs_only_the_steps_since_a_checkpoint(tiny_world, tmp_path, local_cluster):
    """cluster.yaml's layout on one machine: a head with no CPUs that holds the trials' own processes (kdstudy_trial)
    and a worker node for the Train workers. The worker node is lost mid-trial and another joins: Ray Train restarts
    the workers there, from the last checkpoint; one MLflow run, and the study's next trial runs as usual."""
    local_cluster.start("head", cpus=0, resources={"kdstudy_trial": 2})
    local_cluster.start("spot", cpus=1)
    log = _lose_a_node_mid_trial(tmp_path, local_cluster, {"num_workers": 1, "cpus_per_worker": 1, "trial_cpus": 0,
                                                           "trial_resources": {"kdstudy_trial": 1}},
                                 node_cpus=1, trials=2)
    _went_on_from_a_checkpoint(log)
    assert "trying it again" not in log  # the trial's own process, on the head, lived on


def test_a_lost_node_with_the_trial_process_too(tiny_world, tmp_path, local_cluster):
    """Without kdstudy_trial the trial's own process (and the Train run it drives) sits on the lost node as well:
    Tune starts the trial again (search.max_failures), and it continues its Train run from the last checkpoint."""
    local_cluster.start("head", cpus=0)
    local_cluster.start("spot", cpus=2)
    log = _lose_a_node_mid_trial(tmp_path, local_cluster, {"num_workers": 1, "cpus_per_worker": 1, "trial_cpus": 1},
                                 node_cpus=2, trials=1)
    assert "trying it again" in log  # Tune's retry of the trial, said
    _went_on_from_a_checkpoint(log)
