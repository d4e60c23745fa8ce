"""The study YAMLs shipped in search_spaces/: each loads, names the command that runs it, and can reach the answer its
header promises."""

from pathlib import Path

import pytest

from study.catalog import GLUE_TASKS
from study.load import load_config
from study.reruns.seeds import seed_config

SPACES = sorted(Path("search_spaces").glob("*.yaml"))


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_a_shipped_study_loads_and_its_header_names_its_command(path):
    cfg = load_config(path)
    assert cfg.search is not None
    header = [line for line in path.read_text().splitlines() if line.startswith("#")]
    assert any(f"kdstudy run search_spaces/{path.name}" in line for line in header)


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_the_race_can_take_every_anchor_to_its_last_seed(path):
    search = load_config(path).search
    if search.confirm is None:
        pytest.skip("no confirm stage")
    # an anchor's search run is its seed 0: it runs max_seeds - 1 more, and the budget must allow them all
    assert search.confirm.runs(len(search.anchors)) >= len(search.anchors) * (search.confirm.max_seeds - 1)


@pytest.mark.parametrize("name", ["smoke", "world", "paper"])
def test_a_search_answers_whether_the_papers_mixup_beats_plain_kd(name):
    search = load_config(f"search_spaces/{name}.yaml").search
    modes = {a.name: a.params.get("distill.mitigation.mode") for a in search.anchors}
    assert modes[search.control_anchor] == "none" and "mixup" in modes.values()


def test_the_world_study_is_the_smoke_study_done_thoroughly():
    smoke, world = load_config("search_spaces/smoke.yaml"), load_config("search_spaces/world.yaml")
    assert world.search.space == smoke.search.space and world.search.anchors == smoke.search.anchors
    assert world.eval.world == smoke.eval.world  # the same task score, so the two studies' answers compare
    assert world.search.num_samples > smoke.search.num_samples
    assert world.search.confirm.top > smoke.search.confirm.top
    assert world.search.confirm.max_seeds > smoke.search.confirm.max_seeds


def test_the_papers_full_rerun_fine_tunes_every_glue_task_without_a_cap():
    full = seed_config(load_config("search_spaces/paper.yaml"), {}, 0, full=True)
    assert sorted(full.eval.glue.tasks) == sorted(GLUE_TASKS) and full.eval.glue.max_steps is None
