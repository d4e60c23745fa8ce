"""What the study's driver has yet to tell MLflow: each trial's run (its start, its end with every metric), kept in
the study folder until the tracking server takes it.

A tracking server that restarts or stalls must not stop a study, and no trial's result may be lost: the results are
Ray's and Optuna's records anyway; MLflow is the view of them. So TrackTrials puts each trial event here and sends
what is waiting (`flush`) at every trial event and when the study ends; what the server refuses stays in
`tracking-outbox.json` for the next try, a resumed study's included. Sending is idempotent: a trial's run is found
by its trial_id tag before one is made, and a run already FINISHED is not logged again.

The MLflow client retries a request for about four minutes before it raises (MLFLOW_HTTP_REQUEST_MAX_RETRIES 7,
backoff factor 2): here it gives up within seconds (`tracking.failing_fast`), since what fails is kept and tried again.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path

from mlflow import MlflowClient

from study.record import tracking
from study.record.folder import OUTBOX, STUDENT
from study.record.tracking import failing_fast

log = logging.getLogger(__name__)

class Outbox:
    """The trials whose runs MLflow does not have yet, as JSON in the study folder: trial id -> {start, end}."""

    # The outboxes whose last send failed, in this process: an outage is said once, also when the driver's end of
    # study (a second Outbox of the same folder) finds the server still down after the trials' callbacks did.
    _down: set[Path] = set()

    def __init__(self, study_dir: str | Path, meta: dict, log_models: bool):
        self.path = Path(study_dir).resolve() / OUTBOX
        self.meta, self.log_models = meta, log_models

    @property
    def down(self) -> bool:
        return self.path in Outbox._down

    @down.setter
    def down(self, value: bool) -> None:
        (Outbox._down.add if value else Outbox._down.discard)(self.path)

    def entries(self) -> dict[str, dict]:
        return json.loads(self.path.read_text()) if self.path.is_file() else {}

    def _write(self, entries: dict) -> None:
        if not entries:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(entries, indent=1))
        os.replace(tmp, self.path)

    def put(self, trial_id: str, start: dict, end: dict | None = None) -> None:
        """A trial event: its run must exist (start: config, anchor, number), and end as `end` says if given."""
        entries = self.entries()
        entries[trial_id] = {"start": start, "end": end or entries.get(trial_id, {}).get("end")}
        self._write(entries)

    def flush(self) -> bool:
        """Send what waits, oldest first; stop at the first failure (one warning per outage). True if all went."""
        entries = self.entries()
        if not entries:
            return True
        client = tracking.connect(self.meta["tracking_uri"])
        sent = 0
        with failing_fast():
            for trial_id, entry in list(entries.items()):
                try:
                    self._send(client, trial_id, entry)
                except Exception as err:  # any failure to log is kept for later; it must not fail the study
                    if not self.down:
                        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                        first = first if len(first) < 160 else first[:157] + "..."
                        log.warning(f"tracking at {self.meta['tracking_uri']} failed ({first}); the study goes on, "
                                    f"and {len(entries)} trial(s) wait in {self.path} until it takes them")
                    self.down = True
                    self._write(entries)
                    return False
                del entries[trial_id]
                sent += 1
        self._write(entries)
        if self.down:
            log.info(f"tracking is back: {sent} waiting trial(s) logged to {self.meta['tracking_uri']}")
        self.down = False
        return True

    def flush_within(self, seconds: float, every: float = 5.0) -> bool:
        """`flush`, tried again every `every` seconds for up to `seconds` while it fails: at the study's end a
        server that is restarting gets the time a restart takes before the driver gives up on it."""
        deadline = time.monotonic() + seconds
        if self.flush():
            return True
        log.info(f"waiting up to {seconds:.0f} s for tracking at {self.meta['tracking_uri']} to come back")
        while time.monotonic() + every < deadline:
            time.sleep(every)
            if self.flush():
                return True
        return False

    def _send(self, client: MlflowClient, trial_id: str, entry: dict) -> None:
        start, end = entry["start"], entry["end"]
        run_id, finished = tracking.start_trial(client, self.meta["experiment_id"], self.meta["parent_run_id"],
                                                trial_id, start["config"], start["anchor"], start["number"])
        if end is None or finished:  # running; or it finished before an interruption and was logged then
            return
        if end["status"] == "FINISHED":
            tracking.log_metrics(client, run_id, end["metrics"], tags=end["tags"])
            student = Path(end["student"]) / STUDENT if end.get("student") else None
            if self.log_models and student is not None and student.is_dir():  # local checkpoints only
                client.log_artifacts(run_id, str(student), STUDENT)
        tracking.end_run(client, run_id, end["status"], end.get("reason"))
