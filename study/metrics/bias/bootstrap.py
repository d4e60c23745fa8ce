"""Seeded bootstrap intervals: students in a study differ by little, so every benchmark score carries its 95% CI."""

from __future__ import annotations

import numpy as np
from scipy import stats

RESAMPLES = 2000
Z95 = float(stats.norm.ppf(0.975))  # 1.959964: a normal 95% interval is the value ± Z95 standard errors


def interval_se(low: float, high: float) -> float:
    """The standard error a 95% interval stands for under the normal approximation: its half-width over Z95."""
    return (high - low) / (2 * Z95)


def percentile_interval(values, seed: int = 0, statistic=np.mean) -> tuple[float, float]:
    """95% percentile-bootstrap interval of statistic(values), resampling the items."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2 or np.all(values == values[0]):
        v = float(statistic(values)) if len(values) else float("nan")
        return v, v
    res = stats.bootstrap((values,), statistic, n_resamples=RESAMPLES, confidence_level=0.95,
                          method="percentile", random_state=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
