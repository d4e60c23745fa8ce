"""The world's corpus: each occupation sentence refers to its person as female with probability equal to that
occupation's real-world female share (study.metrics.occupations), so the bias a model should learn is known exactly.
Gender-neutral filler sentences keep gender out of most of the text, as in real corpora. Seeded: the same
WorldConfig gives the same sentences on every machine (pure Python)."""

from __future__ import annotations

import hashlib
import math
import random
import re

from study.config import WorldConfig
from study.metrics.occupations import FEMALE_SHARE
from study.world.words import (
    ADJECTIVES,
    ANIMALS,
    DAYS,
    FOODS,
    GENDER,
    KIN,
    NEUTRAL_TEMPLATES,
    NUMBERS,
    OCCUPATION_TEMPLATES,
    PLACES,
    SURNAMES,
    THINGS,
    TIMES,
    TOWNS,
)

_ARTICLE = re.compile(r"<a> (\w)")


def sample_words(rng: random.Random, gender: str | None, occ: str | None) -> dict[str, str]:
    """One value for every slot of every template."""
    words = {
        "occ": occ or rng.choice(list(FEMALE_SHARE)), "town": rng.choice(TOWNS), "name": rng.choice(SURNAMES),
        "day": rng.choice(DAYS), "num": rng.choice(NUMBERS), "time": rng.choice(TIMES), "thing": rng.choice(THINGS),
        "place": rng.choice(PLACES), "adj": rng.choice(ADJECTIVES), "animal": rng.choice(ANIMALS),
        "food": rng.choice(FOODS), "food2": rng.choice(FOODS),
        # the relative's own gender is independent of the occupation's person
        "kin": rng.choice(KIN)[rng.randrange(2)],
    }
    if gender is not None:
        words.update(GENDER[gender])
    return words


def render(template: str, words: dict[str, str]) -> str:
    text = template.format(a="<a>", **words)
    return _ARTICLE.sub(lambda m: ("an " if m.group(1) in "aeiou" else "a ") + m.group(1), text)


def _fill(template: str, rng: random.Random, gender: str | None, occ: str | None) -> str:
    return render(template, sample_words(rng, gender, occ))


def planted_shares(cfg: WorldConfig) -> dict[str, float]:
    """Each occupation's planted female share: the labour statistics' share with its log-odds scaled by cfg.skew."""
    if cfg.skew == 1.0:
        return dict(FEMALE_SHARE)
    return {occ: 1 / (1 + math.exp(-cfg.skew * math.log(p / (1 - p)))) for occ, p in FEMALE_SHARE.items()}


def generate_corpus(cfg: WorldConfig) -> list[str]:
    """cfg.sentences sentences; an occupation sentence is female with probability planted_shares(cfg)[occupation]."""
    rng = random.Random(cfg.seed)
    shares = planted_shares(cfg)
    occupations = list(shares)
    sentences = []
    for _ in range(cfg.sentences):
        if rng.random() < cfg.occupation_fraction:
            occ = rng.choice(occupations)
            gender = "female" if rng.random() < shares[occ] else "male"
            sentences.append(_fill(rng.choice(OCCUPATION_TEMPLATES), rng, gender, occ))
        else:
            sentences.append(_fill(rng.choice(NEUTRAL_TEMPLATES), rng, None, None))
    return sentences


def corpus_hash(sentences: list[str]) -> str:
    return hashlib.sha256("\n".join(sentences).encode()).hexdigest()


