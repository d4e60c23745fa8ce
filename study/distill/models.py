"""Teachers and students: load a masked LM by hub name or local dir, and make a DistilBERT-style student from a BERT.

The student is built the way Sanh et al. (2019) built DistilBERT from bert-base-uncased: a DistilBertForMaskedLM
with half the layers, initialised from the teacher's word and position embeddings (no token-type embeddings),
every other layer, and the whole MLM head including its transform (dense + LayerNorm), not only the decoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, DistilBertConfig, DistilBertForMaskedLM
from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

from study.errors import ModelError

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "spiece.model", "vocab.json")
WEIGHTS_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "pytorch_model.bin.index.json")


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).suffix != "" or name.count("/") > 1


def _config(name_or_path: str | Path) -> tuple[str, object]:
    """(the name to load the model by: a local dir with ~ expanded, or a hub name; its config). A path that is not
    there, or a config that does not load, is a ModelError naming it."""
    name = str(name_or_path)
    if not Path(name).expanduser().exists() and _looks_like_path(name):
        raise ModelError(f"{name}: no such model directory")
    name = str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
    try:
        return name, AutoConfig.from_pretrained(name)
    except Exception as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{name}: cannot load a model config ({first})") from None


def _check_tokenizer(name: str) -> None:
    if Path(name).is_dir() and not any((Path(name) / f).is_file() for f in TOKENIZER_FILES):
        raise ModelError(f"{name}: no tokenizer files (one of {', '.join(TOKENIZER_FILES)})")


def check_model(name_or_path: str | Path) -> str:
    """The name to load a model by, checked without loading it: its config loads and, for a local dir, weights and
    tokenizer files are there; else a ModelError naming it. What fine-tuning a model on GLUE or the world's tasks
    needs first (load_masked_lm checks a masked LM further)."""
    name, _ = _config(name_or_path)
    if Path(name).is_dir() and not any((Path(name) / f).is_file() for f in WEIGHTS_FILES):
        raise ModelError(f"{name}: cannot load the model's weights (none of {', '.join(WEIGHTS_FILES)})")
    _check_tokenizer(name)
    return name


def load_masked_lm(name_or_path: str | Path):
    """(model, tokenizer) for a hub name such as bert-base-uncased or a local model dir; eval mode."""
    name, config = _config(name_or_path)
    if config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES:
        raise ModelError(f"{name}: model type {config.model_type!r} has no masked-LM head")
    try:
        model, info = AutoModelForMaskedLM.from_pretrained(name, output_loading_info=True)
    except (OSError, ValueError) as err:  # no weights file, a truncated one, shapes that do not fit the config
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(f"{name}: cannot load the model's weights ({first})") from None
    # A checkpoint saved without its MLM head (e.g. a plain BertModel) loads with a random head: refuse it.
    head_missing = [k for k in info["missing_keys"] if not k.startswith(("bert.", "distilbert.", "roberta."))]
    if head_missing:
        raise ModelError(f"{name}: checkpoint has no MLM head weights (missing {head_missing[0]}, ...)")
    _check_tokenizer(name)
    tokenizer = AutoTokenizer.from_pretrained(name)
    # Benchmarks truncate to this, so a sentence longer than the model's positions cannot crash a forward pass.
    tokenizer.model_max_length = min(tokenizer.model_max_length, model.config.max_position_embeddings)
    return model.eval(), tokenizer


def logits_at(model, input_ids: torch.Tensor, attention_mask: torch.Tensor, rows: torch.Tensor,
              cols: torch.Tensor) -> torch.Tensor:
    """(n, V) MLM logits at positions (rows[i], cols[i]) only.

    The encoder runs on every token, the vocabulary projection only where a score is read: for a small model the
    projection is most of a forward pass, and a masked-token benchmark reads one position per sequence.
    """
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind == "bert":
        hidden = model.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, H)
        return model.cls(hidden[rows, cols])
    if kind == "distilbert":
        hidden = model.distilbert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        h = model.vocab_layer_norm(model.activation(model.vocab_transform(hidden[rows, cols])))
        return model.vocab_projector(h)
    if hasattr(model, "lm_head"):  # RoBERTa and its kin
        hidden = model.base_model(input_ids=input_ids, attention_mask=attention_mask)[0]
        return model.lm_head(hidden[rows, cols])
    return model(input_ids=input_ids, attention_mask=attention_mask).logits[rows, cols]


def mlm_head(model):
    """(transform, weight (V, H), bias (V,)) of a BERT or DistilBERT MLM head: logits = transform(h) @ weight.T + bias.

    The distillation loss projects onto the vocabulary itself, a chunk of positions at a time
    (study.distill.projected_loss), so it takes the head apart; `model.base_model` gives the encoder's last hidden
    states h.
    """
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind == "bert":
        head = model.cls.predictions
        return head.transform, head.decoder.weight, head.decoder.bias
    if kind == "distilbert":
        return (lambda h: model.vocab_layer_norm(model.activation(model.vocab_transform(h))),
                model.vocab_projector.weight, model.vocab_projector.bias)
    raise ModelError(f"model type {kind!r}: the projected KD loss knows the BERT and DistilBERT MLM heads only")


def student_layers(n_teacher: int, n_student: int) -> list[int]:
    """Teacher layers a student takes: evenly spaced, first and last included, rounded half up.

    For 12 -> 6 this is DistilBERT's table 0, 2, 4, 7, 9, 11; for 4 -> 2 it is 0, 3; a 1-layer student takes 0.
    """
    if not 1 <= n_student <= n_teacher:
        raise ModelError(f"student.n_layers: must be between 1 and the teacher's {n_teacher}, got {n_student}")
    return [int(np.floor(x + 0.5)) for x in np.linspace(0, n_teacher - 1, n_student)]


# (student name, teacher name) within one transformer layer.
LAYER_TABLE = [
    ("attention.q_lin", "attention.self.query"),
    ("attention.k_lin", "attention.self.key"),
    ("attention.v_lin", "attention.self.value"),
    ("attention.out_lin", "attention.output.dense"),
    ("sa_layer_norm", "attention.output.LayerNorm"),
    ("ffn.lin1", "intermediate.dense"),
    ("ffn.lin2", "output.dense"),
    ("output_layer_norm", "output.LayerNorm"),
]
# Outside the layers. Token-type embeddings are dropped, as in DistilBERT.
OUTER_TABLE = [
    ("distilbert.embeddings.word_embeddings", "bert.embeddings.word_embeddings"),
    ("distilbert.embeddings.position_embeddings", "bert.embeddings.position_embeddings"),
    ("distilbert.embeddings.LayerNorm", "bert.embeddings.LayerNorm"),
    ("vocab_transform", "cls.predictions.transform.dense"),
    ("vocab_layer_norm", "cls.predictions.transform.LayerNorm"),
]


def copy_map(layers: list[int]) -> dict[str, str]:
    """student parameter name -> teacher parameter name, for every tensor the student takes."""
    pairs = list(OUTER_TABLE)
    for i, t in enumerate(layers):
        pairs += [(f"distilbert.transformer.layer.{i}.{s}", f"bert.encoder.layer.{t}.{n}") for s, n in LAYER_TABLE]
    mapping = {f"{s}.{p}": f"{t}.{p}" for s, t in pairs for p in ("weight", "bias") if not s.endswith("embeddings")}
    mapping.update({f"{s}.weight": f"{t}.weight" for s, t in pairs if s.endswith("embeddings")})
    mapping["vocab_projector.bias"] = "cls.predictions.bias"  # the decoder weight is tied to the word embeddings
    return mapping


def make_student(teacher, n_layers: int | None = None, layers: list[int] | None = None) -> DistilBertForMaskedLM:
    """A DistilBertForMaskedLM initialised from a BertForMaskedLM teacher."""
    tc = teacher.config
    if tc.model_type != "bert":
        raise ModelError(f"teacher is {tc.model_type!r}: making a DistilBERT student needs a BERT teacher")
    if layers is None:
        layers = student_layers(tc.num_hidden_layers, n_layers or max(1, tc.num_hidden_layers // 2))
    if any(not 0 <= t < tc.num_hidden_layers for t in layers):
        raise ModelError(f"student.layers: each must be a teacher layer 0..{tc.num_hidden_layers - 1}, got {layers}")
    config = DistilBertConfig(
        vocab_size=tc.vocab_size, max_position_embeddings=tc.max_position_embeddings, dim=tc.hidden_size,
        n_layers=len(layers), n_heads=tc.num_attention_heads, hidden_dim=tc.intermediate_size,
        dropout=tc.hidden_dropout_prob, attention_dropout=tc.attention_probs_dropout_prob, activation=tc.hidden_act,
        initializer_range=tc.initializer_range, pad_token_id=tc.pad_token_id, sinusoidal_pos_embds=False,
    )
    student = DistilBertForMaskedLM(config)
    source = teacher.state_dict()
    target = student.state_dict()
    with torch.no_grad():
        for s_name, t_name in copy_map(layers).items():
            if target[s_name].shape != source[t_name].shape:
                raise ModelError(f"{s_name} {tuple(target[s_name].shape)} != {t_name} {tuple(source[t_name].shape)}")
            target[s_name].copy_(source[t_name])
    student.load_state_dict(target)
    student.tie_weights()
    student.config.kdstudy_teacher_layers = layers
    return student


def save_student(student, tokenizer, directory: Path) -> Path:
    """The student as a transformers model dir with its tokenizer: what `from_pretrained` and the evaluation load."""
    student.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
