"""The study record kept in the study's storage (a local folder standing for the bucket): a head lost mid-study is
resumed from the storage alone, and a finished study whose folder is gone is pulled back equal."""

import json
import shutil
import sqlite3

import optuna
import pytest
import yaml
from mlflow import MlflowClient

from study.cli import main
from study.record import folder
from study.record.mirror import copy_record, needed
from study.record.optuna_store import optuna_storage
from tests.conftest import OBJECTIVES, kill_session, tiny_space, trial_runs, wait_for
from tests.test_search_resume import _finished_count

pytestmark = pytest.mark.usefixtures("no_ray_left_behind")


def test_the_default_storage_needs_no_copy(tmp_path):
    assert not needed(tmp_path / "study", str(tmp_path / "study" / folder.RAY))
    assert needed(tmp_path / "study", str(tmp_path / "bucket")) and needed(tmp_path, "s3://bucket/paper")


def test_a_database_is_copied_as_a_consistent_snapshot(tmp_path):
    """A write transaction open in the folder's database while the copy runs: the copy holds what was committed."""
    study = tmp_path / "study"
    study.mkdir()
    (study / folder.META).write_text("{}")
    db = sqlite3.connect(study / folder.OPTUNA)
    db.execute("CREATE TABLE t (x)")
    db.execute("INSERT INTO t VALUES (1)")
    db.commit()
    db.execute("INSERT INTO t VALUES (2)")  # not committed
    copy_record(study, str(tmp_path / "bucket"))
    db.rollback()
    copied = sqlite3.connect(tmp_path / "bucket" / folder.RECORD / folder.OPTUNA)
    assert copied.execute("SELECT x FROM t").fetchall() == [(1,)]


def _runs(study_dir):
    meta = json.loads((study_dir / folder.META).read_text())
    client = MlflowClient(folder.local_store(study_dir))
    return {r.info.run_id: (r.info.status, r.data.metrics, {k: v for k, v in r.data.tags.items()
                                                           if not k.startswith("mlflow.log")})
            for r in client.search_runs([meta["experiment_id"]])}


@pytest.mark.slow  # a study on a real local Ray cluster, killed, its folder deleted, resumed from the storage
def test_a_lost_head_resumes_from_the_storage_and_a_laptop_pulls_it_back(tiny_world, tmp_path, capsys):
    bucket = tmp_path / "bucket"
    raw = tiny_space(num_samples=2, max_concurrent_trials=1, storage_path=str(bucket))
    raw["distill"].update({"steps": 40, "checkpoint_every": 10})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    head = tmp_path / "head"
    from tests.test_search_resume import _start_driver

    proc = _start_driver(space, head, tmp_path / "first.log")
    try:
        wait_for(lambda: _finished_count(head) >= 1 and (bucket / folder.RECORD / folder.MLFLOW).is_file()
                 and _finished_count_in(bucket / folder.RECORD) >= 1, "the first trial in the storage's record", proc)
    finally:
        kill_session(proc)
    shutil.rmtree(head)  # the head's disk is gone: its folder, its MLflow store, its Optuna storage

    new_head = tmp_path / "new-head"
    assert main(["run", str(space), "--study-dir", str(new_head), "--resume", "--from", str(bucket)]) == 0
    everything = trial_runs(new_head)  # a trial lost before Tune's state recorded it ends KILLED (not resumed)
    assert {r.info.status for r in everything} <= {"FINISHED", "KILLED"}
    runs = [r for r in everything if r.info.status == "FINISHED"]
    trial_ids = [r.data.tags["trial_id"] for r in runs]
    assert len(runs) == 2 and len(set(trial_ids)) == 2  # one finished run per trial
    ot = optuna.load_study(study_name="tiny-study", storage=optuna_storage(new_head))
    states = [t.state.name for t in ot.trials]
    assert states.count("COMPLETE") == 2 and "RUNNING" not in states
    assert sorted(v for t in ot.trials if t.state.name == "COMPLETE" for v in t.values) == pytest.approx(
        sorted(r.data.metrics[m] for r in runs for m in OBJECTIVES))
    front = json.loads((new_head / folder.PARETO_JSON).read_text())
    assert {row["trial_id"] for row in front["front"]} <= set(trial_ids)

    # The finished study's record is in the storage as the driver left it: a laptop pulls it, equal to the head's.
    laptop = tmp_path / "laptop"
    assert main(["pull", str(bucket), str(laptop)]) == 0
    assert _runs(laptop) == _runs(new_head)
    capsys.readouterr()
    assert main(["pareto", str(laptop), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["front"] == front["front"]
    parent = json.loads((laptop / folder.META).read_text())["parent_run_id"]
    client = MlflowClient(folder.local_store(laptop))
    assert client.get_run(parent).info.artifact_uri.startswith((laptop / folder.ARTIFACTS).as_uri())
    assert folder.PARETO_JSON in {a.path for a in client.list_artifacts(parent)}  # the artifacts came along


def _finished_count_in(record) -> int:
    """Finished trial runs in the storage's copy of the MLflow store (read from a snapshot: the driver writes it)."""
    probe = record.parent / "probe.db"
    with sqlite3.connect(record / folder.MLFLOW) as src, sqlite3.connect(probe) as dst:
        src.backup(dst)
    try:
        rows = dst.execute("SELECT count(*) FROM runs r JOIN tags t ON r.run_uuid = t.run_uuid "
                           "WHERE t.key = 'trial_id' AND r.status = 'FINISHED'").fetchone()
    except sqlite3.Error:
        rows = (0,)
    finally:
        probe.unlink(missing_ok=True)
    return rows[0]
