"""End to end through the `kdstudy` command, and one-line errors for bad input."""

import json

import pytest
import yaml
from transformers import AutoModelForMaskedLM

from study.cli import main


def test_distill_end_to_end(tiny_world, study_yaml, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["distill", str(study_yaml()), "--out", str(out), "--set", "distill.steps=4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    primary = metrics["bias/primary"]
    assert metrics["bias/amplification"] == pytest.approx(metrics[primary] - metrics[f"teacher/{primary}"])
    for key in ("bias/template/abs_mean", "bias/template/planted_spearman",
                "teacher/bias/template/planted_spearman", "perf/tokens_per_s", "distill/loss_kl"):
        assert isinstance(metrics[key], float), key
    assert metrics["distill/steps"] == 4
    student = AutoModelForMaskedLM.from_pretrained(out / "student")
    assert student.config.model_type == "distilbert" and student.config.n_layers == 1
    assert yaml.safe_load((out / "config.yaml").read_text())["distill"]["steps"] == 4
    assert "amplification" in capsys.readouterr().out

    # `kdstudy bias` measures the student just written
    assert main(["bias", str(out / "student"), "--out", str(tmp_path / "b.json")]) == 0
    again = json.loads((tmp_path / "b.json").read_text())
    assert again["bias/template/spread"] >= 0


def _one_line_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("kdstudy: error:") and "\n" not in err and "Traceback" not in err
    return err


def test_unknown_key(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("distill:\n  steps: 3\n  temprature: 2\n")
    assert "distill.temprature: unknown key" in _one_line_error(capsys, ["distill", str(path)])


def test_bad_value_names_field_and_value(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("distill:\n  steps: 3\n  loss:\n    temperature: -1\n")
    err = _one_line_error(capsys, ["distill", str(path)])
    assert "distill.loss.temperature" in err and "-1" in err


def test_bad_override(study_yaml, capsys):
    err = _one_line_error(capsys, ["distill", str(study_yaml()), "--set", "distill.mitigation.mode=magic"])
    assert "distill.mitigation.mode" in err and "magic" in err


def test_missing_config(tmp_path, capsys):
    assert "no such config file" in _one_line_error(capsys, ["distill", str(tmp_path / "nope.yaml")])


def test_malformed_yaml(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("distill: [1, 2\n")
    assert "not valid YAML" in _one_line_error(capsys, ["distill", str(path)])


def test_missing_model_dir(tmp_path, capsys):
    assert "no such model directory" in _one_line_error(capsys, ["bias", str(tmp_path / "nope")])


def test_missing_teacher_in_config(tmp_path, capsys, study_yaml):
    err = _one_line_error(capsys, ["distill", str(study_yaml()), "--set", f"teacher.source={tmp_path}/none",
                                   "--out", str(tmp_path / "o")])
    assert "no such model directory" in err


def test_world_build_prints_what_it_holds(tiny_world, capsys):
    from tests.conftest import TINY_WORLD

    sets = [x for k, v in TINY_WORLD.items() for x in ("--set", f"world.{k}={v}")]
    assert main(["world", "build", *sets, "--out", str(tiny_world.root)]) == 0
    err = capsys.readouterr().err
    assert str(tiny_world.teacher_dir) in err and "2000 sentences" in err and "planted Spearman" in err


def test_eval_world_and_bias_suite(tiny_world, released_data, tmp_path, capsys):
    out = tmp_path / "eval.json"
    data = str(released_data)
    sets = [x for k, v in __import__("tests.conftest", fromlist=["x"]).TINY_WORLD.items()
            for x in ("--set", f"world.{k}={v}")]
    sets += ["--set", "eval.world.max_steps=3", "--set", "bias.seat_samples=200"]
    assert main(["eval", str(tiny_world.teacher_dir), "--world", "--bias", "template,crows,seat",
                 "--data-dir", data, "--out", str(out), *sets]) == 0
    metrics = json.loads(out.read_text())
    for key in ("world/score", "world/world_cola", "world/world_sts/pearson", "bias/crows/score",
                "bias/seat/sent-weat6/effect_size", "bias/seat/abs_mean", "bias/template/abs_mean"):
        assert isinstance(metrics[key], float), key
    assert metrics["bias/crows/n_stereo"] == 159 and metrics["bias/crows/n_antistereo"] == 103


def test_eval_needs_something(capsys):
    assert "nothing to evaluate" in _one_line_error(capsys, ["eval", "some-model"])


def test_eval_without_the_data_names_the_fetch_command(tiny_world, tmp_path, capsys):
    # bias.data_dir unset: data/ in the cache root (a fresh one in the tests), where nothing was fetched
    err = _one_line_error(capsys, ["eval", str(tiny_world.teacher_dir), "--bias", "crows,seat"])
    assert "`kdstudy data fetch crows seat`" in err
    err = _one_line_error(capsys, ["eval", str(tiny_world.teacher_dir), "--bias", "seat", "--data-dir", str(tmp_path)])
    assert f"`kdstudy data fetch seat --to {tmp_path}`" in err


def test_teacher_is_measured_once(tiny_world, study_yaml, monkeypatch):
    from study.experiment import evaluation
    from study.load import load_config
    from study.metrics import bias

    cfg = load_config(study_yaml())
    first, _ = evaluation.teacher_metrics(cfg)

    def must_not_run(*a, **k):
        raise AssertionError("teacher measured twice")

    monkeypatch.setattr(bias, "measure", must_not_run)
    again, _ = evaluation.teacher_metrics(cfg)
    assert again == first
    other = cfg.model_copy(update={"bias": cfg.bias.model_copy(update={"seed": 7})})
    with pytest.raises(AssertionError, match="measured twice"):  # another bias config is measured anew
        evaluation.teacher_metrics(other)


def test_the_command_starts_without_heavy_libraries():
    """`kdstudy --help` and a usage error answer at once: importing the CLI loads none of the heavy libraries (and
    not the config's pydantic models either); the commands import what they use."""
    import subprocess
    import sys

    heavy = ["torch", "transformers", "ray", "mlflow", "optuna", "datasets", "pydantic"]
    code = ("import sys, study.cli; study.cli.build_parser(); "
            f"print(','.join(m for m in {heavy!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
    usage = subprocess.run([sys.executable, "-m", "study.cli", "run"], capture_output=True, text=True)
    assert usage.returncode == 2 and "the following arguments are required: config" in usage.stderr


def test_every_command_prints_its_help(capsys):
    """argparse formats help strings with %: a bare "95%" in one made `kdstudy --help` a traceback."""
    import argparse

    from study.cli import build_parser

    def commands(parser, prefix):
        yield prefix
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    yield from commands(sub, [*prefix, name])

    every = list(commands(build_parser(), []))
    assert ["data", "fetch"] in every
    for argv in every:
        with pytest.raises(SystemExit) as exit_:
            main([*argv, "--help"])
        assert exit_.value.code == 0, argv
    assert "effects" in capsys.readouterr().out
