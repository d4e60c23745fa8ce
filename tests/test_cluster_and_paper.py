"""The cluster config against Ray's own schema, the paper's search space, dry runs, and the rerun's config rules."""

import copy

import jsonschema
import pytest
import yaml

from study.cli import main
from study.config import ConfigError, load_config, parse_config
from study.data import tokenize
from study.rerun import seed_config


def _ray_up_checks(config: dict) -> None:
    """What `ray up` does to a cluster config before it contacts the cloud: fill defaults, validate the schema."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(config)))


def test_cluster_yaml_passes_rays_schema():
    config = yaml.safe_load(open("cluster.yaml"))
    _ray_up_checks(config)
    assert config["provider"]["type"] == "aws"
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0}  # no trials on the head
    assert nodes["gpu_spot"]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    starts = " ".join(config["head_start_ray_commands"])
    assert "--host 127.0.0.1" in starts and "--dashboard-host=127.0.0.1" in starts  # nothing public
    setup = " ".join(config["setup_commands"])
    assert "ray[default,tune,train]==2.60.0" in setup and "--python 3.11" in setup
    # and the schema does catch a broken node type
    broken = copy.deepcopy(config)
    broken["available_node_types"]["gpu"]["node_confg"] = broken["available_node_types"]["gpu"].pop("node_config")
    with pytest.raises(jsonschema.ValidationError):
        _ray_up_checks(broken)


def test_paper_yaml_loads():
    cfg = load_config("search_spaces/paper.yaml")
    assert cfg.teacher.source == "bert-base-uncased" and cfg.student.n_layers == 6
    assert cfg.search.sampler.name == "nsga2" and cfg.search.num_samples >= 48
    assert [a.name for a in cfg.search.anchors] == ["plain_kd", "cda", "paper_mixup"]
    assert set(cfg.bias.metrics) == {"template", "crows", "seat", "stereoset"}
    assert cfg.search.scaling.use_gpu and "glue" in cfg.eval.suites
    full = seed_config(cfg, {}, 0, full=True)
    assert len(full.eval.glue.tasks) == 9 and full.eval.glue.max_steps is None


def test_dry_run_prints_the_plan_without_ray_or_downloads(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["run", "search_spaces/paper.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "48 trials, 2 at a time; anchors first: plain_kd, cda, paper_mixup" in out
    assert "4 Ray Train worker(s) x 4 CPU, 1 GPU" in out
    assert "10000 steps x 256 sequences" in out and "327.7M tokens" in out
    assert "distill.mitigation.alpha" in out
    import ray

    assert not ray.is_initialized()


def test_seed_config_moves_every_seed_and_applies_full():
    cfg = load_config("search_spaces/smoke.yaml")
    same = seed_config(cfg, {"distill.loss.temperature": 3.0}, 0, full=False)
    assert same.distill.seed == cfg.distill.seed and same.distill.steps == cfg.distill.steps
    assert same.distill.loss.temperature == 3.0
    other = seed_config(cfg, {}, 2, full=True)
    assert (other.distill.seed, other.bias.seed, other.eval.world.seed) == (2, 2, 2)
    assert other.distill.steps == cfg.rerun.full["distill.steps"]


def test_bad_rerun_overrides_fail_at_load():
    raw = yaml.safe_load(open("search_spaces/smoke.yaml"))
    raw["rerun"]["full"] = {"distill.steps": -3}
    with pytest.raises(ConfigError, match=r"rerun\.full: distill\.steps: Input should be greater than or equal to 1"):
        parse_config(raw, "smoke.yaml")


def test_token_budget_keeps_the_first_sentences_that_fit(world_models):
    _, tokenizer, _ = world_models
    sentences = ["she is a nurse .", "he is a pilot .", "the dog slept ."]  # 7 pieces each with [CLS] [SEP]
    assert [len(x) for x in tokenize(sentences, tokenizer, 24)] == [7, 7, 6]
    assert len(tokenize(sentences, tokenizer, 24, max_tokens=14)) == 2
    assert len(tokenize(sentences, tokenizer, 24, max_tokens=13)) == 1
    assert tokenize(sentences, tokenizer, 24, max_tokens=20, chunk=1) == tokenize(sentences, tokenizer, 24)
