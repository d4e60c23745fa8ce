"""`kdstudy rerun`: a chosen point of a study again, with several seeds and, with --full, the YAML's full budget.

    kdstudy rerun runs/smoke [--pick recommended] --seeds 3 [--full]
    kdstudy rerun runs/smoke --pick min:bias/amplification | max:world/score | trial:<trial id>

Seed k sets distill.seed and the evaluation seeds (eval.world.seed, eval.glue.seed, bias.seed) to the study's seed
+ k, so seed 0 of a rerun without --full is the trial itself. Seeds run as parallel Ray tasks, as many at once as the
cluster has resources for; each is a trial's distillation (Ray Train) and evaluation, the same code. The result is
one MLflow run under the study's parent run, tagged rerun_of=<trial id>: mean, std and a 95% interval per metric
beside the original trial's value, also printed and written to <study dir>/reruns/<trial id>[-full].json. A rerun
that is interrupted continues where it stopped when run again (its Train runs keep their names).
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from pathlib import Path

import ray
from mlflow.exceptions import MlflowException
from rich.table import Table

from analysis.pick import RECOMMENDED_PICK, pick_trial
from analysis.report import table_console
from analysis.runs import StudyRecord, Trial, read_study
from study.cluster.capacity import Capacity, trials_at_once
from study.cluster.start import on_device, start_ray, teacher_metrics_task
from study.config import StudyConfig
from study.record import folder, tracking
from study.record.checkpoint import fetch_student
from study.reruns.seeds import log_seed_run, run_seeds, seed_config, seed_result, shown_metrics, write_result
from study.runtime import error_line, libraries_to_file
from study.student import registry

log = logging.getLogger(__name__)


def rerun(study_dir: str | Path, pick: str, seeds: int | None = None, full: bool = False,
          address: str | None = None, device: str = "auto", quiet: bool = False) -> dict:
    """Rerun the picked trial, its workers on GPUs or not as `device` (auto, cpu, cuda) says
    (study.cluster.start.on_device); returns what was written to reruns/<trial id>[-full].json. `quiet`: the
    libraries' and the Ray workers' lines in the study's logs/ (driver.log, each seed run's log), not on the screen."""
    record = read_study(study_dir)
    trial = pick_trial(record, pick)
    params = json.loads(trial.tags[tracking.PARAMS_JSON])
    cfg = folder.resolve(record.config, record.directory)
    seeds = seeds or cfg.rerun.seeds
    label = folder.rerun_label(trial.trial_id, full)
    runs = {k: (params, k, folder.seed_run("rerun", label, k)) for k in range(seeds)}
    log.info(f"rerun of trial {trial.trial_id} ({pick}) with {seeds} seed(s){', full budget' if full else ''}: "
             f"{', '.join(f'{k}={v}' for k, v in params.items())}")

    with libraries_to_file(folder.driver_log(record.directory)) if quiet else contextlib.nullcontext():
        per_seed, failed = run_on_ray(cfg, params, runs, full, address, device, quiet)
        if not per_seed:
            raise RuntimeError(f"every seed of the rerun failed: {failed}")
        result = seed_result(params, per_seed, failed, seeds, rerun_of=trial.trial_id, pick=pick, full=full)
        result["original"] = {m: trial.metrics.get(m) for m in result["summary"]}
        out = write_result(folder.rerun_result(record.directory, trial.trial_id, full), result)
        tags = {tracking.RERUN_OF: trial.trial_id, tracking.ROLE: "rerun", "pick": pick, "full": str(full).lower(),
                tracking.SEEDS: str(seeds)}
        result["mlflow_run_id"] = log_seed_run(record, result, out, tags, f"rerun-{label}")
        write_result(out, result)  # with its run, which `kdstudy export` names on the card
        log.info(f"rerun written to {out}")
        try:
            register_rerun(record, trial, pick, result)
        except MlflowException as err:  # a store without a registry: the rerun's numbers are kept all the same
            log.warning(f"the rerun's student was not registered in MLflow ({error_line(err)})")
    table = rerun_table(result, shown_metrics(cfg, set(result["summary"])), f"{record.name}: rerun of {trial.trial_id}")
    table_console().print(table)
    return result


def run_on_ray(cfg: StudyConfig, params: dict, runs: dict, full: bool, address: str | None, device: str,
               quiet: bool) -> tuple[dict, dict]:
    """The seeds on Ray, started or joined, on the device chosen: as many at a time as it holds, after the teacher's
    measurement."""
    started = start_ray(cfg, address, log_to_driver=not quiet)
    try:
        cfg = on_device(cfg, device, ray.cluster_resources().get("GPU", 0))
        at_once = trials_at_once(cfg.search, Capacity.of_cluster())  # before the teacher: one that cannot run says so
        # the full budget may measure more (all nine GLUE tasks)
        teacher = teacher_metrics_task(seed_config(cfg, params, 0, full))
        return run_seeds(cfg, teacher, runs, at_once, full)
    finally:
        if started:
            ray.shutdown()


def register_rerun(record: StudyRecord, trial: Trial, pick: str, result: dict) -> str | None:
    """The rerun's seed 0 student (or its first seed that finished) in the study's Model Registry, on the rerun's
    run, tagged with the trial, the pick and the seeds' summary; the RECOMMENDED alias when `pick` is the study's
    recommended point. Returns the version, None when the student's checkpoint is not reachable."""
    seed = min(result["per_seed"], key=int)
    uri = result["per_seed"][seed].get(tracking.STUDENT_URI)
    with tempfile.TemporaryDirectory(prefix="kdstudy-rerun-") as work:
        student = fetch_student(uri, Path(work)) if uri else None
        if student is None:
            log.warning(f"the rerun's seed {seed} student is not at {uri}: not registered")
            return None
        seeds = registry.seeds_text(result, record.metrics)
        alias = registry.RECOMMENDED if pick == RECOMMENDED_PICK else None
        version = registry.register_student(record.client, record.name, student, f"{uri}/{folder.STUDENT}",
                                            result["mlflow_run_id"],
                                            registry.version_tags(trial.trial_id, pick, seeds), alias)
    log.info(f"seed {seed}'s student registered as MLflow model {record.name} version {version}"
             + (f" (alias {alias})" if alias else ""))
    return version


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
