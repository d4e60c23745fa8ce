"""The power plan of a study's confirm race, before anything is booked: for each objective with a margin, the paired
standard deviation per seed it expects, and the seeds the race needs to decide ±margin at that noise.

    expected sd   of (trial - control) on one seed, the difference the race's verdicts are built on. World tasks:
                  measured on the built-in world (WORLD_NOISE, with the command and date), scaled to the study's
                  fine-tuning seeds per run. GLUE tasks: sqrt(2) x the published spread of a task's score across
                  fine-tuning seeds where one is known (GLUE_SEED_SD, source named), else sqrt(2) x the sampling
                  error of the task's validation set, which is a floor: fine-tuning adds to it.
                  A suite's score is the mean of its tasks, so its sd is sqrt(sum of the tasks' variances) / tasks,
                  the tasks taken as independent.
    seeds needed  the fewest paired seeds n for which the race's "within ±m" verdict, the 95% Student-t interval of
                  the mean difference lying inside (-m, +m), comes out with probability >= 0.8 when the two trials
                  truly do not differ (two one-sided tests at 2.5%, Schuirmann 1987). Its power is exact for normal
                  differences: the mean is N(0, sd^2/n) and the sample sd is sd * chi(n-1)/sqrt(n-1), independent,
                  so the probability is one integral over the chi density (scipy.integrate.quad). Large n tends to
                  the normal-theory count (z_0.975 + z_0.90)^2 sd^2 / m^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import integrate, stats

from study.config import GlueConfig, StudyConfig, WorldTasksConfig

POWER = 0.8  # the probability of a decided "within" verdict that the plan asks of the race


@dataclass(frozen=True)
class TaskNoise:
    """A world task's paired difference per seed, split into what a study's settings can and cannot average:
    `distill` the students' own spread (one per seed, whatever the evaluation), `finetune` what one fine-tuning run
    adds (its seed, a run that stops short, the validation sample), which m fine-tuning runs per task cut by sqrt(m)."""

    distill: float
    finetune: float

    def sd(self, finetune_seeds: int) -> float:
        return math.sqrt(self.distill ** 2 + self.finetune ** 2 / finetune_seeds)


# Measured on the smoke study's two anchors (paper_mixup - plain_kd), 6 distillation seeds x 2 fine-tuning runs each,
# with the world's recipe (WorldTasksConfig's defaults), 2026-12-04: the components of
# `python benchmarks/objective_noise.py --grid --seeds 6 --finetune-runs 2` (world_cola on the 40,000-example
# validation sets, of its 0.30 the validation draw 0.11; world_sts on 10,000, --set eval.world.tasks=[world_sts]).
WORLD_NOISE: dict[str, TaskNoise] = {
    "world_cola": TaskNoise(distill=0.27, finetune=0.30),
    "world_sts": TaskNoise(distill=1.44, finetune=1.81),
}
WORLD_RECIPE = WorldTasksConfig()  # the recipe WORLD_NOISE was measured with

# A GLUE task's score spread across fine-tuning seeds of one model, where a study has published it.
GLUE_SEED_SD: dict[str, tuple[float, str]] = {
    "mnli": (0.24, "McCoy et al. 2020, BERT-base, 100 seeds"),
    "rte": (2.4, "Mosbach et al. 2021, BERT-large, 25 seeds, their stable recipe"),
    "mrpc": (0.8, "Mosbach et al. 2021, BERT-large, 25 seeds, their stable recipe"),
    "cola": (1.0, "Mosbach et al. 2021, BERT-large, 25 seeds, their stable recipe"),
}
# Validation examples of each GLUE task (MNLI: matched + mismatched, whose accuracies are averaged) and the score a
# BERT-base reaches there (Devlin et al. 2019's dev figures, rounded), for the sampling error of the score.
GLUE_VALIDATION: dict[str, tuple[int, float]] = {
    "cola": (1043, 0.55), "sst2": (872, 0.92), "mrpc": (408, 0.87), "qqp": (40430, 0.90), "stsb": (1500, 0.88),
    "mnli": (19647, 0.84), "qnli": (5463, 0.91), "rte": (277, 0.67), "wnli": (71, 0.56),
}


def within_power(n: int, sd: float, margin: float, level: float = 0.95) -> float:
    """P(the `level` t-interval of the mean of n paired differences lies inside (-margin, +margin)) when their true
    mean is 0 and their sd is `sd` (the module docstring's integral)."""
    if n < 2:
        return 0.0
    t = stats.t.ppf(0.5 + level / 2, n - 1)
    chi = stats.chi(n - 1)

    def given_s(u: float) -> float:  # u = sample sd / sd * sqrt(n - 1), chi-distributed
        room = margin - t * sd * u / math.sqrt(n - 1) / math.sqrt(n)  # what the half-width leaves to the mean
        return chi.pdf(u) * max(0.0, 2 * stats.norm.cdf(room * math.sqrt(n) / sd) - 1)

    upper = margin * math.sqrt(n - 1) * math.sqrt(n) / (t * sd)  # beyond it the half-width alone exceeds the margin
    return float(integrate.quad(given_s, 0, upper, limit=200)[0])


def seeds_needed(sd: float, margin: float, power: float = POWER, most: int = 1000) -> int | None:
    """The fewest paired seeds whose "within ±margin" verdict has `power` at true difference 0; None beyond `most`."""
    n = max(2, math.ceil((stats.norm.ppf(0.975) + stats.norm.ppf(0.5 + power / 2)) ** 2 * sd ** 2 / margin ** 2))
    while n <= most:  # the normal-theory count is a lower bound: the t-interval is wider
        if within_power(n, sd, margin) >= power:
            return n
        n += 1
    return None


def world_task_sd(recipe: WorldTasksConfig, task: str) -> tuple[float | None, str]:
    """(paired sd per seed of world/<task>, where it comes from); None where this study's recipe is not the one
    measured."""
    noise = WORLD_NOISE.get(task)
    if noise is None:
        return None, "not measured"
    same = recipe.model_dump(exclude={"tasks", "seeds", "seed"}) == WORLD_RECIPE.model_dump(
        exclude={"tasks", "seeds", "seed"})
    if not same:
        return None, "measured for the world's own recipe (eval.world's defaults), not this study's"
    return noise.sd(recipe.seeds), f"measured on the world, {recipe.seeds} fine-tuning run(s) per task"


def glue_task_sd(recipe: GlueConfig, task: str) -> tuple[float, str]:
    """(paired sd per seed of glue/<task> with the recipe's fine-tuning seeds per task, its source)."""
    if task in GLUE_SEED_SD:
        sd, source = GLUE_SEED_SD[task]
        return math.sqrt(2) * sd / math.sqrt(recipe.seeds), source
    n, p = GLUE_VALIDATION[task]
    sampling = 100 * math.sqrt(p * (1 - p) / n) * (2 if task == "cola" else 1)  # MCC ~ 2 x accuracy's scale
    return math.sqrt(2) * sampling, f"validation sampling of {n} examples only (a floor)"


def suite_sd(cfg: StudyConfig, metric: str) -> tuple[float | None, str]:
    """(paired sd per seed of a `<suite>/score` or `<suite>/<task>` objective, its sources)."""
    suite, _, name = metric.partition("/")
    if suite not in ("world", "glue"):
        return None, "no noise model for this metric"
    recipe = cfg.eval.world if suite == "world" else cfg.eval.glue
    one = world_task_sd if suite == "world" else glue_task_sd
    tasks = recipe.tasks if name == "score" else [name]
    found = [(task, *one(recipe, task)) for task in tasks]
    if any(sd is None for _, sd, _ in found):
        return None, "; ".join(f"{task}: {source}" for task, sd, source in found if sd is None)
    sd = float(np.sqrt(sum(s ** 2 for _, s, _ in found)) / len(found))
    return sd, "; ".join(f"{task} {s:.2f} ({source})" for task, s, source in found)


def power_lines(cfg: StudyConfig) -> list[str]:
    """The dry run's power plan: per objective with a margin, its expected sd, the seeds a decided verdict needs,
    and a warning where the race (max_seeds, its budget) cannot reach them."""
    search = cfg.search
    lines = []
    for objective in search.objectives:
        if objective.margin is None:
            continue
        sd, source = suite_sd(cfg, objective.metric)
        if sd is None:
            lines.append(f"  power    {objective.metric} ±{objective.margin:g}: paired sd unknown ({source})")
            continue
        n = seeds_needed(sd, objective.margin)
        lines.append(f"  power    {objective.metric} ±{objective.margin:g}: paired sd {sd:.2f} per seed ({source}); "
                     f"a decided verdict needs {n or '> 1000'} paired seeds (P >= {POWER:g} at no true difference)")
        confirm = search.confirm
        if confirm is None:
            continue
        if n is None or n > confirm.max_seeds:
            lines.append(f"  WARNING  confirm.max_seeds {confirm.max_seeds} is below the {n or '> 1000'} seeds "
                         f"{objective.metric} needs: its verdicts will mostly stay undecided")
        elif confirm.budget is not None and confirm.budget < n:
            lines.append(f"  WARNING  confirm.budget {confirm.budget} runs per trial is below the {n} seeds "
                         f"{objective.metric} needs: its verdicts will mostly stay undecided")
    return lines
