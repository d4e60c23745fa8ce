"""Which trial of a study a command means: `--pick` of `kdstudy rerun` and `kdstudy export`."""

from __future__ import annotations

import logging

from analysis.report import summarize, summarize_race
from analysis.runs import StudyRecord, Trial
from study.config import ConfigError

log = logging.getLogger(__name__)

RECOMMENDED_PICK = "recommended"  # the study's recommended point: what rerun and export take without --pick


def pick_trial(record: StudyRecord, pick: str) -> Trial:
    """The trial `pick` names: recommended (the confirm stage's noise-aware pick; the knee where the study has no
    confirm stage), knee (of the single-run front), min:<metric>, max:<metric>, or trial:<id>."""
    kind, _, value = pick.partition(":")
    if kind == "trial":
        found = [t for t in record.trials if t.trial_id == value]
        if not found:
            raise ConfigError(f"--pick {pick}: no trial {value!r} in {record.directory} "
                              f"(trials: {', '.join(t.trial_id for t in record.trials)})")
        return found[0]
    finished, _ = record.finished()
    if not finished:
        raise ConfigError(f"--pick {pick}: {record.directory} has no finished trial yet")
    if kind == "recommended" and not value:
        race = summarize_race(record)
        if race is not None and race.recommended is not None:
            pick = race.trials[race.recommended]
            log.info(f"recommended: trial {pick.trial_id}, {race.recommended_reason}")
            return pick
        log.info("the study has no raced trials to recommend from: its knee instead")
        kind = "knee"
    if kind == "knee" and not value:
        front = summarize(record)
        return front.trials[front.knee]
    if kind in ("min", "max") and value:
        having = [t for t in finished if value in t.metrics]
        if not having:
            raise ConfigError(f"--pick {pick}: no finished trial reported {value!r}")
        best = min if kind == "min" else max
        return best(having, key=lambda t: t.metrics[value])
    raise ConfigError(f"--pick {pick}: expected recommended, knee, min:<metric>, max:<metric> or trial:<id>")
