"""The template metric on a model whose logits are set by hand, against values computed by hand."""

import math

import pytest
import torch
from transformers import BertTokenizer
from transformers.modeling_outputs import MaskedLMOutput

from study.config import TemplateBiasConfig
from study.metrics.bias import amplification, template

WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", "he", "she", "is", "a", "an", "nurse", "pilot", "the",
         "wo", "##man", "man", "plumb", "##er"]
V = len(WORDS)


@pytest.fixture(scope="module")
def tokenizer():
    return BertTokenizer(vocab={w: i for i, w in enumerate(WORDS)}, do_lower_case=True)


class HandModel(torch.nn.Module):
    """Logits 0 everywhere, except: with "nurse" in the sentence she gets +1; with "pilot", he gets +2."""

    def __init__(self):
        super().__init__()
        self.dummy = torch.nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask=None):
        logits = torch.zeros(*input_ids.shape, V)
        has_nurse = (input_ids == WORDS.index("nurse")).any(1)
        has_pilot = (input_ids == WORDS.index("pilot")).any(1)
        logits[has_nurse, :, WORDS.index("she")] += 1.0
        logits[has_pilot, :, WORDS.index("he")] += 2.0
        return MaskedLMOutput(logits=logits)


def test_template_metric_by_hand(tokenizer):
    cfg = TemplateBiasConfig(templates=["{target} is {a} {occupation} ."], pairs=[("he", "she")])
    out = template.measure(HandModel(), tokenizer, {"nurse": 0.88, "pilot": 0.06}, cfg)
    # nurse: assoc(he) - assoc(she) = log(1/(V-1+e)) - log(e/(V-1+e)) (priors are equal) = -1; pilot: +2
    assert out["per_occupation"] == pytest.approx([-1.0, 2.0], abs=1e-5)
    assert out["signed_mean"] == pytest.approx(0.5, abs=1e-5)
    assert out["abs_mean"] == pytest.approx(1.5, abs=1e-5)
    assert out["spread"] == pytest.approx(1.5, abs=1e-5)
    assert out["cbs"] == pytest.approx((1 / 2 + 4 / 2) / 2, abs=1e-5)
    assert out["planted_spearman"] == pytest.approx(1.0)
    half_gap = (math.log(0.88 / 0.12) - math.log(0.06 / 0.94)) / 2
    assert out["planted_slope"] == pytest.approx(1.5 / half_gap, abs=1e-5)
    p_nurse, p_pilot = math.e / (math.e + 1), 1 / (1 + math.e**2)
    assert out["predicted_female_share"] == pytest.approx([p_nurse, p_pilot], abs=1e-6)
    assert out["majority_skew"] == pytest.approx(((p_nurse - 0.88) + (0.06 - p_pilot)) / 2, abs=1e-6)


def test_queries_mask_every_piece(tokenizer):
    cfg = TemplateBiasConfig(templates=["{target} is {a} {occupation} ."], pairs=[("the man", "the woman")])
    q = template.build_queries(tokenizer, ["plumber"], cfg)
    assert q.shape == (1, 1, 1, 2, 2)
    toks = [tokenizer.convert_ids_to_tokens(ids) for ids in q.ids]
    assert toks[0] == ["[CLS]", "the", "[MASK]", "is", "a", "plumb", "##er", ".", "[SEP]"]  # man, occupation
    assert toks[1] == ["[CLS]", "the", "[MASK]", "is", "a", "[MASK]", "[MASK]", ".", "[SEP]"]  # man, prior
    assert toks[2] == ["[CLS]", "the", "[MASK]", "[MASK]", "is", "a", "plumb", "##er", ".", "[SEP]"]  # woman
    assert q.target_positions[2] == [2, 3] and tokenizer.convert_ids_to_tokens(q.target_ids[2]) == ["wo", "##man"]


