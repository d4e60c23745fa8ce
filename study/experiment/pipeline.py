"""`kdstudy distill`: one distillation without a search. Teacher and corpus, distil, measure teacher and student,
write the results:

    kdstudy distill search_spaces/smoke.yaml --out runs/smoke-kd

writes runs/smoke-kd/student/ (a transformers model dir with its tokenizer), runs/smoke-kd/metrics.json (one flat
object, with the device it ran on), runs/smoke-kd/bias_details.json (per-occupation scores) and
runs/smoke-kd/config.yaml (the final config with the git commit). A study's trial runs the same parts
(study.experiment.sources, study.distill, study.experiment.evaluation) on Ray.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from study.config import StudyConfig
from study.device import DEVICE_TAG, describe
from study.distill.loop import train
from study.distill.models import make_student, save_student
from study.experiment.evaluation import student_metrics, teacher_metrics
from study.experiment.sources import load_teacher_and_corpus_ids
from study.runtime import write_snapshot

log = logging.getLogger(__name__)


def run_distillation(cfg: StudyConfig, out: Path, device: torch.device | str = "cpu") -> dict:
    """Distil once on `device` (study.device.resolve_device chooses it) and return the flat metrics that were also
    written to out/metrics.json, `device` among them (study.device.describe)."""
    device = torch.device(device)
    out.mkdir(parents=True, exist_ok=True)
    write_snapshot(out / "config.yaml", cfg)
    teacher, tokenizer, corpus_ids = load_teacher_and_corpus_ids(cfg)
    log.info(f"device: {describe(device)}; corpus: {len(corpus_ids)} sequences; teacher: "
             f"{teacher.config.num_hidden_layers} layers, {sum(p.numel() for p in teacher.parameters()) / 1e6:.2f}M "
             "parameters")

    teacher_scalars, teacher_details = teacher_metrics(cfg, device)
    student = make_student(teacher, cfg.student.n_layers, cfg.student.layers)
    log.info(f"student: layers {student.config.kdstudy_teacher_layers} of the teacher, "
             f"{sum(p.numel() for p in student.parameters()) / 1e6:.2f}M parameters; "
             f"mitigation {cfg.distill.mitigation.mode}")
    metrics: dict = train(cfg.distill, teacher, student, tokenizer, corpus_ids, device=device,
                          checkpoint_dir=out / "checkpoint")
    student_scalars, student_details = student_metrics(save_student(student, tokenizer, out / "student"), cfg,
                                                       teacher_scalars, device)
    metrics.update(student_scalars)
    metrics[DEVICE_TAG] = describe(device)
    metrics["perf/threads"] = float(cfg.threads)  # the numbers are those of this thread count (StudyConfig.threads)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (out / "bias_details.json").write_text(json.dumps({"teacher": teacher_details, "student": student_details}))
    return metrics
