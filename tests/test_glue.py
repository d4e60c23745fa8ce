"""GLUE metrics against hand computations and scikit-learn/scipy, local loading in both layouts, errors."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from study.catalog import GLUE_TASKS, WORLD_TASKS
from study.config import GlueConfig
from study.distill.data import DataError
from study.distill.models import ModelError
from study.metrics import glue


def test_mcc_by_hand_and_sklearn():
    y, p = [1, 1, 0, 0], [1, 0, 0, 0]  # TP 1, TN 2, FP 0, FN 1
    out = glue.score_task("mcc", y, p)
    assert out["score"] == pytest.approx(100 * 2 / math.sqrt(12))
    assert out["mcc"] == pytest.approx(100 * matthews_corrcoef(y, p))


def test_f1_accuracy_mean_by_hand():
    out = glue.score_task("f1_acc", [1, 1, 0, 0], [1, 0, 0, 0])
    assert out["f1"] == pytest.approx(100 * 2 / 3) and out["accuracy"] == pytest.approx(75.0)
    assert out["score"] == pytest.approx((100 * 2 / 3 + 75) / 2)
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 50), rng.integers(0, 2, 50)
    out = glue.score_task("f1_acc", y, p)
    assert out["f1"] == pytest.approx(100 * f1_score(y, p))
    assert out["accuracy"] == pytest.approx(100 * accuracy_score(y, p))


def test_pearson_spearman_mean_by_hand():
    out = glue.score_task("corr", [1.0, 2.0, 3.0], [1.0, 3.0, 2.0])
    assert out["pearson"] == pytest.approx(50.0) and out["spearman"] == pytest.approx(50.0)
    assert out["score"] == pytest.approx(50.0)
    y, p = np.arange(10.0), np.arange(10.0) ** 2
    assert glue.score_task("corr", y, p)["pearson"] == pytest.approx(100 * stats.pearsonr(y, p).statistic)


def _write_rte_parquet(folder):
    import datasets

    for split, n in (("train", 12), ("validation", 6)):
        (folder / "rte").mkdir(parents=True, exist_ok=True)
        datasets.Dataset.from_dict({"sentence1": [f"a {i} ." for i in range(n)], "sentence2": ["b ."] * n,
                                    "label": [i % 2 for i in range(n)], "idx": list(range(n))}).to_parquet(
            str(folder / "rte" / f"{split}-00000-of-00001.parquet"))


def _write_rte_tsv(folder):
    (folder / "RTE").mkdir(parents=True, exist_ok=True)
    for name, n in (("train.tsv", 12), ("dev.tsv", 6)):
        lines = ["index\tsentence1\tsentence2\tlabel"]
        lines += [f"{i}\ta {i} .\tb .\t{'entailment' if i % 2 == 0 else 'not_entailment'}" for i in range(n)]
        (folder / "RTE" / name).write_text("\n".join(lines) + "\n")


def test_local_layouts_give_the_same_split(tmp_path):
    _write_rte_parquet(tmp_path / "hub")
    _write_rte_tsv(tmp_path / "orig")
    a = glue.load_split("rte", "validation", tmp_path / "hub")
    b = glue.load_split("rte", "validation", tmp_path / "orig")
    assert a == b == {"sentence1": [f"a {i} ." for i in range(6)], "sentence2": ["b ."] * 6, "label": [0, 1] * 3}


def test_original_tsv_layouts_of_cola_and_mnli(tmp_path):
    (tmp_path / "CoLA").mkdir()
    (tmp_path / "CoLA" / "dev.tsv").write_text("gj04\t1\t\tThe sailors rode the breeze .\ngj04\t0\t*\tBill drank .\n")
    assert glue.load_split("cola", "validation", tmp_path) == {
        "sentence": ["The sailors rode the breeze .", "Bill drank ."], "label": [1, 0]}
    (tmp_path / "MNLI").mkdir()
    (tmp_path / "MNLI" / "dev_mismatched.tsv").write_text(
        "index\tsentence1\tsentence2\tgold_label\n0\tA .\tB .\tcontradiction\n1\tC .\tD .\tentailment\n")
    assert glue.load_split("mnli", "validation_mismatched", tmp_path)["label"] == [2, 0]


def test_missing_split_and_malformed_file(tmp_path):
    _write_rte_parquet(tmp_path)
    with pytest.raises(DataError, match="no mrpc validation split"):
        glue.load_split("mrpc", "validation", tmp_path)
    (tmp_path / "STS-B").mkdir()
    (tmp_path / "STS-B" / "dev.tsv").write_text("sentence1\tsentence2\tscore\na\tb\tnot-a-number\n")
    with pytest.raises(DataError, match="line 2 is malformed"):
        glue.load_split("stsb", "validation", tmp_path)


def test_model_without_classification_head(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "vit"}))
    with pytest.raises(ModelError, match="no sequence-classification head"):
        glue.load_classifier(tmp_path, GLUE_TASKS["rte"])


def test_finetune_on_local_rte_is_seeded(world_models, tiny_world, tmp_path):
    from study.distill.models import make_student

    teacher, tokenizer, _ = world_models
    make_student(teacher, 1).save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    _write_rte_parquet(tmp_path / "glue")
    cfg = GlueConfig(tasks=["rte"], max_steps=3, batch_size=4, lr=1e-3)
    a = glue.evaluate(tmp_path / "student", cfg, tmp_path / "glue")
    b = glue.evaluate(tmp_path / "student", cfg, tmp_path / "glue")
    assert a == b and set(a) == {"glue/rte", "glue/rte_se", "glue/rte/accuracy", "glue/rte/failed_runs",
                                 "glue/score", "glue/score_se"}
    assert a["glue/score"] == a["glue/rte"] and 0 <= a["glue/rte"] <= 100


def test_chance_scores_by_hand():
    assert glue.chance_score("acc", [1, 1, 1, 0]) == pytest.approx(75.0)  # the majority class everywhere
    assert glue.chance_score("mcc", [1, 1, 1, 0]) == 0.0
    assert glue.chance_score("corr", [0.5, 1.0, 4.0]) == 0.0
    assert glue.chance_score("f1_acc", [1, 1, 1, 0]) == pytest.approx(100 * (6 / 7 + 0.75) / 2)  # f1 = 2*.75/1.75


def test_seeds_are_averaged_and_runs_at_chance_retried_and_counted(world_models, tmp_path, caplog):
    """Labels that carry no signal (a sentence's label is its index's parity): every run ends at chance, is retried
    `retries` times with another seed, and is counted, never dropped in silence."""
    from study.distill.models import make_student

    teacher, tokenizer, _ = world_models
    make_student(teacher, 1).save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    _write_rte_parquet(tmp_path / "glue")
    cfg = GlueConfig(tasks=["rte"], max_steps=2, batch_size=4, seeds=2, retries=1, chance_margin=100.0)
    with caplog.at_level("WARNING", logger="study.glue"):
        out = glue.evaluate_task(tmp_path / "student", "rte", cfg, tmp_path / "glue")
    assert out["failed_runs"] == 4  # 2 seeds x (1 run + 1 retry), all at "chance" with a 100-point margin
    assert sum("ended at chance" in r.message for r in caplog.records) == 4
    runs = [glue.finetune(tmp_path / "student", "rte", cfg, tmp_path / "glue", seed=glue.finetune_seed(cfg, k, 1))
            for k in range(2)]  # what each seed slot kept: its last attempt
    scores = [r["score"] for r in runs]
    assert out["score"] == pytest.approx(np.mean(scores))
    assert out["score_se"] == pytest.approx(np.std(scores, ddof=1) / np.sqrt(2))


def test_one_seed_reports_a_bootstrap_standard_error(world_models, tmp_path):
    from study.distill.models import make_student

    teacher, tokenizer, _ = world_models
    make_student(teacher, 1).save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    _write_rte_parquet(tmp_path / "glue")
    cfg = GlueConfig(tasks=["rte"], max_steps=2, batch_size=4, retries=0)
    out = glue.evaluate_task(tmp_path / "student", "rte", cfg, tmp_path / "glue")
    # 6 validation examples: an accuracy's bootstrap SE is about sqrt(p (1 - p) / 6) x 100
    assert 0 < out["score_se"] < 30


def test_dropout_replaces_every_dropout_rate_of_the_model(world_models, tmp_path):
    from study.distill.models import make_student

    teacher, tokenizer, _ = world_models
    make_student(teacher, 1).save_pretrained(tmp_path)  # a DistilBERT: its head has dropout 0.2 of its own
    rates = {m.p for m in glue.load_classifier(tmp_path, GLUE_TASKS["rte"]).modules()
             if isinstance(m, torch.nn.Dropout)}
    assert 0.2 in rates
    off = glue.load_classifier(tmp_path, GLUE_TASKS["rte"], dropout=0.0)
    assert {m.p for m in off.modules() if isinstance(m, torch.nn.Dropout)} == {0.0}
    assert off.config.seq_classif_dropout == 0.0 and off.config.attention_dropout == 0.0


def test_world_tasks_in_glue_formats(tiny_world, tmp_path):
    from study.world import tasks as world_tasks

    root = world_tasks.task_dir(tiny_world)
    sts = glue.load_split("world_sts", "validation", root, WORLD_TASKS)
    assert len(sts["label"]) == world_tasks.SIZES["validation"]
    shares = {label: sts["label"].count(label) / len(sts["label"]) for label in set(sts["label"])}
    assert set(shares) == {0.0, 2.5, 5.0} and all(0.28 < x < 0.39 for x in shares.values())  # a third each
    for first, second, label in zip(sts["sentence1"], sts["sentence2"], sts["label"]):
        named, words = second.split()[-2], first.split()
        assert (named in words) == (label == 5.0)  # 5: a word of sentence 1; else a word it does not have
        kinds = {k for k, listed in world_tasks.WORDS.items() if named in listed}
        mentioned = {k for k, listed in world_tasks.WORDS.items() for w in words if w in listed}
        assert bool(kinds & mentioned) == (label > 0), (first, second, label)  # 2.5: a kind sentence 1 names
    cola = glue.load_split("world_cola", "train", root, WORLD_TASKS)
    assert 0.3 < np.mean(cola["label"]) < 0.7
    pair = glue.load_split("world_pair", "validation", root, WORLD_TASKS)
    assert all(s.startswith("this is about the ") for s in pair["sentence2"])


def test_mnli_and_leaderboard_averaging(world_models, tmp_path):
    import datasets

    from study.distill.models import make_student

    teacher, tokenizer, _ = world_models
    make_student(teacher, 1).save_pretrained(tmp_path / "student")
    tokenizer.save_pretrained(tmp_path / "student")
    _write_rte_parquet(tmp_path / "glue")
    (tmp_path / "glue" / "mnli").mkdir()
    for split, n in (("train", 9), ("validation_matched", 6), ("validation_mismatched", 5)):
        datasets.Dataset.from_dict({"premise": [f"he is a nurse {i} ." for i in range(n)], "hypothesis": ["x ."] * n,
                                    "label": [i % 3 for i in range(n)]}).to_parquet(
            str(tmp_path / "glue" / "mnli" / f"{split}.parquet"))
    cfg = GlueConfig(tasks=["rte", "mnli"], max_steps=2, batch_size=4)
    out = glue.evaluate(tmp_path / "student", cfg, tmp_path / "glue")
    assert out["glue/mnli"] == pytest.approx((out["glue/mnli/matched"] + out["glue/mnli/mismatched"]) / 2)
    assert out["glue/score"] == pytest.approx((out["glue/rte"] + out["glue/mnli"]) / 2)
