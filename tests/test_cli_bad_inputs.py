"""A catalogue of bad inputs, tried as a new user would: each is one line naming what is wrong and where, exit 2,
no traceback, and no half-written study folder left behind.

Each case builds its input under a fresh folder and returns the `kdstudy` arguments and a fragment the error line
must hold. Configs go through `kdstudy run` (which validates them before anything starts), models through `kdstudy
bias`, benchmark data through `kdstudy eval`, study folders through `run --resume` and `pareto`. None starts Ray."""

import copy
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from study.cli import main
from study.load import parse_config
from study.record import folder
from study.record.optuna_store import optuna_storage
from tests.conftest import free_port, tiny_space

CROWS_HEADER = ",sent_more,sent_less,stereo_antistereo,bias_type\n"
CROWS_ROW = '0,"He is a nurse.","She is a nurse.",antistereo,gender\n'


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def space(d: Path, edit=None, name="space.yaml") -> Path:
    """The tiny study's YAML, edited: `edit(raw)` changes it in place."""
    raw = copy.deepcopy(tiny_space(num_samples=1))  # its world is the shared TINY_WORLD
    if edit:
        edit(raw)
    return write(d / name, yaml.safe_dump(raw))


def run(d: Path, edit=None, *extra: str) -> list[str]:
    return ["run", str(space(d, edit)), "--study-dir", str(d / "study"), *extra]


def setter(path: str, value):
    """An edit setting a dotted path of the raw YAML."""
    def edit(raw):
        *parents, last = path.split(".")
        node = raw
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return edit


def param(name: str, spec: dict):
    return lambda raw: raw["search"]["space"].__setitem__(name, spec)


def grid(**change):
    """An edit making the tiny study a grid (temperature at two values), then applying `change` to its search."""
    def edit(raw):
        search = raw["search"]
        search.pop("num_samples")
        search["sampler"] = {"name": "grid"}
        search["space"]["distill.loss.temperature"] = {"type": "float", "values": [1.0, 2.0]}
        search.update(change)
    return edit


def crows(d: Path, text: str | bytes) -> list[str]:
    write(d / "data" / "crows_pairs" / "crows_pairs_anonymized.csv", text)
    return ["eval", "{teacher}", "--bias", "crows", "--data-dir", str(d / "data")]


def seat(d: Path, text: str | bytes) -> list[str]:
    for test in ("6", "6b", "7", "7b", "8", "8b"):  # every file there (a missing one is its own case), all broken
        write(d / "data" / "seat" / f"sent-weat{test}.jsonl", text)
    return ["eval", "{teacher}", "--bias", "seat", "--data-dir", str(d / "data")]


def model_dir(d: Path, files: dict) -> list[str]:
    for name, text in files.items():
        write(d / "model" / name, text)
    return ["bias", str(d / "model")]


def a_study(d: Path, drop: tuple = ()) -> Path:
    """A study folder as a driver leaves it once Tune has its state (meta, config, teacher, MLflow, Optuna, ray/),
    made in place (its Ray storage path is absolute), with some of its files gone."""
    cfg = folder.resolve(parse_config(tiny_space(num_samples=1)), d / "study")
    with folder.hold(d / "study"):
        folder.create(cfg, {"bias/template/planted_slope": 1.0, "world/score": 50.0})
        optuna_storage(d / "study")  # the Optuna database, as the searcher makes it
        write(Path(folder.tune_state(cfg)) / "tuner.pkl", b"")  # what Tuner.can_restore looks for
    for name in drop:
        path = d / "study" / name
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return d / "study"


def corpus(d: Path, name: str, text: str | bytes, **extra) -> list[str]:
    path = write(d / "corpus" / name, text)
    sets = [x for k, v in {"corpus.source": str(path), **extra}.items() for x in ("--set", f"{k}={v}")]
    return ["distill", str(space(d, lambda raw: raw.pop("search"))), *sets, "--out", str(d / "out")]


