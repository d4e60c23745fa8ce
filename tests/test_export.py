"""`kdstudy export` and the Model Registry on a study folder made in place (a real MLflow SQLite store, one trial run
whose checkpoint holds a tiny-world student): the model dir loads with plain transformers, its card parses with
huggingface_hub and holds the numbers with their intervals, the student loads back from the registry by alias,
and --push-to-hub reaches the upload call (a fake HfApi: no network here)."""

import json
import subprocess
import sys

import pytest
from huggingface_hub import ModelCard

from study.distill.models import load_masked_lm, make_student, save_student
from study.load import parse_config
from study.record import folder, tracking
from study.student import registry
from study.student.export import export
from tests.conftest import tiny_space

PRIMARY = "bias/template/planted_slope"
METRICS = {PRIMARY: 0.9, f"{PRIMARY}_se": 0.05, "bias/amplification": 0.1, "bias/amplification_se": 0.05,
           "world/score": 60.0, "world/score_se": 1.0, "world/world_cola": 55.0,
           f"teacher/{PRIMARY}": 0.8, f"teacher/{PRIMARY}_se": 0.04, "teacher/world/score": 65.0}


@pytest.fixture
def study(tmp_path, tiny_world, monkeypatch):
    """A study folder with one finished trial `t1` (temperature 2.5) whose final checkpoint holds a student."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = folder.resolve(parse_config(tiny_space(num_samples=1)), tmp_path / "study")
    with folder.hold(tmp_path / "study"):
        meta = folder.create(cfg, {PRIMARY: 0.8, "world/score": 65.0})
    teacher, tokenizer = load_masked_lm(tiny_world.teacher_dir)
    checkpoint = tmp_path / folder.RAY / folder.train_run("t1") / "checkpoint_000001"
    save_student(make_student(teacher, 1), tokenizer, checkpoint / folder.STUDENT)
    client = tracking.connect(meta["tracking_uri"])
    params = {"distill.mitigation.mode": "none", "distill.loss.temperature": 2.5}
    run_id, _ = tracking.start_trial(client, meta["experiment_id"], meta["parent_run_id"], "t1", params, None, "1")
    tracking.log_metrics(client, run_id, METRICS, tags={tracking.STUDENT_URI: str(checkpoint)})
    tracking.end_run(client, run_id, "FINISHED")
    return tmp_path / "study", meta


# Run in a fresh interpreter that never imports kdstudy: what a user of the exported dir has
PLAIN = """
import json, sys
from transformers import AutoModelForMaskedLM, AutoTokenizer, pipeline
d = sys.argv[1]
model, tokenizer = AutoModelForMaskedLM.from_pretrained(d), AutoTokenizer.from_pretrained(d)
fill = pipeline("fill-mask", model=model, tokenizer=tokenizer)
out = fill("[MASK] works as a nurse .")
print(json.dumps({"kdstudy": any(m.startswith(("study", "analysis")) for m in sys.modules), "n": len(out),
                  "type": model.config.model_type}))
"""


def test_export_loads_with_plain_transformers_and_its_card_holds_the_intervals(study, tmp_path, monkeypatch):
    study_dir, meta = study
    out = export(study_dir, "recommended", tmp_path / "out")  # no confirm stage: the knee
    assert (out / "model.safetensors").is_file() and (out / "README.md").is_file()
    done = subprocess.run([sys.executable, "-c", PLAIN, str(out)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"kdstudy": False, "n": 5, "type": "distilbert"}

    card = ModelCard.load(out / "README.md")
    results = {r.metric_type: r for r in card.data.eval_results}
    slope = results[PRIMARY]
    assert slope.metric_value == pytest.approx(0.9)
    assert slope.metric_args["ci_low"] == pytest.approx(0.9 - 1.959964 * 0.05, abs=1e-6)
    assert slope.metric_args["ci_high"] == pytest.approx(0.9 + 1.959964 * 0.05, abs=1e-6)
    assert results[f"teacher/{PRIMARY}"].metric_value == pytest.approx(0.8)
    assert results["bias/amplification"].metric_value == pytest.approx(0.1)
    assert results["world/world_cola"].metric_args is None  # reported without an error: no interval invented
    assert card.data.kdstudy["trial"] == "t1" and card.data.kdstudy["git_commit"]
    assert card.data.base_model is None and card.data.pipeline_tag == "fill-mask"
    assert "temperature T = 2.5" in card.text and "What it does not measure" in card.text

    # the registry: the study's model, this trial's version, the recommended alias; MLflow's own loader
    import mlflow.transformers

    client = tracking.connect(meta["tracking_uri"])
    version = client.get_model_version_by_alias("tiny-study", registry.RECOMMENDED)
    assert version.tags[registry.TRIAL] == "t1" and version.tags[registry.PICK] == "recommended"
    assert version.tags[registry.SEEDS] == "1 run (the trial's own)"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", meta["tracking_uri"])
    fill = mlflow.transformers.load_model("models:/tiny-study@recommended")
    assert len(fill("[MASK] works as a nurse .")) == 5
    assert export(study_dir, "trial:t1", tmp_path / "again") and \
        len(client.search_model_versions("name = 'tiny-study'")) == 1  # same weights: the same version


def test_export_prefers_the_reruns_seed_0_and_pushes_with_the_hub_client(study, tmp_path, tiny_world):
    study_dir, _ = study
    teacher, tokenizer = load_masked_lm(tiny_world.teacher_dir)
    seed0 = tmp_path / folder.RAY / folder.seed_run("rerun", "t1", 0) / "checkpoint_000001"
    save_student(make_student(teacher, 2), tokenizer, seed0 / folder.STUDENT)  # two layers: tells the two apart
    summary = {PRIMARY: {"mean": 0.85, "std": 0.02, "ci_low": 0.80, "ci_high": 0.90},
               "world/score": {"mean": 61.0, "std": 1.0, "ci_low": 58.5, "ci_high": 63.5}}
    folder.rerun_result(study_dir, "t1", full=False).parent.mkdir()
    folder.rerun_result(study_dir, "t1", full=False).write_text(json.dumps({
        "rerun_of": "t1", "full": False, "summary": summary,
        "per_seed": {"0": {tracking.STUDENT_URI: str(seed0)}, "1": {}, "2": {}}}))

    class FakeHub:  # huggingface_hub.HfApi's two calls, recorded
        calls = []

        def create_repo(self, repo_id, **kw):
            self.calls.append(("create_repo", repo_id, kw))

        def upload_folder(self, *, repo_id, folder_path, **kw):
            self.calls.append(("upload_folder", repo_id, sorted(p.name for p in __import__("pathlib").Path(
                folder_path).iterdir())))

    out = export(study_dir, "trial:t1", tmp_path / "out", push_to_hub="someone/tiny-student", api=FakeHub(),
                 register=False)
    assert json.loads((out / "config.json").read_text())["n_layers"] == 2
    card = ModelCard.load(out / "README.md")
    slope = next(r for r in card.data.eval_results if r.metric_type == PRIMARY)
    assert (slope.metric_value, slope.metric_args["ci_low"], slope.metric_args["ci_high"]) == (0.85, 0.80, 0.90)
    assert slope.metric_args["interval"] == "95% Student-t over 3 seeds"
    assert "seed 0 of the rerun of trial t1" in card.text
    assert FakeHub.calls[0] == ("create_repo", "someone/tiny-student", {"repo_type": "model", "exist_ok": True})
    name, repo, files = FakeHub.calls[1]
    assert (name, repo) == ("upload_folder", "someone/tiny-student")
    assert {"README.md", "model.safetensors", "config.json", "tokenizer_config.json"} <= set(files)
