"""What a study costs beyond its trials: the same trial configs run as a kdstudy study (Ray Tune + Ray Train, one
trial at a time, MLflow and Optuna) vs one after another standalone, in the same run. Standalone is measured two
ways: `kdstudy distill` once per config (what a researcher runs without a study: a process per run), and a loop in
this process (imports and Python start paid once: the least any runner could spend).

All sides use the same threads, the same cached world and teacher metrics, and must give the same objectives
(checked: a seed fixes everything on CPU). The study's trials log where their time went (perf/setup_seconds,
perf/distill_seconds, perf/eval_seconds, perf/fit_seconds, perf/trial_seconds), so the overhead is split into:
Ray start and study bookkeeping, Train worker start/teardown, and the trial's own process.

    python benchmarks/study_overhead.py [--config search_spaces/smoke.yaml] [--trials 8] [--set key=value ...]

Last lines: `ratio vs in-process loop: X`, then `ratio: X` = study wall time / `kdstudy distill` sum.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import optuna
import torch

from study.config import with_params
from study.distill.loop import train
from study.distill.models import make_student, save_student
from study.experiment.evaluation import student_metrics, teacher_metrics
from study.experiment.sources import load_teacher_and_corpus_ids
from study.load import load_config
from study.runtime import quiet_libraries, setup_logging
from study.search.driver import run_study
from study.search.space import make_sampler, suggest


def sample_configs(cfg, n: int) -> list[dict]:
    """n param dicts from the study's own space and sampler (no results told: the first generation)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize"] * len(cfg.search.objectives),
                                sampler=make_sampler(cfg.search.sampler))
    out = []
    for _ in range(n):
        trial = study.ask()
        suggest(trial, cfg.search.space)
        out.append(dict(trial.params))
    return out


def standalone(cfg, teacher: dict, work: Path) -> tuple[dict, dict]:
    """One trial's work in this process: (metrics, seconds per phase)."""
    t0 = time.perf_counter()
    teacher_model, tokenizer, ids = load_teacher_and_corpus_ids(cfg)
    student = make_student(teacher_model, cfg.student.n_layers, cfg.student.layers)
    t1 = time.perf_counter()
    metrics = train(cfg.distill, teacher_model, student, tokenizer, ids, progress_bar=False)
    t2 = time.perf_counter()
    scalars, _ = student_metrics(save_student(student, tokenizer, work / "student"), cfg, teacher)
    t3 = time.perf_counter()
    return {**metrics, **scalars}, {"setup": t1 - t0, "distill": t2 - t1, "eval": t3 - t2}


def standalone_cli(config: str, overrides: list[str], params: dict, threads: int, work: Path) -> dict:
    """One trial's config as `kdstudy distill` in its own process: its metrics.json."""
    sets = [a for o in overrides + [f"{k}={v}" for k, v in params.items()] for a in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    subprocess.run([sys.executable, "-m", "study.cli", "distill", config, *sets, "--out", str(work)], check=True,
                   env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return json.loads((work / "metrics.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="search_spaces/smoke.yaml")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--set", action="append", default=[])
    args = parser.parse_args()
    quiet_libraries()
    setup_logging()  # the world build and the teacher measurement say what they do
    torch.set_num_threads(args.threads)

    base = load_config(args.config, args.set)
    configs = sample_configs(base, args.trials)
    teacher, _ = teacher_metrics(base)  # cached for both sides
    objectives = [o.metric for o in base.search.objectives]

    print(f"{args.trials} configs from {args.config}, {args.threads} threads each way")
    start = time.perf_counter()
    alone = []
    for i, params in enumerate(configs):
        with tempfile.TemporaryDirectory() as work:
            metrics, phases = standalone(with_params(base, params), teacher, Path(work))
        alone.append((metrics, phases))
        print(f"  standalone {i}: " + ", ".join(f"{k} {v:.1f}s" for k, v in phases.items()), flush=True)
    t_alone = time.perf_counter() - start

    start = time.perf_counter()
    for i, params in enumerate(configs):
        with tempfile.TemporaryDirectory() as work:
            metrics = standalone_cli(args.config, args.set, params, args.threads, Path(work))
        diffs_cli = [abs(metrics[o] - alone[i][0][o]) for o in objectives]
        print(f"  kdstudy distill {i}: {time.perf_counter() - start:.0f}s so far, objectives differ from the loop by "
              f"at most {max(diffs_cli):.2e}", flush=True)
    t_cli = time.perf_counter() - start

    anchors = [{"name": f"config{i}", "params": p} for i, p in enumerate(configs)]
    scaling = {"num_workers": 1, "cpus_per_worker": args.threads}
    cfg = load_config(args.config, args.set + [f"search.anchors={anchors}", f"search.num_samples={args.trials}",
                                               "search.max_concurrent_trials=1", f"search.scaling={scaling}"])
    with tempfile.TemporaryDirectory() as study_dir:
        start = time.perf_counter()
        run_study(cfg, study_dir)
        t_study = time.perf_counter() - start
        from analysis.runs import read_study

        trials = {t.anchor: t for t in read_study(study_dir).trials}

    diffs, rows = [], []
    for i, (metrics, phases) in enumerate(alone):
        t = trials[f"config{i}"].metrics
        diffs += [abs(t[o] - metrics[o]) for o in objectives]
        rows.append([t["perf/trial_seconds"], t["perf/fit_seconds"], t["perf/setup_seconds"],
                     t["perf/distill_seconds"], t["perf/eval_seconds"], phases["setup"], phases["distill"],
                     phases["eval"]])
    r = np.array(rows).sum(axis=0)
    trial, fit, setup, distill, evaluation, a_setup, a_distill, a_eval = r
    print(f"\nstudy {t_study:.0f}s vs standalone: kdstudy distill {t_cli:.0f}s, in-process loop {t_alone:.0f}s; "
          f"objectives differ by at most {max(diffs):.2e}")
    print(f"{'where the time went (sums over trials)':44s} {'study':>8s} {'standalone':>11s}")
    print(f"{'  setup: teacher, corpus, student':44s} {setup:7.0f}s {a_setup:10.0f}s")
    print(f"{'  distillation loop':44s} {distill:7.0f}s {a_distill:10.0f}s")
    print(f"{'  evaluation (study: on the Train worker)':44s} {evaluation:7.0f}s {a_eval:10.0f}s")
    print(f"{'  Train worker start and teardown':44s} {fit - setup - distill - evaluation:7.0f}s {'':>11s}")
    print(f"{'  the trial process, reporting':44s} {trial - fit:7.0f}s {'':>11s}")
    print(f"{'  Ray start, teacher, MLflow, Optuna, front':44s} {t_study - trial:7.0f}s {'':>11s}")
    print(f"ratio vs in-process loop: {t_study / t_alone:.2f}")
    print(f"ratio: {t_study / t_cli:.2f}")


if __name__ == "__main__":
    main()
