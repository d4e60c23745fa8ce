"""How much of a study's objectives is noise: each objective's spread across fine-tuning seeds (one fixed student),
across distillation seeds (one fixed config, every seed moved as `kdstudy rerun` moves them), and between the configs
of a study (its anchors and a few points its sampler draws). A front can only order trials on an objective whose
between-config spread is well above its within-config spread.

    python benchmarks/objective_noise.py [--config search_spaces/smoke.yaml] [--finetune-seeds 4]
                                         [--distill-seeds 3] [--sampled 3] [--workers 2]

Runs are spread over --workers processes (one thread each). Prints a table per part, the seconds each evaluation
took, and last `snr: X` = between-config std / within-config std of the task objective (the second objective of
the YAML; within: distillation and fine-tuning seeds both varying).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import optuna
import torch
from rich.table import Table

from analysis.report import table_console
from study.config import load_config, with_params
from study.rerun import seed_config
from study.runtime import quiet_libraries, setup_logging
from study.search import make_sampler, suggest


def distill_and_measure(cfg, teacher: dict, finetune_seeds: list[int] | None = None) -> list[dict]:
    """Distil one student with cfg and measure it against the study's teacher metrics: once with cfg's own
    evaluation, or once per fine-tuning seed in `finetune_seeds` (one seed each). Runs in a worker process."""
    quiet_libraries()
    torch.set_num_threads(1)
    from study.distill import train
    from study.evaluation import student_metrics
    from study.models import make_student, save_student
    from study.sources import load_teacher_and_corpus_ids

    teacher_model, tokenizer, ids = load_teacher_and_corpus_ids(cfg)
    student = make_student(teacher_model, cfg.student.n_layers, cfg.student.layers)
    train(cfg.distill, teacher_model, student, tokenizer, ids, progress_bar=False)
    out = []
    with tempfile.TemporaryDirectory() as work:
        saved = save_student(student, tokenizer, Path(work) / "student")
        evals = [cfg] if finetune_seeds is None else [
            with_params(cfg, {"eval.world.seed": s, "eval.world.seeds": 1, "eval.world.retries": 0})
            for s in finetune_seeds]
        for c in evals:
            start = time.time()
            metrics, _ = student_metrics(saved, c, teacher)
            out.append(metrics | {"perf/eval_seconds": time.time() - start})
    return out


def spread(rows: list[dict], metric: str) -> float:
    values = [r[metric] for r in rows if metric in r]
    return statistics.stdev(values) if len(values) > 1 else float("nan")


def part_table(title: str, rows: list[dict], metrics: list[str], labels: list[str]) -> Table:
    table = Table(title=title)
    table.add_column("run")
    for m in metrics:
        table.add_column(m, justify="right")
    table.add_column("eval s", justify="right")
    for label, row in zip(labels, rows):
        table.add_row(label, *(f"{row.get(m, float('nan')):.4f}" for m in metrics), f"{row['perf/eval_seconds']:.0f}")
    table.add_row("std", *(f"{spread(rows, m):.4f}" for m in metrics), "")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="search_spaces/smoke.yaml")
    parser.add_argument("--finetune-seeds", type=int, default=4)
    parser.add_argument("--distill-seeds", type=int, default=3)
    parser.add_argument("--sampled", type=int, default=3, help="configs drawn by the study's sampler, beside anchors")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    setup_logging(-1)
    quiet_libraries()
    base = load_config(args.config)
    metrics = [o.metric for o in base.search.objectives]
    task = metrics[1] if len(metrics) > 1 else metrics[0]
    shown = list(dict.fromkeys(metrics + [f"{m}_se" for m in metrics] + ["world/world_cola", "world/world_pair",
                                                                        "world/world_sts"]))
    anchors = [(a.name, a.params) for a in base.search.anchors]
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler_study = optuna.create_study(directions=["minimize"] * len(metrics),
                                        sampler=make_sampler(base.search.sampler))
    sampled = []
    for k in range(args.sampled):
        trial = sampler_study.ask()
        suggest(trial, base.search.space)
        sampled.append((f"sampled-{k}", dict(trial.params)))
    control = with_params(base, anchors[0][1]) if anchors else base

    # Build the world and measure the teacher once, here: every run is compared with these numbers, as in a study.
    from study.evaluation import teacher_metrics

    teacher, _ = teacher_metrics(base)
    start = time.time()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        finetune = pool.submit(distill_and_measure, control, teacher, list(range(args.finetune_seeds)))
        distill = [pool.submit(distill_and_measure, seed_config(control, {}, k, full=False), teacher)
                   for k in range(args.distill_seeds)]
        configs = [pool.submit(distill_and_measure, with_params(base, params), teacher)
                   for _, params in anchors + sampled]
        finetune_rows = finetune.result()
        distill_rows = [f.result()[0] for f in distill]
        config_rows = [f.result()[0] for f in configs]

    out = table_console()  # 160 columns in a log file: the metric names stay whole
    name = anchors[0][0] if anchors else "base"
    out.print(part_table(f"one student ({name}), fine-tuning seeds 0..{args.finetune_seeds - 1}, one seed each",
                         finetune_rows, shown, [f"ft seed {s}" for s in range(args.finetune_seeds)]))
    out.print(part_table("one config, distillation and evaluation seeds both moved by k (kdstudy rerun)",
                         distill_rows, shown, [f"seed {k}" for k in range(args.distill_seeds)]))
    out.print(part_table("between configs (anchors and sampled points, seed 0)", config_rows, shown,
                         [name for name, _ in anchors + sampled]))
    within = spread(distill_rows, task)
    between = spread(config_rows, task)
    evals = [r["perf/eval_seconds"] for r in distill_rows + config_rows]
    print(f"decomposition of {task}: fine-tuning seeds (one run each) std {spread(finetune_rows, task):.3f}; "
          f"within a config (both seeds, evaluation as configured) std {within:.3f}; between configs std {between:.3f}")
    for m in metrics[:1]:
        print(f"{m}: within std {spread(distill_rows, m):.4f}, between std {spread(config_rows, m):.4f}, "
              f"snr {spread(config_rows, m) / spread(distill_rows, m):.2f}")
    print(f"evaluation as configured: {statistics.mean(evals):.0f} s per student (eval.world.seeds "
          f"{base.eval.world.seeds}); all runs {time.time() - start:.0f} s on {args.workers} worker(s)")
    print(f"snr: {between / within:.2f}")


if __name__ == "__main__":
    main()
