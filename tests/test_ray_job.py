"""A study submitted as a Ray job, as a cluster user submits one (docs/ray-jobs.md): a Ray head started on this machine
as cluster.yaml's head starts it (`ray start --head`, the dashboard and every server on 127.0.0.1, Ray's default
authentication), with 2 CPUs and the kdstudy_trial resource; then `ray job submit -- kdstudy run
search_spaces/smoke.yaml --address auto` with smoke.yaml's own max_concurrent_trials (auto) and confirm race, on the
tests' tiny world and a shorter budget, waited for with `ray job status` and read with `ray job logs`; then `kdstudy
pareto` and `kdstudy rerun --address auto` as jobs too.

The head differs from cluster.yaml's where this machine is shared or offline: no `ray stop` or `pkill -f "mlflow
server"` first (they would stop other people's Ray and MLflow here), free ports instead of 6379 and 8076, a temp dir of
its own, no --autoscaling-config (`ray up` writes that file), no MLflow server with S3 artifacts (the study keeps its
own SQLite store, the cluster's default too), and 2 CPUs where cluster.yaml's head has none (it has GPU nodes for the
workers). The fixture stops this head alone, by its processes, whatever the test did."""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest

from tests.conftest import ANSI, TIMEOUT, TINY_WORLD, foreign_lines, free_port, screen_lines, trial_runs

REPO = Path(__file__).resolve().parents[1]
SMOKE = REPO / "search_spaces" / "smoke.yaml"
# smoke.yaml on the tests' tiny world (built once per session, in seconds; smoke's own world takes minutes) with a
# shorter budget: its space, anchors, sampler, confirm race and concurrency (auto) as they are
SHORTER = {**{f"world.{k}": v for k, v in TINY_WORLD.items()}, "student.n_layers": 1, "distill.max_length": 24,
           "search.num_samples": 2, "distill.steps": 20, "distill.log_every": 10, "distill.checkpoint_every": 10,
           "eval.world.max_steps": 3, "eval.world.max_train_samples": 64, "eval.world.max_eval_samples": 64,
           "search.confirm.max_seeds": 2}
# A safety net against a hung job, not a measured expectation: the study job runs five processes that import torch on
# 2 CPUs, one after another, and a loaded machine stretches that several times over
JOB_TIMEOUT = 3 * TIMEOUT


