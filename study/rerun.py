"""`kdstudy rerun`: a chosen point of a study again, with several seeds and, with --full, the YAML's full budget.

    kdstudy rerun runs/smoke --pick knee --seeds 3 [--full]
    kdstudy rerun runs/smoke --pick min:bias/amplification | max:world/score | trial:<trial id>

Seed k sets distill.seed and the evaluation seeds (eval.world.seed, eval.glue.seed, bias.seed) to the study's seed
+ k, so seed 0 of a rerun without --full is the trial itself. Seeds run as parallel Ray tasks, as many at once as the
cluster has resources for; each is a trial's distillation (Ray Train) and evaluation, the same code. The result is
one MLflow run under the study's parent run, tagged rerun_of=<trial id>: mean, std and a 95% interval per metric
beside the original trial's value, also printed and written to <study dir>/reruns/<trial id>[-full].json. A rerun
that is interrupted continues where it stopped when run again (its Train runs keep their names).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import ray
from mlflow import MlflowClient
from rich.table import Table

from analysis.report import seed_summary, summarize, table_console
from analysis.runs import Study, Trial, load_study
from study import folder, tracking
from study.cluster import start_ray, teacher_metrics_task
from study.config import ConfigError, StudyConfig, with_params
from study.runtime import error_line
from study.trial import run_seed

log = logging.getLogger(__name__)


def pick_trial(study: Study, pick: str) -> Trial:
    """The trial `pick` names: knee (of the Pareto front), min:<metric>, max:<metric>, or trial:<id>."""
    kind, _, value = pick.partition(":")
    if kind == "trial":
        found = [t for t in study.trials if t.trial_id == value]
        if not found:
            raise ConfigError(f"--pick {pick}: no trial {value!r} in {study.directory} "
                              f"(trials: {', '.join(t.trial_id for t in study.trials)})")
        return found[0]
    finished, _ = study.finished()
    if not finished:
        raise ConfigError(f"--pick {pick}: {study.directory} has no finished trial yet")
    if kind == "knee" and not value:
        front = summarize(study)
        return front.trials[front.knee]
    if kind in ("min", "max") and value:
        having = [t for t in finished if value in t.metrics]
        if not having:
            raise ConfigError(f"--pick {pick}: no finished trial reported {value!r}")
        best = min if kind == "min" else max
        return best(having, key=lambda t: t.metrics[value])
    raise ConfigError(f"--pick {pick}: expected knee, min:<metric>, max:<metric> or trial:<id>")


def seed_config(cfg: StudyConfig, params: dict, seed: int, full: bool) -> StudyConfig:
    """The trial's config for one rerun seed: its params, the full budget if asked, every seed moved by `seed`."""
    values = dict(params)
    if full:
        values.update(cfg.rerun.full)
    shifted = {"distill.seed": cfg.distill.seed + seed, "bias.seed": cfg.bias.seed + seed,
               "eval.world.seed": cfg.eval.world.seed + seed, "eval.glue.seed": cfg.eval.glue.seed + seed}
    return with_params(cfg, {**values, **shifted})


def shown_metrics(cfg: StudyConfig, names: set[str]) -> list[str]:
    """The rows worth a table: the objectives, the primary bias metric, and the score of each eval suite."""
    wanted = [o.metric for o in cfg.search.objectives] + [cfg.bias.primary, "bias/amplification", "world/score",
                                                            "glue/score", "distill/loss"]
    return [m for m in dict.fromkeys(wanted) if m in names]


def run_seeds(cfg: StudyConfig, teacher: dict[str, float], runs: dict) -> tuple[dict, dict[object, str]]:
    """Distil and evaluate each of `runs` ({key: (config, Train run name)}) as a Ray task of its own, as many at once
    as the cluster has room for: ({key: metrics}, {key: one-line failure}). Ray must be up. A Train run that
    finished before an interruption reports its saved result instead of running again (study.trial)."""
    scaling = cfg.search.scaling  # each seed's process where a trial's would be (trial_resources)
    task = run_seed.options(num_cpus=scaling.trial_cpus, resources=scaling.trial_resources or None)
    pending = {task.remote(c.model_dump(mode="json"), teacher, name): key for key, (c, name) in runs.items()}
    done_runs, failed = {}, {}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        key = pending.pop(done[0])
        try:
            done_runs[key] = ray.get(done[0])
            log.info(f"{runs[key][1]} finished: " + ", ".join(
                f"{m} {done_runs[key][m]:.4g}" for m in shown_metrics(cfg, set(done_runs[key]))[:3]))
        except ray.exceptions.RayTaskError as err:
            failed[key] = error_line(err)
            log.info(f"{runs[key][1]} FAILED: {failed[key]}")
    return done_runs, failed


