"""One worker's distillation loop: a BERT teacher into a DistilBERT-style student, with the gender mitigations.

Written so that Ray Train can run it on N workers unchanged: no globals, every random draw from a per-rank
generator, a DistributedSampler that shards by (rank, world_size), DDP only when a process group exists, and
logging on rank 0. It imports neither Ray nor MLflow; callers pass callbacks.

    loss = alpha_ce * KL + alpha_mlm * MLM + alpha_cos * COS          (DistilBERT, Sanh et al. 2019)
"""

from __future__ import annotations

import math
import os
import pickle
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.utils.data import DistributedSampler
from tqdm.auto import tqdm

from study.config import DistillConfig
from study.data import MaskPlan, pad, plan_masking, selection_weights
from study.errors import Diverged, ModelError
from study.gender import TokenCounterfactual, mix_embeddings, mix_probs, sample_lambdas
from study.kd_loss import KDTargets, projected_kd_losses
from study.models import mlm_head
from study.optim import clipped_step, make_optimizer

# --- the loss --------------------------------------------------------------------------------------------------


def distill_losses(  # the reference; train() uses the projected loss below unless cfg.loss_chunk is 0
    student_logits: torch.Tensor,  # (B, L, V)
    student_hidden: torch.Tensor,  # (B, L, H) last layer
    teacher_probs: torch.Tensor,  # (B, L, V) softmax(teacher logits / T), possibly a mixup of two
    teacher_hidden: torch.Tensor,  # (B, L, H)
    mlm_targets: list[tuple[torch.Tensor, torch.Tensor]],  # [(labels (B, L) with -100 off target, weight (B,))]
    attention_mask: torch.Tensor,  # (B, L)
    kl_positions: torch.Tensor,  # (B, L) bool: where the soft-target loss is taken
    temperature: float,
) -> dict[str, torch.Tensor]:
    """The three DistilBERT loss terms, unweighted; computed in fp32."""
    s_logits = student_logits.float()
    zero = s_logits.new_zeros(())

    # KL(teacher || student) on tempered distributions, summed over the vocabulary and averaged over the selected
    # positions ("batchmean" over positions, not "mean", which would also divide by V). Soft-target gradients
    # scale as 1/T^2, so multiplying by T^2 keeps this term's weight comparable as T changes (Hinton et al. 2015).
    n_kl = int(kl_positions.sum())
    if n_kl:
        p_t = teacher_probs.float()[kl_positions]  # (n, V)
        log_p_s = F.log_softmax(s_logits[kl_positions] / temperature, dim=-1)  # (n, V)
        loss_ce = (torch.xlogy(p_t, p_t) - p_t * log_p_s).sum() / n_kl * temperature**2
    else:
        loss_ce = zero

    # MLM cross-entropy on the masked positions; a mixup sequence has two label sets weighted lambda, 1 - lambda.
    loss_mlm = zero
    n_mlm = int((mlm_targets[0][0] != -100).sum())
    if n_mlm:
        for labels, weight in mlm_targets:
            ce = F.cross_entropy(s_logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
            loss_mlm = loss_mlm + (ce.view_as(labels) * weight[:, None].float()).sum() / n_mlm

    # Cosine loss on the last hidden states, pads excluded: mean over real positions of 1 - cos(s, t).
    real = attention_mask.bool()
    cos = F.cosine_similarity(student_hidden.float()[real], teacher_hidden.float()[real], dim=-1)  # (n,)
    loss_cos = (1 - cos).mean() if cos.numel() else zero
    return {"loss_ce": loss_ce, "loss_mlm": loss_mlm, "loss_cos": loss_cos}


# --- the data each step sees -----------------------------------------------------------------------------------


class DistillData:
    """Tokenized corpus with each sequence's counterfactual, sharded and shuffled per epoch by (rank, world_size).

    `cda` adds every counterfactual to the corpus as an example of its own (two-sided CDA). `mixup` keeps the
    counterfactual beside its sequence; it can be mixed only when both have the same number of word pieces.
    """

    def __init__(self, corpus_ids: list[list[int]], tokenizer, cfg: DistillConfig, rank: int = 0, world_size: int = 1):
        swap = TokenCounterfactual(tokenizer)
        counterfactuals = [swap(ids) for ids in corpus_ids]
        self.n_gendered = sum(cf is not None for cf in counterfactuals)
        if cfg.mitigation.mode == "cda":
            corpus_ids = corpus_ids + [cf for cf in counterfactuals if cf is not None]
            counterfactuals = [None] * len(corpus_ids)
        self.ids = corpus_ids
        self.cf = [cf if cf is not None and len(cf) == len(ids) else None
                   for ids, cf in zip(corpus_ids, counterfactuals)]
        self.batch_size = cfg.batch_size
        self.sampler = DistributedSampler(range(len(self.ids)), num_replicas=world_size, rank=rank, shuffle=True,
                                          seed=cfg.seed, drop_last=True)
        self.steps_per_epoch = len(self.sampler) // cfg.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"corpus of {len(self.ids)} sequences is smaller than one batch of {cfg.batch_size} "
                             f"per worker x {world_size} workers")

    def batches(self, epoch: int, skip: int = 0):
        """Index lists for the epoch's batches, from batch `skip` on (resuming mid-epoch)."""
        self.sampler.set_epoch(epoch)
        order = list(self.sampler)
        for b in range(skip, self.steps_per_epoch):
            yield order[b * self.batch_size:(b + 1) * self.batch_size]


