"""`kdstudy run --dry-run`: the plan of a study from its YAML alone."""

from study.cli import main
from study.plan.cost import MEASURED


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


def test_dry_run_estimates_gpu_hours_from_measured_throughput(capsys):
    assert main(["run", "search_spaces/paper.yaml", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    # paper.yaml: 48 trials of 10,000 steps x 64 sequences x 4 workers x 128 tokens; --full 40,000 steps, 5 seeds;
    # 2 trials at a time; the figures measured at its batch, plain KD and mixup
    plain, mixup = (next(m for m in MEASURED if m.batch == 64 and m.mixup == mix) for mix in (False, True))
    search, rerun = 48 * 10_000 * 64 * 4 * 128, 5 * 40_000 * 64 * 4 * 128

    def hours(tokens: float) -> str:
        return f"{tokens / plain.tokens_per_s / 3600:.1f}-{tokens / mixup.tokens_per_s / 3600:.1f}"

    assert "distillation: an ESTIMATE from measured throughput" in out and plain.measured in out
    assert f"15.73B tokens = {hours(search)} {plain.gpu} GPU-hours" in out
    assert f"8 GPUs at a time: {hours(search / 8)} hours" in out
    assert f"5 seeds x 1.31B tokens = {hours(rerun)} {plain.gpu} GPU-hours" in out
    # the evaluation apart, its budget counted and its cost said to be unmeasured: no figure from a GPU
    assert "12 fine-tuning run(s) (glue: 4 task(s) x 3 seed(s), at most 1500 steps x 32 sequences each)" in out
    assert "evaluation: no estimate: unmeasured (no fine-tuning steps/s or bias-suite seconds measured on a GPU" in out
    assert "measured on a CPU and are not GPU figures" in out


def test_dry_run_says_when_no_measured_figure_fits(capsys):
    assert main(["run", "search_spaces/smoke.yaml", "--dry-run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "no estimate: no measured distillation throughput for this study (the study runs on CPUs)" in out
    # the smoke world's evaluation has CPU figures: 1 task x 1 seed x 2 epochs of 16,000 examples at batch 64
    assert "per trial 500 steps + the bias suite" in out and "measured on a CPU" in out
    for change, why in (("teacher.source=roberta-base", "teacher roberta-base"),
                        ("distill.batch_size=128", "batch 128 per GPU (measured: 64, 256)"),
                        ("distill.max_length=256", "at 256 tokens")):
        assert main(["run", "search_spaces/paper.yaml", "--dry-run", "--set", change]) == 0
        out = " ".join(capsys.readouterr().out.split())
        assert "GPU-hours" not in out and why in out, change
