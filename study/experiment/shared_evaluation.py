"""A student's evaluation shared by the ranks of a torch.distributed group: the trial's DDP workers, once they have
distilled it.

    jobs   = evaluation_jobs(cfg)        the bias suite and every (task, fine-tuning seed slot), independent
    mine   = jobs[rank::world_size]      round-robin, fine-tuning slots first: each rank its share
    gather = all_gather_object(...)      every rank's results and work seconds; combined in one fixed order

The numbers do not depend on how the jobs were spread: a job depends on nothing but its own seeds (glue.run_slot keeps
a slot's chance-level retries inside it), each worker runs with the trial's fixed thread count, and `combine` puts the
slots and tasks back in the order one process would have run them.

Why the workers share it rather than handing the jobs to Ray as tasks (which would release the worker group after
distillation): the workers already hold their devices, the student in memory and a process with torch and the
tokenizer loaded; a Ray task would start a process, import both, fetch the student from storage (S3 at paper scale)
and queue for a device again. Only this version was built and measured (benchmarks/trial_busy.py: evaluation wall,
rank 0 alone over shared); the Ray-task version was not measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

from study.config import StudyConfig
from study.experiment.evaluation import Job, combine, evaluation_jobs, run_job
from study.experiment.job_runner import jobs_at_once, run_jobs
from study.runtime import error_line

log = logging.getLogger(__name__)


class EvaluationFailed(RuntimeError):
    """A job of the evaluation raised: its name, its rank and the error, in one line (raised on every rank alike)."""


def share(jobs: list[Job], rank: int, world_size: int, alone: bool = False) -> list[Job]:
    """This rank's jobs: every world_size-th, from its rank on; `alone`: every job on rank 0 (the others wait)."""
    if alone:
        return list(jobs) if rank == 0 else []
    return jobs[rank::world_size]


def gather(value) -> list:
    """Every rank's `value`, in rank order (one process without a process group: [value])."""
    if not dist.is_initialized():
        return [value]
    out: list = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def broadcast_model_dir(directory: Path, scratch: Path, rank: int) -> Path:
    """Rank 0's saved model dir on every rank: its files' bytes broadcast, written under `scratch` on the others.
    (transformers saves a model on rank 0 only while torch.distributed is up, and the ranks may be on different
    machines.) The same bytes everywhere: every rank fine-tunes exactly the model rank 0 saved."""
    if not dist.is_initialized():
        return directory
    files = [{p.name: p.read_bytes() for p in directory.iterdir() if p.is_file()} if rank == 0 else None]
    dist.broadcast_object_list(files, src=0)
    if rank == 0:
        return directory
    scratch.mkdir(parents=True, exist_ok=True)
    for name, data in files[0].items():
        (scratch / name).write_bytes(data)
    return scratch


def evaluate_shared(model_dir: str | Path, cfg: StudyConfig, device: str | torch.device, rank: int, world_size: int,
                    alone: bool = False, on_job: Callable[[Job, float, int, int], None] | None = None,
                    ) -> tuple[dict[str, float], dict, list[float]]:
    """This rank's share of the evaluation, then everyone's results gathered: (flat metrics, bias details, each
    rank's evaluation work seconds), the same on every rank. `on_job(job, seconds, done, mine)` runs as each of this
    rank's jobs finishes. A job that raises stops this rank's share; once gathered, every rank raises
    EvaluationFailed naming it (a trial fails as it does when one process's evaluation raises)."""
    mine = share(evaluation_jobs(cfg), rank, world_size, alone)
    results: dict[Job, object] = {}
    error = None
    work = 0.0
    for done, (job, result, seconds) in enumerate(run_jobs(run_job, mine, model_dir, cfg, device,
                                                            jobs_at_once(cfg, device)), 1):
        if isinstance(result, Exception):  # every rank must reach the gather, or the others would wait for ever
            error = f"evaluation job {job.name} failed on rank {rank}: {error_line(result)}"
            log.error(error)
            break
        results[job] = result
        work += seconds
        if on_job is not None:
            on_job(job, seconds, done, len(mine))
    gathered = gather({"results": results, "error": error, "seconds": work})
    errors = [g["error"] for g in gathered if g["error"]]
    if errors:
        raise EvaluationFailed(errors[0])
    merged = {job: result for g in gathered for job, result in g["results"].items()}
    scalars, details = combine(cfg, merged)
    return scalars, details, [g["seconds"] for g in gathered]
