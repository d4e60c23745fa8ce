"""The world is deterministic, big enough, and plants the shares it claims."""

import collections

import pytest
from scipy import stats

from study.config import WorldConfig
from study.metrics.occupations import FEMALE_SHARE
from study.world.corpus import corpus_hash, generate_corpus
from study.world.tokenizer import train_tokenizer


def test_same_seed_same_corpus_different_seed_different():
    a = corpus_hash(generate_corpus(WorldConfig(seed=1, sentences=2000)))
    b = corpus_hash(generate_corpus(WorldConfig(seed=1, sentences=2000)))
    c = corpus_hash(generate_corpus(WorldConfig(seed=2, sentences=2000)))
    assert a == b != c


def test_default_world_size():
    sentences = generate_corpus(WorldConfig())
    assert len(sentences) == WorldConfig().sentences
    assert len({w for s in sentences for w in s.split()}) >= 2_000
    assert not [s for s in sentences if "{" in s or "}" in s]  # every slot of every template filled


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
    assert len(tokenizer) == 500  # the cap: 2,000 sentences hold more words
    assert tokenizer.convert_ids_to_tokens(tokenizer("she is a nurse .")["input_ids"]) == \
        ["[CLS]", "she", "is", "a", "nurse", ".", "[SEP]"]


def test_tiny_world_builds_and_reloads(tiny_world):
    from study.config import WorldConfig
    from study.world.build import build_world
    from tests.conftest import TINY_WORLD

    assert (tiny_world.teacher_dir / "config.json").is_file()
    assert tiny_world.shares == FEMALE_SHARE
    again = build_world(WorldConfig(**TINY_WORLD))  # from the cache: no retraining
    assert again.info["corpus_sha256"] == tiny_world.info["corpus_sha256"]
    assert again.info["pretraining"] == tiny_world.info["pretraining"]


def test_tokenizer_is_the_same_in_another_process():
    # tokenizers' WordPieceTrainer differs from process to process (huggingface/tokenizers#1794); ours must not
    import subprocess
    import sys

    code = ("import hashlib, json; from study.config import WorldConfig; "
            "from study.world.corpus import generate_corpus; from study.world.tokenizer import train_tokenizer; "
            "t = train_tokenizer(generate_corpus(WorldConfig(sentences=1500)), 400); "
            "print(hashlib.sha256(json.dumps(sorted(t.get_vocab().items())).encode()).hexdigest())")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 1


def test_every_world_word_is_one_piece():
    sentences = generate_corpus(WorldConfig(sentences=3000))
    tokenizer = train_tokenizer(sentences, 4000)
    words = {w for s in sentences for w in s.split()}
    assert all(len(tokenizer.tokenize(w)) == 1 for w in words)
    assert tokenizer.tokenize("stewardess") == ["s", "##t", "##e", "##w", "##a", "##r", "##d", "##e", "##s", "##s"]


def test_the_default_world_is_shipped_and_verified(tmp_path, monkeypatch):
    """The default world unpacks from the package (no pretraining), byte for byte the shipped teacher, and its
    corpus regenerates to the shipped hash; a damaged file is refused with one line."""
    import hashlib
    import shutil

    from study.world import build, shipped
    from study.world.cache import world_key

    monkeypatch.setenv("KDSTUDY_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(build, "pretrain_teacher", lambda *a: pytest.fail("the shipped world must not be rebuilt"))
    built = build.build_world(WorldConfig())
    assert built.info["key"] == world_key(WorldConfig())
    for name, digest in shipped.SHIPPED_SHA256.items():
        assert hashlib.sha256((built.root / name).read_bytes()).hexdigest() == digest
    assert corpus_hash(built.sentences) == built.info["corpus_sha256"]

    damaged = tmp_path / "shipped"
    shutil.copytree(shipped.SHIPPED, damaged)
    weights = damaged / "teacher" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1] + b"\0")
    monkeypatch.setattr(shipped, "SHIPPED", damaged)
    monkeypatch.setenv("KDSTUDY_CACHE", str(tmp_path / "other-cache"))
    with pytest.raises(RuntimeError, match="sha256 differs"):
        build.build_world(WorldConfig())
    assert not (tmp_path / "other-cache" / f"world-{world_key(WorldConfig())}").exists()


def test_skew_scales_the_planted_log_odds_and_skew_one_keeps_the_shipped_key():
    from study.world.cache import world_key
    from study.world.corpus import planted_shares

    assert planted_shares(WorldConfig()) == FEMALE_SHARE
    half, double = planted_shares(WorldConfig(skew=0.5)), planted_shares(WorldConfig(skew=2.0))
    # nurse 0.88: log-odds ln(22/3); halved, sqrt(22/3) / (1 + sqrt(22/3)); doubled, 484 / (484 + 9)
    assert half["nurse"] == pytest.approx((22 / 3) ** 0.5 / (1 + (22 / 3) ** 0.5))
    assert double["nurse"] == pytest.approx(484 / 493)
    assert world_key(WorldConfig()) == world_key(WorldConfig(skew=1.0)) != world_key(WorldConfig(skew=0.5))
    # a skewed world's corpus follows its own shares: fewer female nurses at skew 0.5 than at 1
    def female_nurses(cfg):
        nurse = [s.split() for s in generate_corpus(cfg) if " nurse " in f" {s} "]
        return sum(bool({"she", "her", "woman"} & set(w)) for w in nurse) / len(nurse)
    assert female_nurses(WorldConfig(sentences=6000, skew=0.5)) < female_nurses(WorldConfig(sentences=6000))
