"""What the study's driver does while Tune runs the trials: a child run in MLflow per trial (TrackTrials, through the
study's outbox), and a progress line per trial event (ShowProgress). Both are Tune callbacks; Tune saves them with
its experiment, so they hold no client or handler that does not pickle."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ray import tune

from study.device import DEVICE_TAG
from study.record import folder, mirror, tracking
from study.record.outbox import Outbox
from study.runtime import error_line
from study.search import watch

log = logging.getLogger(__name__)


def anchor_of(params: dict, anchors: list[dict]) -> str | None:
    """The name of the anchor whose params this trial carries, if any."""
    return next((a["name"] for a in anchors if all(params.get(k) == v for k, v in a["params"].items())), None)


def failure_reason(trial) -> str:
    """The first line of a failed trial's own exception (Ray wraps it in a task error with the traceback)."""
    error = trial.get_pickled_error()
    if error is not None:
        return error_line(error)
    path = trial.error_file
    lines = Path(path).read_text().strip().splitlines() if path and Path(path).is_file() else []
    return lines[-1] if lines else "unknown error"


class TrackTrials(tune.Callback):
    """One MLflow child run per trial under the study's parent run: params, every metric, student, status.

    Each event goes through the study's outbox (study.record.outbox): a tracking server that is down delays the runs, it
    does not fail the study or lose a trial."""

    def __init__(self, meta: dict, anchors: list[dict], log_models: bool, study_dir: str):
        self.meta, self.anchors, self.log_models, self.study_dir = meta, anchors, log_models, study_dir
        self._outbox: Outbox | None = None

    def __getstate__(self):  # Tune saves its callbacks with the experiment
        return {**self.__dict__, "_outbox": None}

    @property
    def outbox(self) -> Outbox:
        """The outbox of the study folder the driver holds: restored by Tune after the folder moved, this callback
        still carries the paths it was pickled with."""
        if self._outbox is None:
            here = folder.held()
            self._outbox = Outbox(here, folder.read_meta(here), self.log_models) if here is not None else \
                Outbox(self.study_dir, self.meta, self.log_models)
        return self._outbox

    def _start(self, trial) -> dict:
        return {"config": trial.config, "anchor": anchor_of(trial.config, self.anchors),
                "number": trial.experiment_tag.split("_")[0]}

    def on_trial_start(self, iteration, trials, trial, **info):
        self.outbox.put(trial.trial_id, self._start(trial))  # (re)started: find or make its run, mark it running
        self.outbox.flush()
        mirror.request()

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result
        metrics = {k: v for k, v in result.items() if "/" in k and isinstance(v, (int, float))}
        metrics["perf/trial_seconds"] = result.get("time_total_s", 0.0)
        student = result.get(tracking.STUDENT_URI, "")
        tags = {tracking.STUDENT_URI: student, **{k: result[k] for k in (DEVICE_TAG,) if k in result}}
        self.outbox.put(trial.trial_id, self._start(trial), {
            "status": "FINISHED", "metrics": metrics, "tags": tags, "student": str(student)})
        self.outbox.flush()
        mirror.request()

    def on_trial_error(self, iteration, trials, trial, **info):
        self.outbox.put(trial.trial_id, self._start(trial), {"status": "FAILED", "reason": failure_reason(trial)})
        self.outbox.flush()
        mirror.request()


class ShowProgress(tune.Callback):
    """A line per trial event: counts of trials done/running/failed, and the best value so far per objective."""

    def __init__(self, objectives: list[dict], total: int):
        self.objectives, self.total = objectives, total
        self.best: dict[str, tuple[float, str]] = {}
        self.start = time.time()

    def setup(self, **info):
        self.start = time.time()  # again on resume

    def _say(self, trials, what: str, ending=None, failing=False) -> None:
        """`ending`: the trial this event ends (Tune updates its status after the callbacks)."""
        status = {t.trial_id: t.status for t in trials}
        if ending is not None:
            status[ending.trial_id] = "ERROR" if failing else "TERMINATED"
        done = sum(s == "TERMINATED" for s in status.values())
        failed = sum(s == "ERROR" for s in status.values())
        running = sum(s == "RUNNING" for s in status.values())
        best = ", ".join(f"{o['metric']} {self.best[o['metric']][0]:.4g} ({self.best[o['metric']][1]})"
                         for o in self.objectives if o["metric"] in self.best)
        log.info(f"[{time.time() - self.start:5.0f}s] {what} | {done}/{self.total} done, {running} running, "
                 f"{failed} failed" + (f" | best {best}" if best else ""))

    def on_trial_start(self, iteration, trials, trial, **info):
        if watch.current():
            watch.current().started(trial.trial_id, params_text(trial.config))
        self._say(trials, f"trial {trial.trial_id} started: {params_text(trial.config)}")

    def on_trial_complete(self, iteration, trials, trial, **info):
        result = trial.last_result
        for o in self.objectives:
            value = result.get(o["metric"])
            old = self.best.get(o["metric"])
            if value is not None and (old is None or (value < old[0] if o["mode"] == "min" else value > old[0])):
                self.best[o["metric"]] = (value, trial.trial_id)
        got = ", ".join(f"{o['metric']} {result[o['metric']]:.4g}" for o in self.objectives if o["metric"] in result)
        if watch.current():
            watch.current().ended(trial.trial_id, "done", {o["metric"]: result[o["metric"]] for o in self.objectives
                                                           if o["metric"] in result})
        self._say(trials, f"trial {trial.trial_id} finished: {got}", ending=trial)

    def on_trial_recover(self, iteration, trials, trial, **info):
        # (a node lost under the trial's process; a trial that failed by itself fails again at once: trial.failed)
        self._say(trials, f"trial {trial.trial_id} stopped ({failure_reason(trial)}); trying it again from its "
                          f"last checkpoint")

    def on_trial_error(self, iteration, trials, trial, **info):
        if watch.current():
            watch.current().ended(trial.trial_id, "failed")
        self._say(trials, f"trial {trial.trial_id} FAILED: {failure_reason(trial)}", ending=trial, failing=True)


def params_text(params: dict) -> str:
    """`mode=cda, temperature=3.1`: a trial's sampled values, by the last part of their names."""
    return ", ".join(f"{k.split('.')[-1]}={v:.3g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                     for k, v in params.items())
