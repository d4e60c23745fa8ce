"""`kdstudy run --dry-run`: what a study will do and need, from its YAML alone: no Ray, no downloads."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from study.config import StudyConfig
from study.record.folder import tracking_uri
from study.search.cost import estimate, evaluation_estimate


def _space_row(name: str, spec) -> tuple[str, str, str]:
    if spec.type == "categorical":
        values = f"one of {spec.choices}"
    else:
        values = f"{spec.type} [{spec.low:g}, {spec.high:g}]" + (" log" if spec.log else "")
        values += f" step {spec.step:g}" if spec.step else ""
    when = " and ".join(f"{k} in {v}" for k, v in spec.condition().items())
    return name, values, when


def _tokens(n: float) -> str:
    return f"{n / 1e9:.2f}B tokens" if n >= 1e9 else f"{n / 1e6:.1f}M tokens"


def _resources(cpus: float, gpus: float) -> str:
    return f"{cpus:g} CPU" + (f", {gpus:g} GPU" if gpus else "")


def plan(cfg: StudyConfig, study_dir: str) -> list:
    """Renderables (strings and tables) describing the study."""
    search, s, d = cfg.search, cfg.search.scaling, cfg.distill
    gpus = s.gpus_per_worker if s.use_gpu else 0.0
    trial_cpus = s.trial_cpus + s.num_workers * s.cpus_per_worker
    trial_gpus = s.num_workers * gpus
    sequences = d.batch_size * s.num_workers
    concurrent = search.max_concurrent_trials
    budget = (f"{d.steps} steps x {sequences} sequences ({d.batch_size} per worker x {s.num_workers}) x at most "
              f"{d.max_length} tokens = {_tokens(d.steps * sequences * d.max_length)}"
              if d.steps else f"{d.epochs:g} epoch(s) of the corpus, {sequences} sequences per step")
    corpus = cfg.corpus
    corpus_text = (f"{corpus.source}" + (f" ({corpus.name})" if corpus.name else "") + f", split {corpus.split}"
                   + (f", first {corpus.max_sentences} lines" if corpus.max_sentences else "")
                   + (f", first {corpus.max_tokens / 1e6:g}M tokens" if corpus.max_tokens else ""))
    student = (f"teacher layers {cfg.student.layers}" if cfg.student.layers
               else f"{cfg.student.n_layers or 'half the teacher'} layers")
    suites = []
    if "world" in cfg.eval.suites:
        suites.append(f"world tasks {cfg.eval.world.tasks}")
    if "glue" in cfg.eval.suites:
        g = cfg.eval.glue
        limit = f"max {g.max_steps} steps" if g.max_steps else f"{g.epochs} epochs"
        suites.append(f"GLUE {g.tasks} ({limit}, at most {g.max_train_samples or 'all'} training examples)")
    lines = [
        f"study {cfg.name} in {study_dir}",
        f"  teacher  {cfg.teacher.source}; student: {student} (DistilBERT initialisation)",
        f"  corpus   {corpus_text}",
        f"  search   {search.sampler.name} (seed {search.sampler.seed}"
        + (f", population {search.sampler.population_size}" if search.sampler.name == "nsga2" else "")
        + f"), {search.num_samples} trials, {search.max_concurrent_trials} at a time; anchors first: "
        + (", ".join(a.name for a in search.anchors) or "none"),
        "  goals    " + ", ".join(f"{o.metric} ({o.mode})" for o in search.objectives),
        f"  per trial: the trial process {_resources(s.trial_cpus, 0)}; {s.num_workers} Ray Train worker(s) x "
        f"{_resources(s.cpus_per_worker, gpus)}, which distil, then share the student's evaluation"
        + (" (rank 0 alone: search.scaling.evaluation rank0)" if s.evaluation == "rank0" else ""),
        f"  at {concurrent} concurrent trial(s): {_resources(trial_cpus * concurrent, trial_gpus * concurrent)} in all",
        f"  budget   per trial {budget}; {search.num_samples} trials"
        + (f" = {_tokens(search.num_samples * d.steps * sequences * d.max_length)}" if d.steps else ""),
        f"  measure  bias {cfg.bias.metrics} (primary {cfg.bias.primary})"
        + ("; " + "; ".join(suites) if suites else ""),
        *estimate(cfg),
        *evaluation_estimate(cfg),
        f"  rerun    {cfg.rerun.seeds} seeds; --full sets " + (", ".join(f"{k}={v}" for k, v in cfg.rerun.full.items())
                                                              or "nothing more"),
        f"  storage  {search.storage_path}; tracking {tracking_uri(cfg.tracking.uri, Path(study_dir))}",
    ]
    table = Table(title="search space")
    for column in ("parameter", "values", "sampled when"):
        table.add_column(column, overflow="fold")  # whole names, wrapped, never cut
    for name, spec in search.space.items():
        table.add_row(*_space_row(name, spec))
    return [*lines, table]

