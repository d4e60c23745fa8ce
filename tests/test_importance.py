"""analysis.importance: per-objective fANOVA importance names the parameter each synthetic objective depends on."""

import numpy as np
import optuna

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
