"""Read a study back from what it wrote: its folder (study.json, study.yaml) and its MLflow runs.

Works on any study, local or one that ran on a cluster, as long as its tracking store is reachable: the runs are the
record, not the process that made them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from mlflow import MlflowClient

from study.config import StudyConfig
from study.folder import read_config, read_record
from study.tracking import trial_runs


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
        return self.tags.get("anchor")


@dataclass
class Study:
    name: str
    directory: Path
    config: StudyConfig
    record: dict
    trials: list[Trial]

    @property
    def modes(self) -> list[str]:
        return [o.mode for o in self.config.search.objectives]

    @property
    def metrics(self) -> list[str]:
        return [o.metric for o in self.config.search.objectives]

    def finished(self) -> tuple[list[Trial], np.ndarray]:
        """Trials that finished with every objective, and their (n, k) objective values."""
        done = [t for t in self.trials if t.status == "FINISHED" and all(m in t.metrics for m in self.metrics)]
        values = np.array([[t.metrics[m] for m in self.metrics] for t in done], dtype=float)
        return done, values.reshape(-1, len(self.metrics))


def load_study(study_dir: str | Path) -> Study:
    study_dir = Path(study_dir)
    record = read_record(study_dir)
    client = MlflowClient(record["tracking_uri"])
    trials = [Trial(r.data.tags["trial_id"], r.info.run_id, r.info.status, dict(r.data.params), dict(r.data.metrics),
                    dict(r.data.tags))
              for r in trial_runs(client, record["experiment_id"], record["parent_run_id"])]
    trials.sort(key=lambda t: t.trial_id)
    return Study(record["name"], study_dir, read_config(study_dir), record, trials)
