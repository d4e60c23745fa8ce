"""One distillation without a search, and the measuring every study trial shares.

`evaluate_model` measures any masked LM on the config's bias metrics and eval suites; `teacher_metrics` does it once
per teacher (cached); `student_metrics` adds the comparison with the teacher (bias/amplification). `run_distillation`
is `kdstudy distill`: teacher and corpus, distil, measure teacher and student, write the results:

    kdstudy distill search_spaces/smoke.yaml --out runs/smoke-kd

writes runs/smoke-kd/student/ (a transformers model dir with its tokenizer), runs/smoke-kd/metrics.json (one flat
object), runs/smoke-kd/bias_details.json (per-occupation scores) and runs/smoke-kd/config.yaml (the final config).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
from pathlib import Path

import torch
import yaml

from study import bias, glue, world_tasks
from study.config import StudyConfig
from study.data import load_corpus, tokenize
from study.distill import train
from study.models import load_masked_lm, make_student
from study.world import build_world, cache_root, generate_corpus, world_key


def quiet_libraries() -> None:
    """Keep transformers', datasets' and the hub's progress bars and retries out of kdstudy's own output."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import datasets
    import huggingface_hub
    import transformers

    huggingface_hub.utils.logging.set_verbosity_error()  # offline retries would print a line per attempt
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."


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


def load_teacher_and_corpus_ids(cfg: StudyConfig, log=print):
    """(teacher, tokenizer, corpus as word-piece ids within corpus.max_tokens) for a distillation."""
    teacher, tokenizer, sentences = load_teacher_and_corpus(cfg, log)
    return teacher, tokenizer, tokenize(sentences, tokenizer, cfg.distill.max_length, cfg.corpus.max_tokens)


def teacher_dir(cfg: StudyConfig, log=print) -> str:
    """Where the teacher loads from: the built-in world's teacher dir (built if need be), or teacher.source."""
    return str(build_world(cfg.world, log=log).teacher_dir) if cfg.teacher.source == "world" else cfg.teacher.source


def evaluate_model(model_dir: str | Path, cfg: StudyConfig, log=print,
                   device: str | torch.device | None = None) -> tuple[dict[str, float], dict]:
    """One masked LM on cfg's bias metrics and eval suites, on the GPU if there is one: (flat metrics, per-item
    bias details)."""
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, tokenizer = load_masked_lm(model_dir)
    scalars, details = bias.measure(model.to(device), tokenizer, cfg.bias)
    if "world" in cfg.eval.suites:
        world = build_world(cfg.world, log=log)
        scalars |= glue.evaluate(model_dir, cfg.eval.world, world_tasks.task_dir(world), world_tasks.TASKS, "world",
                                 log, device)
    if "glue" in cfg.eval.suites:
        scalars |= glue.evaluate(model_dir, cfg.eval.glue, cfg.eval.glue.data_dir, glue.TASKS, "glue", log, device)
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


def teacher_metrics(cfg: StudyConfig, log=print) -> tuple[dict[str, float], dict]:
    """The teacher's evaluate_model, measured once per (teacher, bias and eval config) and cached under the cache
    root: every trial of a study, and every study on the same teacher, compares against the same numbers."""
    path = _teacher_cache(cfg)
    cached = _read_teacher_cache(path)
    if cached is not None:
        return cached
    scalars, details = evaluate_model(teacher_dir(cfg, log), cfg, log)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp-{os.getpid()}")
    tmp.write_text(json.dumps({"teacher": teacher_identity(cfg), "scalars": scalars, "details": details}))
    os.replace(tmp, path)
    log(f"teacher measured and cached at {path}")
    return scalars, details


def student_metrics(student_dir: str | Path, cfg: StudyConfig, teacher: dict[str, float], log=print) -> tuple[dict, dict]:
    """evaluate_model of the student, plus the teacher's values under teacher/ and bias/amplification."""
    scalars, details = evaluate_model(student_dir, cfg, log)
    return scalars | bias.amplification(scalars, teacher, cfg.bias.primary), details


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent)
        return out.stdout.strip() or None
    except OSError:
        return None


def save_student(student, tokenizer, directory: Path) -> Path:
    student.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def run_distillation(cfg: StudyConfig, out: Path, log=print) -> dict:
    """Distil once and return the flat metrics that were also written to out/metrics.json."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump({**cfg.model_dump(mode="json"), "git_commit": git_commit()},
                                                    sort_keys=False))
    teacher, tokenizer, corpus_ids = load_teacher_and_corpus_ids(cfg, log)
    log(f"corpus: {len(corpus_ids)} sequences; teacher: {teacher.config.num_hidden_layers} layers, "
        f"{sum(p.numel() for p in teacher.parameters()) / 1e6:.2f}M parameters")

    teacher_scalars, teacher_details = teacher_metrics(cfg, log)
    student = make_student(teacher, cfg.student.n_layers, cfg.student.layers)
    log(f"student: layers {student.config.kdstudy_teacher_layers} of the teacher, "
        f"{sum(p.numel() for p in student.parameters()) / 1e6:.2f}M parameters; mitigation {cfg.distill.mitigation.mode}")
    metrics: dict = train(cfg.distill, teacher, student, tokenizer, corpus_ids, checkpoint_dir=out / "checkpoint")
    student_scalars, student_details = student_metrics(save_student(student, tokenizer, out / "student"), cfg,
                                                       teacher_scalars, log)
    metrics.update(student_scalars)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    (out / "bias_details.json").write_text(json.dumps({"teacher": teacher_details, "student": student_details}))
    return metrics
