"""The default world ships with the package: its teacher was pretrained once and is verified by sha256 wherever it is
unpacked, so that every machine studies the same world.

Built anew, the pretraining stops when the planted rho crosses a threshold, and floating-point differences between
CPUs move that epoch (0.953 at epoch 8 on one machine, 0.965 at epoch 9 on another): another teacher, other numbers.
The corpus and tokenizer are pure Python and regenerate identically (the corpus is checked against its hash); other
worlds (any other WorldConfig) are built. `python -m study.world.build --ship` packs the default world again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from pathlib import Path

from study.config import WorldConfig
from study.world.cache import World, publish, world_key
from study.world.corpus import corpus_hash, generate_corpus

log = logging.getLogger(__name__)

SHIPPED = Path(__file__).parent / "shipped_world"
SHIPPED_SHA256 = {  # printed by `python -m study.world.build --ship`; checked on every unpack
    "teacher/config.json": "0d8069944df116fa3055c6fb0ea27731d26d31cd3976d80c7faf26e8131c886a",
    "teacher/model.safetensors": "f6e0a9d2c5e9f183d5847c0b0a191d9108059a69a3182ce1800562e2ca524b4e",
    "teacher/tokenizer.json": "6974431d9d06679b9ccc0a8f95db85fca2509d3c16f80cedabc42712d185ec6e",
    "teacher/tokenizer_config.json": "d4256a5548edb3820dd70fd151fdb0c3c70e44b8f0c6ea0ce4a5d9b248754551",
    "world.json": "72fc13733e411a078b61e7b7d8caf43e56f58de344823f2b619c7e17f58b9219",
}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def unpack_shipped(cfg: WorldConfig, root: Path) -> bool:
    """Write the shipped default world to root, verified; False when cfg is not the shipped world."""
    if not SHIPPED_SHA256 or not (SHIPPED / "world.json").is_file():
        return False
    info = json.loads((SHIPPED / "world.json").read_text())
    if info.get("key") != world_key(cfg):
        return False
    for name, digest in SHIPPED_SHA256.items():
        if sha256(SHIPPED / name) != digest:
            raise RuntimeError(f"{SHIPPED / name}: sha256 differs from the one kdstudy shipped ({digest[:12]}...): "
                               f"the installation is damaged; reinstall kdstudy")
    sentences = generate_corpus(cfg)
    if corpus_hash(sentences) != info["corpus_sha256"]:
        raise RuntimeError(f"the world's corpus generator no longer gives the shipped corpus (key {info['key']}): "
                           f"bump WORLD_VERSION and ship the world again")
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(SHIPPED, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (tmp / "corpus.txt").write_text("\n".join(sentences) + "\n")
    publish(tmp, root)
    log.info(f"world {info['key']}: the shipped default world, verified, unpacked at {root}")
    return True


def ship(world: World, to: Path = SHIPPED) -> dict[str, str]:
    """Copy a built world's teacher and world.json into the package (the corpus regenerates); returns the sha256 of
    each file, for SHIPPED_SHA256."""
    shutil.rmtree(to / "teacher", ignore_errors=True)
    shutil.copytree(world.teacher_dir, to / "teacher")
    shutil.copy(world.root / "world.json", to / "world.json")
    files = sorted(p.relative_to(to).as_posix() for p in to.rglob("*") if p.is_file() and p.suffix != ".py")
    return {name: sha256(to / name) for name in files}
