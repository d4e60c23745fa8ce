"""Measuring a model: the bias metrics and the eval suites (the world's tasks, GLUE), for teachers and students.

`evaluate_model` measures any masked LM on the config's bias metrics and suites; `teacher_metrics` does it once per
(teacher, bias and eval config) and caches the numbers under the cache root, so every trial of a study, and every
study on the same teacher, compares against the same values; `student_metrics` adds the comparison with the teacher
(bias/amplification). Used by `kdstudy distill`, by a trial's Ray Train workers and by the study's driver alike.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import torch

from study.catalog import GLUE_TASKS, WORLD_TASKS
from study.config import StudyConfig
from study.distill.models import load_masked_lm
from study.experiment.sources import teacher_dir, teacher_identity
from study.metrics import bias, glue
from study.runtime import cache_root
from study.world import tasks as world_tasks
from study.world.build import build_world

log = logging.getLogger(__name__)


def evaluate_model(model_dir: str | Path, cfg: StudyConfig,
                   device: str | torch.device | None = None) -> tuple[dict[str, float], dict]:
    """One masked LM on cfg's bias metrics and eval suites, on the GPU if there is one: (flat metrics, per-item
    bias details)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_masked_lm(model_dir)
    scalars, details = bias.measure(model.to(device), tokenizer, cfg.bias)
    if "world" in cfg.eval.suites:
        world = build_world(cfg.world)
        scalars |= glue.evaluate(model_dir, cfg.eval.world, world_tasks.task_dir(world), WORLD_TASKS, "world",
                                 device)
    if "glue" in cfg.eval.suites:
        scalars |= glue.evaluate(model_dir, cfg.eval.glue, cfg.eval.glue.data_dir, GLUE_TASKS, "glue", device)
    return scalars, details


def _teacher_cache(cfg: StudyConfig) -> Path:
    """Where teacher_metrics keeps a teacher's numbers: keyed by the teacher and the bias and eval config."""
    measured = {"bias": cfg.bias.model_dump(mode="json"), "suites": cfg.eval.suites}
    if "world" in cfg.eval.suites:
        measured["world"] = cfg.eval.world.model_dump(mode="json")
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


def teacher_metrics(cfg: StudyConfig) -> tuple[dict[str, float], dict]:
    """The teacher's evaluate_model, measured once per (teacher, bias and eval config) and cached."""
    path = _teacher_cache(cfg)
    cached = _read_teacher_cache(path)
    if cached is not None:
        return cached
    scalars, details = evaluate_model(teacher_dir(cfg), cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"teacher": teacher_identity(cfg), "scalars": scalars, "details": details}))
    os.replace(tmp, path)
    log.info(f"teacher measured and cached at {path}")
    return scalars, details


def student_metrics(student_dir: str | Path, cfg: StudyConfig, teacher: dict[str, float]) -> tuple[dict, dict]:
    """evaluate_model of the student, plus the teacher's values under teacher/ and bias/amplification."""
    scalars, details = evaluate_model(student_dir, cfg)
    return scalars | bias.amplification(scalars, teacher, cfg.bias.primary), details
