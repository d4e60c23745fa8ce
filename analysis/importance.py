"""What drives each objective: per-objective hyperparameter importance over a study's finished trials, and whether
there is anything to attribute at all.

fANOVA (Hutter, Hoos & Leyton-Brown 2014) as Optuna computes it (`optuna.importance.get_param_importances` with
`FanovaImportanceEvaluator`, seeded): the share of an objective's variance over the trials that each parameter
explains, summing to 1 per objective. Only parameters every finished trial has are assessed (Optuna's rule), so a
conditional one (mixup's alpha, sampled only under mixup) is left out and its parent (the mode) speaks for it.

Shares sum to 1 even when the objective only varies by noise, so two checks come first:
    spread vs noise   is the objective's spread over the trials more than its noise? Under "every trial the same",
                      sum_i (y_i - mean)^2 / noise^2 is chi-square with n - 1 degrees of freedom (Cochran's Q with a
                      common variance); p > 0.05 says the spread is within the noise, and no importance is reported.
                      The noise is the confirm stage's within-trial seed sd (distillation and fine-tuning seeds) where
                      the study has one, else the trials' own standard errors, which leave out the distillation seed
    permutation null  each parameter's unnormalised fANOVA variance against the same computed with the objective's
                      values shuffled over the trials (a permutation test): p = (1 + #null >= observed) / (1 + P)
"""

from __future__ import annotations

import warnings

import numpy as np
import optuna
from rich.table import Table
from scipy import stats

PERMUTATIONS = 39  # the smallest p a permutation test can give is 1 / 40 = 0.025


def importances(study: optuna.Study, metrics: list[str], seed: int = 0) -> dict[str, dict[str, float]]:
    """{objective metric: {param: importance}} over the study's complete trials; empty when fewer than two trials
    finished or no parameter varied (nothing to attribute)."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    if len(complete) < 2:
        return {}
    out = {}
    for i, metric in enumerate(metrics):
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
        try:
            found = optuna.importance.get_param_importances(study, evaluator=evaluator,
                                                            target=lambda t, i=i: t.values[i])
        except (RuntimeError, ValueError):  # no parameter common to all trials, or none that varies
            return {}
        out[metric] = {name: float(value) for name, value in found.items()}
    return out


def spread_vs_noise(values: np.ndarray, noise_sd: float) -> dict[str, float]:
    """The trials' spread of one objective against its noise (module docstring): sds, the statistic and its p."""
    values = np.asarray(values, dtype=float)
    q = float(((values - values.mean()) ** 2).sum() / noise_sd**2) if noise_sd > 0 else float("inf")
    return {"spread_sd": float(values.std(ddof=1)), "noise_sd": float(noise_sd), "q": q,
            "p_value": float(stats.chi2.sf(q, len(values) - 1))}


def permutation_p_values(study: optuna.Study, index: int, permutations: int = PERMUTATIONS,
                         seed: int = 0) -> dict[str, float]:
    """{param: p} of each parameter's fANOVA variance for objective `index` against shuffled objective values."""
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    values = {t.number: t.values[index] for t in complete}

    def variances(mapping) -> dict[str, float]:
        with warnings.catch_warnings():  # normalize=False is "experimental" in Optuna 5
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=seed),
                target=lambda t: mapping[t.number], normalize=False)

    observed = variances(values)
    rng = np.random.default_rng(seed)
    numbers = list(values)
    exceed = {p: 0 for p in observed}
    for _ in range(permutations):
        shuffled = dict(zip(numbers, rng.permutation([values[n] for n in numbers])))
        null = variances(shuffled)
        for p in observed:
            exceed[p] += null.get(p, 0.0) >= observed[p]
    return {p: (1 + exceed[p]) / (1 + permutations) for p in observed}


