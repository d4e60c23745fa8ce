"""What a study will cost, estimated before any machine is booked, in three parts and their total, each part with the
source of its figure:

    distillation   the search's tokens over a measured throughput of `study.distill.train` (benchmarks/distill_gpu.py)
    evaluation     each trial's fine-tuning steps over a measured fine-tuning speed, plus the bias suite's seconds
    confirm race   its runs, from the first round (every trial decided at once) to its budget, each one distillation
                   and one evaluation

An estimate, never a promise: start-up and checkpoints are not counted, nor the retries of a fine-tuning run that
ends at chance, and a part is estimated only where a measured figure fits the study (teacher, student, sequence
length, batch, device); anything else is said to be unmeasured rather than guessed. Several GPUs of a trial are
counted as that many times one GPU's throughput: how DDP scales is not measured.
"""

from __future__ import annotations

from dataclasses import dataclass

from study.cluster.capacity import local_trials
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
    measured: str  # when, where and with which command


# `python benchmarks/distill_gpu.py` on one H200 (torch 2.11 + CUDA 13), the project at 350cf99: a random-init
# bert-base-shaped teacher (12 x 768, vocabulary 30,522), the 6-layer student, 128-token sequences, bf16 autocast, the
# projected loss (neither the bf16 teacher, compile nor Liger's fused losses, which benchmarks/gpu_check.py measures).
_H200 = "2026-12-04, one H200, `python benchmarks/distill_gpu.py`"
MEASURED = (
    Throughput("bert-base-uncased", 6, 128, 64, False, "H200", 177_000, _H200),
    Throughput("bert-base-uncased", 6, 128, 128, False, "H200", 227_000, _H200),
    Throughput("bert-base-uncased", 6, 128, 256, False, "H200", 270_000, _H200),
    Throughput("bert-base-uncased", 6, 128, 64, True, "H200", 124_000, _H200),
    Throughput("bert-base-uncased", 6, 128, 128, True, "H200", 189_000, _H200),
    Throughput("bert-base-uncased", 6, 128, 256, True, "H200", 224_000, _H200),
)
BERT_BASE = {"bert-base-uncased", "google-bert/bert-base-uncased"}


@dataclass(frozen=True)
class EvalSpeed:
    """A measured evaluation figure: one fine-tuning job's steps per second and the bias suite's seconds (None where
    not measured), for one student shape on one device (with the trial's fixed threads per worker on a CPU)."""

    student: str  # the student's shape
    device: str
    batch: int  # fine-tuning sequences per step
    steps_per_s: float  # fine-tuning steps per second, one job
    bias_metrics: tuple[str, ...]
    bias_seconds: float | None  # the bias suite, once
    measured: str  # when, where and how


# CPU: benchmarks/objective_noise.py (its fine-tuning runs' seconds): the smoke world's 2-layer student on world_cola
# with the world's recipe (500 steps at batch 64, then the validation examples scored: 39 s a run, the median of 24),
# and the template bias metric (3 s), one thread per job, two jobs on a 2-core CPU.
# H200: study.metrics.glue.fit on the 6-layer student of a bert-base-shaped teacher, a synthetic SST-2 of 37 tokens a
# sequence on average, in fp32 one job at a time: 46 steps/s = 1,479 examples/s (the figure benchmarks/gpu_check.py
# measures again, with bf16 beside it). The bias suite was not timed on a GPU.
MEASURED_EVAL = (
    EvalSpeed("smoke world's 2-layer student", "CPU", 64, 12.8, ("template",), 3.0,
              "2026-12-04, benchmarks/objective_noise.py, one thread per job, two jobs on a 2-core CPU"),
    EvalSpeed("6-layer bert-base student", "H200", 32, 1479 / 32, (), None,
              "2026-12-04, one H200, glue.fit in fp32 at batch 32: 1,479 examples/s"),
)


@dataclass(frozen=True)
class Part:
    """One part of the cost: GPU- (or CPU-) hours from `low` to `high`, the lines that say how, or why none."""

    low: float | None
    high: float | None
    lines: list[str]
    unit: str = ""  # "H200 GPU-hours", "CPU-hours"


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
    """Why no measured distillation figure fits, or None if one does."""
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
    if distill_tokens(cfg) is None:
        return "the distillation budget is in epochs (distill.steps unset)"
    return None


def _figure(cfg: StudyConfig, mixup: bool) -> Throughput:
    return next(m for m in MEASURED if m.batch == cfg.distill.batch_size and m.mixup == mixup
                and m.max_length == cfg.distill.max_length and m.student_layers == _student_layers(cfg))


