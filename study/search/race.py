"""The confirm stage's race: seeds added in rounds, doubling, only where a trial's place is still undecided.

    round 1     every trial and the control run the first `seeds` fresh seeds (the same seeds for all)
    then        each trial's P(front) (analysis.verdicts.front_probability) and its verdict against the control on
                every objective; a trial is
                    on the front   P >= 0.95
                    off            P <= 0.05: dominated with probability >= 0.95
                    undecided      otherwise
                and a trial whose place is undecided, or any of whose verdicts is, gets its seed count doubled (at
                most max_seeds); the others leave the race (a trial off the front still owes its verdicts: the
                study ends with every trial's difference from the control)
                and the control runs as many seeds as the trial with the most, so that every difference is paired
    stop        when no trial is undecided, when none of the undecided can get more seeds, or when the next round
                would spend more than the budget; the result says which

The race is a pure function of what `run` returns, so a simulation with known truth can drive it (tests) and a resumed
study replays it from the runs it has (`run` answers those from disk) to the same decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from analysis import verdicts

Runs = dict[tuple[str, int], np.ndarray]  # (trial, seed) -> (k,) objective values; a failed run is absent


@dataclass
class RaceResult:
    seeds: dict[str, list[int]]  # trial -> the fresh seeds it ran (1, 2, ...)
    values: dict[str, np.ndarray]  # trial -> (s, k) its objective values at seeds 1..s_max (nan where none)
    p_front: dict[str, float]
    place: dict[str, str]  # front | off | undecided
    comparisons: dict[str, dict]  # trial -> {metric: difference from the control, interval, verdict}
    rounds: list[dict] = field(default_factory=list)
    runs: int = 0
    stopped: str = ""

    def fixed_runs(self) -> int:
        """Runs of a fixed stage that gives every trial as many seeds as the race's longest: what it would cost to
        decide as much without racing."""
        return len(self.seeds) * max(len(s) for s in self.seeds.values())


def _table(runs: Runs, trials: list[str], width: int, k: int) -> np.ndarray:
    """(n, width, k) values of the trials at seeds 1..width, nan where a run is missing."""
    out = np.full((len(trials), width, k), np.nan)
    for i, t in enumerate(trials):
        for s in range(1, width + 1):
            if (t, s) in runs:
                out[i, s - 1] = runs[(t, s)]
    return out


def race(trials: list[str], control: str | None, run: Callable[[list[tuple[str, int]]], Runs], metrics: list[str],
         modes: list[str], margins: list[float | None], seeds: int, max_seeds: int, budget: int) -> RaceResult:
    """Race `trials` (the control among them or not) as the module docstring says; `run(requests)` runs each
    (trial, seed) and returns the objective values of those that finished."""
    everyone = list(dict.fromkeys(trials + ([control] if control else [])))
    k = len(metrics)
    done: Runs = {}
    asked = {t: 0 for t in everyone}  # seeds asked for so far
    target = {t: seeds for t in everyone}
    place = {t: "undecided" for t in everyone}
    result = RaceResult({t: [] for t in everyone}, {}, {}, place, {})
    while True:
        want = [(t, s) for t in everyone for s in range(asked[t] + 1, target[t] + 1)]
        if not want:
            unsure = [t for t in everyone if place[t] == "undecided"
                      or any(c["verdict"] == "undecided" for c in result.comparisons.get(t, {}).values())]
            result.stopped = ("every place and verdict decided" if not unsure
                              else f"{len(unsure)} trial(s) with a place or verdict undecided at {max_seeds} seeds "
                                   f"(max_seeds)")
            break
        if result.runs + len(want) > budget:
            result.stopped = f"budget of {budget} runs spent ({result.runs} run; the next round needs {len(want)})"
            break
        done |= run(want)
        result.runs += len(want)
        for t in everyone:
            asked[t] = target[t]
        width = max(asked.values())
        table = _table(done, everyone, width, k)
        p = verdicts.front_probability(table, modes)
        if control:
            comparisons = verdicts.compare_with_control(table, table[everyone.index(control)], metrics, modes,
                                                        margins)
        else:
            comparisons = [{} for _ in everyone]
        for i, t in enumerate(everyone):
            place[t] = ("off" if p[i] <= 1 - verdicts.DECIDED else "front" if p[i] >= verdicts.DECIDED
                        else "undecided")
            unsure = any(c["verdict"] == "undecided" for c in comparisons[i].values()) if t != control else False
            if place[t] == "undecided" or unsure:
                target[t] = min(2 * asked[t], max_seeds)
        if control:  # the control runs every seed a trial runs, so that each difference is paired
            target[control] = max(target.values())
        result.rounds.append({"seeds": width, "runs": len(want),
                              "p_front": {t: float(p[i]) for i, t in enumerate(everyone)},
                              "place": dict(place)})
        result.p_front = {t: float(p[i]) for i, t in enumerate(everyone)}
        result.comparisons = {t: comparisons[i] for i, t in enumerate(everyone) if t != control and comparisons[i]}
        result.values = {t: table[i] for i, t in enumerate(everyone)}
    result.seeds = {t: [s for s in range(1, asked[t] + 1) if (t, s) in done] for t in everyone}
    return result
