"""A study folder moved to another path: an interrupted study resumes there, a finished one reads back there."""

import json
import shutil

import optuna
import pytest
import yaml

from study.load import parse_config
from study.record import folder
from study.record.optuna_store import optuna_storage
from study.search.driver import run_study
from tests.conftest import OBJECTIVES, kill_session, tiny_space, trial_runs, wait_for
from tests.test_search_resume import _finished_count, _start_driver

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_ray_left_behind")]  # a study killed, moved, resumed


def test_a_moved_folder_resumes_and_reads_back(tiny_world, tmp_path, capsys):
    raw = tiny_space(num_samples=2, max_concurrent_trials=1)
    raw["distill"].update({"steps": 40, "checkpoint_every": 10})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    first = tmp_path / "first"
    proc = _start_driver(space, first, tmp_path / "first.log")
    try:
        wait_for(lambda: _finished_count(first) >= 1, "the first trial finished", proc)
    finally:
        kill_session(proc)
    record = yaml.safe_load((first / folder.CONFIG).read_text())
    assert record["study_dir"] is None and record["search"]["storage_path"] == folder.RAY  # nothing names the old path
    assert json.loads((first / folder.META).read_text())["storage_path"] == folder.RAY

    moved = tmp_path / "elsewhere" / "study"
    moved.parent.mkdir()
    shutil.move(first, moved)  # the old path is gone: nothing may still read or write there
    front = run_study(parse_config(raw), moved, resume=True)
    assert not first.exists()  # nothing was written at the old path (artifacts included)
    meta = json.loads((moved / folder.META).read_text())
    assert meta["tracking_uri"] == folder.local_store(moved)
    from mlflow import MlflowClient

    parent = MlflowClient(meta["tracking_uri"]).get_run(meta["parent_run_id"])
    assert parent.info.artifact_uri.startswith((moved / folder.ARTIFACTS).as_uri())
    assert folder.PARETO_JSON in {a.path for a in MlflowClient(meta["tracking_uri"]).list_artifacts(parent.info.run_id)}
    everything = trial_runs(moved)  # a trial lost before Tune's state recorded it ends KILLED (not resumed)
    assert {r.info.status for r in everything} <= {"FINISHED", "KILLED"}
    runs = [r for r in everything if r.info.status == "FINISHED"]
    assert len(runs) == 2 and len({r.data.tags["trial_id"] for r in runs}) == 2
    ot = optuna.load_study(study_name="tiny-study", storage=optuna_storage(moved))
    states = [t.state.name for t in ot.trials]
    assert states.count("COMPLETE") == 2 and "RUNNING" not in states
    # the Train runs' saved results, in the moved folder's storage, name their checkpoints relative to it
    saved = [json.loads(p.read_text()) for p in (moved / folder.RAY).glob(f"{folder.train_run('*')}/{folder.RESULT}")]
    assert len(saved) == 2 and all(not s["uri"].startswith("/") for s in saved)

    copied = tmp_path / "copy"
    shutil.copytree(moved, copied)  # a finished study, copied: `kdstudy pareto` reads it where it is now
    from study.cli import main

    capsys.readouterr()  # (the resumed study's own tables)
    assert main(["pareto", str(copied), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(row["trial_id"] for row in shown["front"]) == sorted(t.trial_id for t, _ in front.front_trials())
    values = {row["trial_id"]: [row["objectives"][m] for m in OBJECTIVES] for row in shown["front"]}
    by_run = {r.data.tags["trial_id"]: [r.data.metrics[m] for m in OBJECTIVES] for r in runs}
    assert all(values[t] == pytest.approx(by_run[t]) for t in values)
