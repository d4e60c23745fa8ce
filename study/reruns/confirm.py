"""The confirm stage of a study: once the search ends, its best trials and the control race on shared seeds, so
that the study ends with what it can tell apart: each trial's probability of being on the front and its difference
from the control on every objective, with a verdict.

    search:
      control: plain_kd          # default: the first anchor
      confirm: {top: 3, seeds: 2, max_seeds: 8, budget: 6}

Who runs: the `top` best finished trials by non-domination rank, one per configuration (a configuration the sampler
proposed twice is raced once: its runs would be the same), the anchors (`confirm.anchors`, default true: their
verdicts answer "does the paper's setting help"), and the control anchor, which runs every seed any trial runs. Seeds:
k = 1, 2, ... shifts every seed by k (study.reruns.seeds), the same k for every trial, so that differences are taken
seed by seed; seed 0 is the search's own run. A trial picked by its value keeps that run beside its means as
`single_run`, not in them (it is the draw that got the trial picked); an anchor or the control, which race whatever
their values, count it as their seed 0 and run one seed fewer. The rounds are analysis.race.

Each run's metrics go to confirm/runs/<trial>-seed<k>.json as its round ends; an interrupted stage replays the race
from them and from the Train runs that finished (their saved results), so every (trial, seed) runs once. At the end
each raced trial gets confirm/<trial>.json and one MLflow run under the parent tagged confirm_of=<trial>: the
means over its seeds (std, 95% interval), its single run, `confirm/p_front`, its place and its verdicts; and
confirm/race.json says how the race went (rounds, runs, why it stopped, what a fixed stage would have cost).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from analysis import pareto
from analysis.race import RaceResult, race
from analysis.runs import StudyRecord, Trial, read_study
from study.config import StudyConfig
from study.record import folder, tracking
from study.reruns.seeds import log_seed_run, run_seeds, seed_result, write_result

log = logging.getLogger(__name__)


def chosen_trials(record: StudyRecord, top: int) -> tuple[list[Trial], dict[str, str]]:
    """The `top` finished trials best by non-domination rank, one per configuration, and {trial: the trial whose
    configuration it repeats} for the repeats left out."""
    trials, values = record.finished()
    chosen, repeats, seen = [], {}, {}
    for i in pareto.best_first(values, record.modes):
        t = trials[i]
        params = t.tags[tracking.PARAMS_JSON]
        if params in seen:
            repeats[t.trial_id] = seen[params]
        elif len(chosen) < top:
            seen[params] = t.trial_id
            chosen.append(t)
    return chosen, repeats


def control_trial(record: StudyRecord) -> Trial | None:
    """The finished trial of the control anchor (search.control, default the first anchor), if it finished."""
    name = record.config.search.control_anchor
    return next((t for t in record.finished()[0] if name and t.anchor == name), None)


def anchor_trials(record: StudyRecord) -> list[Trial]:
    """The finished trials of the anchors, in the YAML's order."""
    names = [a.name for a in record.config.search.anchors]
    finished = record.finished()[0]
    return [t for name in names for t in finished if t.anchor == name][:len(names)]


