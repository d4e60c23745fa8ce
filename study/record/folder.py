"""The study folder: everything one study writes lives under one directory, so it can be resumed, copied or deleted
as a unit. This module is the one place that knows its layout (and the layout of the study's storage), creates it,
reopens it and reads it back; the search, `kdstudy rerun` and `analysis` all go through it.

    study.yaml     the resolved config and the git commit it ran at
    study.json     where its parts are (its meta): tracking URI, MLflow experiment and parent run, Ray storage
    teacher.json   the teacher's metrics, measured once before the first trial
    optuna.db      the Optuna study (RDB storage)
    mlflow.db      MLflow's store (unless tracking.uri or $MLFLOW_TRACKING_URI names a server)
    mlartifacts/   MLflow's artifacts: students, figures, tables
    ray/           the study's storage by default (search.storage_path moves it, e.g. to S3; below)
    pareto.json, pareto.png, pareto_parallel.png     the front, written when the study ends
    importance.json, importance.png   what drives each objective (hyperparameter importance), at the end
    effects.json, effects.png         a grid study's effects, at the end
    confirm/       the confirm stage: <trial>.json per raced trial, race.json, runs/<trial>-seed<k>.json per run
    reruns/        `kdstudy rerun`'s results: <trial>.json, <trial>-full.json
    export/        `kdstudy export`'s students: export/<trial>/
    logs/          driver.log (the libraries' lines on the driver) and <train run>.log for each Train run
    driver.lock    while a driver runs the study: its pid, host and command (one driver per study)
    tracking-outbox.json   while the tracking server is down: the runs waiting for it (study.record.outbox)

The study's storage (search.storage_path):

    tune/                              Tune's experiment
    <train run>/                       a Train run: train-<trial> for a trial, <stage>-<label>-seed<k> for a seed run
        checkpoint_*/student/          the student's model dir, in the final checkpoint
        checkpoint_*/evaluation.json   the student's metrics, in the final checkpoint
        result.json                    every metric once the run is evaluated (or its failure)
    record/                            the study record's copy when the storage is elsewhere (study.record.mirror)
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

import yaml

from study.config import ConfigError, StudyConfig
from study.load import parse_config
from study.runtime import error_line, write_snapshot

CONFIG = "study.yaml"
META = "study.json"
TEACHER = "teacher.json"
OPTUNA = "optuna.db"
MLFLOW = "mlflow.db"
ARTIFACTS = "mlartifacts"
RAY = "ray"
PARETO_JSON = "pareto.json"
PARETO_TXT = "pareto.txt"  # logged to MLflow only
PARETO_FIGURE = "pareto.png"
PARALLEL_FIGURE = "pareto_parallel.png"
IMPORTANCE_JSON = "importance.json"
IMPORTANCE_FIGURE = "importance.png"
EFFECTS_JSON = "effects.json"  # a grid study's main effects, interactions and ANOVA (analysis.effects)
EFFECTS_TXT = "effects.txt"  # logged to MLflow only
EFFECTS_FIGURE = "effects.png"
CONFIRM = "confirm"
RACE = "race.json"  # in confirm/
SEED_RUNS = "runs"  # in confirm/
RERUNS = "reruns"
EXPORT = "export"
LOGS = "logs"
DRIVER_LOG = "driver.log"  # in logs/: the libraries' lines on the driver, while the live view shows the study
LOCK = "driver.lock"
OUTBOX = "tracking-outbox.json"
# What a study start writes; a folder holding only these (and no study.json) is a start that did not get that far
OWN = {CONFIG, META, TEACHER, OPTUNA, MLFLOW, ARTIFACTS, RAY, LOCK, PARETO_JSON, PARETO_FIGURE, PARALLEL_FIGURE,
       RERUNS, CONFIRM, IMPORTANCE_JSON, IMPORTANCE_FIGURE, LOGS, EFFECTS_JSON, EFFECTS_FIGURE}

# In the study's storage
TUNE = "tune"
STUDENT = "student"  # in a Train run's final checkpoint
EVALUATION = "evaluation.json"  # in a Train run's final checkpoint
RESULT = "result.json"  # in a Train run's folder
RECORD = "record"

log = logging.getLogger(__name__)
_held: list[Path] = []  # the folder this process's driver holds (hold): where a moved study's record now is


def held() -> Path | None:
    """The study folder the driver in this process holds, None outside a driver. What Tune unpickles with its
    experiment (the Optuna storage, the callbacks) finds its folder here, not at the path it was pickled with, so a
    study folder moved or copied elsewhere resumes."""
    return _held[-1] if _held else None


def resolve(cfg: StudyConfig, study_dir: str | Path | None) -> StudyConfig:
    """The config with an absolute study folder and Ray storage path, as every trial must see them."""
    directory = Path(study_dir or cfg.study_dir or Path("runs") / cfg.name).expanduser().resolve()
    storage = cfg.search.storage_path or str(directory / RAY)
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return cfg.model_copy(update={"study_dir": str(directory),
                                  "search": cfg.search.model_copy(update={"storage_path": storage})})


def portable(cfg: StudyConfig) -> StudyConfig:
    """The resolved config as the record keeps it: no study folder (it is wherever the record is) and a Ray storage
    inside the folder as a path relative to it (read_config puts both back), so that the folder can move."""
    storage = cfg.search.storage_path
    inside = "://" not in storage and Path(storage).is_relative_to(cfg.study_dir)
    relative = str(Path(storage).relative_to(cfg.study_dir)) if inside else storage
    search = cfg.search.model_copy(update={"storage_path": relative})
    return cfg.model_copy(update={"study_dir": None, "search": search})


def local_store(directory: str | Path) -> str:
    """The tracking URI of the MLflow store in the study folder."""
    return f"sqlite:///{(Path(directory) / MLFLOW).resolve()}"


def tracking_uri(configured: str | None, study_dir: Path) -> str:
    """The YAML's tracking.uri, else $MLFLOW_TRACKING_URI, else a SQLite store in the study folder (absolute URI)."""
    return configured or os.environ.get("MLFLOW_TRACKING_URI") or local_store(study_dir)


