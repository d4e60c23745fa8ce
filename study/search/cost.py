"""What a study will cost on GPUs, estimated before any is booked: its distillation tokens over a measured
throughput of `study.distill.train`. An estimate, never a promise: only distillation is counted (not evaluation,
start-up or checkpoints), and only where a measured figure fits the study's teacher, student, sequence length,
batch per GPU and mitigation; anything else is said to be unmeasured rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from study.config import StudyConfig, with_params


@dataclass(frozen=True)
class Throughput:
    teacher: str  # the teacher's shape, as the hub names it
    student_layers: int
    max_length: int  # tokens per sequence
    batch: int  # sequences per GPU per step
    mixup: bool  # mixup inside distillation (placement replace) costs a second teacher pass
    gpu: str
    tokens_per_s: float  # per GPU
    measured: str  # when and how


# Measured on the lent machine (../shared/gpu/README.md, bench_kd.py): study.distill.train with bf16 autocast on one
# H100 80GB, a bert-base-shaped teacher (12 x 768, vocabulary 30,522) and the 6-layer student, 128-token sequences.
# The GPU-speed work replaces these with its own benchmark's figures.
_H100 = "2026-11-26, one H100, study.distill.train"
MEASURED = (
    Throughput("bert-base-uncased", 6, 128, 64, False, "H100", 161_000, _H100),
    Throughput("bert-base-uncased", 6, 128, 256, False, "H100", 209_000, _H100),
    Throughput("bert-base-uncased", 6, 128, 64, True, "H100", 102_000, _H100),
    Throughput("bert-base-uncased", 6, 128, 256, True, "H100", 139_000, _H100),
)
BERT_BASE = {"bert-base-uncased", "google-bert/bert-base-uncased"}


def distill_tokens(cfg: StudyConfig) -> float | None:
    """Tokens one distillation sees (steps x sequences x max_length), or None when its budget is in epochs."""
    d, s = cfg.distill, cfg.search.scaling if cfg.search else None
    workers = s.num_workers if s else 1
    return d.steps * d.batch_size * workers * d.max_length if d.steps else None


def _student_layers(cfg: StudyConfig) -> int | None:
    if cfg.student.layers:
        return len(cfg.student.layers)
    return cfg.student.n_layers or (6 if cfg.teacher.source in BERT_BASE else None)  # default: half the teacher


def _unmeasured(cfg: StudyConfig) -> str | None:
    """Why no measured figure fits, or None if one does."""
    s = cfg.search.scaling
    if not s.use_gpu:
        return "the study runs on CPUs"
    if cfg.teacher.source not in BERT_BASE:
        return f"teacher {cfg.teacher.source} (measured: bert-base-uncased)"
    batches = sorted({m.batch for m in MEASURED})
    fits = [m for m in MEASURED if m.student_layers == _student_layers(cfg) and m.max_length == cfg.distill.max_length]
    if not fits:
        return f"student {_student_layers(cfg)} layers at {cfg.distill.max_length} tokens (measured: 6 layers at 128)"
    if cfg.distill.batch_size not in batches:
        return f"batch {cfg.distill.batch_size} per GPU (measured: {', '.join(map(str, batches))})"
    if s.gpus_per_worker != 1:
        return f"{s.gpus_per_worker:g} GPUs per worker (measured: 1)"
    return None


def _figure(cfg: StudyConfig, mixup: bool) -> Throughput:
    return next(m for m in MEASURED if m.batch == cfg.distill.batch_size and m.mixup == mixup
                and m.max_length == cfg.distill.max_length and m.student_layers == _student_layers(cfg))


def _hours(tokens: float, per_s: float) -> str:
    return f"{tokens / per_s / 3600:,.1f}"


def estimate(cfg: StudyConfig) -> list[str]:
    """Lines for the plan: GPU-hours of the search's and of a full rerun's distillation, or why there is no
    estimate."""
    why = _unmeasured(cfg)
    if why is None and distill_tokens(cfg) is None:
        why = "the distillation budget is in epochs (distill.steps unset)"
    if why is not None:
        return [f"  cost     no estimate: no measured distillation throughput for this study ({why})"]
    plain, mixup = _figure(cfg, False), _figure(cfg, True)
    search = cfg.search.num_samples * distill_tokens(cfg)
    full = with_params(cfg, cfg.rerun.full)
    rerun = cfg.rerun.seeds * distill_tokens(full)
    modes = cfg.search.space.get("distill.mitigation.mode")
    may_mixup = cfg.distill.mitigation.mode == "mixup" or (modes is not None and "mixup" in (modes.choices or []))
    gpus = cfg.search.concurrent_trials() * cfg.search.scaling.num_workers
    span = "" if not may_mixup else " (every trial plain KD .. every trial mixup)"

    def hours(tokens: float) -> str:
        low = _hours(tokens, plain.tokens_per_s)
        return f"{low}-{_hours(tokens, mixup.tokens_per_s)}" if may_mixup else low

    return [
        f"  cost     an ESTIMATE of the distillation alone, from measured throughput ({plain.measured}, batch "
        f"{plain.batch}: {plain.tokens_per_s / 1e3:.0f}k tokens/s plain KD, {mixup.tokens_per_s / 1e3:.0f}k "
        "with mixup)",
        f"           search      {search / 1e9:.2f}B tokens = {hours(search)} {plain.gpu} GPU-hours{span}; "
        f"{gpus:g} GPUs at a time: {hours(search / gpus)} hours",
        f"           full rerun  {cfg.rerun.seeds} seeds x {distill_tokens(full) / 1e9:.2f}B tokens = "
        f"{hours(rerun)} {plain.gpu} GPU-hours (`kdstudy rerun --full` of one point)",
        "           not counted: evaluation, start-up, checkpoints; no figure measured on other GPUs "
        "(cluster.yaml's A10G)",
    ]


def evaluation_budget(cfg: StudyConfig) -> str:
    """The fine-tuning each trial's evaluation runs, in steps and examples (no throughput measured for it)."""
    parts = []
    for suite in cfg.eval.suites:
        g = cfg.eval.glue if suite == "glue" else cfg.eval.world
        parts.append(f"{suite}: {len(g.tasks)} task(s) x " + (
            f"at most {g.max_steps} steps x {g.batch_size} = {len(g.tasks) * g.max_steps * g.batch_size:,} examples"
            if g.max_steps else f"{g.epochs} epoch(s) of their training sets"))
    return ("  eval     per trial, fine-tuning " + "; ".join(parts) if parts else "  eval     per trial, bias only") + (
        "; then the bias suite. Not measured, so not in the cost below")
