"""The KL and MLM terms through Liger Kernel's fused linear losses, on CUDA where it is installed (the `[gpu]` extra).

Which loss a step takes (`loss_route`):
    reference   distill.loss_chunk 0: full (B, L, V) logits (study.distill.losses)
    fused       on CUDA, distill.fused_loss on and liger_kernel importable: the positions of unmixed rows through
                Liger, those of mixup's mixed rows through the projected loss
    projected   everywhere else: the CPU, and the fallback where Liger is missing (study.distill.projected_loss)

Liger's chunked `LigerFusedLinearJSDLoss` with beta = 0 is the forward KL(teacher || student) on logits / T; it
does not multiply by T^2 (done here), masks the KL by its target ids (here 0 on the KL positions, -100 elsewhere)
and averages over the unmasked ones (rescaled here to the whole batch's KL positions). When the teacher's weight
has more rows it pads the student's logits with zeros, not -inf, so both projections are padded alike here, with a
bias of -1e4 on the padded rows so that they take no probability. `LigerFusedLinearCrossEntropyLoss` (a Triton
kernel, CUDA only) gives the MLM term.

Mixed rows: Liger takes one weight per call, not one per row. A mixed row's target is lam p(x) + (1 - lam) p(x_cf),
and the student's gradient of KL(lam p1 + (1 - lam) p2 || q) equals that of lam KL(p1 || q) + (1 - lam) KL(p2 || q):
as a pair of Liger calls that would need lam per row, i.e. a call per mixed row. The plan puts the unmixed rows'
positions first (study.distill.batches.make_plan), so those go through Liger and the mixed ones through the projected
loss, which takes lam per row; both parts are averaged over the whole batch's counts, so their sum is the loss.
"""

from __future__ import annotations

import functools

import torch

from study.distill.projected_loss import KDTargets, padded_size, projected_kd_losses

PAD_BIAS = -1e4  # the padded vocabulary rows' bias: exp(-1e4 / T) is 0 in any float type


@functools.cache
def liger_installed() -> bool:
    """Whether Liger Kernel imports here (it needs Triton; the `[gpu]` extra installs both)."""
    try:
        import liger_kernel.chunked_loss  # noqa: F401
        import liger_kernel.transformers  # noqa: F401
    except Exception:  # ImportError, or Triton failing to find a driver on a machine without a GPU
        return False
    return True


def loss_route(loss_chunk: int, fused_loss: bool, device_type: str, installed: bool | None = None) -> str:
    """"reference", "fused" or "projected" (the module docstring says when); `installed` defaults to whether Liger
    imports here (the tests pass it)."""
    if not loss_chunk:
        return "reference"
    if fused_loss and device_type == "cuda" and (liger_installed() if installed is None else installed):
        return "fused"
    return "projected"


def _padded(w: torch.Tensor, b: torch.Tensor, rows: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows, H) weight with zero rows appended and (rows,) bias with PAD_BIAS on them, in `dtype` (differentiable)."""
    extra = rows - w.shape[0]
    w = torch.cat([w.to(dtype), w.new_zeros((extra, w.shape[1]), dtype=dtype)])
    b = torch.cat([b.to(dtype), b.new_full((extra,), PAD_BIAS, dtype=dtype)])
    return w, b


def liger_kl(hs, ws, bs, ht, wt, bt, t: KDTargets, temperature: float, chunk: int,
             compiled: bool = True) -> torch.Tensor:
    """loss_kl of the first t.n_plain positions: KL(teacher || student) x T^2 summed over their KL positions and
    divided by the whole batch's (t.n_kl). Inputs already cast and padded (liger_plain_losses); runs on a CPU too
    (Liger's chunked losses are plain PyTorch, torch.compile'd unless `compiled` is off)."""
    from liger_kernel.chunked_loss import LigerFusedLinearJSDLoss

    n, T = t.n_plain, temperature
    kl_ids = torch.where(t.kl[:n] > 0, 0, -100)  # Liger masks the KL by target ids
    # weight T^2 (soft-target gradients scale as 1/T^2), fixed for the run: a weight that changed every step would
    # recompile Liger's torch.compile'd chunk every step
    kl = LigerFusedLinearJSDLoss(weight_hard_loss=0.0, weight_soft_loss=T * T, beta=0.0, temperature=T,
                                 compiled=compiled, chunk_size=chunk)(hs, ws, ht, wt, kl_ids, bs, bt)
    return kl * (t.n_kl_plain / t.n_kl)  # Liger averaged over the plain KL positions: over all of them


def liger_plain_losses(h_s, w_s, b_s, h_t, w_t, b_t, t: KDTargets, temperature: float, chunk: int, pad_to: int | None,
                       dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss_kl, loss_mlm) of the first t.n_plain positions, each summed over them and divided by the whole batch's
    count (t.n_kl, t.n_mlm), so that adding the mixed positions' part gives the batch's terms. Both carry the
    gradient to h_s, w_s and b_s. h_* (n, H), w_* (V, H), b_* (V,)."""
    from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

    n = t.n_plain
    rows = padded_size(w_s.shape[0], pad_to)
    ws, bs = _padded(w_s, b_s, rows, dtype)
    wt, bt = _padded(w_t.detach(), b_t.detach(), rows, dtype)
    hs, ht = h_s[:n].to(dtype), h_t[:n].to(dtype)
    zero = h_s.new_zeros((), dtype=torch.float32)
    loss_kl, loss_mlm = zero, zero
    # autocast off: the inputs are cast above, and Liger's chunk adds the bias into the matmul's output in place
    with torch.autocast(h_s.device.type, enabled=False):
        if t.n_kl_plain:
            loss_kl = liger_kl(hs, ws, bs, ht, wt, bt, t, temperature, chunk)
        if n and t.n_mlm:  # (every row mixed: nothing here)
            ce = LigerFusedLinearCrossEntropyLoss(ignore_index=-100, reduction="sum", accum_dtype=torch.float32)
            loss_mlm = ce(ws, hs, t.labels[:n], bs) / t.n_mlm
    return loss_kl, loss_mlm


def fused_kd_losses(h_s, w_s, b_s, h_t, h_t_cf, w_t, b_t, t: KDTargets, temperature: float, alpha_ce: float,
                    alpha_mlm: float, chunk: int, pad_to: int | None, dtype: torch.dtype,
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """projected_kd_losses' three values (weighted sum, loss_kl, loss_mlm; the terms detached), the unmixed rows'
    positions through Liger and the mixed rows' through the projected loss."""
    plain_kl, plain_mlm = liger_plain_losses(h_s, w_s, b_s, h_t, w_t, b_t, t, temperature, chunk, pad_to, dtype)
    loss = alpha_ce * plain_kl + alpha_mlm * plain_mlm
    loss_kl, loss_mlm = plain_kl.detach(), plain_mlm.detach()
    if t.n_plain < h_s.shape[0]:
        p = t.n_plain
        mixed = KDTargets(kl=t.kl[p:], labels=t.labels[p:], cf_labels=t.cf_labels[p:], lam=t.lam[p:], n_plain=0,
                          n_kl=t.n_kl, n_kl_plain=0, n_mlm=t.n_mlm)
        part, part_kl, part_mlm = projected_kd_losses(h_s[p:], w_s, b_s, h_t[p:], h_t_cf, w_t, b_t, mixed, temperature,
                                                      alpha_ce, alpha_mlm, chunk, pad_to, dtype)
        loss, loss_kl, loss_mlm = loss + part, loss_kl + part_kl, loss_mlm + part_mlm
    return loss, loss_kl, loss_mlm
