"""How busy a trial keeps its workers: one smoke-world trial with 2 Ray Train workers, its student evaluated on 2
world tasks x 2 fine-tuning seeds + the bias suite, shared by the workers (search.scaling.evaluation: shared) vs on
rank 0 alone while the other waits (rank0), in the same run. Both trials distil the same student and must report
the same numbers (checked). The machine's load (`uptime`) is printed before and after: on a shared machine the
figures move with it.

    python benchmarks/trial_busy.py [--config search_spaces/smoke.yaml] [--set key=value ...]

Per run: the evaluation's wall (perf/eval_seconds), its jobs' seconds summed over workers, the distillation's, the
Train run's wall and the busy share (work seconds summed over workers / (workers x wall)). Each worker also logs a
line per job as it finishes (the seconds of a fine-tuning slot and of the bias suite). Last line:
`ratio: X` = evaluation wall, rank 0 alone / shared.
"""

from __future__ import annotations

import argparse
import os
import tempfile

import ray

from study.cluster.start import start_ray
from study.cluster.train_run import distill_and_evaluate
from study.load import load_config
from study.record import folder
from study.runtime import quiet_libraries, setup_logging

SETTINGS = ["eval.world.tasks=[world_cola, world_sts]", "eval.world.seeds=2", "search.scaling.num_workers=2",
            "search.scaling.cpus_per_worker=1", "search.max_failures=0"]  # a restarted worker would void the figures


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="search_spaces/smoke.yaml")
    parser.add_argument("--set", action="append", default=[], help="key=value, as kdstudy's --set")
    args = parser.parse_args()
    setup_logging()
    quiet_libraries()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    print(f"load average (1, 5, 15 min) before: {load()} on {os.cpu_count()} cores (a shared machine)")
    runs = {}
    with tempfile.TemporaryDirectory(prefix="kdstudy-busy-") as work:
        # resolved as a study resolves them: its trials' workers log to the study folder's logs/
        configs = {mode: folder.resolve(load_config(args.config, SETTINGS + [f"search.scaling.evaluation={mode}",
                                                                             f"search.storage_path={work}/ray"]
                                                    + args.set), f"{work}/study")
                   for mode in ("rank0", "shared")}
        start_ray(configs["shared"], None)  # as a study starts it (its dashboard serves Ray Train's state queries)
        try:
            for mode, cfg in configs.items():
                teacher = {cfg.bias.primary: 0.0}  # no amplification is judged here: the teacher is not measured
                runs[mode], _ = distill_and_evaluate(cfg, teacher, f"train-{mode}")
        finally:
            ray.shutdown()
    print(f"load average (1, 5, 15 min) after: {load()}")
    same = {k: v for k, v in runs["shared"].items() if not k.startswith("perf/")} == \
        {k: v for k, v in runs["rank0"].items() if not k.startswith("perf/")}
    print(f"same numbers shared and on rank 0 alone: {same}")
    for mode, m in runs.items():
        print(f"{mode:>7}: evaluation wall {m['perf/eval_seconds']:.1f}s (jobs {m['perf/eval_work_seconds']:.1f}s "
              f"summed over workers), distillation {m['perf/distill_seconds']:.1f}s, Train run wall "
              f"{m['perf/fit_seconds']:.1f}s, busy share {m['perf/busy_share']:.3f}")
    print(f"ratio: {runs['rank0']['perf/eval_seconds'] / runs['shared']['perf/eval_seconds']:.2f}")


if __name__ == "__main__":
    main()
