"""Publishing a study's Pareto front once its trials are done: the `pareto` and `knee` tags on the trials' runs (and
`pareto_confirmed` on the trials the confirm stage ran again), pareto.json and the figures in the study folder, the
tables, figures, hypervolume and hyperparameter importance on the parent run (and the front as its description, with
a link to a saved runs view that shows the front), and the tables on the terminal.
Everything is computed from the MLflow runs and the Optuna storage (analysis), not from the driver's memory."""

from __future__ import annotations

import io
import json
from pathlib import Path

from mlflow import MlflowClient
from rich.console import Console

from analysis.importance import importance_figure, importance_table, study_importances
from analysis.note import front_markdown, front_view
from analysis.report import Front, front_table, summarize, summarize_confirmed, table_console, usage_line
from analysis.runs import StudyRecord, read_study
from study.record import folder, tracking


def publish_front(directory: Path) -> Front:
    """Tag, write, log and print the front of the study in `directory`; ends its parent run. Returns the front."""
    from analysis.plots import parallel_figure, pareto_figure

    record = read_study(directory)
    client = record.client
    front = summarize(record)
    on_front = {t.trial_id for t, _ in front.front_trials()}
    knee = front.trials[front.knee].trial_id if front.knee is not None else None
    for t in record.trials:
        client.set_tag(t.run_id, tracking.PARETO, str(t.trial_id in on_front).lower())
        client.set_tag(t.run_id, tracking.KNEE, str(t.trial_id == knee).lower())
    parent = record.meta["parent_run_id"]
    confirmed = summarize_confirmed(record)
    if confirmed is not None:
        on_confirmed = {t.trial_id for t, _ in confirmed.front_trials()}
        for t in confirmed.trials:
            tag = str(t.trial_id in on_confirmed).lower()
            client.set_tag(t.run_id, tracking.PARETO_CONFIRMED, tag)
            client.set_tag(record.confirmations[t.trial_id].run_id, tracking.PARETO_CONFIRMED, tag)
    summary = front.to_json() | ({"confirmed": confirmed.to_json()} if confirmed is not None else {})
    (directory / folder.PARETO_JSON).write_text(json.dumps(summary, indent=2))
    client.log_dict(parent, summary, folder.PARETO_JSON)
    tables = front_tables(record, front, confirmed)
    capture = Console(width=200, record=True, file=io.StringIO())
    for table in tables:
        capture.print(table)
    client.log_text(parent, capture.export_text(), folder.PARETO_TXT)
    if front.trials and len(front.metrics) >= 2:
        figures = {folder.PARETO_FIGURE: pareto_figure(front, f"{record.name}: {len(front.trials)} finished trials",
                                                       confirmed),
                   folder.PARALLEL_FIGURE: parallel_figure(front, list(record.config.search.space),
                                                           f"{record.name}: the front's parameters")}
        for name, figure in figures.items():
            figure.savefig(directory / name, dpi=120)
            client.log_figure(parent, figure, name)
    view = tracking.share_view(client, record.meta["experiment_id"], "front", front_view(front))
    tracking.describe(client, parent, front_markdown(front, record.name, parent, view))
    if front.hypervolume is not None:
        tracking.log_metrics(client, parent, {"study/hypervolume": front.hypervolume,
                                              "study/front_size": float(len(on_front))})
    found = publish_importance(record, client)
    tracking.end_run(client, parent, "FINISHED")
    for table in tables:
        table_console().print(table)
    if found:
        table_console().print(importance_table(found, f"{record.name}: what drives each objective"))
    return front


def front_tables(record: StudyRecord, front: Front, confirmed: Front | None) -> list:
    """The single-run front, the confirmed front beside it when the study has a confirm stage, and a line on what
    the trials used (their distillation and evaluation seconds and busy share)."""
    tables = [front_table(front, f"{record.name}: Pareto front (single runs, value ± standard error)")]
    if confirmed is not None:
        tables.append(front_table(confirmed, f"{record.name}: confirmed Pareto front (seed means [95% interval])"))
    usage = usage_line(record)
    return tables + ([usage] if usage else [])


def publish_importance(record: StudyRecord, client: MlflowClient) -> dict[str, dict[str, float]]:
    """Per-objective hyperparameter importance from the study's Optuna storage: importance.json in the folder, the
    JSON and a figure on the parent run. Returns it ({} when there is too little to attribute)."""
    found = study_importances(record)
    if found:
        parent = record.meta["parent_run_id"]
        (record.directory / folder.IMPORTANCE_JSON).write_text(json.dumps(found, indent=2))
        client.log_dict(parent, found, folder.IMPORTANCE_JSON)
        figure = importance_figure(found, f"{record.name}: what drives each objective (fANOVA)")
        figure.savefig(record.directory / folder.IMPORTANCE_FIGURE, dpi=120)
        client.log_figure(parent, figure, folder.IMPORTANCE_FIGURE)
    return found
