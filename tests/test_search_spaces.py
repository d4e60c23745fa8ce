"""The study YAMLs shipped in search_spaces/: each loads, and says what its header promises."""

from study.load import load_config
from study.reruns.seeds import seed_config


def test_smoke_space_validates_and_is_conditional():
    cfg = load_config("search_spaces/smoke.yaml")
    assert cfg.search.num_samples >= 4 and cfg.search.space["distill.mitigation.alpha"].when
    assert [a.name for a in cfg.search.anchors] == ["plain_kd", "paper_mixup"]
    assert [o.metric for o in cfg.search.objectives] == ["bias/amplification", "world/score"]
    assert cfg.search.control_anchor == "plain_kd" and cfg.search.objectives[1].margin == 1.0
    # the budget takes both anchors to max_seeds (their search runs are their seed 0): the race can decide them
    anchors, confirm = len(cfg.search.anchors), cfg.search.confirm
    assert confirm.runs(anchors) >= anchors * (confirm.max_seeds - 1)


def test_world_space_is_the_thorough_smoke_study():
    smoke, world = load_config("search_spaces/smoke.yaml"), load_config("search_spaces/world.yaml")
    assert world.search.space == smoke.search.space and world.search.anchors == smoke.search.anchors
    assert world.eval.world == smoke.eval.world  # the same task score, so the two studies' answers compare
    assert world.search.num_samples > smoke.search.num_samples
    assert world.search.confirm.top > smoke.search.confirm.top
    assert world.search.confirm.max_seeds > smoke.search.confirm.max_seeds


def test_smoke_yaml_validates():
    cfg = load_config("search_spaces/smoke.yaml")
    assert cfg.teacher.source == "world" and cfg.distill.steps > 0


def test_paper_yaml_loads():
    cfg = load_config("search_spaces/paper.yaml")
    assert cfg.teacher.source == "bert-base-uncased" and cfg.student.n_layers == 6
    assert cfg.search.sampler.name == "nsga2" and cfg.search.num_samples >= 48
    assert [a.name for a in cfg.search.anchors] == ["plain_kd", "cda", "paper_mixup"]
    assert set(cfg.bias.metrics) == {"template", "crows", "seat", "stereoset"}
    assert cfg.search.scaling.use_gpu and "glue" in cfg.eval.suites
    full = seed_config(cfg, {}, 0, full=True)
    assert len(full.eval.glue.tasks) == 9 and full.eval.glue.max_steps is None
