"""Where a distillation's teacher and corpus come from: the built-in world, or a hub/local teacher and corpus.

`load_teacher_and_corpus_ids` is what a distillation starts from, on a Ray Train worker or in `kdstudy distill`;
`teacher_dir` and `teacher_identity` say where a teacher loads from and what it is (the evaluation caches the
teacher's metrics under that identity).
"""

from __future__ import annotations

from pathlib import Path

from study.config import StudyConfig
from study.distill.data import load_corpus, tokenize
from study.distill.models import load_masked_lm
from study.world.build import build_world
from study.world.cache import world_key
from study.world.corpus import generate_corpus


def load_teacher_and_corpus(cfg: StudyConfig):
    """(teacher, tokenizer, corpus sentences) as the config asks: the built-in world, or a hub/local teacher."""
    world_sentences = None
    if cfg.teacher.source == "world":
        world = build_world(cfg.world)
        teacher, tokenizer = load_masked_lm(world.teacher_dir)
        world_sentences = world.sentences
    else:
        teacher, tokenizer = load_masked_lm(cfg.teacher.source)
        if cfg.corpus.source == "world":  # a hub teacher can still be distilled on the world's text
            world_sentences = generate_corpus(cfg.world)
    return teacher, tokenizer, load_corpus(cfg.corpus, world_sentences)


def load_teacher_and_corpus_ids(cfg: StudyConfig):
    """(teacher, tokenizer, corpus as word-piece ids within corpus.max_tokens) for a distillation."""
    teacher, tokenizer, sentences = load_teacher_and_corpus(cfg)
    return teacher, tokenizer, tokenize(sentences, tokenizer, cfg.distill.max_length, cfg.corpus.max_tokens)


def teacher_dir(cfg: StudyConfig) -> str:
    """Where the teacher loads from: the built-in world's teacher dir (built if need be), or teacher.source."""
    return str(build_world(cfg.world).teacher_dir) if cfg.teacher.source == "world" else cfg.teacher.source


def teacher_identity(cfg: StudyConfig) -> str:
    """What the teacher is: the world's key, a local dir with its last change, or a hub name."""
    if cfg.teacher.source == "world":
        return f"world:{world_key(cfg.world)}"
    path = Path(cfg.teacher.source).expanduser()
    if path.is_dir():
        stamp = max((f.stat().st_mtime for f in path.iterdir()), default=0)
        return f"dir:{path.resolve()}:{stamp}"
    return f"hub:{cfg.teacher.source}"
