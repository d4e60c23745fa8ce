"""Ray for a study and for `kdstudy rerun`: join a cluster or start a local one sized for the trials, and measure the
teacher in a Ray task with a worker's resources (on a GPU node when the workers have GPUs)."""

from __future__ import annotations

import math
import os

import ray

from study.config import StudyConfig
from study.experiment.evaluation import cached_teacher_metrics, teacher_metrics
from study.runtime import fix_threads, quiet_libraries, root_cause, setup_worker_logging

OBJECT_STORE_BYTES = 256 * 1024**2  # a local cluster moves configs and metrics, not data: keep the store small


def start_ray(cfg: StudyConfig, address: str | None, log_to_driver: bool = True) -> bool:
    """Join a cluster, or start a local one sized for the study; True if this call started Ray. Without
    `log_to_driver` the workers' output stays in their log files (the live view's way)."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=log_to_driver)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster listens on loopback only
    # One machine is not preempted: no watcher actor per Train run (its process start competes with the trials).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    s = cfg.search.scaling
    per_trial = s.trial_cpus + s.num_workers * s.cpus_per_worker
    # Logical CPUs: each trial holds its own process plus its workers.
    concurrent = cfg.search.concurrent_trials()
    cpus = max(os.cpu_count() or 1, math.ceil(per_trial * concurrent))
    # The dashboard (on 127.0.0.1) serves the state API that Ray Train's placement-group cleaner polls.
    custom = {k: v * concurrent for k, v in s.trial_resources.items()}  # as a cluster's head
    ray.init(num_cpus=cpus, resources=custom or None, object_store_memory=OBJECT_STORE_BYTES,
             include_dashboard=True, logging_level="WARNING", log_to_driver=log_to_driver)
    return True


@ray.remote
def measure_teacher(cfg: StudyConfig) -> dict[str, float]:
    """The teacher's metrics for a study (cached on disk, so a resumed study does not measure again)."""
    quiet_libraries()
    setup_worker_logging()
    fix_threads(cfg.threads)
    scalars, _ = teacher_metrics(cfg)
    return scalars


def teacher_metrics_task(cfg: StudyConfig) -> dict[str, float]:
    """The teacher's metrics measured in a Ray task with a worker's resources; a usage error inside it (a
    missing model or data file) comes out as itself, one line, not as Ray's traceback."""
    cached = cached_teacher_metrics(cfg)
    if cached is not None:  # measured before on this machine: no worker process to start just to read a file
        return cached[0]
    s = cfg.search.scaling
    task = measure_teacher.options(num_cpus=s.cpus_per_worker, num_gpus=s.worker_resources.get("GPU", 0))
    try:
        return ray.get(task.remote(cfg))
    except ray.exceptions.RayTaskError as err:
        cause = root_cause(err)
        raise (cause if isinstance(cause, Exception) else err) from None
