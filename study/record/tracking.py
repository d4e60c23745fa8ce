"""MLflow layout of a study: experiment = study name, one parent run per study, one child run per trial.

    parent run   tags kdstudy.role=study, kdstudy.study_dir; the YAML, the teacher's metrics, the Pareto table/figures
    child run    tags mlflow.parentRunId, trial_id, anchor (plain_kd, ...), pareto, failure_reason, student_uri;
                 params = the trial's sampled values (dotted config paths); metrics = everything the trial reported

Child runs are found by their trial_id tag rather than remembered in memory (as Ray's MLflowLoggerCallback does), so
a trial restarted by a resumed study logs into the run it already has, and a study never holds two runs per trial.
Plain functions over an explicit MlflowClient: no global active run, no Ray.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunStatus, RunTag

from study.runtime import environment

# MLflow's client reads these at each request; a request to a server that is down then fails in ~3 s, not ~4 min.
FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "20"}


def failing_fast():
    """MLflow requests in this block give up after one retry instead of minutes of them."""
    return environment(FAST)


# The tags kdstudy writes and reads, each named once
PARENT = "mlflow.parentRunId"  # a child run's parent (MLflow nests the runs table by it)
ROLE = "kdstudy.role"  # study | rerun | confirm
TRIAL_ID = "trial_id"  # a trial's run: its Tune trial id
TRIAL_NUMBER = "trial_number"
PARAMS_JSON = "params_json"  # a trial's sampled values, exactly (kdstudy rerun reads them)
ANCHOR = "anchor"  # the anchor a trial is (plain_kd, paper_mixup, ...)
STUDENT_URI = "student_uri"
FAILURE_REASON = "failure_reason"
PARETO = "pareto"  # "true" on the single-run front
KNEE = "knee"
PARETO_CONFIRMED = "pareto_confirmed"  # "true" on the confirmed front (the trial's run and its confirm run)
RECOMMENDED = "recommended"  # "true" on the trial the study recommends (analysis.verdicts.recommend)
CONFIRM_OF = "confirm_of"  # a confirm run: the trial it confirms
RERUN_OF = "rerun_of"  # a `kdstudy rerun` run: the trial it reruns
SEEDS = "seeds"  # a confirm or rerun run: the seeds its means are over
P_FRONT = "confirm/p_front"  # a confirm run's metric: the trial's probability of being on the front
PLACE = "confirm/place"  # a confirm run's tag: front | off | undecided
OUTDONE_BY = "confirm/outdone_by"  # a confirm run's tag: the trial that outdoes it within the margins (place off)
VERDICT = "verdict"  # verdict/<metric> (tag: better | worse | within ±m | undecided), verdict/<metric>/diff|ci_*
NOTE = "mlflow.note.content"  # a run's description: markdown, shown on the run's page
MAX_TAG = 5000  # MLflow's limit on a tag value
# MLflow 3 opens an experiment without this tag on its GenAI "Overview" page (traces: empty here); a model-training
# experiment opens on its runs.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}


def connect(uri: str) -> MlflowClient:
    """The MLflow client of a tracking URI: the one place kdstudy makes one."""
    return MlflowClient(uri)


def is_local(uri: str) -> bool:
    return uri.startswith(("sqlite:", "file:", "/")) or "://" not in uri


def open_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment's id, created with its artifacts at `artifact_location` (None: where the server decides)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        return client.create_experiment(name, artifact_location=artifact_location, tags=EXPERIMENT_KIND)
    for key, value in EXPERIMENT_KIND.items():
        if key not in experiment.tags:  # an experiment made by hand on a server, or by another tool
            client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def create_parent(client: MlflowClient, experiment_id: str, name: str, study_dir: Path, params: dict) -> str:
    note = f"## {name}\n\nThe study is running; its Pareto front is written here when its trials are done."
    run = client.create_run(experiment_id, run_name=name,
                            tags={ROLE: "study", "kdstudy.study_dir": str(study_dir.resolve()), NOTE: note})
    log_params(client, run.info.run_id, params)
    return run.info.run_id


def share_view(client: MlflowClient, experiment_id: str, key: str, state: dict, charts: bool = False) -> str:
    """Store a runs-table view (filter, sort, columns, charts) as the experiment's shared view `key`, as the UI's
    Share button does; returns its address in the UI (after the server's root, e.g. http://127.0.0.1:5000/), on the
    chart view when `charts`."""
    client.set_experiment_tag(experiment_id, f"mlflow.sharedViewState.{key}", json.dumps(state))
    # workflowType: MLflow 3.17 opens an experiment on the GenAI pages unless the "Model training" mode is chosen
    return (f"#/experiments/{experiment_id}/runs?workflowType=machine_learning&viewStateShareKey={key}"
            + ("&compareRunsMode=CHART" if charts else ""))


def describe(client: MlflowClient, run_id: str, markdown: str) -> None:
    """The run's description (markdown on its page in the MLflow UI)."""
    client.set_tag(run_id, NOTE, markdown)


def log_params(client: MlflowClient, run_id: str, params: dict) -> None:
    client.log_batch(run_id, params=[Param(k, str(v)) for k, v in sorted(params.items())])


def child_runs(client: MlflowClient, experiment_id: str, parent_id: str, extra: str = "") -> list:
    """Every run nested under the parent (trials, reruns, confirmations), narrowed by an `extra` filter."""
    query = f"tags.`{PARENT}` = '{parent_id}'" + (f" and {extra}" if extra else "")
    runs, token = [], None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def trial_runs(client: MlflowClient, experiment_id: str, parent_id: str) -> list:
    """Every trial's child run of the study (reruns excluded)."""
    return [r for r in child_runs(client, experiment_id, parent_id) if TRIAL_ID in r.data.tags]


def start_trial(client: MlflowClient, experiment_id: str, parent_id: str, trial_id: str, params: dict,
                anchor: str | None, number: str) -> tuple[str, bool]:
    """(run id, already finished) of the trial's child run: the one it already has (a trial restarted by a resumed
    study; a finished one stays finished and is not logged again), else a new run with its params."""
    existing = child_runs(client, experiment_id, parent_id, f"tags.{TRIAL_ID} = '{trial_id}'")
    if existing:
        run = existing[0]
        if run.info.status == "FINISHED":
            return run.info.run_id, True
        client.update_run(run.info.run_id, status="RUNNING")
        return run.info.run_id, False
    tags = {PARENT: parent_id, TRIAL_ID: trial_id, TRIAL_NUMBER: number,
            PARAMS_JSON: json.dumps(params, sort_keys=True)[:MAX_TAG],  # exact values, for kdstudy rerun
            **({ANCHOR: anchor} if anchor else {})}
    run_id = client.create_run(experiment_id, run_name=f"trial-{number}" + (f"-{anchor}" if anchor else ""),
                               tags=tags).info.run_id
    log_params(client, run_id, params)
    return run_id, False


def log_metrics(client: MlflowClient, run_id: str, metrics: dict, step: int = 0, tags: dict | None = None) -> None:
    """The finite numbers under kdstudy's metric names (they contain '/'; Tune's own keys do not), and `tags`."""
    now = int(time.time() * 1000)
    numbers = [Metric(k, float(v), now, step) for k, v in sorted(metrics.items())
               if "/" in k and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    tags = [RunTag(k, str(v)[:MAX_TAG]) for k, v in sorted((tags or {}).items())]
    for start in range(0, len(numbers), 1000):  # log_batch takes at most 1000 metrics
        client.log_batch(run_id, metrics=numbers[start:start + 1000], tags=tags if start == 0 else ())


def end_run(client: MlflowClient, run_id: str, status: str, reason: str | None = None) -> None:
    if reason:
        client.set_tag(run_id, FAILURE_REASON, reason[:MAX_TAG])
    client.set_terminated(run_id, status=status)


def close_unfinished(client: MlflowClient, experiment_id: str, parent_id: str) -> list[str]:
    """Once a study's trials are all done: mark KILLED the child runs still RUNNING. Those are trials whose driver died
    before the study state recorded them, so a resumed study never restarted them. Returns their trial ids."""
    lost = []
    for run in trial_runs(client, experiment_id, parent_id):
        if run.info.status == "RUNNING":
            end_run(client, run.info.run_id, RunStatus.to_string(RunStatus.KILLED),
                    "the study was interrupted before this trial was recorded; it was not resumed")
            lost.append(run.data.tags[TRIAL_ID])
    return lost
