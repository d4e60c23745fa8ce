"""A study's fronts as data, tables and JSON.

    search front    every finished trial on its single run, each objective with the standard error it reported:
                    which trials are non-dominated, the knee, the hypervolume (SearchFront, summarize)
    race front      the trials the confirm stage raced, on the means over the race's seeds: their 95% intervals,
                    single runs, P(front), places and verdicts against the control, and the recommended point; the
                    seed-mean front is the raced trials with P(front) >= 0.5 (RaceFront, summarize_race)
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from analysis import pareto, verdicts
from analysis.runs import StudyRecord, Trial
from study.record.tracking import OUTDONE_BY, P_FRONT, PLACE, SEEDS, VERDICT


@dataclass
class Front:
    """What both fronts hold: trials with one value per objective each, and which of them are on the front."""
    metrics: list[str]
    modes: list[str]
    trials: list[Trial]
    values: np.ndarray  # (n, k) their objectives
    errors: np.ndarray  # (n, k) standard error of each value, nan where none was reported
    on_front: np.ndarray  # (n,) bool
    knee: int | None  # index into trials
    reference: np.ndarray | None
    hypervolume: float | None

    def front_trials(self) -> list[tuple[Trial, np.ndarray]]:
        """(trial, objective values) on the front, ordered along the first objective (best first)."""
        index = np.flatnonzero(self.on_front)
        order = index[np.argsort(pareto.as_losses(self.values[index], self.modes)[:, 0], kind="stable")]
        return [(self.trials[i], self.values[i]) for i in order]

    def row(self, i: int) -> dict:
        """Trial i as JSON: its id, anchor, whether it is the knee, its params, its objectives and their errors."""
        t = self.trials[i]
        return {"trial_id": t.trial_id, "anchor": t.anchor, "knee": i == self.knee, "params": t.params,
                "objectives": dict(zip(self.metrics, map(float, self.values[i]))),
                "se": {m: _finite(e) for m, e in zip(self.metrics, self.errors[i])}}

    def rows(self) -> list[dict]:
        """The trials on the front as JSON, in front_trials' order."""
        index = {t.trial_id: i for i, t in enumerate(self.trials)}
        return [self.row(index[t.trial_id]) for t, _ in self.front_trials()]

    def to_json(self) -> dict:
        return {"objectives": [{"metric": m, "mode": d} for m, d in zip(self.metrics, self.modes)],
                "front": self.rows(), "knee": self.trials[self.knee].trial_id if self.knee is not None else None,
                "hypervolume": self.hypervolume,
                "reference": None if self.reference is None else self.reference.tolist()}

    def trial_count(self) -> str:
        """How many trials the front was computed from, and what they are (a caption's first words)."""
        return f"{len(self.trials)} trials"


@dataclass
class SearchFront(Front):
    """The search's front: every finished trial on its single run."""
    counts: dict[str, int]  # every trial of the study by MLflow status

    def to_json(self) -> dict:
        return super().to_json() | {"trials": self.counts}

    def trial_count(self) -> str:
        return "trials: " + (", ".join(f"{n} {s.lower()}" for s, n in sorted(self.counts.items())) or "none")


@dataclass
class RaceFront(Front):
    """The race's answer: the raced trials on their seed means (`values`, `errors` the means' standard errors)."""
    intervals: np.ndarray  # (n, k, 2) 95% Student-t interval of each mean
    single: np.ndarray  # (n, k) each trial's search run, beside its means
    p_front: np.ndarray  # (n,) probability of being on the front (analysis.verdicts.front_probability)
    places: list[str]  # front | off | undecided, as the race left each trial
    outdone_by: list[str | None]  # the trial that outdoes each within the margins (analysis.verdicts.outdone_by)
    comparisons: list[dict]  # per trial {metric: its difference from the control, interval, verdict}
    control: str | None  # the control's trial id
    recommended: int | None = None  # index into trials: the noise-aware pick (analysis.verdicts.recommend)
    recommended_reason: str = ""

    def row(self, i: int) -> dict:
        return super().row(i) | {
            "interval": {m: [_finite(lo), _finite(hi)] for m, (lo, hi) in zip(self.metrics, self.intervals[i])},
            "single_run": dict(zip(self.metrics, map(float, self.single[i]))),
            "p_front": _finite(self.p_front[i]), "place": self.places[i], "outdone_by": self.outdone_by[i],
            "verdicts": self.comparisons[i]}

    def raced_rows(self) -> list[dict]:
        """Every raced trial as JSON, on the seed-mean front or not."""
        return [self.row(i) for i in range(len(self.trials))]

    def to_json(self) -> dict:
        out = super().to_json() | {"raced": self.raced_rows(), "control": self.control,
                                   "verdicts": verdict_lines(self)}
        if self.recommended is not None:
            out["recommended"] = {"trial_id": self.trials[self.recommended].trial_id,
                                  "reason": self.recommended_reason}
        return out

    def trial_count(self) -> str:
        return f"{len(self.trials)} trials raced"


