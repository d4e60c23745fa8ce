"""The search space and the sampler: the YAML's space as Optuna's define-by-run function, the sampler it names, and
Ray's Optuna searcher over the study's Optuna storage (optuna.db in the study folder)."""

from __future__ import annotations

import functools
import json
import threading
import warnings

import optuna
from ray.tune.search.optuna import OptunaSearch

from study.config import REPLICATE, ParamSpec, SamplerConfig, SearchConfig, StudyConfig
from study.design import grid_points


def suggest(trial: optuna.Trial, space: dict[str, ParamSpec], repeats: int = 1) -> None:
    """Define-by-run space: each parameter in YAML order, a conditional one only when its condition holds; with
    repeats, the replicate too (a grid's trials all come enqueued, so these only say what each param is).

    Module-level (with its space bound by functools.partial) because Ray pickles it with the searcher."""
    chosen: dict = {}
    for name, spec in space.items():
        if any(k not in chosen or chosen[k] not in values for k, values in spec.condition().items()):
            continue
        if spec.levels() is not None:
            chosen[name] = trial.suggest_categorical(name, spec.levels())
        elif spec.type == "int":
            chosen[name] = trial.suggest_int(name, int(spec.low), int(spec.high), log=spec.log,
                                             step=int(spec.step or 1))
        else:
            chosen[name] = trial.suggest_float(name, spec.low, spec.high, log=spec.log, step=spec.step)
    if repeats > 1:
        trial.suggest_categorical(REPLICATE, list(range(repeats)))


class NSGAIISampler(optuna.samplers.NSGAIISampler):
    """Optuna's NSGA-II, made picklable. Ray pickles the searcher with its sampler (the Tuner's saved state, from
    which --resume restores it); Optuna 5.1 gave the genetic samplers a threading.Lock, which pickle refuses ("cannot
    pickle '_thread.lock' object" as the Tuner starts). The lock guards a cache within one process, so a copy gets a
    new one."""

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state.pop("_thread_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._thread_lock = threading.Lock()


def make_sampler(cfg: SamplerConfig) -> optuna.samplers.BaseSampler:
    """The Optuna sampler the YAML names. A grid's trials are all enqueued (make_searcher), so its sampler (random)
    proposes nothing while the grid lasts."""
    if cfg.name == "nsga2":
        return NSGAIISampler(population_size=cfg.population_size, seed=cfg.seed)
    if cfg.name == "tpe":  # multi-objective TPE needs the joint (multivariate) model
        return optuna.samplers.TPESampler(multivariate=True, n_startup_trials=cfg.n_startup_trials, seed=cfg.seed)
    if cfg.name == "gp":
        return optuna.samplers.GPSampler(n_startup_trials=cfg.n_startup_trials, seed=cfg.seed)
    return optuna.samplers.RandomSampler(seed=cfg.seed)


def make_searcher(cfg: StudyConfig, storage: optuna.storages.BaseStorage) -> OptunaSearch:
    """Ray's Optuna searcher over the study's Optuna study in `storage` (optuna.db in the study folder). The study is
    created here first, with its objectives' directions and names, so that optuna-dashboard labels its axes with
    kdstudy's metric names; OptunaSearch loads it (load_if_exists)."""
    search = cfg.search
    metrics, modes = [o.key for o in search.objectives], [o.mode for o in search.objectives]
    named = optuna.create_study(storage=storage, study_name=cfg.name, load_if_exists=True,
                                directions=["minimize" if m == "min" else "maximize" for m in modes])
    with warnings.catch_warnings():  # "experimental" since Optuna 3.2, and what the dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        named.set_metric_names(metrics)
    sampler = make_sampler(search.sampler)
    return OptunaSearch(
        space=functools.partial(suggest, space=dict(search.space), repeats=search.repeats), metric=metrics, mode=modes,
        sampler=sampler, points_to_evaluate=planned_points(search) or None, study_name=cfg.name, storage=storage)


def planned_points(search: SearchConfig) -> list[dict]:
    """The trials fixed before any is sampled: the anchors; in a grid, every cell x replicate (study.design).

    A grid goes through Ray's points_to_evaluate rather than Optuna's GridSampler: OptunaSearch enqueues the points in
    the Optuna study (optuna.db), each new trial takes the oldest waiting one, and num_samples is their number, so the
    cells run in the design's order and each once; a resumed study continues with the cells still waiting. GridSampler
    (Optuna 5) crosses every parameter it is given, a conditional one too, and so would run a cell once per level of
    a parameter that has no effect in it; BruteForceSampler follows a conditional space but in a shuffled order, and
    neither knows a fractional design or paired replicates."""
    if search.sampler.name == "grid":
        return grid_points(search)
    return [a.params for a in search.anchors]


def requeue_lost_points(cfg: StudyConfig, storage: optuna.storages.BaseStorage, known: list[dict]) -> list[dict]:
    """A resumed grid: the cells handed out to a Tune trial that Tune's saved state does not hold (the driver was
    killed between the two) are failed in Optuna and enqueued again, so that they run and nothing else does. `known`:
    the configs of the trials in Tune's state. Without this, Tune would ask for one trial more than there are waiting
    cells, and the sampler would propose a cell of its own (possibly a repeat). Returns the cells enqueued again."""
    study = optuna.load_study(study_name=cfg.name, storage=storage)
    remaining = [json.dumps(c, sort_keys=True) for c in known]
    lost = []
    for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        params = trial.params or trial.system_attrs.get("fixed_params", {})  # asked, not yet suggested: still fixed
        key = json.dumps(params, sort_keys=True)
        if key in remaining:
            remaining.remove(key)  # Tune restores this trial and tells Optuna when it ends
            continue
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        study.enqueue_trial(params)
        lost.append(params)
    return lost

