"""benchmarks/gpu_check.py in its tiny configuration, as it must run on the lent GPU machine: without Ray, MLflow or
Optuna (they cannot be imported there), through study.distill.train, the pipeline and the evaluation functions."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLOORS = ["floor bf16 check, every switch within tolerance", "floor new path MFU >= 30% at its best batch",
          "floor mixup MFU >= 22%", "floor ratio >= 2.5 (defaults at the best batch / old at batch 8)",
          "floor smoke world's step <= 10 ms", "floor fine-tuning >= 3 x 1,479 examples/s",
          "floor kdstudy distill distils on the GPU"]


def test_gpu_check_runs_tiny_where_ray_mlflow_and_optuna_are_missing(cache_dir, tmp_path):
    missing = tmp_path / "missing"
    for name in ("mlflow", "ray", "optuna"):  # what the lent GPU machine lacks: importing them fails
        (missing / name).mkdir(parents=True)
        (missing / name / "__init__.py").write_text(f"raise ImportError('no {name} on the GPU machine')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(missing), str(REPO)]), "KDSTUDY_CACHE": str(cache_dir)}
    run = subprocess.run([sys.executable, "benchmarks/gpu_check.py", "--tiny"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout.splitlines()
    assert out[0].startswith("device: cpu (tiny configuration")
    assert out[0].endswith("the loss route on this device is projected")
    assert "bf16 check: passed" in out
    assert any(line.startswith("defaults         none") for line in out)  # the throughput table's rows
    assert any(line.startswith("smoke trial, compile off: load") for line in out)
    assert any(line.startswith("fine-tuning fp32: ") for line in out)
    assert "kdstudy distill (run_distillation, --device auto): metrics.json device cpu" in out
    floors = [line for line in out if line.startswith("floor ")]
    assert [line.split(": ")[0] for line in floors] == FLOORS
    assert floors[0].endswith(": PASS")
    assert all(line.split(": ")[1].startswith("unmeasured") for line in floors[1:])  # no GPU: nothing of one
