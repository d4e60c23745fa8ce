"""Pareto front, hypervolume and knee of a set of trials, for any number of objectives, each minimised or maximised.

Everything is computed on losses: each objective turned into one to minimise (a "max" objective is negated).
    a dominates b     a is no worse on every objective and strictly better on one; equal points dominate neither,
                      so ties stay on the front together
    hypervolume       the volume dominated by the front and bounded by a reference point (the worst value that still
                      counts on each objective); points not strictly better than it on every objective add nothing.
                      Exact: a sweep in 2-D, moocore's exact algorithm (Fonseca et al.) in more dimensions
    knee              the front point closest (Euclidean) to the ideal point once each objective is scaled to [0, 1]
                      over the front: the balanced compromise, the point a user reruns first
    rank              non-domination rank (NSGA-II's sorting, Deb et al. 2002): 0 on the front, 1 on the front of
                      what remains without it, and so on
"""

from __future__ import annotations

import numpy as np


def as_losses(values, modes: list[str]) -> np.ndarray:
    """(n, k) objective values -> (n, k) losses (max objectives negated)."""
    sign = np.array([1.0 if m == "min" else -1.0 for m in modes])
    return np.asarray(values, dtype=float) * sign


def dominance(losses) -> np.ndarray:
    """(..., n, n) bool, [..., a, b]: point a dominates point b, for (..., n, k) losses; each leading index is a set
    of points of its own (a bootstrap draw, say)."""
    losses = np.asarray(losses, dtype=float)
    no_worse = np.all(losses[..., :, None, :] <= losses[..., None, :, :], axis=-1)  # a no worse than b everywhere
    better = np.any(losses[..., :, None, :] < losses[..., None, :, :], axis=-1)
    return no_worse & better


def dominates(a, b, modes: list[str]) -> bool:
    return bool(dominance(as_losses([a, b], modes))[0, 1])


def non_dominated(values, modes: list[str]) -> np.ndarray:
    """(n,) bool: True where no other point dominates this one."""
    losses = as_losses(values, modes)
    if losses.size == 0:
        return np.zeros(0, dtype=bool)
    return ~dominance(losses).any(axis=0)


def ranks(values, modes: list[str]) -> np.ndarray:
    """(n,) int non-domination rank of each point: 0 = the front, 1 = the front once rank 0 is removed, ..."""
    values = np.asarray(values, dtype=float)
    rank = np.full(len(values), -1)
    left = np.arange(len(values))
    layer = 0
    while len(left):
        front = non_dominated(values[left], modes)
        rank[left[front]] = layer
        left = left[~front]
        layer += 1
    return rank


def best_first(values, modes: list[str]) -> np.ndarray:
    """Indices ordered by non-domination rank, and within a rank by the scaled distance to the ideal point (the
    knee's measure, over all points): the order in which to spend confirmation runs."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return np.zeros(0, dtype=int)
    losses = as_losses(values, modes)
    low, span = losses.min(axis=0), np.ptp(losses, axis=0)
    distance = np.linalg.norm((losses - low) / np.where(span > 0, span, 1.0), axis=1)
    return np.lexsort((distance, ranks(values, modes)))


def reference_point(values, modes: list[str], declared: list[float | None]) -> np.ndarray:
    """The declared reference per objective, else the worst value any point reached (the nadir of all points)."""
    values = np.asarray(values, dtype=float)
    worst = [values[:, i].max() if m == "min" else values[:, i].min() for i, m in enumerate(modes)]
    return np.array([w if d is None else d for w, d in zip(worst, declared)], dtype=float)


def _hypervolume_2d(losses: np.ndarray, ref: np.ndarray) -> float:
    """Area dominated by minimisation points (all strictly inside ref), by a sweep along the first objective."""
    front = losses[np.lexsort((losses[:, 1], losses[:, 0]))]
    area, best_y = 0.0, ref[1]
    for x, y in front:  # ascending x; each point adds the strip between its y and the best y so far
        if y < best_y:
            area += (ref[0] - x) * (best_y - y)
            best_y = y
    return float(area)


def hypervolume(values, modes: list[str], reference) -> float:
    """Hypervolume of `values` against `reference` (both in the objectives' own units and directions)."""
    losses = as_losses(values, modes)
    ref = as_losses([reference], modes)[0]
    inside = losses[np.all(losses < ref, axis=1)] if len(losses) else losses
    if len(inside) == 0:
        return 0.0
    if losses.shape[1] == 2:
        return _hypervolume_2d(inside, ref)
    import moocore

    return float(moocore.hypervolume(inside, ref=ref))


def knee(values, modes: list[str], front: np.ndarray) -> int:
    """Index (into values) of the front point nearest the ideal point after scaling each objective over the front."""
    losses = as_losses(values, modes)
    index = np.flatnonzero(front)
    pts = losses[index]
    low, span = pts.min(axis=0), np.ptp(pts, axis=0)
    scaled = (pts - low) / np.where(span > 0, span, 1.0)  # an objective the front does not vary on counts for 0
    distance = np.round(np.linalg.norm(scaled, axis=1), 12)
    # Ties (a two-point front's ends are both at distance 1) go to the better first objective, then the next, so
    # the knee does not depend on the order the trials come in (their ids are random).
    return int(index[np.lexsort((*pts.T[::-1], distance))[0]])
