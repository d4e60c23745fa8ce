"""What each factor of a grid study does: main effects and named interactions with 95% intervals, an ANOVA table, and
a figure of the level means.

Terms (y is one objective; a run is one cell at one replicate seed s):
- grand mean: the mean of y over the runs at seed s, then over seeds.
- main effect of level l of factor F: the mean of y over the runs at seed s with F = l, minus that seed's grand
  mean, then the mean over seeds. Paired over seeds: every cell ran with the same seeds, so a seed's shared shift
  (its initialisation, its data order) cancels within the seed.
- interaction of levels (a, b) of factors A x B: mean(A=a, B=b) - mean(A=a) - mean(B=b) + grand, per seed, then the
  mean over seeds (the two-way interaction of a balanced design; 0 when the effects of A and B add).
- 95% interval: effect +- t(0.975, df_res) * sqrt(MS_res * sum_i w_i^2), where the effect is the linear combination
  sum_i w_i y_i of the runs (w_i = [run i has level l] / n_l - 1 / N for a main effect, and the four-term analogue
  for an interaction) and MS_res, df_res are the ANOVA's residual (below). The residual pools the seed-to-seed noise
  with every interaction the model leaves out, over many degrees of freedom: a fractional design run at one or two
  seeds still gets usable intervals (a t interval over 2 seeds has t(0.975, 1) = 12.7), and they are conservative
  where a left-out interaction is real. With no residual degree of freedom there is no interval (nan).
- ANOVA: sums of squares of the balanced design, computed with numpy (Montgomery, Design and Analysis of
  Experiments, ch. 5): SS(F) = sum over levels of n_l (mean_l - grand)^2, SS(A x B) = sum over cells of n_ab
  (interaction_ab)^2, the seeds as a block, the residual what is left of SS(total); share = SS / SS(total); F against
  the residual mean square, p from scipy.stats.f. In a balanced (orthogonal) design these sums of squares do not
  depend on the order of the terms; `balanced` says whether the design was (each pair of factors crossed equally
  often). In a fractional design an effect is clear of the others only up to its aliases (study.design).

The input is a list of runs, `{"params": {factor: level}, "seed": k, "metrics": {metric: value}}`: what
`study_runs` reads from a study's MLflow runs, or what a test builds directly.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter

import numpy as np
from rich.table import Table
from scipy import stats

ABSENT = "-"  # a conditional factor's level in the cells where its condition fails


def study_runs(record) -> list[dict]:
    """The finished trials of a study read back (analysis.runs.StudyRecord), in the input form of `effects`."""
    from study.config import REPLICATE
    from study.record.tracking import PARAMS_JSON

    runs = []
    for trial in record.finished()[0]:
        params = json.loads(trial.tags[PARAMS_JSON]) if PARAMS_JSON in trial.tags else dict(trial.params)
        seed = int(params.pop(REPLICATE, 0))
        runs.append({"params": params, "seed": seed, "metrics": trial.metrics})
    return runs


def _level(run: dict, factor: str):
    return run["params"].get(factor, ABSENT)


def _is(factor: str, level):
    """The runs at this level of the factor, as a predicate."""
    return lambda r: _level(r, factor) == level


def _levels(runs: list[dict], factor: str) -> list:
    found = list(dict.fromkeys(_level(r, factor) for r in runs))
    return sorted(found, key=lambda v: (isinstance(v, str), v if not isinstance(v, str) else str(v)))


def effects(runs: list[dict], factors: list[str], metric: str, interactions=()) -> dict:
    """Main effects, interactions and ANOVA of `metric` over `runs`: a JSON-ready dict (see the module docstring)."""
    runs = [r for r in runs if metric in r["metrics"] and np.isfinite(r["metrics"][metric])]
    factors = [f for f in factors if len(_levels(runs, f)) > 1]  # a factor held fixed has no effect to read
    seeds = sorted({r["seed"] for r in runs})
    by_seed = {s: [r for r in runs if r["seed"] == s] for s in seeds}
    y = {s: np.array([r["metrics"][metric] for r in by_seed[s]]) for s in seeds}
    grand = {s: float(y[s].mean()) for s in seeds}

    def seedwise(select, combine) -> dict:
        """The mean over seeds of `combine` of one seed's means, over the seeds where every mean it needs exists."""
        values = []
        for s in seeds:
            means = {}
            for key, keep in select.items():
                picked = [r["metrics"][metric] for r in by_seed[s] if keep(r)]
                if not picked:
                    break
                means[key] = float(np.mean(picked))
            else:
                values.append(combine(means, grand[s]))
        return {"mean": float(np.mean(values)), "n": len(values)} if values else {"mean": float("nan"), "n": 0}

    out = {"metric": metric, "runs": len(runs), "seeds": len(seeds), "grand_mean": float(np.mean(list(grand.values()))),
           "main": {}, "interactions": {}}
    named = [p for p in interactions if p[0] in factors and p[1] in factors]
    out["anova"], out["balanced"] = anova(runs, factors, metric, named)
    residual = next(r for r in out["anova"] if r["source"] == "residual")
    ms_res = residual["ss"] / residual["df"] if residual["df"] > 0 else float("nan")
    t = float(stats.t.ppf(0.975, residual["df"])) if residual["df"] > 0 else float("nan")

    def half_width(*terms) -> float:
        """t * the standard error of sum_i w_i y_i, w_i = sum over (sign, selector) of sign * [selected] / count."""
        w = np.zeros(len(runs))
        for sign, keep in terms:
            selected = np.array([keep(r) for r in runs], dtype=float)
            w += sign * selected / selected.sum()
        return t * float(np.sqrt(ms_res * (w ** 2).sum()))

    def every(r) -> bool:
        return True

    for f in factors:
        out["main"][f] = {}
        for level in _levels(runs, f):
            keep = _is(f, level)
            s = seedwise({"l": keep}, lambda m, g: m["l"] - g)
            out["main"][f][str(level)] = _effect(s, half_width((1, keep), (-1, every)), out["grand_mean"])
    for a, b in named:
        name = f"{a} x {b}"
        out["interactions"][name] = {}
        for la, lb in itertools.product(_levels(runs, a), _levels(runs, b)):
            keep_a, keep_b = _is(a, la), _is(b, lb)

            def keep_ab(r, keep_a=keep_a, keep_b=keep_b) -> bool:
                return keep_a(r) and keep_b(r)

            s = seedwise({"ab": keep_ab, "a": keep_a, "b": keep_b}, lambda m, g: m["ab"] - m["a"] - m["b"] + g)
            if s["n"] == 0:  # a combination the fraction does not run
                continue
            half = half_width((1, keep_ab), (-1, keep_a), (-1, keep_b), (1, every))
            out["interactions"][name][f"{la} | {lb}"] = _effect(s, half, None)
    return out


