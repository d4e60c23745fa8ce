"""One worker's distillation loop: a BERT teacher into a DistilBERT-style student, with the gender mitigations.

Written so that Ray Train can run it on N workers unchanged: no globals, every random draw from a per-rank
generator, a DistributedSampler that shards by (rank, world_size), DDP only when a process group exists, and
logging on rank 0. It imports neither Ray nor MLflow; callers pass callbacks.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
from tqdm.auto import tqdm

from study.config import DistillConfig
from study.device import describe
from study.distill.batches import DistillData, assemble, make_plan
from study.distill.checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from study.distill.data import selection_weights
from study.distill.fused_loss import loss_route
from study.distill.optim import clipped_step, make_optimizer
from study.distill.step import MixupStudent, loss_step
from study.errors import Diverged

log = logging.getLogger(__name__)


def total_steps(cfg: DistillConfig, steps_per_epoch: int) -> int:
    return cfg.steps if cfg.steps is not None else max(1, math.ceil(cfg.epochs * steps_per_epoch))


def window_mean(window: dict[str, torch.Tensor], steps: int, distributed: bool) -> dict[str, float]:
    """`distill/<term>`: each loss term averaged over the window's steps (and over ranks, so that every rank logs and
    judges divergence on the same mean). Reads device values: a sync."""
    mean = torch.stack(list(window.values())) / steps
    if distributed:
        dist.all_reduce(mean)
        mean /= dist.get_world_size()
    return {f"distill/{k}": v for k, v in zip(window, mean.tolist())}


def compile_on(cfg: DistillConfig, device: torch.device) -> bool:
    """distill.compile with auto resolved: on CUDA, where it measured faster, off elsewhere."""
    return device.type == "cuda" if cfg.compile == "auto" else cfg.compile


def device_teacher(teacher, device: torch.device, bf16: bool = True):
    """The teacher as the step uses it: on CUDA (with `bf16`) a copy with its weights cast to bf16 once, leaving the
    caller's fp32 module as it was (the student is made from it); elsewhere the teacher itself, on the device."""
    if device.type == "cuda" and bf16:
        return copy.deepcopy(teacher).to(device=device, dtype=torch.bfloat16).eval()
    return teacher.to(device).eval()


