"""Where a study's objective noise comes from, per task, and what its confirm race can decide with it.

    python benchmarks/objective_noise.py [--config search_spaces/smoke.yaml] [--set key=value ...] [--seeds 6]
                                         [--finetune-runs 2] [--sampled 0] [--grid] [--workers 2] [--runs FILE]

Students: the YAML's anchors (and --sampled points its sampler draws), distilled at seeds 0..--seeds-1 (every seed
moved by k, as `kdstudy rerun` and the confirm race move them); with --grid every config at every seed, else the
control at every seed and the others at seed 0. Each student is measured as a study measures it (the bias suite, then
every task of its suite), except that each task is fine-tuned --finetune-runs times (seed slots 0, 1, ...: slot 0 and
the next eval.world.seeds - 1 are the runs a study makes), keeping every run's validation predictions. Runs are spread
over --workers processes (one thread each); --runs keeps them (JSON lines) so that an interrupted or repeated
benchmark reuses what it has.

What it prints:
- per task of the suite, for each anchor against the control (--grid): the paired difference's standard deviation
  per seed and its parts (analysis.noise): the distillation seed, one fine-tuning run, the validation sample (the
  paired bootstrap), runs that stopped short; and each task's share of the suite score's variance;
- per objective, the configs x seeds table as a study computes it (two-way, no replication: the configs' effect, the
  seeds' shared effect, the residual; Kendall's tau of seed 0 against the means);
- each anchor's verdicts against the control over the fresh seeds 1..k-1, and the confirm race replayed on these
  values, the anchors' and the control's seed 0 handed in as their search runs, as the race does; last line
  `paired_sd: <world or glue score, per seed, as configured> race_runs: N fixed_runs: M`.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import optuna
import torch
from rich.table import Table
from scipy import stats

from analysis import noise
from analysis.report import table_console
from study.config import StudyConfig, with_params
from study.load import load_config
from study.reruns.seeds import seed_config
from study.runtime import quiet_libraries, setup_logging
from study.search.space import make_sampler, suggest


def measure_student(cfg: StudyConfig, teacher: dict, finetune_runs: int) -> dict:
    """Distil one student with cfg; its bias metrics (and amplification against `teacher`) and, per task of its eval
    suite, `finetune_runs` fine-tuning runs (score, validation predictions, retries at chance, seconds). Runs in a
    worker process."""
    quiet_libraries()
    torch.set_num_threads(1)
    from study.catalog import GLUE_TASKS, WORLD_TASKS
    from study.distill.loop import train
    from study.distill.models import make_student, save_student
    from study.experiment.evaluation import Job, run_job
    from study.experiment.sources import load_teacher_and_corpus_ids
    from study.metrics import bias, glue
    from study.world import tasks as world_tasks
    from study.world.build import build_world

    start = time.time()
    teacher_model, tokenizer, ids = load_teacher_and_corpus_ids(cfg)
    student = make_student(teacher_model, cfg.student.n_layers, cfg.student.layers)
    train(cfg.distill, teacher_model, student, tokenizer, ids, progress_bar=False)
    out = {"distill_seconds": time.time() - start, "tasks": {}}
    with tempfile.TemporaryDirectory() as work:
        saved = save_student(student, tokenizer, Path(work) / "student")
        scalars, _ = run_job(Job("bias"), saved, cfg, "cpu")
        out["metrics"] = scalars | bias.amplification(scalars, teacher, cfg.bias.primary)
        suite = "world" if "world" in cfg.eval.suites else "glue"
        recipe = cfg.eval.world if suite == "world" else cfg.eval.glue
        tasks = WORLD_TASKS if suite == "world" else GLUE_TASKS
        data_dir = world_tasks.task_dir(build_world(cfg.world)) if suite == "world" else recipe.data_dir
        for name in recipe.tasks:
            data = glue.load_task(saved, name, recipe, data_dir, tasks)
            runs = []
            for slot in range(finetune_runs):
                begin = time.time()
                run = glue.run_slot(saved, name, data, recipe, slot)
                runs.append({"score": run.result["score"], "failed": run.failed, "seconds": time.time() - begin,
                             "predictions": [p.tolist() for p in run.predictions]})
            out["tasks"][name] = {"labels": [list(labels) for _, labels in data.validation], "metric": data.task.metric,
                                  "runs": runs}
    return out


def configs_of(base: StudyConfig, sampled: int) -> list[tuple[str, dict]]:
    """The anchors (the control first) and `sampled` points drawn by the study's sampler."""
    anchors = [(a.name, a.params) for a in base.search.anchors]
    control = base.search.control_anchor
    anchors.sort(key=lambda a: a[0] != control)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize"] * len(base.search.objectives),
                                sampler=make_sampler(base.search.sampler))
    drawn = []
    for k in range(sampled):
        trial = study.ask()
        suggest(trial, base.search.space)
        drawn.append((f"sampled-{k}", dict(trial.params)))
    return (anchors or [("base", {})]) + drawn


