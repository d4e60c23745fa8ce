"""The distillation corpus: load sentences, tokenize them once, batch them, and mask them for MLM.

Masking follows the DistilBERT reference: exactly ceil(prob * real tokens) positions of a batch are drawn without
replacement, uniformly or smoothed by token frequency (count^-smoothing, which masks frequent words such as he/she
far less often); of those, 80% become [MASK], 10% keep their token and 10% become a random token. All draws come
from an explicit torch.Generator so that a checkpoint restores them exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from study.config import CorpusConfig, MaskingConfig
from study.errors import DataError

LOCAL_SUFFIXES = {".txt": "text", ".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet"}


def _local_files(path: Path) -> tuple[str, list[str]]:
    files = sorted(p for p in path.rglob("*") if p.suffix in LOCAL_SUFFIXES) if path.is_dir() else [path]
    if not files:
        raise DataError(f"{path}: no {'/'.join(LOCAL_SUFFIXES)} files in this folder")
    kinds = {LOCAL_SUFFIXES.get(p.suffix) for p in files}
    if None in kinds or len(kinds) > 1:
        raise DataError(f"{path}: expected files of one kind among {', '.join(LOCAL_SUFFIXES)}")
    return kinds.pop(), [str(p) for p in files]


def load_corpus(cfg: CorpusConfig, world_sentences: list[str] | None = None) -> list[str]:
    """Non-empty lines of text: the world's sentences, a local file/folder, or a hub dataset by name."""
    if cfg.source == "world":
        if world_sentences is None:
            raise DataError("corpus.source is 'world' but no world was built")
        lines = world_sentences
    else:
        import datasets

        path = Path(cfg.source).expanduser()
        try:
            if path.exists():
                kind, files = _local_files(path)
                ds = datasets.load_dataset(kind, data_files=files, split="train")
            else:
                ds = datasets.load_dataset(cfg.source, cfg.name, split=cfg.split)
        except DataError:
            raise
        except Exception as err:  # datasets raises many types; the user needs the one line
            raise DataError(f"corpus.source {cfg.source!r}: cannot load: {str(err).splitlines()[0]}") from None
        if cfg.text_column not in ds.column_names:
            raise DataError(f"corpus {cfg.source!r}: no column {cfg.text_column!r} (has {ds.column_names})")
        lines = ds[cfg.text_column]
    lines = [s.strip() for s in lines if s and s.strip()]
    if cfg.max_sentences is not None:
        lines = lines[: cfg.max_sentences]
    if not lines:
        raise DataError(f"corpus {cfg.source!r}: no text")
    return lines


def tokenize(sentences: list[str], tokenizer, max_length: int, max_tokens: int | None = None,
             chunk: int = 10_000) -> list[list[int]]:
    """Word-piece ids per sentence, truncated to max_length; with max_tokens, the first sentences within that budget
    (tokenized a chunk at a time, so a large corpus is not tokenized past the budget)."""
    if max_tokens is None:
        return tokenizer(sentences, truncation=True, max_length=max_length)["input_ids"]
    out, used = [], 0
    for start in range(0, len(sentences), chunk):
        for ids in tokenizer(sentences[start:start + chunk], truncation=True, max_length=max_length)["input_ids"]:
            if used + len(ids) > max_tokens:
                return out
            out.append(ids)
            used += len(ids)
    return out


def pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, L) input ids padded on the right, and the (B, L) attention mask."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    lengths = torch.tensor([len(s) for s in seqs])
    return ids, (torch.arange(width)[None, :] < lengths[:, None]).long()


def selection_weights(corpus_ids: list[list[int]], vocab_size: int, special_ids: list[int],
                      cfg: MaskingConfig) -> torch.Tensor:
    """(V,) weight of each token id when choosing what to mask; 0 for special tokens."""
    if cfg.strategy == "uniform":
        weights = torch.ones(vocab_size)
    else:
        counts = torch.zeros(vocab_size)
        for ids in corpus_ids:
            counts.index_add_(0, torch.tensor(ids), torch.ones(len(ids)))
        weights = counts.clamp(min=1) ** -cfg.smoothing
    weights[special_ids] = 0.0
    return weights


@dataclass
class MaskPlan:
    """Which positions are MLM targets and what each becomes; applies the same to a sequence and its counterfactual."""

    selected: torch.Tensor  # (B, L) bool
    replacement: torch.Tensor  # (B, L) long: the token written there, or -1 to keep the original

    def apply(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(masked input ids, labels with -100 off target)."""
        write = self.selected & (self.replacement >= 0)
        masked = torch.where(write, self.replacement, ids)
        labels = torch.where(self.selected, ids, torch.full_like(ids, -100))
        return masked, labels


def plan_masking(ids: torch.Tensor, weights: torch.Tensor, cfg: MaskingConfig, mask_id: int,
                 generator: torch.Generator) -> MaskPlan:
    """Draw ceil(prob * n_real) target positions of the batch by `weights`, then 80/10/10 mask/keep/random."""
    w = weights[ids].flatten()  # (B*L,) zero on pads and special tokens
    n_real = int((w > 0).sum())
    n_target = min(n_real, math.ceil(cfg.prob * n_real))
    selected = torch.zeros_like(w, dtype=torch.bool)
    if n_target:
        selected[torch.multinomial(w, n_target, replacement=False, generator=generator)] = True
    selected = selected.view_as(ids)

    shares = torch.tensor([cfg.mask, cfg.keep, cfg.random])
    action = torch.multinomial(shares, ids.numel(), replacement=True, generator=generator).view_as(ids)
    candidates = weights.nonzero().squeeze(1)  # random replacements come from the ordinary vocabulary
    random_ids = candidates[torch.randint(len(candidates), ids.shape, generator=generator)]
    replacement = torch.where(action == 0, torch.full_like(ids, mask_id), torch.where(action == 2, random_ids, -1))
    return MaskPlan(selected, replacement)
