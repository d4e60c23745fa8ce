"""One config distilled and evaluated as a Ray Train run: N workers in DDP (gloo on CPU, nccl on GPU) run
study.cluster.worker; each checkpoint is reported to Ray Train, which restarts crashed workers from the last one;
after the last step the workers share the student's evaluation (the bias suite and each (task, seed slot),
round-robin; rank 0 gathers), its results in the final checkpoint beside the student (the layout in
study.record.folder).
A study's trial (study.search.trial) and a seed run (study.reruns.seeds) are each one such run.

The distillation is study.distill.loop and the measuring study.experiment.evaluation (shared by
study.experiment.shared_evaluation), the same code `kdstudy distill` runs. A run that diverges or raises fails alone
with a one-line reason (TrialFailed).
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import NoReturn

import pyarrow.fs
import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer
from ray.train.v2._internal.constants import DEFAULT_WORKER_GROUP_START_TIMEOUT_S, WORKER_GROUP_START_TIMEOUT_S_ENV_VAR
from ray.train.v2._internal.exceptions import WorkerGroupStartupTimeoutError

from study.cluster.capacity import Capacity, unplaced
from study.config import StudyConfig
from study.metrics.bias import amplification
from study.record.checkpoint import read_evaluation
from study.record.folder import EVALUATION, RESULT
from study.runtime import error_line, root_cause

log = logging.getLogger(__name__)


class TrialFailed(RuntimeError):
    """Why a trial did not finish, in one line (recorded as its failure reason)."""


# --- on each Ray Train worker ----------------------------------------------------------------------------------


def distill_worker(loop_config: dict) -> None:
    """Train's loop on each worker: study.cluster.worker.run_worker. Tune's trainable and Train's controller unpickle
    this function, so its module imports only what starting the workers needs; the worker imports the rest."""
    from study.cluster.worker import run_worker

    run_worker(loop_config)


# --- the Train run, from the trial's process -----------------------------------------------------------------


# How many times a Train run's workers wait for room (Ray Train's worker-group start, 60 s each unless
# RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S says otherwise) on a cluster that cannot grow. Ray Train's own default is for
# ever, which on a full cluster is a timeout repeated every minute; a study sized to its cluster
# (study.cluster.capacity) finds room at once, so a wait this long means something else holds the resources.
PLACEMENT_TRIES = 3


def train_run_config(cfg: StudyConfig, name: str, autoscaling: bool) -> RunConfig:
    """A stable name per trial: a restarted trial finds its Train run, and its checkpoints, under the same name.
    Where an autoscaler adds nodes, the workers wait for them as long as it takes."""
    placement = -1 if autoscaling else PLACEMENT_TRIES - 1  # Train counts the retries after the first try
    return RunConfig(name=name, storage_path=cfg.search.storage_path,
                     failure_config=FailureConfig(max_failures=cfg.search.max_failures,
                                                  controller_failure_limit=placement),
                     checkpoint_config=CheckpointConfig(num_to_keep=1),
                     logging_config=LoggingConfig(log_level="WARNING"),  # no controller chatter per trial
                     # Train's print patch echoes each print twice (its logger and the captured stdout)
                     worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}})


# How often Train's controller polls its workers. Ray's default, 2 s, is also how long a worker's report of a checkpoint
# waits for the previous one to be taken, and the controller notices the end only at its next polls: measured here, a
# Train run reporting 3 checkpoints took 19 s at 2 s and 11 s at 0.2 s (a trivial loop, so the 8 s are all polling).
# Ray propagates the variable from this process to the controller; a value the user set is kept. A poll is a small
# actor call, five a second per worker.
POLL_INTERVAL_ENV, POLL_INTERVAL_S = "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2"


def _result_path(cfg: StudyConfig, name: str) -> tuple[pyarrow.fs.FileSystem, str]:
    fs, root = pyarrow.fs.FileSystem.from_uri(cfg.search.storage_path)  # a local path, or s3://..., gs://...
    return fs, f"{root}/{name}/{RESULT}"


def saved_result(cfg: StudyConfig, name: str) -> dict | None:
    fs, path = _result_path(cfg, name)
    if fs.get_file_info(path).type != pyarrow.fs.FileType.File:
        return None
    with fs.open_input_stream(path) as f:
        return json.loads(f.read())


def save_result(cfg: StudyConfig, name: str, result: dict) -> None:
    fs, path = _result_path(cfg, name)
    with fs.open_output_stream(path) as f:
        f.write(json.dumps(result).encode())


def failed(cfg: StudyConfig, name: str, reason: str) -> NoReturn:
    """Fail the trial, and save why beside its Train run: Tune retries a trial whose process was lost (a node gone),
    and a retry of one that failed by itself (diverged, out of Train's retries) then fails at once, not running
    the same distillation again."""
    save_result(cfg, name, {"failure": reason})
    raise TrialFailed(reason) from None  # (called while handling Train's error: one line, not its chain)


def distill_and_evaluate(cfg: StudyConfig, teacher: dict[str, float], name: str) -> tuple[dict, str]:
    """Distil on Ray Train workers (a Train run called `name`), then evaluate: (every metric, the final checkpoint's
    URI). A Train run of that name continues from its last checkpoint; one that was evaluated already (its study
    stopped before recording it) gives its saved result instead of running again."""
    saved = saved_result(cfg, name)
    if saved is not None and "failure" in saved:  # a retry of a trial that failed on its own: it would again
        raise TrialFailed(saved["failure"])
    if saved is not None:
        log.info(f"[{name}] finished before the interruption: its saved result is reported again")
        return saved["metrics"], _absolute(cfg, saved["uri"])
    scaling = cfg.search.scaling
    os.environ.setdefault(POLL_INTERVAL_ENV, POLL_INTERVAL_S)
    cap = Capacity.of_cluster()
    trainer = TorchTrainer(
        distill_worker,
        train_loop_config={"cfg": cfg, "trial": name},
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=scaling.worker_resources),
        run_config=train_run_config(cfg, name, cap.autoscaling),
    )
    start = time.time()
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        if isinstance(root_cause(err), WorkerGroupStartupTimeoutError):
            seconds = float(os.environ.get(WORKER_GROUP_START_TIMEOUT_S_ENV_VAR, DEFAULT_WORKER_GROUP_START_TIMEOUT_S))
            failed(cfg, name, unplaced(scaling, cap, ray.available_resources(), PLACEMENT_TRIES, seconds))
        failed(cfg, name, f"distillation failed: {error_line(err)}")
    if result.metrics.get("distill/diverged"):
        failed(cfg, name, result.metrics["distill/failure"])
    metrics = read_evaluation(result.checkpoint.path, result.checkpoint.filesystem)
    if metrics is None:
        raise TrialFailed(f"the final checkpoint {result.checkpoint.path} holds no {EVALUATION}")
    metrics |= amplification(metrics, teacher, cfg.bias.primary)
    for objective in cfg.search.objectives:  # an objective toward a target: its distance, as the search optimises it
        metrics |= objective.value(metrics)
    metrics |= {k: v for k, v in result.metrics.items() if k.startswith(("distill/", "perf/"))}
    metrics["perf/fit_seconds"] = time.time() - start  # Train's start and teardown, setup, distillation, evaluation
    # the share of the workers' time (workers x the trial's wall) that went into distilling and evaluating (above 1
    # where a worker runs several fine-tuning jobs at once on its GPU: eval.jobs_per_gpu)
    metrics["perf/busy_share"] = metrics["perf/work_seconds"] / (scaling.num_workers * metrics["perf/fit_seconds"])
    save_result(cfg, name, {"metrics": metrics, "uri": _relative(cfg, result.checkpoint.path)})
    return metrics, result.checkpoint.path


def _relative(cfg: StudyConfig, path: str) -> str:
    """A checkpoint's path under the Ray storage (where Ray Train keeps every checkpoint) as the saved result keeps
    it: relative to the storage, so that a study folder (and its storage in it) can move."""
    _, root = pyarrow.fs.FileSystem.from_uri(cfg.search.storage_path)
    return path[len(root.rstrip("/")):].lstrip("/")


def _absolute(cfg: StudyConfig, path: str) -> str:
    """A saved checkpoint's path under the Ray storage where it now is, as Ray gives a checkpoint's path (without
    the scheme)."""
    _, root = pyarrow.fs.FileSystem.from_uri(cfg.search.storage_path)
    return f"{root.rstrip('/')}/{path}"
