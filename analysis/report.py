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
from analysis.runs import Study, Trial


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

    def front_trials(self) -> list[tuple[Trial, np.ndarray]]:
        """(trial, objective values) on the front, ordered along the first objective (best first)."""
        index = np.flatnonzero(self.on_front)
        order = index[np.argsort(pareto.as_losses(self.values[index], self.modes)[:, 0], kind="stable")]
        return [(self.trials[i], self.values[i]) for i in order]

    def rows(self) -> list[dict]:
        knee_id = self.trials[self.knee].trial_id if self.knee is not None else None
        return [{"trial_id": t.trial_id, "anchor": t.anchor, "knee": t.trial_id == knee_id, "params": t.params,
                 "objectives": dict(zip(self.metrics, map(float, v)))} for t, v in self.front_trials()]

    def to_json(self) -> dict:
        return {"objectives": [{"metric": m, "mode": d} for m, d in zip(self.metrics, self.modes)],
                "front": self.rows(), "knee": self.trials[self.knee].trial_id if self.knee is not None else None,
                "hypervolume": self.hypervolume,
                "reference": None if self.reference is None else self.reference.tolist(), "trials": self.counts}


def summarize(study: Study) -> Front:
    trials, values = study.finished()
    counts: dict[str, int] = {}
    for t in study.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    if not trials:
        return Front(study.metrics, study.modes, [], values, np.zeros(0, bool), None, None, None, counts)
    on_front = pareto.non_dominated(values, study.modes)
    declared = [o.reference for o in study.config.search.objectives]
    reference = pareto.reference_point(values, study.modes, declared)
    return Front(study.metrics, study.modes, trials, values, on_front, pareto.knee(values, study.modes, on_front),
                 reference, pareto.hypervolume(values, study.modes, reference), counts)


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
    for row in front.rows():
        note = " ".join(n for n in (row["anchor"], "knee" if row["knee"] else None) if n)
        table.add_row(row["trial_id"], note, *(_short(row["params"].get(p, "-")) for p in params),
                      *(f"{v:.4f}" for v in row["objectives"].values()))
    return table


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
