"""Config validation: every error names the field path and the bad value."""

import pytest

from study.config import ConfigError, apply_overrides, parse_config


def error(raw):
    with pytest.raises(ConfigError) as err:
        parse_config(raw, "s.yaml")
    return str(err.value)


def test_defaults_are_distilbert_reference():
    cfg = parse_config({})
    assert (cfg.distill.loss.alpha_ce, cfg.distill.loss.alpha_mlm, cfg.distill.loss.alpha_cos) == (5.0, 2.0, 1.0)
    assert cfg.distill.loss.temperature == 2.0 and cfg.distill.optim.lr == 5e-4 and cfg.distill.optim.clip == 5.0
    assert cfg.distill.optim.betas == (0.9, 0.98) and cfg.distill.optim.eps == 1e-6
    assert cfg.distill.masking.prob == 0.15 and cfg.distill.loss.kl_positions == "all"


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
