"""analysis.importance: per-objective fANOVA importance names the parameter each synthetic objective depends on."""

import numpy as np
import optuna
import pytest

from analysis.importance import importances


def test_each_objective_is_attributed_to_the_parameter_it_depends_on():
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    rng = np.random.default_rng(0)
    for _ in range(40):
        trial = study.ask()
        x = trial.suggest_float("distill.loss.temperature", 1.0, 8.0)
        y = trial.suggest_float("distill.loss.alpha_mlm", 0.0, 4.0)
        trial.suggest_categorical("distill.mitigation.mode", ["none", "cda"])  # drives nothing
        study.tell(trial, [x**2 + 0.01 * rng.normal(), 3 * y + 0.01 * rng.normal()])
    found = importances(study, ["bias/amplification", "world/score"])
    assert max(found["bias/amplification"], key=found["bias/amplification"].get) == "distill.loss.temperature"
    assert max(found["world/score"], key=found["world/score"].get) == "distill.loss.alpha_mlm"
    assert found["bias/amplification"]["distill.loss.temperature"] > 0.9
    assert found["world/score"]["distill.mitigation.mode"] < 0.05


def test_too_few_trials_attribute_nothing():
    study = optuna.create_study(directions=["minimize", "maximize"])
    trial = study.ask()
    trial.suggest_float("x", 0, 1)
    study.tell(trial, [0.0, 0.0])
    assert importances(study, ["a", "b"]) == {}


def test_a_spread_within_the_noise_is_said_to_be_noise():
    """Five trials whose values differ by the noise alone: sum of squared deviations 4 / noise 1^2 = 4 on 4 degrees of
    freedom (chi-square p 0.41); the same spread against a noise sd of 0.2 is 100 (p ~ 1e-20): real."""
    from scipy import stats

    from analysis.importance import spread_vs_noise

    values = np.array([-1.0, 0.0, 1.0, 1.0, -1.0])  # mean 0, squared deviations sum to 4
    flat = spread_vs_noise(values, 1.0)
    assert flat["q"] == 4.0 and flat["p_value"] == stats.chi2.sf(4.0, 4) and flat["p_value"] > 0.05
    assert flat["spread_sd"] == 1.0
    real = spread_vs_noise(values, 0.2)
    assert real["q"] == pytest.approx(100.0) and real["p_value"] < 1e-6


def test_the_permutation_null_tells_a_driver_from_a_bystander():
    """temperature drives the objective; mode is noise. With 39 permutations the smallest p is 1/40."""
    from analysis.importance import permutation_p_values

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize"], sampler=optuna.samplers.RandomSampler(seed=0))
    rng = np.random.default_rng(1)
    for _ in range(16):
        trial = study.ask()
        x = trial.suggest_float("distill.loss.temperature", 1.0, 8.0)
        trial.suggest_categorical("distill.mitigation.mode", ["none", "cda"])
        study.tell(trial, [x + 0.05 * rng.normal()])
    p = permutation_p_values(study, 0, permutations=39)
    assert p["distill.loss.temperature"] == 1 / 40
    assert p["distill.mitigation.mode"] > 0.05