def tune_state(cfg: StudyConfig) -> str:
    """Where Tune keeps the study's experiment state: under the Ray storage path (a local path or a URI)."""
    return f"{cfg.search.storage_path.rstrip('/')}/{TUNE}"


def train_run(trial_id: str) -> str:
    """The name of a trial's Train run: its folder in the study's storage and its log's name."""
    return f"train-{trial_id}"


def seed_run(stage: str, label: str, seed: int) -> str:
    """The name of a seed run's Train run (`stage` confirm or rerun; `label` what it runs again)."""
    return f"{stage}-{label}-seed{seed}"


def trial_log(study_dir: str | Path, name: str) -> Path:
    """The log file of the Train run `name` (train_run or seed_run) in the study folder."""
    return Path(study_dir) / LOGS / f"{name}.log"


def driver_log(study_dir: str | Path) -> Path:
    """The libraries' lines on the driver of a study or a rerun (study.runtime.libraries_to_file)."""
    return Path(study_dir) / LOGS / DRIVER_LOG


def confirm_result(study_dir: str | Path, trial_id: str) -> Path:
    """A raced trial's result: its seed means, P(front), place and verdicts."""
    return Path(study_dir) / CONFIRM / f"{trial_id}.json"


def confirm_seed_result(study_dir: str | Path, trial_id: str, seed: int) -> Path:
    """One finished run of the race: the metrics of trial `trial_id` at seed `seed`."""
    return Path(study_dir) / CONFIRM / SEED_RUNS / f"{trial_id}-seed{seed}.json"


def race_result(study_dir: str | Path) -> Path:
    """How the race went: its rounds, runs, why it stopped."""
    return Path(study_dir) / CONFIRM / RACE


def rerun_label(trial_id: str, full: bool) -> str:
    """What a rerun's result, its Train runs and its MLflow run are named after."""
    return f"{trial_id}-full" if full else trial_id


