"""Tokens/s of kdstudy's distillation loop vs a bare PyTorch loop doing the same computation.

Same teacher, same student initialisation, same corpus and batch order, same masking, same three loss terms,
same optimiser; the bare loop is written inline with no batching helpers, checkpoints, progress bar or callbacks.
Runs alternate (ours, bare, ours, bare, ...) so both see the same machine state; the median of each is compared.

    python benchmarks/distill_throughput.py [--steps 150] [--repeats 3]

Last line: `ratio: X` = ours / bare tokens per second.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from study.config import DistillConfig, WorldConfig
from study.distill.data import pad, plan_masking, selection_weights, tokenize
from study.distill.loop import train
from study.distill.models import load_masked_lm, make_student
from study.distill.optim import make_optimizer
from study.runtime import setup_logging
from study.world.build import build_world


def ours(cfg, teacher, tokenizer, ids) -> float:
    student = make_student(teacher, 2)
    return train(cfg, teacher, student, tokenizer, ids)["perf/tokens_per_s"]


def bare(cfg, teacher, tokenizer, ids) -> float:
    """The same step written flat, as one would without kdstudy."""
    torch.manual_seed(cfg.seed)
    student = make_student(teacher, 2).train()
    teacher.eval()
    weights = selection_weights(ids, len(tokenizer), tokenizer.all_special_ids, cfg.masking)
    optimizer, scheduler = make_optimizer(student, cfg.optim, cfg.steps)
    generator = torch.Generator().manual_seed(cfg.seed * 1000)
    sampler = DistributedSampler(range(len(ids)), num_replicas=1, rank=0, shuffle=True, seed=cfg.seed, drop_last=True)
    order = list(sampler)
    T = cfg.loss.temperature
    tokens, seconds = 0, 0.0
    for step in range(cfg.steps):
        tick = time.perf_counter()
        batch = [ids[i] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
        input_ids, attn = pad(batch, tokenizer.pad_token_id)
        plan = plan_masking(input_ids, weights, cfg.masking, tokenizer.mask_token_id, generator)
        masked, labels = plan.apply(input_ids)
        s = student(input_ids=masked, attention_mask=attn, output_hidden_states=True)
        with torch.no_grad():
            t = teacher(input_ids=masked, attention_mask=attn, output_hidden_states=True)
        sel = attn.bool()
        loss_kl = F.kl_div(F.log_softmax(s.logits[sel] / T, -1), F.softmax(t.logits[sel] / T, -1),
                           reduction="batchmean") * T**2
        loss_mlm = F.cross_entropy(s.logits.flatten(0, 1), labels.flatten(), ignore_index=-100)
        loss_cos = (1 - F.cosine_similarity(s.hidden_states[-1][sel], t.hidden_states[-1][sel], dim=-1)).mean()
        loss = cfg.loss.alpha_ce * loss_kl + cfg.loss.alpha_mlm * loss_mlm + cfg.loss.alpha_cos * loss_cos
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), cfg.optim.clip)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        seconds += time.perf_counter() - tick
        tokens += int(attn.sum())
    assert math.isfinite(loss.item())
    return tokens / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    setup_logging()  # a first run builds the world: minutes, said as it goes
    torch.manual_seed(0)
    world = build_world(WorldConfig())
    teacher, tokenizer = load_masked_lm(world.teacher_dir)
    ids = tokenize(world.sentences, tokenizer, 32)
    cfg = DistillConfig(steps=args.steps, batch_size=32, max_length=32, log_every=args.steps)
    import transformers

    transformers.logging.set_verbosity_error()
    runs = {"ours": [], "bare": []}
    ours(cfg, teacher, tokenizer, ids[:2000])  # warm-up: allocator, thread pools
    for r in range(args.repeats):
        runs["ours"].append(ours(cfg, teacher, tokenizer, ids))
        runs["bare"].append(bare(cfg, teacher, tokenizer, ids))
        print(f"repeat {r + 1}: ours {runs['ours'][-1]:.0f} tok/s, bare {runs['bare'][-1]:.0f} tok/s", flush=True)
    o, b = statistics.median(runs["ours"]), statistics.median(runs["bare"])
    print(f"median tokens/s: ours {o:.0f}, bare {b:.0f} ({args.steps} steps x {args.repeats} repeats, batch 32)")
    print(f"ratio: {o / b:.3f}")


if __name__ == "__main__":
    main()
