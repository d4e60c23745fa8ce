"""A study: Ray Tune + Optuna over the YAML's search space, one trial (study.trial) per sampled config, MLflow
tracking of every trial, and the Pareto front at the end.

    kdstudy run search_spaces/smoke.yaml [--study-dir DIR] [--address auto|ray://host:10001] [--resume]

Everything the study writes lives in its folder, so it can be resumed, copied or deleted as a unit:
    study.yaml   the resolved config and git commit        study.json   tracking URI, experiment, parent run, storage
    optuna.db    the Optuna study (RDB storage)            mlflow.db    MLflow's store (unless tracking.uri is a server)
    ray/         Tune's experiment and each trial's Train checkpoints (search.storage_path moves it, e.g. to S3)
    mlartifacts/ students, figures                         pareto.json, pareto.png, pareto_parallel.png
"""

from __future__ import annotations

import functools
import io
import json
import logging
import math
import os
import time
from pathlib import Path

import optuna
import ray
import yaml
from mlflow import MlflowClient
from ray import tune
from ray.tune.search.optuna import OptunaSearch
from rich.console import Console

from study import tracking
from study.config import ConfigError, SamplerConfig, StudyConfig
from study.pipeline import cached_teacher_metrics, git_commit
from study.trial import measure_teacher, run_trial

OBJECT_STORE_BYTES = 256 * 1024**2  # a local cluster moves configs and metrics, not data: keep the store small


# --- the search space and the sampler --------------------------------------------------------------------------


def suggest(trial: optuna.Trial, space: dict[str, dict]) -> None:
    """Define-by-run space: each parameter in YAML order, a conditional one only when its condition holds.

    Module-level (with its space bound by functools.partial) because Ray pickles it with the searcher."""
    chosen: dict = {}
    for name, spec in space.items():
        when = {k: v if isinstance(v, list) else [v] for k, v in spec.get("when", {}).items()}
        if any(k not in chosen or chosen[k] not in values for k, values in when.items()):
            continue
        if spec["type"] == "categorical":
            chosen[name] = trial.suggest_categorical(name, spec["choices"])
        elif spec["type"] == "int":
            chosen[name] = trial.suggest_int(name, int(spec["low"]), int(spec["high"]), log=spec["log"],
                                             step=int(spec["step"] or 1))
        else:
            chosen[name] = trial.suggest_float(name, spec["low"], spec["high"], log=spec["log"], step=spec["step"])


def make_sampler(cfg: SamplerConfig) -> optuna.samplers.BaseSampler:
    if cfg.name == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=cfg.population_size, seed=cfg.seed)
    if cfg.name == "tpe":  # multi-objective TPE needs the joint (multivariate) model
        return optuna.samplers.TPESampler(multivariate=True, n_startup_trials=cfg.n_startup_trials, seed=cfg.seed)
    if cfg.name == "gp":
        return optuna.samplers.GPSampler(n_startup_trials=cfg.n_startup_trials, seed=cfg.seed)
    return optuna.samplers.RandomSampler(seed=cfg.seed)


def optuna_storage(study_dir: Path) -> optuna.storages.RDBStorage:
    return optuna.storages.RDBStorage(f"sqlite:///{(study_dir / 'optuna.db').resolve()}")


def anchor_of(params: dict, anchors: list[dict]) -> str | None:
    """The name of the anchor whose params this trial carries, if any."""
    return next((a["name"] for a in anchors if all(params.get(k) == v for k, v in a["params"].items())), None)


# --- what the driver sees while trials run ---------------------------------------------------------------------


def failure_reason(trial) -> str:
    """The first line of a failed trial's own exception (Ray wraps it in a task error with the traceback)."""
    error = trial.get_pickled_error()
    cause = getattr(error, "cause", None) or error
    if cause is not None:
        lines = [line for line in str(cause).strip().splitlines() if line.strip()]
        return f"{type(cause).__name__}: {lines[0]}" if lines else type(cause).__name__
    path = trial.error_file
    lines = Path(path).read_text().strip().splitlines() if path and Path(path).is_file() else []
    return lines[-1] if lines else "unknown error"


