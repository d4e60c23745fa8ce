"""A study's Pareto front as data, a table and JSON: which trials, their params, objectives, the knee, the
hypervolume."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from analysis import pareto
from analysis.runs import StudyRecord, Trial
from study.record.tracking import SEEDS


@dataclass
class Front:
    metrics: list[str]
    modes: list[str]
    trials: list[Trial]  # every finished trial
    values: np.ndarray  # (n, k) their objectives
    on_front: np.ndarray  # (n,) bool
    knee: int | None  # index into trials
    reference: np.ndarray | None
    hypervolume: float | None
    counts: dict[str, int]  # trials by MLflow status
    errors: np.ndarray | None = None  # (n, k) standard error of each value, nan where none was reported
    intervals: np.ndarray | None = None  # (n, k, 2) 95% interval of each value: a confirmed front's seed means
    single: np.ndarray | None = None  # (n, k) each trial's single-run values, beside a confirmed front's means

    def front_trials(self) -> list[tuple[Trial, np.ndarray]]:
        """(trial, objective values) on the front, ordered along the first objective (best first)."""
        index = np.flatnonzero(self.on_front)
        order = index[np.argsort(pareto.as_losses(self.values[index], self.modes)[:, 0], kind="stable")]
        return [(self.trials[i], self.values[i]) for i in order]

    def rows(self) -> list[dict]:
        knee_id = self.trials[self.knee].trial_id if self.knee is not None else None
        index = {t.trial_id: i for i, t in enumerate(self.trials)}
        rows = []
        for t, v in self.front_trials():
            i = index[t.trial_id]
            row = {"trial_id": t.trial_id, "anchor": t.anchor, "knee": t.trial_id == knee_id, "params": t.params,
                   "objectives": dict(zip(self.metrics, map(float, v)))}
            if self.errors is not None:
                row["se"] = {m: _finite(e) for m, e in zip(self.metrics, self.errors[i])}
            if self.intervals is not None:
                row["interval"] = {m: [_finite(lo), _finite(hi)]
                                   for m, (lo, hi) in zip(self.metrics, self.intervals[i])}
            if self.single is not None:
                row["single_run"] = dict(zip(self.metrics, map(float, self.single[i])))
            rows.append(row)
        return rows

    def to_json(self) -> dict:
        return {"objectives": [{"metric": m, "mode": d} for m, d in zip(self.metrics, self.modes)],
                "front": self.rows(), "knee": self.trials[self.knee].trial_id if self.knee is not None else None,
                "hypervolume": self.hypervolume,
                "reference": None if self.reference is None else self.reference.tolist(), "trials": self.counts}


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _front(record: StudyRecord, trials: list[Trial], values: np.ndarray, counts: dict[str, int], **extra) -> Front:
    if not trials:
        return Front(record.metrics, record.modes, [], values, np.zeros(0, bool), None, None, None, counts)
    on_front = pareto.non_dominated(values, record.modes)
    declared = [o.reference for o in record.config.search.objectives]
    reference = pareto.reference_point(values, record.modes, declared)
    return Front(record.metrics, record.modes, trials, values, on_front, pareto.knee(values, record.modes, on_front),
                 reference, pareto.hypervolume(values, record.modes, reference), counts, **extra)


def summarize(record: StudyRecord) -> Front:
    """The single-run front: every finished trial, each objective with the standard error the trial reported."""
    trials, values = record.finished()
    counts: dict[str, int] = {}
    for t in record.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    return _front(record, trials, values, counts, errors=record.errors(trials))


def summarize_confirmed(record: StudyRecord) -> Front | None:
    """The confirmed front: the trials the confirm stage ran again, on their seed means, with the standard error
    of each mean (std / sqrt(seeds)) and its 95% Student-t interval; None if the study confirmed none."""
    trials, values = record.confirmed()
    if not trials:
        return None
    runs = [record.confirmations[t.trial_id] for t in trials]
    n = np.array([float(r.tags.get(SEEDS, "nan")) for r in runs])[:, None]
    std = np.array([[r.metrics.get(f"{m}/std", np.nan) for m in record.metrics] for r in runs], dtype=float)
    intervals = np.array([[[r.metrics.get(f"{m}/ci_low", np.nan), r.metrics.get(f"{m}/ci_high", np.nan)]
                           for m in record.metrics] for r in runs], dtype=float)
    single = np.array([[t.metrics[m] for m in record.metrics] for t in trials], dtype=float)
    return _front(record, trials, values, {"CONFIRMED": len(trials)}, errors=std / np.sqrt(n), intervals=intervals,
                  single=single)


def front_table(front: Front, title: str) -> Table:
    """The front as a table: one row per non-dominated trial, its sampled params and its objectives (↓ min, ↑ max)."""
    params = sorted({k for t, _ in front.front_trials() for k in t.params})
    table = Table(title=title, caption=caption(front))
    table.add_column("trial", overflow="fold")
    table.add_column("note", overflow="fold")
    for name in params:  # loss.temperature, mitigation.mode
        table.add_column(".".join(name.split(".")[-2:]), justify="right", overflow="fold")
    for metric, mode in zip(front.metrics, front.modes):
        table.add_column(f"{metric} {'↓' if mode == 'min' else '↑'}", justify="right", overflow="fold")
    if front.single is not None:
        for metric in front.metrics:
            table.add_column(f"{metric} single run", justify="right", overflow="fold")
    for row in front.rows():
        note = " ".join(n for n in (row["anchor"], "knee" if row["knee"] else None) if n)
        table.add_row(row["trial_id"], note, *(_short(row["params"].get(p, "-")) for p in params),
                      *(_cell(row, m) for m in front.metrics),
                      *(f"{row['single_run'][m]:.4f}" for m in front.metrics if "single_run" in row))
    return table


def _cell(row: dict, metric: str) -> str:
    """`value ± se`, or `mean [low, high]` for a seed mean with its interval."""
    value = f"{row['objectives'][metric]:.4f}"
    low, high = row.get("interval", {}).get(metric, (None, None))
    if low is not None and high is not None:
        return f"{value} [{low:.4f}, {high:.4f}]"
    se = row.get("se", {}).get(metric)
    return f"{value} ± {se:.4f}" if se is not None else value


def table_console() -> Console:
    """Standard output for tables: the terminal's width, or 160 columns in a log file (rich's 80 cuts names)."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def caption(front: Front) -> str:
    counts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(front.counts.items()))
    if front.hypervolume is None:
        return f"trials: {counts or 'none'}; no finished trial yet"
    ref = ", ".join(f"{m} {r:.4g}" for m, r in zip(front.metrics, front.reference))
    return (f"trials: {counts}; {int(front.on_front.sum())} on the front; hypervolume {front.hypervolume:.4g} "
            f"(reference: {ref})")


