"""GLUE: fine-tune a model dir on each task and score the validation split with GLUE's official metric.

Data comes from the hub (`nyu-mll/glue`) or from a local folder in one of two layouts:
    DIR/<task>/<split>*.parquet|jsonl|csv   the hub's export, e.g. glue/cola/validation-00000-of-00001.parquet
    DIR/<GLUE dir>/<file>.tsv               GLUE's original download: CoLA/train.tsv, CoLA/dev.tsv,
                                            MNLI/dev_matched.tsv, MNLI/dev_mismatched.tsv, STS-B/dev.tsv, ...
Scores are x100 like the leaderboard: CoLA Matthews correlation; STS-B mean of Pearson and Spearman; MRPC and QQP
mean of F1 and accuracy; MNLI mean of matched and mismatched accuracy; the rest accuracy. `glue/score` is the mean
of the task scores, as the leaderboard averages. The built-in world's tasks (study.world.tasks) run through the same
code and report under `world/`.
"""

from __future__ import annotations

import csv
import logging
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES

from study.catalog import GLUE_TASKS, Task
from study.config import GlueConfig
from study.distill.data import LOCAL_SUFFIXES, DataError, pad
from study.distill.models import ModelError
from study.distill.optim import clipped_step, make_optimizer

log = logging.getLogger(__name__)
HUB_NAME = "nyu-mll/glue"
PREDICT_BATCH = 256  # scoring needs no gradients: large batches, few passes


TSV_FILES = {"train": "train.tsv", "validation": "dev.tsv", "validation_matched": "dev_matched.tsv",
             "validation_mismatched": "dev_mismatched.tsv"}


# --- loading ---------------------------------------------------------------------------------------------------


def _read_tsv(path: Path, name: str, task: Task) -> dict[str, list]:
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    header = isinstance(task.tsv_columns[0], str)
    if header:
        missing = [c for c in task.tsv_columns if c not in rows[0]]
        if missing:
            raise DataError(f"{path}: not a GLUE {name} file, missing columns {missing}")
        index = [rows[0].index(c) for c in task.tsv_columns]
        rows = rows[1:]
    else:
        index = list(task.tsv_columns)
    out: dict[str, list] = {c: [] for c in task.columns + ("label",)}
    for n, row in enumerate(rows):
        try:
            values = [row[i] for i in index]
            label = values[-1]
            if task.tsv_labels:
                label = task.tsv_labels.index(label)
            else:
                label = float(label) if task.num_labels == 1 else int(label)
        except (IndexError, ValueError):
            raise DataError(f"{path}: line {n + 1 + header} is malformed for {name}") from None
        for c, v in zip(task.columns, values):
            out[c].append(v)
        out["label"].append(label)
    return out


def _read_local(folder: Path, name: str, task: Task, split: str) -> dict[str, list]:
    tsv = folder / task.tsv_dir / TSV_FILES[split]
    if tsv.is_file():
        return _read_tsv(tsv, name, task)
    files = sorted(p for p in (folder / name).glob(f"{split}*") if p.suffix in LOCAL_SUFFIXES
                   and p.name[len(split)] in ".-")
    if not files:
        raise DataError(f"{folder}: no {name} {split} split (looked for {name}/{split}*.parquet|jsonl|csv "
                        f"and {task.tsv_dir}/{TSV_FILES[split]})")
    import datasets

    ds = datasets.load_dataset(LOCAL_SUFFIXES[files[0].suffix], data_files=[str(p) for p in files], split="train")
    missing = [c for c in task.columns + ("label",) if c not in ds.column_names]
    if missing:
        raise DataError(f"{files[0]}: missing columns {missing} for {name}")
    return {c: ds[c] for c in task.columns + ("label",)}


