"""Every figure of the GPU path in one command, with a last line per floor (PASS, FAIL or unmeasured).

    python benchmarks/gpu_check.py [--budget 330] [--tiny]

On one H100/H200 it takes at most --budget seconds of measuring (default 330: the whole run stays under 6 minutes),
measuring in order of importance; a row the budget leaves no time for is printed as skipped, and a floor that needed
it says unmeasured. Without a GPU it runs a tiny configuration in well under a minute (the tests run it so): its
figures say nothing about a GPU.

What it prints, in this order:
  1. the bf16 check (benchmarks/distill_gpu.py) with each switch of the step off in turn, kl_positions all and masked
  2. tokens/s and MFU of study.distill.train, bert-base-shaped teacher and 6-layer student, 128 tokens: the defaults
     (every switch on) for none and mixup at batch 64 and 256, the old path (loss_chunk 0) at 64, each switch off at
     256, and kl_positions masked beside every row (MFU by the all-positions formula, so masked rows overstate it)
  3. the smoke trial's phases on search_spaces/smoke.yaml: teacher metrics, distillation, student metrics, and the
     distillation's ms a step after its first log window, compile on and off
  4. fine-tuning examples/s (study.metrics.glue.fit) at bert-base, batch 32, synthetic SST-2: fp32, bf16, and bf16
     with two jobs at once on the GPU (study.experiment.job_runner, as a worker runs them with eval.jobs_per_gpu 2)
  5. the device `kdstudy distill` takes (study.experiment.pipeline.run_distillation, --device auto)

On the lent GPU machine, which lacks pydantic, datasets, mlflow, optuna and ray: carry the small wheels
(../shared/gpu/wheels.sh downloads them into .whl/; liger-kernel's may go beside them) and run

    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \\
      .whl/*.whl && PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 python3 benchmarks/gpu_check.py

It calls study.distill.train, study.experiment.pipeline and study.metrics.glue directly, never Ray or MLflow.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import distill_gpu as bench  # this folder: the throughput helpers and the bf16 check
import torch
import transformers
from transformers import BertConfig, BertForMaskedLM

from study.config import DistillConfig, GlueConfig, StudyConfig
from study.device import describe, resolve_device
from study.distill.fused_loss import liger_installed, loss_route
from study.distill.loop import train
from study.distill.models import make_student, save_student
from study.experiment.job_runner import run_jobs
from study.metrics import glue

FINETUNE_TODAY = 1479  # examples/s, glue.fit in fp32 at bert-base, batch 32, one H200 (2026-12-04)
FLOORS = {"mfu": 0.30, "mfu_mixup": 0.22, "ratio": 2.5, "smoke_ms": 10.0, "finetune": 3 * FINETUNE_TODAY}


class Budget:
    """Seconds left for measuring: a row starts only while some are left."""

    def __init__(self, seconds: float):
        self.end = time.perf_counter() + seconds

    def left(self) -> bool:
        return time.perf_counter() < self.end


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- 2. tokens/s and MFU ---------------------------------------------------------------------------------------


def throughput(shape: dict, device, budget: Budget, tiny: bool) -> dict:
    """{(name, mode, batch, kl_positions): tokens/s} of the rows the budget allowed; prints each as it comes."""
    config = BertConfig(**shape)
    tokenizer = bench.tokenizer_of_size(config.vocab_size)
    teacher = BertForMaskedLM(config).eval()
    n_student, length, steps, warmup = (1, 32, 4, 2) if tiny else (6, 128, 16, 6)
    small, large = (8, 16) if tiny else (64, 256)
    ids = bench.corpus(tokenizer, steps * large, length)
    fpt = bench.flops_per_token(config.hidden_size, config.num_hidden_layers, n_student, length, config.vocab_size)
    name = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    peak = next((v for k, v in bench.PEAK_BF16.items() if k in name), None)

    print("\n== 1. bf16 check: the bf16 path with each switch off in turn against the fp32 reference")
    switches = [{}] if tiny else list(bench.SWITCHES.values())  # on a CPU no switch changes anything
    checked = all(bench.bf16_check(teacher, n_student, tokenizer, ids, device, s, kl)
                  for s in switches for kl in ("all", "masked"))
    print(f"bf16 check: {'passed' if checked else 'FAILED'}")

    print(f"\n== 2. tokens/s of study.distill.train: teacher {config.num_hidden_layers} x {config.hidden_size}, "
          f"vocabulary {config.vocab_size}, student {n_student} layers, {length} tokens, {steps} steps (first "
          f"{warmup} untimed); MFU against {peak / 1e12 if peak else 0:.0f} TFLOP/s, {fpt / 1e9:.3f} GFLOP/token")
    paths = {"defaults": {}, "old": bench.OLD,
             **{k: v for k, v in bench.SWITCHES.items() if v}}
    rows = [("defaults", "none", large), ("defaults", "mixup", large), ("old", "none", small),
            ("defaults", "none", small), ("defaults", "mixup", small), ("old", "mixup", small)]
    rows += [(p, mode, large) for p in bench.SWITCHES if p != "defaults" for mode in ("none", "mixup")]
    if tiny:  # the rows only have to run
        rows = rows[:3]
    rates = {}
    print(f"{'path':16s} {'mode':6s} {'batch':>5s} {'kl all tok/s':>13s} {'mfu':>6s} {'kl masked tok/s':>16s} "
          f"{'mfu':>6s} {'peak GB':>8s}")
    for path, mode, batch in rows:
        cells, mem = [], float("nan")
        for kl in ("all", "masked"):
            if not budget.left():
                cells.append("skipped")
                continue
            cfg = DistillConfig(steps=steps, batch_size=batch, max_length=length, log_every=warmup,
                                mitigation={"mode": mode, "p": 1.0}, loss={"kl_positions": kl}, **paths[path])
            rate, mem = bench.measure(cfg, teacher, n_student, tokenizer, ids, device, warmup)
            rates[path, mode, batch, kl] = rate
            cells.append(f"{rate:13,.0f} {rate * fpt / peak:6.1%}" if peak else f"{rate:13,.0f}    n/a")
        print(f"{path:16s} {mode:6s} {batch:5d} {cells[0]:>20s} {cells[1]:>23s} {mem:8.2f}", flush=True)
    return {"rates": rates, "fpt": fpt, "peak": peak, "checked": checked, "small": small, "large": large}


# --- 3. the smoke trial's phases -------------------------------------------------------------------------------


# On a CPU: a few steps on a small corpus, one bias template
TINY_SMOKE = ["distill.steps=20", "distill.log_every=5", "corpus.max_sentences=1000",
              "bias.template.templates=['{target} is {a} {occupation} .']"]


def smoke_phases(device, tiny: bool, work: Path) -> dict:
    """The parts of study.experiment.pipeline.run_distillation on search_spaces/smoke.yaml, each timed."""
    from study.distill.models import make_student as student_of
    from study.experiment.evaluation import student_metrics, teacher_metrics
    from study.experiment.sources import load_teacher_and_corpus_ids
    from study.load import load_config

    out = {}
    # Without the world's tasks where they cannot be written (seen on the lent machine: datasets' parquet writer
    # failing in its fingerprinting), and on a CPU, where they take minutes.
    no_tasks = ["eval.suites=[]", "search=null"]
    extra = [*TINY_SMOKE, *no_tasks] if tiny else []
    for compiled in (False,) if tiny else (True, False):  # (compiling on a CPU takes minutes)
        cfg = load_config("search_spaces/smoke.yaml", [f"distill.compile={str(compiled).lower()}", *extra])
        t = time.perf_counter()
        teacher, tokenizer, corpus_ids = load_teacher_and_corpus_ids(cfg)
        phases = {"load": time.perf_counter() - t}
        evaluate = not out  # the evaluation once: it does not depend on compile
        if evaluate:
            t = time.perf_counter()
            try:
                teacher_scalars, _ = teacher_metrics(cfg, device)
            except Exception as err:
                print(f"teacher metrics with the world's tasks failed ({type(err).__name__}: {str(err)[:200]}); "
                      "measuring without them")
                extra = no_tasks
                cfg = load_config("search_spaces/smoke.yaml", [f"distill.compile={str(compiled).lower()}", *extra])
                teacher_scalars, _ = teacher_metrics(cfg, device)
            phases["teacher metrics"] = time.perf_counter() - t
        logs = []
        student = student_of(teacher, cfg.student.n_layers, cfg.student.layers)
        t = time.perf_counter()
        train(cfg.distill, teacher, student, tokenizer, corpus_ids, device=device, progress_bar=False,
              on_log=lambda step, total, m: logs.append((step, time.perf_counter())))
        sync(device)
        phases["distillation"] = time.perf_counter() - t
        (s0, t0), (s1, t1) = logs[0], logs[-1]
        ms = (t1 - t0) / (s1 - s0) * 1e3 if s1 > s0 else float("nan")  # after the first window: compiling is in it
        if evaluate:
            t = time.perf_counter()
            student_metrics(save_student(student, tokenizer, work / "smoke-student"), cfg, teacher_scalars, device)
            phases["student metrics"] = time.perf_counter() - t
        said = ", ".join(f"{k} {v:.1f}s" for k, v in phases.items())
        print(f"smoke trial, compile {'on' if compiled else 'off'}: {said}; {cfg.distill.steps} steps, "
              f"{ms:.1f} ms a step after step {s0}", flush=True)
        out[compiled] = ms
    return out


# --- 4. fine-tuning ------------------------------------------------------------------------------------------------


def finetune_setup(device, tiny: bool, work: Path) -> tuple[Path, glue.TaskData, GlueConfig]:
    """A 6-layer student of a bert-base-shaped teacher and a synthetic SST-2 (sentences of 10-60 filler words)."""
    shape = ({"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
              "intermediate_size": 128, "max_position_embeddings": 64} if tiny else {})
    tokenizer = bench.tokenizer_of_size(BertConfig(**shape).vocab_size)
    model_dir = save_student(make_student(BertForMaskedLM(BertConfig(**shape)), 1 if tiny else 6), tokenizer,
                             work / "finetune-student")
    words = [w for w in tokenizer.get_vocab() if w.startswith("w")]
    rng = random.Random(0)
    data = work / "glue" / "SST-2"
    data.mkdir(parents=True)
    for split, n in (("train", 800 if tiny else 8000), ("dev", 100 if tiny else 872)):
        rows = [" ".join(rng.choice(words) for _ in range(rng.randint(10, 60))) + f"\t{rng.randint(0, 1)}"
                for _ in range(n)]
        (data / f"{split}.tsv").write_text("\n".join(["sentence\tlabel", *rows]) + "\n")
    cfg = GlueConfig(tasks=["sst2"], max_steps=20 if tiny else 150, batch_size=32)
    return model_dir, glue.load_task(model_dir, "sst2", cfg, work / "glue"), cfg


@dataclass(frozen=True)
class FitJob:
    """A fine-tuning run for study.experiment.job_runner (a job with a task runs in a process of its own)."""

    task: str
    steps: int


def fit_job(job: FitJob, model_dir, cfg: StudyConfig, device, loaded) -> float:
    """One fine-tuning run, in a process of its own: examples/s of glue.fit in bf16."""
    data_cfg = GlueConfig(tasks=["sst2"], max_steps=job.steps, batch_size=32)
    if "task" not in loaded:
        loaded["task"] = glue.load_task(model_dir, "sst2", data_cfg, Path(model_dir).parent / "glue")
    t = time.perf_counter()
    glue.fit(model_dir, loaded["task"], data_cfg, 0, device)
    sync(torch.device(device))
    return job.steps * 32 / (time.perf_counter() - t)


def finetuning(device, tiny: bool, work: Path, budget: Budget) -> dict:
    model_dir, task, cfg = finetune_setup(device, tiny, work)
    rates = {}
    for name, bf16 in (("fp32", False), ("bf16", True)):
        if not budget.left():
            print(f"fine-tuning {name}: skipped (time budget)")
            continue
        glue.fit(model_dir, task, cfg.model_copy(update={"max_steps": 5}), 0, device, bf16)  # warm-up
        sync(device)
        t = time.perf_counter()
        glue.fit(model_dir, task, cfg, 0, device, bf16)
        sync(device)
        rates[name] = cfg.max_steps * cfg.batch_size / (time.perf_counter() - t)
        print(f"fine-tuning {name}: {rates[name]:,.0f} examples/s ({cfg.max_steps} steps of batch 32, model load "
              "included)", flush=True)
    if budget.left() and device.type == "cuda":
        jobs = [FitJob("sst2", cfg.max_steps) for _ in range(2)]
        t = time.perf_counter()
        each = [r for _, r, _ in run_jobs(fit_job, jobs, model_dir, StudyConfig(), device, at_once=2)]
        wall = time.perf_counter() - t
        failed = [r for r in each if not isinstance(r, float)]
        if failed:
            print(f"fine-tuning bf16, 2 jobs at once: failed ({failed[0]!r})")
        else:
            rates["bf16 x2"] = sum(each)
            print(f"fine-tuning bf16, 2 jobs at once: {sum(each):,.0f} examples/s summed ("
                  + ", ".join(f"{r:,.0f}" for r in each) + f" each; {wall:.0f}s with the processes' start)",
                  flush=True)
    return rates


# --- 5. kdstudy distill's device ------------------------------------------------------------------------------------


def distill_device(work: Path, tiny: bool) -> str:
    from study.experiment.pipeline import run_distillation
    from study.load import load_config

    cfg = load_config("search_spaces/smoke.yaml", [*(TINY_SMOKE if tiny else []), "distill.steps=10",
                                                   "eval.suites=[]", "search=null"])
    metrics = run_distillation(cfg, work / "distill", resolve_device("auto"))
    print(f"kdstudy distill (run_distillation, --device auto): metrics.json device {metrics['device']}")
    return metrics["device"]


# --- the floors ------------------------------------------------------------------------------------------------------


def verdict(value: float | None, floor: float, higher: bool = True) -> str:
    if value is None:
        return "unmeasured"
    return "PASS" if (value >= floor if higher else value <= floor) else "FAIL"


def floors(found: dict, gpu: bool) -> None:
    rates, fpt, peak = found["rates"], found["fpt"], found["peak"]

    def best(path, mode):
        got = [r for (p, m, _, kl), r in rates.items() if p == path and m == mode and kl == "all"]
        return max(got) if got else None

    def mfu(rate):
        return rate * fpt / peak if rate is not None and peak and gpu else None

    none, mixup, old = best("defaults", "none"), best("defaults", "mixup"), rates.get(("old", "none",
                                                                                        found["small"], "all"))
    ratio = none / old if none and old and gpu else None
    smoke = found["smoke"].get(True) if gpu else None
    tune = max(found["finetune"].values()) if found["finetune"] and gpu else None
    said = "" if gpu else " (no GPU here: the tiny configuration measures nothing of one)"
    print(f"\n== floors{said}")
    print(f"floor bf16 check, every switch within tolerance: {'PASS' if found['checked'] else 'FAIL'}")
    print(f"floor new path MFU >= 30% at its best batch: {verdict(mfu(none), FLOORS['mfu'])}"
          + (f" ({mfu(none):.1%})" if mfu(none) is not None else ""))
    print(f"floor mixup MFU >= 22%: {verdict(mfu(mixup), FLOORS['mfu_mixup'])}"
          + (f" ({mfu(mixup):.1%})" if mfu(mixup) is not None else ""))
    print(f"floor ratio >= 2.5 (defaults at the best batch / old at batch {found['small']}): "
          f"{verdict(ratio, FLOORS['ratio'])}" + (f" ({ratio:.2f})" if ratio is not None else ""))
    print(f"floor smoke world's step <= 10 ms: {verdict(smoke, FLOORS['smoke_ms'], higher=False)}"
          + (f" ({smoke:.1f} ms)" if smoke is not None else ""))
    print(f"floor fine-tuning >= 3 x {FINETUNE_TODAY:,} examples/s: {verdict(tune, FLOORS['finetune'])}"
          + (f" ({tune:,.0f})" if tune is not None else ""))
    device = found["device"]
    print("floor kdstudy distill distils on the GPU: "
          + ("unmeasured" if not gpu or device is None else "PASS" if device.startswith("cuda") else "FAIL")
          + (f" ({device})" if device else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=330, help="seconds of measuring at most (GPU)")
    parser.add_argument("--tiny", action="store_true", help="the small configuration (the default without a GPU)")
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    device = resolve_device("auto")
    gpu = device.type == "cuda" and not args.tiny
    tiny = not gpu
    if tiny:
        torch.set_num_threads(1)  # a tiny model gains nothing from more, and a shared CPU loses
    budget = Budget(args.budget if gpu else 1e9)
    shape = {} if gpu else {"vocab_size": 1000, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                            "intermediate_size": 128, "max_position_embeddings": 64}
    print(f"device: {describe(device)}{'' if gpu else ' (tiny configuration: figures say nothing about a GPU)'}; "
          f"torch {torch.__version__}, transformers {transformers.__version__}; Liger Kernel "
          f"{'installed' if liger_installed() else 'not installed'}: the loss route on this device is "
          f"{loss_route(DistillConfig(steps=1).loss_chunk, True, device.type)}")
    torch.manual_seed(0)
    found = throughput(shape, device, budget, tiny)
    with tempfile.TemporaryDirectory(prefix="kdstudy-gpu-check-") as work:
        print("\n== 3. the smoke trial's phases (search_spaces/smoke.yaml)")
        found["smoke"] = smoke_phases(device, tiny, Path(work)) if budget.left() else {}
        print("\n== 4. fine-tuning at bert-base, batch 32 (study.metrics.glue.fit)")
        found["finetune"] = finetuning(device, tiny, Path(work), budget)
        print("\n== 5. kdstudy distill's device")
        found["device"] = distill_device(Path(work), tiny)
    floors(found, gpu)
    if not found["checked"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
