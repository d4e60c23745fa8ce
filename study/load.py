"""Reading a study's YAML: `--set` overrides, the schema (study.config), and the checks that no one section can make
alone: a search objective that a trial never reports, a space path that is no config key or whose bounds make an
invalid config, an anchor outside its space, a `rerun.full` that does not apply. Every problem is one ConfigError
naming the field path and the value.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from study.catalog import EVAL_SUITES
from study.config import REPLICATE, StudyConfig, format_error, set_path, with_params
from study.design import grid_points
from study.errors import ConfigError


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.path=value` overrides; values are parsed as YAML so `steps=10` is an int and `x=null` is None."""
    raw = copy.deepcopy(raw)
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key.path=value")
        try:
            set_path(raw, key, yaml.safe_load(value))
        except ConfigError as err:
            raise ConfigError(f"--set {item!r}: {err}") from None
    return raw


# Sections a search must not vary: they name the study or say where it lives, not how a student is made.
UNSEARCHABLE = ("name", "study_dir", "search", "tracking", "rerun")


def _producible(metric: str, cfg: StudyConfig) -> str | None:
    """Why a trial would never report `metric`, or None if it will."""
    family, _, rest = metric.partition("/")
    if metric == "bias/amplification" or family in ("distill", "perf"):
        return None
    if family == "bias":
        kind = rest.split("/")[0]
        return None if kind in cfg.bias.metrics else f"needs {kind!r} in bias.metrics, got {cfg.bias.metrics}"
    if family in EVAL_SUITES:
        return None if family in cfg.eval.suites else f"needs {family!r} in eval.suites, got {cfg.eval.suites}"
    return "not a metric a trial reports (bias/..., world/..., glue/..., distill/..., perf/...)"


def check_search(cfg: StudyConfig) -> None:
    """Cross-field checks of the search section; raises ConfigError naming the field path."""
    search = cfg.search
    for i, objective in enumerate(search.objectives):
        reason = _producible(objective.metric, cfg)
        if reason:
            raise ConfigError(f"search.objectives.{i}.metric: {objective.metric} {reason}")
    seen: list[str] = []
    for path, spec in search.space.items():
        where = f"search.space.{path}"
        if path == REPLICATE:
            raise ConfigError(f"{where}: {REPLICATE} names a grid trial's seed shift (search.repeats), not a parameter")
        if path.split(".")[0] in UNSEARCHABLE:
            raise ConfigError(f"{where}: {path.split('.')[0]} cannot be searched")
        for parent, values in spec.condition().items():
            if parent not in seen:
                raise ConfigError(f"{where}.when: {parent} must be a parameter listed before {path}")
            choices = search.space[parent].levels()
            if choices is not None and any(v not in choices for v in values):
                raise ConfigError(f"{where}.when.{parent}: must be among {choices}, got {values}")
        for value in spec.edge_values():
            try:
                with_params(cfg, {path: value})  # a `sets` factor: the values its choice sets
            except ConfigError as err:
                if str(err).endswith("unknown key"):
                    raise ConfigError(f"{where}: not a config key") from None
                raise ConfigError(f"{where}: {value!r} is not a valid value ({err})") from None
        seen.append(path)
    for i, anchor in enumerate(search.anchors):
        for path, value in anchor.params.items():
            spec = search.space.get(path)
            where = f"search.anchors.{i}.params.{path}"
            if spec is None:
                raise ConfigError(f"{where}: not a parameter of search.space")
            if spec.levels() is not None and value not in spec.levels():
                raise ConfigError(f"{where}: must be among {spec.levels()}, got {value!r}")
            if spec.levels() is None and not (isinstance(value, (int, float)) and spec.low <= value <= spec.high):
                raise ConfigError(f"{where}: must be in [{spec.low:g}, {spec.high:g}], got {value!r}")
    for i, pair in enumerate(search.interactions):
        for name in pair:
            if name not in search.space:
                raise ConfigError(f"search.interactions.{i}: {name} is not a parameter of search.space")
        if pair[0] == pair[1]:
            raise ConfigError(f"search.interactions.{i}: a factor with itself, got {list(pair)}")
    if search.sampler.name == "grid":
        check_grid(search)
    elif search.repeats > 1:
        raise ConfigError(f"search.repeats: paired replicates need sampler grid, got {search.sampler.name!r}")
    for path, spec in search.space.items():
        if spec.generated_by and search.sampler.name != "grid":
            raise ConfigError(f"search.space.{path}.generated_by: only a grid has generated factors, got sampler "
                              f"{search.sampler.name!r}")
    if search.num_samples < len(search.anchors):
        raise ConfigError(f"search.num_samples: must be >= the {len(search.anchors)} anchors, got {search.num_samples}")


def check_grid(search) -> None:
    """A grid: every parameter has levels, generators are crossed factors listed before, no anchors; its num_samples
    is set to cells x repeats (a given one must agree)."""
    for path, spec in search.space.items():
        where = f"search.space.{path}"
        if spec.levels() is None:
            raise ConfigError(f"{where}: a grid needs the levels of a {spec.type} parameter as a values list, got "
                              f"low/high")
        for name in spec.generated_by:
            generator = search.space.get(name)
            if name not in list(search.space)[:list(search.space).index(path)]:
                raise ConfigError(f"{where}.generated_by: {name} must be a parameter listed before {path}")
            if generator.when or generator.generated_by or spec.when:
                raise ConfigError(f"{where}.generated_by: {name}: a generator and the factor it generates must be "
                                  f"crossed and unconditional")
    if search.anchors:
        raise ConfigError("search.anchors: a grid runs its cells only (give the anchor's values as a level)")
    trials = len(grid_points(search))
    if "num_samples" in search.model_fields_set and search.num_samples != trials:
        raise ConfigError(f"search.num_samples: a grid runs its {trials} cells x repeats, got {search.num_samples} "
                          f"(leave it out)")
    search.num_samples = trials


def parse_config(raw: dict[str, Any], source: str = "config") -> StudyConfig:
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(f"{source}: {format_error(err)}") from None
    if cfg.search is not None:
        try:
            check_search(cfg)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
    if cfg.rerun.full:  # checked now, not when a rerun starts hours later
        try:
            with_params(cfg, cfg.rerun.full)
        except ConfigError as err:
            raise ConfigError(f"{source}: rerun.full: {err}") from None
    return cfg


def load_config(path: str | Path, overrides: list[str] = ()) -> StudyConfig:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}:{where} not valid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    return parse_config(apply_overrides(raw, list(overrides)), str(path))
