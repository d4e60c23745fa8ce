"""The DistilBERT loss terms (Sanh et al. 2019), unweighted, and their weighted sum:

    loss = alpha_ce * KL + alpha_mlm * MLM + alpha_cos * COS      (loss_kl, loss_mlm, loss_cos)

alpha_ce is DistilBERT's released name for the KL term's weight (study.config.LossConfig).

`distill_losses` is the reference on full (B, L, V) logits; study.distill.projected_loss computes the same KL and MLM
terms a chunk of positions at a time. Both take the cosine term from `cosine_loss`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from study.config import DistillConfig


def distill_losses(  # the reference; the step uses study.distill.projected_loss unless loss_chunk is 0
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
        loss_kl = (torch.xlogy(p_t, p_t) - p_t * log_p_s).sum() / n_kl * temperature**2
    else:
        loss_kl = zero

    # MLM cross-entropy on the masked positions; a mixup sequence has two label sets weighted lambda, 1 - lambda.
    loss_mlm = zero
    n_mlm = int((mlm_targets[0][0] != -100).sum())
    if n_mlm:
        for labels, weight in mlm_targets:
            ce = F.cross_entropy(s_logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="none")
            loss_mlm = loss_mlm + (ce.view_as(labels) * weight[:, None].float()).sum() / n_mlm

    real = attention_mask.bool()
    loss_cos = cosine_loss(student_hidden.float()[real], teacher_hidden.float()[real])
    return {"loss_kl": loss_kl, "loss_mlm": loss_mlm, "loss_cos": loss_cos}



def cosine_loss(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """Cosine loss on the last hidden states at the real positions (pads excluded by the caller): mean over the n
    positions of 1 - cos(s, t), in fp32; 0 when there are none.  (n, H), (n, H) -> ()."""
    if not len(student_hidden):
        return student_hidden.new_zeros((), dtype=torch.float32)
    return (1 - F.cosine_similarity(student_hidden.float(), teacher_hidden.float(), dim=-1)).mean()


def weighted_loss(losses: dict[str, torch.Tensor], cfg: DistillConfig) -> torch.Tensor:
    w = cfg.loss
    return w.alpha_ce * losses["loss_kl"] + w.alpha_mlm * losses["loss_mlm"] + w.alpha_cos * losses["loss_cos"]

