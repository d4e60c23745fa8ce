"""One (config, seed), one result, wherever it runs: `kdstudy distill` in the user's process and a study's trial on a
Ray Train worker give the same metrics to the last digit (the thread count, StudyConfig.threads, is the same)."""

import json

import pytest
import ray
import yaml

from study.cli import main
from study.cluster.start import start_ray, teacher_metrics_task
from study.cluster.train_run import distill_and_evaluate
from study.load import parse_config
from study.record import folder
from tests.conftest import tiny_space

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_ray_left_behind")]  # a Ray cluster and a Train run


def test_kdstudy_distill_and_a_trial_give_the_same_numbers(tiny_world, tmp_path):
    raw = tiny_space(num_samples=1)
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    assert main(["-q", "distill", str(space), "--out", str(tmp_path / "distill")]) == 0
    by_cli = json.loads((tmp_path / "distill" / "metrics.json").read_text())

    cfg = folder.resolve(parse_config(raw), tmp_path / "study")
    start_ray(cfg, None)
    by_trial, _ = distill_and_evaluate(cfg, teacher_metrics_task(cfg), "train-same")
    ray.shutdown()
    shared = {k for k in by_cli if not k.startswith("perf/")} & set(by_trial)
    assert len(shared) > 30 and "world/score" in shared and "bias/amplification" in shared
    assert {k: by_trial[k] for k in shared} == {k: by_cli[k] for k in shared}
    assert by_cli["perf/threads"] == by_trial["perf/threads"] == 1.0