def rerun_result(study_dir: str | Path, trial_id: str, full: bool) -> Path:
    return Path(study_dir) / RERUNS / f"{rerun_label(trial_id, full)}.json"


def export_dir(study_dir: str | Path, trial_id: str) -> Path:
    """Where `kdstudy export` writes a trial's student unless told otherwise."""
    return Path(study_dir) / EXPORT / trial_id


# --- one driver per study ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def hold(directory: Path):
    """While a driver runs the study in `directory`: the folder's lock, taken atomically (one driver per study: two
    would write the same Optuna storage, MLflow parent and Tune experiment), released on the way out. A folder
    without a study (new, empty, or left by a start that never got as far as study.json) is removed again if this
    driver leaves before a study was recorded in it: a failed start leaves nothing half-written. `kdstudy pareto`
    and the other readers take no lock."""
    try:
        held_by_other = _live_holder(directory / LOCK)
        if held_by_other:
            raise ConfigError(f"{directory}: another driver runs this study: {held_by_other}; wait for it to end "
                              f"or stop it (Ctrl-C) first")
        names = {p.name for p in directory.iterdir()} if directory.exists() else set()
        made = names <= {LOCK}  # new, empty, or left by a start killed before it wrote anything
        if META not in names and not made:
            what = ("part of a study but no study.json (a start that was killed, or a study half-deleted); delete it "
                    "to start afresh" if names <= OWN else "files but no study; choose a new or empty --study-dir")
            raise ConfigError(f"{directory}: holds {what}")
        directory.mkdir(parents=True, exist_ok=True)
        _lock(directory / LOCK)
    except OSError as err:  # a read-only place, a path through a file
        raise ConfigError(f"{directory}: cannot write the study folder there ({err.strerror or err})") from None
    _held.append(directory.resolve())
    try:
        yield
    finally:
        _held.pop()
        _unlock(directory / LOCK)
        if made and not (directory / META).is_file():
            shutil.rmtree(directory, ignore_errors=True)


def _me() -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "start": _start_ticks(os.getpid()),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"), "command": " ".join(sys.argv)[:500]}


def _start_ticks(pid: int) -> int | None:
    """When the process started (clock ticks since boot, Linux): a pid reused by another process has another."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _describe(holder: dict) -> str:
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('since')} ({holder.get('command')})"


def _alive(holder: dict) -> bool:
    """Whether the lock's holder still runs; one on another host is taken to (it cannot be checked from here)."""
    if holder.get("host") != socket.gethostname():
        return True
    pid = int(holder.get("pid", 0))
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    start = holder.get("start")
    return start is None or _start_ticks(pid) in (None, start)


def _live_holder(path: Path) -> str | None:
    """The description of the live driver holding the lock at `path`, None if there is none (or it is gone)."""
    try:
        holder = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if _alive(holder):
        where = "" if holder.get("host") == socket.gethostname() else f" (if it is gone, delete {path})"
        return _describe(holder) + where
    return None


def _lock(path: Path) -> None:
    """Create the lock with this process's details, atomically: written aside, then linked into place (a link fails
    if the name exists). A lock left by a driver that is gone (killed, its machine rebooted) is taken over."""
    aside = path.with_name(f".{LOCK}.{os.getpid()}")
    aside.write_text(json.dumps(_me()))
    try:
        for _ in range(3):
            try:
                os.link(aside, path)
                return
            except FileExistsError:
                pass
            held_by_other = _live_holder(path)
            if held_by_other:
                raise ConfigError(f"{path.parent}: another driver runs this study: {held_by_other}")
            try:
                stale = json.loads(path.read_text())
                os.rename(path, aside.with_suffix(".stale"))  # atomic: of two drivers taking over, one wins
            except (OSError, ValueError):
                continue
            os.unlink(aside.with_suffix(".stale"))
            log.warning(f"{path.parent}: the driver that held this study is gone ({_describe(stale)}); "
                        f"this one takes over")
        raise ConfigError(f"{path}: could not take the study's lock")
    finally:
        aside.unlink(missing_ok=True)


