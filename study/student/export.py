"""`kdstudy export`: a study's chosen student as a Hugging Face model dir, its numbers on its model card, registered
in the study's MLflow Model Registry, and (with --push-to-hub) uploaded to the Hub.

    kdstudy export runs/smoke [--pick knee] [--to DIR] [--push-to-hub USER/REPO]

The weights are the rerun's seed 0 where the picked trial has a rerun (the full-budget one first: the student the
study recommends training), else the trial's own: its final checkpoint (`student_uri`, local or in S3) or the
`student/` artifacts of its MLflow run. The model dir holds safetensors weights, the tokenizer and README.md (the
card, study.student.card), and loads with plain transformers: `AutoModelForMaskedLM.from_pretrained(DIR)`,
`pipeline("fill-mask", model=DIR)`.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import yaml

from analysis.pick import RECOMMENDED_PICK, pick_trial
from analysis.runs import StudyRecord, Trial, read_study
from study.config import with_params
from study.errors import DataError
from study.record import folder, tracking
from study.record.checkpoint import fetch_student
from study.record.folder import STUDENT
from study.student import registry
from study.student.card import CardFacts, card_metrics, model_card, seed_value, trial_value

log = logging.getLogger(__name__)


def rerun_of(record: StudyRecord, trial: Trial) -> dict | None:
    """The trial's rerun result (the full-budget one first), None if it has none."""
    for full in (True, False):
        path = folder.rerun_result(record.directory, trial.trial_id, full)
        if path.is_file():
            return json.loads(path.read_text())
    return None


def find_student(record: StudyRecord, trial: Trial, rerun: dict | None, work: Path) -> tuple[Path, str, str]:
    """(a local model dir of the student, what it is, the URI of its weights): the rerun's seed 0, else the trial's
    final checkpoint, else its run's `student/` artifacts."""
    if rerun is not None and rerun["per_seed"]:
        seed = "0" if "0" in rerun["per_seed"] else sorted(rerun["per_seed"], key=int)[0]
        uri = rerun["per_seed"][seed].get(tracking.STUDENT_URI)
        found = fetch_student(uri, work) if uri else None
        if found is not None:
            return found, f"seed {seed} of the rerun of trial {trial.trial_id} ({uri})", f"{uri}/{STUDENT}"
        log.warning(f"the rerun's seed {seed} student is not at {uri}; exporting the trial's own")
    uri = trial.tags.get(tracking.STUDENT_URI)
    found = fetch_student(uri, work) if uri else None
    if found is not None:
        return found, f"the final checkpoint of trial {trial.trial_id} ({uri})", f"{uri}/{STUDENT}"
    client = record.client
    if any(a.path == STUDENT for a in client.list_artifacts(trial.run_id)):
        return (Path(client.download_artifacts(trial.run_id, STUDENT, str(work))),
                f"the `{STUDENT}/` artifacts of trial {trial.trial_id}'s MLflow run", f"runs:/{trial.run_id}/{STUDENT}")
    raise DataError(f"{record.directory}: trial {trial.trial_id}'s student is neither at {uri or '(no student_uri)'} "
                    f"nor among its MLflow run's artifacts (tracking.log_models off, and the checkpoint gone?)")


def export(study_dir: str | Path, pick: str = RECOMMENDED_PICK, to: str | Path | None = None,
           push_to_hub: str | None = None, api=None, register: bool = True) -> Path:
    """Write the picked trial's student to `to` (default <study dir>/export/<trial id>) with its card; register it in
    the study's Model Registry; upload it to the Hub repo `push_to_hub` with `api` (a huggingface_hub HfApi; a new
    one by default). Returns the model dir."""
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    record = read_study(study_dir)
    trial = pick_trial(record, pick)
    rerun = rerun_of(record, trial)
    out = Path(to) if to else folder.export_dir(record.directory, trial.trial_id)
    if out.exists() and (not out.is_dir() or any(out.iterdir()) and not (out / "README.md").is_file()):
        raise DataError(f"--to {out}: holds files that are not an export; choose a new or empty folder")
    with tempfile.TemporaryDirectory(prefix="kdstudy-export-") as work:
        source_dir, source, origin = find_student(record, trial, rerun, Path(work))
        try:
            model = AutoModelForMaskedLM.from_pretrained(source_dir)
            tokenizer = AutoTokenizer.from_pretrained(source_dir)
        except (OSError, ValueError) as err:
            raise DataError(f"{source_dir}: not a loadable student ({str(err).splitlines()[0]})") from None
        out.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(out)  # safetensors: transformers' default
        tokenizer.save_pretrained(out)
    card = model_card(card_facts(record, trial, pick, rerun, source, model.config.n_layers))
    card.save(out / "README.md")
    log.info(f"student of trial {trial.trial_id} ({pick}) exported to {out}, from {source}")
    if register:
        run_id = rerun.get("mlflow_run_id") if rerun else None
        version = registry.register_student(
            record.client, record.name, out, origin, run_id or trial.run_id,
            registry.version_tags(trial.trial_id, pick, registry.seeds_text(rerun, record.metrics)),
            registry.RECOMMENDED if pick == RECOMMENDED_PICK else None, card)
        log.info(f"registered as MLflow model {record.name} version {version}"
                 + (f" (alias {registry.RECOMMENDED})" if pick == RECOMMENDED_PICK else ""))
    if push_to_hub:
        push(out, push_to_hub, api)
    return out


def card_facts(record: StudyRecord, trial: Trial, pick: str, rerun: dict | None, source: str,
               n_layers: int) -> CardFacts:
    """What the card says about the student: the rerun's seed means and intervals where it has a rerun, else the
    trial's values; the teacher's from the trial (measured once per study)."""
    params = json.loads(trial.tags.get(tracking.PARAMS_JSON, "{}"))
    cfg = with_params(record.config, params)
    if rerun is not None:
        seeds = len(rerun["per_seed"])
        student = {m: seed_value(rerun["summary"], m, seeds) for m in card_metrics(rerun["summary"])}
    else:
        student = {m: trial_value(trial.metrics, m) for m in card_metrics(trial.metrics)}
    teacher = {m: trial_value({k.removeprefix("teacher/"): v for k, v in trial.metrics.items()
                               if k.startswith("teacher/")}, m)
               for m in card_metrics(trial.metrics, teacher=True)}
    snapshot = yaml.safe_load((Path(record.directory) / folder.CONFIG).read_text())
    return CardFacts(model_name=f"{record.name}-{trial.trial_id}", cfg=cfg, study=record.name,
                     study_dir=str(Path(record.directory).resolve()), trial_id=trial.trial_id, pick=pick,
                     params=params, git_commit=snapshot.get("git_commit"), student=student, teacher=teacher,
                     source=source, n_layers=n_layers, mlflow_run=(rerun or {}).get("mlflow_run_id") or trial.run_id)


def push(out: Path, repo: str, api=None) -> str:
    """Upload the model dir to the Hub repo `repo` (created if missing); returns the commit's URL."""
    from huggingface_hub import HfApi

    api = api or HfApi()
    api.create_repo(repo, repo_type="model", exist_ok=True)
    info = api.upload_folder(repo_id=repo, folder_path=str(out), repo_type="model",
                             commit_message="kdstudy export: student, tokenizer and model card")
    log.info(f"pushed to the Hub: {repo}")
    return str(getattr(info, "commit_url", info))
