"""A study: Ray Tune + Optuna over the YAML's search space, one trial (study.search.trial) per sampled config, and the
Pareto front at the end.

    kdstudy run search_spaces/smoke.yaml [--study-dir DIR] [--address auto|ray://host:10001] [--resume]

The flow, each part in its own module: the study folder is created or reopened (study.record.folder), Ray is
started or joined and the teacher measured (study.cluster.start), Tune runs the trials that the Optuna sampler
(study.search.space) proposes (here), the callbacks record each trial in MLflow and print progress
(study.search.callbacks), the best trials race on more seeds (study.reruns.confirm, when search.confirm is
set), and the fronts are published (study.publish).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
from pathlib import Path

import optuna
import ray
from mlflow.exceptions import MlflowException
from ray import tune

from study.cluster.capacity import Capacity, demand_text, trials_at_once
from study.cluster.start import start_ray, teacher_metrics_task
from study.config import ConfigError, StudyConfig
from study.errors import StudyInterrupted, TrackingUnavailable
from study.publish import publish_front
from study.record import folder, mirror, tracking
from study.record.optuna_store import optuna_storage
from study.record.outbox import Outbox
from study.record.tracking import failing_fast
from study.reruns.confirm import run_confirm_stage
from study.runtime import environment, error_line, libraries_to_file
from study.search.callbacks import ShowProgress, TrackTrials
from study.search.space import make_searcher, requeue_lost_points
from study.search.trial import run_trial
from study.search.watch import StudyView, showing

log = logging.getLogger(__name__)
# At the study's end, how long a tracking server that is down gets to come back (a restart takes seconds) before
# the driver stops and says to --resume once it is.
FINISH_WAIT_S = 120.0


# --- the tuner ---------------------------------------------------------------------------------------------------


def trial_dirname(trial) -> str:
    return f"trial-{trial.trial_id}"


def make_tuner(cfg: StudyConfig, meta: dict | None, teacher: dict, storage, at_once: int,
               restore: str | None = None) -> tune.Tuner:
    """The study's Tuner: a new one over the Optuna `storage` running `at_once` trials at a time, or the one restored
    from Tune's state at `restore`."""
    search = cfg.search
    # A trial that stops prints one line (callbacks.ShowProgress) and keeps its traceback in its error file and its
    # MLflow run; Tune would print the whole traceback too, even for a trial it is about to retry.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    # Tune's new output engine prints its "Configuration for experiment" box and a TensorBoard hint whatever the
    # verbosity (ray/tune/tune.py calls experiment_started unconditionally); the old one prints nothing at verbose=0.
    # Set here, after ray.init: the trial processes keep Ray's default.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    trainable = _trainable(cfg, teacher)
    if restore is not None:  # its searcher and callbacks come back with Tune's state
        return tune.Tuner.restore(restore, trainable=trainable, resume_unfinished=True)
    objectives = [{"metric": o.key, "mode": o.mode} for o in search.objectives]  # as the trials report them
    callbacks = [TrackTrials(meta, [a.model_dump() for a in search.anchors], cfg.tracking.log_models, cfg.study_dir),
                 ShowProgress(objectives, search.num_samples)]
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=make_searcher(cfg, storage), num_samples=search.num_samples,
                                    max_concurrent_trials=at_once,
                                    trial_dirname_creator=trial_dirname,
                                    reuse_actors=True),  # a trial's process serves the next: no start-up each time
        run_config=tune.RunConfig(name=folder.TUNE, storage_path=search.storage_path, verbose=0,
                                  callbacks=callbacks,
                                  # a trial whose process was lost (its node gone) starts again and continues
                                  # its Train run from the last checkpoint (study.cluster.train_run.failed: one
                                  # that failed by itself fails again at once)
                                  failure_config=tune.FailureConfig(max_failures=search.max_failures)),
    )


def _trainable(cfg: StudyConfig, teacher: dict):
    trainable = tune.with_parameters(run_trial, cfg=cfg, teacher=teacher)  # the config itself, pickled by Ray
    scaling = cfg.search.scaling
    return tune.with_resources(trainable, {"cpu": scaling.trial_cpus, **scaling.trial_resources})


# --- the study -------------------------------------------------------------------------------------------------


def run_study(cfg: StudyConfig, study_dir: str | Path | None = None, address: str | None = None,
              resume: bool = False, source: str | None = None, live: bool = False, quiet: bool = False):
    """Run (or resume) the study to the end; returns its Pareto front (analysis.report.Front). Ctrl-C stops it with
    the folder resumable (StudyInterrupted). `source` (resume only): the storage whose record rebuilds the folder
    first (study.record.mirror), for a study whose machine is gone. `quiet`: the libraries' lines in logs/driver.log
    and the workers' in each trial's log, not on the screen (study.search.watch); `live` (with quiet): the trials in
    a live view."""
    if cfg.search is None:
        raise ConfigError(f"{cfg.name}: no search section: `kdstudy run` needs search.space and search.objectives")
    cfg = folder.resolve(cfg, study_dir)
    directory = Path(cfg.study_dir)
    if source is not None:
        if not resume:
            raise ConfigError("--from rebuilds an interrupted study's folder: add --resume")
        mirror.pull_record(source, directory)
        log.info(f"study folder {directory} rebuilt from {mirror.record_uri(source)}")
    with folder.hold(directory), mirror.keeping(directory, cfg.search.storage_path):
        if resume:  # everything checked before Ray starts: a broken folder is one line at once
            cfg, teacher = folder.reopen(cfg)
            state = folder.tune_state(cfg)
            if not tune.Tuner.can_restore(state):
                raise ConfigError(f"{directory}: the study stopped before its first trial started ({state} holds no "
                                  f"Tune state); delete the folder and run it afresh")
        else:
            folder.check_startable(directory, resume=False)
            teacher = state = None
        # A trial restarted on resume that had finished reports again; Optuna has its values already and says so.
        logging.getLogger("ray.tune.search.optuna.optuna_search").setLevel(logging.ERROR)
        with libraries_to_file(folder.driver_log(directory)) if quiet else contextlib.nullcontext():
            return _run_on_ray(cfg, address, resume, teacher, state, live=live and quiet, quiet=quiet)


