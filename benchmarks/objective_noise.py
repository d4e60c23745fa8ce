"""How much of a study's objectives is noise: each objective's spread across fine-tuning seeds (one fixed student),
across distillation seeds (one fixed config, every seed moved as `kdstudy rerun` moves them), and between the configs
of a study (its anchors and a few points its sampler draws). A front can only order trials on an objective whose
between-config spread is well above its within-config spread.

    python benchmarks/objective_noise.py [--config search_spaces/smoke.yaml] [--finetune-seeds 4]
                                         [--distill-seeds 3] [--sampled 3] [--grid] [--workers 2]

Runs are spread over --workers processes (one thread each). Prints a table per part, the seconds each evaluation
took, and per objective the smallest difference the confirm stage can detect: the paired 95% half-width
t(0.975, n - 1) * sd / sqrt(n) at the YAML's confirm.max_seeds n, with sd the paired differences' (sqrt 2 x the
config x seed residual under --grid; without it, sqrt 2 x the within-config std, which also holds the seeds' shared
effect and so overstates it).

--grid runs every config at every seed and splits each objective's variance two ways: the configs' own effect, the
seeds' effect that all configs share (a study gives every trial the same seeds), and what is left (config x seed).
`paired snr` = the configs' effect std / that residual std: how well a study, whose trials share their seeds, can
order its configs on one run each; `kendall tau` compares the order at seed 0 with the order of the seed means.
With --grid it also gives each anchor's verdicts against the control over seeds 1..k-1 (the confirm stage's fresh
seeds; seed 0 is the search's), and replays the confirm race on the grid's values (every config a contender, at
most k-1 seeds): last line `race_runs: N fixed_runs: M`, the race's runs against a fixed stage that gives every
config the seeds the race's longest got.
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import optuna
import torch
from rich.table import Table
from scipy import stats

from analysis.report import table_console
from study.config import with_params
from study.load import load_config
from study.reruns.seeds import seed_config
from study.runtime import quiet_libraries, setup_logging
from study.search.space import make_sampler, suggest


def distill_and_measure(cfg, teacher: dict, finetune_seeds: list[int] | None = None) -> list[dict]:
    """Distil one student with cfg and measure it against the study's teacher metrics: once with cfg's own
    evaluation, or once per fine-tuning seed in `finetune_seeds` (one seed each). Runs in a worker process."""
    quiet_libraries()
    torch.set_num_threads(1)
    from study.distill.loop import train
    from study.distill.models import make_student, save_student
    from study.experiment.evaluation import student_metrics
    from study.experiment.sources import load_teacher_and_corpus_ids

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
    parser.add_argument("--grid", action="store_true", help="every config at every seed: the two-way split")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    setup_logging(-1)
    quiet_libraries()
    base = load_config(args.config)
    metrics = [o.metric for o in base.search.objectives]
    task = metrics[1] if len(metrics) > 1 else metrics[0]
    shown = list(dict.fromkeys(metrics + [f"{m}_se" for m in metrics] + [f"world/{t}" for t in base.eval.world.tasks]))
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
    configs = anchors + sampled if anchors else [("base", {})] + sampled

    # Build the world and measure the teacher once, here: every run is compared with these numbers, as in a study.
    from study.experiment.evaluation import teacher_metrics

    teacher, _ = teacher_metrics(base)
    start = time.time()
    seeds = range(args.distill_seeds)
    # (config index, seed) of every run: the first config at every seed, the others at seed 0 (or every seed: --grid)
    cells = [(c, k) for c in range(len(configs)) for k in seeds if c == 0 or k == 0 or args.grid]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        finetune = pool.submit(distill_and_measure, control, teacher, list(range(args.finetune_seeds)))
        runs = {(c, k): pool.submit(distill_and_measure, seed_config(with_params(base, configs[c][1]), {}, k,
                                                                     full=False), teacher)
                for c, k in cells}
        finetune_rows = finetune.result()
        grid = {cell: future.result()[0] for cell, future in runs.items()}
    distill_rows = [grid[0, k] for k in seeds]
    config_rows = [grid[c, 0] for c in range(len(configs))]

    out = table_console()  # 160 columns in a log file: the metric names stay whole
    name = configs[0][0]
    out.print(part_table(f"one student ({name}), fine-tuning seeds 0..{args.finetune_seeds - 1}, one seed each",
                         finetune_rows, shown, [f"ft seed {s}" for s in range(args.finetune_seeds)]))
    out.print(part_table("one config, distillation and evaluation seeds both moved by k (kdstudy rerun)",
                         distill_rows, shown, [f"seed {k}" for k in seeds]))
    out.print(part_table("between configs (anchors and sampled points, seed 0)", config_rows, shown,
                         [name for name, _ in configs]))
    if args.grid:
        for m in metrics:
            out.print(two_way(m, [[grid[c, k][m] for k in seeds] for c in range(len(configs))],
                              [name for name, _ in configs]))
    within = spread(distill_rows, task)
    between = spread(config_rows, task)
    evals = [r["perf/eval_seconds"] for r in grid.values()]
    print(f"decomposition of {task}: fine-tuning seeds (one run each) std {spread(finetune_rows, task):.3f}; "
          f"within a config (both seeds, evaluation as configured) std {within:.3f}; between configs std {between:.3f}")
    for m in metrics[:1]:
        print(f"{m}: within std {spread(distill_rows, m):.4f}, between std {spread(config_rows, m):.4f}, "
              f"snr {spread(config_rows, m) / spread(distill_rows, m):.2f}")
    failed = sum(r.get(f"world/{t}/failed_runs", 0) for r in finetune_rows + list(grid.values())
                 for t in base.eval.world.tasks)
    print(f"fine-tuning runs that ended at chance (each retried with another seed): {failed:.0f}")
    print(f"evaluation as configured: {statistics.mean(evals):.0f} s per student (eval.world.seeds "
          f"{base.eval.world.seeds}); all {len(grid) + 1} runs {time.time() - start:.0f} s on {args.workers} worker(s)")
    n = base.search.confirm.max_seeds if base.search.confirm else 4
    for m in metrics:
        residual = residual_std([[grid[c, k][m] for k in seeds] for c in range(len(configs))]) if args.grid else None
        sd = math.sqrt(2) * (residual if residual is not None else spread(distill_rows, m))
        print(f"{m}: detectable difference at {n} paired seeds {stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n):.4f} "
              f"(paired sd {sd:.4f}, {'the grid residual' if residual is not None else 'within-config std'})")
    if args.grid and anchors and args.distill_seeds >= 3:
        verdicts_and_race(base, configs, grid, list(seeds)[1:], metrics)


def residual_std(values: list[list[float]]) -> float:
    """The config x seed residual std of a configs x seeds grid (two-way, no replication)."""
    y = np.asarray(values)
    residual = y - y.mean(1)[:, None] - y.mean(0)[None, :] + y.mean()
    return float(math.sqrt(np.sum(residual ** 2) / ((y.shape[0] - 1) * (y.shape[1] - 1))))


def verdicts_and_race(base, configs, grid, fresh: list[int], metrics: list[str]) -> None:
    """Each anchor against the control on the fresh seeds, and the confirm race replayed on the grid's values."""
    from analysis import verdicts
    from analysis.race import race

    objectives = base.search.objectives
    modes, margins = [o.mode for o in objectives], [o.margin for o in objectives]
    names = [name for name, _ in configs]
    values = {(names[c], k): np.array([grid[c, k][m] for m in metrics]) for c, k in grid}
    control = names[0]
    for name in names[1:]:
        if name.startswith("sampled-"):
            continue
        trial = np.array([values[(name, k)] for k in fresh])
        ctrl = np.array([values[(control, k)] for k in fresh])
        comparison = verdicts.compare_with_control(trial[None], ctrl, metrics, modes, margins)[0]
        print(verdicts.verdict_line(f"{name} vs {control}", comparison))
    # the race numbers its fresh seeds 1..; the grid's are fresh[0], fresh[1], ...
    result = race(names, control, lambda wanted: {(t, s): values[(t, fresh[s - 1])] for t, s in wanted}, metrics,
                  modes, margins, 2, len(fresh), 10 * len(names) * len(fresh))
    print(f"race on the grid: {result.stopped}; P(front) " + ", ".join(
        f"{t} {p:.2f}" for t, p in result.p_front.items()))
    print(f"race_runs: {result.runs} fixed_runs: {result.fixed_runs()}")


