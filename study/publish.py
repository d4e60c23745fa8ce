"""Publishing a study's Pareto front once its trials are done: the `pareto` and `knee` tags on the trials' runs (and
`pareto_confirmed` on the trials the confirm stage raced), pareto.json and the figures in the study folder, the
tables, figures, hypervolume and hyperparameter importance on the parent run (and the front as its description, with
a link to a saved runs view that shows the front), and the tables on the terminal.
Everything is computed from the MLflow runs and the Optuna storage (analysis), not from the driver's memory."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

from mlflow import MlflowClient
from rich.console import Console

from analysis.effects import effects_figure, effects_tables, missing_cells, study_effects
from analysis.importance import importance_figure, importance_table, study_importances
from analysis.note import front_markdown, front_view, trials_view
from analysis.report import (
    RaceFront,
    SearchFront,
    front_table,
    race_table,
    summarize,
    summarize_race,
    table_console,
    usage_line,
    verdict_table,
)
from analysis.runs import StudyRecord, read_study
from study.record import folder, tracking

log = logging.getLogger(__name__)


def publish_front(directory: Path) -> SearchFront:
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
    race = summarize_race(record)
    recommended = None
    if race is not None:
        on_seed_means = {t.trial_id for t, _ in race.front_trials()}
        if race.recommended is not None:
            recommended = race.trials[race.recommended].trial_id
        for t in race.trials:
            tag = str(t.trial_id in on_seed_means).lower()
            client.set_tag(t.run_id, tracking.PARETO_CONFIRMED, tag)
            client.set_tag(record.confirm_runs[t.trial_id].run_id, tracking.PARETO_CONFIRMED, tag)
            client.set_tag(t.run_id, tracking.RECOMMENDED, str(t.trial_id == recommended).lower())
    summary = front.to_json() | ({"race": race.to_json()} if race is not None else {})
    (directory / folder.PARETO_JSON).write_text(json.dumps(summary, indent=2))
    client.log_dict(parent, summary, folder.PARETO_JSON)
    tables = front_tables(record, front, race)
    capture = Console(width=200, record=True, file=io.StringIO())
    for table in tables:
        capture.print(table)
    client.log_text(parent, capture.export_text(), folder.PARETO_TXT)
    if front.trials and len(front.metrics) >= 2:
        figures = {folder.PARETO_FIGURE: pareto_figure(front, f"{record.name}: {len(front.trials)} finished trials",
                                                       race),
                   folder.PARALLEL_FIGURE: parallel_figure(front, list(record.config.search.space),
                                                           f"{record.name}: the front's parameters")}
        for name, figure in figures.items():
            figure.savefig(directory / name, dpi=120)
            client.log_figure(parent, figure, name)
    experiment = record.meta["experiment_id"]
    view = tracking.share_view(client, experiment, "front", front_view(front))
    charts = {}
    if len(front.metrics) >= 2:
        charts["The objectives of every trial as a scatter (grouped by the pareto tag)"] = tracking.share_view(
            client, experiment, "trials", trials_view(front), charts=True)
        if race is not None:
            charts["The raced trials' seed means as a scatter (grouped by the pareto_confirmed tag)"] = \
                tracking.share_view(client, experiment, "race", trials_view(race, confirm_runs=True), charts=True)
    tracking.describe(client, parent, front_markdown(front, record.name, parent, view, charts, race))
    if front.hypervolume is not None:
        tracking.log_metrics(client, parent, {"study/hypervolume": front.hypervolume,
                                              "study/front_size": float(len(on_front))})
    found = publish_importance(record, client)
    grid = publish_effects(record, client) if record.config.search.sampler.name == "grid" else []
    tracking.end_run(client, parent, "FINISHED")
    for table in tables:
        table_console().print(table)
    if found:
        table_console().print(importance_table(found, f"{record.name}: what drives each objective"))
    for table in grid:
        table_console().print(table)
    return front


def publish_effects(record: StudyRecord, client: MlflowClient) -> list:
    """A grid study's effects (analysis.effects): effects.json and effects.png in the folder and on the parent run, the
    tables as effects.txt there too. Returns the tables ([] when no trial finished)."""
    found = study_effects(record)
    if not any(e["runs"] for e in found.values()):
        return []
    parent = record.meta["parent_run_id"]
    figure = effects_figure(found, f"{record.name}: level means [95% interval from the ANOVA residual]")
    keep(record, client, found, folder.EFFECTS_JSON, figure, folder.EFFECTS_FIGURE)
    missing = missing_cells(record)
    if missing:
        log.warning(f"{len(missing)} grid point(s) have no finished trial, so the design is not balanced: "
                    + "; ".join(", ".join(f"{k.split('.')[-1]}={v}" for k, v in p.items()) for p in missing[:5])
                    + (" ..." if len(missing) > 5 else ""))
    tables = effects_tables(found, record.name)
    capture = Console(width=200, record=True, file=io.StringIO())
    for table in tables:
        capture.print(table)
    client.log_text(parent, capture.export_text(), folder.EFFECTS_TXT)
    return tables


def front_tables(record: StudyRecord, front: SearchFront, race: RaceFront | None) -> list:
    """The search front and, when the study has a confirm stage, its raced trials (seed means, P(front)) and their
    verdicts against the control; then a line on what the trials used (their distillation and evaluation seconds and
    busy share)."""
    tables = [front_table(front, f"{record.name}: Pareto front (single runs, value ± standard error)")]
    if race is not None:
        tables.append(race_table(race, f"{record.name}: raced trials (means over the race's seeds [95% interval])"))
        if any(race.comparisons):
            tables.append(verdict_table(race, f"{record.name}: against the control ({race.control})"))
    usage = usage_line(record)
    return tables + ([usage] if usage else [])


def publish_importance(record: StudyRecord, client: MlflowClient) -> dict[str, dict[str, float]]:
    """Per-objective hyperparameter importance from the study's Optuna storage: importance.json in the folder, the
    JSON and a figure on the parent run. Returns it ({} when there is too little to attribute)."""
    found = study_importances(record)
    if found:
        keep(record, client, found, folder.IMPORTANCE_JSON,
             importance_figure(found, f"{record.name}: what drives each objective (fANOVA)"), folder.IMPORTANCE_FIGURE)
    return found


def keep(record: StudyRecord, client: MlflowClient, found: dict, json_name: str, figure, figure_name: str) -> None:
    """A result as JSON and its figure, in the study folder and on the parent run."""
    parent = record.meta["parent_run_id"]
    (record.directory / json_name).write_text(json.dumps(found, indent=2))
    client.log_dict(parent, found, json_name)
    figure.savefig(record.directory / figure_name, dpi=120)
    client.log_figure(parent, figure, figure_name)
