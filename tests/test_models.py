"""Student initialisation copies exactly the named teacher tensors; loading errors are one clear line."""

import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM, BertModel, DistilBertForMaskedLM

from study.distill.models import ModelError, copy_map, load_masked_lm, make_student, student_layers


def tiny_bert(layers=6):
    torch.manual_seed(0)
    return BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                                      intermediate_size=32, max_position_embeddings=20))


def test_layer_rule_reproduces_distilbert_table():
    assert student_layers(12, 6) == [0, 2, 4, 7, 9, 11]
    assert student_layers(4, 2) == [0, 3]
    assert student_layers(6, 3) == [0, 3, 5]
    assert student_layers(4, 1) == [0]
    with pytest.raises(ModelError):
        student_layers(4, 5)


def test_student_copies_named_teacher_tensors():
    teacher = tiny_bert(6)
    student = make_student(teacher)
    assert isinstance(student, DistilBertForMaskedLM)
    assert student.config.n_layers == 3 and student.config.kdstudy_teacher_layers == [0, 3, 5]
    t, s = teacher.state_dict(), student.state_dict()
    mapping = copy_map([0, 3, 5])
    query = "attention.self.query.weight"
    assert mapping["distilbert.transformer.layer.1.attention.q_lin.weight"] == f"bert.encoder.layer.3.{query}"
    assert mapping["vocab_transform.weight"] == "cls.predictions.transform.dense.weight"
    assert mapping["vocab_layer_norm.bias"] == "cls.predictions.transform.LayerNorm.bias"
    for s_name, t_name in mapping.items():
        assert torch.equal(s[s_name], t[t_name]), s_name
    # every student tensor is accounted for: copied, or the decoder weight tied to the copied word embeddings
    assert set(s) - set(mapping) == {"vocab_projector.weight"}
    assert torch.equal(s["vocab_projector.weight"], t["bert.embeddings.word_embeddings.weight"])
    assert not any("token_type" in k for k in s)


def test_student_explicit_layers_and_bad_layers():
    teacher = tiny_bert(4)
    student = make_student(teacher, layers=[1, 2])
    assert torch.equal(student.distilbert.transformer.layer[0].ffn.lin1.weight,
                       teacher.bert.encoder.layer[1].intermediate.dense.weight)
    with pytest.raises(ModelError, match="teacher layer"):
        make_student(teacher, layers=[0, 4])


def test_student_saves_and_loads_with_automodel(tmp_path):
    student = make_student(tiny_bert(4))
    student.save_pretrained(tmp_path)
    loaded = AutoModelForMaskedLM.from_pretrained(tmp_path)
    ids = torch.tensor([[2, 7, 9, 3]])
    assert torch.allclose(loaded.eval()(input_ids=ids).logits, student.eval()(input_ids=ids).logits)


def test_missing_path_is_one_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no such model directory"):
        load_masked_lm(str(tmp_path / "nope"))


def test_model_without_mlm_head_is_refused(tmp_path):
    BertModel(tiny_bert().config).save_pretrained(tmp_path / "encoder")
    with pytest.raises(ModelError, match="no MLM head"):
        load_masked_lm(tmp_path / "encoder")


def test_model_type_without_mlm_is_refused(tmp_path):
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(ModelError, match="has no masked-LM head"):
        load_masked_lm(tmp_path / "gpt")


def test_logits_at_equals_the_full_forward_at_those_positions(world_models):
    import torch

    from study.distill.models import logits_at

    teacher, tokenizer, ids = world_models
    student = make_student(teacher, 1).eval()
    batch = torch.tensor([ids[0][:8], ids[1][:8]])
    attn = torch.ones_like(batch)
    rows, cols = torch.tensor([0, 1, 1]), torch.tensor([3, 0, 7])
    with torch.no_grad():
        for model in (teacher, student):
            full = model(input_ids=batch, attention_mask=attn).logits[rows, cols]
            assert torch.allclose(logits_at(model, batch, attn, rows, cols), full, atol=1e-5)
