"""Counterfactual swaps on tricky sentences, at text and word-piece level, and the mixup pieces."""

import pytest
import torch
from transformers import BertTokenizer

from study.distill.gender import PAIRS, TokenCounterfactual, counterfactual, mix, sample_lambdas, swap_word


@pytest.mark.parametrize("text, expected", [
    ("She gave her dog to him.", "He gave his dog to her."),
    ("I saw her.", "I saw him."),
    ("I told her that it was late", "I told him that it was late"),
    ("Her own mother, the actress, met Mr. Smith.", "His own father, the actor, met Mrs. Smith."),
    ("HE said the book is his.", "SHE said the book is hers."),
    ("The book is hers; his pen is red!", "The book is his; her pen is red!"),
    ("The nurse smiled.", "The nurse smiled."),  # no gendered word: unchanged
    ("Brothers and sisters", "Sisters and brothers"),
    ("the stewardess helped herself", "the steward helped himself"),
])
def test_text_counterfactual(text, expected):
    assert counterfactual(text) == expected


def test_counterfactual_is_an_involution_where_unambiguous():
    text = "The king told his sister that the queen was her aunt."
    assert counterfactual(counterfactual(text)) == text


def test_every_pair_swaps_both_ways_and_each_word_is_listed_once():
    for male, female in PAIRS:  # her and his swap by what follows them: one of the two contexts gives the pair
        assert female in {swap_word(male, content) for content in (True, False)}, male
        assert male in {swap_word(female, content) for content in (True, False)}, female
    males = [m for m, _ in PAIRS if m != "his"]
    females = [f for _, f in PAIRS if f != "her"]
    assert len(males) == len(set(males)) and len(females) == len(set(females))
    assert not set(males) & set(females)


@pytest.fixture(scope="module")
def tokenizer():
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "the", "he", "she", "him", "her", "his", "hers",
             "saw", "dog", "steward", "##ess", "st", "##ew", "##ard", "helped", "himself", "herself", "man", "woman",
             "that", "nurse", "is", "a"]
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)


def _swap(tokenizer, text):
    out = TokenCounterfactual(tokenizer)(tokenizer(text)["input_ids"])
    return None if out is None else tokenizer.decode(out, skip_special_tokens=True)


def test_token_counterfactual_her_rule(tokenizer):
    assert _swap(tokenizer, "he saw her dog .") == "she saw his dog."
    assert _swap(tokenizer, "he saw her .") == "she saw him."
    assert _swap(tokenizer, "he saw her") == "she saw him"  # [SEP] after her: not a determiner
    assert _swap(tokenizer, "the dog is his .") == "the dog is hers."


def test_token_counterfactual_multi_piece(tokenizer):
    ids = tokenizer("the stewardess helped herself")["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids)[2:4] == ["steward", "##ess"]
    out = TokenCounterfactual(tokenizer)(ids)
    assert tokenizer.convert_ids_to_tokens(out) == ["[CLS]", "the", "steward", "helped", "himself", "[SEP]"]
    assert len(out) == len(ids) - 1  # lengths may differ: mixup then leaves the sequence unmixed


def test_token_counterfactual_none_without_gender(tokenizer):
    assert _swap(tokenizer, "the nurse saw the dog .") is None


def test_mix_at_lambda_one_is_identity():
    e, e_cf = torch.randn(2, 3, 4), torch.randn(2, 3, 4)
    assert torch.equal(mix(e, e_cf, torch.ones(2)), e)
    assert torch.equal(mix(e, e_cf, torch.zeros(2)), e_cf)


def test_mix_by_hand():
    e, e_cf = torch.zeros(1, 1, 2), torch.ones(1, 1, 2)
    assert torch.allclose(mix(e, e_cf, torch.tensor([0.25])), torch.full((1, 1, 2), 0.75))


def test_sample_lambdas_respects_eligibility_and_p():
    g = torch.Generator().manual_seed(0)
    eligible = torch.tensor([True, False] * 500)
    lam = sample_lambdas(1000, 0.4, 0.5, eligible, g)
    assert torch.all(lam[1::2] == 1)  # never mixed when not eligible
    mixed = (lam[0::2] < 1).float().mean().item()
    assert 0.4 < mixed < 0.6  # about p of the eligible ones
    assert torch.all((lam > 0) & (lam <= 1))
    g2 = torch.Generator().manual_seed(0)
    assert torch.equal(lam, sample_lambdas(1000, 0.4, 0.5, eligible, g2))  # one seeded stream
