"""One distillation step's forward: the student (behind the mixup of input embeddings), the teacher's targets, and
the loss terms, through the projected loss or the reference one. The caller weights nothing: `loss` is the weighted
sum the step backpropagates.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from study.config import DistillConfig
from study.distill.batches import Batch, StepPlan, make_plan
from study.distill.fused_loss import fused_kd_losses
from study.distill.gender import mix
from study.distill.losses import cosine_loss, distill_losses, weighted_loss
from study.distill.models import mlm_head
from study.distill.projected_loss import chunk_size, projected_kd_losses


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
            emb = mix(emb, embed(cf_ids), lam)
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
        probs[rows] = mix(probs[rows], F.softmax(cf.logits.float() / temperature, dim=-1), lam)
        hidden[rows] = mix(hidden[rows], cf.hidden_states[-1].float(), lam)
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
        hidden = hidden.index_copy(0, plan.cf_rows, mix(hidden[plan.cf_rows], cf.float(), lam))
    return head, head_cf, hidden


def _unwrap(model):
    """The MixupStudent inside torch.compile and DDP wrappers."""
    model = getattr(model, "_orig_mod", model)
    return getattr(model, "module", model)


def projected_loss_step(model, teacher, batch: Batch, cfg: DistillConfig, plan: StepPlan | None = None,
                        teacher_encoder=None, fused: bool = False) -> dict[str, torch.Tensor]:
    """loss_step through the projected loss (study.distill.projected_loss), or with `fused` through Liger Kernel's
    fused losses where it can (study.distill.fused_loss): no full (B, L, V) logits, no host sync given a plan."""
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
    losses = fused_kd_losses if fused else projected_kd_losses
    loss, loss_kl, loss_mlm = losses(
        head_s, w_s, b_s, head_t, head_t_cf, w_t.detach(), b_t.detach(), plan.targets, w.temperature, w.alpha_ce,
        w.alpha_mlm, chunk=chunk_size(cfg.loss_chunk, w_s.shape[0], device), pad_to=cfg.pad_vocab_to, dtype=dtype)
    loss_cos = cosine_loss(hidden_s.flatten(0, 1)[plan.real], hidden_t.flatten(0, 1)[plan.real])  # (n_real, H)
    loss = loss + w.alpha_cos * loss_cos
    return {"loss_kl": loss_kl, "loss_mlm": loss_mlm, "loss_cos": loss_cos, "loss": loss}


def loss_step(model, teacher, batch: Batch, cfg: DistillConfig, plan: StepPlan | None = None,
              teacher_encoder=None, fused: bool = False) -> dict[str, torch.Tensor]:
    """Forward the student and teacher on a batch: the unweighted loss terms and "loss", their weighted sum. `fused`:
    the route study.distill.fused_loss.loss_route chose is "fused"."""
    if cfg.loss_chunk:
        return projected_loss_step(model, teacher, batch, cfg, plan, teacher_encoder, fused)
    mixing = bool(batch.mixed.any())
    logits, hidden = model(batch.ids, batch.attention_mask, batch.cf_ids if mixing else None, batch.lam)
    t_probs, t_hidden = teacher_targets(teacher, batch, cfg.loss.temperature)
    targets = [(batch.labels, batch.lam)] + ([(batch.cf_labels, 1 - batch.lam)] if mixing else [])
    kl_positions = batch.attention_mask.bool() if cfg.loss.kl_positions == "all" else batch.labels != -100
    losses = distill_losses(logits, hidden, t_probs, t_hidden, targets, batch.attention_mask, kl_positions,
                            cfg.loss.temperature)
    return {**losses, "loss": weighted_loss(losses, cfg)}

