"""What a confirm stage can tell apart, from paired replicates: each trial's probability of being on the front, its
difference from the control on every objective with a verdict, and the point to recommend.

Everything here works on `values[i, s, j]`: trial i's objective j at confirm seed s, where every trial ran the same
seeds (the same distillation, bias and fine-tuning seeds), so that a seed's own effect (a lucky fine-tuning draw that
lifts every trial alike) cancels in a difference taken seed by seed.

    P(front)      the probability that a trial is non-dominated, from the paired Bayesian bootstrap (Rubin 1981):
                  Dirichlet(1, ..., 1) weights over the seeds, the same weights for every trial (that keeps the
                  pairing), the weighted seed means, and the share of draws in which the trial is on their front.
                  Chosen over the classical bootstrap because a race starts at 2 seeds, where resampling seeds with
                  replacement has only 3 distinct outcomes; the Dirichlet weights give a smooth posterior even there.
    difference    trial minus control, seed by seed, in the objective's own units: its mean and the 95% Student-t
                  interval of the paired t-test (scipy.stats.ttest_rel), the standard interval for a mean difference
                  of a few paired values.
    verdict       with the objective's margin m (the smallest difference that matters; 0 where none is declared),
                  read in the objective's direction:
                      within ±m   the interval lies inside (-m, +m): whatever the difference is, it does not matter
                      better      the interval lies wholly on the better side of 0
                      worse       the interval lies wholly on the worse side of 0
                      undecided   anything else: more seeds would tell
    outdone       a trial that another one beats where it matters: paired over the seeds both ran, the other is
                  better on at least one objective and within ±m or better on every other (the verdicts above, read
                  from the trial to the other). Its place is off the front up to the margins, whatever its P(front):
                  an edge it may keep on a tied objective is smaller than the margin, the smallest difference that
                  matters. Without this a trial that ties another on the noisy objective (plain KD against a
                  mitigation that does not cost task score) keeps P(front) near 1/2 at any number of seeds, and the
                  race would spend its budget on a place no seed can decide.
    recommended   the noise-aware pick: among the trials not shown worse than the best on the noisy objective by
                  more than its margin (one standard error of the best mean where none is declared), the best on
                  the precise objective. "Shown worse" is the one-sided 95% test of the gap: the best mean minus the
                  trial's, less the margin, beyond 1.645 standard errors of the gap (the two means' errors combined
                  as independent: without the seed pairing, so a trial is dropped only on firmer evidence than the
                  paired verdicts need). A mean gap alone would drop a trial whose deficit is noise (the smoke
                  study's mixup: 1.55 points below plain KD, its paired interval [-4.0, +0.9]) and so recommend the
                  control over a mitigation that is undecided on the score and better on the bias. The noisy
                  objective is the one whose spread between trials is smallest against its standard errors; the
                  precise one the other.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from analysis import pareto

DECIDED = 0.95  # a place is decided once P(front) >= this, or <= 1 - this
FRONT = 0.5  # the seed-mean front: P(front) >= this


def front_probability(values: np.ndarray, modes: list[str], draws: int = 4000, seed: int = 0) -> np.ndarray:
    """(n,) P(on the front) of each of n trials from their (n, s, k) paired seed values (paired Bayesian bootstrap).
    A trial without a seed (nan there: it left the race early, or the run failed) is weighed over the seeds it has,
    with the same draw of weights as the others."""
    values = np.asarray(values, dtype=float)
    n, s, _ = values.shape
    have = ~np.isnan(values[:, :, 0])  # (n, s)
    weights = np.random.default_rng(seed).dirichlet(np.ones(s), size=draws)  # (D, s), one draw for all trials
    sums = np.einsum("ds,nsk->dnk", weights, np.where(have[:, :, None], values, 0.0))
    means = sums / np.einsum("ds,ns->dn", weights, have)[:, :, None]  # (D, n, k) weighted seed means
    dominated = pareto.dominance(pareto.as_losses(means, modes)).any(axis=1)  # [d, b]: some trial dominates b
    return 1.0 - dominated.mean(axis=0)


def place(p: float, outdone: bool = False) -> str:
    """A trial's place for its P(front): front (P >= DECIDED), off (P <= 1 - DECIDED: dominated with probability
    >= DECIDED; or outdone within the margins, see `outdone_by`) or undecided."""
    if outdone:
        return "off"
    return "front" if p >= DECIDED else "off" if p <= 1 - DECIDED else "undecided"


def outdone_by(values: np.ndarray, modes: list[str], margins: list[float | None]) -> list[int | None]:
    """For each of n trials, from their (n, s, k) paired seed values: the index of the first other trial that
    outdoes it within the margins (the module docstring), or None."""
    values = np.asarray(values, dtype=float)

    def outdoes(u: int, i: int) -> bool:
        said = [verdict(*paired_difference(values[u, :, j], values[i, :, j])[1:], mode, margin)
                for j, (mode, margin) in enumerate(zip(modes, margins))]
        return "better" in said and all(v == "better" or v.startswith("within") for v in said)

    n = len(values)
    return [next((u for u in range(n) if u != i and outdoes(u, i)), None) for i in range(n)]


def paired_difference(trial: np.ndarray, control: np.ndarray) -> tuple[float, float, float]:
    """(mean, 95% low, 95% high) of trial - control over their shared seeds (the paired t interval). With one seed
    there is no interval (nan); with differences that do not vary, the interval is the difference itself."""
    d = np.asarray(trial, dtype=float) - np.asarray(control, dtype=float)
    shared = ~np.isnan(d)  # the seeds both have
    trial, control, d = np.asarray(trial, dtype=float)[shared], np.asarray(control, dtype=float)[shared], d[shared]
    if not len(d):
        return float("nan"), float("nan"), float("nan")
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan")
    if np.ptp(d) == 0:
        return mean, mean, mean
    ci = stats.ttest_rel(trial, control).confidence_interval(0.95)
    return mean, float(ci.low), float(ci.high)


def verdict(low: float, high: float, mode: str, margin: float | None) -> str:
    """better / worse / within ±m / undecided for the interval [low, high] of a difference in a 'min' or 'max'
    objective's units (the rules in the module docstring)."""
    if not (np.isfinite(low) and np.isfinite(high)):
        return "undecided"
    m = margin or 0.0
    if m > 0 and -m < low and high < m:
        return f"within ±{m:g}"
    gain_low, gain_high = (low, high) if mode == "max" else (-high, -low)  # > 0 is better
    if gain_low > 0:
        return "better"
    if gain_high < 0:
        return "worse"
    return "undecided"


