"""Interrupted studies and crashed workers on a real local Ray cluster, and `kdstudy rerun` of a finished study.

The study driver runs as its own process (in its own session, so the test can SIGKILL it and everything it
started); the resumed study and the rerun run in this process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import optuna
import psutil
import pytest
import yaml
from mlflow import MlflowClient

from study.load import parse_config
from study.record import folder
from study.record.optuna_store import optuna_storage
from study.reruns.rerun import rerun
from study.search.driver import run_study
from tests.conftest import OBJECTIVES, SLOW_POLL, TIMEOUT, kill_session, tiny_space, trial_runs, wait_for

pytestmark = [pytest.mark.slow,  # a real Ray cluster per test, and a study killed and resumed
              pytest.mark.usefixtures("no_ray_left_behind")]
def _start_driver(space: Path, study_dir: Path, log: Path, env: dict | None = None) -> subprocess.Popen:
    """The driver, with -v: the workers' lines (steps, resuming) in its output, where the tests watch for them."""
    return subprocess.Popen([sys.executable, "-m", "study.cli", "-v", "run", str(space), "--study-dir", str(study_dir)],
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "RAY_AUTH_MODE": "disabled", **(env or {})})


def _finished_count(study_dir: Path) -> int:
    if not (study_dir / folder.META).is_file():
        return 0
    return sum(r.info.status == "FINISHED" for r in trial_runs(study_dir))


@pytest.fixture(scope="module")
def resumed_study(tiny_world, tmp_path_factory):
    """A 2-trial study whose driver is SIGKILLed after its first trial finishes, then resumed to the end."""
    root = tmp_path_factory.mktemp("resume")
    raw = tiny_space(num_samples=2, max_concurrent_trials=1)
    raw["distill"]["steps"] = 40  # long enough that the kill lands before the study is done
    raw["distill"]["checkpoint_every"] = 10
    space = root / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    study_dir = root / "study"
    proc = _start_driver(space, study_dir, root / "first.log")
    try:
        wait_for(lambda: _finished_count(study_dir) >= 1, "the first trial finished", proc)
    finally:
        kill_session(proc)
    before = {r.data.tags["trial_id"]: (r.info.run_id, r.info.status) for r in trial_runs(study_dir)}
    front = run_study(parse_config(raw), study_dir, resume=True)
    return {"dir": study_dir, "raw": raw, "before": before, "front": front,
            "first_log": (root / "first.log").read_text()}


