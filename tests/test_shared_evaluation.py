"""The evaluation split into jobs and shared by a trial's workers gives the numbers one process gives."""

import pytest

from study.experiment.evaluation import combine, evaluate_model, evaluation_jobs, run_job
from study.experiment.shared_evaluation import share
from study.load import parse_config
from study.record import folder
from tests.conftest import tiny_space

# Two seed slots per task, budgets of a few steps: a chance-level retry runs too (2 steps end near chance).
EVAL = {"suites": ["world"], "world": {"tasks": ["world_cola", "world_sts"], "seeds": 2, "max_steps": 2, "retries": 1,
                                       "max_train_samples": 32, "max_eval_samples": 32}}


def _cfg(tmp_path, **scaling):
    raw = tiny_space(storage_path=str(tmp_path / "ray"), scaling={"num_workers": 2, **scaling})
    raw["eval"] = EVAL
    return parse_config(raw)


def test_jobs_are_the_bias_suite_then_the_task_seed_slots(tmp_path):
    jobs = evaluation_jobs(_cfg(tmp_path))
    assert [j.name for j in jobs] == ["bias", "world/world_cola seed slot 0", "world/world_cola seed slot 1",
                                      "world/world_sts seed slot 0", "world/world_sts seed slot 1"]
    assert share(jobs, 0, 2) == [jobs[0], jobs[2], jobs[4]] and share(jobs, 1, 2) == [jobs[1], jobs[3]]
    assert share(jobs, 0, 2, alone=True) == jobs and share(jobs, 1, 2, alone=True) == []


def test_jobs_in_any_order_give_the_one_process_numbers(tiny_world, tmp_path):
    cfg = _cfg(tmp_path)
    model_dir = tiny_world.teacher_dir
    one_process, details = evaluate_model(model_dir, cfg, "cpu")
    # every job on its own (no data kept between slots), last job first: what two ranks would each have run
    shuffled = {job: run_job(job, model_dir, cfg, "cpu") for job in reversed(evaluation_jobs(cfg))}
    assert combine(cfg, shuffled) == (one_process, details)
    assert {"world/world_cola_se", "world/world_sts/failed_runs", "world/score", "bias/template/planted_slope"} \
        <= set(one_process)


def test_slots_run_at_once_in_processes_give_the_numbers_of_one_after_another(tiny_world, tmp_path):
    """What a worker does on CUDA with eval.jobs_per_gpu 2 (study.experiment.job_runner), here on the CPU."""
    from study.experiment.job_runner import run_jobs

    cfg = _cfg(tmp_path)
    model_dir = tiny_world.teacher_dir
    in_order = list(run_jobs(run_job, evaluation_jobs(cfg), model_dir, cfg, "cpu"))
    at_once = list(run_jobs(run_job, evaluation_jobs(cfg), model_dir, cfg, "cpu", at_once=2))
    assert [job for job, _, _ in in_order] == evaluation_jobs(cfg)
    assert sorted(job.name for job, _, _ in at_once) == sorted(job.name for job in evaluation_jobs(cfg))
    assert combine(cfg, {job: r for job, r, _ in at_once}) == combine(cfg, {job: r for job, r, _ in in_order})


@pytest.mark.slow
def test_a_trial_evaluated_shared_equals_one_evaluated_on_rank_0(tiny_world, tmp_path, no_ray_left_behind):
    from study.cluster.start import start_ray
    from study.cluster.train_run import distill_and_evaluate

    # a trial always runs in a resolved study folder (its workers log to logs/<train run>.log there)
    shared_cfg = folder.resolve(_cfg(tmp_path), tmp_path / "study")
    alone_cfg = folder.resolve(_cfg(tmp_path, evaluation="rank0"), tmp_path / "study")
    start_ray(shared_cfg, None)  # as a study does: 3 CPUs (the trial and 2 workers), the dashboard Train's cleaner asks
    teacher = {shared_cfg.bias.primary: 0.0}
    shared, _ = distill_and_evaluate(shared_cfg, teacher, "train-shared")
    alone, _ = distill_and_evaluate(alone_cfg, teacher, "train-alone")

    def numbers(metrics):
        return {k: v for k, v in metrics.items() if not k.startswith("perf/")}

    assert numbers(shared) == numbers(alone)
    assert "world/world_sts_se" in shared and "bias/amplification" in shared
    for metrics in (shared, alone):
        assert 0 < metrics["perf/busy_share"] <= 1
        assert metrics["perf/eval_seconds"] > 0 and metrics["perf/distill_seconds"] > 0
        assert metrics["perf/work_seconds"] > metrics["perf/eval_work_seconds"] > 0


def test_a_job_that_raises_names_itself_and_its_rank(tmp_path, monkeypatch):
    from study.experiment import shared_evaluation

    ran = []

    def run_job(job, *args):
        ran.append(job.name)
        if job.task == "world_sts" and job.slot == 0:
            raise ValueError("no such split\nsecond line")
        return None

    monkeypatch.setattr(shared_evaluation, "run_job", run_job)
    with pytest.raises(shared_evaluation.EvaluationFailed) as err:
        shared_evaluation.evaluate_shared("model", _cfg(tmp_path), "cpu", rank=0, world_size=1)
    assert str(err.value) == ("evaluation job world/world_sts seed slot 0 failed on rank 0: ValueError: no such split")
    assert ran == ["bias", "world/world_cola seed slot 0", "world/world_cola seed slot 1",
                   "world/world_sts seed slot 0"]
