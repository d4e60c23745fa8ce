"""Figures of a study: the Pareto front over all trials, and the front's parameters in parallel coordinates."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only: studies run on headless nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from analysis import pareto  # noqa: E402
from analysis.report import Front, RaceFront, SearchFront  # noqa: E402


def _label(metric: str, mode: str) -> str:
    return f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)"


def pareto_figure(front: SearchFront, title: str, race: RaceFront | None = None):
    """The first two objectives: every finished trial with its standard-error bars, the front highlighted and joined,
    anchors and the knee named; with `race`, the raced trials' seed means and 95% intervals over it."""
    fig, ax = plt.subplots(figsize=(7, 5), layout="constrained")
    x, y = front.values[:, 0], front.values[:, 1]
    ax.errorbar(x, y, xerr=front.errors[:, 0], yerr=front.errors[:, 1], fmt="none", ecolor="0.75", lw=0.8,
                zorder=1, label="± standard error")
    if race is not None:
        cx, cy = race.values[:, 0], race.values[:, 1]
        spans = [np.abs(race.intervals[:, i, :].T - race.values[:, i]) for i in (0, 1)]
        ax.errorbar(cx, cy, xerr=spans[0], yerr=spans[1], fmt="D", ms=6, c="tab:blue", mfc="none", lw=1,
                    zorder=4, label="raced: seed mean, 95% interval; P(front)")
        for i, p in enumerate(race.p_front):
            ax.annotate(f"P={p:.2f}", (cx[i], cy[i]), textcoords="offset points", xytext=(6, -12), fontsize=7,
                        color="tab:blue")
    ax.scatter(x[~front.on_front], y[~front.on_front], c="0.6", s=30, label="dominated")
    ax.scatter(x[front.on_front], y[front.on_front], c="tab:red", s=50, label="Pareto front", zorder=3)
    order = np.flatnonzero(front.on_front)
    order = order[np.argsort(pareto.as_losses(front.values[order], front.modes)[:, 0])]
    ax.plot(x[order], y[order], c="tab:red", lw=1, drawstyle="steps-post" if front.modes[0] == "min" else "steps-pre")
    for i, trial in enumerate(front.trials):
        if trial.anchor:
            ax.scatter(x[i], y[i], marker="s", s=90, facecolors="none", edgecolors="k", zorder=4)
            ax.annotate(trial.anchor, (x[i], y[i]), textcoords="offset points", xytext=(6, 6), fontsize=8)
    if front.knee is not None:
        ax.scatter(x[front.knee], y[front.knee], marker="*", s=220, c="gold", edgecolors="k", zorder=5, label="knee")
    if front.reference is not None:
        ax.axvline(front.reference[0], c="0.8", ls=":", lw=1)
        ax.axhline(front.reference[1], c="0.8", ls=":", lw=1, label="hypervolume reference")
    ax.set_xlabel(_label(front.metrics[0], front.modes[0]))
    ax.set_ylabel(_label(front.metrics[1], front.modes[1]))
    more = f" (first 2 of {len(front.metrics)} objectives)" if len(front.metrics) > 2 else ""
    ax.set_title(f"{title}{more}")
    ax.legend(fontsize=8)
    return fig


def parallel_figure(front: Front, params: list[str], title: str):
    """One line per front trial across its sampled params and objectives, each axis scaled to its own range."""
    rows = front.rows()
    params = [p for p in params if any(p in r["params"] for r in rows)]  # a conditional one may be absent throughout
    axes = params + front.metrics
    columns = [_numeric([r["params"].get(a) for r in rows] if a in params else [r["objectives"][a] for r in rows])
               for a in axes]
    data = np.array([values for values, _ in columns], dtype=float).T  # (trials, axes)
    with np.errstate(invalid="ignore"):
        low, high = np.nanmin(data, axis=0), np.nanmax(data, axis=0)
    scaled = (data - low) / np.where(high > low, high - low, 1.0)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(axes)), 4.5), layout="constrained")
    for row, values in zip(rows, scaled):
        ax.plot(range(len(axes)), values, marker="o", lw=2.5 if row["knee"] else 1)
        ax.annotate(row["trial_id"] + (" (knee)" if row["knee"] else ""), (len(axes) - 1, values[-1]),
                    xytext=(6, 0), textcoords="offset points", va="center", fontsize=7)
    names = [a.split(".")[-1] if a in params else a for a in axes]
    ax.set_xticks(range(len(axes)), [f"{n}\n{span}" for n, (_, span) in zip(names, columns)], fontsize=8)
    ax.set_xlim(-0.2, len(axes) - 0.4)
    ax.set_yticks([0, 1], ["low", "high"])
    ax.set_title(title)
    return fig


def _numeric(column: list) -> tuple[list[float], str]:
    """Numbers for one axis (categories become their index) and the axis' range as text."""
    try:
        values = [np.nan if v is None else float(v) for v in column]
        finite = [v for v in values if np.isfinite(v)]
        return values, f"{min(finite):.3g}..{max(finite):.3g}" if finite else ""
    except (TypeError, ValueError):
        categories = sorted({str(v) for v in column if v is not None})
        return [np.nan if v is None else float(categories.index(str(v))) for v in column], "/".join(categories)
