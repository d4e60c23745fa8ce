"""analysis.report: the search front with each trial's standard errors, and the race front of the confirm stage's
seed means, on studies written by hand (no MLflow)."""

import numpy as np
import pytest

from analysis import verdicts
from analysis.report import front_table, summarize, summarize_race, usage_line
from analysis.runs import StudyRecord, Trial
from study.load import parse_config

METRICS = ["bias/amplification", "world/score"]


def _study(trials: dict[str, tuple[float, float]], raced: dict[str, tuple[float, float, float]]) -> StudyRecord:
    """`trials`: id -> its search run's objectives; `raced`: id -> its seed means and its P(front)."""
    cfg = parse_config({"name": "hand", "distill": {"steps": 5}, "eval": {"suites": ["world"]},
                        "search": {"space": {"distill.loss.temperature": {"type": "float", "low": 1, "high": 4}}}})
    usage = {"perf/distill_seconds": 50.0, "perf/eval_seconds": 20.0, "perf/busy_share": 0.8}  # as a trial reports
    runs = [Trial(tid, f"run-{tid}", "FINISHED", {"distill.loss.temperature": "2"},
                  {METRICS[0]: a, METRICS[1]: w, f"{METRICS[1]}_se": 0.5, **usage})
            for tid, (a, w) in trials.items()]
    confirm_runs = {tid: Trial(tid, f"confirm-{tid}", "FINISHED", {}, {
        METRICS[0]: a, f"{METRICS[0]}/std": 0.01, f"{METRICS[0]}/ci_low": a - 0.02, f"{METRICS[0]}/ci_high": a + 0.02,
        METRICS[1]: w, f"{METRICS[1]}/std": 1.0, f"{METRICS[1]}/ci_low": w - 2, f"{METRICS[1]}/ci_high": w + 2,
        "confirm/p_front": p}, {"confirm_of": tid, "seeds": "4", "confirm/place": verdicts.place(p)})
        for tid, (a, w, p) in raced.items()}
    return StudyRecord("hand", None, cfg, {}, runs, confirm_runs)


def test_the_race_front_is_the_seed_means_with_p_front_at_least_half():
    # single runs: a (less bias) and b (more score) trade off, c is dominated by b
    # seed means: b's score was a lucky draw; over seeds a dominates b and c, which the race's P(front) says
    record = _study(trials={"a": (0.10, 50.0), "b": (0.20, 56.0), "c": (0.30, 53.0)},
                    raced={"a": (0.10, 52.0, 0.97), "b": (0.20, 49.0, 0.5), "c": (0.30, 51.0, 0.02)})
    single = summarize(record)
    assert [t.trial_id for t, _ in single.front_trials()] == ["a", "b"]
    race = summarize_race(record)
    assert [t.trial_id for t, _ in race.front_trials()] == ["a", "b"]  # P >= 0.5, though a dominates b's means
    row = race.rows()[0]
    assert row["objectives"] == {METRICS[0]: 0.10, METRICS[1]: 52.0}  # the means, not the single run
    assert row["single_run"] == {METRICS[0]: 0.10, METRICS[1]: 50.0}
    assert row["interval"][METRICS[1]] == [50.0, 54.0]
    assert [r["place"] for r in race.raced_rows()] == ["front", "undecided", "off"]
    assert race.errors[0, 1] == pytest.approx(1.0 / np.sqrt(4))  # std / sqrt(seeds)
    assert race.to_json()["reference"] == single.to_json()["reference"]  # one reference: comparable hypervolumes


def test_a_trial_outdone_within_the_margins_is_off_the_race_front_and_says_by_whom():
    # the control ties the mixup's score and loses on bias: its P(front) stays 0.6, but the race put it off, by m
    record = _study(trials={"m": (0.10, 50.0), "ctl": (0.40, 50.5)},
                    raced={"m": (0.10, 50.0, 1.0), "ctl": (0.40, 50.4, 0.6)})
    record.confirm_runs["ctl"].tags |= {"confirm/place": "off", "confirm/outdone_by": "m"}
    race = summarize_race(record)
    assert [t.trial_id for t, _ in race.front_trials()] == ["m"]
    assert [(r["place"], r["outdone_by"]) for r in race.raced_rows()] == [("front", None), ("off", "m")]
    from rich.console import Console

    from analysis.report import race_table

    console = Console(width=200, record=True)
    console.print(race_table(race, "t"))
    text = console.export_text()
    assert "0.60" in text and "off, by" in text and "0 undecided" in text


def test_single_run_front_carries_each_trials_standard_error():
    record = _study(trials={"a": (0.10, 50.0), "b": (0.20, 56.0)}, raced={})
    front = summarize(record)
    assert summarize_race(record) is None
    rows = front.rows()
    assert rows[0]["se"] == {METRICS[0]: None, METRICS[1]: 0.5}  # nan (not reported) reads as None
    from rich.console import Console

    console = Console(width=200, record=True)
    console.print(front_table(front, "t"))
    assert "50.0000 ± 0.5000" in console.export_text()


SMOKE_PARAMS = {"distill.mitigation.mode": "mixup", "distill.mitigation.alpha": "0.3137",
                "distill.mitigation.p": "0.75", "distill.loss.temperature": "3.4215",
                "distill.loss.alpha_mlm": "1.9876"}


def test_the_front_tables_fit_120_columns_without_a_wrapped_header():
    from rich.console import Console

    from study.publish import front_tables

    # the smoke study's five parameters; eight-character trial ids; the anchor and the knee in one note
    record = _study(trials={"f01b05da": (0.10, 50.0), "a93c11e0": (0.20, 56.0), "c0ffee42": (0.30, 53.0)},
                    raced={"f01b05da": (0.10, 52.0, 0.9), "a93c11e0": (0.20, 49.0, 0.1), "c0ffee42": (0.05, 48.0, 0.6)})
    for t in record.trials:
        t.params = dict(SMOKE_PARAMS)
    record.trials[0].tags["anchor"] = "paper_mixup"
    console = Console(width=120, record=True)
    every = []
    for table in front_tables(record, summarize(record), summarize_race(record))[:-1]:  # the tables, not the usage
        console.print(table)
        headers = [line for column in table.columns for line in str(column.header).split("\n")]
        every.append(headers)
        text = console.export_text(clear=True)
        assert max(len(line) for line in text.splitlines()) <= 120
        # every header line is printed whole: none is cut into pieces over two lines
        head = "\n".join(text.splitlines()[:6])
        assert all(h in head for h in headers), (headers, head)
    single, raced = every[0], every[1]
    assert single[2:7] == ["alpha_mlm", "temperature", "alpha", "mode", "p"]  # in the order of their full names
    for headers in (single, raced):
        assert "bias/" in headers and "amplification ↓" in headers and "score ↑" in headers


def test_usage_line_gives_the_medians_and_the_least_busy_trial():
    record = _study(trials={"a": (0.1, 50.0), "b": (0.2, 56.0), "c": (0.3, 53.0)}, raced={})
    for t, (distill, evaluate, busy) in zip(record.trials, [(40, 20, 0.9), (60, 30, 0.7), (50, 10, 0.8)]):
        t.metrics |= {"perf/distill_seconds": distill, "perf/eval_seconds": evaluate, "perf/busy_share": busy}
    assert usage_line(record) == ("what the trials used (median of 3 finished): distillation 50s, evaluation 20s, "
                                  "busy share 0.80 of the workers' time (least busy: trial b, 0.70)")
    assert usage_line(_study(trials={}, raced={})) is None  # no finished trial
