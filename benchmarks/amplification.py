"""Does plain KD amplify the planted bias on the built-in world, and do CDA and mixup reduce it?

For each mitigation (none, cda, mixup) and each seed, distil the world teacher into a student with the smoke
study's settings and measure both. Prints per-run rows, then per mode the mean +- std and a 95% t-interval of the
student's bias and of the amplification (student - teacher) for every template statistic, and the teacher's planted
Spearman (below 0.8 the metric or the world is broken).

    python benchmarks/amplification.py [--seeds 3] [--config search_spaces/smoke.yaml] [--set key=value ...]

`--set` varies the distillation (e.g. `--set student.n_layers=1`, `--set distill.loss.temperature=4`).
"""

from __future__ import annotations

import argparse
import json
import time

from analysis.report import seed_summary
from study.distill.data import tokenize
from study.distill.loop import train
from study.distill.models import make_student
from study.experiment.sources import load_teacher_and_corpus
from study.load import load_config
from study.metrics import bias
from study.runtime import quiet_libraries, setup_logging

MODES = {"none": {"mode": "none"}, "cda": {"mode": "cda"}, "mixup": {"mode": "mixup", "alpha": 0.4, "p": 1.0}}
STATS = ["planted_slope", "spread", "abs_mean", "cbs", "planted_spearman", "majority_skew"]


def interval(values: list[float]) -> tuple[float, float, float, float]:
    """mean, std (ddof 1), and the 95% t-interval of the mean."""
    s = seed_summary(values)
    return s["mean"], s["std"], s["ci_low"], s["ci_high"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--config", default="search_spaces/smoke.yaml")
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--modes", default="none,cda,mixup")
    parser.add_argument("--json", help="also write every run's metrics here")
    args = parser.parse_args()
    quiet_libraries()
    setup_logging()  # the world build and the teacher measurement say what they do

    base = load_config(args.config, args.set)
    teacher, tokenizer, sentences = load_teacher_and_corpus(base)
    ids = tokenize(sentences, tokenizer, base.distill.max_length)
    teacher_bias, _ = bias.measure(teacher, tokenizer, base.bias)
    print("teacher: " + ", ".join(f"{s} {teacher_bias['bias/template/' + s]:.4f}" for s in STATS))
    print(f"settings: {args.config} {' '.join(args.set)}; student {base.student.n_layers} layers, "
          f"{base.distill.steps} steps, T {base.distill.loss.temperature}")

    runs: dict[str, list[dict]] = {m: [] for m in args.modes.split(",")}
    for mode in runs:
        for seed in range(args.seeds):
            cfg = load_config(args.config, args.set + [f"distill.seed={seed}",
                                                       f"distill.mitigation={json.dumps(MODES[mode])}"])
            start = time.time()
            student = make_student(teacher, cfg.student.n_layers, cfg.student.layers)
            metrics = train(cfg.distill, teacher, student, tokenizer, ids)
            student_bias, _ = bias.measure(student, tokenizer, cfg.bias)
            metrics.update(student_bias)
            runs[mode].append(metrics)
            print(f"{mode:6s} seed {seed}: slope {student_bias['bias/template/planted_slope']:.4f} "
                  f"(teacher {teacher_bias['bias/template/planted_slope']:.4f}), "
                  f"spread {student_bias['bias/template/spread']:.4f}, "
                  f"rho {student_bias['bias/template/planted_spearman']:.4f}, "
                  f"mlm {metrics['distill/loss_mlm']:.3f}, {time.time() - start:.0f}s", flush=True)

    print()
    print(f"{'mode':6s} {'statistic':17s} {'teacher':>8s} {'student mean+-std':>19s} {'amplification mean':>19s} "
          f"{'95% CI':>20s}")
    for mode, results in runs.items():
        for s in STATS:
            key = f"bias/template/{s}"
            mean, std, _, _ = interval([r[key] for r in results])
            amp, _, lo, hi = interval([r[key] - teacher_bias[key] for r in results])
            print(f"{mode:6s} {s:17s} {teacher_bias[key]:8.4f} {mean:10.4f} +- {std:6.4f} {amp:+19.4f} "
                  f"[{lo:+8.4f}, {hi:+8.4f}]")
    print(f"teacher planted Spearman: {teacher_bias['bias/template/planted_spearman']:.4f} (floor 0.8)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"teacher": teacher_bias, "runs": runs}, f, indent=2)


if __name__ == "__main__":
    main()