USAGE = ("perf/distill_seconds", "perf/eval_seconds", "perf/busy_share")


def usage_line(record: StudyRecord) -> str | None:
    """What the finished trials used: the median over them of their distillation and evaluation seconds and their
    busy share (work seconds summed over workers / (workers x trial wall)), and the least busy trial; None when no
    finished trial reported them (a study from before they were reported)."""
    trials = [t for t in record.finished()[0] if all(k in t.metrics for k in USAGE)]
    if not trials:
        return None
    median = {k: float(np.median([t.metrics[k] for t in trials])) for k in USAGE}
    idlest = min(trials, key=lambda t: t.metrics["perf/busy_share"])
    return (f"what the trials used (median of {len(trials)} finished): distillation {median[USAGE[0]]:.0f}s, "
            f"evaluation {median[USAGE[1]]:.0f}s, busy share {median[USAGE[2]]:.2f} of the workers' time "
            f"(least busy: trial {idlest.trial_id}, {idlest.metrics['perf/busy_share']:.2f})")


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def seed_summary(values) -> dict[str, float]:
    """Mean, sample std (ddof 1) and the 95% Student-t interval of the mean over seeds; one seed has no interval."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "std": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": len(x)}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(x) - 1) * std / np.sqrt(len(x)))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": len(x)}
