"""The grid sampler: every cell once in a fixed order, conditional and generated factors, paired replicates, and a
grid study killed and resumed without a repeated cell (slow: a real local Ray cluster)."""

import collections
import functools
import itertools
import json
import re
from pathlib import Path

import optuna
import pytest
import yaml

from study.config import REPLICATE, ParamSpec, with_params
from study.design import grid_cells, grid_points
from study.load import parse_config
from study.record import folder
from study.record.optuna_store import optuna_storage
from study.search.space import suggest
from tests.conftest import kill_session, tiny_space, trial_runs, wait_for

SPACE = {
    "distill.mitigation.mode": ParamSpec(type="categorical", choices=["none", "mixup"]),
    "distill.mitigation.alpha": ParamSpec(type="float", values=[0.2, 0.4],
                                          when={"distill.mitigation.mode": "mixup"}),
    "student.n_layers": ParamSpec(type="int", values=[1, 2]),
}


def test_every_cell_once_in_a_fixed_order_a_conditional_only_where_it_applies():
    cells = grid_cells(SPACE)
    # none x 2 depths, then mixup x 2 alphas x 2 depths: the first parameter varies slowest
    assert cells == [
        {"distill.mitigation.mode": "none", "student.n_layers": 1},
        {"distill.mitigation.mode": "none", "student.n_layers": 2},
        {"distill.mitigation.mode": "mixup", "distill.mitigation.alpha": 0.2, "student.n_layers": 1},
        {"distill.mitigation.mode": "mixup", "distill.mitigation.alpha": 0.2, "student.n_layers": 2},
        {"distill.mitigation.mode": "mixup", "distill.mitigation.alpha": 0.4, "student.n_layers": 1},
        {"distill.mitigation.mode": "mixup", "distill.mitigation.alpha": 0.4, "student.n_layers": 2},
    ]


def test_a_generated_factor_halves_the_grid_and_stays_balanced():
    space = {"a": ParamSpec(type="int", values=[1, 2, 3]), "t": ParamSpec(type="float", values=[1.0, 2.0, 4.0, 8.0]),
             "m": ParamSpec(type="categorical", choices=["u", "f"]),
             "k": ParamSpec(type="categorical", choices=["all", "masked"], generated_by=["m", "t"])}
    cells = grid_cells(space)
    assert len(cells) == 3 * 4 * 2  # k is not crossed
    # k = (index of m + index of t) mod 2: both levels of k within every (a, t) cell and with every m
    for key in (("a", "t"), ("m",), ("t",)):
        counts = collections.Counter((tuple(c[f] for f in key), c["k"]) for c in cells)
        assert len(set(counts.values())) == 1 and len(counts) == 2 * len({tuple(c[f] for f in key) for c in cells})
    assert cells[:2] == [{"a": 1, "t": 1.0, "m": "u", "k": "all"}, {"a": 1, "t": 1.0, "m": "f", "k": "masked"}]


def _grid_raw(repeats: int = 2) -> dict:
    raw = tiny_space(repeats=repeats, interactions=[["distill.mitigation.mode", "distill.loss.temperature"]])
    raw["search"]["sampler"] = {"name": "grid"}
    raw["search"]["space"] = {
        "distill.mitigation.mode": {"type": "categorical", "choices": ["none", "cda"]},
        "weights": {"type": "categorical", "choices": ["soft", "hard"],
                    "sets": {"soft": {"distill.loss.alpha_mlm": 0.0}, "hard": {"distill.loss.alpha_ce": 0.0}},
                    "when": {"distill.mitigation.mode": "none"}},
        "distill.loss.temperature": {"type": "float", "values": [1.0, 4.0]},
    }
    return raw


def test_replicates_run_every_cell_with_the_same_shifted_seeds():
    cfg = parse_config(_grid_raw(repeats=2))
    points = grid_points(cfg.search)
    assert cfg.search.num_samples == len(points) == 2 * 6  # (none x 2 weights + cda) x 2 temperatures, x 2 seeds
    assert [p[REPLICATE] for p in points] == [0] * 6 + [1] * 6  # a whole replicate first
    strip = [{k: v for k, v in p.items() if k != REPLICATE} for p in points]
    assert strip[6:] == strip[:6]  # the same cells in the same order
    trial = with_params(cfg, points[6 + 3])  # replicate 1 of cell 3: none, hard, T 4 (T varies fastest)
    assert (trial.distill.loss.alpha_ce, trial.distill.loss.alpha_mlm, trial.distill.loss.temperature) == (0, 2, 4)
    assert (trial.distill.seed, trial.bias.seed, trial.eval.world.seed) == (1, 1, 1)


def test_optuna_hands_out_the_enqueued_cells_in_order_then_none_left():
    """What Ray's OptunaSearch does with points_to_evaluate, without Ray: enqueue, then ask and run the space."""
    cfg = parse_config(_grid_raw(repeats=2))
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    points = grid_points(cfg.search)
    for p in points:
        study.enqueue_trial(p)
    space = functools.partial(suggest, space=dict(cfg.search.space), repeats=2)
    asked = []
    for _ in points:
        trial = study.ask()
        space(trial)
        asked.append(trial.params)
    assert asked == points
    assert not study.get_trials(states=(optuna.trial.TrialState.WAITING,))


