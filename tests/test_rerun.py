"""`kdstudy rerun`'s seed configs (the rerun itself runs end to end in tests/test_search_resume.py)."""

from study.load import load_config
from study.reruns.seeds import seed_config


def test_seed_config_moves_every_seed_and_applies_full():
    cfg = load_config("search_spaces/smoke.yaml")
    same = seed_config(cfg, {"distill.loss.temperature": 3.0}, 0, full=False)
    assert same.distill.seed == cfg.distill.seed and same.distill.steps == cfg.distill.steps
    assert same.distill.loss.temperature == 3.0
    other = seed_config(cfg, {}, 2, full=True)
    assert (other.distill.seed, other.bias.seed, other.eval.world.seed) == (2, 2, 2)
    assert other.distill.steps == cfg.rerun.full["distill.steps"]


def test_seed_k_of_a_grid_replicate_moves_its_seeds_k_further():
    cfg = load_config("search_spaces/why.yaml")
    moved = seed_config(cfg, {"distill.loss.temperature": 4.0, "replicate": 1}, 2, full=False)
    assert (moved.distill.seed, moved.bias.seed, moved.eval.world.seed) == (3, 3, 3)
