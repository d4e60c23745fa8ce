"""The study's storage in S3, on a real S3-compatible server (moto's, on 127.0.0.1): Ray's part (Tune's state, the
Train run and its checkpoints) and the study record are written there, and a finished study whose folder is gone is
pulled back equal. The test_storage_record tests run the same code with a local folder standing for the bucket."""

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request

import pytest

from study.cli import main
from study.record import folder
from tests.conftest import free_port, tiny_space, wait_for
from tests.test_storage_record import _runs

pytestmark = [pytest.mark.slow,  # a study on a real local Ray cluster and a real S3 server
              pytest.mark.usefixtures("no_ray_left_behind")]

BUCKET = "kdstudy-test"


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture
def s3(tmp_path, monkeypatch):
    """moto's S3 server with one bucket; AWS_ENDPOINT_URL points pyarrow (Ray's storage, the record's copy) at it, in
    this process and in the Ray processes the study starts."""
    import boto3

    url = f"http://127.0.0.1:{free_port()}"
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", url.rsplit(":", 1)[1]],
                              stdout=(tmp_path / "moto.log").open("w"), stderr=subprocess.STDOUT,
                              start_new_session=True)
    credentials = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                   "AWS_DEFAULT_REGION": "us-east-1"}
    for key, value in credentials.items():
        monkeypatch.setenv(key, value)
    try:
        wait_for(lambda: _answers(url), "the S3 server", server)
        client = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_a_study_in_s3_is_pulled_back_equal(tiny_world, tmp_path, s3, capsys):
    from study.load import parse_config
    from study.search.driver import run_study

    storage = f"s3://{BUCKET}/tiny"
    head = tmp_path / "head"
    front = run_study(parse_config(tiny_space(num_samples=1, storage_path=storage)), head)
    keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET) for o in
            page.get("Contents", [])]
    (trial, _), = front.front_trials()
    run = f"tiny/{folder.train_run(trial.trial_id)}"
    assert any(k.startswith(f"{run}/checkpoint_") for k in keys)  # Ray Train's checkpoint, in S3
    assert {f"tiny/{folder.RECORD}/{name}" for name in (folder.META, folder.MLFLOW, folder.OPTUNA)} <= set(keys)
    saved = json.loads(s3.get_object(Bucket=BUCKET, Key=f"{run}/{folder.RESULT}")["Body"].read())
    assert saved["metrics"]["world/score"] == pytest.approx(trial.metrics["world/score"])

    original = _runs(head)
    shutil.rmtree(head)  # the head's disk is gone; a laptop pulls the record from the bucket
    laptop = tmp_path / "laptop"
    assert main(["pull", storage, str(laptop)]) == 0
    assert _runs(laptop) == original  # the same runs: ids, statuses, metrics, tags
    capsys.readouterr()
    assert main(["pareto", str(laptop), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert [row["trial_id"] for row in shown["front"]] == [trial.trial_id]
    assert shown["front"][0]["objectives"]["world/score"] == pytest.approx(trial.metrics["world/score"])
