"""The search: the define-by-run space and samplers Optuna uses, and studies end to end on a real local Ray cluster:
Tune + Optuna trials, each distilling on Ray Train workers (gloo DDP), tracked in MLflow's SQLite store and read back
through a real `mlflow server`."""

import functools
import json
import logging
from pathlib import Path

import optuna
import pytest
import yaml

from study.cli import main
from study.cluster.worker import TRAIN_REPORT_SOURCE, quiet_train_reports
from study.config import with_params
from study.load import parse_config
from study.record import folder
from study.record.optuna_store import optuna_storage
from study.search.callbacks import anchor_of
from study.search.driver import run_study
from study.search.space import make_sampler, make_searcher, suggest
from tests.conftest import OBJECTIVES, non_dominated, study_raw, tiny_space

pytestmark = pytest.mark.usefixtures("no_ray_left_behind")  # the studies here start Ray; none may outlive its test

# --- the space and the sampler ----------------------------------------------------------------------------------


def test_conditional_parameters_only_when_their_condition_holds():
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    space = parse_config(study_raw()).search.space
    for _ in range(60):
        trial = study.ask()
        suggest(trial, space)
        mixup = trial.params["distill.mitigation.mode"] == "mixup"
        assert ("distill.mitigation.alpha" in trial.params) == mixup
        assert ("distill.mitigation.p" in trial.params) == mixup
        assert 1.0 <= trial.params["distill.loss.temperature"] <= 8.0
        assert trial.params["student.n_layers"] in (1, 2, 3)
        study.tell(trial, [0.0, 0.0])
    modes = {t.params["distill.mitigation.mode"] for t in study.trials}
    assert modes == {"none", "cda", "mixup"}  # all three branches were exercised


def test_ray_searcher_asks_anchors_first_then_samples():
    from ray.tune.search.optuna import OptunaSearch

    cfg = parse_config(study_raw(anchors=[
        {"name": "plain_kd", "params": {"distill.mitigation.mode": "none", "distill.loss.temperature": 2.0}}]))
    searcher = OptunaSearch(space=functools.partial(suggest, space=parse_config(study_raw()).search.space),
                            metric=["bias/amplification", "world/score"], mode=["min", "max"],
                            points_to_evaluate=[a.params for a in cfg.search.anchors],
                            sampler=make_sampler(cfg.search.sampler))
    first = searcher.suggest("t0")
    assert first["distill.mitigation.mode"] == "none" and first["distill.loss.temperature"] == 2.0
    assert "distill.mitigation.alpha" not in first  # the anchor's mode makes it inactive
    assert anchor_of(first, [a.model_dump() for a in cfg.search.anchors]) == "plain_kd"
    second = searcher.suggest("t1")
    assert anchor_of(second, [a.model_dump() for a in cfg.search.anchors]) is None
    with_params(cfg, second)  # every sampled config is a valid study config


@pytest.mark.parametrize("name", ["nsga2", "tpe", "gp", "random"])
def test_every_sampler_follows_its_seed(name):
    """The same sampler seed proposes the same trials in a new study (a study is reproducible from its YAML);
    another seed proposes others."""
    def proposed(seed: int) -> list[float]:
        sampler = make_sampler(parse_config(study_raw(sampler={"name": name, "seed": seed})).search.sampler)
        study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
        xs = []
        for k in range(3):
            trial = study.ask()
            xs.append(trial.suggest_float("x", 0.0, 1.0))
            study.tell(trial, [xs[-1], float(k)])
        return xs

    assert proposed(1) == proposed(1) != proposed(2)


def test_every_searcher_pickles_and_samples_after(tmp_path):
    """Ray pickles the searcher, sampler and all, into the Tuner's state; a copy must sample on. Optuna 5.1's NSGA-II
    holds a thread lock that pickle refuses (a study would fail as its Tuner starts)."""
    from ray import cloudpickle

    from study.record.folder import resolve
    from study.record.optuna_store import optuna_storage

    for name in ("nsga2", "tpe", "gp", "random"):
        (tmp_path / name).mkdir()
        cfg = resolve(parse_config(study_raw(sampler={"name": name})), tmp_path / name)
        searcher = cloudpickle.loads(cloudpickle.dumps(make_searcher(cfg, optuna_storage(tmp_path / name))))
        for k in range(3):  # past the anchors: the sampler itself proposes
            with_params(cfg, searcher.suggest(f"t{k}"))