@dataclass
class Batch:
    ids: torch.Tensor  # (B, L) masked input ids
    cf_ids: torch.Tensor  # (B, L) masked counterfactual ids (= ids on rows that are not mixed)
    attention_mask: torch.Tensor  # (B, L)
    labels: torch.Tensor  # (B, L)
    cf_labels: torch.Tensor  # (B, L)
    lam: torch.Tensor  # (B,) 1 on rows that are not mixed

    @property
    def mixed(self) -> torch.Tensor:
        return self.lam < 1

    @property
    def n_real(self) -> int:
        """Real tokens in the batch; read it on the host tensors (on a GPU it would sync)."""
        return int(self.attention_mask.sum())

    def to(self, device) -> "Batch":
        return Batch(*(_to_device(t, device) for t in vars(self).values()))


def _to_device(t: torch.Tensor, device) -> torch.Tensor:
    """A host tensor on `device`; to a GPU from pinned memory without blocking, so the host goes on to the next
    batch while the copy and the step run."""
    if torch.device(device).type != "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)


def assemble(data: DistillData, index: list[int], cfg: DistillConfig, tokenizer, weights, generator) -> Batch:
    """Sequences -> a masked batch; under mixup, choose the rows to mix and their lambda (replace or augment)."""
    seqs = [data.ids[i] for i in index]
    cfs = [data.cf[i] for i in index]
    mit = cfg.mitigation
    if mit.mode == "mixup":
        eligible = torch.tensor([cf is not None for cf in cfs])
        lam = sample_lambdas(len(seqs), mit.alpha, mit.p, eligible, generator)
        if mit.placement == "augment":  # originals stay unmixed; the mixed copies are appended
            extra = lam < 1
            seqs = seqs + [s for s, e in zip(seqs, extra) if e]
            cfs = cfs + [c for c, e in zip(cfs, extra) if e]
            lam = torch.cat([torch.ones(len(index)), lam[extra]])
    else:
        lam = torch.ones(len(seqs))
    cf_seqs = [cf if mix < 1 else s for s, cf, mix in zip(seqs, cfs, lam.tolist())]
    ids, attn = pad(seqs, tokenizer.pad_token_id)
    cf_ids, _ = pad(cf_seqs, tokenizer.pad_token_id)
    plan: MaskPlan = plan_masking(ids, weights, cfg.masking, tokenizer.mask_token_id, generator)
    masked, labels = plan.apply(ids)
    cf_masked, cf_labels = plan.apply(cf_ids)  # the same positions, masked the same way
    return Batch(masked, cf_masked, attn, labels, cf_labels, lam)


