"""Where the noise of a paired task-score difference comes from: the pieces `benchmarks/objective_noise.py` reports
and `study.plan.power` plans with.

A study's verdict on a task objective rests on d = (trial - control) seed by seed, each side one distilled student
fine-tuned once. Its variance per seed splits into

    distill       the two students' own difference moving with the distillation seed: what remains after averaging
                  any number of fine-tuning runs of the same two students
    finetune      what one fine-tuning run adds on top (its head initialisation and data order): averaged away by
                  fine-tuning each student several times
    validation    the draw of the validation examples both students are scored on: the paired bootstrap variance of
                  the two scores' difference over resampled examples (it is part of the two above, not added to them;
                  it says how much a larger validation set could take away)
    stopped short the share of the variance due to runs that ended far below the same student's other runs
                  (study.metrics.glue.stopped_short), which a recipe that does not stall removes

The first two are the variance components of a one-way random-effects model of d over distillation seeds (groups)
with the fine-tuning seeds as replicates, estimated by the method of moments from the ANOVA mean squares (Searle,
Casella & McCulloch 1992, ch. 3): var_finetune = MS_within, var_distill = (MS_between - MS_within) / F, floored at 0.
"""

from __future__ import annotations

import numpy as np

from study.metrics.glue import stopped_short


def paired_components(d: np.ndarray) -> dict[str, float]:
    """Variance components of d (K distillation seeds x F fine-tuning seeds, F >= 2): {"distill", "finetune",
    "per_seed"} in squared points, per_seed = distill + finetune: the variance of one seed's difference with one
    fine-tuning run on each side."""
    d = np.asarray(d, dtype=float)
    k, f = d.shape
    if k < 2 or f < 2:
        raise ValueError(f"need at least 2 distillation seeds x 2 fine-tuning seeds, got {k} x {f}")
    means = d.mean(axis=1)
    ms_within = float(((d - means[:, None]) ** 2).sum() / (k * (f - 1)))
    ms_between = float(f * ((means - means.mean()) ** 2).sum() / (k - 1))
    distill = max(0.0, (ms_between - ms_within) / f)
    return {"distill": distill, "finetune": ms_within, "per_seed": distill + ms_within}


def without_stopped(scores: np.ndarray) -> np.ndarray:
    """The scores with each stopped-short run replaced by the median of its student's other runs."""
    scores = np.array(scores, dtype=float)
    short = stopped_short(scores)
    for i, j in zip(*np.nonzero(short)):
        scores[i, j] = np.median(np.delete(scores[i], np.flatnonzero(short[i])))
    return scores


def score_difference_variance(metric_fn, labels: np.ndarray, a: np.ndarray, b: np.ndarray, resamples: int = 200,
                              seed: int = 0) -> float:
    """The paired bootstrap variance of metric_fn(labels, a) - metric_fn(labels, b) over resampled validation
    examples (the same resample for both: the examples are shared), in squared points."""
    labels, a, b = np.asarray(labels), np.asarray(a), np.asarray(b)
    rng = np.random.default_rng(seed)
    draws = [rng.integers(0, len(labels), len(labels)) for _ in range(resamples)]
    diffs = [metric_fn(labels[i], a[i]) - metric_fn(labels[i], b[i]) for i in draws]
    return float(np.var(diffs, ddof=1))


def task_shares(diffs: dict[str, np.ndarray]) -> dict[str, float]:
    """Each task's share of the variance of the suite score's difference (the mean over tasks): cov(d_task / T,
    d_score) / var(d_score), which sums to 1 over the tasks and keeps their covariances."""
    stacked = np.array([np.asarray(d, dtype=float).ravel() for d in diffs.values()])
    score = stacked.mean(axis=0)
    total = np.var(score, ddof=1)
    return {task: float(np.cov(row / len(stacked), score)[0, 1] / total) for task, row in zip(diffs, stacked)}
