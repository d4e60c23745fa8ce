"""The model card of an exported student: README.md in Hugging Face's format, written with huggingface_hub's card API
(ModelCardData, EvalResult, ModelCard), so that the hub and `ModelCard.load` read its numbers as `model-index`
results.

Every bias metric and task score is a result with its 95% interval in the result's `args` (`ci_low`, `ci_high`,
and `interval`, which names how it was made): a rerun's Student-t interval over its seeds where the student comes
from a rerun; otherwise the trial's own, the bootstrap interval a metric reports (`_ci_low`/`_ci_high`) or, for a
metric reported with a standard error (`_se`: the template bootstrap over occupations, the fine-tuning seeds), the
normal interval value ± 1.96·se. The teacher's value of each metric is a result beside it (`teacher/<metric>`), and
`bias/amplification` (student - teacher on the primary metric) is one of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from study.catalog import BIAS_METRICS, GLUE_TASKS, WORLD_TASKS
from study.config import StudyConfig
from study.metrics.bias.bootstrap import Z95
from study.metrics.bias_data import BENCHMARKS

# (task type, task name, dataset type, dataset name) of each bias metric's results
BIAS_DATASETS = {
    "template": ("fill-mask", "gender bias: occupation templates", "kdstudy/occupation-templates",
                 "Kurita et al. occupation templates (54 occupations, BLS CPS 2023 female shares)"),
    "crows": ("fill-mask", "gender bias: CrowS-Pairs", "nyu-mll/crows_pairs", "CrowS-Pairs (gender pairs)"),
    "seat": ("feature-extraction", "gender bias: SEAT", "W4ngatang/sent-bias", "SEAT 6, 6b, 7, 7b, 8, 8b"),
    "stereoset": ("fill-mask", "gender bias: StereoSet", "McGill-NLP/stereoset", "StereoSet intrasentence (gender)"),
}
TEMPLATE_LICENCE = ("the templates and the occupation list are kdstudy's (Apache-2.0); the female shares are the "
                    "US Bureau of Labor Statistics' CPS 2023 table (a US government work, public domain)")


@dataclass
class Value:
    """One number of the card: the value and its 95% interval (None where the metric has none)."""
    value: float
    low: float | None = None
    high: float | None = None
    interval: str | None = None


def card_metrics(metrics: dict[str, float], teacher: bool = False) -> list[str]:
    """The names worth a card among `metrics`: the bias metrics' statistics (not their errors or counts), the
    amplification, and the task scores; the teacher's under teacher/ when `teacher`."""
    prefix = "teacher/" if teacher else ""
    names = []
    for key in metrics:
        if not key.startswith(prefix) or (not teacher and key.startswith("teacher/")):
            continue
        name = key.removeprefix(prefix)
        parts = name.split("/")
        if name.endswith(("_se", "_ci_low", "_ci_high")) or parts[-1].startswith("n_"):  # errors, counts
            continue
        if (parts[0] == "bias" and len(parts) == 3 and parts[1] in BIAS_METRICS) or name == "bias/amplification":
            names.append(name)
        elif parts[0] in ("world", "glue") and len(parts) == 2:
            names.append(name)
    return sorted(names)


def trial_value(metrics: dict[str, float], name: str) -> Value:
    """A metric of one run with its interval: its bootstrap interval, else value ± 1.96 se, else none."""
    value = float(metrics[name])
    if f"{name}_ci_low" in metrics and f"{name}_ci_high" in metrics:
        return Value(value, metrics[f"{name}_ci_low"], metrics[f"{name}_ci_high"], "95% bootstrap")
    if f"{name}_se" in metrics:
        se = float(metrics[f"{name}_se"])
        return Value(value, value - Z95 * se, value + Z95 * se, "95% normal, value ± 1.96 standard error")
    return Value(value)


def seed_value(summary: dict[str, dict[str, float]], name: str, seeds: int) -> Value:
    """A metric of a rerun: the mean over its seeds and the Student-t interval of that mean."""
    s = summary[name]
    return Value(s["mean"], s["ci_low"], s["ci_high"], f"95% Student-t over {seeds} seeds")


