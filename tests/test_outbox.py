"""The outbox at a study's end: what waits is sent when tracking takes it, and kept when it never does."""

import logging

from mlflow import MlflowClient

from study.record import folder, tracking
from study.record.outbox import Outbox
from tests.conftest import free_port

START = {"config": {"distill.temperature": 2.0}, "anchor": None, "number": "0"}
END = {"status": "FINISHED", "metrics": {"world/score": 61.5}, "tags": {}, "student": None}


def test_a_server_that_never_comes_back_keeps_the_trials_and_warns_once(tmp_path, caplog):
    meta = {"tracking_uri": f"http://127.0.0.1:{free_port()}", "experiment_id": "0", "parent_run_id": "x"}
    box = Outbox(tmp_path, meta, log_models=False)
    box.put("t1", START, END)
    with caplog.at_level(logging.INFO, logger="study.record.outbox"):
        assert box.flush_within(2.0, every=0.5) is False
        again = Outbox(tmp_path, meta, log_models=False)  # the driver's end of study: the same outage, not said again
        assert again.flush() is False
    assert list(box.entries()) == ["t1"]  # kept for --resume
    ours = [r for r in caplog.records if r.name == "study.record.outbox"]
    warnings = [r for r in ours if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "1 trial(s) wait in" in warnings[0].getMessage()
    assert sum("waiting up to 2 s" in r.getMessage() for r in ours) == 1


def test_what_waits_is_sent_once_tracking_takes_it(tmp_path):
    uri = folder.local_store(tmp_path)
    client = MlflowClient(uri)
    experiment_id = client.create_experiment("s")
    parent = client.create_run(experiment_id).info.run_id
    box = Outbox(tmp_path, {"tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent}, False)
    box.put("t1", START, END)
    box.put("t2", {**START, "number": "1"})  # still running: its run is made, not ended
    assert box.flush_within(5.0) is True
    assert not (tmp_path / folder.OUTBOX).exists()
    runs = {r.data.tags[tracking.TRIAL_ID]: r for r in tracking.trial_runs(client, experiment_id, parent)}
    assert runs["t1"].info.status == "FINISHED" and runs["t1"].data.metrics["world/score"] == 61.5
    assert runs["t2"].info.status == "RUNNING"
