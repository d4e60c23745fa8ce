"""One trial of a study: distil on Ray Train workers, evaluate the student, report every metric once.

    run_trial(params)                     the Tune function trainable, one per sampled config
      TorchTrainer(distill_worker)        N workers in DDP (gloo on CPU, nccl on GPU); each checkpoint is
                                          reported to Ray Train, which restarts crashed workers from the last one
      evaluate_student (a Ray task)       bias, world/GLUE, amplification against the study's teacher
      tune.report(metrics)                once, with the student's URI; the study's searcher reads the objectives

Ray appears here and in study.search only: the distillation is study.distill and the measuring study.pipeline,
the same code `kdstudy distill` runs. A trial that diverges or raises fails alone with a one-line reason; the
study goes on.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from pathlib import Path

import pyarrow.fs
import ray
import ray.train
import ray.tune
import torch
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from study.config import ConfigError, StudyConfig, with_params
from study.distill import Diverged, train
from study.models import make_student
from study.pipeline import load_teacher_and_corpus_ids, quiet_libraries, save_student, student_metrics

STUDENT = "student"  # the student's model dir inside the final checkpoint


class TrialFailed(RuntimeError):
    """Why a trial did not finish, in one line (recorded as its failure reason)."""


# --- on each Ray Train worker ----------------------------------------------------------------------------------


def distill_worker(loop_config: dict) -> None:
    """This rank's share of the distillation; every checkpoint is reported to Ray Train (and so persisted).

    A restarted worker (crash, preemption, resumed study) continues from the last reported checkpoint. The last
    checkpoint also holds the student as a model dir. Divergence is reported, not raised: Ray Train would retry a
    raised error from the last checkpoint, and a deterministic divergence would only happen again.
    """
    begin = time.time()
    quiet_libraries()
    cfg = StudyConfig.model_validate(loop_config["study"])
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    torch.set_num_threads(max(1, int(loop_config["threads"])))
    teacher, tokenizer, corpus_ids = load_teacher_and_corpus_ids(cfg, log=lambda *a: None)
    student = make_student(teacher, cfg.student.n_layers, cfg.student.layers)

    work = Path(tempfile.mkdtemp(prefix="kdstudy-distill-"))
    restored = ray.train.get_checkpoint()
    if restored is not None:
        restored.to_directory(str(work))
        if rank == 0:
            print(f"[{loop_config['trial']}] resuming from {restored.path}", flush=True)
    start = time.time()
    setup = {"perf/setup_seconds": start - begin}  # teacher, corpus, counterfactuals, student
    first_log: list = []  # (time, step) of this attempt's first log line: a resumed run does not start at 0

    def log(step: int, total: int, metrics: dict) -> None:
        first_log[:] = first_log or [time.time(), step]
        t0, s0 = first_log
        eta = f"{(time.time() - t0) / (step - s0) * (total - step):.0f}s" if step > s0 else "-"
        print(f"[{loop_config['trial']}] step {step}/{total} loss {metrics['distill/loss']:.3f} "
              f"{metrics['perf/tokens_per_s']:.0f} tok/s, eta {eta}", flush=True)

    def report(step: int, total: int, directory: Path, metrics: dict) -> None:
        if step == total and rank == 0:
            save_student(student, tokenizer, directory / STUDENT)
        timing = {**setup, "perf/distill_seconds": time.time() - start}
        ray.train.report({**metrics, **timing, "distill/steps": float(step)},
                         checkpoint=Checkpoint.from_directory(str(directory)),
                         delete_local_checkpoint_after_upload=False)

    device = ray.train.torch.get_device()
    try:
        train(cfg.distill, teacher, student, tokenizer, corpus_ids, rank=rank, world_size=world_size, device=device,
              checkpoint_dir=work, on_log=log, on_checkpoint=report, progress_bar=False)
    except Diverged as err:  # every rank judges the same mean loss, so all ranks arrive here together
        marker = Path(tempfile.mkdtemp(prefix="kdstudy-diverged-"))
        (marker / "diverged.json").write_text(json.dumps({"reason": str(err)}))
        ray.train.report({"distill/diverged": 1.0, "distill/failure": f"distillation diverged: {err}"},
                         checkpoint=Checkpoint.from_directory(str(marker)) if rank == 0 else None)


# --- the evaluation task ---------------------------------------------------------------------------------------


@ray.remote
def evaluate_student(checkpoint: Checkpoint, study: dict, teacher: dict[str, float], threads: int) -> dict[str, float]:
    """Bias suite, world/GLUE and amplification of the student in the final checkpoint (local or remote storage)."""
    quiet_libraries()
    torch.set_num_threads(max(1, threads))
    cfg = StudyConfig.model_validate(study)
    with checkpoint.as_directory() as directory:
        scalars, _ = student_metrics(Path(directory) / STUDENT, cfg, teacher, log=lambda *a: None)
    return scalars


@ray.remote
def measure_teacher(study: dict, threads: int) -> dict[str, float]:
    """The teacher's metrics for a study (cached on disk, so a resumed study does not measure again)."""
    from study.pipeline import teacher_metrics

    quiet_libraries()
    torch.set_num_threads(max(1, threads))
    scalars, _ = teacher_metrics(StudyConfig.model_validate(study), log=print)
    return scalars


