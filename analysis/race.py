"""The confirm stage's race: seeds added in rounds, doubling, only where a trial's place is still undecided.

    round 1     every trial and the control run the first `seeds` seeds (the same seeds for all)
    then        each trial's P(front) (analysis.verdicts.front_probability), its place (front, off or undecided:
                analysis.verdicts.place; off also when another trial outdoes it within the margins,
                analysis.verdicts.outdone_by) and its verdict against the control on every objective;
                a trial whose place is undecided, or any of whose verdicts is, gets its seed count doubled (at
                most max_seeds); the others leave the race (a trial off the front still owes its verdicts: the
                study ends with every trial's difference from the control)
                and the control runs every seed a trial runs, so that every difference is paired
    stop        when no trial is undecided, when none of the undecided can get more seeds, or when the next round
                would spend more than the budget; the result says which

Which seeds count: seed 0 is the search's own run. A trial picked for the race by its value has it left out: it is the
draw that got the trial picked, and picking the best of noisy draws inflates it; its seeds are 1, 2, .... A trial that
races whatever its value (an anchor, the control) counts its search run as seed 0, handed in as `given`, and runs 1, 2,
... after it: the same number of seeds for one run less. Seed k is the same seed for every trial, so a difference is
taken seed by seed over the seeds both have.

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
    seeds: dict[str, list[int]]  # trial -> the seeds that count for it (0 if given, then 1, 2, ...)
    values: dict[str, np.ndarray]  # trial -> (s, k) its objective values at the race's seeds, in order (nan: none)
    p_front: dict[str, float]
    place: dict[str, str]  # front | off | undecided
    outdone_by: dict[str, str]  # trial -> the trial that outdoes it within the margins (its place is off)
    comparisons: dict[str, dict]  # trial -> {metric: difference from the control, interval, verdict}
    rounds: list[dict] = field(default_factory=list)
    runs: int = 0
    stopped: str = ""
    control: str | None = None
    given: list[tuple[str, int]] = field(default_factory=list)  # the runs handed in, not run by the race

    def fixed_runs(self) -> int:
        """Runs of a fixed stage that gives every trial as many seeds as the race's longest (the control all that
        the others run), the given runs reused: what it would cost to decide as much without racing."""
        others = [t for t in self.seeds if t != self.control] or list(self.seeds)
        most = max(len(self.seeds[t]) for t in others)
        first = {t: 0 if (t, 0) in self.given else 1 for t in self.seeds}
        want = {t: most for t in self.seeds}
        if self.control in self.seeds:
            want[self.control] = max(first[t] + most for t in self.seeds) - first[self.control]
        return sum(want.values()) - len(self.given)


def _table(runs: Runs, trials: list[str], columns: range, k: int) -> np.ndarray:
    """(n, len(columns), k) values of the trials at the seeds in `columns`, nan where a run is missing."""
    out = np.full((len(trials), len(columns), k), np.nan)
    for i, t in enumerate(trials):
        for j, s in enumerate(columns):
            if (t, s) in runs:
                out[i, j] = runs[(t, s)]
    return out


def race(trials: list[str], control: str | None, run: Callable[[list[tuple[str, int]]], Runs], metrics: list[str],
         modes: list[str], margins: list[float | None], seeds: int, max_seeds: int, budget: int,
         given: Runs | None = None) -> RaceResult:
    """Race `trials` (the control among them or not) as the module docstring says; `run(requests)` runs each
    (trial, seed) and returns the objective values of those that finished. `given`: {(trial, 0): values} of the
    trials whose search run counts as their seed 0 (never asked for again, nor counted against the budget)."""
    everyone = list(dict.fromkeys(trials + ([control] if control else [])))
    k = len(metrics)
    given = {key: v for key, v in (given or {}).items() if key[0] in everyone and key[1] == 0}
    done: Runs = dict(given)
    first = {t: 0 if (t, 0) in given else 1 for t in everyone}  # the first seed that counts for each trial
    asked = set(given)
    target = {t: seeds for t in everyone}  # seeds wanted so far, counted from first[t]
    place = {t: "undecided" for t in everyone}
    result = RaceResult({t: [] for t in everyone}, {}, {}, place, {}, {}, control=control, given=sorted(given))
    while True:
        if control:  # the control runs every seed a trial runs, so that each difference is paired
            target[control] = max(target[control], max(first[t] + target[t] for t in everyone) - first[control])
        want = [(t, s) for t in everyone for s in range(first[t], first[t] + target[t]) if (t, s) not in asked]
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
        asked |= set(want)
        ran = max(target.values())
        columns = range(min(first.values()), max(first[t] + target[t] for t in everyone))
        table = _table(done, everyone, columns, k)
        p = verdicts.front_probability(table, modes)
        outdone = verdicts.outdone_by(table, modes, margins)
        result.outdone_by = {t: everyone[u] for t, u in zip(everyone, outdone) if u is not None}
        if control:
            comparisons = verdicts.compare_with_control(table, table[everyone.index(control)], metrics, modes,
                                                        margins)
        else:
            comparisons = [{} for _ in everyone]
        result.p_front = {t: float(p[i]) for i, t in enumerate(everyone)}
        for i, t in enumerate(everyone):
            place[t] = verdicts.place(p[i], outdone[i] is not None)
            unsure = any(c["verdict"] == "undecided" for c in comparisons[i].values()) if t != control else False
            if place[t] == "undecided" or unsure:
                target[t] = min(2 * target[t], max_seeds)
        result.rounds.append({"seeds": ran, "runs": len(want), "p_front": dict(result.p_front), "place": dict(place)})
        result.comparisons = {t: comparisons[i] for i, t in enumerate(everyone) if t != control and comparisons[i]}
        result.values = {t: table[i] for i, t in enumerate(everyone)}
    result.seeds = {t: [s for u, s in sorted(done) if u == t] for t in everyone}
    return result