def _finite(x) -> float | None:
    return float(x) if x is not None and np.isfinite(x) else None


def _front_of(record: StudyRecord, trials: list[Trial], values: np.ndarray, errors: np.ndarray,
              on_front: np.ndarray | None = None, reference: np.ndarray | None = None) -> dict:
    """What every front holds, as keyword arguments: which trials are on the front (non-dominated unless given), the
    knee, and the hypervolume against `reference` (default: each objective's declared reference, else the worst
    value a trial reached)."""
    fields = {"metrics": record.metrics, "modes": record.modes, "trials": trials, "values": values,
              "errors": errors}
    if not trials:
        return fields | {"on_front": np.zeros(0, bool), "knee": None, "reference": None, "hypervolume": None}
    on_front = pareto.non_dominated(values, record.modes) if on_front is None else on_front
    declared = [o.reference for o in record.config.search.objectives]
    reference = pareto.reference_point(values, record.modes, declared) if reference is None else reference
    knee = pareto.knee(values, record.modes, on_front) if on_front.any() else None
    return fields | {"on_front": on_front, "knee": knee, "reference": reference,
                     "hypervolume": pareto.hypervolume(values[on_front], record.modes, reference)}


def summarize(record: StudyRecord) -> SearchFront:
    """The search front: every finished trial, each objective with the standard error the trial reported."""
    trials, values = record.finished()
    counts: dict[str, int] = {}
    for t in record.trials:
        counts[t.status] = counts.get(t.status, 0) + 1
    return SearchFront(**_front_of(record, trials, values, record.errors(trials)), counts=counts)


def summarize_race(record: StudyRecord) -> RaceFront | None:
    """The race front: the raced trials on the means over their race seeds (an anchor's search run counted as its
    seed 0), with the standard error of each mean (std / sqrt(seeds)) and its 95% Student-t interval; on the front
    are the trials with P(front) >= 0.5 that no other outdoes within the margins (analysis.verdicts); the hypervolume
    is against the search front's reference point, so that the two are comparable. None if the study raced none."""
    trials, values = record.raced()
    if not trials:
        return None
    runs = [record.confirm_runs[t.trial_id] for t in trials]
    n = np.array([float(r.tags[SEEDS]) for r in runs])[:, None]
    std = np.array([[r.metrics.get(f"{m}/std", np.nan) for m in record.metrics] for r in runs], dtype=float)
    intervals = np.array([[[r.metrics.get(f"{m}/ci_low", np.nan), r.metrics.get(f"{m}/ci_high", np.nan)]
                           for m in record.metrics] for r in runs], dtype=float)
    single = np.array([[t.metrics[m] for m in record.metrics] for t in trials], dtype=float)
    p_front = np.array([r.metrics[P_FRONT] for r in runs])
    comparisons = [{m: {"diff": r.metrics.get(f"{VERDICT}/{m}/diff"), "ci_low": r.metrics.get(f"{VERDICT}/{m}/ci_low"),
                        "ci_high": r.metrics.get(f"{VERDICT}/{m}/ci_high"), "verdict": r.tags[f"{VERDICT}/{m}"]}
                    for m in record.metrics if f"{VERDICT}/{m}" in r.tags} for r in runs]
    control = next((t.trial_id for t in trials if t.anchor and t.anchor == record.config.search.control_anchor), None)
    outdone_by = [r.tags.get(OUTDONE_BY) for r in runs]
    errors = std / np.sqrt(n)
    on_front = (p_front >= verdicts.FRONT) & np.array([by is None for by in outdone_by])
    front = RaceFront(**_front_of(record, trials, values, errors, on_front=on_front,
                                  reference=summarize(record).reference),
                      intervals=intervals, single=single, p_front=p_front, places=[r.tags[PLACE] for r in runs],
                      outdone_by=outdone_by, comparisons=comparisons, control=control)
    if len(trials) > 1:
        margins = [o.margin for o in record.config.search.objectives]
        front.recommended, front.recommended_reason = verdicts.recommend(values, errors, record.metrics,
                                                                         record.modes, margins)
    return front


