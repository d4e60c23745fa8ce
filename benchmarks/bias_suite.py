"""CrowS-Pairs gender scoring: kdstudy's batched scorer vs the one-sentence-at-a-time loop of the original metric.

Same model (the built-in world's teacher, or --model), same 262 pairs, same run; both produce the same
per-sentence pseudo-log-likelihoods (checked). The loop masks one unmodified token per forward pass, as Nangia et
al.'s metric.py does.

    python benchmarks/bias_suite.py [--model DIR] [--data-dir DIR] [--pairs 262]     # after `kdstudy data fetch crows`

Last line: `ratio: X` = loop seconds / batched seconds (the speed-up).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from study.config import WorldConfig
from study.distill.models import load_masked_lm
from study.metrics.bias import crows
from study.metrics.bias.scoring import masked_token_logprobs
from study.metrics.bias_data import default_dir
from study.runtime import quiet_libraries, setup_logging
from study.world.build import build_world


@torch.no_grad()
def one_at_a_time(model, tokenizer, items) -> list[float]:
    out = []
    for ids, positions in items:
        total = 0.0
        for p in positions:
            masked = torch.tensor([ids])
            masked[0, p] = tokenizer.mask_token_id
            total += torch.log_softmax(model(input_ids=masked).logits[0, p], -1)[ids[p]].item()
        out.append(total)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model")
    parser.add_argument("--data-dir", default=str(default_dir()), help="default: where `kdstudy data fetch` puts it")
    parser.add_argument("--pairs", type=int, default=262)
    args = parser.parse_args()
    quiet_libraries()
    setup_logging()  # the world build and the teacher measurement say what they do
    model, tokenizer = load_masked_lm(args.model or build_world(WorldConfig()).teacher_dir)
    pairs = crows.load_pairs(args.data_dir)[: args.pairs]
    items = []
    for row in pairs:
        more = tokenizer(row["sent_more"], truncation=True)["input_ids"]
        less = tokenizer(row["sent_less"], truncation=True)["input_ids"]
        p_more, p_less = crows.unmodified_positions(more, less)
        items += [(more, p_more), (less, p_less)]
    n_forward = sum(len(p) for _, p in items)

    masked_token_logprobs(model, tokenizer, items[:20])  # warm-up
    start = time.perf_counter()
    batched = [lp.sum() for lp in masked_token_logprobs(model, tokenizer, items, batch_size=128)]
    t_batched = time.perf_counter() - start
    start = time.perf_counter()
    loop = one_at_a_time(model, tokenizer, items)
    t_loop = time.perf_counter() - start

    diff = float(np.max(np.abs(np.array(batched) - np.array(loop))))
    print(f"{len(pairs)} pairs, {len(items)} sentences, {n_forward} masked tokens")
    print(f"batched: {t_batched:.2f}s; one at a time: {t_loop:.2f}s; max |PLL difference| {diff:.2e}")
    print(f"ratio: {t_loop / t_batched:.2f}")


if __name__ == "__main__":
    main()
