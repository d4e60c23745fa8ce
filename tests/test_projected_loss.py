"""The projected (chunked, padded-vocabulary) KD loss against the reference distill_losses, in fp32 on CPU."""

import copy

import pytest
import torch
from transformers import AutoModelForMaskedLM

from study.config import DistillConfig
from study.distill.batches import make_plan
from study.distill.loop import train
from study.distill.models import make_student
from study.distill.projected_loss import KDTargets, chunk_size, projected_kd_losses
from study.distill.step import MixupStudent, loss_step
from tests.conftest import batch_for

MODES = {
    "none": {"mode": "none"},
    "cda": {"mode": "cda"},
    "mixup-replace": {"mode": "mixup", "p": 0.7, "alpha": 0.4},
    "mixup-augment": {"mode": "mixup", "p": 0.7, "alpha": 0.4, "placement": "augment"},
}


def cfg(**kw):
    base = {"steps": 4, "batch_size": 8, "max_length": 24, "log_every": 2}
    return DistillConfig.model_validate({**base, **kw})


@pytest.mark.parametrize("kl_positions", ["all", "masked"])
@pytest.mark.parametrize("mode", list(MODES))
def test_projected_loss_equals_reference(world_models, mode, kl_positions):
    teacher, _, _ = world_models
    loss = {"kl_positions": kl_positions, "temperature": 2.0}
    reference = cfg(mitigation=MODES[mode], loss=loss, loss_chunk=0)
    # a chunk of 7 positions: several chunks, and chunk edges inside the plain and the mixed segments
    projected = cfg(mitigation=MODES[mode], loss=loss, loss_chunk=7, pad_vocab_to=64)
    batch = batch_for(world_models, reference)
    if mode.startswith("mixup"):
        assert 0 < batch.mixed.sum() < len(batch.lam)
    torch.manual_seed(0)
    model = MixupStudent(make_student(teacher, 1)).eval()  # eval: no dropout, so both paths see the same network
    assert model.student.config.vocab_size % 64  # the padding is exercised
    results = []
    for c in (reference, projected):
        model.zero_grad()
        out = loss_step(model, teacher, batch, c)
        out["loss"].backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (ref, ref_grads), (new, new_grads) = results
    for k in ("loss_kl", "loss_mlm", "loss_cos", "loss"):
        assert new[k].item() == pytest.approx(ref[k].item(), rel=1e-5, abs=1e-6), k
    assert ref_grads.keys() == new_grads.keys()
    for name, g in ref_grads.items():
        assert torch.allclose(new_grads[name], g, rtol=1e-5, atol=1e-6), name


def test_host_plan_equals_device_plan_and_matches_counts(world_models):
    c = cfg(mitigation=MODES["mixup-augment"])
    batch = batch_for(world_models, c)
    plan = make_plan(batch, "all")
    assert plan.n_real == int(batch.attention_mask.sum())
    assert plan.targets.n_mlm == int((batch.labels != -100).sum())
    assert plan.targets.n_kl == plan.n_real
    assert len(plan.cf_rows) == int(batch.mixed.sum())
    n_mixed = len(plan.positions) - plan.targets.n_plain
    assert len(plan.cf_positions) == n_mixed and (plan.targets.lam[plan.targets.n_plain:] < 1).all()


def test_nothing_selected_gives_zero_not_nan():
    h = torch.randn(3, 4, requires_grad=True)
    w, b = torch.randn(10, 4, requires_grad=True), torch.zeros(10, requires_grad=True)
    targets = KDTargets(kl=torch.zeros(3), labels=torch.full((3,), -100), cf_labels=torch.full((3,), -100),
                        lam=torch.ones(3), n_plain=3, n_kl=0, n_kl_plain=0, n_mlm=0)
    loss, ce, mlm = projected_kd_losses(h, w, b, h.detach(), None, w.detach(), b.detach(), targets, 2.0, 5.0, 2.0)
    loss.backward()
    assert loss.item() == ce.item() == mlm.item() == 0.0
    assert not h.grad.any() and not w.grad.any()


def test_temperature_one_and_tiny_by_hand():
    # one position, V = 2: student logits [0, ln 3] (p_s = [.25, .75]), teacher [.5, .5], label 1
    import math

    h = torch.tensor([[1.0]], requires_grad=True)
    w_s = torch.tensor([[0.0], [math.log(3.0)]], requires_grad=True)
    w_t = torch.zeros(2, 1)
    targets = KDTargets(kl=torch.ones(1), labels=torch.tensor([1]), cf_labels=torch.tensor([1]),
                        lam=torch.ones(1), n_plain=1, n_kl=1, n_kl_plain=1, n_mlm=1)
    _, ce, mlm = projected_kd_losses(h, w_s, torch.zeros(2), h.detach(), None, w_t, torch.zeros(2), targets,
                                     1.0, 1.0, 1.0, pad_to=64)
    assert ce.item() == pytest.approx(0.5 * math.log(4 / 3), abs=1e-6)
    assert mlm.item() == pytest.approx(-math.log(0.75), abs=1e-6)


def test_a_cpu_chunk_holds_a_mebibyte_of_logits():
    assert chunk_size(8192, 2411, "cpu") == 108  # 2**20 / (4 * 2411) = 108.7: the smoke world's vocabulary
    assert chunk_size(8192, 30522, "cpu") == 8  # bert-base-uncased
    assert chunk_size(50, 2411, "cpu") == 50  # a smaller chunk asked for is kept
    assert chunk_size(8192, 2**19, "cpu") == 1
    assert chunk_size(8192, 30522, "cuda") == 8192


def test_training_paths_agree(world_models):
    teacher, tokenizer, ids = world_models
    metrics = []
    for chunk in (0, 8192):
        student = make_student(teacher, 1)
        c = cfg(mitigation=MODES["mixup-replace"], loss_chunk=chunk)
        metrics.append(train(c, teacher, student, tokenizer, ids[:400], progress_bar=False))
    for k in ("distill/loss_kl", "distill/loss_mlm", "distill/loss_cos"):
        assert metrics[1][k] == pytest.approx(metrics[0][k], rel=1e-3), k


def test_saved_student_keeps_its_vocabulary(world_models, tmp_path):
    teacher, tokenizer, ids = world_models
    student = make_student(teacher, 1)
    train(cfg(pad_vocab_to=64), teacher, student, tokenizer, ids[:400], progress_bar=False)
    student.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert loaded.config.vocab_size == teacher.config.vocab_size == student.config.vocab_size
    assert loaded.config.vocab_size % 64  # an unpadded size, as the teacher's
    x = torch.tensor([ids[0]])
    with torch.no_grad():
        assert torch.allclose(loaded(input_ids=x).logits, student(input_ids=x).logits, atol=1e-6)


def test_mixup_lambda_one_equals_plain_in_projected_path(world_models):
    teacher, _, _ = world_models
    c = cfg(mitigation={"mode": "mixup", "p": 1.0})
    batch = batch_for(world_models, c)
    model = MixupStudent(make_student(teacher, 1)).eval()
    one = copy.copy(batch)
    one.lam = torch.ones_like(batch.lam)
    almost = copy.copy(batch)
    almost.lam = torch.where(batch.mixed, torch.full_like(batch.lam, 1 - 1e-7), batch.lam)
    plain, mixed = loss_step(model, teacher, one, c), loss_step(model, teacher, almost, c)
    for k in plain:
        assert mixed[k].item() == pytest.approx(plain[k].item(), rel=1e-4), k
