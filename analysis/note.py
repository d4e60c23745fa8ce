"""A study's front as markdown: the description of its parent run in MLflow (the `mlflow.note.content` tag, shown
on the run's page), so that the front, its knee and the way to list the front's trials are one click from the
experiment's runs."""

from __future__ import annotations

from analysis.report import Front, RaceFront, SearchFront, caption, verdict_lines
from study.record.folder import PARALLEL_FIGURE, PARETO_FIGURE, PARETO_TXT
from study.record.tracking import ANCHOR, CONFIRM_OF, KNEE, PARETO, PARETO_CONFIRMED, TRIAL_ID

# The runs table's search box: the trials on the front (study.publish tags them `pareto`, the knee `knee`).
FRONT_FILTER = f"tags.{PARETO} = 'true'"
KNEE_FILTER = f"tags.{KNEE} = 'true'"
TRIALS_FILTER = f"tags.{TRIAL_ID} LIKE '%'"  # every trial's run: not the parent, reruns or confirm runs
CONFIRM_RUNS_FILTER = f"tags.{CONFIRM_OF} LIKE '%'"  # the raced trials' confirm runs (their seed means)
MAX_NOTE = 7000  # MLflow keeps at most 8,000 characters of a tag value


def _cell(value) -> str:
    try:
        return f"{float(value):.4g}"
    except (TypeError, ValueError):
        return str(value).replace("|", "\\|")


def front_view(front: Front) -> dict:
    """The runs table showing the front: its trials flat (not under the collapsed parent), sorted along the first
    objective, with the objectives and the sampled parameters as columns; in the chart view, only those trials."""
    params = sorted({k for t, _ in front.front_trials() for k in t.params})
    return {"searchFilter": FRONT_FILTER, "orderByKey": f"metrics.`{front.metrics[0]}`",
            "orderByAsc": front.modes[0] == "min", "runsHiddenMode": "SHOW_ALL",
            "selectedColumns": [*(f"metrics.`{m}`" for m in front.metrics), *(f"params.`{p}`" for p in params),
                                f"tags.`{KNEE}`", f"tags.`{ANCHOR}`"]}


def race_markdown(race: RaceFront | None) -> list[str]:
    """The confirm stage's answer: the recommended point with its reason, P(front) per raced trial, and the verdicts
    against the control."""
    if race is None:
        return []
    lines = []
    if race.recommended is not None:
        pick = race.trials[race.recommended]
        lines += [f"**Recommended**: trial `{pick.trial_id}`" + (f" ({pick.anchor})" if pick.anchor else "")
                  + f", {race.recommended_reason}. `kdstudy rerun STUDY_DIR --seeds 3` reruns it.", ""]
    shares = ", ".join(f"`{t.trial_id}` {p:.2f}" for t, p in zip(race.trials, race.p_front))
    lines += [f"**P(on the front)** over the race's seeds: {shares}.", ""]
    found = verdict_lines(race)
    if found:
        lines += [f"**Against the control** (`{race.control}`), trial - control [95% interval]:", ""]
        lines += [f"- {line}" for line in found] + [""]
    return lines


def scatter_charts(metrics: list[str]) -> tuple[list[dict], list[dict]]:
    """MLflow's own scatter chart of each pair of objectives (the first against each other one, then the rest), as
    the runs page keeps a chart card in its view state (`compareRunCharts`, one section in `compareRunSections`).
    The field names are those of MLflow 3.17's chart cards (its RunsChartsScatterCardConfig)."""
    section = {"uuid": "kdstudy-objectives", "name": "objectives", "display": True, "isReordered": False,
               "deleted": False, "isGenerated": False}
    pairs = [(a, b) for i, a in enumerate(metrics) for b in metrics[i + 1:]]
    charts = [{"uuid": f"kdstudy-scatter-{i}", "type": "SCATTER", "runsCountToCompare": 1000,
               "metricSectionId": section["uuid"], "deleted": False, "isGenerated": False,
               "xaxis": {"key": x, "type": "METRIC"}, "yaxis": {"key": y, "type": "METRIC"}}
              for i, (x, y) in enumerate(pairs)]
    return charts, [section]


