"""A study's chosen student in the MLflow Model Registry: one registered model per study (named after it), a version
per student registered (a rerun's, an export's), tagged with the trial, the pick rule and the seed summary, and the
alias RECOMMENDED on the version of the study's recommended point.

    models:/<study>@recommended      what `mlflow.transformers.load_model` loads: a fill-mask pipeline

The student is stored in the transformers flavour (task fill-mask), so MLflow's own loader gives the pipeline a
researcher would build by hand, and `mlflow models serve` can serve it. The flavour's files are written locally and
logged as artifacts of the run that made the student, through the study's client: no global tracking URI, no
active run. The registry works on the study's own SQLite store as on a server.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from mlflow import MlflowClient

RECOMMENDED = "recommended"  # the alias of the study's recommended point
MODEL_PATH = "registered_student"  # the flavour's files among the run's artifacts
SOURCE = "student_source"  # a version's tag: the URI of the weights it was made from
# Tags on each version
TRIAL = "trial_id"
PICK = "pick"
SEEDS = "seeds"


def register_student(client: MlflowClient, name: str, model_dir: Path, origin: str, run_id: str,
                     tags: dict[str, str], alias: str | None = None, card=None) -> str:
    """Register the model dir `model_dir` (a masked LM with its tokenizer; `origin` the URI of the weights it holds,
    a checkpoint's student dir or a run's artifacts) as a new version of the registered model `name`, from the run
    `run_id`; `alias` (e.g. RECOMMENDED) then points at it. A version of the same origin is reused, its tags updated,
    not duplicated (a rerun registers its student, a later export of it finds that version). Returns the version."""
    source = origin
    version = _existing(client, name, source)
    if version is None:
        uri = _log_flavour(client, Path(model_dir), run_id, card)
        if not has_model(client, name):
            client.create_registered_model(name, description=f"students of the kdstudy study {name}")
        version = client.create_model_version(name, uri, run_id=run_id,
                                              tags={**tags, SOURCE: source}).version
    else:
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
    if alias is not None:
        client.set_registered_model_alias(name, alias, version)
    return str(version)


def has_model(client: MlflowClient, name: str) -> bool:
    """Whether the registry holds a registered model `name` (a study's, once a student of it was registered)."""
    return bool(client.search_registered_models(f"name = '{name}'"))


def _existing(client: MlflowClient, name: str, source: str) -> str | None:
    if not has_model(client, name):
        return None
    for found in client.search_model_versions(f"name = '{name}'"):
        if found.tags.get(SOURCE) == source:
            return found.version
    return None


def _log_flavour(client: MlflowClient, model_dir: Path, run_id: str, card) -> str:
    """The student in MLflow's transformers flavour (task fill-mask) among the run's artifacts; returns its URI."""
    import mlflow.transformers
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(model_dir)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    with tempfile.TemporaryDirectory(prefix="kdstudy-registry-") as work:
        path = Path(work) / MODEL_PATH
        # pip_requirements given: MLflow would otherwise import every package a pipeline may use (torchvision...)
        # to pin their versions
        mlflow.transformers.save_model({"model": model, "tokenizer": tokenizer}, str(path), task="fill-mask",
                                       model_card=card, pip_requirements=_requirements())
        client.log_artifacts(run_id, str(path), MODEL_PATH)
    return f"{client.get_run(run_id).info.artifact_uri.rstrip('/')}/{MODEL_PATH}"


def _requirements() -> list[str]:
    import torch
    import transformers

    return [f"transformers=={transformers.__version__}", f"torch=={torch.__version__.split('+')[0]}"]


def seeds_text(rerun: dict | None, metrics: list[str]) -> str:
    """`3 seeds: bias/amplification 0.05 [0.01, 0.09], ...` (a rerun's means and 95% intervals), or `1 run (the
    trial's own)`: what a version's `seeds` tag says."""
    if rerun is None:
        return "1 run (the trial's own)"
    parts = [f"{m} {rerun['summary'][m]['mean']:.4g} [{rerun['summary'][m]['ci_low']:.4g}, "
             f"{rerun['summary'][m]['ci_high']:.4g}]" for m in metrics if m in rerun["summary"]]
    return f"{len(rerun['per_seed'])} seeds{', full budget' if rerun.get('full') else ''}: " + ", ".join(parts)


def version_tags(trial_id: str, pick: str, seeds: str) -> dict[str, str]:
    return {TRIAL: trial_id, PICK: pick, SEEDS: seeds}
