"""What drives each objective: per-objective hyperparameter importance over a study's finished trials.

fANOVA (Hutter, Hoos & Leyton-Brown 2014) as Optuna computes it (`optuna.importance.get_param_importances` with
`FanovaImportanceEvaluator`, seeded): the share of an objective's variance over the trials that each parameter
explains, summing to 1 per objective. Only parameters every finished trial has are assessed (Optuna's rule), so a
conditional one (mixup's alpha, sampled only under mixup) is left out and its parent (the mode) speaks for it.
"""

from __future__ import annotations

import numpy as np
import optuna
from rich.table import Table


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


def study_importances(record) -> dict[str, dict[str, float]]:
    """`importances` of a study read back (analysis.runs.StudyRecord), from the Optuna storage in its folder."""
    from study.record.folder import optuna_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ot_study = optuna.load_study(study_name=record.name, storage=optuna_storage(record.directory))
    return importances(ot_study, record.metrics)


def importance_table(found: dict[str, dict[str, float]], title: str) -> Table:
    params = sorted({p for per in found.values() for p in per})
    table = Table(title=title, caption="fANOVA: share of each objective's variance over the trials")
    table.add_column("parameter", overflow="fold")
    for metric in found:
        table.add_column(metric, justify="right", overflow="fold")
    for p in params:
        table.add_row(p, *(f"{found[m].get(p, 0.0):.3f}" for m in found))
    return table


def importance_figure(found: dict[str, dict[str, float]], title: str):
    """One horizontal bar chart per objective, parameters in the same order in each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    params = sorted({p for per in found.values() for p in per})
    fig, axes = plt.subplots(1, len(found), figsize=(4.5 * len(found), 0.5 * len(params) + 1.5),
                             layout="constrained", sharey=True, squeeze=False)
    for ax, (metric, per) in zip(axes[0], found.items()):
        ax.barh(np.arange(len(params)), [per.get(p, 0.0) for p in params], color="tab:blue")
        ax.set_title(metric, fontsize=9)
        ax.set_xlim(0, 1)
        ax.set_xlabel("importance")
    axes[0][0].set_yticks(np.arange(len(params)), [p.split(".", 1)[-1] for p in params], fontsize=8)
    fig.suptitle(title)
    return fig