# --- the trial itself (a Tune function trainable) --------------------------------------------------------------


def _worker_error(err: Exception) -> str:
    """The first line of the first worker's own error, not Ray's wrapping of it."""
    failures = getattr(err, "worker_failures", None) or {}
    inner = next(iter(failures.values()), None) or getattr(err, "controller_failure", None) or err
    cause = getattr(inner, "cause", None) or inner  # RayTaskError wraps the user's exception
    lines = [line for line in str(cause).strip().splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[0] if lines else ''}".strip(": ")


def train_run_config(cfg: StudyConfig, name: str) -> RunConfig:
    """A stable name per trial: a restarted trial finds its Train run, and its checkpoints, under the same name."""
    return RunConfig(name=name, storage_path=cfg.search.storage_path,
                     failure_config=FailureConfig(max_failures=cfg.search.max_failures),
                     checkpoint_config=CheckpointConfig(num_to_keep=1),
                     logging_config=LoggingConfig(log_level="WARNING"),  # no controller chatter per trial
                     # Train's print patch echoes each print twice (its logger and the captured stdout)
                     worker_runtime_env={"env_vars": {"RAY_TRAIN_ENABLE_PRINT_PATCH": "0"}})


RESULT = "result.json"  # beside a Train run's checkpoints: the evaluated metrics, once everything is done


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


def distill_and_evaluate(cfg: StudyConfig, teacher: dict[str, float], name: str) -> tuple[dict, str]:
    """Distil on Ray Train workers (a Train run called `name`), then evaluate: (every metric, the final checkpoint's
    URI). A Train run of that name continues from its last checkpoint; one that was evaluated already (its study
    stopped before recording it) gives its saved result instead of running again."""
    saved = saved_result(cfg, name)
    if saved is not None:
        print(f"[{name}] finished before the interruption: its saved result is reported again", flush=True)
        return saved["metrics"], saved["uri"]
    scaling = cfg.search.scaling
    per_worker = {"CPU": scaling.cpus_per_worker, **({"GPU": scaling.gpus_per_worker} if scaling.use_gpu else {})}
    trainer = TorchTrainer(
        distill_worker,
        train_loop_config={"study": cfg.model_dump(mode="json"), "threads": scaling.cpus_per_worker, "trial": name},
        scaling_config=ScalingConfig(num_workers=scaling.num_workers, use_gpu=scaling.use_gpu,
                                     resources_per_worker=per_worker),
        run_config=train_run_config(cfg, name),
    )
    start = time.time()
    try:
        result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise TrialFailed(f"distillation failed: {_worker_error(err)}") from None
    if result.metrics.get("distill/diverged"):
        raise TrialFailed(result.metrics["distill/failure"])
    # Outside the trial's placement group, like the Train workers: the evaluation takes its resources only once the
    # workers have given theirs back.
    evaluate = evaluate_student.options(num_cpus=scaling.eval_cpus, num_gpus=scaling.eval_gpus,
                                        scheduling_strategy="DEFAULT")
    fitted = time.time()
    metrics = ray.get(evaluate.remote(result.checkpoint, cfg.model_dump(mode="json"), teacher,
                                      max(1, int(scaling.eval_cpus))))
    metrics.update({k: v for k, v in result.metrics.items() if k.startswith(("distill/", "perf/"))})
    # fit = Train's worker start and teardown + setup + distillation; eval includes the task's start
    metrics.update({"perf/fit_seconds": fitted - start, "perf/eval_seconds": time.time() - fitted})
    save_result(cfg, name, {"metrics": metrics, "uri": result.checkpoint.path})
    return metrics, result.checkpoint.path


def run_trial(params: dict, *, study: dict, teacher: dict[str, float]) -> None:
    """Tune function trainable: the study's base config with this trial's sampled values, distilled and measured."""
    trial_id = ray.tune.get_context().get_trial_id()
    try:
        cfg = with_params(StudyConfig.model_validate(study), params)
    except ConfigError as err:
        raise TrialFailed(f"sampled config is invalid: {err}") from None
    metrics, uri = distill_and_evaluate(cfg, teacher, f"train-{trial_id}")
    for objective in cfg.search.objectives:
        value = metrics.get(objective.metric)
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"objective {objective.metric} is {value}")
    ray.tune.report({**metrics, "student_uri": uri})


@ray.remote
def run_seed(study: dict, teacher: dict[str, float], name: str) -> dict:
    """One seed of `kdstudy rerun`: the same distillation and evaluation as a trial, as a Ray task of its own."""
    metrics, uri = distill_and_evaluate(StudyConfig.model_validate(study), teacher, name)
    return {**metrics, "student_uri": uri}
