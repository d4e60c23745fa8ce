"""Reading back what a Train run left in the study's storage (a local path or s3://..., gs://...): the student's
metrics and the student itself from its final checkpoint (the layout is study.record.folder's).

No Ray here: `kdstudy export` and `kdstudy rerun` read a student back without starting it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.fs

from study.record.folder import EVALUATION, STUDENT


def read_evaluation(path: str, filesystem: pyarrow.fs.FileSystem) -> dict[str, float] | None:
    """The student's metrics in the final checkpoint at `path`; only that small file is read (the checkpoint itself
    may be large and in S3). None when it holds none."""
    file = f"{path}/{EVALUATION}"
    if filesystem.get_file_info(file).type != pyarrow.fs.FileType.File:
        return None
    with filesystem.open_input_stream(file) as f:
        return json.loads(f.read())


def fetch_student(uri: str, into: Path) -> Path | None:
    """The student model dir of the final checkpoint at `uri` (a local path or s3://..., gs://...), as a local dir:
    the checkpoint's own `student/` when it is on this machine, else a copy under `into`; None if it is not there."""
    fs, root = pyarrow.fs.FileSystem.from_uri(uri if "://" in uri else str(Path(uri).resolve()))
    source = f"{root.rstrip('/')}/{STUDENT}"
    if fs.get_file_info(source).type != pyarrow.fs.FileType.Directory:
        return None
    if isinstance(fs, pyarrow.fs.LocalFileSystem):
        return Path(source)
    pyarrow.fs.copy_files(source, str(into / STUDENT), source_filesystem=fs,
                          destination_filesystem=pyarrow.fs.LocalFileSystem())
    return into / STUDENT
