"""The confirm race against a simulated truth: trials with known means and paired seed noise of the sizes measured on
the smoke world (benchmarks/objective_noise.py --grid): world/score has a shared seed effect of sd 0.73 (it moves
every trial alike) and a trial x seed residual of sd 0.38; bias/amplification a residual of sd 0.015."""

import numpy as np
import pytest

from analysis import verdicts
from analysis.race import race

METRICS, MODES, MARGINS = ["bias/amplification", "world/score"], ["min", "max"], [None, 1.0]
SEED_SD, RESIDUAL_SD = np.array([0.0, 0.73]), np.array([0.015, 0.38])


def simulate(truth: dict[str, tuple[float, float]], repeat: int):
    """A `run` for the race: trial t at seed s gives truth[t] + the seed's effect + its own residual, every draw
    fixed by (repeat, seed, trial), so a (trial, seed) asked twice gives the same values."""
    names = sorted(truth)
    calls = []

    def run(requests):
        calls.extend(requests)
        out = {}
        for t, s in requests:
            shared = np.random.default_rng([repeat, s]).normal(0, 1, 2) * SEED_SD
            own = np.random.default_rng([repeat, s, names.index(t) + 1]).normal(0, 1, 2) * RESIDUAL_SD
            out[(t, s)] = np.array(truth[t]) + shared + own
        return out

    return run, calls


def race_of(truth, repeat, control="plain_kd", seeds=2, max_seeds=8, budget=80, anchors=()):
    """The race over `truth`; the `anchors` (and the control, if named there) hand in their seed 0, the search's run,
    drawn from the same simulation outside the race's calls."""
    trials = [t for t in truth if t != control]
    run, calls = simulate(truth, repeat)
    given = run([(t, 0) for t in anchors])
    calls.clear()
    return race(trials, control, run, METRICS, MODES, MARGINS, seeds, max_seeds, budget, given=given), calls


# A real trade-off: a, b and the control are the front; d is dominated by more than 3 noise sds on both objectives
TRADE_OFF = {"plain_kd": (0.10, 85.0), "a": (0.02, 83.0), "b": (0.20, 86.5), "d": (0.25, 82.0)}
# The flat task axis: the mitigations change the bias, not the task score
FLAT = {"plain_kd": (0.10, 85.0), "a": (0.02, 85.0), "b": (0.05, 85.0), "c": (0.20, 85.0)}
REPEATS = 60


@pytest.mark.parametrize("anchors", [(), ("plain_kd", "a")], ids=["all picked", "anchors hand in seed 0"])
def test_the_true_front_is_found_and_a_clear_loser_left_behind(anchors):
    on_front = {t: 0 for t in TRADE_OFF}
    for repeat in range(REPEATS):
        result, calls = race_of(TRADE_OFF, repeat, anchors=anchors)
        assert len(calls) == len(set(calls)) == result.runs  # every (trial, seed) once
        for t, p in result.p_front.items():
            on_front[t] += p >= verdicts.FRONT
    for t in ("plain_kd", "a", "b"):
        assert on_front[t] >= 0.9 * REPEATS, on_front
    assert on_front["d"] <= 0.05 * REPEATS, on_front


@pytest.mark.parametrize("anchors", [(), ("plain_kd", "a")], ids=["all picked", "anchors hand in seed 0"])
def test_on_a_flat_task_axis_the_verdict_is_within_the_margin_and_rarely_worse(anchors):
    within = worse = 0
    for repeat in range(REPEATS):
        result, _ = race_of(FLAT, repeat, anchors=anchors)
        for t, comparison in result.comparisons.items():
            v = comparison["world/score"]["verdict"]
            within += v.startswith("within")
            worse += v == "worse"
    total = REPEATS * (len(FLAT) - 1)
    assert within >= 0.9 * total, (within, total)
    # a false "worse" is the 95% interval's one-sided miss: at most 2.5% of the verdicts (a trial leaves the race
    # once its place and verdicts are decided, so its last look is the one that counts)
    assert worse <= 0.025 * total, (worse, total)
    # the bias differences are real and precise: each mitigation's verdict on bias is decided
    result, _ = race_of(FLAT, 0)
    assert result.comparisons["a"]["bias/amplification"]["verdict"] == "better"
    assert result.comparisons["c"]["bias/amplification"]["verdict"] == "worse"


