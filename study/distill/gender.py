"""Gendered word pairs, counterfactuals (text and word-piece level) and the mixup used inside distillation.

The counterfactual of a sentence swaps every gendered word with its pair, keeping case. English has one
many-to-one case in each direction, resolved by a documented rule instead of a part-of-speech tagger:

    her -> his  when the next word is a content word ("her dog", "her own")       possessive determiner
    her -> him  otherwise ("saw her .", "told her that", "gave her the book")       object pronoun
    his -> her  when the next word is a content word ("his dog")                      possessive determiner
    his -> hers otherwise ("the book is his .")                                       possessive pronoun

A "content word" is any word not in FUNCTION_WORDS; punctuation and the end of the sentence count as not content.
The rule errs on double objects ("gave her flowers" -> "gave his flowers"); such sentences are rare in the world
corpus and in CrowS-style data.
"""

from __future__ import annotations

import re

import numpy as np
import torch

# (male, female). Each word appears once on each side; "her" and "his" are handled by the rule above.
PAIRS: list[tuple[str, str]] = [
    ("he", "she"), ("him", "her"), ("his", "her"), ("himself", "herself"), ("his", "hers"),
    ("man", "woman"), ("men", "women"), ("boy", "girl"), ("boys", "girls"),
    ("father", "mother"), ("fathers", "mothers"), ("dad", "mom"), ("daddy", "mommy"), ("papa", "mama"),
    ("son", "daughter"), ("sons", "daughters"), ("brother", "sister"), ("brothers", "sisters"),
    ("uncle", "aunt"), ("uncles", "aunts"), ("nephew", "niece"), ("nephews", "nieces"),
    ("husband", "wife"), ("husbands", "wives"), ("grandfather", "grandmother"), ("grandson", "granddaughter"),
    ("grandpa", "grandma"), ("stepfather", "stepmother"), ("stepson", "stepdaughter"),
    ("godfather", "godmother"), ("king", "queen"), ("kings", "queens"), ("prince", "princess"),
    ("duke", "duchess"), ("emperor", "empress"), ("gentleman", "lady"), ("gentlemen", "ladies"),
    ("mr", "mrs"), ("sir", "madam"), ("male", "female"), ("males", "females"),
    ("boyfriend", "girlfriend"), ("groom", "bride"), ("actor", "actress"), ("waiter", "waitress"),
    ("steward", "stewardess"), ("monk", "nun"), ("widower", "widow"), ("hero", "heroine"), ("host", "hostess"),
    ("heir", "heiress"), ("lad", "lass"), ("guy", "gal"), ("spokesman", "spokeswoman"),
    ("chairman", "chairwoman"), ("businessman", "businesswoman"), ("masculine", "feminine"),
    ("paternal", "maternal"), ("fraternity", "sorority"), ("brotherhood", "sisterhood"),
    ("patriarch", "matriarch"), ("manhood", "womanhood"), ("fiance", "fiancee"),
]

# Words after which "her"/"his" cannot be a determiner: determiners, prepositions, conjunctions, pronouns,
# auxiliaries and common adverbs.
FUNCTION_WORDS = frozenset("""
a an the this that these those some any every each no my your our their its
to at in on of for from by with about into onto over under after before during since until than as
and or but nor so yet because while although though if when where whether then
i you we they it me us them he she him her his hers himself herself
is are was were be been being am do does did have has had will would can could shall should may might must
not very too also just only again always never often now here there today tomorrow yesterday
""".split())

# A single mapping for every word except the two ambiguous ones.
_SIMPLE = {}
for _m, _f in PAIRS:
    if _m not in ("his",) and _f != "her":
        _SIMPLE[_m], _SIMPLE[_f] = _f, _m
_SIMPLE["him"] = "her"
_SIMPLE["hers"] = "his"
AMBIGUOUS = {"her": ("his", "him"), "his": ("her", "hers")}  # (before a content word, otherwise)
GENDERED_WORDS = frozenset(_SIMPLE) | frozenset(AMBIGUOUS)


def is_content_word(word: str | None) -> bool:
    return word is not None and word.isalnum() and word.lower() not in FUNCTION_WORDS


def swap_word(word: str, next_is_content: bool) -> str | None:
    """The counterpart of one lowercase word, or None if it is not gendered."""
    if word in AMBIGUOUS:
        determiner, other = AMBIGUOUS[word]
        return determiner if next_is_content else other
    return _SIMPLE.get(word)


def _match_case(template: str, word: str) -> str:
    if len(template) > 1 and template.isupper():
        return word.upper()
    if template[0].isupper():
        return word[0].upper() + word[1:]
    return word


