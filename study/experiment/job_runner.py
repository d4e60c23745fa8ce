"""Running a process's evaluation jobs (study.experiment.evaluation's Job and run_job): one after another here, or on
a GPU several fine-tuning slots at once.

Fine-tuning a student at batch 32 keeps a GPU busy 1-2% of the time (glue.fit at bert-base on one H200, 2026-12-04:
1,479 examples/s in fp32): the host launches small kernels and the GPU waits for them. With eval.jobs_per_gpu > 1 on
CUDA the fine-tuning slots run that many at once, each in a process of its own that shares the GPU, while the bias
suite runs in this one. Processes, not threads: a slot seeds torch's global generators (head initialisation,
dropout), which threads would share, and a slot's numbers must be those it gives alone. Spawned, not forked: CUDA does
not survive a fork. Whether it is faster, and by how much, is unmeasured (benchmarks/gpu_check.py measures it).
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch

from study.config import StudyConfig
from study.runtime import fix_threads, quiet_libraries, setup_worker_logging

_LOADED: dict = {}  # in a job process: the encoded task data its slots share (evaluation.run_job's `loaded`)


def jobs_at_once(cfg: StudyConfig, device: str | torch.device) -> int:
    """Fine-tuning slots at once: eval.jobs_per_gpu on CUDA; one on a CPU, whose cores the worker's threads hold."""
    return cfg.eval.jobs_per_gpu if torch.device(device).type == "cuda" else 1


def _timed(run: Callable, job, model_dir, cfg: StudyConfig, device, loaded: dict | None = None) -> tuple:
    """(job, run's result or the exception it raised, seconds)."""
    start = time.time()
    try:
        result = run(job, model_dir, cfg, device, _LOADED if loaded is None else loaded)
    except Exception as err:  # the caller decides: raise it, or report it after the others (a trial's workers)
        result = err
    return job, result, time.time() - start


def _start_process(threads: int) -> None:
    fix_threads(threads)
    quiet_libraries()
    setup_worker_logging()


def run_jobs(run: Callable, jobs: list, model_dir: str | Path, cfg: StudyConfig, device: str | torch.device,
             at_once: int = 1) -> Iterator[tuple]:
    """(job, `run(job, model_dir, cfg, device, loaded)` or the exception it raised, seconds) for each of `jobs` as it
    finishes: in this process one after another, or with at_once > 1 the fine-tuning slots (jobs with a task) in
    that many processes of their own, the others here meanwhile. `run` must be a module-level function (it is
    pickled). Stopping the iteration cancels the slots not yet started."""
    if at_once <= 1:
        loaded: dict = {}  # a task's encoded data, kept between its slots
        for job in jobs:
            yield _timed(run, job, model_dir, cfg, device, loaded)
        return
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(at_once, mp_context=context, initializer=_start_process, initargs=(cfg.threads,))
    try:
        slots = {pool.submit(_timed, run, job, model_dir, cfg, device): job for job in jobs if job.task is not None}
        for job in jobs:
            if job.task is None:
                yield _timed(run, job, model_dir, cfg, device, {})
        for future in as_completed(slots):
            try:
                yield future.result()
            except Exception as err:  # the process itself was lost (killed, out of memory)
                yield slots[future], err, 0.0
    finally:
        pool.shutdown(cancel_futures=True)