def test_a_control_that_a_mitigation_outdoes_within_the_margin_leaves_the_race():
    """On the flat task axis the control ties a and b on the score and loses to both on bias: its P(front) stays near
    a coin flip at any seed count, but a's verdict (better on bias, within ±1 on the score) puts it off, by a. With
    the margin alone deciding nothing, it would run every round to max_seeds for its place."""
    off, runs, runs_without = 0, [], []
    for repeat in range(REPEATS):
        result, _ = race_of(FLAT, repeat)
        off += result.place["plain_kd"] == "off" and result.outdone_by["plain_kd"] in ("a", "b")
        runs.append(result.runs)
        run, _ = simulate(FLAT, repeat)
        without = race([t for t in FLAT if t != "plain_kd"], "plain_kd", run, METRICS, MODES, [None, None], 2, 8, 80)
        runs_without.append(without.runs)
    assert off >= 0.9 * REPEATS, off
    assert np.mean(runs) < np.mean(runs_without), (np.mean(runs), np.mean(runs_without))


def _decided(result) -> int:
    """What a confirm stage decides: the places on the front, and the verdicts against the control."""
    places = sum(place != "undecided" for place in result.place.values())
    return places + sum(c["verdict"] != "undecided" for row in result.comparisons.values() for c in row.values())


def test_the_race_spends_fewer_runs_than_a_fixed_stage_that_decides_as_often():
    """A fixed stage gives every trial and the control the same N seeds; the race's runs are compared with the
    smallest N whose fixed stage decides as much, places and verdicts (on average over the repeats)."""
    race_runs, race_decided, fixed_decided = [], [], {n: [] for n in (2, 4, 8)}
    for repeat in range(REPEATS):
        result, _ = race_of(TRADE_OFF, repeat)
        race_runs.append(result.runs)
        race_decided.append(_decided(result))
        for n in fixed_decided:  # seeds == max_seeds: one round, no racing
            fixed, _ = race_of(TRADE_OFF, repeat, seeds=n, max_seeds=n, budget=10 * n)
            fixed_decided[n].append(_decided(fixed))
    n = next(n for n in (2, 4, 8) if np.mean(fixed_decided[n]) >= np.mean(race_decided))
    assert np.mean(race_runs) < len(TRADE_OFF) * n, (np.mean(race_runs), n, fixed_decided)


def test_the_race_stops_at_its_budget_and_says_so():
    result, calls = race_of(FLAT, 0, budget=9)  # round 1 is 8 runs; round 2 would need more than 1
    assert result.runs == len(calls) == 8
    assert result.stopped.startswith("budget of 9 runs spent")


def test_a_replayed_race_asks_for_the_same_runs_in_the_same_rounds():
    first, calls = race_of(TRADE_OFF, 7)
    again, calls_again = race_of(TRADE_OFF, 7)
    assert calls == calls_again and first.place == again.place and first.p_front == pytest.approx(again.p_front)


def test_an_anchor_counts_its_search_run_as_seed_0_and_a_picked_trial_does_not():
    """Seeds 2: the picked trial runs 1 and 2 (its seed 0 got it picked), the anchor 1 after its given 0, and the
    control every seed either runs: 5 runs, not the 6 of three trials x 2 fresh seeds."""
    truth = {"plain_kd": (0.10, 85.0), "mix": (-0.30, 84.0), "top": (-0.30, 85.0)}
    result, calls = race_of(truth, 0, seeds=2, max_seeds=2, anchors=("plain_kd", "mix"))
    assert sorted(calls) == [("mix", 1), ("plain_kd", 1), ("plain_kd", 2), ("top", 1), ("top", 2)]
    assert result.runs == 5 and result.fixed_runs() == 5
    assert result.seeds == {"mix": [0, 1], "top": [1, 2], "plain_kd": [0, 1, 2]}
    # differences are paired over the seeds both have: mix - control over 0 and 1, top - control over 1 and 2
    run, _ = simulate(truth, 0)
    values = run([(t, s) for t in truth for s in (0, 1, 2)])
    for trial, shared in (("mix", (0, 1)), ("top", (1, 2))):
        d = [values[(trial, s)][0] - values[("plain_kd", s)][0] for s in shared]
        assert result.comparisons[trial]["bias/amplification"]["diff"] == pytest.approx(np.mean(d))
