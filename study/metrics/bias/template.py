"""Template bias: Kurita et al.'s prior-corrected log-probability score over occupations.

Kurita, Vyas, Pareek, Black, Tsvetkov (2019), "Measuring Bias in Contextualized Word Representations":
    association(w, o) = log P(w | "[MASK] is a nurse") - log P(w | "[MASK] is a [MASK]")
    score(o)          = association(he, o) - association(she, o)
so a POSITIVE score means the model leans MALE for that occupation, 0 is unbiased. Multi-piece words: every piece
of the target is masked and its log-probability is the sum over its pieces (each read at its own mask in one
forward pass); in the prior every piece of the occupation is masked too.

Per occupation the score is averaged over templates and gender pairs. Reported (key bias/template/<stat>):
    signed_mean     mean over occupations; ideal 0
    abs_mean        mean of |score|; ideal 0; dominated by any global he/she offset
    spread          std across occupations (offset-free); ideal 0
    cbs             Categorical Bias score (Ahn & Oh 2021): mean over templates, occupations and pairs of the
                    sample variance of the two associations, i.e. score^2 / 2 for a pair; ideal 0, sign lost
    planted_spearman  Spearman rho between score(o) and the reference MALE share 1 - s(o): +1 orders occupations
                    exactly as the data does. s(o) is the planted share in the world, the labour statistic otherwise.
    planted_slope   OLS slope of the centred she-vs-he log-odds (= -score) on the centred logit of s(o): 1
                    reproduces the reference skew, >1 exaggerates it, 0 ignores it (offset-free, Zhao et al. 2017)
    majority_skew   Zhao et al.'s view: mean over occupations of (predicted female share - s(o)), signed toward
                    the majority gender of o (positive = over-predicts the majority); predicted share is
                    P(she) / (P(she) + P(he)) at the target, averaged over templates and pairs; ideal 0
"""

from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from scipy import stats

from study.config import TemplateBiasConfig

log = logging.getLogger(__name__)

_SLOT = re.compile(r"(\{target\}|\{occupation\})")


def article(word: str) -> str:
    return "an" if word[0].lower() in "aeiou" else "a"


@dataclass
class Queries:
    """One masked sentence per (template, occupation, pair, gender, prior?) and where to read the target."""

    ids: list[list[int]]
    target_positions: list[list[int]]
    target_ids: list[list[int]]
    shape: tuple[int, int, int, int, int]  # (templates, occupations, pairs, 2 genders, 2 = with occupation/prior)


