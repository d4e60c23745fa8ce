"""The confirm stage of a study: once the search ends, its best trials run again with more seeds, so that the front a
researcher reads is one of seed means, not of single draws.

    search:
      confirm: {top: 3, seeds: 2}

The `top` best finished trials by non-domination rank (the front first, then the next layer; within a layer nearest
the ideal point) each get `seeds` more runs: seed k = 1..seeds shifts every seed by k as `kdstudy rerun` does (the
same code), so together with the trial's own run (seed 0) each confirmed trial has seeds + 1 values per metric.
Each confirmed trial's seed means, std and 95% intervals go to <study>/confirm/<trial id>.json and to one MLflow run
under the study's parent tagged confirm_of=<trial id>; the confirmed front is computed from the seed means when the
front is published (study.publish). Interrupted, it resumes: a trial with its JSON is done, a seed whose Train run
finished reports its saved result, and an MLflow run is made only once per confirmed trial.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from mlflow import MlflowClient

from analysis import pareto
from analysis.runs import Study, load_study
from study import folder, tracking
from study.config import StudyConfig
from study.rerun import log_seed_run, run_seeds, seed_config, summarise_seeds

log = logging.getLogger(__name__)
CONFIRM_OF = "confirm_of"


def chosen_trials(study: Study, top: int) -> list:
    """The `top` finished trials best by non-domination rank."""
    trials, values = study.finished()
    return [trials[i] for i in pareto.best_first(values, study.modes)[:top]]


def run_confirm_stage(cfg: StudyConfig, teacher: dict[str, float]) -> list[dict]:
    """Confirm the study's best trials (cfg.search.confirm); Ray must be up. Returns each confirmed trial's result."""
    spec = cfg.search.confirm
    directory = Path(cfg.study_dir)
    study = load_study(directory)
    chosen = chosen_trials(study, spec.top)
    if not chosen:
        return []
    out_dir = directory / folder.CONFIRM
    out_dir.mkdir(exist_ok=True)
    todo = [t for t in chosen if not (out_dir / f"{t.trial_id}.json").is_file()]
    done = f" ({len(chosen) - len(todo)} confirmed before)" if len(todo) < len(chosen) else ""
    log.info(f"confirm stage: {len(chosen)} trial(s) x {spec.seeds} more seed(s): "
             f"{', '.join(t.trial_id for t in chosen)}{done}")
    params = {t.trial_id: json.loads(t.tags["params_json"]) for t in todo}
    runs = {(t.trial_id, k): (seed_config(cfg, params[t.trial_id], k, full=False), f"confirm-{t.trial_id}-seed{k}")
            for t in todo for k in range(1, spec.seeds + 1)}
    per_run, failed = run_seeds(cfg, teacher, runs)
    for t in todo:
        per_seed = {0: t.metrics} | {k: per_run[(t.trial_id, k)] for k in range(1, spec.seeds + 1)
                                     if (t.trial_id, k) in per_run}
        # seeds: the values each mean is over (the trial's own run and the new seeds that finished)
        result = {CONFIRM_OF: t.trial_id, "params": params[t.trial_id], "seeds": len(per_seed),
                  "failed_seeds": {str(k): e for (tid, k), e in failed.items() if tid == t.trial_id},
                  "summary": summarise_seeds(per_seed), "per_seed": {str(k): m for k, m in per_seed.items()},
                  "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        tmp = out_dir / f".{t.trial_id}.json.tmp"
        tmp.write_text(json.dumps(result, indent=2))
        tmp.replace(out_dir / f"{t.trial_id}.json")
    return [_logged(study, out_dir / f"{t.trial_id}.json") for t in chosen]


def _logged(study: Study, path: Path) -> dict:
    """The confirmed trial's result, logged to MLflow unless a run for it is there already (a resumed stage)."""
    result = json.loads(path.read_text())
    client = MlflowClient(study.record["tracking_uri"])
    existing = tracking.child_runs(client, study.record["experiment_id"], study.record["parent_run_id"],
                                   f"tags.{CONFIRM_OF} = '{result[CONFIRM_OF]}'")
    if not existing:
        tags = {CONFIRM_OF: result[CONFIRM_OF], tracking.ROLE: "confirm", "seeds": str(result["seeds"])}
        log_seed_run(study, result, path, tags, f"confirm-{result[CONFIRM_OF]}")
    return result
