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