def run_confirm_stage(cfg: StudyConfig, teacher: dict[str, float], at_once: int) -> list[dict]:
    """Race the study's best trials and its control (cfg.search.confirm), `at_once` runs at a time (as many as the
    search ran trials); Ray must be up. Returns each raced trial's result."""
    spec = cfg.search.confirm
    directory = Path(cfg.study_dir)
    record = read_study(directory)
    chosen, repeats = chosen_trials(record, spec.top)
    control = control_trial(record)
    if not chosen:
        return []
    anchors = anchor_trials(record) if spec.anchors else []
    contenders = {t.trial_id: t for t in [*chosen, *anchors, *([control] if control else [])]}
    for repeat, of in repeats.items():
        log.info(f"confirm stage: trial {repeat} is trial {of}'s configuration again; raced once, as {of}")
    log.info(f"confirm stage: {', '.join(contenders)} race on shared seeds ({spec.seeds} first, doubling to at "
             f"most {spec.max_seeds}; at most {spec.runs(len(contenders))} runs); control: "
             f"{control.trial_id + ' (' + control.anchor + ')' if control else 'none (no anchor finished)'}")
    params = {tid: json.loads(t.tags[tracking.PARAMS_JSON]) for tid, t in contenders.items()}
    # an anchor's search run is its seed 0: it was run whatever its value, so it is a draw like any other
    unpicked = {t.trial_id for t in anchors + ([control] if control else [])}
    per_run: dict[tuple[str, int], dict] = {(tid, 0): _metrics(contenders[tid]) for tid in unpicked}

    def objective_values(metrics: dict) -> np.ndarray:
        return np.array([metrics.get(m, np.nan) for m in record.metrics])

    def run(requests: list[tuple[str, int]]) -> dict:
        """Run what is missing of `requests` (a replayed race finds the rest on disk); their objective values."""
        todo = {}
        for tid, k in requests:
            path = folder.confirm_seed_result(directory, tid, k)
            if path.is_file():
                per_run[(tid, k)] = json.loads(path.read_text())
            else:
                todo[(tid, k)] = (params[tid], k, folder.seed_run("confirm", tid, k))
        finished, failed = run_seeds(cfg, teacher, todo, at_once)
        for (tid, k), metrics in finished.items():
            write_result(folder.confirm_seed_result(directory, tid, k), metrics)
        for (tid, k), reason in failed.items():
            log.warning(f"{todo[(tid, k)][2]} failed ({reason}); the race goes on without it")
        per_run.update(finished)
        return {key: objective_values(per_run[key]) for key in requests if key in per_run}

    objectives = cfg.search.objectives
    given = {key: objective_values(m) for key, m in per_run.items()}
    result = race(list(params), control.trial_id if control else None, run, record.metrics, record.modes,
                  [o.margin for o in objectives], spec.seeds, spec.max_seeds, spec.runs(len(contenders)), given=given)
    log.info(f"confirm stage: {result.stopped}; {result.runs} runs in {len(result.rounds)} round(s) (a fixed stage "
             f"deciding as much: {result.fixed_runs()} runs)")
    write_result(folder.race_result(directory), race_summary(result, control))
    results = [write_result(folder.confirm_result(directory, tid),
                            raced_result(tid, contenders[tid], params[tid], per_run, result))
               for tid in contenders]
    return [_logged(record, path) for path in results]


def race_summary(result: RaceResult, control: Trial | None) -> dict:
    return {"control": control.trial_id if control else None, "stopped": result.stopped, "runs": result.runs,
            "fixed_runs": result.fixed_runs(), "rounds": result.rounds,
            "seeds": {t: s for t, s in result.seeds.items()},
            "search_run_counted": [t for t, _ in result.given]}  # seed 0 of these is their search run


def _metrics(trial: Trial) -> dict[str, float]:
    return {m: v for m, v in trial.metrics.items() if "/" in m}


def raced_result(tid: str, trial: Trial, params: dict, per_run: dict, result: RaceResult) -> dict:
    """A raced trial's record: the metrics of the seeds that count for it and their summary, its single run,
    P(front), its place (and the trial that outdoes it, if one does) and its verdicts against the control."""
    seeds = result.seeds[tid]
    per_seed = {k: per_run[(tid, k)] for k in seeds}
    failed = {k: "failed" for k in range(1, max(seeds, default=0) + 1) if k not in seeds}
    out = seed_result(params, per_seed, failed, len(per_seed), **{tracking.CONFIRM_OF: tid})
    out |= {"single_run": _metrics(trial), "p_front": result.p_front[tid], "place": result.place[tid],
            "outdone_by": result.outdone_by.get(tid),
            "verdicts": result.comparisons.get(tid, {}), "search_run_counted": (tid, 0) in result.given}
    return out


def _logged(record: StudyRecord, path: Path) -> dict:
    """The raced trial's result, logged to MLflow unless a run for it is there already (a resumed stage)."""
    result = json.loads(path.read_text())
    trial_id = result[tracking.CONFIRM_OF]
    existing = tracking.child_runs(record.client, record.meta["experiment_id"], record.meta["parent_run_id"],
                                   f"tags.{tracking.CONFIRM_OF} = '{trial_id}'")
    if not existing:
        tags = {tracking.CONFIRM_OF: trial_id, tracking.ROLE: "confirm", tracking.SEEDS: str(result["seeds"]),
                tracking.PLACE: result["place"]}
        if result.get("outdone_by"):
            tags[tracking.OUTDONE_BY] = result["outdone_by"]
        extra = {tracking.P_FRONT: result["p_front"]}
        for metric, c in result["verdicts"].items():
            tags[f"{tracking.VERDICT}/{metric}"] = c["verdict"]
            extra |= {f"{tracking.VERDICT}/{metric}/{k}": c[k] for k in ("diff", "ci_low", "ci_high")}
        log_seed_run(record, result, path, tags, f"confirm-{trial_id}", extra)
    return result
