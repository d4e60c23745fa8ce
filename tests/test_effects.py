"""Effects of a grid study on synthetic runs with known main effects, one interaction and a null factor; no Ray."""

import itertools

import numpy as np
import pytest
from scipy import stats

from analysis.effects import effects, effects_figure, effects_tables

A = {"a0": -0.3, "a1": 0.0, "a2": 0.3}  # main effects (each factor's sum to 0)
B = {"b0": -0.2, "b1": 0.2}
C = {"c0": 0.0, "c1": 0.0}  # the null factor
AB = {("a0", "b0"): 0.1, ("a0", "b1"): -0.1, ("a1", "b0"): -0.1, ("a1", "b1"): 0.1, ("a2", "b0"): 0.0,
      ("a2", "b1"): 0.0}  # rows and columns sum to 0
SEED_SHIFT = [0.5, -0.2, 0.1, 0.0, -0.4, 0.3]  # what every cell shares at one seed: paired away


def synthetic_runs(noise: float, rng_seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(rng_seed)
    runs = []
    for seed, shift in enumerate(SEED_SHIFT):
        for a, b, c in itertools.product(A, B, C):
            y = 1.0 + A[a] + B[b] + C[c] + AB[a, b] + shift + noise * rng.standard_normal()
            runs.append({"params": {"A": a, "B": b, "C": c}, "seed": seed, "metrics": {"y": y}})
    return runs


def test_noise_free_effects_are_exact():
    e = effects(synthetic_runs(noise=0.0), ["A", "B", "C"], "y", [("A", "B")])
    assert e["grand_mean"] == pytest.approx(1.0 + np.mean(SEED_SHIFT))
    for factor, truth in (("A", A), ("B", B), ("C", C)):
        for level, value in truth.items():
            assert e["main"][factor][level]["effect"] == pytest.approx(value, abs=1e-12)
    for (a, b), value in AB.items():
        assert e["interactions"]["A x B"][f"{a} | {b}"]["effect"] == pytest.approx(value, abs=1e-12)
    rows = {r["source"]: r for r in e["anova"]}
    # 6 seeds x 12 cells; SS(A) = 24 runs per level x (0.09 + 0 + 0.09), SS(B) = 36 x 2 x 0.04
    assert rows["A"]["ss"] == pytest.approx(24 * 0.18) and rows["B"]["ss"] == pytest.approx(72 * 0.04)
    assert rows["A x B"]["ss"] == pytest.approx(12 * 4 * 0.01) and rows["C"]["ss"] == pytest.approx(0, abs=1e-20)
    assert rows["residual"]["ss"] == pytest.approx(0, abs=1e-9) and rows["residual"]["df"] == 72 - 1 - 2 - 1 - 1 - 5 - 2
    assert sum(r["share"] for r in e["anova"] if r["source"] != "total") == pytest.approx(1.0)
    assert e["balanced"]


def test_noisy_effects_are_recovered_within_their_intervals_and_a_null_covers_zero():
    e = effects(synthetic_runs(noise=0.05), ["A", "B", "C"], "y", [("A", "B")])
    for factor, truth in (("A", A), ("B", B), ("C", C)):
        for level, value in truth.items():
            assert abs(e["main"][factor][level]["effect"] - value) < 0.03, (factor, level)
            assert e["main"][factor][level]["seeds"] == len(SEED_SHIFT)
    rows = {r["source"]: r for r in e["anova"]}
    assert rows["A"]["p"] < 1e-6 and rows["C"]["p"] > 0.01 and rows["C"]["share"] < rows["A x B"]["share"]


def test_the_intervals_cover_the_truth_95_times_in_100():
    """Over 300 noisy studies: each effect's 95% interval holds its true value in 92-98% of them, the null
    factor's holds 0 as often; the half-width is what the design's arithmetic gives (hand computed)."""
    truths = {("A", k): v for k, v in A.items()} | {("B", k): v for k, v in B.items()} | \
        {("C", k): v for k, v in C.items()} | {("A x B", f"{a} | {b}"): v for (a, b), v in AB.items()}
    hits = dict.fromkeys(truths, 0)
    repeats = 300
    for rng_seed in range(repeats):
        e = effects(synthetic_runs(noise=0.05, rng_seed=rng_seed), ["A", "B", "C"], "y", [("A", "B")])
        for (term, level), value in truths.items():
            row = (e["interactions"] if " x " in term else e["main"])[term][level]
            hits[term, level] += row["ci_low"] < value < row["ci_high"]
    for key, n in hits.items():
        assert 0.92 <= n / repeats <= 0.98, (key, n)
    # a main effect of A (24 of 72 runs per level): var = MS_res * (1/24 - 1/72); df_res = 60
    e = effects(synthetic_runs(noise=0.05), ["A", "B", "C"], "y", [("A", "B")])
    ms_res = next(r for r in e["anova"] if r["source"] == "residual")["ss"] / 60
    row = e["main"]["A"]["a0"]
    half = stats.t.ppf(0.975, 60) * np.sqrt(ms_res * (1 / 24 - 1 / 72))
    assert (row["ci_high"] - row["ci_low"]) / 2 == pytest.approx(half)


def test_one_seed_gets_its_interval_from_the_residual_and_an_unbalanced_design_says_so():
    runs = [r for r in synthetic_runs(0.05) if r["seed"] == 0][:-1]  # one cell missing
    e = effects(runs, ["A", "B", "C"], "y")
    row = e["main"]["A"]["a0"]
    assert row["ci_low"] < A["a0"] < row["ci_high"] and not e["balanced"]
    at_b0 = [r for r in runs if r["params"]["B"] == "b0"]  # 6 runs, A's 3 levels: df_res = 6 - 1 - 2 = 3
    assert np.isfinite(effects(at_b0, ["A"], "y")["main"]["A"]["a0"]["ci_low"])
    saturated = [r for r in at_b0 if r["params"]["C"] == "c0"]  # 3 runs, 3 levels: nothing left for the residual
    assert np.isnan(effects(saturated, ["A"], "y")["main"]["A"]["a0"]["ci_low"])


def test_tables_and_figure_cover_every_factor():
    found = {"y": effects(synthetic_runs(0.05), ["A", "B", "C"], "y", [("A", "B")])}
    tables = effects_tables(found, "synthetic")
    assert len(tables) == 2 and tables[0].row_count == 3 + 2 + 2 + 6 and tables[1].row_count == 3 + 1 + 1 + 2
    figure = effects_figure(found, "synthetic")
    assert len(figure.axes) == 3