def _result(name: str, value: Value, teacher: bool) -> EvalResult:
    """One model-index result: the metric's name as its type, the interval in its args."""
    kind = name.split("/")
    if kind[0] == "bias":
        task_type, task_name, dataset_type, dataset_name = BIAS_DATASETS.get(
            kind[1], ("fill-mask", "gender bias amplification", "kdstudy/bias", "the study's primary bias metric"))
        config = None
    elif kind[0] == "glue":
        task_type, task_name, dataset_type, dataset_name = "text-classification", "GLUE", "nyu-mll/glue", "GLUE"
        config = kind[1] if kind[1] in GLUE_TASKS else None
    else:
        task_type, task_name = "text-classification", "the kdstudy world's tasks"
        dataset_type, dataset_name = "kdstudy/world-tasks", "kdstudy world tasks (GLUE formats)"
        config = kind[1] if kind[1] in WORLD_TASKS else None
    args = None
    if value.low is not None and value.high is not None:
        args = {"ci_low": round(float(value.low), 6), "ci_high": round(float(value.high), 6),
                "interval": value.interval}
    label = f"{name} ({'teacher' if teacher else 'student'})"
    if args:
        label += f", 95% interval [{args['ci_low']:.4g}, {args['ci_high']:.4g}]"
    return EvalResult(task_type=task_type, task_name=task_name, dataset_type=dataset_type, dataset_name=dataset_name,
                      dataset_config=config, dataset_split="validation" if kind[0] != "bias" else None,
                      metric_type=f"teacher/{name}" if teacher else name, metric_name=label,
                      metric_value=round(float(value.value), 6), metric_args=args)


@dataclass
class CardFacts:
    """What the card tells, gathered by study.student.export."""
    model_name: str
    cfg: StudyConfig  # the trial's config: the study's base with the trial's sampled values
    study: str
    study_dir: str
    trial_id: str
    pick: str
    params: dict
    git_commit: str | None
    student: dict[str, Value]
    teacher: dict[str, Value]
    source: str  # where the weights come from: the trial's run, or a rerun's seed 0
    n_layers: int  # the student's transformer layers
    mlflow_run: str | None = None


def base_model(cfg: StudyConfig) -> str | None:
    """The teacher as a hub name, when it is one (the built-in world's and a local dir's are not)."""
    source = cfg.teacher.source
    return None if source == "world" or source.startswith(("/", ".", "~")) or source.count("/") > 1 else source


def model_card(facts: CardFacts) -> ModelCard:
    cfg = facts.cfg
    results = [_result(n, v, False) for n, v in facts.student.items()]
    results += [_result(n, v, True) for n, v in facts.teacher.items()]
    data = ModelCardData(
        model_name=facts.model_name, base_model=base_model(cfg), library_name="transformers",
        pipeline_tag="fill-mask", language="en", license="apache-2.0" if cfg.teacher.source == "world" else None,
        tags=["knowledge-distillation", "distilbert", "gender-bias", "kdstudy"], eval_results=results,
        kdstudy={"study": facts.study, "trial": facts.trial_id, "pick": facts.pick, "git_commit": facts.git_commit})
    return ModelCard(f"---\n{data.to_yaml()}\n---\n{_body(facts)}")


