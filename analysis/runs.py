"""Read a study back from what it wrote: its folder (study.json, study.yaml) and its MLflow runs.

Works on any record, local or one that ran on a cluster, as long as its tracking store is reachable: the runs are the
meta, not the process that made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from study.config import StudyConfig
from study.record.folder import read_config, read_meta
from study.record.tracking import ANCHOR, CONFIRM_OF, TRIAL_ID, child_runs, connect


@dataclass
class Trial:
    trial_id: str
    run_id: str
    status: str  # MLflow's: RUNNING, FINISHED, FAILED, KILLED
    params: dict[str, str]
    metrics: dict[str, float]
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def anchor(self) -> str | None:
        return self.tags.get(ANCHOR)


@dataclass
class StudyRecord:
    name: str
    directory: Path
    config: StudyConfig
    meta: dict
    trials: list[Trial]
    confirm_runs: dict[str, Trial] = field(default_factory=dict)  # raced trial id -> its confirm run (seed means)

    @property
    def client(self) -> MlflowClient:
        """A client of the study's tracking store."""
        return connect(self.meta["tracking_uri"])

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.config.search.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o.key for o in self.config.search.objectives]

    def finished(self) -> tuple[list[Trial], np.ndarray]:
        """Trials that finished with every objective, and their (n, k) objective values."""
        done = [t for t in self.trials if t.status == "FINISHED" and all(m in t.metrics for m in self.metrics)]
        values = np.array([[t.metrics[m] for m in self.metrics] for t in done], dtype=float)
        return done, values.reshape(-1, len(self.metrics))

    def errors(self, trials: list[Trial]) -> np.ndarray:
        """(n, k) the standard error each trial reported beside each objective (`<metric>_se`), nan if none."""
        return np.array([[t.metrics.get(f"{m}_se", np.nan) for m in self.metrics] for t in trials],
                        dtype=float).reshape(-1, len(self.metrics))

    def raced(self) -> tuple[list[Trial], np.ndarray]:
        """The finished trials that the confirm stage raced, and their (n, k) seed means of the objectives."""
        done = [t for t in self.finished()[0] if t.trial_id in self.confirm_runs
                and all(m in self.confirm_runs[t.trial_id].metrics for m in self.metrics)]
        values = np.array([[self.confirm_runs[t.trial_id].metrics[m] for m in self.metrics] for t in done],
                          dtype=float)
        return done, values.reshape(-1, len(self.metrics))


def read_study(study_dir: str | Path) -> StudyRecord:
    study_dir = Path(study_dir)
    meta = read_meta(study_dir)
    children = child_runs(connect(meta["tracking_uri"]), meta["experiment_id"], meta["parent_run_id"])
    trials = [_trial(r, r.data.tags[TRIAL_ID]) for r in children if TRIAL_ID in r.data.tags]
    trials.sort(key=lambda t: t.trial_id)
    confirm_runs = {r.data.tags[CONFIRM_OF]: _trial(r, r.data.tags[CONFIRM_OF]) for r in children
                    if CONFIRM_OF in r.data.tags and r.info.status in ("FINISHED", "FAILED")}
    return StudyRecord(meta["name"], study_dir, read_config(study_dir), meta, trials, confirm_runs)


def _trial(run, trial_id: str) -> Trial:
    return Trial(trial_id, run.info.run_id, run.info.status, dict(run.data.params), dict(run.data.metrics),
                 dict(run.data.tags))
