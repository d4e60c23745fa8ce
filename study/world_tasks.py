"""The built-in world's tasks, in GLUE's formats, fine-tuned and scored by study.glue like any GLUE task.

    world_cola   single sentence, binary: a world sentence (1) or the same with two words swapped (0); MCC
    world_pair   sentence pair, binary: does "this is about the <occupation> ." name the occupation of sentence 1;
                 accuracy
    world_sts    sentence pair, regression 0-5: one template filled twice, 5 x the share of its slots that got the
                 same word; Pearson/Spearman

They are written once per world as parquet under <world>/tasks-v<TASKS_VERSION>/<task>/{train,validation}.parquet,
the hub-export layout study.glue reads, and reported as world/<task> and world/score. The validation sets are large
(2,000 examples: an accuracy near 80% then has a sampling error of about 0.9 points, where 500 gave 1.8), so that the
task score a study ranks trials by is mostly the student's, not the draw of examples; the training sets are large
enough for a 2-layer student to learn the pair and similarity tasks.
"""

from __future__ import annotations

import os
import random
import shutil
import string
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from study.glue import Task
from study.occupations import FEMALE_SHARE
from study.world import NEUTRAL_TEMPLATES, OCCUPATION_TEMPLATES, World, generate_corpus, render, sample_words

TASKS: dict[str, Task] = {
    "world_cola": Task(("sentence",), 2, "mcc"),
    "world_pair": Task(("sentence1", "sentence2"), 2, "acc"),
    "world_sts": Task(("sentence1", "sentence2"), 1, "corr"),
}
SIZES = {"train": 4000, "validation": 2000}
TASKS_VERSION = 2  # bump when the tasks change, so a world's old task files are not reused


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


def _sts(rng: random.Random) -> dict:
    template = rng.choice(OCCUPATION_TEMPLATES + NEUTRAL_TEMPLATES)
    slots = sorted({f for _, f, _, _ in string.Formatter().parse(template) if f and f != "a"})
    gender = rng.choice(["male", "female"])
    first = sample_words(rng, gender, None)
    second = dict(first)
    fresh = sample_words(rng, rng.choice(["male", "female"]), None)
    for slot in slots:
        if rng.random() < 0.5:
            second[slot] = fresh[slot]
    same = sum(first[s] == second[s] for s in slots)
    return {"sentence1": render(template, first), "sentence2": render(template, second),
            "label": 5.0 * same / len(slots)}


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
    return write_tasks(world.root / f"tasks-v{TASKS_VERSION}", world.info["config"]["seed"])