def load_split(name: str, split: str, data_dir: str | Path | None,
               tasks: dict[str, Task] = GLUE_TASKS) -> dict[str, list]:
    """Columns (the task's text columns and `label`) of one split, local if data_dir is given, else the hub."""
    task = tasks[name]
    if data_dir is not None:
        return _read_local(Path(data_dir), name, task, split)
    import datasets

    try:
        ds = datasets.load_dataset(HUB_NAME, name, split=split)
    except Exception as err:
        raise DataError(f"GLUE {name} {split}: cannot load from the hub ({str(err).splitlines()[0]}); "
                        f"give --data-dir") from None
    return {c: ds[c] for c in task.columns + ("label",)}


# --- metrics ---------------------------------------------------------------------------------------------------


def score_task(metric: str, labels, predictions) -> dict[str, float]:
    """{sub-metrics..., "score"} x100, with GLUE's official metric for the task."""
    y, p = np.asarray(labels), np.asarray(predictions)
    if metric == "mcc":
        out = {"mcc": matthews_corrcoef(y, p)}
        out["score"] = out["mcc"]
    elif metric == "acc":
        out = {"accuracy": accuracy_score(y, p)}
        out["score"] = out["accuracy"]
    elif metric == "f1_acc":
        out = {"f1": f1_score(y, p), "accuracy": accuracy_score(y, p)}
        out["score"] = (out["f1"] + out["accuracy"]) / 2
    elif metric == "corr":
        # A constant prediction correlates with nothing: 0, where scipy gives nan (and a study could not rank it).
        constant = np.ptp(p) == 0 or np.ptp(y) == 0
        out = {"pearson": 0.0 if constant else stats.pearsonr(y, p).statistic,
               "spearman": 0.0 if constant else stats.spearmanr(y, p).statistic}
        out["score"] = (out["pearson"] + out["spearman"]) / 2
    else:
        raise ValueError(f"unknown GLUE metric {metric!r}")
    return {k: 100 * float(v) for k, v in out.items()}


# --- fine-tuning -----------------------------------------------------------------------------------------------


def _encode(tokenizer, split: dict[str, list], task: Task, max_length: int, limit: int | None) -> tuple[list, list]:
    n = len(split["label"]) if limit is None else min(limit, len(split["label"]))
    texts = [split[c][:n] for c in task.columns]
    ids = tokenizer(*texts, truncation=True, max_length=max_length)["input_ids"]
    return ids, list(split["label"][:n])


def load_classifier(model_dir: str | Path, task: Task, dropout: float | None = None):
    """The model with a fresh head for the task; `dropout` replaces every dropout rate in its config (BERT's
    hidden_dropout_prob, DistilBERT's dropout and seq_classif_dropout, ...), None keeps them."""
    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING_NAMES:
        raise ModelError(f"{model_dir}: model type {config.model_type!r} has no sequence-classification head")
    kwargs = {"num_labels": task.num_labels}
    if dropout is not None:
        kwargs |= {k: dropout for k, v in config.to_dict().items() if "dropout" in k and isinstance(v, float)}
    if task.num_labels == 1:
        kwargs["problem_type"] = "regression"
    return AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs)


def autocast(device: str | torch.device, bf16: bool = True):
    """bf16 autocast on CUDA, for fine-tuning and prediction alike; nothing elsewhere (a CPU computes in fp32)."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and device.type == "cuda")


@torch.no_grad()
def predict(model, ids: list[list[int]], pad_id: int, batch_size: int, regression: bool) -> np.ndarray:
    model.eval()
    device = next(model.parameters()).device
    out = []
    for start in range(0, len(ids), batch_size):
        x, attn = pad(ids[start:start + batch_size], pad_id)
        with autocast(device):
            logits = model(input_ids=x.to(device), attention_mask=attn.to(device)).logits
        logits = logits.float().cpu()
        out.append(logits[:, 0].numpy() if regression else logits.argmax(-1).numpy())
    return np.concatenate(out)


@dataclass
class TaskData:
    """One task's encoded splits: what every seed of its fine-tuning shares."""

    task: Task
    tokenizer: object
    max_length: int
    train: tuple[list, list]  # (ids, labels)
    validation: list[tuple[list, list]]  # one (ids, labels) per validation split (MNLI has two)


