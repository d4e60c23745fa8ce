"""A world on disk: its key (the WorldConfig and the generator's version), its folder in the cache, loading it, and
moving a finished one into place atomically.

    <cache root>/world-<key>/
        corpus.txt      the sentences, one a line
        teacher/        the pretrained BertForMaskedLM and its tokenizer
        world.json      the configuration, the planted shares, the corpus hash, the pretraining curve
        tasks-<key>/    the world's tasks in GLUE formats (study.world.tasks), written on first use
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from study.config import WorldConfig
from study.runtime import cache_root

WORLD_VERSION = 2  # bump when the generator changes, so old caches are not reused


@dataclass
class World:
    root: Path
    sentences: list[str]
    shares: dict[str, float]
    info: dict

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"


def world_key(cfg: WorldConfig) -> str:
    # skew 1 is left out: the worlds made before the knob existed (the shipped one) keep their keys
    blob = json.dumps({"version": WORLD_VERSION, **cfg.model_dump(exclude={"skew"} if cfg.skew == 1.0 else None)},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_world_dir(cfg: WorldConfig) -> Path:
    return cache_root() / f"world-{world_key(cfg)}"


def load_world(root: Path) -> World:
    info = json.loads((root / "world.json").read_text())
    sentences = (root / "corpus.txt").read_text().splitlines()
    return World(root, sentences, info["shares"], info)


def publish(tmp: Path, root: Path) -> None:
    """Move a finished world into place (atomic rename); another process may have finished the same one first."""
    if root.exists() and not (root / "world.json").is_file():
        shutil.rmtree(root)  # the remains of an interrupted copy, never a finished world
    try:
        tmp.rename(root)
    except OSError:  # another process finished the same world first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)
