"""The world's tokenizer: uncased WordPiece over a vocabulary made deterministically from the corpus."""

from __future__ import annotations

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertTokenizer

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def train_tokenizer(sentences: list[str], vocab_size: int) -> BertTokenizer:
    """An uncased WordPiece tokenizer for the corpus, wrapped as a transformers BertTokenizer.

    tokenizers' WordPieceTrainer is not deterministic across processes (huggingface/tokenizers#1794: continuation
    pieces get ids in hash-map order, and those ids break ties between merges), which would make the same seed give
    a different teacher. So the vocabulary is: the special tokens, every character and its ## continuation (so any
    word can be spelled), then whole words by frequency from tokenizers' WordLevelTrainer, which orders ties by
    spelling; WordPiece then tokenizes with it as usual, longest piece first.
    """
    counter = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    counter.normalizer = normalizers.BertNormalizer(lowercase=True)
    counter.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS, show_progress=False)
    counter.train_from_iterator(sentences, trainer)
    words = [w for w, _ in sorted(counter.get_vocab().items(), key=lambda kv: kv[1]) if w not in SPECIAL_TOKENS]
    chars = sorted({c for w in words for c in w})
    pieces = SPECIAL_TOKENS + chars + [f"##{c}" for c in chars]
    pieces += [w for w in words if w not in set(chars)][: max(0, vocab_size - len(pieces))]
    # transformers 5: BertTokenizer(vocab=dict); BertTokenizerFast(vocab_file=...) silently gives 5 tokens.
    tokenizer = BertTokenizer(vocab={p: i for i, p in enumerate(pieces)}, do_lower_case=True)
    if len(tokenizer) != len(pieces):
        raise RuntimeError(f"tokenizer has {len(tokenizer)} tokens, built {len(pieces)}")
    return tokenizer