def test_multi_piece_target_sums_piece_logprobs(tokenizer):
    # all logits 0: each piece has log(1/V); "woman" (2 pieces) gets 2 log(1/V) in sentence and prior alike
    class Flat(HandModel):
        def forward(self, input_ids, attention_mask=None):
            return MaskedLMOutput(logits=torch.zeros(*input_ids.shape, V))

    cfg = TemplateBiasConfig(templates=["{target} is {a} {occupation} ."], pairs=[("the man", "the woman")])
    q = template.build_queries(tokenizer, ["nurse"], cfg)
    logp = template.target_logprobs(Flat(), q, 0, batch_size=3)
    assert logp == pytest.approx([-math.log(V)] * 2 + [-2 * math.log(V)] * 2)


def test_amplification_is_student_minus_teacher():
    out = amplification({"bias/template/spread": 0.9}, {"bias/template/spread": 0.7}, "bias/template/spread")
    assert out["bias/primary"] == "bias/template/spread"
    assert out["teacher/bias/template/spread"] == 0.7
    assert out["bias/amplification"] == pytest.approx(0.2)


def test_standard_errors_follow_the_spread_over_occupations():
    """A bootstrap over occupations: the mean score's SE is close to std / sqrt(n) (the textbook value for a mean),
    and a statistic that does not vary between occupations has SE 0."""
    import numpy as np

    rng = np.random.default_rng(1)
    n = 200
    logp = np.zeros((1, n, 1, 2, 2))
    logp[0, :, 0, 0, 0] = rng.normal(0.0, 1.0, n)  # log P(he | occupation): the Kurita score varies by occupation
    shares = rng.uniform(0.05, 0.95, n)
    se = template.standard_errors(logp, shares, seed=0, resamples=2000)
    score = logp[0, :, 0, 0, 0]
    assert se["signed_mean_se"] == pytest.approx(score.std() / np.sqrt(n), rel=0.1)
    flat = template.standard_errors(np.zeros((1, n, 1, 2, 2)), shares, seed=0, resamples=100)
    assert flat["signed_mean_se"] == 0.0 and flat["abs_mean_se"] == 0.0


def test_amplification_carries_the_students_standard_error():
    student = {"bias/template/planted_slope": 1.2, "bias/template/planted_slope_se": 0.05,
               "bias/crows/distance": 8.0, "bias/crows/score_ci_low": 54.0, "bias/crows/score_ci_high": 62.0}
    teacher = {"bias/template/planted_slope": 1.0, "bias/crows/distance": 6.0}
    out = amplification(student, teacher, "bias/template/planted_slope")
    assert out["bias/amplification"] == pytest.approx(0.2) and out["bias/amplification_se"] == 0.05
    student["bias/crows/distance_ci_low"], student["bias/crows/distance_ci_high"] = 4.08, 11.92
    out = amplification(student, teacher, "bias/crows/distance")
    assert out["bias/amplification_se"] == pytest.approx(2.0, rel=1e-4)  # [4.08, 11.92] is 8 ± 1.96 x 2


def test_occupations_the_tokenizer_does_not_know_are_warned_about(tokenizer, caplog):
    """A model with another vocabulary: every occupation [UNK] scores alike, slope 0 and Spearman nan, as if
    measured. The metric says so in one line."""
    cfg = TemplateBiasConfig(templates=["{target} is {a} {occupation} ."])
    with caplog.at_level("WARNING", logger="study.metrics.bias.template"):
        result = template.measure(HandModel(), tokenizer, {"baker": 0.6, "tailor": 0.3, "judge": 0.5}, cfg)
    assert result["planted_slope"] == 0.0 or math.isnan(result["planted_spearman"])
    (line,) = [r.getMessage() for r in caplog.records]
    assert "0 of 3 occupations are in the tokenizer's vocabulary" in line and "meaningless" in line

    caplog.clear()
    with caplog.at_level("WARNING", logger="study.metrics.bias.template"):
        template.measure(HandModel(), tokenizer, {"nurse": 0.88, "pilot": 0.06, "baker": 0.6}, cfg)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "2 of 3 occupations" in line and "baker" in line and "meaningless" not in line

    caplog.clear()
    with caplog.at_level("WARNING", logger="study.metrics.bias.template"):
        template.measure(HandModel(), tokenizer, {"nurse": 0.88, "pilot": 0.06}, cfg)
    assert not caplog.records  # all known: nothing to say