def collect(base: StudyConfig, configs, seeds: int, finetune_runs: int, grid: bool, workers: int,
            path: Path | None) -> dict[tuple[str, int], dict]:
    """Every student's measurement, keyed (config name, seed): read from `path` where it is there, else measured
    (and appended to it)."""
    from study.experiment.evaluation import teacher_metrics

    have = {}
    if path is not None and path.is_file():
        for line in path.read_text().splitlines():
            row = json.loads(line)
            have[(row["config"], row["seed"])] = row
    cells = [(c, k) for c, _ in configs for k in range(seeds) if grid or c == configs[0][0] or k == 0]
    todo = [cell for cell in cells if cell not in have]
    if todo:
        teacher, _ = teacher_metrics(base)  # once, here: every student is compared with the same numbers
        params = dict(configs)
        with ProcessPoolExecutor(max_workers=workers) as pool:
            futures = {(c, k): pool.submit(measure_student, seed_config(with_params(base, params[c]), {}, k, False),
                                           teacher, finetune_runs) for c, k in todo}
            for (c, k), future in futures.items():
                row = {"config": c, "seed": k, **future.result()}
                have[(c, k)] = row
                if path is not None:
                    with path.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                print(f"measured {c} seed {k}: {row['distill_seconds']:.0f} s distilling", flush=True)
    return {cell: have[cell] for cell in cells}


def configured_score(row: dict, recipe_seeds: int) -> dict[str, float]:
    """The task scores and the suite score as a study computes them: each task the mean of its first `seeds` runs."""
    tasks = {name: float(np.mean([r["score"] for r in t["runs"][:recipe_seeds]])) for name, t in row["tasks"].items()}
    return tasks | {"score": float(np.mean(list(tasks.values())))}


def task_noise_table(rows, configs, seeds: int, recipe_seeds: int, suite: str) -> tuple[Table, dict]:
    """Per task and for the suite score: each anchor minus the control, per seed, split into its parts."""
    from study.metrics.glue import score_task

    control = configs[0][0]
    table = Table(title=f"{suite} task scores: where the paired difference's noise comes from (points, sd per seed)")
    for column in ("anchor - control", "task", "mean diff", "per seed, 1 run", f"per seed, {recipe_seeds} run(s)",
                   "distill", "finetune", "validation", "stopped short", "share of score"):
        table.add_column(column, justify="right")
    found = {}
    for name, _ in configs[1:]:
        if not all((name, k) in rows for k in range(seeds)):
            continue
        diffs, parts = {}, {}
        for task in rows[(control, 0)]["tasks"]:
            a = np.array([[r["score"] for r in rows[(name, k)]["tasks"][task]["runs"]] for k in range(seeds)])
            b = np.array([[r["score"] for r in rows[(control, k)]["tasks"][task]["runs"]] for k in range(seeds)])
            d = a - b
            c = noise.paired_components(d)
            calm = noise.paired_components(noise.without_stopped(a) - noise.without_stopped(b))
            short = int(noise.stopped_short(a).sum() + noise.stopped_short(b).sum())
            metric = rows[(control, 0)]["tasks"][task]["metric"]
            labels = np.array(rows[(control, 0)]["tasks"][task]["labels"][0])
            validation = np.mean([noise.score_difference_variance(
                lambda y, p: score_task(metric, y, p)["score"], labels,
                np.array(rows[(name, k)]["tasks"][task]["runs"][0]["predictions"][0]),
                np.array(rows[(control, k)]["tasks"][task]["runs"][0]["predictions"][0]), resamples=100, seed=k)
                for k in range(seeds)])
            diffs[task] = d[:, 0]
            parts[task] = c | {"validation": validation, "stopped": max(0.0, c["per_seed"] - calm["per_seed"]),
                               "short_runs": short, "mean": float(d.mean())}
        shares = noise.task_shares(diffs)
        per_task = {}
        for task, p in parts.items():
            configured = p["distill"] + p["finetune"] / recipe_seeds
            per_task[task] = configured
            table.add_row(f"{name} - {control}", task, f"{p['mean']:+.2f}", f"{math.sqrt(p['per_seed']):.2f}",
                          f"{math.sqrt(configured):.2f}", f"{math.sqrt(p['distill']):.2f}",
                          f"{math.sqrt(p['finetune']):.2f}", f"{math.sqrt(p['validation']):.2f}",
                          f"{math.sqrt(p['stopped']):.2f} ({p['short_runs']} runs)", f"{shares[task]:.2f}")
        score = np.array([[configured_score(rows[(n, k)], recipe_seeds)["score"] for k in range(seeds)]
                          for n in (name, control)])
        sd = float(np.std(score[0] - score[1], ddof=1))
        model = math.sqrt(sum(per_task.values())) / len(per_task)
        table.add_row(f"{name} - {control}", f"{suite}/score", f"{np.mean(score[0] - score[1]):+.2f}", "",
                      f"{sd:.2f} (model {model:.2f})", "", "", "", "", "1.00")
        found[name] = {"paired_sd": sd, "model_sd": model, "tasks": parts}
    return table, found


