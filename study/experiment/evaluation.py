"""Measuring a model: the bias metrics and the eval suites (the world's tasks, GLUE), for teachers and students.

`evaluate_model` measures any masked LM on the config's bias metrics and suites: its independent jobs (the bias suite,
each (task, fine-tuning seed slot)) run here one after another and are combined, the same jobs that a trial's workers
share (study.experiment.shared_evaluation); `teacher_metrics` does it once per
(teacher, bias and eval config) and caches the numbers under the cache root, so every trial of a study, and every
study on the same teacher, compares against the same values; `student_metrics` adds the comparison with the teacher
(bias/amplification). Used by `kdstudy distill`, by a trial's Ray Train workers and by the study's driver alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from study.catalog import GLUE_TASKS, WORLD_TASKS, Task
from study.config import GlueConfig, StudyConfig
from study.device import resolve_device
from study.distill.models import load_masked_lm
from study.experiment.job_runner import jobs_at_once, run_jobs
from study.experiment.sources import teacher_dir, teacher_identity
from study.metrics import bias, glue
from study.runtime import cache_root
from study.world import tasks as world_tasks
from study.world.build import build_world

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Job:
    """One independent part of a model's evaluation: the bias suite, or one seed slot of one eval-suite task."""

    suite: str  # "bias", or an eval suite ("world", "glue")
    task: str | None = None
    slot: int | None = None

    @property
    def name(self) -> str:
        return self.suite if self.task is None else f"{self.suite}/{self.task} seed slot {self.slot}"


def _suite(cfg: StudyConfig, suite: str) -> tuple[GlueConfig, dict[str, Task], str | Path | None]:
    """(fine-tuning recipe, task table, data folder) of an eval suite."""
    if suite == "world":
        return cfg.eval.world, WORLD_TASKS, world_tasks.task_dir(build_world(cfg.world))
    return cfg.eval.glue, GLUE_TASKS, cfg.eval.glue.data_dir


def evaluation_jobs(cfg: StudyConfig) -> list[Job]:
    """Every job of cfg's evaluation: the bias suite first (it loads the model as a masked LM, so a model that cannot
    be used is one line naming it before any fine-tuning), then each (task, seed slot) of each suite. A slot keeps its
    chance-level retries inside it (glue.run_slot), so splitting at slots changes no seed and no number."""
    jobs = []
    for suite in cfg.eval.suites:
        recipe = _suite_config(cfg, suite)
        jobs += [Job(suite, task, slot) for task in recipe.tasks for slot in range(recipe.seeds)]
    return [Job("bias"), *jobs]


def _suite_config(cfg: StudyConfig, suite: str) -> GlueConfig:
    return cfg.eval.world if suite == "world" else cfg.eval.glue


def run_job(job: Job, model_dir: str | Path, cfg: StudyConfig, device: str | torch.device,
            loaded: dict | None = None):
    """One job's result: (bias scalars, bias details) for the bias suite, a glue.SlotRun for a seed slot. `loaded`
    keeps each task's encoded data between the slots of one task that run in this process."""
    if job.task is None:
        model, tokenizer = load_masked_lm(model_dir)
        return bias.measure(model.to(device), tokenizer, cfg.bias)
    recipe, tasks, data_dir = _suite(cfg, job.suite)
    loaded = {} if loaded is None else loaded
    key = (job.suite, job.task)
    if key not in loaded:
        loaded.clear()  # one task's data at a time
        loaded[key] = glue.load_task(model_dir, job.task, recipe, data_dir, tasks)
    return glue.run_slot(model_dir, job.task, loaded[key], recipe, job.slot, device)


def combine(cfg: StudyConfig, results: dict[Job, object]) -> tuple[dict[str, float], dict]:
    """evaluate_model's (flat metrics, bias details) from every job's result, wherever and in whatever order the
    jobs ran: the slots of a task are combined in slot order, the tasks in cfg's order."""
    scalars, details = results[Job("bias")]
    scalars = dict(scalars)
    for suite in cfg.eval.suites:
        recipe = _suite_config(cfg, suite)
        by_task = {task: glue.combine_slots([results[Job(suite, task, slot)] for slot in range(recipe.seeds)])
                   for task in recipe.tasks}
        scalars |= glue.combine_tasks(recipe, suite, by_task)
    return scalars, details


def evaluate_model(model_dir: str | Path, cfg: StudyConfig,
                   device: str | torch.device | None = None) -> tuple[dict[str, float], dict]:
    """One masked LM on cfg's bias metrics and eval suites, on the GPU if there is one, every job in this process (on
    CUDA eval.jobs_per_gpu fine-tuning slots at once, study.experiment.job_runner): (flat metrics, per-item bias
    details)."""
    device = device or resolve_device()
    results = {}
    for job, result, _ in run_jobs(run_job, evaluation_jobs(cfg), model_dir, cfg, device, jobs_at_once(cfg, device)):
        if isinstance(result, Exception):
            raise result
        results[job] = result
    return combine(cfg, results)


def _teacher_cache(cfg: StudyConfig) -> Path:
    """Where teacher_metrics keeps a teacher's numbers: keyed by the teacher and the bias and eval config."""
    measured = {"bias": cfg.bias.model_dump(mode="json"), "suites": cfg.eval.suites}
    if "world" in cfg.eval.suites:  # the recipe and the task files it is scored on
        measured["world"] = cfg.eval.world.model_dump(mode="json") | {"task_files": world_tasks.TASKS_KEY}
    if "glue" in cfg.eval.suites:
        measured["glue"] = cfg.eval.glue.model_dump(mode="json")
    blob = json.dumps({"teacher": teacher_identity(cfg), **measured}, sort_keys=True)
    return cache_root() / "teacher_metrics" / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"


def _read_teacher_cache(path: Path) -> tuple[dict[str, float], dict] | None:
    if not path.is_file():
        return None
    cached = json.loads(path.read_text())
    return cached["scalars"], cached["details"]


def cached_teacher_metrics(cfg: StudyConfig) -> tuple[dict[str, float], dict] | None:
    """teacher_metrics if this machine measured them before, else None (nothing is measured)."""
    return _read_teacher_cache(_teacher_cache(cfg))


def teacher_metrics(cfg: StudyConfig, device: str | torch.device | None = None) -> tuple[dict[str, float], dict]:
    """The teacher's evaluate_model, measured once per (teacher, bias and eval config) and cached (on whichever
    device measured it first: devices differ within bf16's tolerance)."""
    path = _teacher_cache(cfg)
    cached = _read_teacher_cache(path)
    if cached is not None:
        return cached
    scalars, details = evaluate_model(teacher_dir(cfg), cfg, device)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"teacher": teacher_identity(cfg), "scalars": scalars, "details": details}))
    os.replace(tmp, path)
    log.info(f"teacher measured and cached at {path}")
    return scalars, details


def student_metrics(student_dir: str | Path, cfg: StudyConfig, teacher: dict[str, float],
                    device: str | torch.device | None = None) -> tuple[dict, dict]:
    """evaluate_model of the student, plus the teacher's values under teacher/ and bias/amplification."""
    scalars, details = evaluate_model(student_dir, cfg, device)
    return scalars | bias.amplification(scalars, teacher, cfg.bias.primary), details
