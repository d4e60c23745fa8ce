"""The MLflow layout as the UI shows it: the experiment marked as model training, the parent run's description
holding the front, and the shared runs-table view of the front that the description links to."""

import json

import numpy as np
from mlflow import MlflowClient

from analysis.note import FRONT_FILTER, front_markdown, front_view
from analysis.report import SearchFront
from analysis.runs import Trial
from study.record import tracking
from study.record.folder import PARETO_FIGURE


def _front() -> SearchFront:
    def params(mode, temperature):
        return {"distill.mitigation.mode": mode, "distill.loss.temperature": temperature}

    trials = [Trial("t1", "r1", "FINISHED", params("none", "2.0"), {}, {"anchor": "plain_kd"}),
              Trial("t2", "r2", "FINISHED", params("mixup", "3.5"), {}),
              Trial("t3", "r3", "FINISHED", params("cda", "1.5"), {})]
    values = np.array([[0.10, 70.0], [0.02, 65.0], [0.12, 60.0]])  # t3 is dominated by t1
    return SearchFront(["bias/amplification", "world/score"], ["min", "max"], trials, values, np.full((3, 2), np.nan),
                       np.array([True, True, False]), 0, np.array([0.12, 60.0]), 0.5, {"FINISHED": 3})


def test_experiment_opens_as_model_training_and_holds_the_front_view(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'tracking.db'}")
    experiment = tracking.open_experiment(client, "s", (tmp_path / "art").as_uri())
    assert client.get_experiment(experiment).tags["mlflow.experimentKind"] == "custom_model_development"
    bare = client.create_experiment("old")  # made by hand, without the kind: opening it marks it
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
    assert FRONT_FILTER in note and f"get-artifact?path={PARETO_FIGURE}&run_uuid=abc" in note


def test_the_chart_view_is_a_scatter_of_the_objectives_over_every_trial(tmp_path):
    from analysis.note import trials_view

    client = MlflowClient(f"sqlite:///{tmp_path / 'tracking.db'}")
    experiment = tracking.open_experiment(client, "s", (tmp_path / "art").as_uri())
    parent = tracking.create_parent(client, experiment, "s", tmp_path, {})
    for tid, on_front in (("t1", "true"), ("t2", "false")):
        run, _ = tracking.start_trial(client, experiment, parent, tid, {}, None, tid[1])
        client.set_tag(run, tracking.PARETO, on_front)
    confirm = client.create_run(experiment, tags={tracking.PARENT: parent, tracking.CONFIRM_OF: "t1",
                                                  tracking.PARETO_CONFIRMED: "true"}).info.run_id

    url = tracking.share_view(client, experiment, "trials", trials_view(_front()), charts=True)
    assert url.endswith("viewStateShareKey=trials&compareRunsMode=CHART")  # opens on the charts, not the table
    state = json.loads(client.get_experiment(experiment).tags["mlflow.sharedViewState.trials"])
    (chart,) = state["compareRunCharts"]
    assert chart["type"] == "SCATTER" and chart["metricSectionId"] == state["compareRunSections"][0]["uuid"]
    assert chart["xaxis"] == {"key": "bias/amplification", "type": "METRIC"}
    assert chart["yaxis"] == {"key": "world/score", "type": "METRIC"}
    assert state["groupBy"]["groupByKeys"] == [{"mode": "tag", "groupByData": tracking.PARETO}]
    assert state["useGroupedValuesInCharts"] is False and state["runsHiddenMode"] == "SHOW_ALL"
    # the view's filter, run by MLflow itself: the trials' runs only (not the parent, not the confirm run)
    found = client.search_runs([experiment], filter_string=state["searchFilter"])
    assert sorted(r.data.tags[tracking.TRIAL_ID] for r in found) == ["t1", "t2"]
    confirm_runs = trials_view(_front(), confirm_runs=True)
    assert [r.info.run_id for r in client.search_runs([experiment], confirm_runs["searchFilter"])] == [confirm]
    assert confirm_runs["groupBy"]["groupByKeys"][0]["groupByData"] == tracking.PARETO_CONFIRMED

    three = SearchFront(["a/x", "b/y", "c/z"], ["min", "max", "max"], [], np.zeros((0, 3)), np.zeros((0, 3)),
                        np.zeros(0, bool), None, None, None, {})
    pairs = [(c["xaxis"]["key"], c["yaxis"]["key"]) for c in trials_view(three)["compareRunCharts"]]
    assert pairs == [("a/x", "b/y"), ("a/x", "c/z"), ("b/y", "c/z")]
