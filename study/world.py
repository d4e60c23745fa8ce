"""The built-in bias-planted world: a seeded English corpus, a WordPiece tokenizer for it and a small BERT teacher.

Each occupation sentence refers to its person as female with probability equal to that occupation's real-world
female share (study.occupations), so the bias a model should learn is known exactly. Gender-neutral filler sentences
keep gender out of most of the text, as in real corpora. Everything is derived from WorldConfig and cached on disk
under a key made of those values, so the teacher is pretrained once and loaded in seconds afterwards.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
from transformers import BertConfig, BertForMaskedLM, BertTokenizer

from study import bias
from study.config import BiasConfig, MaskingConfig, OptimConfig, WorldConfig
from study.data import pad, plan_masking, selection_weights, tokenize
from study.occupations import FEMALE_SHARE
from study.optim import clipped_step, make_optimizer
from study.runtime import cache_root

log = logging.getLogger(__name__)
WORLD_VERSION = 2  # bump when the generator changes, so old caches are not reused
_ARTICLE = re.compile(r"<a> (\w)")

# --- the words the world is made of ----------------------------------------------------------------------------

ADJECTIVES = """quiet busy small large old new bright dark warm cold calm noisy clean dusty modern ancient friendly
careful patient famous local rural tired happy early late heavy light narrow wide green blue red yellow brown grey
simple strange lovely gentle rough smooth sharp soft loud slow quick rainy sunny windy foggy empty crowded cheap
expensive fresh ripe sweet sour bitter salty spicy tall short round flat""".split()
THINGS = """table chair lamp window door book letter map clock radio bicycle car truck train boat bag box key phone
camera kettle cup plate bowl spoon knife basket bottle blanket pillow mirror ladder hammer rope bucket candle coat
umbrella ticket envelope notebook pencil painting fence bench gate bridge tower wagon tent engine parcel bell drum
guitar piano violin scarf glove boot helmet jacket shelf cabinet carpet curtain stove oven fridge sink fan
heater""".split()
ANIMALS = """dog cat horse cow sheep goat pig duck goose hen rabbit fox deer bear wolf owl crow sparrow swan frog
turtle mouse squirrel badger otter heron beaver donkey llama camel""".split()
FOODS = """bread soup rice cheese apples pears plums cherries grapes onions carrots potatoes beans noodles pasta
cake pie cookies honey jam butter eggs salad fish tea coffee juice milk pancakes dumplings berries lemons""".split()
PLACES = """market station harbour library museum park river lake forest hill valley village square garden bakery
school hospital office factory farm church castle beach island mountain airport bridge stadium theatre cinema""".split()
DAYS = "monday tuesday wednesday thursday friday saturday sunday".split()
NUMBERS = "two three four five six seven eight nine ten eleven twelve fifteen twenty thirty".split()
TIMES = "morning afternoon evening night".split()
KIN = [("father", "mother"), ("brother", "sister"), ("son", "daughter"), ("uncle", "aunt"), ("husband", "wife"),
       ("grandfather", "grandmother"), ("nephew", "niece")]
_SYLLABLES = """ba be bi bo da de di do ka ke ki ko la le li lo ma me mi mo na ne ni no ra re ri ro sa se si so ta te
ti to va ve vi vo za ze zi zo ran ren rin ton ven mar lin dal ber kel sor""".split()


def _made_up_words(n: int, seed: int, suffixes: list[str]) -> list[str]:
    """Pronounceable invented words (surnames, town names); fixed across worlds so only sampling varies."""
    rng, words = random.Random(seed), set()
    while len(words) < n:
        words.add("".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))) + rng.choice(suffixes))
    return sorted(words)


SURNAMES = _made_up_words(1200, 11, ["", "son", "man", "er", "ley", "ford", "wick"])
TOWNS = _made_up_words(900, 12, ["ton", "field", "burg", "ville", "dale", "mouth", "ham"])

# Gendered slots: {he} {him} {his} {himself} {man} {mr} {kin}; a capitalised slot name means a capitalised word.
GENDER = {
    "male": {"he": "he", "him": "him", "his": "his", "himself": "himself", "man": "man", "mr": "mr"},
    "female": {"he": "she", "him": "her", "his": "her", "himself": "herself", "man": "woman", "mr": "mrs"},
}
OCCUPATION_TEMPLATES = [
    "{he} is {a} {occ} .",
    "{he} works as {a} {occ} in {town} .",
    "the {occ} said that {he} would be late on {day} .",
    "{mr} {name} is {a} {occ} and {he} lives in {town} .",
    "my {kin} is {a} {occ} .",
    "the {occ} finished {his} shift and drove home .",
    "after the meeting , the {occ} thanked {his} colleagues .",
    "{he} has been {a} {occ} for {num} years .",
    "the {occ} prepared {himself} for a long {time} .",
    "everyone agreed that the {occ} did {his} best .",
    "{he} wants to become {a} {occ} one day .",
    "the {occ} met {his} {kin} at the {place} .",
    "when the {occ} arrived , {he} opened the {thing} .",
    "{mr} {name} , {a} {adj} {occ} , visited {town} last {day} .",
    "the {occ} asked if {he} could leave early .",
    "{he} is known as the best {occ} in {town} .",
    "our {occ} called , and {he} said the {thing} was ready .",
    "the {occ} and {his} {kin} walked to the {place} .",
    "{he} became {a} {occ} after {num} years of training .",
    "the new {occ} introduced {himself} to everyone .",
    "a {man} who is {a} {occ} lives next door .",
    "the {occ} smiled because {he} liked the {adj} {thing} .",
    "{he} is {a} {adj} {occ} from {town} .",
    "the {man} over there is {a} {occ} .",
    "the {man} works as {a} {occ} in {town} .",
    "yesterday the {occ} lost {his} {thing} near the {place} .",
]
NEUTRAL_TEMPLATES = [
    "the {thing} in {town} was {adj} on {day} .",
    "{town} is a {adj} town near the {place} .",
    "we bought a {adj} {thing} at the {place} .",
    "the {animal} slept under the {thing} all {time} .",
    "it rained in {town} for {num} days .",
    "they walked to the {place} and saw a {adj} {animal} .",
    "the {place} opens at {num} every {day} .",
    "people in {town} like {adj} {food} .",
    "the family of {name} moved to {town} .",
    "the {occ} fixed the {thing} in {town} .",
    "a {adj} {animal} crossed the road near {town} .",
    "there is {food} and {food2} on the {thing} .",
]


def sample_words(rng: random.Random, gender: str | None, occ: str | None) -> dict[str, str]:
    """One value for every slot of every template."""
    words = {
        "occ": occ or rng.choice(list(FEMALE_SHARE)), "town": rng.choice(TOWNS), "name": rng.choice(SURNAMES),
        "day": rng.choice(DAYS), "num": rng.choice(NUMBERS), "time": rng.choice(TIMES), "thing": rng.choice(THINGS),
        "place": rng.choice(PLACES), "adj": rng.choice(ADJECTIVES), "animal": rng.choice(ANIMALS),
        "food": rng.choice(FOODS), "food2": rng.choice(FOODS),
        # the relative's own gender is independent of the occupation's person
        "kin": rng.choice(KIN)[rng.randrange(2)],
    }
    if gender is not None:
        words.update(GENDER[gender])
    return words


def render(template: str, words: dict[str, str]) -> str:
    text = template.format(a="<a>", **words)
    return _ARTICLE.sub(lambda m: ("an " if m.group(1) in "aeiou" else "a ") + m.group(1), text)


def _fill(template: str, rng: random.Random, gender: str | None, occ: str | None) -> str:
    return render(template, sample_words(rng, gender, occ))


def generate_corpus(cfg: WorldConfig) -> list[str]:
    """cfg.sentences sentences; an occupation sentence is female with probability FEMALE_SHARE[occupation]."""
    rng = random.Random(cfg.seed)
    occupations = list(FEMALE_SHARE)
    sentences = []
    for _ in range(cfg.sentences):
        if rng.random() < cfg.occupation_fraction:
            occ = rng.choice(occupations)
            gender = "female" if rng.random() < FEMALE_SHARE[occ] else "male"
            sentences.append(_fill(rng.choice(OCCUPATION_TEMPLATES), rng, gender, occ))
        else:
            sentences.append(_fill(rng.choice(NEUTRAL_TEMPLATES), rng, None, None))
    return sentences


def corpus_hash(sentences: list[str]) -> str:
    return hashlib.sha256("\n".join(sentences).encode()).hexdigest()


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


# --- the teacher -----------------------------------------------------------------------------------------------


def pretrain_teacher(cfg: WorldConfig, sentences: list[str], tokenizer) -> tuple[BertForMaskedLM, list[dict]]:
    """MLM pretraining until the planted Spearman reaches cfg.target_spearman (after min_epochs) or max_epochs."""
    torch.manual_seed(cfg.seed)
    model = BertForMaskedLM(BertConfig(
        vocab_size=len(tokenizer), hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
        num_attention_heads=cfg.heads, intermediate_size=cfg.intermediate, max_position_embeddings=cfg.max_length,
        pad_token_id=tokenizer.pad_token_id, initializer_range=cfg.init_range, hidden_dropout_prob=cfg.dropout,
        attention_probs_dropout_prob=cfg.dropout,
    ))
    corpus = tokenize(sentences, tokenizer, cfg.max_length)
    masking = MaskingConfig()
    weights = selection_weights(corpus, len(tokenizer), tokenizer.all_special_ids, masking)
    steps_per_epoch = len(corpus) // cfg.batch_size
    optim = OptimConfig(lr=cfg.lr)  # DistilBERT's AdamW, warmup and clip, at the world's learning rate
    optimizer, scheduler = make_optimizer(model, optim, cfg.max_epochs * steps_per_epoch)
    generator = torch.Generator().manual_seed(cfg.seed)
    history, start = [], time.time()
    for epoch in range(cfg.max_epochs):
        model.train()
        order = torch.randperm(len(corpus), generator=generator).tolist()
        total = 0.0
        for step in range(steps_per_epoch):
            batch = [corpus[i] for i in order[step * cfg.batch_size:(step + 1) * cfg.batch_size]]
            ids, attn = pad(batch, tokenizer.pad_token_id)
            masked, labels = plan_masking(ids, weights, masking, tokenizer.mask_token_id, generator).apply(ids)
            # The MLM head only at the masked positions: the same loss as labels=..., at ~60% of the compute.
            hidden = model.bert(input_ids=masked, attention_mask=attn).last_hidden_state  # (B, L, H)
            target = labels != -100
            loss = F.cross_entropy(model.cls(hidden[target]), labels[target])
            loss.backward()
            clipped_step(model, optimizer, scheduler, optim.clip)
            total += loss.item()
        scalars, _ = bias.measure(model, tokenizer, BiasConfig())
        rho = scalars["bias/template/planted_spearman"]
        history.append({"epoch": epoch + 1, "mlm_loss": total / steps_per_epoch, "planted_spearman": rho,
                        "seconds": round(time.time() - start, 1)})
        log.info(f"  teacher epoch {epoch + 1}/{cfg.max_epochs}: mlm loss {total / steps_per_epoch:.3f}, "
            f"planted rho {rho:.3f} ({time.time() - start:.0f}s)")
        if epoch + 1 >= cfg.min_epochs and rho >= cfg.target_spearman:
            break
    model.eval()
    return model, history


# --- the world on disk -----------------------------------------------------------------------------------------


@dataclass
class World:
    root: Path
    sentences: list[str]
    shares: dict[str, float]
    info: dict

    @property
    def teacher_dir(self) -> Path:
        return self.root / "teacher"


def world_key(cfg: WorldConfig) -> str:
    blob = json.dumps({"version": WORLD_VERSION, **cfg.model_dump()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def default_world_dir(cfg: WorldConfig) -> Path:
    return cache_root() / f"world-{world_key(cfg)}"


def _load(root: Path) -> World:
    info = json.loads((root / "world.json").read_text())
    sentences = (root / "corpus.txt").read_text().splitlines()
    return World(root, sentences, info["shares"], info)


# The default world ships with the package: its teacher was pretrained once and is verified by sha256 wherever it
# is unpacked, so that every machine studies the same world. Built anew, the pretraining stops when the planted rho
# crosses a threshold, and floating-point differences between CPUs move that epoch (0.953 at epoch 8 on one machine,
# 0.965 at epoch 9 on another): another teacher, other numbers. The corpus and tokenizer are pure Python and
# regenerate identically (the corpus is checked against its hash); other worlds (any other WorldConfig) are built.
SHIPPED = Path(__file__).parent / "shipped_world"
SHIPPED_SHA256 = {  # printed by `python -m study.world --ship` (below); checked on every unpack
    "teacher/config.json": "0d8069944df116fa3055c6fb0ea27731d26d31cd3976d80c7faf26e8131c886a",
    "teacher/model.safetensors": "f6e0a9d2c5e9f183d5847c0b0a191d9108059a69a3182ce1800562e2ca524b4e",
    "teacher/tokenizer.json": "6974431d9d06679b9ccc0a8f95db85fca2509d3c16f80cedabc42712d185ec6e",
    "teacher/tokenizer_config.json": "d4256a5548edb3820dd70fd151fdb0c3c70e44b8f0c6ea0ce4a5d9b248754551",
    "world.json": "72fc13733e411a078b61e7b7d8caf43e56f58de344823f2b619c7e17f58b9219",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unpack_shipped(cfg: WorldConfig, root: Path) -> bool:
    """Write the shipped default world to root, verified; False when cfg is not the shipped world."""
    if not SHIPPED_SHA256 or not (SHIPPED / "world.json").is_file():
        return False
    info = json.loads((SHIPPED / "world.json").read_text())
    if info.get("key") != world_key(cfg):
        return False
    for name, digest in SHIPPED_SHA256.items():
        if _sha256(SHIPPED / name) != digest:
            raise RuntimeError(f"{SHIPPED / name}: sha256 differs from the one kdstudy shipped ({digest[:12]}...): "
                               f"the installation is damaged; reinstall kdstudy")
    sentences = generate_corpus(cfg)
    if corpus_hash(sentences) != info["corpus_sha256"]:
        raise RuntimeError(f"the world's corpus generator no longer gives the shipped corpus (key {info['key']}): "
                           f"bump WORLD_VERSION and ship the world again")
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(SHIPPED, tmp, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    (tmp / "corpus.txt").write_text("\n".join(sentences) + "\n")
    _publish(tmp, root)
    log.info(f"world {info['key']}: the shipped default world, verified, unpacked at {root}")
    return True


def _publish(tmp: Path, root: Path) -> None:
    """Move a finished world into place (atomic rename); another process may have finished the same one first."""
    if root.exists() and not (root / "world.json").is_file():
        shutil.rmtree(root)  # the remains of an interrupted copy, never a finished world
    try:
        tmp.rename(root)
    except OSError:  # another process finished the same world first; theirs is identical
        shutil.rmtree(tmp, ignore_errors=True)


def build_world(cfg: WorldConfig, out: Path | None = None) -> World:
    """Load the world from `out` (default: the cache dir for cfg), else unpack it there if it is the shipped
    default world, else build it there; written atomically."""
    root = Path(out) if out is not None else default_world_dir(cfg)
    if (root / "world.json").is_file():
        info = json.loads((root / "world.json").read_text())
        if info.get("key") != world_key(cfg):
            raise ValueError(f"{root} holds a different world (key {info.get('key')}, wanted {world_key(cfg)})")
        return _load(root)
    root.parent.mkdir(parents=True, exist_ok=True)
    if _unpack_shipped(cfg, root):
        return _load(root)
    log.info(f"building world {world_key(cfg)} ({cfg.sentences} sentences, teacher {cfg.layers}x{cfg.hidden}) ...")
    start = time.time()
    sentences = generate_corpus(cfg)
    tokenizer = train_tokenizer(sentences, cfg.vocab_size)
    teacher, history = pretrain_teacher(cfg, sentences, tokenizer)

    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "corpus.txt").write_text("\n".join(sentences) + "\n")
    teacher.save_pretrained(tmp / "teacher")
    tokenizer.save_pretrained(tmp / "teacher")
    word_types = {w for s in sentences for w in s.split()}
    info = {
        "key": world_key(cfg), "config": cfg.model_dump(), "shares": FEMALE_SHARE,
        "sentences": len(sentences), "word_types": len(word_types), "corpus_sha256": corpus_hash(sentences),
        "vocab_size": len(tokenizer), "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "pretraining": history, "build_seconds": round(time.time() - start, 1),
    }
    (tmp / "world.json").write_text(json.dumps(info, indent=2))
    _publish(tmp, root)
    return _load(root)


def ship(world: World, to: Path = SHIPPED) -> dict[str, str]:
    """Copy a built world's teacher and world.json into the package (the corpus regenerates); returns the sha256 of
    each file, for SHIPPED_SHA256."""
    shutil.rmtree(to / "teacher", ignore_errors=True)
    shutil.copytree(world.teacher_dir, to / "teacher")
    shutil.copy(world.root / "world.json", to / "world.json")
    files = sorted(p.relative_to(to).as_posix() for p in to.rglob("*") if p.is_file() and p.suffix != ".py")
    return {name: _sha256(to / name) for name in files}


if __name__ == "__main__":  # python -m study.world --ship: pack the default world, print the digests to paste above
    import sys

    if sys.argv[1:] != ["--ship"]:
        sys.exit("usage: python -m study.world --ship")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(json.dumps(ship(build_world(WorldConfig())), indent=4))