class Head:
    """A one-node Ray cluster started with `ray start --head` in a session and temp dir of its own."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.temp = Path(tempfile.mkdtemp(prefix="kdjob-", dir="/tmp"))  # short: Ray's socket paths live under it
        self.port, self.dashboard = free_port(), free_port()
        bin_dir = str(Path(sys.executable).parent)  # the job's `kdstudy` is this checkout's
        # Ray's default authentication, as on cluster.yaml's nodes: RAY_AUTH_MODE unset (the tests' `disabled` too)
        env = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
        # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray's single-machine mode, every server on loopback
        self.env = {**env, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
                    "PATH": f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", "KDSTUDY_CACHE": str(cache),
                    "RAY_API_SERVER_ADDRESS": f"http://127.0.0.1:{self.dashboard}"}
        self.session: int | None = None

    def start(self) -> None:
        argv = ["ray", "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}",
                "--dashboard-host=127.0.0.1", f"--dashboard-port={self.dashboard}",
                f"--object-manager-port={free_port()}", f"--ray-client-server-port={free_port()}",
                f"--dashboard-agent-listen-port={free_port()}", "--num-cpus=2",
                f"--resources={json.dumps({'kdstudy_trial': 8})}", f"--temp-dir={self.temp}",
                "--object-store-memory=200000000", "--disable-usage-stats"]
        with (self.root / "ray-start.log").open("w") as log:
            proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=self.env)
            self.session = proc.pid
            assert proc.wait(timeout=TIMEOUT) == 0, (self.root / "ray-start.log").read_text()

    def stop(self) -> None:
        """Every process of this head: those of its session, and those naming its temp dir (Ray's agents leave the
        session); TERM, then KILL what is left."""
        mine = []
        for p in psutil.process_iter():
            try:
                if (self.session is not None and os.getsid(p.pid) == self.session) or \
                        any(str(self.temp) in a for a in p.cmdline()) or \
                        any(f.path.startswith(str(self.temp)) for f in p.open_files()):
                    mine.append(p)
            except (psutil.Error, ProcessLookupError, PermissionError):
                pass
        for p in mine:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(mine, timeout=20)
        for p in alive:
            try:
                p.kill()
            except psutil.Error:
                pass
        shutil.rmtree(self.temp, ignore_errors=True)

    def ray(self, *argv: str) -> subprocess.CompletedProcess:
        return subprocess.run(["ray", *argv], capture_output=True, text=True, timeout=TIMEOUT, env=self.env)

    def submit(self, job: str, *entrypoint: str) -> None:
        done = self.ray("job", "submit", "--no-wait", "--submission-id", job, "--", *entrypoint)
        assert done.returncode == 0, done.stdout + done.stderr

    def wait(self, job: str) -> str:
        """The job's final status, polled with `ray job status`: SUCCEEDED, FAILED or STOPPED."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while time.monotonic() < deadline:
            shown = self.ray("job", "status", job)
            assert shown.returncode == 0, f"`ray job status {job}` failed:\n{shown.stderr[-2000:]}"  # the head is gone
            # what it prints once the job ended (its colours removed): "Job 'study' succeeded", "... failed",
            # "... was stopped"; before that, "Status for job 'study': RUNNING"
            ended = re.search(r"Job '[^']+' (succeeded|failed|was stopped)", ANSI.sub("", shown.stdout + shown.stderr))
            if ended:
                return {"succeeded": "SUCCEEDED", "failed": "FAILED", "was stopped": "STOPPED"}[ended.group(1)]
            time.sleep(10)  # (each `ray job status` is a Python process that imports Ray)
        raise AssertionError(f"job {job} still running after {JOB_TIMEOUT}s:\n{self.logs(job)[-3000:]}")

    def logs(self, job: str) -> str:
        return self.ray("job", "logs", job).stdout


@pytest.fixture
def head(tmp_path, cache_dir, tiny_world):
    cluster = Head(tmp_path, cache_dir)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


# What `ray job logs` shows of Ray's own around any job: its server's address, then the job manager's two lines
FRAMING = ("Job submission server address", "Runtime env is setting up", "Running entrypoint for job")


def _read_as_a_person(log: str, answer: str) -> list[str]:
    """The job log's lines, after checking that Ray's job framing (FRAMING, at the top) is all of it that kdstudy did
    not print, and that the answer (the first line holding `answer`) is there."""
    lines = screen_lines(log)
    foreign = foreign_lines(lines)
    assert foreign == list(range(len(FRAMING))), [lines[i] for i in foreign]  # at the top, and nothing else
    assert all(f in lines[i] for f, i in zip(FRAMING, foreign)), lines[:len(FRAMING)]
    assert any(answer in line for line in lines), lines[-10:]
    return lines


def test_lines_not_kdstudys_own_are_told_from_its_own():
    """FOREIGN on lines taken from real logs: Ray's, Optuna's, MLflow's and Python's are foreign, kdstudy's are not."""
    foreign = [
        "(raylet) Raylet is terminated. Termination is unexpected.",
        "(RayTrainWorker pid=1399) step 10/20 loss 4.2",
        "(measure_teacher pid=759) measuring the teacher",
        "[I 2026-12-04 17:42:37,656] A new study created in RDB with name: smoke",
        "2026/12/04 17:42:35 INFO mlflow.store.db.utils: Creating initial MLflow database tables...",
        "2026-12-04 17:50:30,544\tINFO cli.py:569 -- 2026-12-04 17:42:12,516\tINFO job_manager.py:581 -- Runtime",
        "Running entrypoint for job study: kdstudy run smoke.yaml --address auto",
        "[2026-12-04 18:21:41,089 E 26095 28116] core_worker.cc:609: :info_message: Attempting to recover 2 lost",
        "    [state-dump] DebugString() time ms: 0",
        "Traceback (most recent call last):",
        '  File "/work/kdstudy/study/cli.py", line 469, in main',
        "(TrainController pid=7097) repeated 3x across cluster",
    ]
    own = [
        "teacher measured: bias/template/planted_slope 3.659e-05, world/score 0",
        "study smoke: 2 trials in /tmp/study, 1 at a time, tracking sqlite:////tmp/study/mlflow.db",
        "[   98s] trial 8d3aa9ac finished: bias/amplification 2.883e-05, world/score 0 | 1/2 done, 0 running, 0 failed",
        "confirm-8d3aa9ac-seed1 finished: bias/amplification 6.4e-05, world/score -11.48",
        " 8d3aa9ac │ plain_kd knee │         2 │           2 │ none │ 0.0000 ± 0.0001 │ 0.0000 ± 0.0000 ",
        "kdstudy: error: --address nonsense: no Ray cluster to join (ValueError: Invalid address format: nonsense)",
    ]
    assert foreign_lines(foreign + own) == list(range(len(foreign)))


