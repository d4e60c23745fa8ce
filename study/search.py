"""A study: Ray Tune + Optuna over the YAML's search space, one trial (study.trial) per sampled config, and the
Pareto front at the end.

    kdstudy run search_spaces/smoke.yaml [--study-dir DIR] [--address auto|ray://host:10001] [--resume]

The flow, each part in its own module: the study folder is created or reopened (study.folder), Ray is started or
joined and the teacher measured (study.cluster), Tune runs the trials that the Optuna sampler proposes (here), the
callbacks record each trial in MLflow and print progress (study.callbacks), the best trials are confirmed with more
seeds (study.confirm, when search.confirm is set), and the fronts are published (study.publish).
"""

from __future__ import annotations

import functools
import logging
import warnings
from pathlib import Path

import optuna
import ray
from mlflow import MlflowClient
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from study import folder, tracking
from study.callbacks import ShowProgress, TrackTrials
from study.cluster import start_ray, teacher_metrics_task
from study.config import ConfigError, ParamSpec, SamplerConfig, StudyConfig
from study.confirm import run_confirm_stage
from study.publish import publish_front
from study.trial import run_trial

log = logging.getLogger(__name__)


# --- the search space and the sampler --------------------------------------------------------------------------


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec]) -> None:
    """Define-by-run space: each parameter in YAML order, a conditional one only when its condition holds.

    Module-level (with its space bound by functools.partial) because Ray pickles it with the searcher."""
    chosen: dict = {}
    for name, spec in space.items():
        if any(k not in chosen or chosen[k] not in values for k, values in spec.condition().items()):
            continue
        if spec.type == "categorical":
            chosen[name] = trial.suggest_categorical(name, spec.choices)
        elif spec.type == "int":
            chosen[name] = trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log,
                                             step=int(spec.step or 1))
        else:
            chosen[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step)


def make_sampler(cfg: SamplerConfig) -> optuna.samplers.BaseSampler:
    if cfg.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=cfg.population_size, seed=cfg.seed)
    if cfg.name == "tpe":  # multi-objective TPE needs the joint (multivariate) model
        return optuna.samplers.TPESampler(multivariate=True, n_startup_trials=cfg.n_startup_trials, seed=cfg.seed)
    if cfg.name == "gp":
        return optuna.samplers.GPSampler(n_startup_trials=cfg.n_startup_trials, seed=cfg.seed)
    return optuna.samplers.RandomSampler(seed=cfg.seed)


def trial_dirname(trial) -> str:
    return f"trial-{trial.trial_id}"


# --- the tuner ---------------------------------------------------------------------------------------------------


def make_searcher(cfg: StudyConfig) -> OptunaSearch:
    """Ray's Optuna searcher over the study's Optuna study in optuna.db. The study is created here first, with its
    objectives' directions and names, so that optuna-dashboard labels its axes with kdstudy's metric names;
    OptunaSearch loads it (load_if_exists)."""
    search = cfg.search
    metrics, modes = [o.metric for o in search.objectives], [o.mode for o in search.objectives]
    storage = folder.optuna_storage(Path(cfg.study_dir))
    named = optuna.create_study(storage=storage, study_name=cfg.name, load_if_exists=True,
                                directions=["minimize" if m == "min" else "maximize" for m in modes])
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and what the dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        named.set_metric_names(metrics)
    return OptunaSearch(
        space=functools.partial(suggest, space=dict(search.space)), metric=metrics, mode=modes,
        points_to_evaluate=[a.params for a in search.anchors] or None, sampler=make_sampler(search.sampler),
        study_name=cfg.name, storage=storage)


def make_tuner(cfg: StudyConfig, record: dict, teacher: dict) -> tune.Tuner:
    search = cfg.search
    return tune.Tuner(
        _trainable(cfg, teacher),
        tune_config=tune.TuneConfig(search_alg=make_searcher(cfg), num_samples=search.num_samples,
                                    max_concurrent_trials=search.max_concurrent_trials,
                                    trial_dirname_creator=trial_dirname,
                                    reuse_actors=True),  # a trial's process serves the next: no start-up each time
        run_config=tune.RunConfig(name=folder.TUNE, storage_path=search.storage_path, verbose=0,
                                  callbacks=_callbacks(cfg, record),
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )


def _trainable(cfg: StudyConfig, teacher: dict):
    trainable = tune.with_parameters(run_trial, study=cfg.model_dump(mode="json"), teacher=teacher)
    return tune.with_resources(trainable, {"cpu": cfg.search.scaling.trial_cpus})


def _callbacks(cfg: StudyConfig, record: dict) -> list:
    objectives = [o.model_dump() for o in cfg.search.objectives]
    anchors = [a.model_dump() for a in cfg.search.anchors]
    return [TrackTrials(record, anchors, cfg.tracking.log_models), ShowProgress(objectives, cfg.search.num_samples)]


# --- the study -------------------------------------------------------------------------------------------------


def run_study(cfg: StudyConfig, study_dir: str | Path | None = None, address: str | None = None,
              resume: bool = False):
    """Run (or resume) the study to the end; returns its Pareto front (analysis.report.Front)."""
    if cfg.search is None:
        raise ConfigError(f"{cfg.name}: no search section: `kdstudy run` needs search.space and search.objectives")
    cfg = folder.resolve(cfg, study_dir)
    directory = Path(cfg.study_dir)
    folder.check_startable(directory, resume)
    # A trial restarted on resume that had finished reports again; Optuna has its values already and says so.
    logging.getLogger("ray.tune.search.optuna.optuna_search").setLevel(logging.ERROR)
    started = start_ray(cfg, address)
    try:
        if resume:
            cfg, teacher = folder.reopen(cfg)
            state = folder.tune_state(cfg)
            if not tune.Tuner.can_restore(state):
                raise ConfigError(f"{directory}: the study stopped before its first trial started ({state} holds no "
                                  f"Tune state); delete the folder and run it afresh")
            tuner = tune.Tuner.restore(state, trainable=_trainable(cfg, teacher), resume_unfinished=True)
            log.info(folder.mark_resumed(directory))
        else:
            # The teacher first: a missing model or data file stops the study before it writes anything.
            teacher = teacher_metrics_task(cfg)
            record = folder.create(cfg, teacher)
            tuner = make_tuner(cfg, record, teacher)
            log.info(f"study {cfg.name}: {cfg.search.num_samples} trials in {directory}, "
                     f"tracking {record['tracking_uri']}")
        tuner.fit()
        return finish_study(cfg, teacher)
    finally:
        if started:
            ray.shutdown()


def finish_study(cfg: StudyConfig, teacher: dict[str, float]):
    """After the last trial: close what never came back (MLflow runs and Optuna trials of trials lost to an
    interruption), run the confirm stage if the study has one, then publish the fronts."""
    directory = Path(cfg.study_dir)
    record = folder.read_record(directory)
    client = MlflowClient(record["tracking_uri"])
    lost = tracking.close_unfinished(client, record["experiment_id"], record["parent_run_id"])
    optuna_study = optuna.load_study(study_name=record["name"], storage=folder.optuna_storage(directory))
    for ot_trial in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        optuna_study.tell(ot_trial.number, state=optuna.trial.TrialState.FAIL)  # its Tune trial never came back
    if lost:
        log.info(f"closed {len(lost)} run(s) of trials lost when the study was interrupted: {lost}")
    if cfg.search.confirm is not None:
        run_confirm_stage(cfg, teacher)
    return publish_front(directory)
