"""The MLflow layout as the UI shows it: the experiment marked as model training, the parent run's description
holding the front, and the shared runs-table view of the front that the description links to."""

import json

import numpy as np
from mlflow import MlflowClient

from analysis.note import FRONT_FILTER, front_markdown, front_view
from analysis.report import Front
from analysis.runs import Trial
from study.record import tracking


def _front() -> Front:
    def params(mode, temperature):
        return {"distill.mitigation.mode": mode, "distill.loss.temperature": temperature}

    trials = [Trial("t1", "r1", "FINISHED", params("none", "2.0"), {}, {"anchor": "plain_kd"}),
              Trial("t2", "r2", "FINISHED", params("mixup", "3.5"), {}),
              Trial("t3", "r3", "FINISHED", params("cda", "1.5"), {})]
    values = np.array([[0.10, 70.0], [0.02, 65.0], [0.12, 60.0]])  # t3 is dominated by t1
    return Front(["bias/amplification", "world/score"], ["min", "max"], trials, values,
                 np.array([True, True, False]), 0, np.array([0.12, 60.0]), 0.5, {"FINISHED": 3})


def test_experiment_opens_as_model_training_and_holds_the_front_view(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = tracking.open_experiment(client, "s", (tmp_path / "art").as_uri())
    assert client.get_experiment(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    bare = client.create_experiment("old")  # made before kdstudy set the kind: reopening marks it
    tracking.open_experiment(client, "old", None)
    assert client.get_experiment(bare).tags["mlflow.experimentKind"] == "custom_model_development"

    url = tracking.share_view(client, experiment, "front", front_view(_front()))
    assert url == f"#/experiments/{experiment}/runs?workflowType=machine_learning&viewStateShareKey=front"
    state = json.loads(client.get_experiment(experiment).tags["mlflow.sharedViewState.front"])
    assert state["searchFilter"] == FRONT_FILTER and state["orderByKey"] == "metrics.`bias/amplification`"
    assert state["orderByAsc"] is True
    assert state["selectedColumns"][:3] == ["metrics.`bias/amplification`", "metrics.`world/score`",
                                            "params.`distill.loss.temperature`"]

    parent = tracking.create_parent(client, experiment, "s", tmp_path, {})
    assert "running" in client.get_run(parent).data.tags[tracking.NOTE]
    tracking.describe(client, parent, front_markdown(_front(), "s", parent, url))
    note = client.get_run(parent).data.tags[tracking.NOTE]
    assert f"[Open the front in the runs table]({url})" in note


def test_front_markdown_holds_the_table_the_knee_and_the_filter():
    note = front_markdown(_front(), "paper", "abc", "#/view")
    lines = note.splitlines()
    assert lines[0] == "## paper: Pareto front" and "#/view" in lines[2]  # the link before "Show more" folds it
    assert "**Knee**: trial `t1` (plain_kd): bias/amplification 0.1, world/score 70" in note
    table = [line for line in lines if line.startswith("| `")]
    assert table == ["| `t2` |  | 3.5 | mixup | 0.02 | 65 |", "| `t1` | plain_kd knee | 2 | none | 0.1 | 70 |"]
    assert "| trial | note | loss.temperature | mitigation.mode | bias/amplification ↓ | world/score ↑ |" in note
    assert FRONT_FILTER in note and "get-artifact?path=pareto.png&run_uuid=abc" in note
