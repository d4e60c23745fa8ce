"""Tokens/s and MFU of study.distill.train at bert-base scale: today's path and the projected one, side by side.

A random-init bert-base-shaped teacher (BertConfig defaults: 12 x 768, vocabulary 30,522; nothing downloaded), the
project's 6-layer student (study.distill.models.make_student), 128-token sequences of random word ids (half of them with
gendered words, so mixup mixes), bf16 autocast on a GPU. `train()` runs a fixed number of steps at each batch size,
modes none and mixup, for
    old: loss_chunk 0, pad_vocab_to 0   (full (B, L, V) logits and the reference distill_losses; an fp32 teacher,
         teacher_bf16 and compile off    no compile)
    new: the defaults                    (projected loss over a vocabulary padded to 64, no step sync, fused AdamW;
                                          on CUDA a bf16 teacher, compiled encoders, Liger's losses where installed)
Without a GPU it runs a tiny configuration (small model, few steps) so that it stays runnable everywhere; its
figures say nothing about a GPU.

    python benchmarks/distill_gpu.py [--steps 25] [--warmup 5] [--batches 64 128 256] [--tiny]

FLOPs per token (matmuls only): teacher forward + student forward and backward (~3 forwards), each forward
    24 H^2 n_layers + 4 L H n_layers + 2 H^2 + 2 H V
(Q, K, V, O and the FFN; attention scores and values over L tokens; the head transform; the vocabulary
projection, unpadded V). Under mixup the teacher's extra forward on counterfactuals is not counted. MFU is against
the card's bf16 dense peak (H100/H200 SXM: 989 TFLOP/s). Before the table, the bf16 path's loss on one batch is
checked against the fp32 reference loss, with each switch of the GPU path off in turn and kl_positions all and
masked: |bf16 - fp32| <= 2e-2 |fp32| + 2e-3 for each term (study.device.BF16_RTOL, BF16_ATOL).
Last line: `ratio: X` = new path at its best batch / old path at the first batch (paper.yaml's 64), mode none.
"""

from __future__ import annotations

import argparse
import copy
import random
import resource
import sys

import torch
from transformers import BertConfig, BertForMaskedLM, BertTokenizer

from study.config import DistillConfig
from study.device import BF16_ATOL, BF16_RTOL
from study.distill.batches import DistillData, assemble
from study.distill.data import selection_weights
from study.distill.fused_loss import loss_route
from study.distill.gender import FUNCTION_WORDS, GENDERED_WORDS
from study.distill.loop import compile_on, device_teacher, train
from study.distill.models import make_student
from study.distill.step import MixupStudent, loss_step

PEAK_BF16 = {"H100": 989e12, "H200": 989e12, "A100": 312e12}  # dense, SXM
PAIRS = [("he", "she"), ("man", "woman"), ("father", "mother"), ("king", "queen"), ("boy", "girl")]


def tokenizer_of_size(vocab_size: int) -> BertTokenizer:
    """A WordPiece tokenizer with exactly vocab_size entries: specials, the gendered and function words, fillers."""
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(GENDERED_WORDS | FUNCTION_WORDS)
    words += [f"w{i}" for i in range(vocab_size - len(words))]
    # transformers 5: BertTokenizer(vocab=dict); check the size it ends up with.
    tokenizer = BertTokenizer(vocab={w: i for i, w in enumerate(words)}, do_lower_case=True)
    assert len(tokenizer) == vocab_size, (len(tokenizer), vocab_size)
    return tokenizer


def corpus(tokenizer, n: int, length: int, seed: int = 0) -> list[list[int]]:
    """n sequences of `length` ids ([CLS] ... [SEP]); every other one holds two words of a gendered pair."""
    rng = random.Random(seed)
    vocab = tokenizer.get_vocab()
    fillers = [i for w, i in vocab.items() if w.startswith("w")]
    out = []
    for k in range(n):
        ids = [rng.choice(fillers) for _ in range(length - 2)]
        if k % 2 == 0:
            for pos in rng.sample(range(1, length - 3), 2):
                ids[pos] = vocab[rng.choice(rng.choice(PAIRS))]
        out.append([tokenizer.cls_token_id] + ids + [tokenizer.sep_token_id])
    return out