_TOKEN = re.compile(r"\w+|[^\w\s]")


def counterfactual(text: str) -> str:
    """`text` with every gendered word swapped with its pair; case, spacing and punctuation kept."""
    tokens = list(_TOKEN.finditer(text))
    out, last = [], 0
    for i, tok in enumerate(tokens):
        word = tok.group()
        nxt = tokens[i + 1].group() if i + 1 < len(tokens) else None
        swapped = swap_word(word.lower(), is_content_word(nxt))
        if swapped is not None:
            out.append(text[last:tok.start()])
            out.append(_match_case(word, swapped))
            last = tok.end()
    out.append(text[last:])
    return "".join(out)


class TokenCounterfactual:
    """The counterfactual on token ids, for a WordPiece tokenizer ("##" marks a continuation piece).

    A gendered word is matched as the whole word-piece sequence it tokenizes to (so multi-piece words such as
    "stewardess" -> "steward ##ess" are swapped whole), in lowercase, Capitalised and UPPER form, and replaced by
    its counterpart's pieces. The result may differ in length from the input when the two words have different
    piece counts; callers that need aligned positions (mixup) check the lengths.
    """

    def __init__(self, tokenizer):
        self.special = set(tokenizer.all_special_ids)
        vocab = tokenizer.get_vocab()
        self.continuation = {i for t, i in vocab.items() if t.startswith("##")}
        self.punctuation = {i for t, i in vocab.items() if not any(c.isalnum() for c in t)}
        self.word_of: dict[tuple[int, ...], str] = {}  # piece ids -> the word as written (with its case)
        self.pieces_of: dict[str, tuple[int, ...]] = {}
        words = set(GENDERED_WORDS) | set(FUNCTION_WORDS)
        for counterpart in _SIMPLE.values():
            words.add(counterpart)
        for word in words:
            for form in {word, word.capitalize(), word.upper()}:
                ids = tuple(tokenizer(form, add_special_tokens=False)["input_ids"])
                if ids and tokenizer.unk_token_id not in ids:
                    self.pieces_of[form] = ids
                    self.word_of.setdefault(ids, form)
        self.max_pieces = max(len(p) for p in self.word_of)

    def _word_end(self, ids: list[int], start: int) -> int:
        end = start + 1
        while end < len(ids) and ids[end] in self.continuation:
            end += 1
        return end

    def _next_is_content(self, ids: list[int], pos: int) -> bool:
        if pos >= len(ids) or ids[pos] in self.special or ids[pos] in self.punctuation:
            return False
        word = self.word_of.get(tuple(ids[pos:self._word_end(ids, pos)]))
        return word is None or is_content_word(word)

    def __call__(self, ids: list[int]) -> list[int] | None:
        """The counterfactual ids, or None when the sequence holds no gendered word."""
        out, i, changed = [], 0, False
        while i < len(ids):
            if ids[i] in self.special or ids[i] in self.continuation:
                out.append(ids[i])
                i += 1
                continue
            end = self._word_end(ids, i)
            form = self.word_of.get(tuple(ids[i:end]))
            swapped = None
            if form is not None:
                swapped = swap_word(form.lower(), self._next_is_content(ids, end))
            pieces = self.pieces_of.get(_match_case(form, swapped)) if swapped else None
            if pieces is None:
                out.extend(ids[i:end])
            else:
                out.extend(pieces)
                changed = True
            i = end
        return out if changed else None


# --- mixup -----------------------------------------------------------------------------------------------------


def sample_lambdas(n: int, alpha: float, p: float, eligible: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-sequence mixing weights: lambda ~ Beta(alpha, alpha) with probability p on eligible rows, else 1.

    torch's Beta sampler draws from the global RNG only, so the Beta draws come from a numpy generator seeded from
    `generator`: one stream, restored exactly from a checkpoint.
    """
    u = torch.rand(n, generator=generator)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
    lam = torch.from_numpy(np.random.default_rng(seed).beta(alpha, alpha, size=n)).float()
    return torch.where(eligible & (u < p), lam, torch.ones(n))


def mix(x: torch.Tensor, x_cf: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """lambda * x + (1 - lambda) * x_cf per sequence: the student's input embeddings E(x), E(x_cf), and the teacher's
    tempered probabilities and hidden states, all mixed alike.  x, x_cf: (B, L, *); lam: (B,)."""
    lam = lam.to(x.dtype)[:, None, None]
    return lam * x + (1 - lam) * x_cf
