"""Each DistilBERT loss term against a hand computation on tiny tensors."""

import math

import pytest
import torch

from study.distill.losses import distill_losses

LN3 = math.log(3.0)
KL_HALF_VS_QUARTER = 0.5 * math.log(4 / 3)  # KL([.5, .5] || [.25, .75])


def losses(s_logits, t_probs, labels, T=1.0, kl_positions=None, attn=None, s_hidden=None, t_hidden=None, targets=None):
    B, L, _ = s_logits.shape
    attn = torch.ones(B, L, dtype=torch.long) if attn is None else attn
    hidden = torch.ones(B, L, 2)
    return distill_losses(
        s_logits, hidden if s_hidden is None else s_hidden, t_probs, hidden if t_hidden is None else t_hidden,
        targets or [(labels, torch.ones(B))], attn, attn.bool() if kl_positions is None else kl_positions, T)


def test_kl_single_position_by_hand():
    s = torch.tensor([[[0.0, LN3]]])  # p_s = [.25, .75]
    t = torch.tensor([[[0.5, 0.5]]])
    out = losses(s, t, torch.tensor([[-100]]))
    assert out["loss_kl"].item() == pytest.approx(KL_HALF_VS_QUARTER, abs=1e-6)


def test_kl_temperature_squared():
    # student logits are divided by T=2 inside, giving the same p_s; the loss is then multiplied by T^2 = 4
    s = torch.tensor([[[0.0, 2 * LN3]]])
    t = torch.tensor([[[0.5, 0.5]]])
    out = losses(s, t, torch.tensor([[-100]]), T=2.0)
    assert out["loss_kl"].item() == pytest.approx(4 * KL_HALF_VS_QUARTER, abs=1e-6)


def test_kl_temperature_one_is_plain_kl():
    s = torch.tensor([[[1.0, -1.0, 0.5]]])
    t = torch.softmax(torch.tensor([[[0.2, 0.1, -0.3]]]), -1)
    expected = torch.nn.functional.kl_div(torch.log_softmax(s, -1), t, reduction="sum").item()
    assert losses(s, t, torch.tensor([[-100]]))["loss_kl"].item() == pytest.approx(expected, abs=1e-6)


def test_kl_batchmean_over_positions_not_vocab():
    # position 0 has KL k, position 1 has KL 0: batchmean over 2 positions is k / 2 (`mean` would give k / 4)
    s = torch.tensor([[[0.0, LN3], [0.0, 0.0]]])
    t = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    out = losses(s, t, torch.full((1, 2), -100))
    assert out["loss_kl"].item() == pytest.approx(KL_HALF_VS_QUARTER / 2, abs=1e-6)


def test_kl_on_masked_positions_only():
    s = torch.tensor([[[0.0, LN3], [0.0, 0.0]]])
    t = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    out = losses(s, t, torch.tensor([[1, -100]]), kl_positions=torch.tensor([[True, False]]))
    assert out["loss_kl"].item() == pytest.approx(KL_HALF_VS_QUARTER, abs=1e-6)


def test_pads_excluded_from_kl_and_cosine():
    s = torch.tensor([[[0.0, LN3], [5.0, -5.0]]])  # position 1 is padding with a wild student
    t = torch.tensor([[[0.5, 0.5], [0.5, 0.5]]])
    attn = torch.tensor([[1, 0]])
    s_h = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])
    t_h = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    out = losses(s, t, torch.full((1, 2), -100), attn=attn, s_hidden=s_h, t_hidden=t_h)
    assert out["loss_kl"].item() == pytest.approx(KL_HALF_VS_QUARTER, abs=1e-6)
    assert out["loss_cos"].item() == pytest.approx(0.0, abs=1e-6)


def test_mlm_mean_over_masked_positions():
    s = torch.tensor([[[0.0, LN3], [0.0, LN3], [0.0, LN3]]])  # p = [.25, .75] everywhere
    labels = torch.tensor([[1, 0, -100]])
    out = losses(s, torch.full((1, 3, 2), 0.5), labels)
    assert out["loss_mlm"].item() == pytest.approx((-math.log(0.75) + math.log(4)) / 2, abs=1e-6)


def test_mlm_all_positions_masked():
    s = torch.tensor([[[0.0, LN3], [0.0, LN3]]])
    out = losses(s, torch.full((1, 2, 2), 0.5), torch.tensor([[1, 1]]))
    assert out["loss_mlm"].item() == pytest.approx(-math.log(0.75), abs=1e-6)


def test_mlm_mixup_targets_weighted_by_lambda():
    # two sequences; lambda = .25 and 1: CE(x) weighted lambda, CE(x_cf) weighted 1 - lambda
    s = torch.tensor([[[0.0, LN3]], [[0.0, LN3]]])
    lam = torch.tensor([0.25, 1.0])
    targets = [(torch.tensor([[1], [1]]), lam), (torch.tensor([[0], [1]]), 1 - lam)]
    out = losses(s, torch.full((2, 1, 2), 0.5), None, targets=targets)
    ce1, ce0 = -math.log(0.75), math.log(4)
    assert out["loss_mlm"].item() == pytest.approx((0.25 * ce1 + 0.75 * ce0 + ce1) / 2, abs=1e-6)


def test_cosine_by_hand():
    s_h = torch.tensor([[[1.0, 0.0], [1.0, 1.0]]])
    t_h = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])
    out = losses(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5), torch.full((1, 2), -100), s_hidden=s_h, t_hidden=t_h)
    assert out["loss_cos"].item() == pytest.approx((1 + (1 - 1 / math.sqrt(2))) / 2, abs=1e-6)


def test_no_selected_positions_gives_zero_not_nan():
    out = losses(torch.zeros(1, 2, 2), torch.full((1, 2, 2), 0.5), torch.full((1, 2), -100),
                 kl_positions=torch.zeros(1, 2, dtype=torch.bool))
    assert out["loss_kl"].item() == 0.0 and out["loss_mlm"].item() == 0.0
