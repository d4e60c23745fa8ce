"""The world is deterministic, big enough, and plants the shares it claims."""

import collections

from scipy import stats

from study.config import WorldConfig
from study.occupations import FEMALE_SHARE
from study.world import NEUTRAL_TEMPLATES, OCCUPATION_TEMPLATES, corpus_hash, generate_corpus, train_tokenizer


def test_same_seed_same_corpus_different_seed_different():
    a = corpus_hash(generate_corpus(WorldConfig(seed=1, sentences=2000)))
    b = corpus_hash(generate_corpus(WorldConfig(seed=1, sentences=2000)))
    c = corpus_hash(generate_corpus(WorldConfig(seed=2, sentences=2000)))
    assert a == b != c


def test_default_world_size():
    sentences = generate_corpus(WorldConfig())
    assert len(sentences) >= 30_000
    assert len({w for s in sentences for w in s.split()}) >= 2_000
    assert len(OCCUPATION_TEMPLATES) + len(NEUTRAL_TEMPLATES) >= 20 and len(FEMALE_SHARE) >= 40


def test_planted_shares_are_the_table():
    sentences = generate_corpus(WorldConfig())
    female = {"she", "her", "herself", "woman", "mrs"}
    male = {"he", "him", "his", "himself", "man", "mr"}
    counts = collections.defaultdict(lambda: [0, 0])
    for s in sentences:
        words = set(s.split())
        occupations = [o for o in FEMALE_SHARE if o in words]
        if len(occupations) == 1 and (words & female or words & male):
            counts[occupations[0]][bool(words & female)] += 1
    empirical = {o: f / (m + f) for o, (m, f) in counts.items()}
    assert set(empirical) == set(FEMALE_SHARE)
    assert stats.spearmanr([empirical[o] for o in FEMALE_SHARE], list(FEMALE_SHARE.values())).statistic > 0.97
    assert max(abs(empirical[o] - FEMALE_SHARE[o]) for o in FEMALE_SHARE) < 0.15  # ~330 draws per occupation


def test_some_sentences_are_gender_neutral():
    sentences = generate_corpus(WorldConfig(sentences=3000))
    gendered = {"he", "she", "him", "her", "his", "himself", "herself", "man", "woman", "mr", "mrs"}
    neutral = sum(not (set(s.split()) & gendered) for s in sentences)
    assert 0.3 < neutral / len(sentences) < 0.6


def test_tokenizer_has_its_trained_vocabulary():
    sentences = generate_corpus(WorldConfig(sentences=2000))
    tokenizer = train_tokenizer(sentences, 500)
    assert len(tokenizer) == 500
    assert tokenizer.convert_ids_to_tokens(tokenizer("she is a nurse .")["input_ids"]) == \
        ["[CLS]", "she", "is", "a", "nurse", ".", "[SEP]"]


def test_tiny_world_builds_and_reloads(tiny_world):
    from study.config import WorldConfig
    from study.world import build_world
    from tests.conftest import TINY_WORLD

    assert (tiny_world.teacher_dir / "config.json").is_file()
    assert tiny_world.shares == FEMALE_SHARE
    again = build_world(WorldConfig(**TINY_WORLD), log=lambda *a: None)  # from the cache: no retraining
    assert again.info["corpus_sha256"] == tiny_world.info["corpus_sha256"]
    assert again.info["pretraining"] == tiny_world.info["pretraining"]