# (id, build(d) -> argv, fragment the one line must hold)
CASES = [
    # --- configs: types, ranges, unknown keys --------------------------------------------------------------------
    ("unknown-top-key", lambda d: run(d, setter("sudent", {})), "sudent: unknown key"),
    ("unknown-nested-key", lambda d: run(d, setter("distill.temprature", 2)), "distill.temprature: unknown key"),
    ("type-steps-text", lambda d: run(d, setter("distill.steps", "ten")), "distill.steps"),
    ("type-section-not-mapping", lambda d: run(d, setter("bias", [1, 2])), "bias"),
    ("range-temperature", lambda d: run(d, setter("distill.loss.temperature", -1)), "distill.loss.temperature"),
    ("range-mask-prob", lambda d: run(d, setter("distill.masking.prob", 1.5)), "distill.masking.prob"),
    ("range-batch-size", lambda d: run(d, setter("distill.batch_size", 0)), "distill.batch_size"),
    ("steps-and-epochs", lambda d: run(d, setter("distill.epochs", 1)), "exactly one of steps and epochs"),
    ("objective-target-max", lambda d: run(d, setter("search.objectives", [
        {"metric": "bias/amplification", "mode": "max", "target": 0.0}])), "mode must be min"),
    ("objective-margin-negative", lambda d: run(d, setter("search.objectives", [
        {"metric": "world/score", "mode": "max", "margin": -1}])), "search.objectives.0.margin"),
    ("control-not-an-anchor", lambda d: run(d, setter("search.control", "plain")), "control must name an anchor"),
    ("confirm-budget-too-small", lambda d: run(d, setter("search.confirm", {"top": 3, "seeds": 2, "budget": 1})),
     "must hold the first round"),
    ("concurrency-word", lambda d: run(d, setter("search.max_concurrent_trials", "many")),
     "search.max_concurrent_trials"),
    ("world-heads", lambda d: run(d, setter("world.heads", 3)), "divisible by heads"),
    ("bias-primary", lambda d: run(d, setter("bias.primary", "bias/nope")), "bias.primary"),
    ("loss-weights-zero", lambda d: run(d, setter("distill.loss", {"alpha_ce": 0, "alpha_mlm": 0, "alpha_cos": 0})),
     "nothing to train on"),
    ("malformed-yaml", lambda d: ["run", str(write(d / "s.yaml", "distill: [1, 2\n")), "--study-dir",
                                     str(d / "study")], "not valid YAML"),
    ("yaml-not-mapping", lambda d: ["run", str(write(d / "s.yaml", "- 1\n- 2\n")), "--study-dir",
                                       str(d / "study")], "s.yaml"),
    ("missing-config", lambda d: ["run", str(d / "nope.yaml")], "no such config file"),
    ("no-search-section", lambda d: run(d, lambda raw: raw.pop("search")), "no search section"),
    # --- search spaces and objectives ------------------------------------------------------------------------------
    ("space-low-above-high", lambda d: run(d, param("distill.loss.temperature", {
        "type": "float", "low": 9.0, "high": 4.0})), "low must be < high"),
    ("space-unknown-path", lambda d: run(d, param("distill.nope", {"type": "float", "low": 1, "high": 2})),
     "distill.nope"),
    ("space-unknown-type", lambda d: run(d, param("distill.loss.temperature",
                                                     {"type": "uniform", "low": 1, "high": 2})),
     "distill.loss.temperature"),
    ("space-empty-choices", lambda d: run(d, param("distill.mitigation.mode", {"type": "categorical",
                                                                                  "choices": []})),
     "distill.mitigation.mode"),
    ("space-bad-choice", lambda d: run(d, param("distill.mitigation.mode", {"type": "categorical",
                                                                               "choices": ["none", "magic"]})),
     "magic"),
    ("space-out-of-range", lambda d: run(d, param("distill.loss.temperature",
                                                     {"type": "float", "low": -2.0, "high": 2.0})),
     "distill.loss.temperature"),
    ("space-when-unknown", lambda d: run(d, param("distill.mitigation.alpha", {
        "type": "float", "low": 0.1, "high": 1.0, "when": {"distill.nope": "x"}})), "distill.nope"),
    ("anchor-out-of-range", lambda d: run(d, setter("search.anchors", [
        {"name": "hot", "params": {"distill.loss.temperature": -5.0}}])), "-5.0"),
    ("objective-no-trial-reports", lambda d: run(d, setter("search.objectives", [
        {"metric": "glue/score", "mode": "max"}, {"metric": "world/score", "mode": "max"}])), "glue/score"),
    ("objective-bad-mode", lambda d: run(d, setter("search.objectives", [
        {"metric": "world/score", "mode": "maximize"}])), "search.objectives"),
    ("objective-unknown-metric", lambda d: run(d, setter("search.objectives", [
        {"metric": "bias/nope", "mode": "min"}])), "bias/nope"),
    ("sampler-unknown", lambda d: run(d, setter("search.sampler", {"name": "cmaes"})), "search.sampler"),
    ("num-samples-zero", lambda d: run(d, setter("search.num_samples", 0)), "search.num_samples"),
    ("workers-zero", lambda d: run(d, setter("search.scaling", {"num_workers": 0})), "search.scaling.num_workers"),
    ("trial-resource-negative", lambda d: run(d, setter("search.scaling", {"trial_resources": {"kdstudy_trial": -1}})),
     "search.scaling.trial_resources.kdstudy_trial: Input should be greater than or equal to 0, got -1"),
    ("grid-range-without-values", lambda d: run(d, grid(space={"distill.loss.temperature": {
        "type": "float", "low": 1.0, "high": 4.0}})), "needs the levels of a float parameter as a values list"),
    ("grid-values-outside-range", lambda d: run(d, grid(space={"distill.loss.temperature": {
        "type": "float", "low": 1.0, "high": 4.0, "values": [2.0, 8.0]}})), "values [8.0] lie outside"),
    ("grid-values-invalid", lambda d: run(d, grid(space={"distill.loss.temperature": {
        "type": "float", "values": [2.0, -1.0]}})), "-1.0 is not a valid value"),
    ("grid-num-samples-disagrees", lambda d: run(d, grid(num_samples=5)), "runs its 6 cells x repeats, got 5"),
    ("grid-with-anchors", lambda d: run(d, grid(anchors=[{"name": "kd", "params": {
        "distill.mitigation.mode": "none"}}])), "search.anchors: a grid runs its cells only"),
    ("grid-generator-after", lambda d: run(d, grid(space={
        "distill.loss.kl_positions": {"type": "categorical", "choices": ["all", "masked"],
                                      "generated_by": ["distill.loss.temperature"]},
        "distill.loss.temperature": {"type": "float", "values": [1.0, 2.0]}})), "must be a parameter listed before"),
    ("grid-sets-missing-choice", lambda d: run(d, grid(space={"weights": {
        "type": "categorical", "choices": ["soft", "hard"], "sets": {"soft": {"distill.loss.alpha_mlm": 0}}}})),
     "sets must give every choice"),
    ("grid-sets-bad-value", lambda d: run(d, grid(space={"weights": {
        "type": "categorical", "choices": ["soft"], "sets": {"soft": {"distill.loss.alpha_mlm": -1}}}})),
     "search.space.weights: 'soft' is not a valid value"),
    ("repeats-without-grid", lambda d: run(d, setter("search.repeats", 3)), "paired replicates need sampler grid"),
    ("interaction-unknown-factor", lambda d: run(d, setter("search.interactions", [
        ["distill.loss.temperature", "student.n_layers"]])), "student.n_layers is not a parameter"),
    # --- command-line arguments -------------------------------------------------------------------------------------
    ("set-without-equals", lambda d: run(d, None, "--set", "distill.steps"), "expected key.path=value"),
    ("set-bad-value", lambda d: run(d, None, "--set", "distill.mitigation.mode=magic"), "magic"),
    ("set-unknown-key", lambda d: run(d, None, "--set", "distill.nope=1"), "distill.nope"),
    ("set-under-a-value", lambda d: run(d, None, "--set", "distill.steps.every=1"), "steps is not a section"),
    ("set-empty-key", lambda d: run(d, None, "--set", "=5"), "expected key.path=value"),
    ("eval-nothing", lambda d: ["eval", "{teacher}"], "nothing to evaluate"),
    ("eval-glue-unknown-task", lambda d: ["eval", "{teacher}", "--glue", "nope"], "--glue"),
    ("eval-bias-unknown-metric", lambda d: ["eval", "{teacher}", "--bias", "nope"], "--bias"),
    ("eval-crows-without-data", lambda d: ["eval", "{teacher}", "--bias", "crows"], "kdstudy data fetch crows"),
    ("run-address-nothing-there", lambda d: run(d, None, "--address", f"127.0.0.1:{free_port()}"),
     "nothing answers at"),  # (ray.init would try it for minutes)
    ("run-address-not-an-address", lambda d: run(d, None, "--address", "nonsense"),
     "--address nonsense: no Ray cluster to join"),
    # --- benchmark data and corpus files ----------------------------------------------------------------------------
    ("crows-missing", lambda d: ["eval", "{teacher}", "--bias", "crows", "--data-dir", str(d)],
     "kdstudy data fetch crows --to"),
    ("crows-empty", lambda d: crows(d, ""), "missing columns"),
    ("crows-wrong-columns", lambda d: crows(d, "a,b,c\n1,2,3\n"), "missing columns"),
    ("crows-truncated", lambda d: crows(d, CROWS_HEADER + CROWS_ROW + '1,"He is a'), "truncated"),
    ("crows-not-utf8", lambda d: crows(d, (CROWS_HEADER + CROWS_ROW).encode() + "é\n".encode("latin-1")),
     "not UTF-8"),
    ("seat-not-json", lambda d: seat(d, "{not json"), "not a SEAT test"),
    ("seat-not-utf8", lambda d: seat(d, b'{"targ1": "\xe9"}'), "not a SEAT test"),
    ("seat-missing-parts", lambda d: seat(d, '{"targ1": {"examples": ["a"]}}'), "not a SEAT test"),
    ("stereoset-malformed", lambda d: ["eval", "{teacher}", "--bias", "stereoset", "--data-dir",
                                          str(write(d / "data" / "stereoset" / "dev.json", '{"data": 1}').parents[1])],
     "not a StereoSet release file"),
    ("corpus-empty", lambda d: corpus(d, "c.txt", "\n\n"), "no text"),
    ("corpus-wrong-column", lambda d: corpus(d, "c.csv", "sentence\nhello there\n"), "no column 'text'"),
    ("corpus-not-utf8", lambda d: corpus(d, "c.txt", b"caf\xe9 au lait\n"), "cannot load"),
    # --- model dirs -------------------------------------------------------------------------------------------------
    ("model-missing", lambda d: ["bias", str(d / "no-model")], "no such model directory"),
    ("model-empty-dir", lambda d: ["bias", str(Path(d, "model").mkdir() or d / "model")], "cannot load a model"),
    ("model-config-not-json", lambda d: model_dir(d, {"config.json": "{nope"}), "cannot load a model config"),
    ("model-wrong-architecture", lambda d: model_dir(d, {"config.json": json.dumps({"model_type": "gpt2"})}),
     "has no masked-LM head"),
    ("model-no-weights", lambda d: model_dir(d, {"config.json": json.dumps({"model_type": "bert"}),
                                                    "vocab.txt": "[PAD]\n[UNK]\n"}), "cannot load the model's weights"),
    ("model-no-mlm-head", lambda d: ["bias", "{headless}"], "no MLM head"),
    ("eval-world-no-such-model", lambda d: ["eval", "/nonexistent", "--world"],
     "/nonexistent: no such model directory"),
    ("eval-world-dir-without-model", lambda d: ["eval", str(Path(d, "model").mkdir() or d / "model"), "--world"],
     "cannot load a model config"),
    ("eval-world-no-tokenizer", lambda d: ["eval", "{tokenizerless}", "--world"], "no tokenizer files"),
    ("eval-glue-no-weights", lambda d: ["eval", model_dir(d, {"config.json": json.dumps({"model_type": "bert"}),
                                                              "vocab.txt": "[PAD]\n[UNK]\n"})[1], "--glue", "rte"],
     "cannot load the model's weights"),
    ("model-no-tokenizer", lambda d: ["bias", "{tokenizerless}"], "no tokenizer files"),
    ("teacher-not-bert", lambda d: ["distill", str(space(d, lambda raw: raw.pop("search"))), "--set",
                                       "teacher.source={student}", "--out", str(d / "out")], "needs a BERT teacher"),
    # --- study folders ----------------------------------------------------------------------------------------------
    ("study-dir-holds-other-files", lambda d: run(write(d / "study" / "notes.txt", "mine").parents[1]),
     "holds files but no study"),
    ("study-dir-read-only", lambda d: ["run", str(space(d)), "--study-dir", "/sys/kdstudy-study"],
     "cannot write the study folder"),
    ("study-dir-through-a-file", lambda d: ["run", str(space(d)), "--study-dir",
                                               str(write(d / "afile", "x") / "study")],
     "cannot write the study folder"),
    ("study-exists-no-resume", lambda d: run(a_study(d).parent), "already holds a study"),
    ("resume-no-study", lambda d: run(d, None, "--resume"), "no study to resume"),
    ("resume-someone-elses-study", lambda d: run(a_study(d).parent, setter("distill.steps", 7), "--resume"),
     "config differs"),
    ("resume-half-deleted-config", lambda d: run(a_study(d, drop=(folder.CONFIG,)).parent, None,
                                                    "--resume"), f"{folder.CONFIG} missing"),
    ("resume-half-deleted-tune-state", lambda d: run(a_study(d, drop=(folder.RAY,)).parent, None,
                                                        "--resume"), "holds no Tune state"),
    ("resume-half-deleted-optuna", lambda d: run(a_study(d, drop=(folder.OPTUNA,)).parent, None,
                                                    "--resume"), f"{folder.OPTUNA} missing"),
    ("start-killed-half-written", lambda d: run(a_study(d, drop=(folder.META,)).parent),
     f"part of a study but no {folder.META}"),
    ("pareto-not-a-study", lambda d: ["pareto", str(d)], "not a study folder"),
    ("effects-not-a-study", lambda d: ["effects", str(d)], "not a study folder"),
    ("effects-nothing-finished", lambda d: ["effects", str(a_study(d))], "no finished trial to read effects from"),
    ("rerun-not-a-study", lambda d: ["rerun", str(d)], "not a study folder"),
    ("rerun-nothing-finished", lambda d: ["rerun", str(a_study(d))], "has no finished trial yet"),
    ("export-not-a-study", lambda d: ["export", str(d)], "not a study folder"),
    ("export-nothing-finished", lambda d: ["export", str(a_study(d))], "has no finished trial yet"),
    ("world-config-missing", lambda d: ["world", "build", str(d / "nope.yaml")], "no such config file"),
    ("world-out-a-file", lambda d: ["world", "build", "--out", str(write(d / "a-file", "x"))],
     "neither a world's folder nor a new or empty one"),
    ("world-out-a-full-folder", lambda d: ["world", "build", "--out", str(write(d / "notes" / "a.txt", "x").parent)],
     "neither a world's folder nor a new or empty one"),
    ("data-fetch-to-a-file", lambda d: ["data", "fetch", "crows", "--to", str(write(d / "a-file", "x"))],
     "not a folder"),
    ("pull-no-record", lambda d: ["pull", str(d / "bucket"), str(d / "here")], "no study record there"),
    ("pull-into-a-study", lambda d: ["pull", str(write(d / "bucket" / folder.RECORD / folder.META, "{}").parents[1]),
                                     str(a_study(d))], "not empty"),
    ("pull-unknown-scheme", lambda d: ["pull", "foo://bucket/study", str(d / "here")],
     "foo://bucket/study: cannot read a study record there"),
    ("run-from-without-resume", lambda d: run(d, None, "--from", str(d / "bucket")), "add --resume"),
    ("resume-from-no-record", lambda d: run(d, None, "--resume", "--from", str(d / "bucket")),
     "no study record there"),
    ("pareto-meta-corrupt", lambda d: ["pareto", str(write(a_study(d) / folder.META, "{").parent)],
     folder.META),
]


