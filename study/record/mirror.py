"""The study record kept in the study's storage as well as in its folder, so that losing the machine that runs the
driver (`ray down`, a lost head) loses nothing: `kdstudy run SPACE --resume --from STORAGE` rebuilds the folder from
it and continues, `kdstudy pull STORAGE DIR` brings a finished study to a laptop.

    <search.storage_path>/record/   study.json, study.yaml, teacher.json, optuna.db, mlflow.db, mlartifacts/,
                                    confirm/, reruns/, pareto.*, importance.*, driver.lock (the lock's owner)

Ray's own part (Tune's state, the Train runs and their checkpoints) is in the storage already. The copy is made at
every trial event and when the study ends, by one background thread in the driver: a request returns at once (a
trial never waits on the storage), requests made while a copy runs are served by one more copy. SQLite files are
copied with SQLite's backup API (a consistent snapshot, never a file caught mid-write), everything else as files.
When the storage is the default, <study dir>/ray, the record is in the folder already and nothing is copied.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import tempfile
import threading
import time
from pathlib import Path

import pyarrow
import pyarrow.fs

from study.errors import DataError
from study.record import folder
from study.runtime import error_line

log = logging.getLogger(__name__)

DATABASES = {folder.OPTUNA, folder.MLFLOW}
KEPT = [folder.META, folder.CONFIG, folder.TEACHER, folder.OPTUNA, folder.MLFLOW, folder.ARTIFACTS, folder.CONFIRM,
        folder.RERUNS, folder.PARETO_JSON, folder.PARETO_FIGURE, folder.PARALLEL_FIGURE, folder.IMPORTANCE_JSON,
        folder.IMPORTANCE_FIGURE, folder.LOCK]


def record_uri(storage_path: str) -> str:
    """Where the record is in the storage: a URI (s3://...) or an absolute local path."""
    base = storage_path if "://" in storage_path else str(Path(storage_path).expanduser().resolve())
    return f"{base.rstrip('/')}/{folder.RECORD}"


def needed(study_dir: str | Path, storage_path: str) -> bool:
    """Whether the storage is somewhere else than the folder (the default <study dir>/ray is inside it)."""
    return "://" in storage_path or not Path(storage_path).resolve().is_relative_to(Path(study_dir).resolve())


def copy_record(study_dir: Path, storage_path: str) -> None:
    """One consistent copy of the folder's record into the storage (none before the study is recorded)."""
    if not (study_dir / folder.META).is_file():
        return
    fs, root = pyarrow.fs.FileSystem.from_uri(record_uri(storage_path))
    fs.create_dir(root, recursive=True)
    with tempfile.TemporaryDirectory(prefix="kdstudy-record-") as tmp:
        for name in KEPT:
            here = study_dir / name
            if name in DATABASES and here.is_file():
                snapshot = Path(tmp) / name
                with contextlib.closing(sqlite3.connect(here)) as src, \
                        contextlib.closing(sqlite3.connect(snapshot)) as dst:
                    src.backup(dst)
                _upload(fs, snapshot, f"{root}/{name}")
            elif here.is_dir():
                fs.create_dir(f"{root}/{name}", recursive=True)
                pyarrow.fs.copy_files(str(here), f"{root}/{name}", source_filesystem=pyarrow.fs.LocalFileSystem(),
                                      destination_filesystem=fs)
            elif here.is_file():
                _upload(fs, here, f"{root}/{name}")


def _upload(fs: pyarrow.fs.FileSystem, path: Path, dest: str) -> None:
    """Written aside and moved into place where the filesystem can (a local dir); S3's put is atomic itself."""
    aside = f"{dest}.part"
    with fs.open_output_stream(aside) as out, path.open("rb") as f:
        out.write(f.read())
    fs.move(aside, dest)


def pull_record(storage_path: str, study_dir: Path) -> None:
    """The record in the storage, copied into `study_dir` (new or empty), its paths re-pointed to it. A storage that
    cannot be read (no such scheme, a bucket out of reach) is a DataError naming it, in one line."""
    try:
        fs, root = pyarrow.fs.FileSystem.from_uri(record_uri(storage_path))
        found = fs.get_file_info(f"{root}/{folder.META}").type == pyarrow.fs.FileType.File
    except (OSError, pyarrow.ArrowException) as err:  # pyarrow's own errors: an unknown scheme, no network to S3
        raise DataError(f"{storage_path}: cannot read a study record there ({error_line(err)})") from None
    if not found:
        raise folder.ConfigError(f"{storage_path}: no study record there (no {folder.RECORD}/{folder.META})")
    if study_dir.exists() and any(study_dir.iterdir()):
        raise folder.ConfigError(f"{study_dir}: not empty; pull a study record into a new or empty folder")
    study_dir.mkdir(parents=True, exist_ok=True)
    try:
        pyarrow.fs.copy_files(root, str(study_dir), source_filesystem=fs,
                              destination_filesystem=pyarrow.fs.LocalFileSystem())
    except (OSError, pyarrow.ArrowException) as err:  # the storage gone mid-copy
        raise DataError(f"{storage_path}: the study record could not be copied into {study_dir} "
                        f"({error_line(err)}); delete the folder and pull again") from None
    for part in study_dir.rglob("*.part"):  # a copy the driver was writing when its machine went
        part.unlink()
    (study_dir / folder.LOCK).unlink(missing_ok=True)  # the lock's owner was the old driver: kept in the storage only
    folder.moved_here(study_dir)


_active: list[Mirror] = []  # the driver's mirror while it runs a study (keeping)


@contextlib.contextmanager
def keeping(study_dir: Path, storage_path: str):
    """While a driver runs the study: its record copied into the storage at each request(), and once more, waited
    for, on the way out."""
    mirror = Mirror(study_dir, storage_path)
    _active.append(mirror)
    try:
        yield mirror
    finally:
        _active.remove(mirror)
        mirror.close()


def request() -> None:
    """Ask for a copy of the record (a trial event): returns at once; nothing when no driver keeps one."""
    for mirror in _active:
        mirror.request()


class Mirror:
    """The driver's background copier: request() returns at once; one copy serves all requests made before it
    started. A copy that fails is logged once and tried again at the next request: the study goes on."""

    def __init__(self, study_dir: Path, storage_path: str):
        self.study_dir, self.storage_path = Path(study_dir), storage_path
        self.active = needed(study_dir, storage_path)
        self._wanted = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._stop = False
        self._failed = False
        self.copies, self.seconds = 0, 0.0  # what the copies cost the driver's background thread
        self._thread = threading.Thread(target=self._run, name="kdstudy-record-copy", daemon=True)
        if self.active:
            self._thread.start()

    def request(self) -> None:
        if self.active:
            self._idle.clear()
            self._wanted.set()

    def _run(self) -> None:
        while True:
            self._wanted.wait()
            self._wanted.clear()
            if self._stop and self._idle.is_set():
                return
            began = time.perf_counter()
            try:
                copy_record(self.study_dir, self.storage_path)
                self._failed = False
                self.copies += 1
                self.seconds += time.perf_counter() - began
            except Exception as err:  # the storage unreachable for now: the folder keeps the record
                if not self._failed:
                    log.warning(f"copying the study record to {record_uri(self.storage_path)} failed ({err}); "
                                f"it is tried again at the next trial event")
                self._failed = True
            if not self._wanted.is_set():
                self._idle.set()

    def close(self) -> None:
        """One last copy, waited for: the record in the storage is the folder's as the driver leaves it."""
        if not self.active:
            return
        began = time.perf_counter()
        self.request()
        self._idle.wait()
        self._stop = True
        self._wanted.set()
        self._thread.join(timeout=60)
        log.info(f"study record kept in {record_uri(self.storage_path)}: {self.copies} copies, "
                 f"{self.seconds:.1f}s in the background, {time.perf_counter() - began:.1f}s waited for the last")