def verdict_lines(front: RaceFront) -> list[str]:
    """One line per raced trial but the control: its difference from the control on every objective."""
    lines = []
    for t, comparison in zip(front.trials, front.comparisons):
        if comparison and t.trial_id != front.control:
            name = f"{t.anchor or t.params.get('distill.mitigation.mode', 'trial')} {t.trial_id}"
            lines.append(verdicts.verdict_line(name, comparison))
    return lines


def front_table(front: Front, title: str) -> Table:
    """The front as a table: one row per non-dominated trial, its sampled params and its objectives (↓ min, ↑ max).

    It fits 120 columns without cutting a header: a parameter is headed by the last part of its name (two parts
    where two parameters share the last), an objective by its name broken at the '/' (on two lines by design), and a
    value with its interval puts the interval on a line of its own, and a race front's single-run value on a third
    ("run 50.0000")."""
    params = sorted({k for t, _ in front.front_trials() for k in t.params})
    headers = ["trial", "note", *short_names(params),
               *(_objective_header(m, d) for m, d in zip(front.metrics, front.modes))]
    rows = []
    for row in front.rows():
        note = " ".join(n for n in (row["anchor"], "knee" if row["knee"] else None) if n)
        rows.append([row["trial_id"], note, *(_short(row["params"].get(p, "-")) for p in params),
                     *(_cell(row, m) for m in front.metrics)])
    table = Table(title=title, caption=caption(front), show_edge=False)  # the frame's two columns go to the cells
    for i, header in enumerate(headers):
        # no column narrower than its longest line (header or cell) but the note's, which folds when space is short
        widest = max(len(line) for text in [header, *(r[i] for r in rows)] for line in text.split("\n"))
        table.add_column(header, justify="left" if i < 2 else "right", overflow="fold",
                         min_width=None if i == 1 else widest)
    for r in rows:
        table.add_row(*r)
    return table


def race_table(front: RaceFront, title: str) -> Table:
    """Every raced trial: its seed means [95% interval] over the race's seeds, its single run, and its probability of
    being on the front with the place the race left it in (0.05 < P < 0.95 is undecided, unless another trial outdoes
    it within the margins: then it is off, "by" that trial)."""
    # The mitigation alone names a trial here; every sampled value is in the single-run table and pareto.json.
    params = [p for p in ("distill.mitigation.mode",) if any(p in t.params for t in front.trials)]
    table = Table(title=title, caption=race_caption(front), show_edge=False)
    for name in ("trial", "note", *(p.split(".")[-1] for p in params)):
        table.add_column(name, overflow="fold")
    for metric, mode in zip(front.metrics, front.modes):  # a cell: the mean, its interval, the single run
        table.add_column(_objective_header(metric, mode), justify="right", overflow="fold")
    table.add_column("P(front)", justify="right")
    recommended = front.trials[front.recommended].trial_id if front.recommended is not None else None
    for row in front.raced_rows():
        note = " ".join(n for n in (row["anchor"], "control" if row["trial_id"] == front.control else None,
                                    "knee" if row["knee"] else None,
                                    "recommended" if row["trial_id"] == recommended else None) if n)
        table.add_row(row["trial_id"], note, *(_short(row["params"].get(x, "-")) for x in params),
                      *(_cell(row, m) for m in front.metrics), _place_cell(row))
    return table


def _place_cell(row: dict) -> str:
    """`0.67` over `off, by 9c1d2e3f` (outdone within the margins) or over the place its P(front) gives."""
    p = row.get("p_front")
    if p is None:
        return "-"
    return f"{p:.2f}\n{row['place']}" + (f", by\n{row['outdone_by']}" if row.get("outdone_by") else "")