@pytest.fixture(scope="module", autouse=True)
def one_tracking_store(tmp_path_factory):
    """The study folders made here share one MLflow store: its tables are made once, not in every case."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/shared.db"
    MlflowClient(uri).search_experiments()
    old = os.environ.get("MLFLOW_TRACKING_URI")
    os.environ["MLFLOW_TRACKING_URI"] = uri
    yield
    if old is None:
        os.environ.pop("MLFLOW_TRACKING_URI")
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_world) -> dict:
    """Model dirs made from the tiny world's teacher: one without its MLM head, one without a tokenizer, a student."""
    from transformers import BertModel

    from study.distill.models import load_masked_lm, make_student

    d = tmp_path_factory.mktemp("models")
    teacher, tokenizer = load_masked_lm(tiny_world.teacher_dir)
    BertModel(teacher.config).save_pretrained(d / "headless")
    tokenizer.save_pretrained(d / "headless")
    teacher.save_pretrained(d / "tokenizerless")
    make_student(teacher, 1).save_pretrained(d / "student")
    tokenizer.save_pretrained(d / "student")
    return {"teacher": str(tiny_world.teacher_dir), **{k: str(d / k) for k in ("headless", "tokenizerless", "student")}}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_a_bad_input_is_one_line_exit_2_nothing_half_written(case, tmp_path, models, capsys,
                                                             tiny_world):
    _, build, fragment = case
    argv = [a.format(**models) for a in build(tmp_path)]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err[-2000:]
    assert "Traceback" not in err and lines[-1].startswith("kdstudy: error:"), err[-2000:]
    assert sum(line.startswith("kdstudy: error:") for line in lines) == 1
    assert fragment in lines[-1], lines[-1]
    if argv[0] == "run":  # no half-written study folder: a study folder is as it was, or not there at all
        assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_every_command_has_bad_inputs_in_the_catalogue(tmp_path):
    """A command added to the CLI without a case here fails this test: its bad inputs would go unchecked."""
    from study.cli import build_parser

    commands = {name for action in build_parser()._subparsers._group_actions for name in action.choices}
    covered = set()
    for name, build, _ in CASES:
        (tmp_path / name).mkdir()
        covered.add(build(tmp_path / name)[0])
    assert commands <= covered, f"no bad-input case for {sorted(commands - covered)}"