@pytest.mark.slow  # a Ray head, three jobs, a study of two trials and two confirm runs (minutes)
def test_a_study_submitted_as_a_ray_job_fits_the_cluster_and_its_log_reads_well(head, tmp_path):
    study = tmp_path / "study"
    sets = [x for k, v in SHORTER.items() for x in ("--set", f"{k}={v}")]
    head.submit("study", "kdstudy", "run", str(SMOKE), *sets, "--study-dir", str(study), "--address", "auto")
    assert head.wait("study") == "SUCCEEDED", head.logs("study")[-4000:]
    lines = _read_as_a_person(head.logs("study"), "smoke: Pareto front")
    assert len(FRAMING) <= 0.1 * len(lines)  # the floor: at most 10% of the job log not kdstudy's own
    text = "\n".join(lines)
    # sized from the cluster: a trial holds 2 CPUs (its process and its worker) of the head's 2
    assert f"smoke: 2 trials in {study}, 1 at a time" in text
    assert "the cluster has CPU 2, kdstudy_trial 8 on 1 node; a trial holds its process CPU 1 and 1 worker x CPU 1" \
        in text
    events = [line for line in lines if re.search(r"trial \w+ (started|finished|FAILED)", line)]
    assert len(events) == 4 and all("finished" in e for e in events[1::2]), events  # one at a time: start, finish
    seeds = [line for line in lines if re.match(r"confirm-\w+-seed\d+ (finished|FAILED)", line)]
    assert len(seeds) == 2 and all("finished" in s for s in seeds), seeds  # each anchor's seed 1 (seed 0: its search)
    answer = next(i for i, line in enumerate(lines) if "smoke: Pareto front" in line)
    assert answer > lines.index(seeds[-1])  # the answer last: the fronts and verdicts after every run

    runs = trial_runs(study)
    assert sorted(r.info.status for r in runs) == ["FINISHED"] * 2
    assert all({"bias/amplification", "world/score"} <= set(r.data.metrics) for r in runs)
    recommended = json.loads((study / "pareto.json").read_text())["race"]["recommended"]["trial_id"]
    assert recommended in {r.data.tags["trial_id"] for r in runs}
    assert (study / "confirm" / "race.json").is_file() and (study / "logs" / "driver.log").is_file()

    head.submit("pareto", "kdstudy", "pareto", str(study))
    assert head.wait("pareto") == "SUCCEEDED"
    _read_as_a_person(head.logs("pareto"), "smoke: Pareto front")

    head.submit("rerun", "kdstudy", "rerun", str(study), "--seeds", "1", "--address", "auto")
    assert head.wait("rerun") == "SUCCEEDED", head.logs("rerun")[-4000:]
    lines = _read_as_a_person(head.logs("rerun"), f"smoke: rerun of {recommended}")
    assert any(line.startswith(f"rerun-{recommended}-seed0 finished") for line in lines), lines
    rerun = json.loads((study / "reruns" / f"{recommended}.json").read_text())
    assert list(rerun["per_seed"]) == ["0"]
