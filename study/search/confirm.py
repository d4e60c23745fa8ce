"""The confirm stage of a study: once the search ends, its best trials run again with more seeds, so that the front a
researcher reads is one of seed means, not of single draws.

    search:
      confirm: {top: 3, seeds: 2}

The `top` best finished trials by non-domination rank (the front first, then the next layer; within a layer nearest
the ideal point) each get `seeds` more runs: seed k = 1..seeds shifts every seed by k as `kdstudy rerun` does (the
same code), so together with the trial's own run (seed 0) each confirmed trial has seeds + 1 values per metric.
Each confirmed trial's seed means, std and 95% intervals go to <study>/confirm/<trial id>.json and to one MLflow run
under the study's parent tagged confirm_of=<trial id>; the confirmed front is computed from the seed means when the
front is published (study.search.publish). Interrupted, it resumes: a trial with its JSON is done, a seed whose Train
run finished reports its saved result, and an MLflow run is made only once per confirmed trial. The seed runs are
study.search.seeds, as `kdstudy rerun`'s are.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from analysis import pareto
from analysis.runs import StudyRecord, read_study
from study.config import StudyConfig
from study.record import folder, tracking
from study.search.seeds import log_seed_run, run_seeds, seed_config, seed_result, write_result

log = logging.getLogger(__name__)


def chosen_trials(record: StudyRecord, top: int) -> list:
    """The `top` finished trials best by non-domination rank."""
    trials, values = record.finished()
    return [trials[i] for i in pareto.best_first(values, record.modes)[:top]]


def run_confirm_stage(cfg: StudyConfig, teacher: dict[str, float]) -> list[dict]:
    """Confirm the study's best trials (cfg.search.confirm); Ray must be up. Returns each confirmed trial's result."""
    spec = cfg.search.confirm
    directory = Path(cfg.study_dir)
    record = read_study(directory)
    chosen = chosen_trials(record, spec.top)
    if not chosen:
        return []
    out_dir = directory / folder.CONFIRM
    todo = [t for t in chosen if not (out_dir / f"{t.trial_id}.json").is_file()]
    done = f" ({len(chosen) - len(todo)} confirmed before)" if len(todo) < len(chosen) else ""
    log.info(f"confirm stage: {len(chosen)} trial(s) x {spec.seeds} more seed(s): "
             f"{', '.join(t.trial_id for t in chosen)}{done}")
    params = {t.trial_id: json.loads(t.tags[tracking.PARAMS_JSON]) for t in todo}
    runs = {(t.trial_id, k): (seed_config(cfg, params[t.trial_id], k, full=False), f"confirm-{t.trial_id}-seed{k}")
            for t in todo for k in range(1, spec.seeds + 1)}
    per_run, failed = run_seeds(cfg, teacher, runs)
    for t in todo:
        per_seed = {0: t.metrics} | {k: per_run[(t.trial_id, k)] for k in range(1, spec.seeds + 1)
                                     if (t.trial_id, k) in per_run}
        # seeds: the values each mean is over (the trial's own run and the new seeds that finished)
        failures = {k: e for (tid, k), e in failed.items() if tid == t.trial_id}
        result = seed_result(params[t.trial_id], per_seed, failures, len(per_seed), **{tracking.CONFIRM_OF: t.trial_id})
        write_result(out_dir / f"{t.trial_id}.json", result)
    return [_logged(record, out_dir / f"{t.trial_id}.json") for t in chosen]


def _logged(record: StudyRecord, path: Path) -> dict:
    """The confirmed trial's result, logged to MLflow unless a run for it is there already (a resumed stage)."""
    result = json.loads(path.read_text())
    trial_id = result[tracking.CONFIRM_OF]
    existing = tracking.child_runs(record.client, record.meta["experiment_id"], record.meta["parent_run_id"],
                                   f"tags.{tracking.CONFIRM_OF} = '{trial_id}'")
    if not existing:
        tags = {tracking.CONFIRM_OF: trial_id, tracking.ROLE: "confirm", tracking.SEEDS: str(result["seeds"])}
        log_seed_run(record, result, path, tags, f"confirm-{trial_id}")
    return result