def study_importances(record, permutations: int = PERMUTATIONS) -> dict[str, dict]:
    """Per objective of a study read back (analysis.runs.StudyRecord): its spread against its noise, and, where
    the spread is more than noise, each parameter's fANOVA share with its permutation p-value. {} when there is
    too little to attribute."""
    from study.record.optuna_store import optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ot_study = optuna.load_study(study_name=record.name, storage=optuna_storage(record.directory))
    shares = importances(ot_study, record.metrics)
    if not shares:
        return {}
    trials, values = record.finished()
    out = {}
    for j, metric in enumerate(record.metrics):
        confirm_sd = [r.metrics.get(f"{metric}/std") for r in record.confirm_runs.values()]
        confirm_sd = [s for s in confirm_sd if s is not None and np.isfinite(s)]
        if confirm_sd:  # pooled: the root of the mean variance over the raced trials
            noise, source = float(np.sqrt(np.mean(np.square(confirm_sd)))), "the confirm stage's seeds"
        else:
            noise, source = float(np.nanmedian(record.errors(trials)[:, j])), "the trials' standard errors"
        spread = spread_vs_noise(values[:, j], noise) | {"noise_from": source}
        row = {"spread": spread, "noise": spread["p_value"] > 0.05, "importance": {}, "p_value": {}}
        if not row["noise"] and np.isfinite(noise):
            row["importance"] = shares[metric]
            row["p_value"] = permutation_p_values(ot_study, j, permutations)
        out[metric] = row
    return out


def noise_lines(found: dict[str, dict]) -> list[str]:
    """A plain sentence for each objective whose spread over the trials is within its noise."""
    return [f"{metric}: its spread over the trials (sd {r['spread']['spread_sd']:.3g}) is within its noise (sd "
            f"{r['spread']['noise_sd']:.3g}, from {r['spread']['noise_from']}; chi-square p "
            f"{r['spread']['p_value']:.2f}): no parameter can be said to drive it"
            for metric, r in found.items() if r["noise"]]


def importance_table(found: dict[str, dict], title: str) -> Table:
    """Each parameter's share of each objective's variance with its permutation p; an objective whose spread is
    within its noise gets no shares, and the caption says so."""
    params = sorted({p for r in found.values() for p in r["importance"]})
    caption = "fANOVA share of each objective's variance over the trials (permutation p)"
    table = Table(title=title, caption="\n".join([caption, *noise_lines(found)]))
    table.add_column("parameter", overflow="fold")
    for metric in found:
        table.add_column(metric, justify="right", overflow="fold")
    for p in params:
        table.add_row(p, *(f"{r['importance'][p]:.3f} (p {r['p_value'][p]:.2f})" if p in r["importance"] else
                           ("noise" if r["noise"] else "-") for r in found.values()))
    return table


def importance_figure(found: dict[str, dict], title: str):
    """One horizontal bar chart per objective, parameters in the same order in each, each bar labelled with its
    permutation p; an objective whose spread is noise shows that instead of bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = sorted({p for r in found.values() for p in r["importance"]}) or ["-"]
    fig, axes = plt.subplots(1, len(found), figsize=(4.5 * len(found), 0.5 * len(params) + 1.5),
                             layout="constrained", sharey=True, squeeze=False)
    for ax, (metric, r) in zip(axes[0], found.items()):
        shares = [r["importance"].get(p, 0.0) for p in params]
        ax.barh(np.arange(len(params)), shares, color="tab:blue")
        for y, p in enumerate(params):
            if p in r["p_value"]:
                ax.annotate(f"p {r['p_value'][p]:.2f}", (shares[y], y), xytext=(3, 0), textcoords="offset points",
                            va="center", fontsize=7)
        if r["noise"]:
            ax.text(0.5, 0.5, "spread within noise", transform=ax.transAxes, ha="center", va="center", fontsize=9)
        ax.set_title(metric, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance")
    axes[0][0].set_yticks(np.arange(len(params)), [p.split(".", 1)[-1] for p in params], fontsize=8)
    fig.suptitle(title)
    return fig