def verdict_table(front: RaceFront, title: str) -> Table:
    """Each raced trial against the control, on the same seeds: trial - control, its 95% interval, the verdict."""
    table = Table(title=title, caption="trial - control, paired over the seeds both ran, with its 95% Student-t "
                                       "interval; within ±m: smaller than the objective's margin m", show_edge=False)
    table.add_column("trial", overflow="fold")
    for metric in front.metrics:
        table.add_column(f"{metric}\n(trial - control)", justify="right", overflow="fold")
    for t, comparison in zip(front.trials, front.comparisons):
        if not comparison or t.trial_id == front.control:
            continue
        name = f"{t.trial_id} {t.anchor or t.params.get('distill.mitigation.mode', '')}".strip()
        table.add_row(name, *(f"{c['diff']:+.3g} [{c['ci_low']:+.3g}, {c['ci_high']:+.3g}]\n{c['verdict']}"
                              if (c := comparison.get(m)) else "-" for m in front.metrics))
    return table


def race_caption(front: RaceFront) -> str:
    undecided = front.places.count("undecided")
    text = caption(front) + (f"; on the front: P(front) >= {verdicts.FRONT:g} unless outdone (off, by another: "
                             f"beaten on one objective, within the margin on the rest); {undecided} undecided "
                             f"(0.05 < P < 0.95)")
    if front.recommended is not None:
        text += (f"\nrecommended: {front.trials[front.recommended].trial_id}, {front.recommended_reason}")
    return text


def _objective_header(metric: str, mode: str) -> str:
    """`bias/` over `amplification ↓`: the name broken after its first '/', the arrow saying min (↓) or max (↑)."""
    head, _, tail = metric.partition("/")
    return f"{head}/\n{tail} {'↓' if mode == 'min' else '↑'}" if tail else f"{metric} {'↓' if mode == 'min' else '↑'}"


def short_names(params: list[str]) -> list[str]:
    """`temperature` for distill.loss.temperature: the last part of each name, or its last two where that is shared."""
    last = [p.split(".")[-1] for p in params]
    return [name if last.count(name) == 1 else ".".join(p.split(".")[-2:]) for p, name in zip(params, last)]


def _cell(row: dict, metric: str) -> str:
    """`value ± se`; or a seed mean over its interval `[low, high]` and the trial's single run (`run value`)."""
    value = f"{row['objectives'][metric]:.4f}"
    low, high = row.get("interval", {}).get(metric, (None, None))
    if low is not None and high is not None:
        single = f"\nrun {row['single_run'][metric]:.4f}" if "single_run" in row else ""
        return f"{value}\n[{low:.4f}, {high:.4f}]{single}"
    se = row.get("se", {}).get(metric)
    return f"{value} ± {se:.4f}" if se is not None else value


def table_console() -> Console:
    """Standard output for tables: the terminal's width, or 160 columns in a log file (rich's 80 cuts names)."""
    return Console() if sys.stdout.isatty() else Console(width=160)


def caption(front: Front) -> str:
    if front.hypervolume is None:
        return f"{front.trial_count()}; no finished trial yet"
    ref = ", ".join(f"{m} {r:.4g}" for m, r in zip(front.metrics, front.reference))
    return (f"{front.trial_count()}; {int(front.on_front.sum())} on the front; hypervolume {front.hypervolume:.4g} "
            f"(reference: {ref})")


USAGE = ("perf/distill_seconds", "perf/eval_seconds", "perf/busy_share")


def usage_line(record: StudyRecord) -> str | None:
    """What the finished trials used: the median over them of their distillation and evaluation seconds and their
    busy share (work seconds summed over workers / (workers x trial wall)), and the least busy trial; None when no
    trial finished."""
    trials = record.finished()[0]
    if not trials:
        return None
    median = {k: float(np.median([t.metrics[k] for t in trials])) for k in USAGE}
    idlest = min(trials, key=lambda t: t.metrics["perf/busy_share"])
    return (f"what the trials used (median of {len(trials)} finished): distillation {median[USAGE[0]]:.0f}s, "
            f"evaluation {median[USAGE[1]]:.0f}s, busy share {median[USAGE[2]]:.2f} of the workers' time "
            f"(least busy: trial {idlest.trial_id}, {idlest.metrics['perf/busy_share']:.2f})")


def _short(value: str) -> str:
    try:
        return f"{float(value):.4g}"
    except ValueError:
        return value


def seed_summary(values) -> dict[str, float]:
    """Mean, sample std (ddof 1) and the 95% Student-t interval of the mean over seeds; one seed has no interval."""
    x = np.asarray(values, dtype=float)
    mean = float(x.mean())
    if len(x) < 2:
        return {"mean": mean, "std": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": len(x)}
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(x) - 1) * std / np.sqrt(len(x)))
    return {"mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half, "n": len(x)}