def test_tpe_models_the_parameters_jointly():
    """Multi-objective TPE samples from a joint (relative) model once its startup trials are done; a univariate one
    would have no relative search space."""
    sampler = make_sampler(parse_config(study_raw(sampler={"name": "tpe", "n_startup_trials": 2})).search.sampler)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    for k in range(3):
        trial = study.ask()
        trial.suggest_float("x", 0.0, 1.0)
        trial.suggest_float("y", 0.0, 1.0)
        study.tell(trial, [float(k), float(-k)])
    assert set(sampler.infer_relative_search_space(study, study.ask())) == {"x", "y"}


def test_optuna_storage_names_the_objectives(tmp_path):
    """optuna-dashboard labels its axes with the study's metric names: the study in optuna.db carries kdstudy's."""
    from study.record.folder import resolve
    from study.record.optuna_store import optuna_storage

    cfg = resolve(parse_config(study_raw()), tmp_path)
    searcher = make_searcher(cfg, optuna_storage(tmp_path))
    searcher.suggest("t0")  # Ray's searcher samples into that same study
    stored = optuna.load_study(study_name=cfg.name, storage=optuna_storage(tmp_path))
    assert stored.metric_names == OBJECTIVES
    assert stored.directions == [optuna.study.StudyDirection.MINIMIZE, optuna.study.StudyDirection.MAXIMIZE]
    assert len(stored.trials) == 1
    make_searcher(cfg, optuna_storage(tmp_path))  # a resumed study opens it again
    assert len(optuna.get_all_study_summaries(optuna_storage(tmp_path))) == 1


def test_run_with_a_bad_space_exits_2_with_one_line(tmp_path, capsys):
    raw = study_raw()
    raw["search"]["space"]["distill.loss.temperature"]["low"] = 9.0
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--study-dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdstudy: error:") and "\n" not in err and "low must be < high" in err
    assert not (tmp_path / "study").exists()  # nothing half-written


def test_run_needs_a_search_section(tmp_path, capsys):
    path = tmp_path / "plain.yaml"
    path.write_text(yaml.safe_dump({"name": "p", "distill": {"steps": 5}}))
    assert main(["run", str(path), "--study-dir", str(tmp_path / "study")]) == 2
    assert "no search section" in capsys.readouterr().err


# --- studies on a local Ray cluster -----------------------------------------------------------------------------