def two_way(metric: str, values: np.ndarray, names: list[str]) -> Table:
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
    tau = stats.kendalltau(y[:, 0], config_means).statistic if n_c > 1 else float("nan")
    paired = config_std / math.sqrt(ms_residual) if ms_residual > 0 else math.inf
    table = Table(title=f"{metric}: configs x seeds (two-way, no replication)")
    for column in ("config", *(f"seed {k}" for k in range(n_s)), "mean"):
        table.add_column(column, justify="right")
    for name, row, mean in zip(names, y, config_means):
        table.add_row(name, *(f"{v:.4f}" for v in row), f"{mean:.4f}")
    table.caption = (f"config effect std {config_std:.4f}, shared seed effect std {seed_std:.4f}, residual std "
                     f"{math.sqrt(ms_residual):.4f}; paired snr {paired:.2f}; kendall tau (seed 0 vs means) {tau:.2f}")
    return table


def verdicts_and_race(base: StudyConfig, names: list[str], values: dict, seeds: int) -> str:
    """Each anchor against the control on the fresh seeds 1..seeds-1, and the confirm race replayed on the grid: the
    anchors' and the control's seed 0 handed in as their search runs (they race whatever their values), a sampled
    point racing on fresh seeds only. Returns the race's last line."""
    from analysis import verdicts
    from analysis.race import race

    objectives = base.search.objectives
    metrics, modes, margins = [o.key for o in objectives], [o.mode for o in objectives], [o.margin for o in objectives]
    control = names[0]
    anchors = {a.name for a in base.search.anchors}
    fresh = range(1, seeds)
    for name in names[1:]:
        if name in anchors:
            trial = np.array([values[(name, k)] for k in fresh])
            comparison = verdicts.compare_with_control(trial[None], np.array([values[(control, k)] for k in fresh]),
                                                       metrics, modes, margins)[0]
            print(verdicts.verdict_line(f"{name} vs {control} (fresh seeds 1..{seeds - 1})", comparison))
    given = {(name, 0): values[(name, 0)] for name in names if name in anchors}
    spec = base.search.confirm
    most = min(spec.max_seeds, seeds - 1) if spec else seeds - 1  # a picked trial's fresh seeds 1..most are measured
    budget = spec.runs(len(names)) if spec else len(names) * seeds
    result = race(names, control, lambda wanted: {key: values[key] for key in wanted if key in values}, metrics, modes,
                  margins, min(spec.seeds if spec else 2, most), most, budget, given=given)
    places = {t: result.place[t] + (f" by {result.outdone_by[t]}" if t in result.outdone_by else "")
              for t in result.p_front}
    print(f"race on the grid: {result.stopped}; P(front) and place "
          + ", ".join(f"{t} {p:.2f} {places[t]}" for t, p in result.p_front.items()))
    for name, comparison in result.comparisons.items():
        print(verdicts.verdict_line(f"race: {name} vs {control} at seeds {result.seeds[name]}", comparison))
    return f"race_runs: {result.runs} fixed_runs: {result.fixed_runs()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="search_spaces/smoke.yaml")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as `kdstudy run --set`")
    parser.add_argument("--seeds", type=int, default=6, help="distillation seeds (each moves every seed by k)")
    parser.add_argument("--finetune-runs", type=int, default=2, help="fine-tuning runs per task and student")
    parser.add_argument("--sampled", type=int, default=0, help="configs drawn by the study's sampler, beside anchors")
    parser.add_argument("--grid", action="store_true", help="every config at every seed")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--runs", type=Path, default=None, help="JSON lines of measured students, read and extended")
    args = parser.parse_args()
    setup_logging(-1)
    quiet_libraries()
    base = load_config(args.config, args.set)
    configs = configs_of(base, args.sampled)
    names = [name for name, _ in configs]
    start = time.time()
    rows = collect(base, configs, args.seeds, max(2, args.finetune_runs), args.grid, args.workers, args.runs)
    suite = "world" if "world" in base.eval.suites else "glue"
    recipe_seeds = (base.eval.world if suite == "world" else base.eval.glue).seeds
    out = table_console()  # 160 columns in a log file: the metric names stay whole
    table, found = task_noise_table(rows, configs, args.seeds, recipe_seeds, suite)
    out.print(table)
    values = {}
    for (name, k), row in rows.items():
        metrics = row["metrics"] | {f"{suite}/{t}": v for t, v in configured_score(row, recipe_seeds).items()}
        values[(name, k)] = np.array([metrics[o.key] for o in base.search.objectives])
    if args.grid:
        for j, objective in enumerate(base.search.objectives):
            out.print(two_way(objective.key, np.array([[values[(n, k)][j] for k in range(args.seeds)] for n in names]),
                              names))
    seconds = [r["seconds"] for row in rows.values() for t in row["tasks"].values() for r in t["runs"]]
    print(f"{len(rows)} students in {time.time() - start:.0f} s on {args.workers} worker(s) (0 where all were read "
          f"from --runs); a fine-tuning run took {np.median(seconds):.0f} s (median)")
    last = verdicts_and_race(base, names, values, args.seeds) if args.grid and args.seeds >= 3 else ""
    sd = found[names[1]]["paired_sd"] if len(names) > 1 and names[1] in found else float("nan")
    print(f"paired_sd: {sd:.3f} {last}")


if __name__ == "__main__":
    main()