class TrackTrials(tune.Callback):
    """One MLflow child run per trial under the study's parent run: params, every metric, student, status."""

    def __init__(self, record: dict, anchors: list[dict], log_models: bool):
        self.record, self.anchors, self.log_models = record, anchors, log_models
        self._client: MlflowClient | None = None
        self._runs: dict[str, tuple[str, bool]] = {}  # trial id -> (run id, finished before this study process)

    def __getstate__(self):  # Tune saves its callbacks with the experiment; a client does not pickle
        return {**self.__dict__, "_client": None}

    @property
    def client(self) -> MlflowClient:
        if self._client is None:
            self._client = MlflowClient(self.record["tracking_uri"])
        return self._client

    def _run(self, trial) -> tuple[str, bool]:
        if trial.trial_id not in self._runs:
            self._runs[trial.trial_id] = tracking.start_trial(
                self.client, self.record["experiment_id"], self.record["parent_run_id"], trial.trial_id,
                trial.config, anchor_of(trial.config, self.anchors), trial.experiment_tag.split("_")[0])
        return self._runs[trial.trial_id]

    def on_trial_start(self, iteration, trials, trial, **info):
        self._runs.pop(trial.trial_id, None)  # (re)started: find or create its run, and mark it running
        self._run(trial)

    def on_trial_complete(self, iteration, trials, trial, **info):
        (run_id, logged), result = self._run(trial), trial.last_result
        if logged:  # finished before an interruption the study state had not yet recorded: logged already
            return
        tracking.log_metrics(self.client, run_id, {**result, "perf/trial_seconds": result.get("time_total_s", 0.0)},
                             tags={"student_uri": result.get("student_uri", "")})
        student = Path(str(result.get("student_uri", ""))) / "student"
        if self.log_models and student.is_dir():  # a local checkpoint; remote storage keeps only the URI tag
            self.client.log_artifacts(run_id, str(student), "student")
        tracking.end_run(self.client, run_id, "FINISHED")

    def on_trial_error(self, iteration, trials, trial, **info):
        tracking.end_run(self.client, self._run(trial)[0], "FAILED", failure_reason(trial))