def test_a_bucket_out_of_reach_is_one_line(tmp_path, monkeypatch, capsys):
    """`kdstudy pull s3://...` with no way to S3 (here: an endpoint where nothing listens, as a machine offline has)."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "none")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "none")
    assert main(["pull", "s3://no-such-bucket/p", str(tmp_path / "here")]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and len(lines) == 1, err[-2000:]
    assert lines[0].startswith("kdstudy: error: s3://no-such-bucket/p: cannot read a study record there (OSError: ")
    assert not (tmp_path / "here").exists()


@pytest.mark.parametrize("argv, fragment", [
    (["rerun", "STUDY", "--seeds", "0"], "argument --seeds: '0' is not a number of seeds (1 or more)"),
    (["rerun", "STUDY", "--seeds", "-3"], "argument --seeds: '-3' is not a number of seeds (1 or more)"),
    (["rerun", "STUDY", "--seeds", "two"], "argument --seeds: 'two' is not a number of seeds (1 or more)"),
    (["rerun", "STUDY", "--device", "gpu"], "argument --device: invalid choice: 'gpu' (choose from 'auto', 'cpu', "
                                            "'cuda')"),
    (["run", "SPACE", "--device", "cpu"], "unrecognized arguments: --device cpu"),
])
def test_a_bad_option_value_is_argparse_usage_exit_2(argv, fragment, tmp_path, capsys):
    """Option values argparse checks: its usage line, then one error line naming the option, exit 2."""
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path) if a in ("STUDY", "SPACE") else a for a in argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "Traceback" not in err
    assert err.splitlines()[-1].endswith(fragment), err
