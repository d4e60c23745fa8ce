"""Publishing a study's Pareto front once its trials are done: the `pareto` and `knee` tags on the trials' runs,
pareto.json and the figures in the study folder, the table, figures and hypervolume on the parent run (and the
front as its description), and the table on the terminal. Everything is computed from the MLflow runs (analysis),
not from the driver's memory."""

from __future__ import annotations

import io
import json
from pathlib import Path

from mlflow import MlflowClient
from rich.console import Console

from analysis.note import front_markdown, front_view
from analysis.report import Front, front_table, summarize, table_console
from analysis.runs import load_study
from study import folder, tracking


def publish_front(directory: Path) -> Front:
    """Tag, write, log and print the front of the study in `directory`; ends its parent run. Returns the front."""
    from analysis.plots import parallel_figure, pareto_figure

    study = load_study(directory)
    client = MlflowClient(study.record["tracking_uri"])
    front = summarize(study)
    on_front = {t.trial_id for t, _ in front.front_trials()}
    knee = front.trials[front.knee].trial_id if front.knee is not None else None
    for t in study.trials:
        client.set_tag(t.run_id, "pareto", str(t.trial_id in on_front).lower())
        client.set_tag(t.run_id, "knee", str(t.trial_id == knee).lower())
    parent = study.record["parent_run_id"]
    summary = front.to_json()
    (directory / folder.PARETO_JSON).write_text(json.dumps(summary, indent=2))
    client.log_dict(parent, summary, folder.PARETO_JSON)
    table = front_table(front, f"{study.name}: Pareto front")
    capture = Console(width=200, record=True, file=io.StringIO())
    capture.print(table)
    client.log_text(parent, capture.export_text(), folder.PARETO_TXT)
    if front.trials and len(front.metrics) >= 2:
        figures = {folder.PARETO_FIGURE: pareto_figure(front, f"{study.name}: {len(front.trials)} finished trials"),
                   folder.PARALLEL_FIGURE: parallel_figure(front, list(study.config.search.space),
                                                           f"{study.name}: the front's parameters")}
        for name, figure in figures.items():
            figure.savefig(directory / name, dpi=120)
            client.log_figure(parent, figure, name)
    view = tracking.share_view(client, study.record["experiment_id"], "front", front_view(front))
    tracking.describe(client, parent, front_markdown(front, study.name, parent, view))
    if front.hypervolume is not None:
        tracking.log_metrics(client, parent, {"study/hypervolume": front.hypervolume,
                                              "study/front_size": float(len(on_front))})
    tracking.end_run(client, parent, "FINISHED")
    table_console().print(table)
    return front