class ShowProgress(tune.Callback):
    """A line per trial event: counts of trials done/running/failed, and the best value so far per objective."""

    def __init__(self, objectives: list[dict], total: int, console: Console):
        self.objectives, self.total, self.console = objectives, total, console
        self.best: dict[str, tuple[float, str]] = {}
        self.start = time.time()

    def __getstate__(self):
        return {**self.__dict__, "console": None}

    def setup(self, **info):
        self.start = time.time()  # again on resume

    def _say(self, trials, what: str, ending=None, failing=False) -> None:
        """`ending`: the trial this event ends (Tune updates its status after the callbacks)."""
        status = {t.trial_id: t.status for t in trials}
        if ending is not None:
            status[ending.trial_id] = "ERROR" if failing else "TERMINATED"
        done = sum(s == "TERMINATED" for s in status.values())
        failed = sum(s == "ERROR" for s in status.values())
        running = sum(s == "RUNNING" for s in status.values())
        best = ", ".join(f"{o['metric']} {self.best[o['metric']][0]:.4g} ({self.best[o['metric']][1]})"
                         for o in self.objectives if o["metric"] in self.best)
        line = (f"[{time.time() - self.start:5.0f}s] {what} | {done}/{self.total} done, {running} running, "
                f"{failed} failed" + (f" | best {best}" if best else ""))
        (self.console or Console(stderr=True, soft_wrap=True)).print(line, highlight=False)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._say(trials, f"trial {trial.trial_id} started: {_params_text(trial.config)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result
        for o in self.objectives:
            value = result.get(o["metric"])
            old = self.best.get(o["metric"])
            if value is not None and (old is None or (value < old[0] if o["mode"] == "min" else value > old[0])):
                self.best[o["metric"]] = (value, trial.trial_id)
        got = ", ".join(f"{o['metric']} {result[o['metric']]:.4g}" for o in self.objectives if o["metric"] in result)
        self._say(trials, f"trial {trial.trial_id} finished: {got}", ending=trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._say(trials, f"trial {trial.trial_id} FAILED: {failure_reason(trial)}", ending=trial, failing=True)


def _params_text(params: dict) -> str:
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in params.items())


def trial_dirname(trial) -> str:
    return f"trial-{trial.trial_id}"


# --- the study -------------------------------------------------------------------------------------------------


def resolve(cfg: StudyConfig, study_dir: str | Path | None) -> StudyConfig:
    """The config with an absolute study folder and Ray storage path, as every trial must see them."""
    directory = Path(study_dir or cfg.study_dir or Path("runs") / cfg.name).expanduser().resolve()
    storage = cfg.search.storage_path or str(directory / "ray")
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return cfg.model_copy(update={"study_dir": str(directory),
                                  "search": cfg.search.model_copy(update={"storage_path": storage})})


def start_ray(cfg: StudyConfig, address: str | None) -> bool:
    """Join a cluster, or start a local one sized for the study; True if this call started Ray."""
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address)
        return True
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster listens on loopback only
    # One machine is not preempted: no watcher actor per Train run (its process start competes with the trials).
    os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    s = cfg.search.scaling
    per_trial = s.trial_cpus + s.num_workers * s.cpus_per_worker
    # Logical CPUs: each trial holds its own process plus its workers.
    cpus = max(os.cpu_count() or 1, math.ceil(per_trial * cfg.search.max_concurrent_trials))
    # The dashboard (on 127.0.0.1) serves the state API that Ray Train's placement-group cleaner polls.
    ray.init(num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=True,
             logging_level="WARNING", log_to_driver=True)
    return True


def _open_study(cfg: StudyConfig, directory: Path, teacher: dict) -> dict:
    """Create the study's record, MLflow experiment and parent run (with the config and the teacher's metrics)."""
    uri = tracking.tracking_uri(cfg.tracking.uri, directory)
    client = MlflowClient(uri)
    experiment_id = tracking.open_experiment(client, cfg.name, directory, uri)
    search = cfg.search
    parent_id = tracking.create_parent(client, experiment_id, cfg.name, directory, {
        "objectives": ", ".join(f"{o.metric} ({o.mode})" for o in search.objectives), "sampler": search.sampler.name,
        "num_samples": search.num_samples, "space": ", ".join(search.space), "study_dir": directory})
    tracking.log_metrics(client, parent_id, {f"teacher/{k}": v for k, v in teacher.items()})
    client.log_artifact(parent_id, str(directory / "study.yaml"))
    record = {"name": cfg.name, "tracking_uri": uri, "experiment_id": experiment_id, "parent_run_id": parent_id,
              "storage_path": search.storage_path, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (directory / "study.json").write_text(json.dumps(record, indent=2))
    return record


def teacher_metrics_task(cfg: StudyConfig) -> dict[str, float]:
    """The teacher's metrics measured in a Ray task with a worker's resources; a usage error inside it (a
    missing model or data file) comes out as itself, one line, not as Ray's traceback."""
    cached = cached_teacher_metrics(cfg)
    if cached is not None:  # measured before on this machine: no worker process to start just to read a file
        return cached[0]
    s = cfg.search.scaling
    task = measure_teacher.options(num_cpus=s.cpus_per_worker, num_gpus=s.worker_resources.get("GPU", 0))
    try:
        return ray.get(task.remote(cfg.model_dump(mode="json"), max(1, int(s.cpus_per_worker))))
    except ray.exceptions.RayTaskError as err:
        cause = getattr(err, "cause", None)
        raise (cause if isinstance(cause, Exception) else err) from None


def make_tuner(cfg: StudyConfig, record: dict, teacher: dict, console: Console) -> tune.Tuner:
    search = cfg.search
    searcher = OptunaSearch(
        space=functools.partial(suggest, space={k: v.model_dump() for k, v in search.space.items()}),
        metric=[o.metric for o in search.objectives], mode=[o.mode for o in search.objectives],
        points_to_evaluate=[a.params for a in search.anchors] or None, sampler=make_sampler(search.sampler),
        study_name=cfg.name, storage=optuna_storage(Path(cfg.study_dir)))
    return tune.Tuner(
        _trainable(cfg, teacher),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=search.num_samples,
                                    max_concurrent_trials=search.max_concurrent_trials,
                                    trial_dirname_creator=trial_dirname,
                                    reuse_actors=True),  # a trial's process serves the next: no start-up each time
        run_config=tune.RunConfig(name="tune", storage_path=search.storage_path, verbose=0,
                                  callbacks=_callbacks(cfg, record, console),
                                  failure_config=tune.FailureConfig(max_failures=0)),
    )


