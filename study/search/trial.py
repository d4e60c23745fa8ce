"""One trial of a study: Tune's function trainable, one per sampled config.

    run_trial(params)                     the study's config with the sampled values, validated once
      distill_and_evaluate(cfg)           a Ray Train run: distil on N workers, evaluate the student there
                                          (study.cluster.train_run)
      tune.report(metrics)                once, with amplification against the study's teacher, the student's URI
                                          and what the trial used (perf/distill_seconds, perf/eval_seconds,
                                          perf/busy_share)

A trial that diverges or raises fails alone with a one-line reason; the study goes on.
"""

from __future__ import annotations

import math

import ray.tune

from study.cluster.train_run import TrialFailed, distill_and_evaluate
from study.config import ConfigError, StudyConfig, with_params
from study.record.folder import train_run, trial_log
from study.runtime import setup_worker_logging


def run_trial(params: dict, *, cfg: StudyConfig, teacher: dict[str, float]) -> None:
    """Tune function trainable: the study's base config with this trial's sampled values, distilled and measured."""
    trial_id = ray.tune.get_context().get_trial_id()
    setup_worker_logging(trial_log(cfg.study_dir, train_run(trial_id)))
    try:
        cfg = with_params(cfg, params)  # the trial's config: its sampled values set and validated, once
    except ConfigError as err:
        raise TrialFailed(f"sampled config is invalid: {err}") from None
    metrics, uri = distill_and_evaluate(cfg, teacher, train_run(trial_id))
    for objective in cfg.search.objectives:
        value = metrics.get(objective.key)
        if value is None or not math.isfinite(value):
            raise TrialFailed(f"objective {objective.key} is {value}")
    from study.record.tracking import STUDENT_URI  # (here: the trainable's process need not import MLflow)

    ray.tune.report({**metrics, STUDENT_URI: uri})