def load_task(model_dir: str | Path, name: str, cfg: GlueConfig, data_dir=None,
              tasks: dict[str, Task] = GLUE_TASKS) -> TaskData:
    task = tasks[name]
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    max_length = min(cfg.max_length, AutoConfig.from_pretrained(model_dir).max_position_embeddings)
    train = _encode(tokenizer, load_split(name, "train", data_dir, tasks), task, max_length, cfg.max_train_samples)
    validation = [_encode(tokenizer, load_split(name, split, data_dir, tasks), task, max_length, cfg.max_eval_samples)
                  for split in task.validation]
    return TaskData(task, tokenizer, max_length, train, validation)


def fit(model_dir: str | Path, data: TaskData, cfg: GlueConfig, seed: int, device: str | torch.device = "cpu",
        bf16: bool = True):
    """A classifier on top of the model, fine-tuned on the task's train split with `seed` (head init, order); on CUDA
    under bf16 autocast unless `bf16` is off (the weights and the optimiser stay fp32)."""
    torch.manual_seed(seed)
    model = load_classifier(model_dir, data.task, cfg.dropout).to(device)
    train_ids, train_labels = data.train
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total = cfg.max_steps or steps_per_epoch * cfg.epochs
    optimizer, scheduler = make_optimizer(model, cfg.optim, total, decay_all=True)
    generator = torch.Generator().manual_seed(seed)
    regression = data.task.num_labels == 1
    pad_id = data.tokenizer.pad_token_id
    model.train()
    step = 0
    # disable=None: no bar where output is not a terminal (Ray workers, CI logs)
    with tqdm(total=total, desc="fine-tune", leave=False, mininterval=1.0, disable=None) as bar:
        while step < total:
            order = torch.randperm(len(train_ids), generator=generator).tolist()
            for start in range(0, len(order), cfg.batch_size):
                index = order[start:start + cfg.batch_size]
                x, attn = (t.to(device) for t in pad([train_ids[i] for i in index], pad_id))
                y = torch.tensor([train_labels[i] for i in index], dtype=torch.float if regression else torch.long,
                                 device=device)
                with autocast(device, bf16):
                    logits = model(input_ids=x, attention_mask=attn).logits.float()
                loss = F.mse_loss(logits[:, 0], y) if regression else F.cross_entropy(logits, y)
                loss.backward()
                clipped_step(model, optimizer, scheduler, cfg.optim.clip)
                step += 1
                bar.update(1)
                if step >= total:
                    break
    return model


def chance_score(metric: str, labels) -> float:
    """The score of a classifier that learned nothing: the majority class for every example (a constant for a
    regression), which is 0 for MCC and correlations and the majority share for accuracy."""
    y = np.asarray(labels)
    values, counts = np.unique(y, return_counts=True)
    return score_task(metric, y, np.full_like(y, values[np.argmax(counts)]))["score"]


def predictions(model, data: TaskData) -> list[np.ndarray]:
    """The fine-tuned model's predictions on each validation split (MNLI has two)."""
    regression = data.task.num_labels == 1
    return [predict(model, ids, data.tokenizer.pad_token_id, PREDICT_BATCH, regression) for ids, _ in data.validation]


def _scores(data: TaskData, predicted: list[np.ndarray]) -> tuple[dict[str, float], float]:
    """(the scores of `predicted` on each validation split, averaged as GLUE does; the chance score alike)."""
    results, chances = [], []
    for (_, labels), p in zip(data.validation, predicted):
        results.append(score_task(data.task.metric, labels, p))
        chances.append(chance_score(data.task.metric, labels))
    if len(results) == 1:
        return results[0], chances[0]
    # MNLI: matched and mismatched accuracy, averaged
    return ({"matched": results[0]["score"], "mismatched": results[1]["score"],
             "score": (results[0]["score"] + results[1]["score"]) / 2}, float(np.mean(chances)))


