"""One distillation without a search: teacher and corpus, distil, measure teacher and student, write the results.

    kdstudy distill search_spaces/smoke.yaml --out runs/smoke-kd

writes runs/smoke-kd/student/ (a transformers model dir with its tokenizer), runs/smoke-kd/metrics.json (one flat
object), runs/smoke-kd/bias_details.json (per-occupation scores) and runs/smoke-kd/config.yaml (the final config).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

import yaml

from study import bias
from study.config import StudyConfig
from study.data import load_corpus, tokenize
from study.distill import train
from study.models import load_masked_lm, make_student
from study.world import build_world, cache_root, generate_corpus, world_key


def load_teacher_and_corpus(cfg: StudyConfig, log=print):
    """(teacher, tokenizer, corpus sentences) as the config asks: the built-in world, or a hub/local teacher."""
    world_sentences = None
    if cfg.teacher.source == "world":
        world = build_world(cfg.world, log=log)
        teacher, tokenizer = load_masked_lm(world.teacher_dir)
        world_sentences = world.sentences
    else:
        teacher, tokenizer = load_masked_lm(cfg.teacher.source)
        if cfg.corpus.source == "world":  # a hub teacher can still be distilled on the world's text
            world_sentences = generate_corpus(cfg.world)
    return teacher, tokenizer, load_corpus(cfg.corpus, world_sentences)


def teacher_identity(cfg: StudyConfig) -> str:
    """What the teacher is: the world's key, a local dir with its last change, or a hub name."""
    if cfg.teacher.source == "world":
        return f"world:{world_key(cfg.world)}"
    path = Path(cfg.teacher.source).expanduser()
    if path.is_dir():
        stamp = max((f.stat().st_mtime for f in path.iterdir()), default=0)
        return f"dir:{path.resolve()}:{stamp}"
    return f"hub:{cfg.teacher.source}"


def teacher_bias(teacher, tokenizer, cfg: StudyConfig, log=print) -> tuple[dict, dict]:
    """The teacher's bias metrics, measured once per (teacher, bias config) and cached under the cache root."""
    blob = json.dumps({"teacher": teacher_identity(cfg), "bias": cfg.bias.model_dump(mode="json")}, sort_keys=True)
    path = cache_root() / "teacher_bias" / f"{hashlib.sha256(blob.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        return cached["scalars"], cached["details"]
    scalars, details = bias.measure(teacher, tokenizer, cfg.bias)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"teacher": teacher_identity(cfg), "scalars": scalars, "details": details}))
    os.replace(tmp, path)
    log(f"teacher bias measured and cached at {path}")
    return scalars, details


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def run_distillation(cfg: StudyConfig, out: Path, log=print) -> dict:
    """Distil once and return the flat metrics that were also written to out/metrics.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump({**cfg.model_dump(mode="json"), "git_commit": git_commit()},
                                                    sort_keys=False))
    teacher, tokenizer, sentences = load_teacher_and_corpus(cfg, log)
    corpus_ids = tokenize(sentences, tokenizer, cfg.distill.max_length)
    log(f"corpus: {len(corpus_ids)} sequences; teacher: {teacher.config.num_hidden_layers} layers, "
        f"{sum(p.numel() for p in teacher.parameters()) / 1e6:.2f}M parameters")

    teacher_scalars, teacher_details = teacher_bias(teacher, tokenizer, cfg, log)
    student = make_student(teacher, cfg.student.n_layers, cfg.student.layers)
    log(f"student: layers {student.config.kdstudy_teacher_layers} of the teacher, "
        f"{sum(p.numel() for p in student.parameters()) / 1e6:.2f}M parameters; mitigation {cfg.distill.mitigation.mode}")
    metrics: dict = train(cfg.distill, teacher, student, tokenizer, corpus_ids, checkpoint_dir=out / "checkpoint")
    student_bias, student_details = bias.measure(student, tokenizer, cfg.bias)

    metrics.update(student_bias)
    metrics.update(bias.amplification(student_bias, teacher_scalars, cfg.bias.primary))
    student.save_pretrained(out / "student")
    tokenizer.save_pretrained(out / "student")
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (out / "bias_details.json").write_text(json.dumps({"teacher": teacher_details, "student": student_details}))
    return metrics
