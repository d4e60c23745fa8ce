"""The search section: the define-by-run space Optuna samples from, anchors, and one-line errors for bad spaces."""

import copy
import functools

import optuna
import pytest
import yaml

from study.cli import main
from study.config import ConfigError, load_config, parse_config, with_params
from study.search import anchor_of, make_sampler, suggest

SPACE = {
    "distill.mitigation.mode": {"type": "categorical", "choices": ["none", "cda", "mixup"]},
    "distill.mitigation.alpha": {"type": "float", "low": 0.1, "high": 2.0, "log": True,
                                 "when": {"distill.mitigation.mode": "mixup"}},
    "distill.mitigation.p": {"type": "float", "low": 0.25, "high": 1.0, "when": {"distill.mitigation.mode": ["mixup"]}},
    "distill.loss.temperature": {"type": "float", "low": 1.0, "high": 8.0, "log": True},
    "student.n_layers": {"type": "int", "low": 1, "high": 3},
}


def study_raw(**search) -> dict:
    return {"name": "s", "distill": {"steps": 5}, "eval": {"suites": ["world"]},
            "search": {"space": copy.deepcopy(SPACE), **search}}


def _specs(raw: dict) -> dict:
    return {k: v.model_dump() for k, v in parse_config(raw).search.space.items()}


def test_conditional_parameters_only_when_their_condition_holds():
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    space = _specs(study_raw())
    for _ in range(60):
        trial = study.ask()
        suggest(trial, space)
        mixup = trial.params["distill.mitigation.mode"] == "mixup"
        assert ("distill.mitigation.alpha" in trial.params) == mixup
        assert ("distill.mitigation.p" in trial.params) == mixup
        assert 1.0 <= trial.params["distill.loss.temperature"] <= 8.0
        assert trial.params["student.n_layers"] in (1, 2, 3)
        study.tell(trial, [0.0, 0.0])
    modes = {t.params["distill.mitigation.mode"] for t in study.trials}
    assert modes == {"none", "cda", "mixup"}  # all three branches were exercised


def test_ray_searcher_asks_anchors_first_then_samples():
    from ray.tune.search.optuna import OptunaSearch

    cfg = parse_config(study_raw(anchors=[
        {"name": "plain_kd", "params": {"distill.mitigation.mode": "none", "distill.loss.temperature": 2.0}}]))
    searcher = OptunaSearch(space=functools.partial(suggest, space=_specs(study_raw())),
                            metric=["bias/amplification", "world/score"], mode=["min", "max"],
                            points_to_evaluate=[a.params for a in cfg.search.anchors],
                            sampler=make_sampler(cfg.search.sampler))
    first = searcher.suggest("t0")
    assert first["distill.mitigation.mode"] == "none" and first["distill.loss.temperature"] == 2.0
    assert "distill.mitigation.alpha" not in first  # the anchor's mode makes it inactive
    assert anchor_of(first, [a.model_dump() for a in cfg.search.anchors]) == "plain_kd"
    second = searcher.suggest("t1")
    assert anchor_of(second, [a.model_dump() for a in cfg.search.anchors]) is None
    with_params(cfg, second)  # every sampled config is a valid study config


def test_sampled_values_land_in_the_config():
    cfg = with_params(parse_config(study_raw()), {"distill.loss.temperature": 3.5, "distill.mitigation.mode": "mixup"})
    assert cfg.distill.loss.temperature == 3.5 and cfg.distill.mitigation.mode == "mixup"


def test_samplers():
    names = {"nsga2": optuna.samplers.NSGAIISampler, "tpe": optuna.samplers.TPESampler,
             "gp": optuna.samplers.GPSampler, "random": optuna.samplers.RandomSampler}
    for name, cls in names.items():
        sampler = make_sampler(parse_config(study_raw(sampler={"name": name})).search.sampler)
        assert isinstance(sampler, cls)
    assert make_sampler(parse_config(study_raw(sampler={"name": "tpe"})).search.sampler)._multivariate


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


def test_run_with_a_bad_space_exits_2_with_one_line(tmp_path, capsys):
    raw = study_raw()
    raw["search"]["space"]["distill.loss.temperature"]["low"] = 9.0
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--study-dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdstudy: error:") and "\n" not in err and "low must be < high" in err
    assert not (tmp_path / "study").exists()  # nothing half-written


def test_run_needs_a_search_section(tmp_path, capsys):
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "distill": {"steps": 5}}))
    assert main(["run", str(path), "--study-dir", str(tmp_path / "study")]) == 2
    assert "no search section" in capsys.readouterr().err


def test_smoke_space_validates_and_is_conditional():
    cfg = load_config("search_spaces/smoke.yaml")
    assert cfg.search.num_samples >= 8 and cfg.search.space["distill.mitigation.alpha"].when
    assert [a.name for a in cfg.search.anchors] == ["plain_kd", "paper_mixup"]
    assert [o.metric for o in cfg.search.objectives] == ["bias/amplification", "world/score"]