def finetune(model_dir: str | Path, name: str, cfg: GlueConfig, data_dir=None, tasks: dict[str, Task] = GLUE_TASKS,
             device: str | torch.device = "cpu", seed: int | None = None) -> dict[str, float]:
    """Fine-tune on `name`'s train split once, score its validation split(s); {sub-metric: value, "score": ...}."""
    data = load_task(model_dir, name, cfg, data_dir, tasks)
    model = fit(model_dir, data, cfg, cfg.seed if seed is None else seed, device)
    return _scores(data, predictions(model, data))[0]


def finetune_seed(cfg: GlueConfig, slot: int, attempt: int) -> int:
    """The fine-tuning seed of seed slot `slot`, attempt `attempt` (retries of a failed run). Slots are spaced by
    1000 per cfg.seed, so the seeds of a rerun (cfg.seed + k) never repeat another rerun's; slot 0, attempt 0 is
    cfg.seed itself."""
    return cfg.seed + 1000 * slot + 100_000 * attempt


@dataclass
class SlotRun:
    """What one seed slot of a task left: the kept run's scores and its predictions on each validation split, how
    many of its attempts ended at chance, and (with one seed slot in all) the bootstrap standard error of the kept
    run."""

    result: dict[str, float]
    predictions: list[np.ndarray]
    failed: int
    bootstrap_se: float | None


def run_slot(model_dir, name: str, data: TaskData, cfg: GlueConfig, slot: int,
             device: str | torch.device = "cpu") -> SlotRun:
    """Seed slot `slot` of a task: fine-tune with its seed and score; a run that ends at chance (a known failure mode
    of fine-tuning BERT-style models on small data: Mosbach et al. 2021), detected by its score (at most
    cfg.chance_margin points above the majority-class score), is retried with the slot's next seed, up to
    cfg.retries times; a seed that stays at chance is kept, counted in `failed` and warned about. A slot depends on
    nothing but its own seeds, so the slots of a task can run anywhere, in any order."""
    failed = 0
    for attempt in range(cfg.retries + 1):
        seed = finetune_seed(cfg, slot, attempt)
        predicted = predictions(fit(model_dir, data, cfg, seed, device), data)
        result, chance = _scores(data, predicted)
        at_chance = result["score"] <= chance + cfg.chance_margin
        failed += at_chance
        if not at_chance:
            break
        log.warning(f"{name}: fine-tuning seed {seed} ended at chance ({result['score']:.2f}, chance {chance:.2f})"
                    + ("; retrying with another seed" if attempt < cfg.retries else "; kept, and counted"))
    return SlotRun(result, predicted, failed, _bootstrap_se(data, predicted, cfg.seed) if cfg.seeds == 1 else None)


# A run stopped short when it lies more than this many points below the median of the same model's runs on the task
# (and more than STOPPED_MADS robust standard deviations of the runs' spread): the world's stalls ended 5-10 points low.
STOPPED_POINTS = 3.0
STOPPED_MADS = 4.0


def stopped_short(scores: np.ndarray) -> np.ndarray:
    """(K, F) bool: the runs among each model's F fine-tuning runs of a task (a row) that ended far below the others:
    more than STOPPED_POINTS below the row's median and more than STOPPED_MADS robust sds (the median absolute
    deviation of every run from its row's median, x 1.4826) below it. Needs F >= 3 to tell a run from its row."""
    scores = np.asarray(scores, dtype=float)
    below = np.median(scores, axis=1, keepdims=True) - scores
    spread = stats.median_abs_deviation(np.abs(below).ravel(), scale="normal")
    return (below > STOPPED_POINTS) & (below > STOPPED_MADS * spread)