def summarise_seeds(per_seed: dict) -> dict[str, dict[str, float]]:
    """Mean, std and 95% interval over the seeds of every numeric metric."""
    numeric = sorted({k for m in per_seed.values() for k, v in m.items()
                      if isinstance(v, (int, float)) and not isinstance(v, bool)})
    return {m: seed_summary([per_seed[k][m] for k in sorted(per_seed) if m in per_seed[k]]) for m in numeric}


def rerun(study_dir: str | Path, pick: str, seeds: int | None = None, full: bool = False,
          address: str | None = None) -> dict:
    """Rerun the picked trial; returns what was written to reruns/<trial id>[-full].json."""
    study = load_study(study_dir)
    trial = pick_trial(study, pick)
    params = json.loads(trial.tags["params_json"])
    cfg = folder.resolve(study.config, study.directory)
    seeds = seeds or cfg.rerun.seeds
    label = f"{trial.trial_id}{'-full' if full else ''}"
    runs = {k: (seed_config(cfg, params, k, full), f"rerun-{label}-seed{k}") for k in range(seeds)}
    log.info(f"rerun of trial {trial.trial_id} ({pick}) with {seeds} seed(s){', full budget' if full else ''}: "
             f"{', '.join(f'{k}={v}' for k, v in params.items())}")

    started = start_ray(cfg, address)
    try:
        teacher = teacher_metrics_task(runs[0][0])  # the full budget may measure more (all nine GLUE tasks)
        per_seed, failed = run_seeds(cfg, teacher, runs)
    finally:
        if started:
            ray.shutdown()
    if not per_seed:
        raise RuntimeError(f"every seed of the rerun failed: {failed}")

    summary = summarise_seeds(per_seed)
    result = {"rerun_of": trial.trial_id, "pick": pick, "full": full, "params": params, "seeds": seeds,
              "failed_seeds": failed, "original": {m: trial.metrics.get(m) for m in summary},
              "summary": summary, "per_seed": {str(k): per_seed[k] for k in sorted(per_seed)},
              "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = Path(study.directory) / folder.RERUNS / f"{label}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    tags = {"rerun_of": trial.trial_id, tracking.ROLE: "rerun", "pick": pick, "full": str(full).lower(),
            "seeds": str(seeds)}
    result["mlflow_run_id"] = log_seed_run(study, result, out, tags, f"rerun-{label}")
    log.info(f"rerun written to {out}")
    table = rerun_table(result, shown_metrics(cfg, set(summary)), f"{study.name}: rerun of {trial.trial_id}")
    table_console().print(table)
    return result


def log_seed_run(study: Study, result: dict, out: Path, tags: dict[str, str], name: str) -> str:
    """One MLflow run under the study's parent for a trial run again with several seeds: its params, the mean per
    metric (comparable with the trial's own), `<metric>/std|ci_low|ci_high`, and `out` as an artifact."""
    client = MlflowClient(study.record["tracking_uri"])
    tags = {"mlflow.parentRunId": study.record["parent_run_id"], **tags}
    run_id = client.create_run(study.record["experiment_id"], tags=tags, run_name=name).info.run_id
    tracking.log_params(client, run_id, result["params"])
    flat = {}
    for metric, s in result["summary"].items():
        flat[metric] = s["mean"]
        flat.update({f"{metric}/{k}": s[k] for k in ("std", "ci_low", "ci_high")})
    tracking.log_metrics(client, run_id, flat)
    client.log_artifact(run_id, str(out))
    tracking.end_run(client, run_id, "FINISHED" if not result["failed_seeds"] else "FAILED",
                     json.dumps(result["failed_seeds"]) if result["failed_seeds"] else None)
    return run_id


def rerun_table(result: dict, metrics: list[str], title: str) -> Table:
    table = Table(title=title, caption=f"{len(result['per_seed'])} of {result['seeds']} seed(s) finished"
                                       f"{'; full budget' if result['full'] else ''}; 95% Student-t interval")
    for name, justify in (("metric", "left"), ("trial", "right"), ("mean ± std", "right"), ("95% interval", "right")):
        table.add_column(name, justify=justify)
    for m in metrics:
        s, original = result["summary"][m], result["original"].get(m)
        table.add_row(m, "-" if original is None else f"{original:.4f}", f"{s['mean']:.4f} ± {s['std']:.4f}",
                      f"[{s['ci_low']:.4f}, {s['ci_high']:.4f}]")
    return table