def trials_view(front: Front, confirm_runs: bool = False) -> dict:
    """The chart view of the study: every trial's run (or, `confirm_runs`, every confirm run: the seed means) on a
    scatter of the objectives, the runs list grouped by the `pareto` tag (`pareto_confirmed`: the seed-mean front),
    whose groups the list can show or hide; each run keeps its own point (grouped values are not averaged)."""
    charts, sections = scatter_charts(front.metrics)
    tag = PARETO_CONFIRMED if confirm_runs else PARETO
    return {"searchFilter": CONFIRM_RUNS_FILTER if confirm_runs else TRIALS_FILTER, "runsHiddenMode": "SHOW_ALL",
            "orderByKey": f"metrics.`{front.metrics[0]}`", "orderByAsc": front.modes[0] == "min",
            "compareRunCharts": charts, "compareRunSections": sections, "isAccordionReordered": True,
            "hideEmptyCharts": False, "useGroupedValuesInCharts": False,
            "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": tag}]},
            "selectedColumns": [*(f"metrics.`{m}`" for m in front.metrics), f"tags.`{tag}`", f"tags.`{KNEE}`",
                                f"tags.`{ANCHOR}`"]}


def front_markdown(front: SearchFront, name: str, run_id: str | None = None, view: str | None = None,
                   charts: dict[str, str] | None = None, race: RaceFront | None = None) -> str:
    """The parent run's description: the study's answer first when it has a confirm stage (the recommended point and
    why, each raced trial's verdicts against the control), then links to the front in the runs table (`view`, from
    study.tracking.share_view) and to the scatter views (`charts`), the front as a table, the knee, the filters, the
    figures."""
    if not front.trials:
        return f"## {name}: no finished trial\n\n{caption(front)}\n"
    rows = front.rows()
    params = sorted({k for row in rows for k in row["params"]})
    header = ["trial", "note", *(".".join(p.split(".")[-2:]) for p in params),
              *(f"{m} {'↓' if d == 'min' else '↑'}" for m, d in zip(front.metrics, front.modes))]
    lines = [f"## {name}: Pareto front", ""]
    if view is not None:  # first: the UI shows a description's first lines until "Show more" is clicked
        lines += [f"**[Open the front in the runs table]({view})**: its trials with their objectives and parameters "
                  f"(the chart view then plots only them).", ""]
    for label, link in (charts or {}).items():
        lines += [f"**[{label}]({link})**", ""]
    lines += [caption(front) + ".", ""]
    lines += race_markdown(race)
    knee = next((row for row in rows if row["knee"]), None)
    if knee is not None:
        values = ", ".join(f"{m} {v:.4g}" for m, v in knee["objectives"].items())
        lines += [f"**Knee**: trial `{knee['trial_id']}`" + (f" ({knee['anchor']})" if knee["anchor"] else "")
                  + f": {values}. Rerun it with `kdstudy rerun STUDY_DIR --pick knee --seeds 3`.", ""]
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        note = " ".join(n for n in (row["anchor"], "knee" if row["knee"] else None) if n)
        cells = [f"`{row['trial_id']}`", note, *(_cell(row["params"].get(p, "-")) for p in params),
                 *(f"{v:.4g}" for v in row["objectives"].values())]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"By hand: search `{FRONT_FILTER}` (the knee: `{KNEE_FILTER}`), sort by `{front.metrics[0]}` and add "
              f"the columns {', '.join(f'`{m}`' for m in front.metrics)}.", ""]
    if run_id is not None and len(front.metrics) >= 2:
        lines += [f"![the front](get-artifact?path={PARETO_FIGURE}&run_uuid={run_id})", ""]
    lines += [f"Figures: `{PARETO_FIGURE}`, `{PARALLEL_FIGURE}`; the table as text: `{PARETO_TXT}` (Artifacts)."]
    text = "\n".join(lines) + "\n"
    if len(text) > MAX_NOTE:  # a front too large for a tag: the head of the table, the rest in the text file
        text = text[:MAX_NOTE].rsplit("\n", 1)[0] + f"\n\n(cut here: the whole table is in `{PARETO_TXT}`)\n"
    return text