def _trainable(cfg: StudyConfig, teacher: dict):
    trainable = tune.with_parameters(run_trial, study=cfg.model_dump(mode="json"), teacher=teacher)
    return tune.with_resources(trainable, {"cpu": cfg.search.scaling.trial_cpus})


def _callbacks(cfg: StudyConfig, record: dict, console: Console) -> list:
    objectives = [o.model_dump() for o in cfg.search.objectives]
    anchors = [a.model_dump() for a in cfg.search.anchors]
    return [TrackTrials(record, anchors, cfg.tracking.log_models),
            ShowProgress(objectives, cfg.search.num_samples, console)]


def run_study(cfg: StudyConfig, study_dir: str | Path | None = None, address: str | None = None,
              resume: bool = False, console: Console | None = None):
    """Run (or resume) the study to the end; returns its Pareto front (analysis.report.Front)."""
    console = console or Console(stderr=True, soft_wrap=True)
    if cfg.search is None:
        raise ConfigError(f"{cfg.name}: no search section: `kdstudy run` needs search.space and search.objectives")
    cfg = resolve(cfg, study_dir)
    directory = Path(cfg.study_dir)
    exists = (directory / "study.json").is_file()
    if exists and not resume:
        raise ConfigError(f"{directory} already holds a study: add --resume to continue it, or choose another "
                          f"--study-dir")
    if resume and not exists:
        raise ConfigError(f"{directory}: no study to resume (no study.json)")
    # A trial restarted on resume that had finished reports again; Optuna has its values already and says so.
    logging.getLogger("ray.tune.search.optuna.optuna_search").setLevel(logging.ERROR)
    started = start_ray(cfg, address)
    try:
        if resume:
            cfg = _check_same_study(cfg, directory)
            state = str(Path(cfg.search.storage_path) / "tune")
            if not tune.Tuner.can_restore(state):
                raise ConfigError(f"{directory}: the study stopped before its first trial started ({state} holds no "
                                  f"Tune state); delete the folder and run it afresh")
            teacher = json.loads((directory / "teacher.json").read_text())
            tuner = tune.Tuner.restore(state, trainable=_trainable(cfg, teacher), resume_unfinished=True)
            console.print(_reopen_study(directory))
        else:
            # The teacher first: a missing model or data file stops the study before it writes anything.
            teacher = teacher_metrics_task(cfg)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "teacher.json").write_text(json.dumps(teacher, indent=2, sort_keys=True))
            (directory / "study.yaml").write_text(yaml.safe_dump(
                {**cfg.model_dump(mode="json"), "git_commit": git_commit()}, sort_keys=False))
            record = _open_study(cfg, directory, teacher)
            tuner = make_tuner(cfg, record, teacher, console)
            console.print(f"study {cfg.name}: {cfg.search.num_samples} trials in {directory}, "
                          f"tracking {record['tracking_uri']}")
        tuner.fit()
        return finish_study(directory, console)
    finally:
        if started:
            ray.shutdown()


