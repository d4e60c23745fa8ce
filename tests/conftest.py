"""Shared fixtures and builders: a tiny world built once per test session in a temporary cache, the tiny configs
and search spaces the tests start from, and the helpers of the end-to-end tests (waiting, killing a driver's
session, reading a study's trial runs)."""

import copy
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from study.metrics.bias_data import BENCHMARKS, NEEDED, default_dir

# A world small enough to build in seconds; the science checks use the full world in benchmarks/.
TINY_WORLD = {"sentences": 2000, "vocab_size": 600, "layers": 2, "hidden": 32, "heads": 2, "intermediate": 64,
              "max_length": 24, "batch_size": 64, "min_epochs": 1, "max_epochs": 2, "target_spearman": 0.99}


def tiny_study(**distill) -> dict:
    return {
        "name": "tiny",
        "world": TINY_WORLD,
        "student": {"n_layers": 1},
        "distill": {"steps": 6, "batch_size": 8, "max_length": 24, "log_every": 2, **distill},
        "bias": {"template": {"templates": ["{target} is {a} {occupation} .", "{target} works as {a} {occupation} ."]}},
    }


# Tests of the released benchmark files use the fetched copy (`kdstudy data fetch`) or ../shared/data beside the
# checkout; without either they are skipped, naming the command. KDSTUDY_REQUIRE_DATA=1 (CI, which has the folder)
# turns that skip into a failure, so that a missing copy cannot pass unnoticed.
REQUIRE_DATA = "KDSTUDY_REQUIRE_DATA"
FETCH = "kdstudy data fetch crows seat"


def _released_data() -> Path | None:
    for folder in (default_dir(), Path(__file__).resolve().parents[2] / "shared" / "data"):
        if all((folder / s.path).is_file() for name in NEEDED for s in BENCHMARKS[name].files):
            return folder
    return None


RELEASED = _released_data()  # found before the session's cache fixture points KDSTUDY_CACHE elsewhere


@pytest.fixture(scope="session")
def released_data() -> Path:
    """The folder holding the released CrowS-Pairs and SEAT files."""
    if RELEASED is None:
        reason = f"needs the released CrowS-Pairs and SEAT files: run `{FETCH}`"
        if os.environ.get(REQUIRE_DATA) == "1":
            pytest.fail(f"{reason} ({REQUIRE_DATA}=1 forbids skipping)")
        pytest.skip(reason)
    return RELEASED


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("kdstudy-cache")
    old = os.environ.get("KDSTUDY_CACHE")
    os.environ["KDSTUDY_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("KDSTUDY_CACHE", None)
    else:
        os.environ["KDSTUDY_CACHE"] = old


@pytest.fixture(scope="session")
def tiny_world(cache_dir):
    from study.config import WorldConfig
    from study.world.build import build_world

    return build_world(WorldConfig(**TINY_WORLD))


@pytest.fixture(scope="session")
def world_models(tiny_world):
    """(teacher, tokenizer, corpus ids) of the tiny world."""
    from study.distill.data import tokenize
    from study.distill.models import load_masked_lm

    teacher, tokenizer = load_masked_lm(tiny_world.teacher_dir)
    return teacher, tokenizer, tokenize(tiny_world.sentences, tokenizer, 24)


@pytest.fixture
def study_yaml(tmp_path):
    def write(**distill):
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(tiny_study(**distill)))
        return path

    return write


# --- tiny configs and search spaces -----------------------------------------------------------------------------

OBJECTIVES = ["bias/amplification", "world/score"]

# A search space with every kind of parameter: categorical, conditional float (a scalar and a list `when`), log float,
# int. Config checks only: nothing is distilled with it.
SPACE = {
    "distill.mitigation.mode": {"type": "categorical", "choices": ["none", "cda", "mixup"]},
    "distill.mitigation.alpha": {"type": "float", "low": 0.1, "high": 2.0, "log": True,
                                 "when": {"distill.mitigation.mode": "mixup"}},
    "distill.mitigation.p": {"type": "float", "low": 0.25, "high": 1.0, "when": {"distill.mitigation.mode": ["mixup"]}},
    "distill.loss.temperature": {"type": "float", "low": 1.0, "high": 8.0, "log": True},
    "student.n_layers": {"type": "int", "low": 1, "high": 3},
}


def study_raw(**search) -> dict:
    """A study YAML (as a dict) over SPACE on the default world, for checks that load it without running it."""
    return {"name": "s", "distill": {"steps": 5}, "eval": {"suites": ["world"]},
            "search": {"space": copy.deepcopy(SPACE), **search}}


def tiny_space(**search) -> dict:
    """A study YAML on the tiny world that runs in seconds a trial: what the end-to-end tests start."""
    return {
        "name": "tiny-study",
        "world": TINY_WORLD,
        "student": {"n_layers": 1},
        "distill": {"steps": 6, "batch_size": 8, "max_length": 24, "log_every": 2, "checkpoint_every": 3},
        "bias": {"template": {"templates": ["{target} is {a} {occupation} ."]}},
        "eval": {"suites": ["world"], "world": {"max_steps": 3, "max_train_samples": 64, "max_eval_samples": 64}},
        "search": {"space": {"distill.mitigation.mode": {"type": "categorical", "choices": ["none", "cda", "mixup"]},
                             "distill.loss.temperature": {"type": "float", "low": 1.0, "high": 4.0}},
                   "sampler": {"name": "random", "seed": 3}, **search},
    }


