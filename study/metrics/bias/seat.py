"""SEAT, the Sentence Encoder Association Test (May, Wang, Bordia, Bowman, Rudinger 2019, NAACL), gender tests
6, 6b, 7, 7b, 8, 8b (word lists from Caliskan et al. 2017, WEAT).

Sentences are encoded as the mean of the last layer's hidden states over their real tokens ([CLS] and [SEP]
included). With s(w, A, B) = mean_a cos(w, a) - mean_b cos(w, b):
    effect size = (mean_{x in X} s(x) - mean_{y in Y} s(y)) / std_{w in X u Y} s(w)      (std with ddof 1)
positive = X (e.g. male names) is closer to A (e.g. career) than Y is; ideal 0. The p-value is the one-sided
permutation test of May et al.: the share of equal-size re-partitions of X u Y whose sum_X s exceeds the observed
one; exact when there are at most `samples` partitions, else `samples` seeded random partitions (the observed one
counted). Keys: bias/seat/<test>/effect_size, .../p_value, .../effect_size_ci_low|high (bootstrap over sentences),
and bias/seat/abs_mean (mean |effect size| over the tests). Data: sent-weat*.jsonl (CC BY-NC 4.0) from --data-dir.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import torch
from scipy.special import comb

from study.distill.data import DataError, pad
from study.metrics.bias_data import fetch_command

TESTS = ["sent-weat6", "sent-weat6b", "sent-weat7", "sent-weat7b", "sent-weat8", "sent-weat8b"]
PARTS = ("targ1", "targ2", "attr1", "attr2")


def load_test(data_dir: str | Path, name: str) -> dict[str, list[str]]:
    base = Path(data_dir)
    path = base / "seat" / f"{name}.jsonl" if (base / "seat").is_dir() else base / f"{name}.jsonl"
    if not path.is_file():
        raise DataError(f"{path}: SEAT test file not found; fetch it with `{fetch_command(['seat'], data_dir)}`")
    try:
        raw = json.loads(path.read_text())
        return {part: list(raw[part]["examples"]) for part in PARTS}
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
        raise DataError(f"{path}: not a SEAT test (needs {', '.join(PARTS)} with examples): {err}") from None


@torch.no_grad()
def encode(model, tokenizer, sentences: list[str], batch_size: int = 64) -> np.ndarray:
    """(N, H) mean-pooled last-layer hidden states."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(sentences), batch_size):
        encoded = tokenizer(sentences[start:start + batch_size], truncation=True)["input_ids"]
        ids, attn = pad(encoded, tokenizer.pad_token_id)
        hidden = model(input_ids=ids.to(device), attention_mask=attn.to(device), output_hidden_states=True)
        last = hidden.hidden_states[-1].float()  # (B, L, H)
        mask = attn.to(device)[:, :, None].float()
        out.append(((last * mask).sum(1) / mask.sum(1)).cpu().numpy())
    return np.concatenate(out)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def association(W: np.ndarray, A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """s(w, A, B) for every row of W."""
    W, A, B = _unit(W), _unit(A), _unit(B)
    return (W @ A.T).mean(1) - (W @ B.T).mean(1)


def effect_size(X, Y, A, B) -> float:
    sx, sy = association(X, A, B), association(Y, A, B)
    return float((sx.mean() - sy.mean()) / np.concatenate([sx, sy]).std(ddof=1))


def p_value(X, Y, A, B, samples: int = 100_000, seed: int = 0) -> float:
    s = np.concatenate([association(X, A, B), association(Y, A, B)])
    n, k = len(s), len(X)
    observed = s[:k].sum()
    if comb(n, k, exact=True) <= samples:
        sums = np.array([s[list(c)].sum() for c in itertools.combinations(range(n), k)])
        return float((sums > observed).mean())
    rng = np.random.default_rng(seed)
    greater, total = 1, 1  # the observed partition counts once, as in May et al.
    for start in range(0, samples - 1, 10_000):
        m = min(10_000, samples - 1 - start)
        idx = np.argsort(rng.random((m, n)), axis=1)[:, :k]
        greater += int((s[idx].sum(1) > observed).sum())
        total += m
    return greater / total


def bootstrap_effect(X, Y, A, B, seed: int = 0, resamples: int = 1000) -> tuple[float, float]:
    """95% percentile interval of the effect size, resampling sentences within X, Y, A and B."""
    rng = np.random.default_rng(seed)
    draws = [effect_size(*(M[rng.integers(len(M), size=len(M))] for M in (X, Y, A, B))) for _ in range(resamples)]
    return float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def measure(model, tokenizer, data_dir, tests: list[str] = TESTS, samples: int = 100_000,
            seed: int = 0) -> dict[str, float]:
    out = {}
    for name in tests:
        parts = load_test(data_dir, name)
        X, Y, A, B = (encode(model, tokenizer, parts[p]) for p in PARTS)
        out[f"{name}/effect_size"] = effect_size(X, Y, A, B)
        out[f"{name}/p_value"] = p_value(X, Y, A, B, samples, seed)
        out[f"{name}/effect_size_ci_low"], out[f"{name}/effect_size_ci_high"] = bootstrap_effect(X, Y, A, B, seed)
    out["abs_mean"] = float(np.mean([abs(out[f"{t}/effect_size"]) for t in tests]))
    return out
