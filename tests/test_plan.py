"""`kdstudy run --dry-run`: the plan of a study from its YAML alone."""

from study.cli import main


def test_dry_run_prints_the_plan_without_ray_or_downloads(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["run", "search_spaces/paper.yaml", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "48 trials, 2 at a time; anchors first: plain_kd, cda, paper_mixup" in out
    assert "4 Ray Train worker(s) x 4 CPU, 1 GPU" in out
    assert "10000 steps x 256 sequences" in out and "327.7M tokens" in out
    assert "distill.mitigation.alpha" in out
    import ray

    assert not ray.is_initialized()


def test_dry_run_prices_each_part_with_its_source_and_totals_them(capsys):
    assert main(["run", "search_spaces/paper.yaml", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    # 48 trials x 10,000 steps x 256 sequences x 128 tokens = 15.73B tokens at 177k tokens/s (plain KD) .. 124k
    # (mixup) per GPU: 24.7-35.2 GPU-hours; 8 GPUs at a time
    assert "distillation 15.73B tokens = 24.7-35.2 H200 GPU-hours" in out and "8 GPUs at a time: 3.1-4.4 hours" in out
    assert "source: 2026-12-04, one H200, `python benchmarks/distill_gpu.py`, batch 64" in out
    # 4 tasks x 3 seeds x 1,500 steps = 18,000 steps at 1,479 / 32 steps/s = 389 s a trial; x 48 trials
    assert "12 fine-tuning run(s) (glue: 4 task(s) x 3 seed(s), at most 1500 steps x 32 sequences each)" in out
    assert "per trial at most 18,000 fine-tuning steps (the bias suite not timed on a GPU: not counted) = 6.5 " \
           "H200-minutes; 48 trials = 5.19 H200 GPU-hours" in out
    assert "source: 2026-12-04, one H200, glue.fit in fp32 at batch 32: 1,479 examples/s" in out
    # the race: 6 trials x 2 seeds + 3 anchors x 1 (their search run is seed 0) = 15 runs first, at most every
    # contender to 8 seeds, 6 x 8 + 3 x 7 = 69 (within the budget of 9 contenders x 8); a run = 0.514-0.734 h of
    # distillation + 0.108 h of evaluation
    assert "confirm race 15-69 runs" in out and "= 9.3-58.1 H200 GPU-hours" in out
    assert "total 39.2-98.5 H200 GPU-hours" in out
    assert "5 seeds x 1.31B tokens = 10.3-14.7 H200 GPU-hours of distillation" in out


def test_dry_run_says_when_no_measured_figure_fits(capsys):
    assert main(["run", "search_spaces/smoke.yaml", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no estimate: no measured distillation throughput for this study (the study runs on CPUs)" in out
    # the smoke world's evaluation has CPU figures: 1 task x 1 seed x 2 epochs of 16,000 examples at batch 64
    assert "per trial 500 fine-tuning steps + the bias suite" in out and "measured on a CPU" in out
    assert "total no total: distillation, confirm race unmeasured" in out
    for change, why in (("teacher.source=roberta-base", "teacher roberta-base"),
                        ("distill.batch_size=512", "batch 512 per GPU (measured: 64, 128, 256)"),
                        ("distill.max_length=256", "at 256 tokens")):
        assert main(["run", "search_spaces/paper.yaml", "--dry-run", "--set", change]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert why in out and "total no total: distillation," in out, change