def compare_with_control(values: np.ndarray, control: np.ndarray, metrics: list[str], modes: list[str],
                         margins: list[float | None]) -> list[dict]:
    """For each trial's (s, k) values against the control's (s, k) on the same seeds: per objective the difference,
    its interval and the verdict."""
    out = []
    for trial in np.asarray(values, dtype=float):
        row = {}
        for j, (metric, mode, margin) in enumerate(zip(metrics, modes, margins)):
            mean, low, high = paired_difference(trial[:, j], control[:, j])
            row[metric] = {"diff": mean, "ci_low": low, "ci_high": high, "verdict": verdict(low, high, mode, margin),
                           "margin": margin}
        out.append(row)
    return out


def verdict_line(name: str, comparison: dict) -> str:
    """`mixup a1b2c3: bias/amplification -0.37 [-0.40, -0.34] better; world/score -0.2 [-0.7, +0.3] within ±1`."""
    parts = [f"{metric} {c['diff']:+.3g} [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}] {c['verdict']}"
             for metric, c in comparison.items()]
    return f"{name}: " + "; ".join(parts)


def recommend(means: np.ndarray, ses: np.ndarray, metrics: list[str], modes: list[str],
              margins: list[float | None], candidates: np.ndarray | None = None) -> tuple[int, str]:
    """(index, one-line reason) of the recommended trial among `candidates` (a bool mask; default all) by the
    noise-aware rule of the module docstring. With more than two objectives, the noisiest filters and the least
    noisy ranks."""
    means, ses = np.asarray(means, dtype=float), np.asarray(ses, dtype=float)
    index = np.flatnonzero(candidates) if candidates is not None else np.arange(len(means))
    noise = np.nanmedian(ses[index], axis=0)
    snr = np.ptp(means[index], axis=0) / np.where(noise > 0, noise, np.inf)
    noisy, precise = int(np.argmin(snr)), int(np.argmax(snr))
    if precise == noisy:  # every objective alike: keep the declared order
        noisy, precise = 1, 0
    losses = pareto.as_losses(means[index], modes)
    best = int(np.argmin(losses[:, noisy]))
    margin = margins[noisy] if margins[noisy] is not None else float(ses[index][best, noisy])
    gap = losses[:, noisy] - losses[best, noisy]
    gap_se = np.hypot(ses[index][:, noisy], ses[index][best, noisy])
    kept = np.flatnonzero(gap - margin <= stats.norm.ppf(0.95) * np.nan_to_num(gap_se))  # not shown worse
    # the best on the precise objective; a tie goes to the better on the noisy one (never a dominated trial)
    pick = int(index[kept[np.lexsort((losses[kept, noisy], losses[kept, precise]))[0]]])
    how = "its margin" if margins[noisy] is not None else "one standard error"
    return pick, (f"best {metrics[precise]} among the {len(kept)} trial(s) not shown worse than the best "
                  f"{metrics[noisy]} by more than {how} ({margin:.3g})")