@pytest.mark.slow
def test_three_trial_study_with_two_ddp_workers(tiny_world, tmp_path, mlflow_server, capsys):
    study_dir = tmp_path / "study"
    cfg = parse_config(tiny_space(num_samples=3, scaling={"num_workers": 2}))
    front = run_study(cfg, study_dir)
    assert len(front.trials) == 3

    from mlflow import MlflowClient

    client = MlflowClient(mlflow_server(study_dir).url)
    experiment = client.get_experiment_by_name("tiny-study")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if r.data.tags.get("kdstudy.role") == "study"]
    children = [r for r in runs if "trial_id" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3 and len(runs) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    for run in children:
        assert run.info.status == "FINISHED"
        assert set(OBJECTIVES) <= set(run.data.metrics)
        assert "distill.mitigation.mode" in run.data.params
        assert run.data.metrics["bias/amplification"] == pytest.approx(
            run.data.metrics["bias/template/planted_slope"] - run.data.metrics["teacher/bias/template/planted_slope"])
        assert client.list_artifacts(run.info.run_id, folder.STUDENT)  # the student model, in MLflow
    points = {r.data.tags["trial_id"]: (r.data.metrics["bias/amplification"], r.data.metrics["world/score"])
              for r in children}
    tagged = {r.data.tags["trial_id"] for r in children if r.data.tags["pareto"] == "true"}
    assert tagged == non_dominated(points) and tagged
    assert sum(r.data.tags["knee"] == "true" for r in children) == 1
    parent_artifacts = {a.path for a in client.list_artifacts(parents[0].info.run_id)}
    assert {folder.PARETO_JSON, folder.PARETO_FIGURE, folder.PARALLEL_FIGURE, folder.PARETO_TXT,
            folder.CONFIG} <= parent_artifacts
    assert "teacher/world/score" in parents[0].data.metrics

    # Optuna's storage holds the same three trials with the same values
    ot = optuna.load_study(study_name="tiny-study", storage=optuna_storage(study_dir))
    complete = [t for t in ot.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(ot.trials) == 3 and len(complete) == 3
    by_params = {tuple(sorted(r.data.params.items())): points[r.data.tags["trial_id"]] for r in children}
    for t in complete:
        key = tuple(sorted((k, str(v)) for k, v in t.params.items()))
        assert t.values == pytest.approx(list(by_params[key]))

    # the front again, read back from MLflow by `kdstudy pareto`
    capsys.readouterr()
    assert main(["pareto", str(study_dir), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert {row["trial_id"] for row in again["front"]} == tagged
    assert again["hypervolume"] == pytest.approx(front.hypervolume)

    # a second run into the same folder is refused, not an overwrite
    with pytest.raises(Exception, match="already holds a study"):
        run_study(cfg, study_dir)


@pytest.mark.slow
def test_a_diverging_trial_fails_alone(tiny_world, tmp_path):
    study_dir = tmp_path / "study"
    raw = tiny_space(num_samples=2, anchors=[{"name": "blows_up", "params": {"distill.optim.lr": 1.0e6}},
                                             {"name": "sane", "params": {"distill.optim.lr": 5.0e-4}}])
    raw["search"]["space"] = {"distill.optim.lr": {"type": "categorical", "choices": [5.0e-4, 1.0e6]}}
    front = run_study(parse_config(raw), study_dir)

    from analysis.runs import read_study

    trials = {t.anchor: t for t in read_study(study_dir).trials}
    assert trials["blows_up"].status == "FAILED"
    assert "distillation diverged: loss is nan" in trials["blows_up"].tags["failure_reason"]
    assert trials["sane"].status == "FINISHED" and set(OBJECTIVES) <= set(trials["sane"].metrics)
    assert [t.anchor for t in front.trials] == ["sane"] and front.on_front.tolist() == [True]
    ot = optuna.load_study(study_name="tiny-study", storage=optuna_storage(study_dir))
    assert sorted(t.state.name for t in ot.trials) == ["COMPLETE", "FAIL"]


@pytest.mark.slow
def test_a_missing_teacher_is_one_line_not_a_ray_traceback(tmp_path, capsys):
    raw = tiny_space(num_samples=1)
    raw["teacher"] = {"source": str(tmp_path / "no-such-teacher")}
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert main(["run", str(path), "--study-dir", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("kdstudy: error:") and "no-such-teacher: no such model directory" in err
    assert "Traceback" not in err
    assert not (tmp_path / "study").exists()  # nothing half-written


def test_train_report_lines_are_quieted():
    """Ray Train's report logger is named by its source file's path: the installed Ray has that file, and its logger
    (as a worker has it, at INFO) is quieted to warnings; another library's logger is left alone."""
    import ray

    source = Path(ray.__file__).parent.parent / TRAIN_REPORT_SOURCE
    assert source.is_file()  # Ray still reports from where kdstudy looks
    reports, other = logging.getLogger(str(source)), logging.getLogger("tests.some_library")
    for logger in (reports, other):
        logger.setLevel(logging.INFO)
    quiet_train_reports()
    assert not reports.isEnabledFor(logging.INFO) and reports.isEnabledFor(logging.WARNING)
    assert other.isEnabledFor(logging.INFO)
