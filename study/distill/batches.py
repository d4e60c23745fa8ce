"""The data each distillation step sees: the tokenized corpus with each sequence's counterfactual, sharded by
(rank, world_size); a masked batch, mixed rows chosen under mixup; and the batch's plan, worked out on the host so
that the step itself never waits for the GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import DistributedSampler

from study.config import DistillConfig
from study.distill.data import MaskPlan, pad, plan_masking
from study.distill.gender import TokenCounterfactual, sample_lambdas
from study.distill.projected_loss import KDTargets


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
        n_plain=len(plain), n_kl=int(kl.sum()), n_kl_plain=int(kl.flatten()[plain].sum()), n_mlm=int(masked.sum()))
    real_idx = real.flatten().nonzero().squeeze(1)
    return StepPlan(positions, cf_rows, cf_positions, real_idx, targets, n_real=len(real_idx))