def test_resume_finishes_the_study_without_duplicates(resumed_study):
    study_dir, before = resumed_study["dir"], resumed_study["before"]
    finished_before = {t for t, (_, status) in before.items() if status == "FINISHED"}
    assert finished_before and len(finished_before) < 2  # the kill landed mid-study

    children = trial_runs(study_dir)
    finished = [r for r in children if r.info.status == "FINISHED"]
    ids = [r.data.tags["trial_id"] for r in finished]
    assert len(finished) == 2 and len(set(ids)) == 2  # exactly one finished run per trial
    assert all(r.info.status in ("FINISHED", "KILLED") for r in children)  # only a lost trial may be KILLED
    # a trial that finished before the kill kept its run and was not logged a second time
    client = MlflowClient(json.loads((study_dir / folder.META).read_text())["tracking_uri"])
    for trial_id in finished_before:
        run_id = before[trial_id][0]
        assert run_id in {r.info.run_id for r in finished}
        assert len(client.get_metric_history(run_id, "world/score")) == 1

    # Optuna agrees: the same two trials complete, with the same values; none left running
    ot = optuna.load_study(study_name="tiny-study", storage=optuna_storage(study_dir))
    complete = [t for t in ot.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(complete) == 2
    assert not [t for t in ot.trials if t.state == optuna.trial.TrialState.RUNNING]
    by_trial = sorted(v for t in sorted(complete, key=lambda t: t.values) for v in t.values)
    by_run = sorted(r.data.metrics[m] for r in finished for m in OBJECTIVES)
    assert by_trial == pytest.approx(by_run)
    assert len(resumed_study["front"].trials) == 2


def test_run_on_an_existing_study_without_resume_is_refused(resumed_study, capsys):
    from study.cli import main

    space = resumed_study["dir"].parent / "space.yaml"
    assert main(["run", str(space), "--study-dir", str(resumed_study["dir"])]) == 2
    err = capsys.readouterr().err.strip()
    assert "already holds a study: add --resume" in err and "\n" not in err


def test_rerun_of_the_knee_with_two_seeds(resumed_study):
    study_dir = resumed_study["dir"]
    result = rerun(study_dir, "recommended", seeds=2)  # the study has no confirm stage: its knee
    knee = resumed_study["front"].trials[resumed_study["front"].knee]
    assert result["rerun_of"] == knee.trial_id and len(result["per_seed"]) == 2 and not result["failed_seeds"]
    for metric in OBJECTIVES:
        seeds = [result["per_seed"][k][metric] for k in ("0", "1")]
        summary = result["summary"][metric]
        assert summary["mean"] == pytest.approx(sum(seeds) / 2)
        assert summary["ci_low"] <= summary["mean"] <= summary["ci_high"]
        # seed 0 of a rerun without --full is the trial itself: the same config and seed, the same numbers
        assert seeds[0] == pytest.approx(knee.metrics[metric], rel=1e-6, abs=1e-9)
    written = json.loads(folder.rerun_result(study_dir, knee.trial_id, full=False).read_text())
    assert written["summary"] == result["summary"]

    meta = json.loads((study_dir / folder.META).read_text())
    client = MlflowClient(meta["tracking_uri"])
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["rerun_of"] == knee.trial_id
    assert run.data.tags["mlflow.parentRunId"] == meta["parent_run_id"]
    assert run.data.metrics[OBJECTIVES[0]] == pytest.approx(result["summary"][OBJECTIVES[0]]["mean"])
    assert f"{OBJECTIVES[0]}/ci_high" in run.data.metrics
    # seed 0's student in the study's Model Registry, the knee being the recommended point
    from study.student import registry

    version = client.get_model_version_by_alias(meta["name"], registry.RECOMMENDED)
    assert version.run_id == result["mlflow_run_id"] and version.tags[registry.TRIAL] == knee.trial_id
    assert version.tags[registry.PICK] == "recommended" and version.tags[registry.SEEDS].startswith("2 seeds: ")
    # a rerun is not a trial: the front and `kdstudy pareto` still see the two finished trials
    from analysis.runs import read_study

    trials = read_study(study_dir).trials
    assert sum(t.status == "FINISHED" for t in trials) == 2 and not any("rerun_of" in t.tags for t in trials)


def test_worker_crash_resumes_from_its_checkpoint(tiny_world, tmp_path):
    raw = tiny_space(num_samples=1, scaling={"num_workers": 2}, max_failures=2)
    raw["distill"].update({"steps": 400, "checkpoint_every": 20, "log_every": 20})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    study_dir = tmp_path / "study"
    log = tmp_path / "driver.log"
    proc = _start_driver(space, study_dir, log, env=SLOW_POLL)  # the kill lands mid-trial
    try:
        # the progress line of step 60 comes after the checkpoints of steps 20 and 40 were reported to Ray Train
        wait_for(lambda: "step 60/400" in log.read_text(), "two reported checkpoints", proc)

        def kill_a_worker() -> bool:
            for p in psutil.process_iter(["cmdline"]):
                if os.getsid(p.pid) == proc.pid and "RayTrainWorker" in " ".join(p.info["cmdline"] or []):
                    p.kill()
                    return True
            return False

        wait_for(kill_a_worker, "a Train worker to kill", proc)
        assert proc.wait(timeout=TIMEOUT) == 0
    finally:
        kill_session(proc)
    text = log.read_text()
    assert "resuming from" in text  # the restarted workers loaded the last reported checkpoint
    (run,) = trial_runs(study_dir)
    assert run.info.status == "FINISHED" and run.data.metrics["distill/steps"] == 400
    assert set(OBJECTIVES) <= set(run.data.metrics)


def test_confirm_race_killed_midway_resumes_with_one_run_per_trial_and_seed(tiny_world, tmp_path):
    """A 2-trial study with a control anchor and a confirm race of both (2 seeds, no second round), its driver
    SIGKILLed once a confirmation seed has started, then resumed: every (trial, seed) ran under one name once, one
    confirm run per confirmed trial, the sampled trial's means over fresh seeds only (its seed 0, the search's run
    that got it picked, kept apart), the control's with its search run as seed 0, P(front) and the verdicts against
    the control recorded and published."""
    anchor = {"name": "plain_kd", "params": {"distill.mitigation.mode": "none", "distill.loss.temperature": 2.0}}
    raw = tiny_space(num_samples=2, max_concurrent_trials=1, anchors=[anchor],
                     confirm={"top": 2, "seeds": 2, "max_seeds": 2})
    raw["distill"].update({"steps": 40, "checkpoint_every": 10})
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump(raw))
    study_dir = tmp_path / "study"
    proc = _start_driver(space, study_dir, tmp_path / "first.log")
    try:
        wait_for(lambda: any((study_dir / folder.RAY).glob(folder.seed_run("confirm", "*", "*"))),
                 "a confirmation seed started", proc)
    finally:
        kill_session(proc)
    assert not folder.race_result(study_dir).is_file()  # the kill landed inside the confirm stage
    run_study(parse_config(raw), study_dir, resume=True)

    meta = json.loads((study_dir / folder.META).read_text())
    client = MlflowClient(meta["tracking_uri"])
    confirms = {r.data.tags["confirm_of"]: r for r in client.search_runs([meta["experiment_id"]])
                if "confirm_of" in r.data.tags}
    trials = {r.data.tags["trial_id"]: r for r in trial_runs(study_dir)}
    control = next(t for t, r in trials.items() if r.data.tags.get("anchor") == "plain_kd")
    race = json.loads(folder.race_result(study_dir).read_text())
    assert race["control"] == control and control in confirms and len(confirms) == 2
    runs = {(t, k) for t in confirms for k in (1, 2)}
    # one Train run per (trial, seed), and its result on disk
    assert {p.name for p in (study_dir / folder.RAY).glob(folder.seed_run("confirm", "*", "*"))} == {
        folder.seed_run("confirm", t, k) for t, k in runs}
    assert {p for p in (study_dir / folder.CONFIRM).rglob("*-seed*.json")} == {
        folder.confirm_seed_result(study_dir, t, k) for t, k in runs}
    assert race["runs"] == len(runs)
    for tid, run in confirms.items():
        saved = json.loads(folder.confirm_result(study_dir, tid).read_text())
        # the control counts its search run and runs 1 and 2 beside the sampled trial, which has fresh seeds only
        counted = ["0", "1", "2"] if tid == control else ["1", "2"]
        assert sorted(saved["per_seed"]) == counted and saved["seeds"] == len(counted)
        assert saved["search_run_counted"] == (tid == control)
        for metric in OBJECTIVES:
            values = [saved["per_seed"][k][metric] for k in counted]
            assert run.data.metrics[metric] == pytest.approx(sum(values) / len(values))
            assert saved["single_run"][metric] == pytest.approx(trials[tid].data.metrics[metric])
            if tid == control:
                assert saved["per_seed"]["0"][metric] == pytest.approx(trials[tid].data.metrics[metric])
        assert 0.0 <= run.data.metrics["confirm/p_front"] <= 1.0
        if tid != control:
            assert set(saved["verdicts"]) == set(OBJECTIVES)
            assert run.data.tags["verdict/world/score"] == saved["verdicts"]["world/score"]["verdict"]
    pareto = json.loads((study_dir / folder.PARETO_JSON).read_text())
    rows = pareto["race"]["raced"]
    assert {row["trial_id"] for row in rows} == set(confirms)
    assert all(row["p_front"] == pytest.approx(confirms[row["trial_id"]].data.metrics["confirm/p_front"])
               for row in rows)
    assert {row["trial_id"] for row in pareto["race"]["front"]} == {
        t for t, r in trials.items() if r.data.tags.get("pareto_confirmed") == "true"}
    assert pareto["race"]["recommended"]["trial_id"] in confirms
    assert len(pareto["race"]["verdicts"]) == len(confirms) - 1
    assert (study_dir / folder.PARETO_FIGURE).is_file()
