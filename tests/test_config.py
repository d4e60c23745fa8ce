"""Config validation: every error names the field path and the bad value, the search section's cross-checks
included (bounds, conditions, anchors, objectives no trial would report, rerun overrides)."""


import pytest
import torch
import yaml

from study.cluster.capacity import local_trials
from study.config import ConfigError, with_params
from study.distill.losses import weighted_loss
from study.distill.optim import make_optimizer
from study.load import apply_overrides, parse_config
from tests.conftest import study_raw


def error(raw):
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "s.yaml")
    return str(err.value)


def test_a_default_study_optimises_as_distilbert_does():
    """What a config without a distill section builds (study.distill.optim): AdamW (0.9, 0.98), eps 1e-6, no decay
    on biases and LayerNorms, the learning rate rising over the first 5% of the steps to 5e-4, then falling linearly
    to 0; and the loss weighted 5 KL + 2 MLM + 1 cosine (study.distill.losses)."""
    cfg = parse_config({}).distill
    model = torch.nn.ModuleDict({"dense": torch.nn.Linear(2, 2), "LayerNorm": torch.nn.LayerNorm(2)})
    optimizer, scheduler = make_optimizer(model, cfg.optim, total_steps=100)
    decayed, plain = optimizer.param_groups
    assert [p.shape for p in decayed["params"]] == [(2, 2)] and plain["weight_decay"] == 0.0  # dense.weight only
    assert decayed["betas"] == (0.9, 0.98) and decayed["eps"] == 1e-6
    rates = []
    for _ in range(56):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert rates[0] == 0.0 and rates[5] == pytest.approx(5e-4) and rates[55] == pytest.approx(5e-4 * 45 / 95)
    terms = {"loss_kl": torch.tensor(0.1), "loss_mlm": torch.tensor(0.2), "loss_cos": torch.tensor(0.3)}
    assert weighted_loss(terms, cfg).item() == pytest.approx(5 * 0.1 + 2 * 0.2 + 1 * 0.3)


def test_errors_name_path_and_value():
    assert error({"distill": {"steps": 1, "loss": {"temperature": -1}}}) == \
        "s.yaml: distill.loss.temperature: Input should be greater than 0, got -1"
    assert "distill.masking: mask + keep + random must be 1, got 1.1" in error(
        {"distill": {"steps": 1, "masking": {"mask": 0.9}}})
    assert "give exactly one of steps and epochs" in error({"distill": {"steps": 3, "epochs": 1}})
    assert "world: hidden (100) must be divisible by heads (3)" in error({"world": {"hidden": 100, "heads": 3}})
    assert "bias.primary" in error({"bias": {"primary": "bias/nope"}})
    assert error({"sudent": {}}) == "s.yaml: sudent: unknown key"