def _unlock(path: Path) -> None:
    try:
        if json.loads(path.read_text()).get("pid") == os.getpid():
            path.unlink()
    except (OSError, ValueError):
        pass


# --- a new study, a resumed one ----------------------------------------------------------------------------------


def check_startable(directory: Path, resume: bool) -> None:
    """A new study needs a folder without one; a resumed study needs one."""
    exists = (directory / META).is_file()
    if exists and not resume:
        raise ConfigError(f"{directory} already holds a study: add --resume to continue it, or choose another "
                          f"--study-dir")
    if resume and not exists:
        raise ConfigError(f"{directory}: no study to resume (no {META})")
    missing = [name for name in (CONFIG, TEACHER) if resume and not (directory / name).is_file()]
    if missing:
        raise ConfigError(f"{directory}: the study cannot be resumed: {', '.join(missing)} missing (half-deleted?)")


def create(cfg: StudyConfig, teacher: dict[str, float]) -> dict:
    """Write the new study's folder: its teacher's metrics, the config, the MLflow experiment and parent run (with
    the config and the teacher's metrics), and the study.json tying them together. Returns what it holds. A tracking
    server that does not answer is a usage error naming it, before any trial runs."""
    from mlflow.exceptions import MlflowException

    from study.record.tracking import failing_fast

    try:
        with failing_fast():
            return _create(cfg, teacher)
    except MlflowException as err:
        uri = tracking_uri(cfg.tracking.uri, Path(cfg.study_dir))
        raise ConfigError(f"tracking at {uri} failed ({error_line(err)}): start the server, or fix "
                          f"tracking.uri") from None


