"""The noise decomposition of a paired task-score difference (analysis.noise) and the power plan (study.plan.power),
on synthetic cases whose components are known and on counts worked out by hand."""

import math

import numpy as np
import pytest
from scipy import stats

from analysis import noise
from study.load import load_config
from study.plan import power


def test_components_by_hand():
    # 2 distillation seeds x 2 fine-tuning runs: row means 1 and 3, within-row deviations +-1.
    d = np.array([[0.0, 2.0], [2.0, 4.0]])
    # MS_within = (1 + 1 + 1 + 1) / (2 x 1) = 2; MS_between = 2 x ((1 - 2)^2 + (3 - 2)^2) / 1 = 4
    c = noise.paired_components(d)
    assert c["finetune"] == pytest.approx(2.0)
    assert c["distill"] == pytest.approx((4.0 - 2.0) / 2)
    assert c["per_seed"] == pytest.approx(3.0)


def test_components_recover_a_synthetic_truth():
    rng = np.random.default_rng(0)
    # distillation sd 0.4, fine-tuning sd 1.2: 400 seeds x 4 runs
    d = rng.normal(0, 0.4, (400, 1)) + rng.normal(0, 1.2, (400, 4))
    c = noise.paired_components(d)
    assert math.sqrt(c["distill"]) == pytest.approx(0.4, abs=0.08)
    assert math.sqrt(c["finetune"]) == pytest.approx(1.2, abs=0.05)


def test_components_need_two_by_two():
    with pytest.raises(ValueError, match="at least 2 distillation seeds x 2 fine-tuning seeds"):
        noise.paired_components(np.zeros((5, 1)))


def test_a_stalled_run_is_found_and_replaced():
    scores = np.array([[78.0, 78.4, 69.2], [77.9, 78.1, 78.3], [78.5, 78.2, 77.8]])
    short = noise.stopped_short(scores)
    assert short.sum() == 1 and short[0, 2]
    assert noise.without_stopped(scores)[0, 2] == pytest.approx(78.2)  # the median of 78.0 and 78.4
    # a spread that is just the runs' usual spread stops nothing
    assert not noise.stopped_short(np.array([[78.0, 77.0, 79.0], [76.5, 78.5, 77.5]])).any()


def test_validation_variance_of_identical_predictions_is_zero_and_grows_with_disagreement():
    def accuracy(y, p):
        return 100 * float(np.mean(y == p))

    y = np.array([0, 1] * 500)
    assert noise.score_difference_variance(accuracy, y, y, y) == 0.0
    a, b = y.copy(), y.copy()
    b[:100] = 1 - b[:100]  # 10% of the examples disagree: the difference's sd ~ 100 sqrt(0.1 x 0.9 / 1000) = 0.95
    assert math.sqrt(noise.score_difference_variance(accuracy, y, a, b, resamples=400)) == pytest.approx(0.95, abs=0.1)


def test_task_shares_sum_to_one_and_follow_the_variance():
    rng = np.random.default_rng(1)
    loud, quiet = rng.normal(0, 3.0, 2000), rng.normal(0, 1.0, 2000)
    shares = noise.task_shares({"loud": loud, "quiet": quiet})
    assert sum(shares.values()) == pytest.approx(1.0)
    assert shares["loud"] == pytest.approx(9 / 10, abs=0.03)


def test_seeds_needed_against_the_normal_count_and_a_simulation():
    # normal theory: n = (z_0.975 + z_0.90)^2 sd^2 / m^2 = 3.2415^2 x 4 = 42.03 at sd 2, m 1 -> 43; the
    # t-interval needs a little more, never less
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.9)
    assert math.ceil(z ** 2 * 4) == 43
    n = power.seeds_needed(2.0, 1.0)
    assert 43 <= n <= 46
    # at sd 0.4 the count is small enough to check the power by simulation: the 95% t-interval inside +-1
    n = power.seeds_needed(0.4, 1.0)
    rng = np.random.default_rng(2)

    def simulated(k: int) -> float:
        d = rng.normal(0, 0.4, (20000, k))
        half = stats.t.ppf(0.975, k - 1) * d.std(axis=1, ddof=1) / math.sqrt(k)
        return float(np.mean(np.abs(d.mean(axis=1)) + half < 1.0))

    assert simulated(n) >= 0.78 and simulated(n - 1) < 0.8
    assert power.within_power(n, 0.4, 1.0) == pytest.approx(simulated(n), abs=0.02)


def test_power_lines_warn_when_the_race_cannot_reach_the_seeds(monkeypatch):
    cfg = load_config("search_spaces/smoke.yaml")
    monkeypatch.setattr(power, "WORLD_RECIPE", cfg.eval.world)
    monkeypatch.setitem(power.WORLD_NOISE, "world_cola", power.TaskNoise(distill=3.0, finetune=3.0))
    monkeypatch.setitem(power.WORLD_NOISE, "world_sts", power.TaskNoise(distill=3.0, finetune=3.0))
    lines = power.power_lines(cfg)
    assert any("world/score ±1" in line and "paired seeds" in line for line in lines)
    assert any(line.startswith("  WARNING  confirm.max_seeds") for line in lines)


def test_a_glue_task_without_a_published_spread_says_its_figure_is_a_floor():
    cfg = load_config("search_spaces/paper.yaml")
    sd, source = power.glue_task_sd(cfg.eval.glue, "qnli")
    n, p = power.GLUE_VALIDATION["qnli"]
    assert sd == pytest.approx(math.sqrt(2) * 100 * math.sqrt(p * (1 - p) / n))
    assert "floor" in source


def test_a_task_with_a_stalled_run_among_its_seeds_counts_it():
    from study.metrics.glue import SlotRun, combine_slots

    runs = [SlotRun({"score": s}, [], 0, None) for s in (78.0, 78.4, 69.2)]
    combined = combine_slots(runs)
    assert combined["short_runs"] == 1.0 and combined["score"] == pytest.approx((78.0 + 78.4 + 69.2) / 3)
    assert "short_runs" not in combine_slots(runs[:2])  # two runs cannot tell which one stopped short