@dataclass
class StepPlan:
    """A batch's index sets and counts, worked out on the host from its CPU tensors.

    With them the step needs no device sync: int(mask.sum()), x[mask] and rows.any() on device tensors each make the
    host wait for the GPU. Index tensors go to the device with the batch; counts stay host ints.
    """

    positions: torch.Tensor  # (n,) flat (B*L) indices projected onto the vocabulary: KL or MLM, unmixed rows first
    cf_rows: torch.Tensor  # (m,) the mixed rows, whose counterfactual the teacher sees
    cf_positions: torch.Tensor  # (n - n_plain,) flat (m*L) indices of positions[n_plain:] in that forward
    real: torch.Tensor  # (n_real,) flat indices of the real tokens (the cosine term)
    targets: KDTargets
    n_real: int

    def to(self, device) -> StepPlan:
        moved = {k: _to_device(v, device) for k, v in vars(self).items() if torch.is_tensor(v)}
        pin = torch.device(device).type == "cuda"
        targets = KDTargets(**{k: (v.pin_memory() if pin else v) if torch.is_tensor(v) else v
                               for k, v in vars(self.targets).items()}).to(device, non_blocking=pin)
        return StepPlan(**moved, targets=targets, n_real=self.n_real)


def make_plan(batch: Batch, kl_positions: str) -> StepPlan:
    """The StepPlan of a batch; on host tensors nothing here syncs (train() calls it before the batch moves)."""
    L = batch.ids.shape[1]
    real = batch.attention_mask.bool()  # (B, L)
    masked = batch.labels != -100  # (B, L)
    kl = real if kl_positions == "all" else masked
    take = kl | masked
    mixed_row = batch.lam < 1  # (B,)
    plain = (take & ~mixed_row[:, None]).flatten().nonzero().squeeze(1)
    mixed = (take & mixed_row[:, None]).flatten().nonzero().squeeze(1)
    positions = torch.cat([plain, mixed])  # (n,)
    cf_rows = mixed_row.nonzero().squeeze(1)  # (m,)
    cf_rank = mixed_row.long().cumsum(0) - 1  # (B,) a mixed row's place among the mixed rows
    cf_positions = cf_rank[mixed // L] * L + mixed % L
    targets = KDTargets(
        kl=kl.flatten()[positions].float(), labels=batch.labels.flatten()[positions],
        cf_labels=batch.cf_labels.flatten()[positions], lam=batch.lam.float()[positions // L],
        n_plain=len(plain), n_kl=int(kl.sum()), n_mlm=int(masked.sum()))
    real_idx = real.flatten().nonzero().squeeze(1)
    return StepPlan(positions, cf_rows, cf_positions, real_idx, targets, n_real=len(real_idx))


class MixupStudent(torch.nn.Module):
    """The student behind one forward that takes lambda * E(x) + (1 - lambda) * E(x_cf) as input embeddings.

    Wrapping the mix inside forward keeps DDP's gradient hooks on every parameter the step touches.
    """

    def __init__(self, student):
        super().__init__()
        self.student = student

    def forward(self, ids, attention_mask, cf_ids=None, lam=None, positions=None):
        """(logits (B, L, V), last hidden (B, L, H)); with `positions` (n,) flat indices, the MLM head's input
        (n, H) at those positions instead of the logits (the projected loss projects it itself)."""
        embed = self.student.get_input_embeddings()
        emb = embed(ids)  # (B, L, H)
        if cf_ids is not None:
            emb = mix_embeddings(emb, embed(cf_ids), lam)
        if positions is None:
            out = self.student(inputs_embeds=emb, attention_mask=attention_mask, output_hidden_states=True)
            return out.logits, out.hidden_states[-1]
        hidden = self.student.base_model(inputs_embeds=emb, attention_mask=attention_mask).last_hidden_state
        transform, _, _ = mlm_head(self.student)
        return transform(hidden.flatten(0, 1)[positions]), hidden  # (n, H), (B, L, H)


@torch.no_grad()
def teacher_targets(teacher, batch: Batch, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(tempered probabilities (B, L, V), last hidden states (B, L, H)); mixed rows get the same mix of x and x_cf."""
    out = teacher(input_ids=batch.ids, attention_mask=batch.attention_mask, output_hidden_states=True)
    probs = F.softmax(out.logits.float() / temperature, dim=-1)
    hidden = out.hidden_states[-1].float()
    rows = batch.mixed
    if rows.any():  # the teacher sees the counterfactual only where it is mixed in
        cf = teacher(input_ids=batch.cf_ids[rows], attention_mask=batch.attention_mask[rows], output_hidden_states=True)
        lam = batch.lam[rows]
        probs[rows] = mix_probs(probs[rows], F.softmax(cf.logits.float() / temperature, dim=-1), lam)
        hidden[rows] = mix_probs(hidden[rows], cf.hidden_states[-1].float(), lam)
    return probs, hidden


@torch.no_grad()
def teacher_heads(teacher, batch: Batch, plan: StepPlan, encoder=None):
    """The teacher's MLM-head inputs at the plan's positions (n, H), on the counterfactual at the mixed ones
    (n - n_plain, H), and its last hidden states (B, L, H) in fp32, mixed like the student's input on mixed rows."""
    encoder = teacher.base_model if encoder is None else encoder
    transform, _, _ = mlm_head(teacher)
    hidden = encoder(input_ids=batch.ids, attention_mask=batch.attention_mask).last_hidden_state  # (B, L, H)
    head = transform(hidden.flatten(0, 1)[plan.positions])  # (n, H)
    hidden = hidden.float()
    head_cf = None
    if len(plan.cf_rows):  # the teacher sees the counterfactual only where it is mixed in
        cf = encoder(input_ids=batch.cf_ids[plan.cf_rows],
                     attention_mask=batch.attention_mask[plan.cf_rows]).last_hidden_state  # (m, L, H)
        head_cf = transform(cf.flatten(0, 1)[plan.cf_positions])  # (n - n_plain, H)
        lam = batch.lam[plan.cf_rows]
        hidden = hidden.index_copy(0, plan.cf_rows, mix_probs(hidden[plan.cf_rows], cf.float(), lam))
    return head, head_cf, hidden


def _unwrap(model):
    """The MixupStudent inside torch.compile and DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def projected_loss_step(model, teacher, batch: Batch, cfg: DistillConfig, plan: StepPlan | None = None,
                        teacher_encoder=None) -> dict[str, torch.Tensor]:
    """loss_step through the projected loss (study/kd_loss.py): no full (B, L, V) logits, no host sync given a plan."""
    if plan is None:  # on device tensors this syncs; train() passes a plan made on the host
        plan = make_plan(batch, cfg.loss.kl_positions)
    w = cfg.loss
    mixing = len(plan.cf_rows) > 0
    head_s, hidden_s = model(batch.ids, batch.attention_mask, batch.cf_ids if mixing else None, batch.lam,
                             positions=plan.positions)  # (n, H), (B, L, H)
    head_t, head_t_cf, hidden_t = teacher_heads(teacher, batch, plan, teacher_encoder)
    _, w_s, b_s = mlm_head(_unwrap(model).student)
    _, w_t, b_t = mlm_head(teacher)
    device = head_s.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else torch.float32
    loss, loss_ce, loss_mlm = projected_kd_losses(
        head_s, w_s, b_s, head_t, head_t_cf, w_t.detach(), b_t.detach(), plan.targets, w.temperature, w.alpha_ce,
        w.alpha_mlm, chunk=cfg.loss_chunk, pad_to=cfg.pad_vocab_to, dtype=dtype)
    # Cosine loss on the last hidden states at the real positions: mean of 1 - cos(s, t), in fp32.
    s = hidden_s.flatten(0, 1)[plan.real].float()  # (n_real, H)
    t = hidden_t.flatten(0, 1)[plan.real]
    loss_cos = (1 - F.cosine_similarity(s, t, dim=-1)).mean() if plan.n_real else loss.new_zeros(())
    loss = loss + w.alpha_cos * loss_cos
    return {"loss_ce": loss_ce, "loss_mlm": loss_mlm, "loss_cos": loss_cos, "loss": loss}


def loss_step(model, teacher, batch: Batch, cfg: DistillConfig, plan: StepPlan | None = None,
              teacher_encoder=None) -> dict[str, torch.Tensor]:
    """Forward the student and teacher on a batch: the unweighted loss terms and "loss", their weighted sum."""
    if cfg.loss_chunk:
        return projected_loss_step(model, teacher, batch, cfg, plan, teacher_encoder)
    mixing = bool(batch.mixed.any())
    logits, hidden = model(batch.ids, batch.attention_mask, batch.cf_ids if mixing else None, batch.lam)
    t_probs, t_hidden = teacher_targets(teacher, batch, cfg.loss.temperature)
    targets = [(batch.labels, batch.lam)] + ([(batch.cf_labels, 1 - batch.lam)] if mixing else [])
    kl_positions = batch.attention_mask.bool() if cfg.loss.kl_positions == "all" else batch.labels != -100
    losses = distill_losses(logits, hidden, t_probs, t_hidden, targets, batch.attention_mask, kl_positions,
                            cfg.loss.temperature)
    return {**losses, "loss": weighted_loss(losses, cfg)}


def weighted_loss(losses: dict[str, torch.Tensor], cfg: DistillConfig) -> torch.Tensor:
    w = cfg.loss
    return w.alpha_ce * losses["loss_ce"] + w.alpha_mlm * losses["loss_mlm"] + w.alpha_cos * losses["loss_cos"]


# --- checkpoints -----------------------------------------------------------------------------------------------

CHECKPOINT = "checkpoint.pt"


def save_checkpoint(directory: Path, rank: int, step: int, student, optimizer, scheduler, generator,
                    metrics: dict) -> None:
    """Model, optimiser, scheduler, step and last metrics from rank 0; every rank's own RNG streams. Atomic."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {f"rng-rank{rank}.pt": {"generator": generator.get_state(), "torch": torch.get_rng_state()}}
    if rank == 0:
        files[CHECKPOINT] = {"step": step, "student": student.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "metrics": metrics}
    for name, state in files.items():
        tmp = directory / f".{name}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, directory / name)


def read_state(path: Path) -> dict:
    """A checkpoint file's contents, unpickled with torch's weights-only loader: tensors, numbers, strings and the
    containers of them, which is all save_checkpoint writes. On a cluster checkpoints come from shared storage that
    others can write to; a file that holds anything else (a pickled object, which could run code as it loads) is
    refused, never executed."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        what = f"a pickled {found.group(1)}" if found else "a pickled object"
        raise ModelError(f"{path}: refused to load this checkpoint: it holds {what}, not only tensors and numbers; "
                         f"nothing in it was run (delete it if you did not write it)") from None
    except (RuntimeError, EOFError) as err:  # truncated, or not a torch file at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{path}: not a readable checkpoint ({first})") from None


def load_checkpoint(directory: Path, rank: int, student, optimizer, scheduler, generator) -> tuple[int, dict]:
    """Restore everything save_checkpoint wrote; returns the step to continue from and the metrics logged last."""
    state = read_state(directory / CHECKPOINT)
    rng = read_state(directory / f"rng-rank{rank}.pt")
    student.load_state_dict(state["student"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    generator.set_state(rng["generator"])
    torch.set_rng_state(rng["torch"])
    return state["step"], state["metrics"]


# --- the loop --------------------------------------------------------------------------------------------------


def total_steps(cfg: DistillConfig, steps_per_epoch: int) -> int:
    return cfg.steps if cfg.steps is not None else max(1, math.ceil(cfg.epochs * steps_per_epoch))


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
    teacher.to(device).eval()
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
    if cfg.compile:  # wrappers only: the caller's teacher and student stay uncompiled modules
        model = torch.compile(model)
        teacher_encoder = torch.compile(teacher.base_model)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    end = min(total, stop_at) if stop_at is not None else total
    bar = tqdm(total=total, initial=step, desc="distill", disable=rank != 0 or not progress_bar, dynamic_ncols=True,
               mininterval=1.0)
    window = {k: torch.zeros((), device=device) for k in ("loss_ce", "loss_mlm", "loss_cos", "loss")}
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
                losses = loss_step(model, teacher, batch, cfg, plan, teacher_encoder)
                loss = losses["loss"]
            loss.backward()
            clipped_step(model, optimizer, scheduler, cfg.optim.clip)
            step += 1
            tokens += n_real

            for k, v in losses.items():
                window[k] += v.detach()
            window_steps += 1
            log_step = step % cfg.log_every == 0 or step == end
            if log_step:
                mean = torch.stack(list(window.values())) / window_steps
                if distributed:  # every rank logs (and judges divergence on) the same mean over ranks
                    dist.all_reduce(mean)
                    mean /= world_size
                # .tolist() forces a device sync, so it runs on log steps only; the wait is part of the steps' time.
                values = mean.tolist()
            seconds += time.perf_counter() - tick
            if log_step:
                last = {f"distill/{k}": v for k, v in zip(window, values)}
                if not math.isfinite(last["distill/loss"]):
                    raise Diverged(f"loss is {last['distill/loss']} at step {step} "
                                   f"(ce {last['distill/loss_ce']}, mlm {last['distill/loss_mlm']}, "
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