def _may_mixup(cfg: StudyConfig) -> bool:
    modes = cfg.search.space.get("distill.mitigation.mode")
    return cfg.distill.mitigation.mode == "mixup" or (modes is not None and "mixup" in (modes.choices or []))


def _span(low: float, high: float) -> str:
    """`24.7-35.2`, or `5.2` when both ends round alike."""
    return f"{low:,.1f}" if round(low, 1) == round(high, 1) else f"{low:,.1f}-{high:,.1f}"


def distillation(cfg: StudyConfig) -> Part:
    """The search's distillation: from every trial plain KD to every trial mixup (when the space holds mixup)."""
    why = _unmeasured(cfg)
    if why is not None:
        return Part(None, None, [f"distillation  no estimate: no measured distillation throughput for this study "
                                 f"({why})"])
    plain, mixup = _figure(cfg, False), _figure(cfg, _may_mixup(cfg))
    tokens = cfg.search.num_samples * distill_tokens(cfg)
    low, high = tokens / plain.tokens_per_s / 3600, tokens / mixup.tokens_per_s / 3600
    gpus = local_trials(cfg.search) * cfg.search.scaling.num_workers
    unit = f"{plain.gpu} GPU-hours"
    span = " (every trial plain KD .. every trial mixup)" if _may_mixup(cfg) else ""
    return Part(low, high, [
        f"distillation  {tokens / 1e9:.2f}B tokens = {_span(low, high)} {unit}{span}; {gpus:g} GPUs at a time: "
        f"{_span(low / gpus, high / gpus)} hours",
        f"              source: {plain.measured}, batch {plain.batch}: {plain.tokens_per_s / 1e3:.0f}k tokens/s "
        "plain KD" + (f", {mixup.tokens_per_s / 1e3:.0f}k with mixup" if _may_mixup(cfg) else "")], unit)


def full_rerun(cfg: StudyConfig) -> list[str]:
    """The distillation of `kdstudy rerun --full` of one point (not part of the study's own cost)."""
    full = with_params(cfg, cfg.rerun.full)
    if _unmeasured(cfg) is not None or _unmeasured(full) is not None:
        return []
    plain, mixup = _figure(cfg, False), _figure(cfg, _may_mixup(cfg))
    tokens = cfg.rerun.seeds * distill_tokens(full)
    return [f"full rerun    {cfg.rerun.seeds} seeds x {distill_tokens(full) / 1e9:.2f}B tokens = "
            f"{_span(tokens / plain.tokens_per_s / 3600, tokens / mixup.tokens_per_s / 3600)} {plain.gpu} GPU-hours "
            "of distillation (`kdstudy rerun --full` of one point; not in the total)"]