def flops_per_token(h: int, n_teacher: int, n_student: int, length: int, vocab: int) -> float:
    def forward(layers):
        return 24 * h * h * layers + 4 * length * h * layers + 2 * h * h + 2 * h * vocab

    return forward(n_teacher) + 3 * forward(n_student)


def measure(cfg: DistillConfig, teacher, n_student: int, tokenizer, ids, device, warmup: int) -> tuple[float, float]:
    """(tokens/s over the steps after `warmup`, peak memory in GB) of one train() run."""
    logs = []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train(cfg, teacher, make_student(teacher, n_student), tokenizer, ids, device=device, progress_bar=False,
          on_log=lambda step, total, m: logs.append((step, m["perf/tokens_per_s"])))
    # Every sequence is full length, so tokens grow with steps and the cumulative rates give the later steps' rate.
    (s0, r0), (s1, r1) = logs[0], logs[-1]
    tokens_per_step = cfg.batch_size * len(ids[0])
    rate = (s1 - s0) * tokens_per_step / (s1 * tokens_per_step / r1 - s0 * tokens_per_step / r0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 1e9
    else:  # the process's peak resident memory so far (KiB on Linux)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
    return rate, peak


# The path before the projected loss and the GPU switches: full logits, an fp32 teacher under autocast, eager.
OLD = {"loss_chunk": 0, "pad_vocab_to": 0, "teacher_bf16": False, "compile": False}
# Each switch of the GPU path turned off in turn against the defaults (every switch on where the device has it).
SWITCHES = {"defaults": {}, "teacher fp32": {"teacher_bf16": False}, "compile off": {"compile": False},
            "fused loss off": {"fused_loss": False}}


def bf16_check(teacher, n_student, tokenizer, ids, device, switches: dict | None = None,
               kl_positions: str = "all") -> bool:
    """The path under bf16 autocast, with `switches` set on the defaults, against the reference loss in fp32, on one
    mixup batch: each term within BF16_RTOL |fp32| + BF16_ATOL."""
    switches = switches or {}
    cfg = DistillConfig(steps=1, batch_size=16, max_length=len(ids[0]), mitigation={"mode": "mixup"},
                        loss={"kl_positions": kl_positions}, **switches)
    data = DistillData(ids[:64], tokenizer, cfg)
    weights = selection_weights(data.ids, len(tokenizer), tokenizer.all_special_ids, cfg.masking)
    batch = assemble(data, list(range(16)), cfg, tokenizer, weights, torch.Generator().manual_seed(0)).to(device)
    model = MixupStudent(make_student(teacher, n_student)).to(device).eval()
    with torch.no_grad():
        fp32 = loss_step(model, teacher.to(device), batch, cfg.model_copy(update={"loss_chunk": 0, "pad_vocab_to": 0}))
        held = device_teacher(teacher, device, cfg.teacher_bf16)  # as train() holds it
        step_model, encoder = model, None
        if compile_on(cfg, device):
            step_model, encoder = torch.compile(model), torch.compile(held.base_model)
        fused = loss_route(cfg.loss_chunk, cfg.fused_loss, device.type) == "fused"
        with torch.autocast(device.type, dtype=torch.bfloat16):
            bf16 = loss_step(step_model, held, batch, cfg, teacher_encoder=encoder, fused=fused)
    ok = True
    name = ", ".join(f"{k} {v}" for k, v in switches.items()) or "defaults"
    for k in ("loss_kl", "loss_mlm", "loss_cos", "loss"):
        a, b = fp32[k].item(), bf16[k].item()
        good = abs(a - b) <= BF16_RTOL * abs(a) + BF16_ATOL
        ok &= good
        print(f"bf16 check ({name}; kl_positions {kl_positions}; {'fused' if fused else 'projected'} loss) {k}: "
              f"fp32 reference {a:.5f}, bf16 {b:.5f} ({'ok' if good else 'EXCEEDS'} |d| <= {BF16_RTOL:g} |fp32| + "
              f"{BF16_ATOL:g})")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=5, help="steps left out of tokens/s (allocator, autotuning)")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--tiny", action="store_true", help="the small configuration (the default without a GPU)")
    args = parser.parse_args()
    import transformers

    transformers.logging.set_verbosity_error()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    tiny = args.tiny or device.type != "cuda"
    torch.manual_seed(0)
    if tiny:  # runnable anywhere in a minute; a vocabulary that is not a multiple of 64, as bert-base's
        shape = {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                 "intermediate_size": 128, "max_position_embeddings": 64}
        n_student, length, steps, warmup, batches = 1, 32, 4, 2, [8, 16]
    else:
        shape = {}
        n_student, length, steps, warmup, batches = 6, 128, args.steps, args.warmup, args.batches
    config = BertConfig(**shape)
    tokenizer = tokenizer_of_size(config.vocab_size)
    teacher = BertForMaskedLM(config).eval().to(device)
    ids = corpus(tokenizer, steps * max(batches), length)
    fpt = flops_per_token(config.hidden_size, config.num_hidden_layers, n_student, length, config.vocab_size)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    print(f"device: {name}{' (tiny configuration: figures say nothing about a GPU)' if tiny else ''}")
    print(f"teacher {config.num_hidden_layers} x {config.hidden_size}, vocabulary {config.vocab_size}; student "
          f"{n_student} layers; {length} tokens a sequence; {steps} steps, the first {warmup} not timed")
    print(f"FLOPs/token = (24 H^2 n + 4 L H n + 2 H^2 + 2 H V)|teacher + 3 x (...)|student = {fpt / 1e9:.3f} GFLOP")
    checked = all(bf16_check(teacher, n_student, tokenizer, ids, device, switches, kl)
                  for switches in SWITCHES.values() for kl in ("all", "masked"))

    paths = {"old": OLD, "new": {}}
    rates = {}
    print(f"{'path':4s} {'mode':6s} {'batch':>5s} {'tokens/s':>10s} {'mfu':>6s} {'peak GB':>8s}")
    for mode in ("none", "mixup"):
        for batch in batches:
            for path, switches in paths.items():
                cfg = DistillConfig(steps=steps, batch_size=batch, max_length=length, log_every=warmup,
                                    mitigation={"mode": mode, "p": 1.0}, **copy.deepcopy(switches))
                rate, mem = measure(cfg, teacher, n_student, tokenizer, ids, device, warmup)
                rates[path, mode, batch] = rate
                mfu = f"{rate * fpt / peak:6.1%}" if peak else "   n/a"
                print(f"{path:4s} {mode:6s} {batch:5d} {rate:10,.0f} {mfu} {mem:8.2f}", flush=True)
    best = max(batches, key=lambda b: rates["new", "none", b])
    for mode in ("none", "mixup"):
        b = max(batches, key=lambda x: rates["new", mode, x])
        value = f"{rates['new', mode, b] * fpt / peak:.1%}" if peak else "n/a (no bf16 peak known for this device)"
        print(f"mfu: {value} (new path, mode {mode}, batch {b})")
    print(f"bf16 check: {'passed' if checked else 'FAILED'}")
    print(f"ratio = new path at batch {best} / old path at batch {batches[0]}, mode none")
    print(f"ratio: {rates['new', 'none', best] / rates['old', 'none', batches[0]]:.2f}")
    if not checked:
        sys.exit(1)


if __name__ == "__main__":
    main()
