"""What runs on each Ray Train worker of a trial: this rank's share of the distillation, then of the student's
evaluation (study.cluster.train_run starts them). Kept apart from the trial so that the processes which only start and
watch the workers (Tune's trainable, Train's controller) never import transformers and the distillation code: those
imports cost each process seconds of CPU, paid per trial.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import ray
import ray.train
import ray.train.torch
from ray.train import Checkpoint

from study.config import StudyConfig
from study.device import DEVICE_TAG, describe
from study.distill.loop import train
from study.distill.models import make_student, save_student
from study.errors import Diverged
from study.experiment.evaluation import evaluation_jobs
from study.experiment.shared_evaluation import broadcast_model_dir, evaluate_shared, gather
from study.experiment.sources import load_teacher_and_corpus_ids
from study.record.folder import EVALUATION, STUDENT, trial_log
from study.runtime import fix_threads, quiet_libraries, setup_worker_logging

log = logging.getLogger(__name__)

# The source file whose path names the logger Ray Train reports through (Ray 2.60)
TRAIN_REPORT_SOURCE = "ray/train/v2/_internal/execution/context.py"


def quiet_train_reports() -> None:
    """Ray Train logs every report at INFO (all its metrics and the checkpoint path: a long line per checkpoint)
    under a logger named by its source file, which LoggingConfig does not reach; the trial prints its own
    progress line instead."""
    for name in list(logging.Logger.manager.loggerDict):
        if name.replace("\\", "/").endswith(TRAIN_REPORT_SOURCE):
            logging.getLogger(name).setLevel(logging.WARNING)


def run_worker(loop_config: dict) -> None:
    """This rank's share of the distillation; every checkpoint is reported to Ray Train (and so persisted).

    A restarted worker (crash, preemption, resumed study) continues from the last reported checkpoint. The last
    checkpoint also holds the student as a model dir. Divergence is reported, not raised: Ray Train would retry a
    raised error from the last checkpoint, and a deterministic divergence would only happen again.
    """
    begin = time.time()
    quiet_libraries()
    quiet_train_reports()
    cfg: StudyConfig = loop_config["cfg"]
    setup_worker_logging(trial_log(cfg.study_dir, loop_config["trial"]))
    fix_threads(cfg.threads)
    teacher, tokenizer, corpus_ids = load_teacher_and_corpus_ids(cfg)
    student = make_student(teacher, cfg.student.n_layers, cfg.student.layers)

    setup = {"perf/setup_seconds": time.time() - begin,  # teacher, corpus, counterfactuals, student
             "perf/threads": float(cfg.threads)}  # the numbers are those of this thread count
    with tempfile.TemporaryDirectory(prefix="kdstudy-distill-") as work:
        _distill(cfg, teacher, tokenizer, corpus_ids, student, Path(work), loop_config["trial"], setup)


def _distill(cfg: StudyConfig, teacher, tokenizer, corpus_ids, student, work: Path, name: str, setup: dict) -> None:
    """The loop on this rank, from the last reported checkpoint if there is one, reporting each new one."""
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    state = work / "state"  # this rank's checkpoint files; what Ray Train reports and restores
    restored = ray.train.get_checkpoint()
    if restored is not None:
        restored.to_directory(str(state))
        if rank == 0:
            log.info(f"[{name}] resuming from {restored.path}")
    start = time.time()
    first_log: list = []  # (time, step) of this attempt's first log line: a resumed run does not start at 0

    def progress(step: int, total: int, metrics: dict) -> None:
        first_log[:] = first_log or [time.time(), step]
        t0, s0 = first_log
        eta = f"{(time.time() - t0) / (step - s0) * (total - step):.0f}s" if step > s0 else "-"
        log.info(f"[{name}] step {step}/{total} loss {metrics['distill/loss']:.3f} "
                 f"{metrics['perf/tokens_per_s']:.0f} tok/s, eta {eta}")

    def report(step: int, total: int, directory: Path, metrics: dict) -> None:
        timing = {**setup, "perf/distill_seconds": time.time() - start}
        if step == total:  # the student and its evaluation go into the final checkpoint
            evaluated = _evaluate(cfg, student, tokenizer, directory, work, name, rank, world_size)
            evaluated["perf/work_seconds"] = sum(gather(timing["perf/distill_seconds"])) + \
                evaluated["perf/eval_work_seconds"]  # distillation and evaluation seconds summed over the workers
            if rank == 0:
                (directory / EVALUATION).write_text(json.dumps(evaluated))
            timing["perf/eval_seconds"] = evaluated["perf/eval_seconds"]
        ray.train.report({**metrics, **timing, "distill/steps": float(step)},
                         checkpoint=Checkpoint.from_directory(str(directory)),
                         delete_local_checkpoint_after_upload=False)

    try:
        train(cfg.distill, teacher, student, tokenizer, corpus_ids, rank=rank, world_size=world_size,
              device=ray.train.torch.get_device(), checkpoint_dir=state, on_log=progress, on_checkpoint=report,
              progress_bar=False)
    except Diverged as err:  # every rank judges the same mean loss, so all ranks arrive here together
        marker = work / "diverged"
        marker.mkdir()
        (marker / "diverged.json").write_text(json.dumps({"reason": str(err)}))
        ray.train.report({"distill/diverged": 1.0, "distill/failure": f"distillation diverged: {err}"},
                         checkpoint=Checkpoint.from_directory(str(marker)) if rank == 0 else None)


def _evaluate(cfg: StudyConfig, student, tokenizer, directory: Path, work: Path, name: str, rank: int,
              world_size: int) -> dict[str, float]:
    """The student's evaluation, shared by the workers (search.scaling.evaluation: shared, or rank0 alone): its
    metrics, `perf/eval_seconds` (the evaluation's wall, rank 0's clock) and `perf/eval_work_seconds` (its jobs'
    seconds summed over workers); the same on every rank. Each job prints a line as it finishes."""
    started = time.time()
    if rank == 0:  # transformers saves a model on rank 0 only once torch.distributed is up
        save_student(student, tokenizer, directory / STUDENT)
    model_dir = broadcast_model_dir(directory / STUDENT, work / "evaluated-student", rank)
    alone = cfg.search.scaling.evaluation == "rank0"
    if rank == 0:
        log.info(f"[{name}] evaluating: {len(evaluation_jobs(cfg))} jobs, "
                 + ("on rank 0 alone" if alone else f"shared by {world_size} workers"))

    def finished(job, seconds: float, done: int, mine: int) -> None:
        log.info(f"[{name}] evaluation: {job.name} done in {seconds:.0f}s on rank {rank} ({done}/{mine} of its jobs)")

    device = ray.train.torch.get_device()
    scalars, _, seconds = evaluate_shared(model_dir, cfg, device, rank, world_size, alone, finished)
    return scalars | {"perf/eval_seconds": time.time() - started, "perf/eval_work_seconds": sum(seconds),
                      DEVICE_TAG: describe(device)}  # rank 0's is the one kept


