"""The KL and MLM terms computed from the MLM heads' inputs, a chunk of positions at a time.

`distill.distill_losses` is the reference: it takes full (B, L, V) logits and works on fp32 copies of them. At
bert-base scale (32k positions x 30,522 words a step) those copies, casts and boolean indexing are about a third
of the step. Here the vocabulary projection happens inside the loss, a chunk of positions at a time: the chunk's
student and teacher logits are made in the compute dtype (bf16 under autocast), both terms and their gradient with
respect to the student logits are worked out in fp32 on that chunk, and the gradient is pushed through the
projection at once (dh, dW), so no (positions x V) tensor outlives its chunk. This is what Liger Kernel's chunked
fused linear losses do too (plain PyTorch under torch.compile).

Because the gradient is formed in the forward pass, the weights alpha_ce and alpha_mlm are arguments: the function
returns their weighted sum, which backpropagates, and the two unweighted terms for logging (detached).

The projection runs over a vocabulary padded to a multiple of `pad_to` with zero weight rows: tensor cores want
matrix sides in multiples of 64 (on an H100 a bf16 8192x768x30522 matmul ran at 230 TFLOP/s, 30,528 columns at
667). The padded columns are sliced off before any softmax, so they take part in no loss and no gradient: the
result is the unpadded one, and the model's own parameters keep their size (what is saved loads in transformers).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class KDTargets:
    """What the loss needs at each of the n projected positions (KL or MLM positions), flattened.

    The first n_plain positions lie on rows that are not mixed; the rest on mixed rows, whose teacher target is
    lam * softmax(z_t / T) + (1 - lam) * softmax(z_t_cf / T) and whose MLM target is two label sets weighted
    lam and 1 - lam. Counts are host ints, so nothing here waits for the device.
    """

    kl: torch.Tensor  # (n,) float: 1 where the soft-target KL is taken, 0 elsewhere
    labels: torch.Tensor  # (n,) long, -100 off target
    cf_labels: torch.Tensor  # (n,) long: the counterfactual's labels (the same positions as `labels`)
    lam: torch.Tensor  # (n,) float: the row's lambda, 1 on rows that are not mixed
    n_plain: int
    n_kl: int  # positions the KL averages over ("batchmean" over positions)
    n_kl_plain: int  # of those, the ones among the first n_plain
    n_mlm: int  # positions the MLM cross-entropy averages over

    def to(self, device, non_blocking: bool = False) -> KDTargets:
        move = {k: v.to(device, non_blocking=non_blocking) if torch.is_tensor(v) else v for k, v in vars(self).items()}
        return KDTargets(**move)


# On a CPU a chunk's fp32 (c, V) temporaries are worth keeping in a core's cache: the loss is a dozen passes over
# them. Measured on the smoke world (V = 2,411, 2 cores): 200 distillation steps took 12.4 s at the GPU's 8192
# positions (one chunk per batch, ~6 MB per temporary), 10.3 s at 128 and 10.7 s at 64, two processes at once alike.
CPU_CHUNK_BYTES = 2**20


def chunk_size(chunk: int, vocab: int, device_type: str) -> int:
    """Positions per chunk: `chunk` on an accelerator; on a CPU at most those whose fp32 logits fit in
    CPU_CHUNK_BYTES. The chunking changes only the order of the sums, not the losses."""
    if device_type != "cpu":
        return chunk
    return max(1, min(chunk, CPU_CHUNK_BYTES // (4 * vocab)))


def padded_size(vocab: int, pad_to: int | None) -> int:
    return math.ceil(vocab / pad_to) * pad_to if pad_to else vocab


def _pad_rows(x: torch.Tensor, rows: int) -> torch.Tensor:
    """x with zero rows appended up to `rows` (works for (V, H) weights and (V,) biases)."""
    return x if x.shape[0] == rows else F.pad(x, (0, 0) * (x.dim() - 1) + (0, rows - x.shape[0]))


class _ProjectedKD(torch.autograd.Function):
    """Forward: loss values and, at the same time, their gradient w.r.t. h_s, w_s and b_s; backward: scale them."""

    @staticmethod
    def forward(ctx, h_s, w_s, b_s, h_t, h_t_cf, w_t, b_t, t: KDTargets, temperature: float, alpha_ce: float,
                alpha_mlm: float, chunk: int, pad_to: int | None, dtype: torch.dtype, need_grad: bool):
        n, V, T = h_s.shape[0], w_s.shape[0], temperature
        Vp = padded_size(V, pad_to)
        # Projections over the padded vocabulary, in the compute dtype (a copy of each matrix a step; cheap).
        ws, bs = _pad_rows(w_s.detach().to(dtype), Vp), _pad_rows(b_s.detach().to(dtype), Vp)  # (Vp, H), (Vp,)
        wt, bt = _pad_rows(w_t.to(dtype), Vp), _pad_rows(b_t.to(dtype), Vp)
        c_kl = T * T / t.n_kl if t.n_kl else 0.0  # T^2 keeps the soft-target gradients' scale as T changes
        c_mlm = 1.0 / t.n_mlm if t.n_mlm else 0.0
        kl_sum = h_s.new_zeros((), dtype=torch.float32)
        mlm_sum = h_s.new_zeros((), dtype=torch.float32)
        grad_h = torch.zeros_like(h_s) if need_grad else None  # (n, H)
        grad_w = h_s.new_zeros((Vp, w_s.shape[1]), dtype=torch.float32) if need_grad else None
        grad_b = h_s.new_zeros((Vp,), dtype=torch.float32) if need_grad else None

        # Chunks never straddle the plain/mixed boundary, so a chunk projects the counterfactual only if it needs it.
        bounds = [(a, min(a + chunk, t.n_plain)) for a in range(0, t.n_plain, chunk)]
        bounds += [(a, min(a + chunk, n)) for a in range(t.n_plain, n, chunk)]
        for a, b in bounds:
            hs = h_s[a:b].to(dtype)  # (c, H)
            z = torch.addmm(bs, hs, ws.t())[:, :V].float()  # (c, V): padded columns dropped before any softmax
            zt = torch.addmm(bt, h_t[a:b].to(dtype), wt.t())[:, :V].float()  # (c, V)
            lam = t.lam[a:b, None]  # (c, 1)

            # Soft targets: KL(p || q) with q = softmax(z / T), summed over the vocabulary.
            log_p = F.log_softmax(zt / T, dim=-1)
            if a >= t.n_plain:  # mixed rows: the teacher sees x and x_cf, its probabilities are mixed like the input
                h_cf = h_t_cf[a - t.n_plain:b - t.n_plain].to(dtype)
                zt_cf = torch.addmm(bt, h_cf, wt.t())[:, :V].float()
                p = lam * log_p.exp() + (1 - lam) * F.softmax(zt_cf / T, dim=-1)  # (c, V)
                p_log_p = torch.xlogy(p, p)
            else:
                p = log_p.exp()
                p_log_p = p * log_p
            log_q = F.log_softmax(z / T, dim=-1)  # (c, V)
            kl = t.kl[a:b]  # (c,)
            kl_sum += ((p_log_p - p * log_q).sum(-1) * kl).sum()

            # MLM cross-entropy against one label set (plain rows) or two weighted lam, 1 - lam (mixed rows).
            log_s = F.log_softmax(z, dim=-1) if T != 1 else log_q  # (c, V)
            label_sets = [(t.labels[a:b], t.lam[a:b])]
            if a >= t.n_plain:
                label_sets.append((t.cf_labels[a:b], 1 - t.lam[a:b]))
            if need_grad:
                # d(T^2/n_kl * KL)/dz = T (q - p) / n_kl, as sum_v p = 1 on every row.
                dz = (log_q.exp() - p) * (kl * (alpha_ce * c_kl / T))[:, None]  # (c, V)
                on_s = torch.zeros_like(kl)  # (c,) total weight of the softmax term of dCE/dz
            for labels, weight in label_sets:
                on = labels != -100
                w = weight * on  # (c,)
                target = labels.clamp(min=0)[:, None]  # (c, 1); -100 rows carry weight 0
                mlm_sum += (-log_s.gather(1, target).squeeze(1) * w).sum()
                if need_grad:  # d(CE)/dz = softmax(z) - onehot(label)
                    dz.scatter_add_(1, target, (-alpha_mlm * c_mlm * w)[:, None])
                    on_s += w
            if need_grad:
                dz += log_s.exp() * (alpha_mlm * c_mlm * on_s)[:, None]
                dz = F.pad(dz, (0, Vp - V)).to(dtype)  # (c, Vp): zero gradient on the padded columns
                grad_h[a:b] = (dz @ ws).to(grad_h.dtype)  # (c, H)
                grad_w += (dz.t() @ hs).float()  # (Vp, H)
                grad_b += dz.float().sum(0)

        loss_kl, loss_mlm = kl_sum * c_kl, mlm_sum * c_mlm
        if need_grad:
            ctx.save_for_backward(grad_h, grad_w[:V], grad_b[:V])
        ctx.mark_non_differentiable(loss_kl, loss_mlm)
        return alpha_ce * loss_kl + alpha_mlm * loss_mlm, loss_kl, loss_mlm

    @staticmethod
    def backward(ctx, g, _g_ce, _g_mlm):
        grad_h, grad_w, grad_b = ctx.saved_tensors
        return g * grad_h, g * grad_w, g * grad_b, *([None] * 12)


def projected_kd_losses(
    h_s: torch.Tensor,  # (n, H) student MLM-head input (after the head's transform) at the projected positions
    w_s: torch.Tensor,  # (V, H) student vocabulary projection
    b_s: torch.Tensor,  # (V,)
    h_t: torch.Tensor,  # (n, H) teacher MLM-head input at the same positions
    h_t_cf: torch.Tensor | None,  # (n - n_plain, H) the teacher's on the counterfactual, for the mixed positions
    w_t: torch.Tensor,  # (V, H) teacher vocabulary projection
    b_t: torch.Tensor,  # (V,)
    targets: KDTargets,
    temperature: float,
    alpha_ce: float,
    alpha_mlm: float,
    chunk: int = 8192,
    pad_to: int | None = 64,
    dtype: torch.dtype = torch.float32,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(alpha_ce * loss_kl + alpha_mlm * loss_mlm, loss_kl, loss_mlm): the same values as distill_losses.

    loss_kl is KL(teacher || student) on tempered distributions x T^2, averaged over the KL positions; loss_mlm the
    cross-entropy averaged over the masked positions. Only the first value carries a gradient (to h_s, w_s, b_s).
    """
    if h_t_cf is None:
        h_t_cf = h_t[:0]
    # Working out the gradient is most of the cost: skip it under no_grad (autograd.Function cannot tell).
    need_grad = torch.is_grad_enabled() and any(x.requires_grad for x in (h_s, w_s, b_s))
    return _ProjectedKD.apply(h_s, w_s, b_s, h_t, h_t_cf, w_t, b_t, targets, temperature, alpha_ce, alpha_mlm,
                              chunk, pad_to, dtype, need_grad)