def _effect(summary: dict, half: float, grand: float | None) -> dict:
    row = {"effect": summary["mean"], "ci_low": summary["mean"] - half, "ci_high": summary["mean"] + half,
           "seeds": summary["n"]}
    if grand is not None:
        row["mean"] = grand + summary["mean"]
    return row


def anova(runs: list[dict], factors: list[str], metric: str, interactions) -> tuple[list[dict], bool]:
    """The ANOVA rows (source, df, SS, share of SS total, F, p) of the balanced design, and whether it was balanced."""
    y = np.array([r["metrics"][metric] for r in runs], dtype=float)
    grand = y.mean()
    total = float(((y - grand) ** 2).sum())
    rows = []

    def means(key) -> dict:
        groups: dict = {}
        for r, v in zip(runs, y):
            groups.setdefault(key(r), []).append(v)
        return {k: (float(np.mean(v)), len(v)) for k, v in groups.items()}

    terms = [(f, lambda r, f=f: _level(r, f)) for f in factors]
    if len({r["seed"] for r in runs}) > 1:
        terms.append(("seed (block)", lambda r: r["seed"]))
    for name, key in terms:
        m = means(key)
        rows.append({"source": name, "df": len(m) - 1, "ss": sum(n * (mu - grand) ** 2 for mu, n in m.values())})
    for a, b in interactions:
        ma, mb = means(lambda r, a=a: _level(r, a)), means(lambda r, b=b: _level(r, b))
        mab = means(lambda r, a=a, b=b: (_level(r, a), _level(r, b)))
        ss = sum(n * (mu - ma[la][0] - mb[lb][0] + grand) ** 2 for (la, lb), (mu, n) in mab.items())
        rows.append({"source": f"{a} x {b}", "df": (len(ma) - 1) * (len(mb) - 1), "ss": ss})
    df_res = len(y) - 1 - sum(r["df"] for r in rows)
    ss_res = max(total - sum(r["ss"] for r in rows), 0.0)
    ms_res = ss_res / df_res if df_res > 0 else float("nan")
    for r in rows:
        r["share"] = r["ss"] / total if total > 0 else float("nan")
        r["F"] = (r["ss"] / r["df"]) / ms_res if df_res > 0 and r["df"] > 0 and ms_res > 0 else float("nan")
        r["p"] = float(stats.f.sf(r["F"], r["df"], df_res)) if np.isfinite(r["F"]) else float("nan")
    rows.append({"source": "residual", "df": df_res, "ss": ss_res,
                 "share": ss_res / total if total > 0 else float("nan"), "F": float("nan"), "p": float("nan")})
    rows.append({"source": "total", "df": len(y) - 1, "ss": total, "share": 1.0, "F": float("nan"), "p": float("nan")})
    return rows, _balanced(runs, factors)


