"""Seed runs: a trial's config again with its seeds moved, run as Ray tasks, summarised and recorded. What
`kdstudy rerun` and the confirm stage both do, in one place:

    seed_config      the trial's config for seed k: every seed (distillation, bias, fine-tuning) moved by k
    run_seeds        each (params, seed, Train run name) as a Ray task of its own at its seed's config, as many at
                     once as the search ran trials
    seed_result      the per-seed metrics with their mean, std and 95% interval, the failures, the params
    write_result     that result as JSON, atomically (a temporary file renamed into place)
    log_seed_run     that result as one MLflow run under the study's parent run

A seed whose Train run finished before an interruption reports its saved result instead of running again
(study.cluster.train_run), so an interrupted rerun or confirm stage continues where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

import ray

from analysis.report import seed_summary
from analysis.runs import StudyRecord
from study.cluster.train_run import distill_and_evaluate
from study.config import REPLICATE, StudyConfig, with_params
from study.device import DEVICE_TAG
from study.record import tracking
from study.record.folder import trial_log
from study.runtime import error_line, setup_worker_logging

log = logging.getLogger(__name__)


def seed_config(cfg: StudyConfig, params: dict, seed: int, full: bool) -> StudyConfig:
    """The trial's config for one seed: its params, the full budget if asked, every seed moved by `seed` (so seed 0
    without `full` is the trial itself)."""
    values = dict(params)
    if full:
        values.update(cfg.rerun.full)
    # a grid trial's own replicate already moved its seeds: seed k moves them k further
    values[REPLICATE] = int(values.get(REPLICATE, 0)) + seed
    return with_params(cfg, values)


def shown_metrics(cfg: StudyConfig, names: set[str]) -> list[str]:
    """The rows worth a table: the objectives, the primary bias metric, and the score of each eval suite."""
    wanted = [o.key for o in cfg.search.objectives] + [cfg.bias.primary, "bias/amplification", "world/score",
                                                            "glue/score", "distill/loss"]
    return [m for m in dict.fromkeys(wanted) if m in names]


@ray.remote
def run_seed(cfg: StudyConfig, params: dict, seed: int, full: bool, teacher: dict[str, float], name: str) -> dict:
    """One seed of a trial (its params): the same distillation and evaluation as a trial, at seed_config, as a Ray
    task of its own."""
    setup_worker_logging(trial_log(cfg.study_dir, name))
    metrics, uri = distill_and_evaluate(seed_config(cfg, params, seed, full), teacher, name)
    return {**metrics, tracking.STUDENT_URI: uri}


def run_seeds(cfg: StudyConfig, teacher: dict[str, float], runs: dict, at_once: int,
              full: bool = False) -> tuple[dict, dict[object, str]]:
    """Distil and evaluate each of `runs` ({key: (a trial's params, seed, Train run name)}) at its seed_config, as a
    Ray task of its own, `at_once` at a time (study.cluster.capacity.trials_at_once: what the cluster holds, each run
    counted as a trial), the next one started as one finishes: ({key: metrics}, {key: one-line failure}). Ray must
    be up.

    The cap is ours, not the cluster's: a task waiting on its Train run gives its CPU back to Ray while it waits, so
    Ray would start every task at once, and their workers would share the cores (measured in the smoke study's
    confirm stage: 4 runs at once on 2 cores, 250-270 s each, against 105-120 s for its trials 2 at a time)."""
    scaling = cfg.search.scaling  # each seed's process where a trial's would be (trial_resources)
    task = run_seed.options(num_cpus=scaling.trial_cpus, resources=scaling.trial_resources or None)
    waiting = list(runs.items())
    pending: dict = {}
    done_runs, failed = {}, {}
    while waiting or pending:
        while waiting and len(pending) < at_once:
            key, (params, seed, name) = waiting.pop(0)
            pending[task.remote(cfg, params, seed, full, teacher, name)] = key
        done, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(done[0])
        try:
            done_runs[key] = ray.get(done[0])
            log.info(f"{runs[key][2]} finished: " + ", ".join(
                f"{m} {done_runs[key][m]:.4g}" for m in shown_metrics(cfg, set(done_runs[key]))[:3]))
        except ray.exceptions.RayTaskError as err:
            failed[key] = error_line(err)
            log.info(f"{runs[key][2]} FAILED: {failed[key]}")
    return done_runs, failed


def summarise_seeds(per_seed: dict) -> dict[str, dict[str, float]]:
    """Mean, std and 95% interval over the seeds of every numeric metric."""
    numeric = sorted({k for m in per_seed.values() for k, v in m.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {m: seed_summary([per_seed[k][m] for k in sorted(per_seed) if m in per_seed[k]]) for m in numeric}


def seed_result(params: dict, per_seed: dict[int, dict], failed: dict[int, str], seeds: int, **about) -> dict:
    """What a seed run records: `about` (what it reruns or confirms, and why), the params, the seed count, the failed
    seeds' reasons, the summary per metric and the metrics of every seed."""
    return {**about, "params": params, "seeds": seeds, "failed_seeds": {str(k): e for k, e in sorted(failed.items())},
            "summary": summarise_seeds(per_seed), "per_seed": {str(k): per_seed[k] for k in sorted(per_seed)},
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def write_result(path: Path, result: dict) -> Path:
    """`result` as JSON at `path`, atomically: a reader (or a resumed stage) sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(path)
    return path


def log_seed_run(record: StudyRecord, result: dict, out: Path, tags: dict[str, str], name: str,
                 extra: dict[str, float] | None = None) -> str:
    """One MLflow run under the study's parent for a trial run again with several seeds: its params, the mean per
    metric (comparable with the trial's own), `<metric>/std|ci_low|ci_high`, the `extra` metrics, `out` as an
    artifact and the seeds' devices as its `device` tag."""
    client = record.client
    devices = sorted({str(m[DEVICE_TAG]) for m in result["per_seed"].values() if DEVICE_TAG in m})
    tags = {tracking.PARENT: record.meta["parent_run_id"], **({DEVICE_TAG: ", ".join(devices)} if devices else {}),
            **tags}
    run_id = client.create_run(record.meta["experiment_id"], tags=tags, run_name=name).info.run_id
    tracking.log_params(client, run_id, result["params"])
    flat = {}
    for metric, s in result["summary"].items():
        flat[metric] = s["mean"]
        flat.update({f"{metric}/{k}": s[k] for k in ("std", "ci_low", "ci_high")})
    tracking.log_metrics(client, run_id, flat | (extra or {}))
    client.log_artifact(run_id, str(out))
    tracking.end_run(client, run_id, "FINISHED" if not result["failed_seeds"] else "FAILED",
                     json.dumps(result["failed_seeds"]) if result["failed_seeds"] else None)
    return run_id
