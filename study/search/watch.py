"""Watching a study: on a terminal one live view (rich) of its trials; elsewhere (CI, `ray job submit`, a pipe) the
plain lines of study.search.callbacks.ShowProgress, one per trial event. Either way the screen holds kdstudy's own
lines only, and the rest goes to the study's logs/:

    logs/driver.log      the libraries' lines on the driver (Optuna, MLflow, Ray, Tune; study.runtime.libraries_to_file)
    logs/<train run>.log each trial's own lines (its Ray Train workers and its process), named in the view

The workers' output is not forwarded to the driver (`ray.init(log_to_driver=False)`): that is where Ray's worker
prefixes, its log-dedup notice, Tune's and Train's boxes and the raylet's warnings come from. Each trial writes its
lines to its own file instead (study.runtime.setup_worker_logging), which the view reads for the trial's phase (its
last step line, or evaluating). -v keeps everything on the screen.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from study.record.folder import LOGS, train_run, trial_log


def live_wanted(verbosity: int) -> bool:
    """The live view: on a terminal, unless -v (everything on the screen) or KDSTUDY_PLAIN=1 (the plain lines)."""
    return sys.stderr.isatty() and verbosity <= 0 and os.environ.get("KDSTUDY_PLAIN") != "1"


def quiet_wanted(verbosity: int) -> bool:
    """The libraries' and the Ray workers' lines in the study's logs/, not on the screen: unless -v."""
    return verbosity <= 0


class StudyView:
    """The live view's state and rendering: one row per trial (params, state, phase, objectives, its log file), the
    counts and an ETA from the measured trial times (the mean finished trial's time, times the trials left, over the
    trials run at once)."""

    def __init__(self, name: str, study_dir: str, objectives: list[dict], total: int, concurrent: int):
        self.name, self.study_dir, self.objectives = name, study_dir, objectives
        self.total, self.concurrent = total, max(1, concurrent)
        self.trials: dict[str, dict] = {}
        self.start = time.time()
        self.live: Live | None = None

    def started(self, trial_id: str, params: str) -> None:
        self.trials.setdefault(trial_id, {"params": params, "values": {}})
        self.trials[trial_id].update(state="running", since=time.time())
        self.refresh()

    def ended(self, trial_id: str, state: str, values: dict | None = None) -> None:
        row = self.trials.setdefault(trial_id, {"params": "", "values": {}, "since": time.time()})
        row.update(state=state, seconds=time.time() - row.get("since", time.time()), values=values or {})
        self.refresh()

    def eta(self) -> float | None:
        times = [r["seconds"] for r in self.trials.values() if r["state"] == "done"]
        if not times:
            return None
        finished = sum(r["state"] in ("done", "failed") for r in self.trials.values())
        return sum(times) / len(times) * max(0, self.total - finished) / self.concurrent

    def phase(self, trial_id: str) -> str:
        """The trial's last line in its log file: its step, or what it measures."""
        path = trial_log(self.study_dir, train_run(trial_id))
        try:
            with path.open("rb") as f:
                f.seek(max(0, path.stat().st_size - 2000))
                lines = [x for x in f.read().decode(errors="replace").splitlines() if x.strip()]
        except OSError:
            return ""
        if not lines:
            return ""
        last = lines[-1].split(" ", 2)[-1].strip()  # without the file's timestamp (date, time)
        last = last.removeprefix(f"[{train_run(trial_id)}] ")  # and the trial's own name
        return last.split(", eta")[0][:48]  # the trial's own ETA is the view's business

    def render(self):
        table = Table(title=f"study {self.name}", title_justify="left", expand=False)
        table.add_column("trial", no_wrap=True)
        for header in ("params", "state", "phase"):
            table.add_column(header, overflow="fold")
        for o in self.objectives:
            table.add_column(o["metric"], justify="right", min_width=len(o["metric"]))
        table.add_column("log", no_wrap=True)
        for trial_id, row in self.trials.items():
            values = [f"{row['values'][o['metric']]:.4g}" if o["metric"] in row["values"] else "" for o in
                      self.objectives]
            table.add_row(trial_id, row["params"], row["state"],
                          self.phase(trial_id) if row["state"] == "running" else "", *values,
                          trial_log("", train_run(trial_id)).name)
        states = [r["state"] for r in self.trials.values()]
        eta = self.eta()
        footer = (f"{states.count('done')}/{self.total} done, {states.count('running')} running, "
                  f"{states.count('failed')} failed | {time.time() - self.start:.0f}s"
                  + (f", about {eta:.0f}s left" if eta is not None else "")
                  + f" | logs in {Path(self.study_dir) / LOGS}")
        return Group(table, Text(footer))

    def refresh(self) -> None:
        if self.live is not None:
            self.live.update(self.render(), refresh=True)

    def __enter__(self):
        from study.runtime import console

        self.live = Live(self.render(), console=console(), refresh_per_second=1, transient=False,
                         get_renderable=self.render)
        self.live.__enter__()
        return self

    def __exit__(self, *exc):
        live, self.live = self.live, None
        live.__exit__(*exc)


_current: StudyView | None = None  # the view a running study shows (the Tune callbacks find it here)


def current() -> StudyView | None:
    return _current


def showing(view: StudyView | None):
    """Make `view` the one the callbacks update, for the duration of a `with`."""
    import contextlib

    @contextlib.contextmanager
    def scope():
        global _current
        _current = view
        try:
            if view is None:
                yield None
            else:
                with view:
                    yield view
        finally:
            _current = None

    return scope()