def test_a_cell_lost_between_the_sampler_and_tunes_saved_state_is_enqueued_again():
    from study.search.space import requeue_lost_points

    cfg = parse_config(_grid_raw(repeats=1))  # 6 cells
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage, study_name=cfg.name, directions=["minimize", "maximize"])
    points = grid_points(cfg.search)
    for p in points:
        study.enqueue_trial(p)
    space = functools.partial(suggest, space=dict(cfg.search.space))
    asked = [study.ask() for _ in range(3)]
    for trial in asked:
        space(trial)
    study.tell(asked[0], [0.0, 1.0])  # finished; asked[1] Tune saved (running); asked[2] lost with the driver
    lost = requeue_lost_points(cfg, storage, known=[points[0], points[1]])
    assert lost == [points[2]]
    assert study.trials[2].state == optuna.trial.TrialState.FAIL
    waiting = [t.params or t.system_attrs["fixed_params"] for t in study.trials
               if t.state == optuna.trial.TrialState.WAITING]
    assert sorted(map(str, waiting)) == sorted(map(str, points[2:]))  # Tune's 4 remaining trials: exactly these


def test_the_why_study_is_the_balanced_fraction_its_header_describes():
    from study.load import load_config

    cfg = load_config("search_spaces/why.yaml")
    cells = grid_cells(cfg.search.space)
    assert len(cells) == 48 and cfg.search.num_samples == 48  # one run per cell
    for a, b in itertools.combinations(cfg.search.space, 2):  # every pair of factors crossed equally often
        counts = collections.Counter((c[a], c[b]) for c in cells)
        assert len(set(counts.values())) == 1, (a, b)
    # both KL levels in every depth x temperature cell: the KL effect is clear of that interaction
    kl = collections.Counter((c["student.n_layers"], c["distill.loss.temperature"], c["distill.loss.kl_positions"])
                             for c in cells)
    assert len(kl) == 3 * 4 * 2 and set(kl.values()) == {2}
    soft = with_params(cfg, {**cells[0], "loss_weights": "soft"}).distill.loss
    assert (soft.alpha_ce, soft.alpha_mlm, soft.alpha_cos) == (5.0, 0.0, 1.0)


# --- end to end: a grid study killed after its first trial, then resumed -----------------------------------------


def _cells_run(study_dir: Path) -> list[tuple]:
    return [tuple(sorted(json.loads(r.data.tags["params_json"]).items())) for r in trial_runs(study_dir)
            if r.info.status == "FINISHED"]


@pytest.mark.slow
@pytest.mark.usefixtures("no_ray_left_behind")
def test_a_killed_grid_study_resumes_without_repeating_a_cell(tiny_world, tmp_path):
    import os
    import subprocess
    import sys

    from study.search.driver import run_study

    raw = _grid_raw(repeats=2)
    raw["search"]["space"] = {"distill.loss.temperature": {"type": "float", "values": [1.0, 4.0]}}
    raw["search"]["interactions"] = []
    raw["eval"]["suites"] = []  # bias only, as the why study: no fine-tuning
    raw["search"]["objectives"] = [{"metric": "bias/amplification", "mode": "min"},
                                   {"metric": "bias/template/planted_spearman", "mode": "max"}]
    raw["distill"]["steps"] = 30  # long enough that the kill lands mid-study
    raw["distill"]["checkpoint_every"] = 10
    space = tmp_path / "grid.yaml"
    space.write_text(yaml.safe_dump(raw))
    study_dir = tmp_path / "study"
    proc = subprocess.Popen([sys.executable, "-m", "study.cli", "run", str(space), "--study-dir", str(study_dir)],
                            stdout=(tmp_path / "first.log").open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True, env={**os.environ, "RAY_AUTH_MODE": "disabled"})
    try:
        wait_for(lambda: (study_dir / folder.META).is_file() and len(_cells_run(study_dir)) >= 1
                 and " finished: " in (tmp_path / "first.log").read_text(), "the first cell finished", proc)
    finally:
        kill_session(proc)
    before = _cells_run(study_dir)
    assert 1 <= len(before) < 4
    # piped, the driver prints the plain lines it always printed, and no live view
    piped = (tmp_path / "first.log").read_text()
    assert re.search(r"trial \w+ started: .*temperature=[14]", piped), piped[-2000:]
    assert re.search(r"trial \w+ finished: bias/amplification \S+, bias/template/planted_spearman \S+ \| "
                     r"[123]/4 done, \d running, 0 failed \| best bias/amplification", piped), piped[-2000:]
    assert not any(box in piped for box in "┏━┃┡") and "logs in" not in piped  # (the view's table, its footer)
    run_study(parse_config(raw), study_dir, resume=True)
    after = _cells_run(study_dir)
    expected = {tuple(sorted(p.items())) for p in grid_points(parse_config(raw).search)}
    assert sorted(after) == sorted(expected)  # every (cell, replicate) once: none repeated, none lost
    assert set(before) <= set(after)
    # every cell came from the grid (enqueued), none from the sampler's own proposals
    ot = optuna.load_study(study_name=raw["name"], storage=optuna_storage(study_dir))
    complete = ot.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert len(complete) == 4 and all("fixed_params" in t.system_attrs for t in complete)
    effects = json.loads((study_dir / folder.EFFECTS_JSON).read_text())["bias/amplification"]
    assert effects["seeds"] == 2 and set(effects["main"]["distill.loss.temperature"]) == {"1.0", "4.0"}
    assert (study_dir / folder.EFFECTS_FIGURE).is_file()
