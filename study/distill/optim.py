"""The optimiser every training loop here uses: AdamW with linear warmup and decay, and the clipped step.

The world's teacher pretraining, the distillation and GLUE fine-tuning all take it, each with its own OptimConfig
(the clip included), so no loop hard-codes a clip or builds its own schedule.
"""

from __future__ import annotations

import math

import torch
from transformers import get_linear_schedule_with_warmup

from study.config import OptimConfig


def make_optimizer(model: torch.nn.Module, cfg: OptimConfig, total_steps: int, decay_all: bool = False,
                   fused: bool = False):
    """AdamW without decay on biases and LayerNorms (DistilBERT's recipe; `decay_all` decays every parameter, as the
    GLUE fine-tuning recipe here always has), linear warmup over cfg.warmup of the steps, then linear decay.
    `fused` (for CUDA) updates all parameters in one kernel instead of a few per parameter group."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        norm_or_bias = name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name
        (no_decay if norm_or_bias and not decay_all else decay).append(param)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, fused=fused or None)
    scheduler = get_linear_schedule_with_warmup(optimizer, math.ceil(cfg.warmup * total_steps), total_steps)
    return optimizer, scheduler


def clipped_step(model: torch.nn.Module, optimizer, scheduler, clip: float) -> None:
    """After backward: clip the gradient norm, step the optimiser and the schedule, clear the gradients."""
    torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
