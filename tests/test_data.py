"""Masking proportions and corpus loading from local files."""

import json
import math

import pytest
import torch

from study.config import CorpusConfig, MaskingConfig
from study.distill.data import DataError, load_corpus, pad, plan_masking, selection_weights, tokenize

MASK = 4


def batch(n=64, length=20, vocab=50):
    g = torch.Generator().manual_seed(0)
    seqs = [[2] + torch.randint(5, vocab, (length - 2,), generator=g).tolist() + [3] for _ in range(n)]
    seqs[0] = seqs[0][:5]  # one short sequence, so there is padding
    return pad(seqs, 0)


def test_selects_ceil_prob_of_real_tokens_never_special():
    ids, attn = batch()
    weights = selection_weights([], 50, [0, 1, 2, 3, 4], MaskingConfig())
    plan = plan_masking(ids, weights, MaskingConfig(), MASK, torch.Generator().manual_seed(1))
    n_real = int(((ids > 4) & attn.bool()).sum())
    assert int(plan.selected.sum()) == math.ceil(0.15 * n_real)
    assert not plan.selected[ids <= 4].any()  # [CLS], [SEP], [PAD] never targets


def test_80_10_10():
    ids, _ = batch(n=400)
    weights = selection_weights([], 50, [0, 1, 2, 3, 4], MaskingConfig())
    plan = plan_masking(ids, weights, MaskingConfig(), MASK, torch.Generator().manual_seed(1))
    masked, labels = plan.apply(ids)
    target = labels != -100
    n = int(target.sum())
    as_mask = int((masked[target] == MASK).sum()) / n
    kept = int((masked[target] == ids[target]).sum()) / n
    assert 0.77 < as_mask < 0.83 and 0.08 < kept < 0.14  # keep includes random draws that hit the same token
    assert torch.equal(masked[~target], ids[~target])
    assert torch.equal(labels[target], ids[target])


def test_frequency_smoothing_masks_frequent_tokens_less():
    corpus = [[2, 5, 5, 5, 5, 5, 5, 5, 6, 3]] * 50  # token 5 is 7x as frequent as 6
    cfg = MaskingConfig(strategy="frequency", smoothing=0.7)
    weights = selection_weights(corpus, 10, [0, 1, 2, 3, 4], cfg)
    assert weights[5] / weights[6] == pytest.approx(7**-0.7, rel=1e-5)
    ids, _ = pad(corpus, 0)
    g = torch.Generator().manual_seed(0)
    hits = sum(plan_masking(ids, weights, cfg, MASK, g).selected[ids == 6].float().mean() for _ in range(20)) / 20
    hits5 = sum(plan_masking(ids, weights, cfg, MASK, g).selected[ids == 5].float().mean() for _ in range(20)) / 20
    assert hits > 2 * hits5  # uniform masking would give both the same rate


def test_load_local_text_and_jsonl(tmp_path):
    (tmp_path / "a.txt").write_text("one sentence .\n\n  another one .\n")
    assert load_corpus(CorpusConfig(source=str(tmp_path / "a.txt"))) == ["one sentence .", "another one ."]
    folder = tmp_path / "jsonl"
    folder.mkdir()
    (folder / "x.jsonl").write_text("\n".join(json.dumps({"body": f"line {i}"}) for i in range(5)))
    cfg = CorpusConfig(source=str(folder), text_column="body", max_sentences=3)
    assert load_corpus(cfg) == ["line 0", "line 1", "line 2"]


def test_corpus_errors(tmp_path):
    (tmp_path / "x.jsonl").write_text(json.dumps({"body": "a"}))
    with pytest.raises(DataError, match="no column 'text'"):
        load_corpus(CorpusConfig(source=str(tmp_path / "x.jsonl")))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no .* files"):
        load_corpus(CorpusConfig(source=str(tmp_path / "empty")))
    with pytest.raises(DataError, match="no world"):
        load_corpus(CorpusConfig(source="world"))


def test_token_budget_keeps_the_first_sentences_that_fit(world_models):
    _, tokenizer, _ = world_models
    sentences = ["she is a nurse .", "he is a pilot .", "the dog slept ."]  # 7 pieces each with [CLS] [SEP]
    assert [len(x) for x in tokenize(sentences, tokenizer, 24)] == [7, 7, 6]
    assert len(tokenize(sentences, tokenizer, 24, max_tokens=14)) == 2
    assert len(tokenize(sentences, tokenizer, 24, max_tokens=13)) == 1
    assert tokenize(sentences, tokenizer, 24, max_tokens=20, chunk=1) == tokenize(sentences, tokenizer, 24)
