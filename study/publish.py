"""Publishing a study once its trials are done, from its record (the MLflow runs and the Optuna storage, read by
analysis), not from the driver's memory:

    tag_runs           `pareto` and `knee` on the trials' runs; `pareto_confirmed` and `recommended` on the raced ones
    keep_fronts        pareto.json, pareto.txt and the figures, in the study folder and on the parent run
    describe_parent    the runs-table and scatter views, the fronts as the parent run's description, the hypervolume
    publish_importance what drives each objective; publish_effects a grid study's effects
and then the parent run ends and the tables are printed.
"""

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
    """Tag, write, log and print the fronts of the study in `directory`; ends its parent run. Returns the search
    front."""
    record = read_study(directory)
    front, race = summarize(record), summarize_race(record)
    tables = front_tables(record, front, race)
    tag_runs(record, front, race)
    keep_fronts(record, front, race, tables)
    describe_parent(record, front, race)
    found = publish_importance(record)
    grid = publish_effects(record) if record.config.search.sampler.name == "grid" else []
    tracking.end_run(record.client, record.meta["parent_run_id"], "FINISHED")
    for table in tables:
        table_console().print(table)
    if found:
        table_console().print(importance_table(found, f"{record.name}: what drives each objective"))
    for table in grid:
        table_console().print(table)
    return front


def tag_runs(record: StudyRecord, front: SearchFront, race: RaceFront | None) -> None:
    """Each trial's run tagged `pareto` and `knee` (true or false); each raced trial's run and its confirm run tagged
    `pareto_confirmed` (on the seed-mean front), the raced trials' runs `recommended`."""
    client = record.client
    on_front = {t.trial_id for t, _ in front.front_trials()}
    knee = front.trials[front.knee].trial_id if front.knee is not None else None
    for t in record.trials:
        client.set_tag(t.run_id, tracking.PARETO, str(t.trial_id in on_front).lower())
        client.set_tag(t.run_id, tracking.KNEE, str(t.trial_id == knee).lower())
    if race is None:
        return
    on_seed_means = {t.trial_id for t, _ in race.front_trials()}
    recommended = race.trials[race.recommended].trial_id if race.recommended is not None else None
    for t in race.trials:
        tag = str(t.trial_id in on_seed_means).lower()
        client.set_tag(t.run_id, tracking.PARETO_CONFIRMED, tag)
        client.set_tag(record.confirm_runs[t.trial_id].run_id, tracking.PARETO_CONFIRMED, tag)
        client.set_tag(t.run_id, tracking.RECOMMENDED, str(t.trial_id == recommended).lower())


def keep_fronts(record: StudyRecord, front: SearchFront, race: RaceFront | None, tables: list) -> None:
    """The fronts as JSON (pareto.json), their tables as text (pareto.txt, on the parent run only) and their figures,
    in the study folder and on the parent run."""
    from analysis.plots import parallel_figure, pareto_figure

    client, parent = record.client, record.meta["parent_run_id"]
    summary = front.to_json() | ({"race": race.to_json()} if race is not None else {})
    (record.directory / folder.PARETO_JSON).write_text(json.dumps(summary, indent=2))
    client.log_dict(parent, summary, folder.PARETO_JSON)
    log_tables(client, parent, tables, folder.PARETO_TXT)
    if front.trials and len(front.metrics) >= 2:
        title = f"{record.name}: {len(front.trials)} finished trials"
        keep_figure(record, pareto_figure(front, title, race), folder.PARETO_FIGURE)
        keep_figure(record, parallel_figure(front, list(record.config.search.space),
                                            f"{record.name}: the front's parameters"), folder.PARALLEL_FIGURE)


def describe_parent(record: StudyRecord, front: SearchFront, race: RaceFront | None) -> None:
    """The parent run's page: the shared views its description links to (the front in the runs table; a scatter of
    every trial, and of the raced trials' seed means), the description itself, and the hypervolume and front size."""
    client, parent, experiment = record.client, record.meta["parent_run_id"], record.meta["experiment_id"]
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
                                              "study/front_size": float(front.on_front.sum())})


def log_tables(client: MlflowClient, run_id: str, tables: list, name: str) -> None:
    """Rich tables as one text artifact of the run, 200 columns wide (no cell cut)."""
    capture = Console(width=200, record=True, file=io.StringIO())
    for table in tables:
        capture.print(table)
    client.log_text(run_id, capture.export_text(), name)


def keep_figure(record: StudyRecord, figure, name: str) -> None:
    """A figure in the study folder and on the parent run."""
    figure.savefig(record.directory / name, dpi=120)
    record.client.log_figure(record.meta["parent_run_id"], figure, name)


def publish_effects(record: StudyRecord) -> list:
    """A grid study's effects (analysis.effects): effects.json and effects.png in the folder and on the parent run, the
    tables as effects.txt there too. Returns the tables ([] when no trial finished)."""
    found = study_effects(record)
    if not any(e["runs"] for e in found.values()):
        return []
    keep_json(record, found, folder.EFFECTS_JSON)
    keep_figure(record, effects_figure(found, f"{record.name}: level means [95% interval from the ANOVA residual]"),
                folder.EFFECTS_FIGURE)
    missing = missing_cells(record)
    if missing:
        log.warning(f"{len(missing)} grid point(s) have no finished trial, so the design is not balanced: "
                    + "; ".join(", ".join(f"{k.split('.')[-1]}={v}" for k, v in p.items()) for p in missing[:5])
                    + (" ..." if len(missing) > 5 else ""))
    tables = effects_tables(found, record.name)
    log_tables(record.client, record.meta["parent_run_id"], tables, folder.EFFECTS_TXT)
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


def publish_importance(record: StudyRecord) -> dict[str, dict[str, float]]:
    """Per-objective hyperparameter importance from the study's Optuna storage: importance.json in the folder, the
    JSON and a figure on the parent run. Returns it ({} when there is too little to attribute)."""
    found = study_importances(record)
    if found:
        keep_json(record, found, folder.IMPORTANCE_JSON)
        keep_figure(record, importance_figure(found, f"{record.name}: what drives each objective (fANOVA)"),
                    folder.IMPORTANCE_FIGURE)
    return found


def keep_json(record: StudyRecord, found: dict, name: str) -> None:
    """A result as JSON in the study folder and on the parent run."""
    (record.directory / name).write_text(json.dumps(found, indent=2))
    record.client.log_dict(record.meta["parent_run_id"], found, name)