def non_dominated(points: dict[str, tuple[float, float]]) -> set[str]:
    """Written out for the tests: bias/amplification is minimised, world/score maximised."""
    return {a for a, (b1, s1) in points.items()
            if not any(b2 <= b1 and s2 >= s1 and (b2 < b1 or s2 > s1) for c, (b2, s2) in points.items() if c != a)}


# --- end-to-end helpers -------------------------------------------------------------------------------------------

TIMEOUT = 600  # seconds: a safety net against a hung cluster, not a measured expectation
# For a driver whose fault must land mid-trial: Ray's own 2 s poll of the Train workers (study.cluster.train_run
# polls every 0.2 s unless the user says otherwise). Each checkpoint report waits for the poll, so a tiny trial that
# checkpoints every 20 steps lasts ~2 s per checkpoint instead of finishing its few hundred steps in seconds.
SLOW_POLL = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "2.0"}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for a server a test starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def no_ray_left_behind():
    """Shut Ray down after the test: one that failed half-way must not leave the next a cluster to hang on."""
    yield
    import ray

    ray.shutdown()


class MlflowServer:
    """A real `mlflow server` on the SQLite store in `root` (study.record.folder's mlflow.db), which a test can stop
    and start again on the same port."""

    def __init__(self, root: Path):
        from study.record.folder import local_store

        self.root, self.store, self.port, self.proc = root, local_store(root), free_port(), None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.store,
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1", "--port",
             str(self.port), "--workers", "1"],
            stdout=(self.root / "server.log").open("a"), stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self.healthy, "the mlflow server", self.proc)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return response.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the server, its uvicorn worker and its job consumers
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:  # a loaded machine: its graceful shutdown outlasts the wait; crash it
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
            wait_for(lambda: not self.healthy(), "the mlflow server to stop answering")
            self.proc = None


@pytest.fixture
def mlflow_server():
    """Start an MlflowServer on the store in a folder: `mlflow_server(root)` returns it, started; every server it
    started is stopped after the test."""
    servers = []

    def serve(root: Path) -> MlflowServer:
        server = MlflowServer(Path(root))
        servers.append(server)
        server.start()
        return server

    yield serve
    for server in servers:
        server.stop()


def wait_for(condition, what: str, proc=None):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        if condition():
            return
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the study process ended (exit {proc.returncode}) before {what}")
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def kill_session(proc: subprocess.Popen) -> None:
    """SIGKILL the driver and every process of its session (its local Ray cluster), as a crash would."""
    import psutil

    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=60)
    for p in psutil.process_iter(["pid"]):  # Ray's agents may have moved to a session of their own
        try:
            if os.getsid(p.pid) == proc.pid:
                p.kill()
        except (ProcessLookupError, psutil.Error, PermissionError):
            pass


def trial_runs(study_dir: Path) -> list:
    """The study's trial runs in MLflow, read from its study.json."""
    from study.record.folder import META
    from study.record.tracking import TRIAL_ID, connect

    meta = json.loads((study_dir / META).read_text())
    return [r for r in connect(meta["tracking_uri"]).search_runs([meta["experiment_id"]]) if TRIAL_ID in r.data.tags]


# --- a distillation batch ------------------------------------------------------------------------------------------


def batch_for(world_models, c):
    """A batch mixing gendered and neutral sequences, so mixup has mixed and unmixed rows."""
    import torch

    from study.distill.batches import DistillData, assemble
    from study.distill.data import selection_weights

    _, tokenizer, ids = world_models
    data = DistillData(ids[:200], tokenizer, c)
    weights = selection_weights(data.ids, len(tokenizer), tokenizer.all_special_ids, c.masking)
    gendered = [i for i in range(len(data.ids)) if data.cf[i] is not None][:5]
    neutral = [i for i in range(len(data.ids)) if data.cf[i] is None][:3]
    return assemble(data, gendered + neutral, c, tokenizer, weights, torch.Generator().manual_seed(0))


# --- what a person reads off a terminal -----------------------------------------------------------------------------

# A line kdstudy did not print: a Ray worker's or the raylet's prefix, Ray's log records (its CLI's, its job manager's,
# its C++ core's, the raylet's state dump when it dies), Optuna's and MLflow's records, a Python traceback, and the
# lines `../shared/tools/newcomer-run` counts (its pattern is the first alternatives here, unchanged).
FOREIGN = re.compile(
    r"^\((raylet|RayTrainWorker|TrainController|measure_teacher|[A-Za-z_]+ pid=)|^\[I [0-9]{4}-|INFO mlflow"
    r"|^20[0-9]{2}/[0-9]{2}/[0-9]{2} .* INFO|repeated [0-9]+x across cluster|WARNING|tensorboard|View detailed results"
    r"|^\(pid=|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(INFO|WARN|WARNING|ERROR|DEBUG|SUCC)\b"
    r"|^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [IWEF] \d+ \d+\]|^\s*\[state-dump\]|^Running entrypoint for job "
    r"|^Traceback|^\s+File \"")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def screen_lines(text: str) -> list[str]:
    """The non-empty lines of a log as a person reads them (colours removed)."""
    return [line for line in ANSI.sub("", text).splitlines() if line.strip()]


def foreign_lines(lines: list[str]) -> list[int]:
    """The indices of the lines kdstudy did not print."""
    return [i for i, line in enumerate(lines) if FOREIGN.search(line)]