def train(
    cfg: DistillConfig,
    teacher,
    student,
    tokenizer,
    corpus_ids: list[list[int]],
    *,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str = "cpu",
    checkpoint_dir: Path | None = None,
    stop_at: int | None = None,
    on_log: Callable[[int, int, dict], None] | None = None,
    on_checkpoint: Callable[[int, int, Path, dict], None] | None = None,
    progress_bar: bool = True,
) -> dict[str, float]:
    """Distil `teacher` into `student` for cfg's budget; resumes from `checkpoint_dir` if it holds a checkpoint.

    `stop_at` ends the run after that step (with a checkpoint), as an interruption would. `on_log(step, total,
    metrics)` runs on rank 0 at each log step; `on_checkpoint(step, total, dir, metrics)` on every rank after each
    checkpoint is written (Ray Train reports it; step == total is the last). Returns the final
    `distill/*` metrics: the loss terms averaged over the last log window (and over ranks) and `perf/tokens_per_s`.
    """
    device = torch.device(device)
    torch.manual_seed(cfg.seed + rank)  # dropout; ranks differ so their dropout masks do too
    generator = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    data = DistillData(corpus_ids, tokenizer, cfg, rank, world_size)
    weights = selection_weights(data.ids, len(tokenizer), tokenizer.all_special_ids, cfg.masking)
    total = total_steps(cfg, data.steps_per_epoch)
    teacher = device_teacher(teacher, device, cfg.teacher_bf16)
    student.to(device).train()
    optimizer, scheduler = make_optimizer(student, cfg.optim, total, fused=device.type == "cuda")
    step, last = 0, {}
    if checkpoint_dir is not None and (Path(checkpoint_dir) / CHECKPOINT).is_file():
        step, last = load_checkpoint(Path(checkpoint_dir), rank, student, optimizer, scheduler, generator)
    # Ray Train sets up a process group even for one worker; DDP there would only copy gradients around.
    distributed = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    model = MixupStudent(student)
    if distributed:
        model = torch.nn.parallel.DistributedDataParallel(model)
    teacher_encoder = None
    compiled = compile_on(cfg, device)
    if compiled:  # wrappers only: the caller's teacher and student stay uncompiled modules
        model = torch.compile(model)
        teacher_encoder = torch.compile(teacher.base_model)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    route = loss_route(cfg.loss_chunk, cfg.fused_loss, device.type)
    if rank == 0:
        dtype = str(next(teacher.parameters()).dtype).removeprefix("torch.")
        log.info(f"distilling on {describe(device)}: {route} loss, teacher in {dtype}, "
                 f"compile {'on' if compiled else 'off'}")

    end = min(total, stop_at) if stop_at is not None else total
    bar = tqdm(total=total, initial=step, desc="distill", disable=rank != 0 or not progress_bar, dynamic_ncols=True,
               mininterval=1.0)
    window = {k: torch.zeros((), device=device) for k in ("loss_kl", "loss_mlm", "loss_cos", "loss")}
    window_steps, tokens, seconds = 0, 0, 0.0
    while step < end:
        epoch, offset = divmod(step, data.steps_per_epoch)
        for index in data.batches(epoch, skip=offset):
            tick = time.perf_counter()
            # Assembled and planned on the host; with no sync inside the step, the host gets here while the GPU
            # still runs the previous step, so the next batch is ready when the GPU is.
            batch = assemble(data, index, cfg, tokenizer, weights, generator)
            plan = make_plan(batch, cfg.loss.kl_positions).to(device) if cfg.loss_chunk else None
            n_real = batch.n_real
            batch = batch.to(device)
            with autocast:
                losses = loss_step(model, teacher, batch, cfg, plan, teacher_encoder, route == "fused")
                loss = losses["loss"]
            loss.backward()
            clipped_step(model, optimizer, scheduler, cfg.optim.clip)
            step += 1
            tokens += n_real

            for k, v in losses.items():
                window[k] += v.detach()
            window_steps += 1
            log_step = step % cfg.log_every == 0 or step == end
            # Reading the window's mean forces a device sync, so it happens on log steps only; the wait is part of the
            # steps' time.
            logged = window_mean(window, window_steps, distributed) if log_step else None
            seconds += time.perf_counter() - tick
            if logged is not None:
                last = logged
                if not math.isfinite(last["distill/loss"]):
                    raise Diverged(f"loss is {last['distill/loss']} at step {step} "
                                   f"(kl {last['distill/loss_kl']}, mlm {last['distill/loss_mlm']}, "
                                   f"cos {last['distill/loss_cos']})")
                last["perf/tokens_per_s"] = tokens * world_size / seconds
                last["distill/lr"] = scheduler.get_last_lr()[0]
                window = {k: torch.zeros_like(v) for k, v in window.items()}
                window_steps = 0
                bar.set_postfix(loss=f"{last['distill/loss']:.3f}", tok_s=f"{last['perf/tokens_per_s']:.0f}")
                if on_log is not None and rank == 0:
                    on_log(step, total, last)
            bar.update(1)
            checkpoint_due = cfg.checkpoint_every and step % cfg.checkpoint_every == 0
            if checkpoint_dir is not None and (checkpoint_due or step == end):
                save_checkpoint(Path(checkpoint_dir), rank, step, student, optimizer, scheduler, generator, last)
                if on_checkpoint is not None:
                    on_checkpoint(step, total, Path(checkpoint_dir), last)
            if step >= end:
                break
    bar.close()
    student.eval()
    last["distill/steps"] = float(step)
    return last