def _run_on_ray(cfg: StudyConfig, address: str | None, resume: bool, teacher: dict | None, state: str | None,
                live: bool, quiet: bool):
    """The study's part on Ray: Ray started or joined, the trials at a time it holds, the teacher measured (a new
    study) and the folder created, the trials, then the confirm stage and the front."""
    directory = Path(cfg.study_dir)
    started = start_ray(cfg, address, log_to_driver=not quiet)
    try:
        cap = Capacity.of_cluster()
        at_once = trials_at_once(cfg.search, cap)  # before the teacher: a study that cannot run says so at once
        if not resume:  # the teacher first: a missing model or data file stops the study before it writes anything
            teacher = teacher_metrics_task(cfg)
        meta = None if resume else folder.create(cfg, teacher)
        if resume and cfg.search.sampler.name == "grid":
            known = [t.config for t in tune.ExperimentAnalysis(state).trials]
            lost = requeue_lost_points(cfg, optuna_storage(directory), known)
            if lost:
                log.info(f"{len(lost)} grid cell(s) handed out just before the interruption, which Tune had not "
                         f"saved, will run now: {lost}")
        tuner = make_tuner(cfg, meta, teacher, optuna_storage(directory), at_once, restore=state)
        if resume:
            folder.mark_resumed(directory)
        else:
            log.info(f"study {cfg.name}: {cfg.search.num_samples} trials in {directory}, {at_once} at a time, "
                     f"tracking {meta['tracking_uri']}")
        if address:  # a cluster's resources decide how many trials it holds: say what was counted
            log.info(f"the cluster has {cap.describe()}; a trial holds {demand_text(cfg.search.scaling)}")
        search = cfg.search
        view = StudyView(cfg.name, str(directory), [o.model_dump() for o in search.objectives],
                         search.num_samples, at_once) if live else None
        with stop_on_interrupt() as interrupted, showing(view):
            tuner.fit()
        if interrupted:
            raise StudyInterrupted(f"study {cfg.name} stopped; {directory} is kept and can be resumed")
        return finish_study(cfg, teacher, at_once)
    finally:
        if started:
            ray.shutdown()


@contextlib.contextmanager
def stop_on_interrupt():
    """Ctrl-C while Tune runs the trials: Tune stops them and saves its state one last time, then fit() returns;
    the list yielded is non-empty if that happened. A second Ctrl-C stops at once (KeyboardInterrupt).

    Tune's own SIGINT handler does the same but lets fit() return as if the study were done, and advises its Python
    API for resuming; this one asks Tune to stop through SIGUSR1 (Tune's other stop signal) and remembers why."""
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    interrupted: list[bool] = []

    def on_sigint(signum, frame):
        if interrupted:
            raise KeyboardInterrupt
        interrupted.append(True)
        log.warning("stopping the study: its running trials end and its state is saved (Ctrl-C again: at once)")
        logging.getLogger("ray.tune.tune").setLevel(logging.CRITICAL)  # its advice names Tune's API, not kdstudy's
        os.kill(os.getpid(), signal.SIGUSR1)

    before = signal.signal(signal.SIGINT, on_sigint)
    try:
        with environment({"TUNE_DISABLE_SIGINT_HANDLER": "1"}):
            yield interrupted
    finally:
        signal.signal(signal.SIGINT, before)


def finish_study(cfg: StudyConfig, teacher: dict[str, float], at_once: int):
    """After the last trial: log what waits in the outbox, close what never came back (MLflow runs and Optuna trials
    of trials lost to an interruption), run the confirm stage if the study has one, then publish the fronts. With
    the tracking server still down, the trials' results stay in Ray's and Optuna's records and the outbox, and
    TrackingUnavailable says to resume later."""
    directory = Path(cfg.study_dir)
    meta = folder.read_meta(directory)
    optuna_study = optuna.load_study(study_name=meta["name"], storage=optuna_storage(directory))
    for ot_trial in optuna_study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        optuna_study.tell(ot_trial.number, state=optuna.trial.TrialState.FAIL)  # its Tune trial never came back
    box = Outbox(directory, meta, folder.read_config(directory).tracking.log_models)
    if not box.flush_within(FINISH_WAIT_S):
        raise TrackingUnavailable(f"the trials are done, but tracking at {meta['tracking_uri']} is unreachable: "
                                  f"{len(box.entries())} trial(s) wait in {box.path}; once it is back, --resume "
                                  f"logs them and publishes the front")
    try:
        with failing_fast():
            client = tracking.connect(meta["tracking_uri"])
            lost = tracking.close_unfinished(client, meta["experiment_id"], meta["parent_run_id"])
            if lost:
                log.info(f"closed {len(lost)} run(s) of trials lost when the study was interrupted: {lost}")
            if cfg.search.confirm is not None:
                run_confirm_stage(cfg, teacher, at_once)
            return publish_front(directory)
    except MlflowException as err:
        raise TrackingUnavailable(f"the trials are done and logged, but publishing the front to "
                                  f"{meta['tracking_uri']} failed ({error_line(err)}); --resume publishes it "
                                  f"once tracking is back") from None
