"""Batched masked-token log-probabilities, shared by the pseudo-log-likelihood metrics (CrowS-Pairs, StereoSet).

For each (sequence, positions) item, every position gets its own copy of the sequence with that one token masked;
all copies of all items are sorted by length and run in batches, so a benchmark is a few dozen forward passes
instead of one per token.
"""

from __future__ import annotations

import numpy as np
import torch

from study.distill.data import pad
from study.distill.models import logits_at


@torch.no_grad()
def masked_token_logprobs(model, tokenizer, items: list[tuple[list[int], list[int]]],
                          batch_size: int = 128) -> list[np.ndarray]:
    """For each (ids, positions): log P(ids[p] | ids with p masked) for every p in positions."""
    model.eval()
    device = next(model.parameters()).device
    copies = [(len(ids), n, p) for n, (ids, positions) in enumerate(items) for p in positions]
    copies.sort()  # similar lengths together: less padding
    out = [np.empty(len(positions)) for _, positions in items]
    slot = {}
    for n, (_, positions) in enumerate(items):
        for k, p in enumerate(positions):
            slot[(n, p)] = k
    for start in range(0, len(copies), batch_size):
        chunk = copies[start:start + batch_size]
        seqs = [list(items[n][0]) for _, n, _ in chunk]
        originals = [seqs[i][p] for i, (_, _, p) in enumerate(chunk)]
        for i, (_, _, p) in enumerate(chunk):
            seqs[i][p] = tokenizer.mask_token_id
        ids, attn = pad(seqs, tokenizer.pad_token_id)
        rows = torch.arange(len(chunk), device=device)
        cols = torch.tensor([p for _, _, p in chunk], device=device)
        logits = logits_at(model, ids.to(device), attn.to(device), rows, cols)  # (B, V): the masked positions only
        logp = torch.log_softmax(logits.float(), dim=-1)
        values = logp[rows, torch.tensor(originals, device=device)].cpu().numpy()
        for i, (_, n, p) in enumerate(chunk):
            out[n][slot[(n, p)]] = values[i]
    return out