def test_all_loss_weights_zero_is_an_error():
    assert "nothing to train on" in error(
        {"distill": {"steps": 1, "loss": {"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0}}})


def test_overrides_parse_yaml_values():
    raw = apply_overrides({"distill": {"steps": 3}}, ["distill.steps=10", "distill.mitigation.mode=mixup",
                                                      "student.layers=[0, 3]", "distill.epochs=null"])
    cfg = parse_config(raw)
    assert cfg.distill.steps == 10 and cfg.distill.mitigation.mode == "mixup" and cfg.student.layers == [0, 3]
    with pytest.raises(ConfigError, match="expected key.path=value"):
        apply_overrides({}, ["distill.steps"])


def test_sampled_values_land_in_the_config():
    cfg = with_params(parse_config(study_raw()), {"distill.loss.temperature": 3.5, "distill.mitigation.mode": "mixup"})
    assert cfg.distill.loss.temperature == 3.5 and cfg.distill.mitigation.mode == "mixup"


@pytest.mark.parametrize("change, expected", [
    (("search", "space", "distill.loss.temperature", "low"), 0.0),
    (("search", "space", "distill.loss.temperature", "high"), 0.5),
    (("search", "space", "distill.loss.temprature"), {"type": "float", "low": 1, "high": 2}),
    (("search", "space", "distill.mitigation.mode", "choices"), []),
    (("search", "space", "distill.loss.temperature", "when"), {"student.n_layers": 2}),
    (("search", "space", "distill.mitigation.alpha", "when"), {"distill.mitigation.mode": "magic"}),
    (("search", "space", "distill.loss.temperature", "scale"), "log"),
    (("search", "objectives"), [{"metric": "glue/score", "mode": "max"}]),
    (("search", "objectives"), [{"metric": "world/score", "mode": "up"}]),
    (("search", "anchors"), [{"name": "a", "params": {"distill.loss.temperature": 20.0}}]),
    (("search", "anchors"), [{"name": "a", "params": {"distill.optim.lr": 1.0}}]),
    (("search", "space", "search.num_samples"), {"type": "int", "low": 1, "high": 4}),
    (("search", "num_samples"), 0),
])
def test_malformed_space_is_one_clear_error(change, expected):
    raw = study_raw()
    node = raw
    *parents, leaf = change
    for key in parents:
        node = node[key]
    node[leaf] = expected
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "space.yaml")
    message = str(err.value)
    assert message.startswith("space.yaml: search.") and "\n" not in message
    # the message names the field it is about
    named = [p for p in change if p not in ("search",)]
    assert any(p in message for p in named), message


def test_error_messages_read_well():
    raw = study_raw()
    raw["search"]["space"]["distill.loss.temperature"] = {"type": "float", "low": -1.0, "high": 2.0}
    with pytest.raises(ConfigError, match=r"search\.space\.distill\.loss\.temperature: -1\.0 is not a valid value "
                                          r"\(distill\.loss\.temperature: Input should be greater than 0"):
        parse_config(raw, "space.yaml")
    raw["search"]["space"]["distill.loss.temperature"] = {"type": "float", "low": 0.0, "high": 2.0, "log": True}
    with pytest.raises(ConfigError, match=r"distill\.loss\.temperature: low must be > 0 on a log scale, got 0"):
        parse_config(raw, "space.yaml")
    raw["search"]["space"]["distill.loss.temperature"] = {"type": "float", "low": 1.0, "high": 2.0,
                                                          "when": {"student.n_layers": 2}}
    with pytest.raises(ConfigError, match=r"temperature\.when: student\.n_layers must be a parameter listed before"):
        parse_config(raw, "space.yaml")


def test_bad_rerun_overrides_fail_at_load():
    raw = yaml.safe_load(open("search_spaces/smoke.yaml"))
    raw["rerun"]["full"] = {"distill.steps": -3}
    with pytest.raises(ConfigError, match=r"rerun\.full: distill\.steps: Input should be greater than or equal to 1"):
        parse_config(raw, "smoke.yaml")


def test_an_objective_toward_a_target_optimises_the_distance():
    """CrowS-Pairs' ideal score is 50: a student at 46 (4 below) beats one at 55 (5 above), though 55 is 'higher'."""
    from study.config import Objective

    toward = Objective(metric="bias/crows/score", mode="min", target=50.0)
    assert toward.key == "bias/crows/score/to_target"
    assert toward.value({"bias/crows/score": 46.0, "bias/crows/score_se": 1.5}) == {
        "bias/crows/score/to_target": 4.0, "bias/crows/score/to_target_se": 1.5}
    assert toward.value({"bias/crows/score": 55.0}) == {"bias/crows/score/to_target": 5.0}
    plain = Objective(metric="world/score", mode="max")
    assert plain.key == "world/score" and plain.value({"world/score": 80.0}) == {}


def test_auto_concurrency_counts_the_workers_cores():
    raw = study_raw(max_concurrent_trials="auto", scaling={"num_workers": 2, "cpus_per_worker": 1})
    search = parse_config(raw).search
    assert local_trials(search, cpus=8) == 4 and local_trials(search, cpus=1) == 1
    assert local_trials(parse_config(study_raw(max_concurrent_trials=3)).search, cpus=64) == 3
