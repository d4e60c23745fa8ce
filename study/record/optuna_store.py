"""The study's Optuna storage (optuna.db in its folder) as Tune keeps it: Ray's OptunaSearch is pickled with Tune's
experiment, and with it the storage's URL. Unpickled by the driver of a folder that has moved since, the storage
follows the folder instead of opening (or creating) optuna.db at the old path."""

from __future__ import annotations

from pathlib import Path

from optuna.storages import RDBStorage

from study.record import folder


class FolderStorage(RDBStorage):
    """An RDBStorage on the study folder's optuna.db, found again in the folder the driver holds when unpickled."""

    def __setstate__(self, state: dict) -> None:
        here = folder.held()
        if here is not None:
            state = {**state, "url": f"sqlite:///{here / folder.OPTUNA}"}
        super().__setstate__(state)


def optuna_storage(study_dir: Path) -> FolderStorage:
    """The Optuna storage of the study in `study_dir`."""
    return FolderStorage(f"sqlite:///{(Path(study_dir) / folder.OPTUNA).resolve()}")