def two_way(metric: str, values: list[list[float]], names: list[str]) -> Table:
    """Two-way analysis of variance without replication of a configs x seeds grid: the std of the configs' own
    effect ((MS_config - MS_residual) / seeds, Searle et al.'s variance components), of the seeds' shared effect,
    and of the residual; the paired snr and Kendall's tau between the order at seed 0 and that of the means."""
    y = np.asarray(values)
    n_c, n_s = y.shape
    config_means, seed_means, grand = y.mean(1), y.mean(0), y.mean()
    residual = y - config_means[:, None] - seed_means[None, :] + grand
    ms_config = n_s * np.sum((config_means - grand) ** 2) / (n_c - 1)
    ms_seed = n_c * np.sum((seed_means - grand) ** 2) / (n_s - 1)
    ms_residual = np.sum(residual ** 2) / ((n_c - 1) * (n_s - 1))
    config_std = math.sqrt(max(0.0, (ms_config - ms_residual) / n_s))
    seed_std = math.sqrt(max(0.0, (ms_seed - ms_residual) / n_c))
    tau = stats.kendalltau(y[:, 0], config_means).statistic
    paired = config_std / math.sqrt(ms_residual) if ms_residual > 0 else math.inf
    table = Table(title=f"{metric}: configs x seeds (two-way, no replication)")
    for column in ("config", *(f"seed {k}" for k in range(n_s)), "mean"):
        table.add_column(column, justify="right")
    for name, row, mean in zip(names, y, config_means):
        table.add_row(name, *(f"{v:.4f}" for v in row), f"{mean:.4f}")
    table.caption = (f"config effect std {config_std:.4f}, shared seed effect std {seed_std:.4f}, residual std "
                     f"{math.sqrt(ms_residual):.4f}; paired snr {paired:.2f}; "
                     f"kendall tau (seed 0 vs means) {tau:.2f}")
    return table


if __name__ == "__main__":
    main()