def combine_slots(runs: list[SlotRun]) -> dict[str, float]:
    """A task's cfg.seeds slots (in slot order): the mean of each score, `score_se`, `failed_runs` (runs kept at
    chance) and, with 3 slots or more, `short_runs` (runs that stopped short of the others: a mean that holds one
    decides little, so it is counted and warned about). `score_se` is the standard error of the mean over seeds
    (std / sqrt(k)); with one seed, the bootstrap standard error over the validation examples."""
    out = {k: float(np.mean([r.result[k] for r in runs])) for k in runs[0].result}
    scores = np.array([r.result["score"] for r in runs])
    out["score_se"] = float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else runs[0].bootstrap_se
    out["failed_runs"] = float(sum(r.failed for r in runs))
    if len(scores) >= 3:
        out["short_runs"] = float(stopped_short(scores[None])[0].sum())
    return out


def evaluate_task(model_dir, name: str, cfg: GlueConfig, data_dir=None, tasks: dict[str, Task] = GLUE_TASKS,
                  device: str | torch.device = "cpu") -> dict[str, float]:
    """cfg.seeds fine-tuning runs of one task, one slot after another (run_slot), combined (combine_slots)."""
    data = load_task(model_dir, name, cfg, data_dir, tasks)
    return combine_slots([run_slot(model_dir, name, data, cfg, slot, device) for slot in range(cfg.seeds)])


def _bootstrap_se(data: TaskData, predicted: list[np.ndarray], seed: int, resamples: int = 200) -> float:
    """Standard error of one run's score from resampling its validation examples (seeded)."""
    rng = np.random.default_rng(seed)
    per_split = []
    for (_, labels), p in zip(data.validation, predicted):
        y = np.asarray(labels)
        draws = [rng.integers(0, len(y), len(y)) for _ in range(resamples)]
        per_split.append([score_task(data.task.metric, y[i], p[i])["score"] for i in draws])
    return float(np.std(np.mean(per_split, axis=0), ddof=1))


def evaluate(model_dir, cfg: GlueConfig, data_dir=None, tasks: dict[str, Task] = GLUE_TASKS, prefix: str = "glue",
             device: str | torch.device = "cpu") -> dict[str, float]:
    """Every task of cfg.tasks on one device, one after another (evaluate_task), as combine_tasks reports them."""
    return combine_tasks(cfg, prefix, {name: evaluate_task(model_dir, name, cfg, data_dir, tasks, device)
                                       for name in cfg.tasks})


def combine_tasks(cfg: GlueConfig, prefix: str, results: dict[str, dict[str, float]]) -> dict[str, float]:
    """Flat `<prefix>/<task>` (the mean over cfg.seeds fine-tuning runs), `<prefix>/<task>_se`,
    `<prefix>/<task>/<sub-metric>`, `<prefix>/<task>/failed_runs`, `<prefix>/score` (the leaderboard's mean of the
    task scores) and `<prefix>/score_se` (tasks independent: sqrt of the summed squared standard errors / n)."""
    out = {}
    for name in cfg.tasks:
        result = results[name]
        out[f"{prefix}/{name}"] = result["score"]
        out[f"{prefix}/{name}_se"] = result["score_se"]
        out.update({f"{prefix}/{name}/{k}": v for k, v in result.items() if k not in ("score", "score_se")})
        log.info(f"  {prefix}/{name}: {result['score']:.2f} ± {result['score_se']:.2f}")
        if result.get("short_runs"):
            log.warning(f"{prefix}/{name}: {result['short_runs']:.0f} of {cfg.seeds} fine-tuning runs stopped short of "
                        f"the others (study.metrics.glue.stopped_short); their mean holds them")
    out[f"{prefix}/score"] = float(np.mean([out[f"{prefix}/{name}"] for name in cfg.tasks]))
    out[f"{prefix}/score_se"] = float(np.sqrt(sum(out[f"{prefix}/{name}_se"] ** 2 for name in cfg.tasks))
                                      / len(cfg.tasks))
    return out