def _body(f: CardFacts) -> str:
    cfg, d = f.cfg, f.cfg.distill
    teacher = ("the kdstudy built-in world's teacher (a small BertForMaskedLM pretrained on its bias-planted corpus)"
               if cfg.teacher.source == "world" else f"`{cfg.teacher.source}`")
    mitigation = d.mitigation.mode + (f" (alpha {d.mitigation.alpha}, p {d.mitigation.p}, "
                                      f"placement {d.mitigation.placement})" if d.mitigation.mode == "mixup" else "")
    budget = f"{d.steps} steps" if d.steps else f"{d.epochs} epochs"
    lines = [f"# {f.model_name}", "",
             f"A DistilBERT-style student distilled from {teacher} by kdstudy, which studies how knowledge "
             f"distillation amplifies gender bias (Ahn, Lee, Kim & Oh, GeBNLP 2022) and searches for distillation "
             f"settings that do not.", "",
             "```python", "from transformers import pipeline", "",
             'fill = pipeline("fill-mask", model="PATH_OR_REPO")',
             'fill("[MASK] works as a nurse .")', "```", "",
             "## Where it comes from", "",
             f"- study `{f.study}` (`{f.study_dir}`), trial `{f.trial_id}`, picked by `{f.pick}`",
             f"- weights: {f.source}" + (f" (MLflow run `{f.mlflow_run}`)" if f.mlflow_run else ""),
             f"- kdstudy at git commit `{f.git_commit or 'unknown'}`", "",
             "## Distillation settings", "",
             f"- student: {f.n_layers} transformer layer(s)"
             + (f", teacher layers {cfg.student.layers}" if cfg.student.layers else ""),
             f"- loss: KL on softmax(logits/T) x T^2 (weight {d.loss.alpha_ce}), MLM (weight {d.loss.alpha_mlm}), "
             f"cosine on hidden states (weight {d.loss.alpha_cos}); temperature T = {d.loss.temperature}",
             f"- mitigation: {mitigation}",
             f"- budget: {budget}, batch {d.batch_size}, sequence length {d.max_length}, seed {d.seed}",
             "- the trial's sampled values: " + (", ".join(f"`{k}` = {v}" for k, v in f.params.items()) or "none"),
             "", "## Results", "",
             "Each value with its 95% interval (the `model-index` metadata above carries the same numbers; `args` "
             "names how each interval was made). `bias/amplification` is the student minus the teacher on the primary "
             f"bias metric, `{cfg.bias.primary}`: above 0 the student is more biased than its teacher.", "",
             "| metric | student | teacher |", "|---|---:|---:|"]
    for name, value in f.student.items():
        t = f.teacher.get(name)
        lines.append(f"| `{name}` | {_text(value)} | {_text(t) if t else '-'} |")
    lines += ["", "## Intended use", "",
              "Research on gender bias in distilled language models: comparing how much bias a distillation setting "
              "passes on or amplifies, and reproducing that comparison. It is not a model to deploy, and its bias "
              "numbers are not a certificate that a system built on it is fair.", "",
              "## Limitations", "",
              "What the template metric measures: how much more probable *he* than *she* (and *man* than *woman*) is "
              "in the masked slot of a few short templates about 54 occupations, corrected by the same template with "
              "the occupation masked too (Kurita et al. 2019); the planted slope compares that lean, occupation by "
              "occupation, with the occupations' female shares in the labour statistics (1 = the data's own skew, "
              "above 1 = exaggerated).", "",
              "What it does not measure: bias in what a fine-tuned downstream model decides; genders beyond the "
              "binary he/she pair; other social groups or their intersections; languages other than English; "
              "sentences unlike the templates. A low score on a few templates does not rule out bias elsewhere, "
              "and the templates' wording moves the numbers.", ""]
    if cfg.teacher.source == "world":
        lines += ["The built-in world is synthetic: a seeded corpus of about 2,400 word types in which each "
                  "occupation's gender follows its planted share. A student of it knows that world's English only; "
                  "its numbers check the method, they say nothing about real text.", ""]
    lines += ["## Bias data and licences", ""]
    for name in cfg.bias.metrics:
        if name == "template":
            lines.append(f"- template metric: {TEMPLATE_LICENCE}")
        elif name in BENCHMARKS:
            b = BENCHMARKS[name]
            lines.append(f"- {b.title}: {b.licence} ({b.home}); measured with it, not shipped with this model")
    return "\n".join(lines) + "\n"


def _text(v: Value) -> str:
    if v.low is None or v.high is None:
        return f"{v.value:.4f}"
    return f"{v.value:.4f} [{v.low:.4f}, {v.high:.4f}]"
