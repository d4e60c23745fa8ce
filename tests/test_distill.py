"""The distillation loop: determinism, exact resume, mitigations, divergence."""

import copy
from pathlib import Path

import pytest
import torch

from study.config import DistillConfig
from study.distill.batches import DistillData, assemble
from study.distill.checkpoint import CHECKPOINT, read_state
from study.distill.data import selection_weights
from study.distill.loop import train
from study.distill.models import make_student
from study.distill.step import MixupStudent, loss_step
from study.errors import Diverged, ModelError


def cfg(**kw):
    base = {"steps": 6, "batch_size": 8, "max_length": 24, "log_every": 2}
    return DistillConfig.model_validate({**base, **kw})


def run(world_models, c, **kw):
    teacher, tokenizer, ids = world_models
    student = make_student(teacher, 1)
    metrics = train(c, teacher, student, tokenizer, ids[:400], **kw)
    return student, metrics


def test_same_seed_same_result(world_models):
    s1, m1 = run(world_models, cfg())
    s2, m2 = run(world_models, cfg())
    assert m1["distill/loss"] == m2["distill/loss"]
    assert all(torch.equal(a, b) for a, b in zip(s1.state_dict().values(), s2.state_dict().values()))
    s3, m3 = run(world_models, cfg(seed=1))
    assert m3["distill/loss"] != m1["distill/loss"]


