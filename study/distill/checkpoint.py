"""A distillation's checkpoints: model, optimiser, scheduler, step and last metrics from rank 0, every rank's RNG
streams; written atomically, read with torch's weights-only unpickler."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from study.errors import ModelError

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(directory: Path, rank: int, step: int, student, optimizer, scheduler, generator,
                    metrics: dict) -> None:
    """Model, optimiser, scheduler, step and last metrics from rank 0; every rank's own RNG streams. Atomic."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {f"rng-rank{rank}.pt": {"generator": generator.get_state(), "torch": torch.get_rng_state()}}
    if rank == 0:
        files[CHECKPOINT] = {"step": step, "student": student.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "metrics": metrics}
    for name, state in files.items():
        tmp = directory / f".{name}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, directory / name)


def read_state(path: Path) -> dict:
    """A checkpoint file's contents, unpickled with torch's weights-only loader: tensors, numbers, strings and the
    containers of them, which is all save_checkpoint writes. On a cluster checkpoints come from shared storage that
    others can write to; a file that holds anything else (a pickled object, which could run code as it loads) is
    refused, never executed."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"a pickled {found.group(1)}" if found else "a pickled object"
        raise ModelError(f"{path}: refused to load this checkpoint: it holds {what}, not only tensors and numbers; "
                         f"nothing in it was run (delete it if you did not write it)") from None
    except (RuntimeError, EOFError) as err:  # truncated, or not a torch file at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: not a readable checkpoint ({first})") from None


def load_checkpoint(directory: Path, rank: int, student, optimizer, scheduler, generator) -> tuple[int, dict]:
    """Restore everything save_checkpoint wrote; returns the step to continue from and the metrics logged last."""
    state = read_state(directory / CHECKPOINT)
    rng = read_state(directory / f"rng-rank{rank}.pt")
    student.load_state_dict(state["student"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    return state["step"], state["metrics"]