def _reopen_study(directory: Path) -> str:
    """Mark the parent run running again; say what the resumed study keeps and what it restarts."""
    record = json.loads((directory / "study.json").read_text())
    client = MlflowClient(record["tracking_uri"])
    client.update_run(record["parent_run_id"], status="RUNNING")
    runs = tracking.trial_runs(client, record["experiment_id"], record["parent_run_id"])
    done = sum(r.info.status in ("FINISHED", "FAILED") for r in runs)
    running = [r.data.tags["trial_id"] for r in runs if r.info.status == "RUNNING"]
    return (f"resuming study {record['name']} in {directory}: {done} trial(s) done are kept; "
            f"{len(running)} interrupted ({', '.join(running) or 'none'}) continue from their last checkpoint, "
            f"or from the start if they had none")


def _check_same_study(cfg: StudyConfig, directory: Path) -> StudyConfig:
    """A resumed study keeps the config it started with; a changed YAML is an error, not a silent mix."""
    from analysis.runs import read_config

    saved = read_config(directory)
    if saved.model_dump(exclude={"study_dir"}) != cfg.model_dump(exclude={"study_dir"}):
        raise ConfigError(f"{directory}: the config differs from the one this study started with "
                          f"({directory / 'study.yaml'}); resume with that one")
    return saved


def finish_study(directory: Path, console: Console):
    """After the last trial: close what never came back, tag the front, log the table and figures to the parent run."""
    from analysis.plots import parallel_figure, pareto_figure
    from analysis.report import front_table, summarize, table_console
    from analysis.runs import load_study, read_record

    record = read_record(directory)
    client = MlflowClient(record["tracking_uri"])
    lost = tracking.close_unfinished(client, record["experiment_id"], record["parent_run_id"])
    optuna_study = optuna.load_study(study_name=record["name"], storage=optuna_storage(directory))
    for ot_trial in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        optuna_study.tell(ot_trial.number, state=optuna.trial.TrialState.FAIL)  # its Tune trial never came back
    if lost:
        console.print(f"closed {len(lost)} run(s) of trials lost when the study was interrupted: {lost}")

    study = load_study(directory)
    front = summarize(study)
    on_front = {t.trial_id for t, _ in front.front_trials()}
    knee = front.trials[front.knee].trial_id if front.knee is not None else None
    for t in study.trials:
        client.set_tag(t.run_id, "pareto", str(t.trial_id in on_front).lower())
        client.set_tag(t.run_id, "knee", str(t.trial_id == knee).lower())
    parent = record["parent_run_id"]
    summary = front.to_json()
    (directory / "pareto.json").write_text(json.dumps(summary, indent=2))
    client.log_dict(parent, summary, "pareto.json")
    table = front_table(front, f"{study.name}: Pareto front")
    capture = Console(width=200, record=True, file=io.StringIO())
    capture.print(table)
    client.log_text(parent, capture.export_text(), "pareto.txt")
    if front.trials and len(front.metrics) >= 2:
        figures = {"pareto.png": pareto_figure(front, f"{study.name}: {len(front.trials)} finished trials"),
                   "pareto_parallel.png": parallel_figure(front, list(study.config.search.space),
                                                          f"{study.name}: the front's parameters")}
        for name, figure in figures.items():
            figure.savefig(directory / name, dpi=120)
            client.log_figure(parent, figure, name)
    if front.hypervolume is not None:
        tracking.log_metrics(client, parent, {"study/hypervolume": front.hypervolume,
                                              "study/front_size": float(len(on_front))})
    tracking.end_run(client, parent, "FINISHED")
    table_console().print(table)
    return front