@pytest.mark.parametrize("mode", [{"mode": "none"}, {"mode": "mixup", "alpha": 0.4}])
def test_resume_equals_uninterrupted(world_models, tmp_path, mode):
    c = cfg(steps=8, mitigation=mode)
    full, m_full = run(world_models, c)
    run(world_models, c, checkpoint_dir=tmp_path, stop_at=3)  # "interrupted" after step 3
    resumed, m_res = run(world_models, c, checkpoint_dir=tmp_path)
    assert m_res["distill/steps"] == 8
    for (name, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def test_mixup_at_lambda_one_equals_plain_kd(world_models):
    teacher, tokenizer, ids = world_models
    c = cfg(mitigation={"mode": "mixup", "p": 1.0})
    data = DistillData(ids[:200], tokenizer, c)
    weights = selection_weights(data.ids, len(tokenizer), tokenizer.all_special_ids, c.masking)
    index = [i for i in range(200) if data.cf[i] is not None][:8]
    batch = assemble(data, index, c, tokenizer, weights, torch.Generator().manual_seed(0))
    assert batch.mixed.all() and not torch.equal(batch.ids, batch.cf_ids)
    model = MixupStudent(make_student(teacher, 1)).eval()
    one = copy.copy(batch)
    one.lam = torch.ones(8)
    plain = loss_step(model, teacher, one, c)
    # force the mixing path with lambda = 1: the student input, the teacher targets and the MLM targets reduce to x
    logits_mix, _ = model(batch.ids, batch.attention_mask, batch.cf_ids, torch.ones(8))
    logits_plain, _ = model(batch.ids, batch.attention_mask)
    assert torch.equal(logits_mix, logits_plain)
    almost = copy.copy(batch)
    almost.lam = torch.full((8,), 1 - 1e-7)
    mixed = loss_step(model, teacher, almost, c)
    for k in plain:
        assert mixed[k].item() == pytest.approx(plain[k].item(), rel=1e-4), k


def test_mixup_mixes_with_lambda_below_one(world_models):
    teacher, tokenizer, ids = world_models
    c = cfg(mitigation={"mode": "mixup", "p": 1.0, "alpha": 0.4})
    data = DistillData(ids[:200], tokenizer, c)
    weights = selection_weights(data.ids, len(tokenizer), tokenizer.all_special_ids, c.masking)
    gendered = [i for i in range(200) if data.cf[i] is not None][:6]
    neutral = [i for i in range(200) if data.cf[i] is None][:2]
    batch = assemble(data, gendered + neutral, c, tokenizer, weights, torch.Generator().manual_seed(0))
    assert (batch.lam[:6] < 1).all() and (batch.lam[6:] == 1).all()
    # the same positions are masked in x and x_cf, with the same [MASK]/random writes
    assert torch.equal(batch.labels != -100, batch.cf_labels != -100)


def test_augment_appends_mixed_copies(world_models):
    teacher, tokenizer, ids = world_models
    c = cfg(mitigation={"mode": "mixup", "p": 1.0, "placement": "augment"})
    data = DistillData(ids[:200], tokenizer, c)
    weights = selection_weights(data.ids, len(tokenizer), tokenizer.all_special_ids, c.masking)
    gendered = [i for i in range(200) if data.cf[i] is not None][:5]
    neutral = [i for i in range(200) if data.cf[i] is None][:3]
    batch = assemble(data, gendered + neutral, c, tokenizer, weights, torch.Generator().manual_seed(0))
    assert batch.ids.shape[0] == 13 and (batch.lam[:8] == 1).all() and (batch.lam[8:] < 1).all()


def test_cda_adds_counterfactuals(world_models):
    _, tokenizer, ids = world_models
    plain = DistillData(ids[:200], tokenizer, cfg())
    cda = DistillData(ids[:200], tokenizer, cfg(mitigation={"mode": "cda"}))
    assert len(cda.ids) == 200 + plain.n_gendered and cda.n_gendered == plain.n_gendered > 50


@pytest.mark.parametrize("mitigation, no_op", [({"mode": "cda"}, {"mode": "none"}),
                                                ({"mode": "mixup", "p": 1.0}, {"mode": "mixup", "p": 0.0})])
def test_a_mitigation_changes_the_training_its_no_op_leaves_alone(world_models, mitigation, no_op):
    """A mitigation that did nothing would train exactly as its no-op does, to the same weights: CDA that added no
    counterfactual as plain KD, mixup that mixed no row as mixup with p = 0 (the same random draws, every lambda 1)."""
    on, m_on = run(world_models, cfg(mitigation=mitigation))
    off, m_off = run(world_models, cfg(mitigation=no_op))
    assert all(torch.isfinite(torch.tensor(v)) for v in m_on.values())
    assert m_on["distill/loss"] != m_off["distill/loss"]
    assert not all(torch.equal(a, b) for a, b in zip(on.state_dict().values(), off.state_dict().values()))


def test_divergence_raises_with_step(world_models):
    with pytest.raises(Diverged, match="at step"):
        run(world_models, cfg(optim={"lr": 1e30, "clip": 1e30}))


class _WritesAFile:
    """What a crafted checkpoint could hold: unpickling it calls Path.write_text (it could as well run a shell)."""

    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (Path.write_text, (self.target, "this ran"))


def test_a_checkpoint_with_a_pickled_payload_is_refused_unrun(world_models, tmp_path, study_yaml, capsys):
    from study.cli import main

    run(world_models, cfg(steps=2), checkpoint_dir=tmp_path / "good")  # a real checkpoint loads weights-only
    state = read_state(tmp_path / "good" / CHECKPOINT)
    assert state["step"] == 2 and isinstance(state["metrics"]["distill/loss"], float)

    out, marker = tmp_path / "out", tmp_path / "pwned.txt"
    (out / "checkpoint").mkdir(parents=True)
    bad = {**state, "metrics": {"distill/loss": _WritesAFile(marker)}}
    torch.save(bad, out / "checkpoint" / CHECKPOINT)
    with pytest.raises(ModelError, match="refused to load"):
        read_state(out / "checkpoint" / CHECKPOINT)
    # `kdstudy distill` resumes from a checkpoint in its --out folder: there it is one line, exit 2
    assert main(["distill", str(study_yaml()), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("kdstudy: error:") and f"{out / 'checkpoint' / CHECKPOINT}: refused to load" in err
    assert not marker.exists()  # nothing in it ran

    (out / "checkpoint" / CHECKPOINT).write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ModelError, match="not a readable checkpoint"):
        read_state(out / "checkpoint" / CHECKPOINT)