def _create(cfg: StudyConfig, teacher: dict[str, float]) -> dict:
    from study.record import tracking

    directory = Path(cfg.study_dir)
    kept = portable(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / TEACHER).write_text(json.dumps(teacher, indent=2, sort_keys=True))
    uri = tracking_uri(cfg.tracking.uri, directory)
    client = tracking.connect(uri)
    local = (directory / ARTIFACTS).resolve().as_uri() if tracking.is_local(uri) else None  # a server decides its own
    experiment_id = tracking.open_experiment(client, cfg.name, local)
    search = cfg.search
    parent_id = tracking.create_parent(client, experiment_id, cfg.name, directory, {
        "objectives": ", ".join(f"{o.key} ({o.mode})" for o in search.objectives), "sampler": search.sampler.name,
        "num_samples": search.num_samples, "space": ", ".join(search.space), "study_dir": directory})
    tracking.log_metrics(client, parent_id, {f"teacher/{k}": v for k, v in teacher.items()})
    client.log_artifact(parent_id, str(write_snapshot(directory / CONFIG, kept)))
    # A store in the folder is marked so (local_tracking), and found again wherever the folder is (read_meta).
    meta = {"name": cfg.name, "tracking_uri": uri, "local_tracking": uri == local_store(directory),
            "experiment_id": experiment_id, "parent_run_id": parent_id,
            "storage_path": kept.search.storage_path, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    (directory / META).write_text(json.dumps(meta, indent=2))
    return meta


def reopen(cfg: StudyConfig) -> tuple[StudyConfig, dict[str, float]]:
    """A resumed study's config and teacher metrics. The YAML must be the one the study started with; a changed one
    is an error, not a silent mix. So is a folder without its Optuna storage: the sampler would start over, silently."""
    directory = Path(cfg.study_dir)
    check_startable(directory, resume=True)
    if not (directory / OPTUNA).is_file():
        raise ConfigError(f"{directory}: the study cannot be resumed: {OPTUNA} missing (half-deleted?)")
    moved_here(directory)
    saved = read_config(directory)
    if saved.model_dump(exclude={"study_dir"}) != cfg.model_dump(exclude={"study_dir"}):
        raise ConfigError(f"{directory}: the config differs from the one this study started with "
                          f"({directory / CONFIG}); resume with that one")
    return saved, read_teacher(directory)


def moved_here(directory: Path) -> None:
    """A study folder moved (or copied) since it last ran: MLflow's store in it names its artifact locations by
    absolute path (the experiment's and each run's) and MLflow has no call to move them, so they are rewritten here,
    in one transaction, from the old folder's path to this one; study.json then names the new store. Without it a
    resumed study would write its figures and students under the old path."""
    import sqlite3

    path = directory / META
    meta = json.loads(path.read_text())
    store = local_store(directory)
    if not meta.get("local_tracking") or meta["tracking_uri"] == store:
        return
    old = Path(meta["tracking_uri"].removeprefix("sqlite:///")).parent
    before, after = (old / ARTIFACTS).as_uri(), (directory.resolve() / ARTIFACTS).as_uri()
    with contextlib.closing(sqlite3.connect(directory / MLFLOW)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = replace(artifact_location, ?, ?)", (before, after))
        db.execute("UPDATE runs SET artifact_uri = replace(artifact_uri, ?, ?)", (before, after))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({**meta, "tracking_uri": store}, indent=2))
    os.replace(tmp, path)
    log.info(f"{directory}: moved here from {old}; its MLflow store now points at {after}")


def mark_resumed(directory: Path) -> None:
    """Mark the parent run running again; say what the resumed study keeps and what it restarts. With tracking down,
    the study resumes all the same: the trials' runs wait in the outbox until it is back."""
    from mlflow.exceptions import MlflowException

    from study.record.tracking import failing_fast

    try:
        with failing_fast():
            log.info(_mark_resumed(directory))
    except MlflowException as err:
        log.warning(f"resuming without tracking for now ({error_line(err)})")


def _mark_resumed(directory: Path) -> str:
    from study.record import tracking

    meta = read_meta(directory)
    client = tracking.connect(meta["tracking_uri"])
    client.update_run(meta["parent_run_id"], status="RUNNING")
    runs = tracking.trial_runs(client, meta["experiment_id"], meta["parent_run_id"])
    done = sum(r.info.status in ("FINISHED", "FAILED") for r in runs)
    running = [r.data.tags[tracking.TRIAL_ID] for r in runs if r.info.status == "RUNNING"]
    return (f"resuming study {meta['name']} in {directory}: {done} trial(s) done are kept; "
            f"{len(running)} interrupted ({', '.join(running) or 'none'}) continue from their last checkpoint, "
            f"or from the start if they had none")


# --- reading a study back ----------------------------------------------------------------------------------------


def read_meta(study_dir: Path) -> dict:
    """study.json, with the paths in the folder (its MLflow store, its Ray storage) where the folder now is."""
    path = Path(study_dir) / META
    if not path.is_file():
        raise ConfigError(f"{study_dir}: not a study folder (no {META}); run `kdstudy run` first")
    try:
        meta = json.loads(path.read_text())
    except (ValueError, OSError) as err:
        raise ConfigError(f"{path}: not a readable study record ({err})") from None
    if meta.get("local_tracking"):
        meta["tracking_uri"] = local_store(Path(study_dir))
    storage = meta.get("storage_path")
    if storage and "://" not in storage and not Path(storage).is_absolute():
        meta["storage_path"] = str((Path(study_dir) / storage).resolve())
    return meta


def read_config(study_dir: Path) -> StudyConfig:
    """study.yaml resolved for the folder where it now is (portable wrote it without the folder's own path)."""
    raw = yaml.safe_load((Path(study_dir) / CONFIG).read_text())
    raw.pop("git_commit", None)
    cfg = parse_config(raw, str(Path(study_dir) / CONFIG))
    storage = cfg.search.storage_path if cfg.search else None
    if storage and "://" not in storage and not Path(storage).is_absolute():
        cfg = cfg.model_copy(update={"search": cfg.search.model_copy(
            update={"storage_path": str(Path(study_dir) / storage)})})
    return resolve(cfg, study_dir) if cfg.search else cfg


def read_teacher(study_dir: Path) -> dict[str, float]:
    return json.loads((Path(study_dir) / TEACHER).read_text())