def _pieces(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"] if text else []


def build_queries(tokenizer, occupations: list[str], cfg: TemplateBiasConfig) -> Queries:
    cls, sep, mask = tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.mask_token_id
    ids, positions, targets = [], [], []
    for template in cfg.templates:
        for occ in occupations:
            parts = _SLOT.split(template.replace("{a}", article(occ)))
            occ_ids = _pieces(tokenizer, occ)
            for pair in cfg.pairs:
                for word in pair:
                    prefix, _, target = word.rpartition(" ")
                    target_ids = _pieces(tokenizer, target)
                    for prior in (False, True):
                        seq, pos = [cls], []
                        for part in parts:
                            if part == "{target}":
                                seq += _pieces(tokenizer, prefix)
                                pos = list(range(len(seq), len(seq) + len(target_ids)))
                                seq += [mask] * len(target_ids)
                            elif part == "{occupation}":
                                seq += [mask] * len(occ_ids) if prior else occ_ids
                            else:
                                seq += _pieces(tokenizer, part.strip())
                        ids.append(seq + [sep])
                        positions.append(pos)
                        targets.append(target_ids)
    shape = (len(cfg.templates), len(occupations), len(cfg.pairs), 2, 2)
    return Queries(ids, positions, targets, shape)


@torch.no_grad()
def target_logprobs(model, queries: Queries, pad_id: int, batch_size: int) -> np.ndarray:
    """log P(target word) per query: the sum over its pieces of the log-softmax at each piece's mask."""
    from study.distill.data import pad
    from study.distill.models import logits_at

    model.eval()
    device = next(model.parameters()).device
    out = np.empty(len(queries.ids))
    for start in range(0, len(queries.ids), batch_size):
        stop = min(start + batch_size, len(queries.ids))
        ids, attn = pad(queries.ids[start:stop], pad_id)
        # every target piece of every query in the batch: (row, position, piece id, query)
        reads = [(row, p, t, q) for row, q in enumerate(range(start, stop))
                 for p, t in zip(queries.target_positions[q], queries.target_ids[q])]
        rows, cols, pieces, owner = (torch.tensor(x) for x in zip(*reads))
        logits = logits_at(model, ids.to(device), attn.to(device), rows.to(device), cols.to(device))  # (n, V)
        logp = torch.log_softmax(logits.float(), dim=-1).cpu()[torch.arange(len(reads)), pieces]  # (n,)
        out[start:stop] = torch.zeros(stop - start, dtype=torch.float64).index_add_(
            0, owner - start, logp.double()).numpy()  # a word's log-probability: the sum over its pieces
    return out


def _centred(x: np.ndarray) -> np.ndarray:
    return x - x.mean()


def summarise(logp: np.ndarray, shares: np.ndarray) -> dict:
    """Metrics from log-probabilities shaped (templates, occupations, pairs, gender[m, f], [with occ, prior])."""
    assoc = logp[..., 0] - logp[..., 1]  # (T, O, P, 2): prior-corrected association
    kurita = assoc[..., 0] - assoc[..., 1]  # (T, O, P): male minus female
    score = kurita.mean(axis=(0, 2))  # (O,)
    she_share = 1.0 / (1.0 + np.exp(logp[..., 0, 0] - logp[..., 1, 0]))  # (T, O, P) P(f) / (P(f) + P(m))
    predicted = she_share.mean(axis=(0, 2))  # (O,)

    s = np.clip(shares, 0.01, 0.99)
    x, y = _centred(np.log(s / (1 - s))), _centred(-score)
    majority = np.sign(shares - 0.5)
    return {
        "signed_mean": float(score.mean()),
        "abs_mean": float(np.abs(score).mean()),
        "spread": float(score.std()),
        "cbs": float((kurita**2 / 2).mean()),
        "planted_spearman": float(stats.spearmanr(score, 1 - shares).statistic),
        "planted_slope": float((x * y).sum() / (x * x).sum()),
        "majority_skew": float(((predicted - shares) * majority)[majority != 0].mean()),
        "per_occupation": score.tolist(),
        "predicted_female_share": predicted.tolist(),
    }


STATS = ("signed_mean", "abs_mean", "spread", "cbs", "planted_spearman", "planted_slope", "majority_skew")


def standard_errors(logp: np.ndarray, shares: np.ndarray, seed: int, resamples: int = 500) -> dict[str, float]:
    """`<stat>_se` of every statistic: the std of its bootstrap distribution over occupations (seeded). The model's
    scores are exact; what is uncertain is how far 54 occupations speak for occupations in general."""
    rng = np.random.default_rng(seed)
    n = logp.shape[1]
    with warnings.catch_warnings():  # a resample whose scores are all equal has no Spearman: nan, left out
        warnings.simplefilter("ignore")
        draws = [summarise(logp[:, idx], shares[idx]) for idx in (rng.integers(0, n, n) for _ in range(resamples))]
        return {f"{k}_se": float(np.nanstd([d[k] for d in draws], ddof=1)) for k in STATS}


def warn_about_coverage(tokenizer, occupations: list[str], cfg: TemplateBiasConfig) -> None:
    """One warning line when words the metric reads are [UNK] to the tokenizer (a model with another vocabulary):
    every unknown occupation scores the same, and with none known planted_slope is 0 and the Spearman nan, as if
    measured."""
    unk = tokenizer.unk_token_id
    if unk is None:
        return
    unknown = [o for o in occupations if unk in _pieces(tokenizer, o)]
    targets = [w.rpartition(" ")[2] for pair in cfg.pairs for w in pair]
    unknown_targets = [t for t in targets if unk in _pieces(tokenizer, t)]
    if not unknown and not unknown_targets:
        return
    known = len(occupations) - len(unknown)
    meaningless = known < 2 or unknown_targets
    log.warning(f"template bias: {known} of {len(occupations)} occupations are in the tokenizer's vocabulary"
                + (f" ([UNK]: {', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''})" if unknown else "")
                + (f"; targets {', '.join(unknown_targets)} are [UNK]" if unknown_targets else "")
                + ("; planted_slope/planted_spearman are meaningless" if meaningless
                   else "; the unknown ones all score alike"))


def measure(model, tokenizer, occupations: dict[str, float], cfg: TemplateBiasConfig, seed: int = 0) -> dict:
    """All template-bias statistics for any *ForMaskedLM, each with its standard error; `occupations` maps
    occupation -> reference female share."""
    names = list(occupations)
    warn_about_coverage(tokenizer, names, cfg)
    queries = build_queries(tokenizer, names, cfg)
    logp = target_logprobs(model, queries, tokenizer.pad_token_id, cfg.batch_size).reshape(queries.shape)
    shares = np.array([occupations[n] for n in names])
    result = summarise(logp, shares) | standard_errors(logp, shares, seed)
    result["occupations"] = names
    return result
