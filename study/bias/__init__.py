"""Bias measures for masked language models. One metric per module; each returns plain numbers.

`measure` runs the configured metrics and returns flat MLflow-style keys `bias/<metric>/<stat>`.
"""

from __future__ import annotations

from study.bias import template
from study.config import BiasConfig
from study.occupations import FEMALE_SHARE


def measure(model, tokenizer, cfg: BiasConfig, shares: dict[str, float] = FEMALE_SHARE) -> tuple[dict[str, float], dict]:
    """(flat scalar metrics, details such as per-occupation scores)."""
    result = template.measure(model, tokenizer, shares, cfg.template)
    scalars = {f"bias/template/{k}": v for k, v in result.items() if isinstance(v, float)}
    details = {k: v for k, v in result.items() if not isinstance(v, float)}
    return scalars, {"template": details}


def amplification(student: dict[str, float], teacher: dict[str, float], primary: str) -> dict[str, float | str]:
    """bias/primary, the teacher's values under teacher/, and bias/amplification = student - teacher on primary."""
    out: dict[str, float | str] = {"bias/primary": primary}
    out.update({f"teacher/{k}": v for k, v in teacher.items()})
    out["bias/amplification"] = student[primary] - teacher[primary]
    return out
