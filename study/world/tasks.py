"""The built-in world's tasks, in GLUE's formats, fine-tuned and scored by study.metrics.glue like any GLUE task.

    world_cola   single sentence, binary: a world sentence (1) or the same with two words swapped (0); MCC
    world_pair   sentence pair, binary: does "this is about the <occupation> ." name the occupation of sentence 1;
                 accuracy
    world_sts    sentence pair, regression 0-5: how closely "this is about the <word> ." matches sentence 1 (a
                 sentence about things, animals, food and places): 5 a word of it, 2.5 another word of the same
                 kind, 0 a word of a kind it does not mention; Pearson/Spearman. The kinds share the corpus's slots
                 and nothing else marks them, so a model knows them only from pretraining.

They are written once per world as parquet under <world>/tasks-<TASKS_KEY>/<task>/{train,validation}.parquet, the
hub-export layout study.metrics.glue reads, and reported as world/<task> and world/score. The sets are as large as a
task score that decides needs (benchmarks/objective_noise.py): 16,000 training examples, so that fine-tuning reaches
what a student can do on a task rather than stopping short of it (with 4,000, one student in six ended world_sts 7-9
points below the others, on every fine-tuning seed), and 40,000 validation examples, so that the draw of examples adds
little to a difference between two students: scoring one takes seconds, and with 10,000 the draw alone moved
world_cola's paired difference by 0.23 points per seed, a third of its variance.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from study.metrics.occupations import FEMALE_SHARE
from study.world.cache import World
from study.world.corpus import generate_corpus, render, sample_words
from study.world.words import ANIMALS, FOODS, NEUTRAL_TEMPLATES, OCCUPATION_TEMPLATES, PLACES, THINGS

SIZES = {"train": 16000, "validation": 40000}
TASKS_KEY = "16k-40k"  # in the task files' folder name: changes with the generator or SIZES, so no stale file is read


def _cola(rng: random.Random, sentence: str) -> dict:
    words = sentence.split()
    if rng.random() < 0.5 or len(words) < 4:
        return {"sentence": sentence, "label": 1}
    i, j = sorted(rng.sample(range(len(words) - 1), 2))  # never the final "."
    words[i], words[j] = words[j], words[i]
    return {"sentence": " ".join(words), "label": int(words == sentence.split())}


def _pair(rng: random.Random) -> dict:
    occ = rng.choice(list(FEMALE_SHARE))
    gender = "female" if rng.random() < FEMALE_SHARE[occ] else "male"
    sentence = render(rng.choice(OCCUPATION_TEMPLATES), sample_words(rng, gender, occ))
    same = rng.random() < 0.5
    named = occ if same else rng.choice([o for o in FEMALE_SHARE if o != occ])
    return {"sentence1": sentence, "sentence2": f"this is about the {named} .", "label": int(same)}


WORDS = {"thing": THINGS, "animal": ANIMALS, "food": FOODS, "place": PLACES}
# the words sentence 2 may name: those of exactly one kind ("bridge" is a thing and a place, so neither)
KINDS = {kind: [w for w in words if sum(w in other for other in WORDS.values()) == 1]
         for kind, words in WORDS.items()}
_STS_TEMPLATES = [t for t in NEUTRAL_TEMPLATES if any(f"{{{kind}}}" in t for kind in KINDS)]


def _sts(rng: random.Random) -> dict:
    template = rng.choice(_STS_TEMPLATES)
    words = sample_words(rng, None, None)
    sentence = render(template, words)
    said = set(sentence.split())
    kinds = [kind for kind, listed in WORDS.items() if said & set(listed)]  # ("bridge": a thing and a place)
    kind = rng.choice([kind for kind in KINDS if f"{{{kind}}}" in template])
    grade = rng.randrange(3)  # a third each: the same word, the same kind, another kind
    if grade == 0:
        named, label = words[kind], 5.0
    elif grade == 1:
        named, label = rng.choice([w for w in KINDS[kind] if w not in said]), 2.5
    else:
        named, label = rng.choice(KINDS[rng.choice([k for k in KINDS if k not in kinds])]), 0.0
    return {"sentence1": sentence, "sentence2": f"this is about the {named} .", "label": label}


def write_tasks(root: Path, seed: int) -> Path:
    """Write every task's splits under root (atomically); returns root."""
    if (root / "world_sts" / "validation.parquet").is_file():
        return root
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    for s, (split, n) in enumerate(SIZES.items()):
        rng = random.Random(seed * 7919 + s)
        # fresh sentences from the world's generator, not the distillation corpus itself
        sentences = generate_corpus_like(seed * 7919 + s + 1, n)
        rows = {
            "world_cola": [_cola(rng, x) for x in sentences],
            "world_pair": [_pair(rng) for _ in range(n)],
            "world_sts": [_sts(rng) for _ in range(n)],
        }
        for name, examples in rows.items():
            (tmp / name).mkdir(parents=True, exist_ok=True)
            columns = {k: [e[k] for e in examples] for k in examples[0]}
            # pyarrow directly: a datasets.Dataset would fingerprint (pickle) the rows first, which fails on some
            # datasets/dill/pyarrow combinations (PicklingError on MonthDayNano) and is not needed to write a file
            pq.write_table(pa.table(columns), tmp / name / f"{split}.parquet")
    shutil.rmtree(root, ignore_errors=True)
    try:
        tmp.rename(root)
    except OSError:  # another process wrote the same tasks first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def generate_corpus_like(seed: int, n: int) -> list[str]:
    from study.config import WorldConfig

    return generate_corpus(WorldConfig(seed=seed, sentences=max(n, 200)))[:n]


def task_dir(world: World) -> Path:
    return write_tasks(world.root / f"tasks-{TASKS_KEY}", world.info["config"]["seed"])