def _eval_steps(cfg: StudyConfig, suite: str) -> tuple[int, bool]:
    """(fine-tuning steps of one slot of each task, summed over tasks; True if that is an upper bound)."""
    g = cfg.eval.glue if suite == "glue" else cfg.eval.world
    if g.max_steps:
        return g.max_steps * len(g.tasks), True
    if suite == "world":
        n = min(SIZES["train"], g.max_train_samples or SIZES["train"])
        return g.epochs * -(-n // g.batch_size) * len(g.tasks), False
    return 0, True  # GLUE's training sets are not known before they are loaded


def _eval_figure(cfg: StudyConfig) -> tuple[EvalSpeed | None, str | None]:
    """(the measured figure that fits the study's evaluation, or why none does)."""
    s = cfg.search.scaling
    gpu, cpu = (next(m for m in MEASURED_EVAL if (m.device == "CPU") == on_cpu) for on_cpu in (False, True))
    if s.use_gpu:
        if cfg.teacher.source not in BERT_BASE or _student_layers(cfg) != 6:
            return None, f"a {_student_layers(cfg)}-layer {cfg.teacher.source} student on a GPU (measured: the " \
                         f"{gpu.student})"
        if cfg.eval.suites != ["glue"] or cfg.eval.glue.batch_size != gpu.batch:
            return None, f"suites {cfg.eval.suites} at batch {cfg.eval.glue.batch_size} (measured on a GPU: glue at " \
                         f"batch {gpu.batch})"
        return gpu, None
    if cfg.teacher.source != "world" or cfg.world != WorldConfig() or _student_layers(cfg) != 2:
        return None, "a student other than the smoke world's 2-layer one (measured: that one, on a CPU)"
    if cfg.eval.suites != ["world"] or cfg.eval.world.batch_size != cpu.batch:
        return None, f"suites {cfg.eval.suites} at batch {cfg.eval.world.batch_size} (measured: world at batch " \
                         f"{cpu.batch})"
    if set(cfg.bias.metrics) != set(cpu.bias_metrics):
        return None, f"bias metrics {cfg.bias.metrics} (measured: {list(cpu.bias_metrics)})"
    return cpu, None


def _jobs_line(cfg: StudyConfig) -> tuple[str, int, bool]:
    """(the line saying what each trial's evaluation runs, its fine-tuning steps, True if they are an upper bound)."""
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
    line = (f"  eval     per trial {runs} fine-tuning run(s) (" + "; ".join(parts) + f") and the bias suite "
            f"{cfg.bias.metrics}, shared by the trial's {s.num_workers} worker(s)")
    return line, steps, bound


def evaluation(cfg: StudyConfig) -> tuple[Part, float | None]:
    """The search's evaluation, and one trial's (or race run's) evaluation in hours."""
    _, steps, bound = _jobs_line(cfg)
    figure, why = _eval_figure(cfg)
    if why is None and (not steps or bound and "glue" in cfg.eval.suites and not cfg.eval.glue.max_steps):
        why = "GLUE's training-set sizes are not known before the data is loaded (set eval.glue.max_steps)"
    if why is not None:
        return Part(None, None, [f"evaluation    no estimate: unmeasured ({why})"]), None
    bias = figure.bias_seconds or 0.0
    per_trial = (steps / figure.steps_per_s + bias) / 3600  # work hours, summed over the workers
    n = cfg.search.num_samples
    unit = "CPU-hours" if figure.device == "CPU" else f"{figure.device} GPU-hours"
    said = ("+ the bias suite" if figure.bias_seconds is not None else
            "(the bias suite not timed on a GPU: not counted)")
    return Part(n * per_trial, n * per_trial, [
        f"evaluation    per trial {'at most ' if bound else ''}{steps:,} fine-tuning steps {said} = "
        f"{per_trial * 60:.1f} {figure.device}-minutes; {n} trials = {n * per_trial:.2f} {unit}",
        f"              source: {figure.measured}: {figure.steps_per_s:.1f} fine-tuning steps/s"
        + (f", bias suite {figure.bias_seconds:.0f}s" if figure.bias_seconds is not None else "")
        + (" (measured on a CPU)" if figure.device == "CPU" else "")], unit), per_trial


def race_runs(cfg: StudyConfig) -> tuple[int, int] | None:
    """(runs of the confirm race's first round, its most runs), or None without a confirm stage. A confirmed trial
    runs `seeds` fresh seeds first; an anchor (the control among them) counts its search run as seed 0; at most every
    contender reaches max_seeds, and never more than the budget."""
    search = cfg.search
    c = search.confirm
    if c is None:
        return None
    anchors = len(search.anchors) if c.anchors else int(search.control_anchor is not None)
    first = c.top * c.seeds + anchors * (c.seeds - 1)
    return first, min(c.runs(c.top + anchors), c.top * c.max_seeds + anchors * (c.max_seeds - 1))


def race(cfg: StudyConfig, distill: Part, per_eval: float | None) -> Part | None:
    runs = race_runs(cfg)
    if runs is None:
        return None
    first, most = runs
    if distill.low is None or per_eval is None:
        return Part(None, None, [f"confirm race  {first}-{most} runs; no estimate: a run's distillation or evaluation "
                                 "is unmeasured"])
    n = cfg.search.num_samples
    low, high = first * (distill.low / n + per_eval), most * (distill.high / n + per_eval)
    return Part(low, high, [
        f"confirm race  {first}-{most} runs (all decided in the first round .. the budget), each a trial's "
        f"distillation and evaluation = {_span(low, high)} {distill.unit}",
        "              source: the distillation's and the evaluation's figures above"], distill.unit)


def cost_lines(cfg: StudyConfig) -> list[str]:
    """Lines for the plan: each part with its source, and their total, or why there is none."""
    distill = distillation(cfg)
    jobs, _, _ = _jobs_line(cfg)
    evaluated, per_eval = evaluation(cfg)
    raced = race(cfg, distill, per_eval)
    parts = [("distillation", distill), ("evaluation", evaluated)] + ([("confirm race", raced)] if raced else [])
    lines = [jobs, "  cost     an ESTIMATE from measured figures (start-up, checkpoints and retries not counted)"]
    lines += [f"           {line}" for _, part in parts for line in part.lines]
    missing = [name for name, part in parts if part.low is None]
    units = {part.unit for _, part in parts}
    if missing:
        lines.append(f"           total         no total: {', '.join(missing)} unmeasured")
    elif len(units) > 1:
        lines.append(f"           total         no total: the parts were measured on different devices ({units})")
    else:
        low, high = sum(p.low for _, p in parts), sum(p.high for _, p in parts)
        lines.append(f"           total         {_span(low, high)} {units.pop()}")
    lines += [f"           {line}" for line in full_rerun(cfg)]
    return lines
