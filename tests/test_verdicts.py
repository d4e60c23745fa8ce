"""The confirm stage's statistics on cases small enough to work out by hand."""

import numpy as np
import pytest
from scipy import stats

from analysis import verdicts


def test_front_probability_of_a_clear_front_and_a_clear_loser():
    # two objectives (min, max); seeds agree: a is best on the first, b on the second, c is dominated by both
    v = np.array([[[0.1, 50.0], [0.1, 50.0]],
                  [[0.3, 60.0], [0.3, 60.0]],
                  [[0.4, 40.0], [0.4, 40.0]]])
    assert verdicts.front_probability(v, ["min", "max"]).tolist() == [1.0, 1.0, 0.0]


def test_front_probability_of_two_trials_that_swap_order_with_the_seed():
    # one objective, a paired coin flip: a beats b at seed 0 by 1, b beats a at seed 1 by 1; with weights (w, 1-w),
    # w ~ U(0, 1), a's weighted mean is lower exactly when w > 1/2: P = 1/2 each (up to the draws)
    v = np.array([[[0.0], [2.0]], [[1.0], [1.0]]])
    p = verdicts.front_probability(v, ["min"], draws=20_000)
    assert p == pytest.approx([0.5, 0.5], abs=0.02)


def test_front_probability_keeps_the_pairing():
    # b is a + 0.1 at every seed, while the seeds swing by +-5: paired, a always wins; unpaired, it would be a toss-up
    a = np.array([0.0, 10.0, -10.0, 5.0])
    v = np.stack([a, a + 0.1])[:, :, None]
    assert verdicts.front_probability(v, ["min"]).tolist() == [1.0, 0.0]


def test_a_place_is_decided_at_095_either_way():
    assert [verdicts.place(p) for p in (1.0, 0.95, 0.94, 0.5, 0.06, 0.05, 0.0)] == [
        "front", "front", "undecided", "undecided", "undecided", "off", "off"]


def test_a_trial_tied_within_the_margin_and_beaten_elsewhere_is_outdone():
    """Objectives bias (min, no margin) and score (max, margin 1), three seeds. The control's score swings with the
    seed and m's follows it: m - control = (-0.5, +0.2, 0.0) points, mean -0.1, sd 0.361, 95% half-width
    4.303 x 0.361 / sqrt(3) = 0.896: [-0.996, +0.796], inside (-1, +1): within ±1. Its bias is lower by 0.3 at every
    seed: better. So m outdoes the control, whose P(front) is still undecided (its score beats m's at two of three
    seeds' weights). x is worse on bias by 0.1 and better on score by 2 at every seed: nobody outdoes it, nor does it
    outdo anyone (its score gain is beyond the margin; its bias is worse)."""
    control = np.array([[0.4, 80.0], [0.4, 83.0], [0.4, 81.0]])
    m = np.array([[0.1, 79.5], [0.1, 83.2], [0.1, 81.0]])
    x = control + [0.1, 2.0]
    v = np.stack([control, m, x])
    modes, margins = ["min", "max"], [None, 1.0]
    _, low, high = verdicts.paired_difference(m[:, 1], control[:, 1])
    assert (low, high) == pytest.approx((-0.1 - 0.8957, -0.1 + 0.8957), abs=1e-3)
    assert verdicts.outdone_by(v, modes, margins) == [1, None, None]
    assert verdicts.place(verdicts.front_probability(v, modes)[0]) == "undecided"
    assert verdicts.place(verdicts.front_probability(v, modes)[0], outdone=True) == "off"
    # without the margin the tie on the score decides nothing: the control is not outdone
    assert verdicts.outdone_by(v, modes, [None, None]) == [None, None, None]
    # a tie on every objective outdoes nobody: `better` somewhere is needed
    assert verdicts.outdone_by(np.stack([control, control + [0.0, 0.1]]), modes, [0.5, 1.0]) == [None, None]


def test_paired_difference_is_the_paired_t_interval():
    trial, control = np.array([85.0, 86.5, 84.0]), np.array([84.0, 85.0, 84.5])
    d = trial - control  # 1.0, 1.5, -0.5: mean 0.6667, sd 1.0408
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    mean, low, high = verdicts.paired_difference(trial, control)
    assert mean == pytest.approx(2 / 3)
    assert (low, high) == pytest.approx((2 / 3 - half, 2 / 3 + half))
    assert np.isnan(verdicts.paired_difference(trial[:1], control[:1])[1])  # one seed: no interval
    assert verdicts.paired_difference(control + 2, control) == (2.0, 2.0, 2.0)


@pytest.mark.parametrize("low, high, mode, margin, expected", [
    (-0.40, -0.34, "min", None, "better"),     # lower bias, no margin
    (-0.40, -0.34, "max", None, "worse"),
    (-0.7, 0.3, "max", 1.0, "within ±1"),      # the flat task axis
    (0.2, 0.6, "max", 1.0, "within ±1"),       # a real but unimportant gain
    (0.2, 1.6, "max", 1.0, "better"),
    (-1.6, -0.2, "max", 1.0, "worse"),
    (-1.6, 0.2, "max", 1.0, "undecided"),
    (-0.7, 0.3, "max", None, "undecided"),
    (float("nan"), float("nan"), "max", 1.0, "undecided"),
])
def test_verdicts(low, high, mode, margin, expected):
    assert verdicts.verdict(low, high, mode, margin) == expected


def test_recommended_point_respects_the_noise_where_the_knee_does_not():
    """bias (min) is precise: standard errors of 0.01 against a spread of 0.25; the score (max) is noisy: 1.0 against
    0.7. All three trials are on the front of the means. The knee, scaling each objective over the front, is c
    (distance 0.67; a and b are at 1). The noise-aware pick keeps the trials not shown worse than the best score 86.0
    by more than one standard error (1.0): all three (b's gap 0.7 is under it), and takes the least biased: b.
    With a declared margin of 0.5 points b's gap exceeds it by 0.2, well within the gap's noise (1.645 x sqrt(2) =
    2.33): b stays, and is picked. With score errors of 0.05, the same 0.2 is beyond 1.645 x 0.0707 = 0.116: b is
    shown worse by more than the margin and is out, and the least biased of a and c (c's gap 0.2 is under 0.5) is c."""
    from analysis import pareto

    means = np.array([[0.30, 86.0],   # a: the best score
                      [0.05, 85.3],   # b: the least bias
                      [0.20, 85.8]])  # c: between
    ses = np.array([[0.01, 1.0]] * 3)
    metrics, modes = ["bias/amplification", "world/score"], ["min", "max"]
    assert pareto.knee(means, modes, pareto.non_dominated(means, modes)) == 2
    i, reason = verdicts.recommend(means, ses, metrics, modes, [None, None])
    assert i == 1
    assert reason == ("best bias/amplification among the 3 trial(s) not shown worse than the best world/score by "
                      "more than one standard error (1)")
    i, reason = verdicts.recommend(means, ses, metrics, modes, [None, 0.5])
    assert i == 1 and "among the 3 trial(s) not shown worse" in reason and "its margin (0.5)" in reason
    precise = np.array([[0.01, 0.05]] * 3)
    i, reason = verdicts.recommend(means, precise, metrics, modes, [None, 0.5])
    assert i == 2 and "among the 2 trial(s)" in reason