def _balanced(runs: list[dict], factors: list[str]) -> bool:
    """Every factor's levels equally often, and every pair of factors crossed in proportion (orthogonal)."""
    n = len(runs)
    for f in factors:
        if len(set(Counter(_level(r, f) for r in runs).values())) > 1:
            return False
    for a, b in itertools.combinations(factors, 2):
        ca, cb = Counter(_level(r, a) for r in runs), Counter(_level(r, b) for r in runs)
        cab = Counter((_level(r, a), _level(r, b)) for r in runs)
        if any(cab.get((la, lb), 0) * n != ca[la] * cb[lb] for la in ca for lb in cb):
            return False
    return True


def missing_cells(record) -> list[dict]:
    """The grid's (cell, replicate) points that no finished trial ran (failed ones, or a study stopped early). Empty
    for a complete grid, and for a sampled study: its space has ranges, not cells."""
    from study.config import REPLICATE
    from study.design import grid_points

    if record.config.search.sampler.name != "grid":
        return []
    ran = {json.dumps({**r["params"], REPLICATE: r["seed"]}, sort_keys=True) for r in study_runs(record)}
    points = grid_points(record.config.search)
    return [p for p in points if json.dumps({REPLICATE: 0, **p}, sort_keys=True) not in ran]


def study_effects(record) -> dict[str, dict]:
    """`effects` of every objective of a study read back, over its search space's factors and named interactions."""
    search = record.config.search
    runs = study_runs(record)
    return {m: effects(runs, list(search.space), m, [tuple(p) for p in search.interactions]) for m in record.metrics}


# --- tables and the figure ---------------------------------------------------------------------------------------


def _interval(row: dict) -> str:
    if not np.isfinite(row.get("ci_low", float("nan"))):
        return f"{row['effect']:+.4g}"
    return f"{row['effect']:+.4g} [{row['ci_low']:+.4g}, {row['ci_high']:+.4g}]"


def effects_tables(found: dict[str, dict], title: str) -> list[Table]:
    """Per objective: the effects table (main effects, then interactions) and the ANOVA table."""
    tables = []
    for metric, e in found.items():
        t = Table(title=f"{title}: {metric} (grand mean {e['grand_mean']:.4g}, {e['runs']} runs, {e['seeds']} seeds)",
                  caption="effect = level mean - grand mean, paired over seeds [95% interval from the ANOVA residual]")
        for column in ("factor", "level", "mean", "effect [95% interval]"):
            t.add_column(column, overflow="fold")
        for f, levels in e["main"].items():
            for level, row in levels.items():
                t.add_row(f, level, f"{row['mean']:.4g}", _interval(row))
        for name, cells in e["interactions"].items():
            for cell, row in cells.items():
                t.add_row(name, cell, "", _interval(row))
        unbalanced = "" if e["balanced"] else " (design not balanced: approximate)"
        a = Table(title=f"{title}: ANOVA of {metric}{unbalanced}",
                  caption="share = the source's sum of squares over the total")
        for column in ("source", "df", "SS", "share", "F", "p"):
            a.add_column(column, justify="left" if column == "source" else "right", overflow="fold")
        for r in e["anova"]:
            a.add_row(r["source"], str(r["df"]), f"{r['ss']:.4g}", f"{r['share']:.3f}",
                      "" if not np.isfinite(r["F"]) else f"{r['F']:.3g}", "" if not np.isfinite(r["p"]) else
                      f"{r['p']:.3g}")
        tables += [t, a]
    return tables


def effects_figure(found: dict[str, dict], title: str):
    """A row per objective, a panel per factor: each level's mean with its 95% interval, the grand mean dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    factors = list(dict.fromkeys(f for e in found.values() for f in e["main"]))
    width = max(6.0, 3.2 * len(factors))  # the title must fit over a single panel
    fig, axes = plt.subplots(len(found), max(1, len(factors)), figsize=(width, 2.8 * len(found)),
                             layout="constrained", squeeze=False, sharey="row")
    for row, (metric, e) in zip(axes, found.items()):
        for ax, f in zip(row, factors):
            levels = e["main"].get(f, {})
            x = np.arange(len(levels))
            mean = np.array([v["mean"] for v in levels.values()])
            low = np.array([v["mean"] - v["effect"] + v["ci_low"] for v in levels.values()])
            high = np.array([v["mean"] - v["effect"] + v["ci_high"] for v in levels.values()])
            ax.errorbar(x, mean, yerr=np.vstack([mean - low, high - mean]), fmt="o-", capsize=3, c="tab:blue")
            ax.axhline(e["grand_mean"], c="0.6", ls="--", lw=1)
            ax.set_xticks(x, list(levels), fontsize=8)
            ax.set_title(f.split(".")[-1], fontsize=9)
        row[0].set_ylabel(metric, fontsize=9)
    fig.suptitle(title, fontsize=10)
    return fig
