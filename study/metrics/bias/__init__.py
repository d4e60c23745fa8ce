"""Bias measures for masked language models. One metric per module; each returns plain numbers.

`measure` runs the configured metrics and returns flat MLflow-style keys `bias/<metric>/<stat>`; `amplification`
compares a student with its teacher on the primary metric.
"""

from __future__ import annotations

from pathlib import Path

from study.catalog import BIAS_METRICS
from study.config import BiasConfig
from study.metrics.bias.bootstrap import interval_se
from study.metrics.occupations import FEMALE_SHARE


def _template(model, tokenizer, cfg: BiasConfig, data_dir: Path, shares: dict[str, float]) -> tuple[dict, dict]:
    from study.metrics.bias import template

    result = template.measure(model, tokenizer, shares, cfg.template, cfg.seed)
    return ({k: v for k, v in result.items() if isinstance(v, float)},
            {k: v for k, v in result.items() if not isinstance(v, float)})


def _crows(model, tokenizer, cfg: BiasConfig, data_dir: Path, shares: dict[str, float]) -> tuple[dict, None]:
    from study.metrics.bias import crows

    result = crows.measure(model, tokenizer, crows.load_pairs(data_dir), cfg.batch_size, cfg.seed)
    result["distance"] = abs(result["score"] - 50)
    result["distance_se"] = interval_se(result["score_ci_low"], result["score_ci_high"])
    return result, None


def _seat(model, tokenizer, cfg: BiasConfig, data_dir: Path, shares: dict[str, float]) -> tuple[dict, None]:
    from study.metrics.bias import seat

    return seat.measure(model, tokenizer, data_dir, samples=cfg.seat_samples, seed=cfg.seed), None


def _stereoset(model, tokenizer, cfg: BiasConfig, data_dir: Path, shares: dict[str, float]) -> tuple[dict, None]:
    from study.metrics.bias import stereoset

    local = data_dir if cfg.data_dir or data_dir.is_dir() else None  # no data folder at all: the hub
    result = stereoset.measure(model, tokenizer, stereoset.load_examples(local), cfg.batch_size, cfg.seed)
    result["ss_distance"] = abs(result["ss"] - 50)
    result["ss_distance_se"] = interval_se(result["ss_ci_low"], result["ss_ci_high"])
    return result, None


# One measure per name in study.catalog.BIAS_METRICS (a test holds the two together), run in the catalog's order.
MEASURES = {"template": _template, "crows": _crows, "seat": _seat, "stereoset": _stereoset}


def measure(model, tokenizer, cfg: BiasConfig,
            shares: dict[str, float] = FEMALE_SHARE) -> tuple[dict[str, float], dict]:
    """(flat scalar metrics `bias/<metric>/<stat>`, details such as per-occupation scores) for every metric in
    cfg.metrics."""
    from study.metrics.bias_data import default_dir, require

    data_dir = Path(cfg.data_dir) if cfg.data_dir else default_dir()
    require(cfg.metrics, data_dir)  # before any scoring: a missing file is one line naming the fetch command
    scalars: dict[str, float] = {}
    details: dict = {}
    for name in BIAS_METRICS:
        if name in cfg.metrics:
            result, detail = MEASURES[name](model, tokenizer, cfg, data_dir, shares)
            scalars.update({f"bias/{name}/{k}": v for k, v in result.items()})
            if detail is not None:
                details[name] = detail
    return scalars, details


def amplification(student: dict[str, float], teacher: dict[str, float], primary: str) -> dict[str, float | str]:
    """bias/primary, the teacher's values under teacher/, bias/amplification = student - teacher on primary, and
    bias/amplification_se = the student's standard error on primary (its `_se`, or the one its 95% interval stands
    for: bootstrap.interval_se). The teacher's own error is left out: every trial of a study is compared with the same
    teacher measurement, so it moves all trials alike and does not change their order."""
    out: dict[str, float | str] = {"bias/primary": primary}
    out.update({f"teacher/{k}": v for k, v in teacher.items()})
    out["bias/amplification"] = student[primary] - teacher[primary]
    if f"{primary}_se" in student:
        out["bias/amplification_se"] = student[f"{primary}_se"]
    elif f"{primary}_ci_low" in student:
        out["bias/amplification_se"] = interval_se(student[f"{primary}_ci_low"], student[f"{primary}_ci_high"])
    return out
