"""Building the world: load it from the cache, else unpack the shipped default world, else generate the corpus, make
the tokenizer and pretrain the teacher, and write it atomically. Everything is derived from WorldConfig and cached
under a key made of those values, so the teacher is pretrained once and loaded in seconds afterwards.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from pathlib import Path

from study.config import WorldConfig
from study.world.cache import World, default_world_dir, load_world, publish, world_key
from study.world.corpus import corpus_hash, generate_corpus, planted_shares
from study.world.shipped import ship, unpack_shipped
from study.world.teacher import pretrain_teacher
from study.world.tokenizer import train_tokenizer

log = logging.getLogger(__name__)


def build_world(cfg: WorldConfig, out: Path | None = None) -> World:
    """Load the world from `out` (default: the cache dir for cfg), else unpack it there if it is the shipped
    default world, else build it there; written atomically."""
    root = Path(out) if out is not None else default_world_dir(cfg)
    if (root / "world.json").is_file():
        info = json.loads((root / "world.json").read_text())
        if info.get("key") != world_key(cfg):
            raise ValueError(f"{root} holds a different world (key {info.get('key')}, wanted {world_key(cfg)})")
        return load_world(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    if unpack_shipped(cfg, root):
        return load_world(root)
    log.info(f"building world {world_key(cfg)} ({cfg.sentences} sentences, teacher {cfg.layers}x{cfg.hidden}) ...")
    start = time.time()
    sentences = generate_corpus(cfg)
    tokenizer = train_tokenizer(sentences, cfg.vocab_size)
    teacher, history = pretrain_teacher(cfg, sentences, tokenizer)

    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "corpus.txt").write_text("\n".join(sentences) + "\n")
    teacher.save_pretrained(tmp / "teacher")
    tokenizer.save_pretrained(tmp / "teacher")
    word_types = {w for s in sentences for w in s.split()}
    info = {
        "key": world_key(cfg), "config": cfg.model_dump(), "shares": planted_shares(cfg),
        "sentences": len(sentences), "word_types": len(word_types), "corpus_sha256": corpus_hash(sentences),
        "vocab_size": len(tokenizer), "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "pretraining": history, "build_seconds": round(time.time() - start, 1),
    }
    (tmp / "world.json").write_text(json.dumps(info, indent=2))
    publish(tmp, root)
    return load_world(root)


if __name__ == "__main__":  # python -m study.world.build --ship: pack the default world, print the digests for shipped
    import sys

    if sys.argv[1:] != ["--ship"]:
        sys.exit("usage: python -m study.world.build --ship")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(ship(build_world(WorldConfig())), indent=4))
