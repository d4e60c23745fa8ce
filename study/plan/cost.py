"""What a study will cost, estimated before any machine is booked, in two parts, each with the source of its figure:
the distillation (its tokens over a measured throughput of `study.distill.train`) and the evaluation (its fine-tuning
steps over a measured fine-tuning speed, plus the bias suite's measured seconds). An estimate, never a promise:
start-up and checkpoints are not counted, nor the retries of a fine-tuning run that ends at chance, and a part is
estimated only where a measured figure fits the study (teacher, student, sequence length, batch, device); anything
else is said to be unmeasured rather than guessed.
"""

from __future__ import annotations

from dataclasses import dataclass

from study.config import StudyConfig, WorldConfig, with_params
from study.world.tasks import SIZES


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
        return [f"  cost     distillation: no estimate: no measured distillation throughput for this study ({why})"]
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
        f"  cost     distillation: an ESTIMATE from measured throughput ({plain.measured}, batch "
        f"{plain.batch}: {plain.tokens_per_s / 1e3:.0f}k tokens/s plain KD, {mixup.tokens_per_s / 1e3:.0f}k "
        "with mixup)",
        f"           search      {search / 1e9:.2f}B tokens = {hours(search)} {plain.gpu} GPU-hours{span}; "
        f"{gpus:g} GPUs at a time: {hours(search / gpus)} hours",
        f"           full rerun  {cfg.rerun.seeds} seeds x {distill_tokens(full) / 1e9:.2f}B tokens = "
        f"{hours(rerun)} {plain.gpu} GPU-hours (`kdstudy rerun --full` of one point)",
        "           not counted: start-up, checkpoints; no figure measured on other GPUs (cluster.yaml's A10G)",
    ]


@dataclass(frozen=True)
class EvalSpeed:
    """A measured evaluation figure: one fine-tuning slot's steps per second and the bias suite's seconds, for one
    student shape on one device (with the trial's fixed threads per worker on a CPU)."""

    student: str  # the student's shape
    device: str
    batch: int  # fine-tuning sequences per step
    steps_per_s: float  # fine-tuning steps per second, one job
    bias_metrics: tuple[str, ...]
    bias_seconds: float  # the bias suite, once
    measured: str  # when, where and how


# Measured with benchmarks/objective_noise.py (its fine-tuning runs' seconds): the smoke world's 2-layer student on
# world_cola with the world's recipe (500 steps at batch 64, then 10,000 validation examples scored: 39 s a run, the
# median of 24), and the template bias metric (3 s), one thread per job, two jobs on a 2-core CPU. CPU figures: they
# say nothing of a GPU.
MEASURED_EVAL = (
    EvalSpeed("smoke world's 2-layer student", "CPU", 64, 12.8, ("template",), 3.0,
              "2026-12-04, benchmarks/objective_noise.py, one thread per job, two jobs on a 2-core CPU"),
)


def _eval_steps(cfg: StudyConfig, suite: str) -> tuple[int, bool]:
    """(fine-tuning steps of one slot of each task, summed over tasks; True if that is an upper bound)."""
    g = cfg.eval.glue if suite == "glue" else cfg.eval.world
    if g.max_steps:
        return g.max_steps * len(g.tasks), True
    if suite == "world":
        n = min(SIZES["train"], g.max_train_samples or SIZES["train"])
        return g.epochs * -(-n // g.batch_size) * len(g.tasks), False
    return 0, True  # GLUE's training sets are not known before they are loaded


def _eval_unmeasured(cfg: StudyConfig) -> tuple[EvalSpeed | None, str | None]:
    """(the measured figure that fits the study's evaluation, or why none does)."""
    s = cfg.search.scaling
    cpu = [m for m in MEASURED_EVAL if m.device == "CPU"]
    if s.use_gpu:
        return None, (f"no fine-tuning steps/s or bias-suite seconds measured on a GPU for a "
                      f"{_student_layers(cfg)}-layer {cfg.teacher.source} student at batch {cfg.eval.glue.batch_size}, "
                      f"{cfg.eval.glue.max_length} tokens; the {cpu[0].student}'s figures were measured on a CPU "
                      "and are not GPU figures")
    if cfg.teacher.source != "world" or cfg.world != WorldConfig() or _student_layers(cfg) != 2:
        return None, "a student other than the smoke world's 2-layer one (measured: that one, on a CPU)"
    if cfg.eval.suites != ["world"] or cfg.eval.world.batch_size != cpu[0].batch:
        return None, (f"suites {cfg.eval.suites} at batch {cfg.eval.world.batch_size} (measured: world at batch "
                      f"{cpu[0].batch})")
    if set(cfg.bias.metrics) != set(cpu[0].bias_metrics):
        return None, f"bias metrics {cfg.bias.metrics} (measured: {list(cpu[0].bias_metrics)})"
    return cpu[0], None


def evaluation_estimate(cfg: StudyConfig) -> list[str]:
    """Lines for the plan: the fine-tuning each trial's evaluation runs (jobs and steps), and its hours from a
    measured figure, or why there is no estimate."""
    s = cfg.search.scaling
    runs, steps, bound, parts = 0, 0, False, []
    for suite in cfg.eval.suites:
        g = cfg.eval.glue if suite == "glue" else cfg.eval.world
        slot_steps, upper = _eval_steps(cfg, suite)
        runs += len(g.tasks) * g.seeds
        steps += slot_steps * g.seeds
        bound |= upper
        each = (f"at most {g.max_steps} steps" if g.max_steps else
                f"{slot_steps // len(g.tasks):,} steps" if suite == "world" else f"{g.epochs} epoch(s)")
        parts.append(f"{suite}: {len(g.tasks)} task(s) x {g.seeds} seed(s), {each} x {g.batch_size} sequences each")
    lines = [f"  eval     per trial {runs} fine-tuning run(s) (" + "; ".join(parts) + f") and the bias suite "
             f"{cfg.bias.metrics}, shared by the trial's {s.num_workers} worker(s)"]
    figure, why = _eval_unmeasured(cfg)
    if why is None and (not steps or bound and "glue" in cfg.eval.suites and not cfg.eval.glue.max_steps):
        why = "GLUE's training-set sizes are not known before the data is loaded (set eval.glue.max_steps)"
    if why is not None:
        return [*lines, f"  cost     evaluation: no estimate: unmeasured ({why})"]
    per_trial = steps / figure.steps_per_s + figure.bias_seconds  # work seconds, summed over the workers
    search = cfg.search.num_samples * per_trial
    return [*lines,
            f"  cost     evaluation: an ESTIMATE from figures measured on a {figure.device} ({figure.measured}: "
            f"{figure.steps_per_s:.1f} fine-tuning steps/s, bias suite {figure.bias_seconds:.0f}s)",
            f"           per trial {'at most ' if bound else ''}{steps:,} steps + the bias suite = "
            f"{per_trial / 60:.1f} {figure.device}-minutes, {per_trial / 60 / s.num_workers:.1f} minutes on "
            f"{s.num_workers} worker(s); search {search / 3600:.2f} {figure.device}-hours "
            "(retries of a run at chance not counted)"]
