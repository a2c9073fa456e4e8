"""GLUE metrics against hand-worked values and sklearn/scipy; the GLUE score against published tables (facts §D3)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from tasks.glue.metrics import compute_metrics, glue_score, per_task_scores, task_score
from tasks.glue.tasks import TASKS

# A 2x2 confusion matrix worked by hand: TP=3, FN=1, FP=2, TN=4 (10 examples).
#   MCC = (TP*TN - FP*FN) / sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN)) = (12 - 2) / sqrt(5*4*6*5) = 10 / sqrt(600)
#   F1  = 2TP / (2TP + FP + FN) = 6 / 9;   accuracy = (TP + TN) / 10 = 0.7
HAND_LABELS = [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
HAND_PREDS = [1, 1, 1, 0, 1, 1, 0, 0, 0, 0]


def test_mcc_by_hand():
    got = compute_metrics("cola", HAND_PREDS, HAND_LABELS)
    assert list(got) == ["matthews_correlation"]
    assert got["matthews_correlation"] == pytest.approx(10 / math.sqrt(600))  # 0.408248...


@pytest.mark.parametrize("task", ["mrpc", "qqp"])
def test_f1_and_accuracy_by_hand(task):
    got = compute_metrics(task, HAND_PREDS, HAND_LABELS)
    assert list(got) == ["f1", "accuracy"]  # HF's order
    assert got["f1"] == pytest.approx(6 / 9)
    assert got["accuracy"] == pytest.approx(0.7)


def test_f1_positive_class_is_1():
    # Swapping which class is "positive" changes F1 (TP=4, FP=1, FN=2 -> 8/11), so this pins pos_label=1.
    flipped = compute_metrics("mrpc", [1 - p for p in HAND_PREDS], [1 - y for y in HAND_LABELS])
    assert flipped["f1"] == pytest.approx(8 / 11)


@pytest.mark.parametrize("task", ["sst2", "qnli", "rte", "wnli", "mnli", "mnli_matched", "mnli_mismatched"])
def test_accuracy_tasks(task):
    n = TASKS["mnli"].num_labels if task.startswith("mnli") else 2
    labels = [i % n for i in range(12)]
    preds = labels[:9] + [(y + 1) % n for y in labels[9:]]  # 3 of 12 wrong
    assert compute_metrics(task, preds, labels) == {"accuracy": 0.75}


def test_pearson_spearman_by_hand():
    # x mean 2.5, y mean 5; sum dx*dy = 11, sum dx^2 = 5, sum dy^2 = 26 -> r = 11 / sqrt(130).
    # y is increasing in x, so the ranks agree exactly: Spearman 1.
    got = compute_metrics("stsb", [1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 5.0, 9.0])
    assert list(got) == ["pearson", "spearmanr"]
    assert got["pearson"] == pytest.approx(11 / math.sqrt(130))
    assert got["spearmanr"] == pytest.approx(1.0)
    # Ranks 1,2,3,4 vs 1,3,2,4: sum d^2 = 2 -> rho = 1 - 6*2 / (4*(16-1)) = 0.8.
    assert compute_metrics("stsb", [1, 2, 3, 4], [0.5, 3.0, 2.0, 4.5])["spearmanr"] == pytest.approx(0.8)


def test_agrees_with_sklearn_and_scipy_on_random_data():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 2, 500), rng.integers(0, 2, 500)
    p[:300] = y[:300]  # correlated, so the values are not all near 0
    assert compute_metrics("cola", p, y)["matthews_correlation"] == pytest.approx(matthews_corrcoef(y, p))
    mrpc = compute_metrics("mrpc", p, y)
    assert mrpc["f1"] == pytest.approx(f1_score(y, p))
    assert mrpc["accuracy"] == pytest.approx(accuracy_score(y, p))
    y3, p3 = rng.integers(0, 3, 500), rng.integers(0, 3, 500)
    assert compute_metrics("mnli", p3, y3)["accuracy"] == pytest.approx(accuracy_score(y3, p3))
    s = rng.uniform(0, 5, 300)
    ps = s + rng.normal(0, 1.0, 300)
    stsb = compute_metrics("stsb", ps, s)
    assert stsb["pearson"] == pytest.approx(pearsonr(ps, s)[0])
    assert stsb["spearmanr"] == pytest.approx(spearmanr(ps, s)[0])


def test_accepts_numpy_and_whole_float_ids():
    got = compute_metrics("sst2", np.array([1.0, 0.0, 1.0]), np.array([1, 0, 0], dtype=np.int64))
    assert got == {"accuracy": pytest.approx(2 / 3)}
    assert all(type(v) is float for v in compute_metrics("mrpc", np.array([1, 0]), np.array([1, 1])).values())


def test_constant_predictions_score_zero_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no sklearn/scipy warning, no nan
        assert compute_metrics("cola", [1] * 6, [0, 1, 1, 0, 1, 1]) == {"matthews_correlation": 0.0}
        assert compute_metrics("stsb", [2.5] * 4, [0.0, 1.0, 4.0, 5.0]) == {"pearson": 0.0, "spearmanr": 0.0}
        assert compute_metrics("stsb", [0.0, 1.0, 4.0, 5.0], [3.0] * 4) == {"pearson": 0.0, "spearmanr": 0.0}
        assert compute_metrics("stsb", [1.0], [2.0]) == {"pearson": 0.0, "spearmanr": 0.0}
        # No positive anywhere: F1 is 0 (sklearn's zero_division value), accuracy is 1.
        assert compute_metrics("qqp", [0, 0, 0], [0, 0, 0]) == {"f1": 0.0, "accuracy": 1.0}


@pytest.mark.parametrize(
    ("task", "preds", "labels", "match"),
    [
        ("sst2", [0, 1], [0], "2 predictions but 1 labels"),
        ("sst2", [], [], "no predictions"),
        ("stsb", [], [], "no predictions"),
        ("sst2", [[0.1, 0.9], [0.8, 0.2]], [1, 0], "1-D"),  # logits
        ("sst2", [0.2, 0.9], [0, 1], "label ids"),  # probabilities
        ("mnli", [0, 3], [0, 1], "outside 0..2"),
        ("rte", [0, 1], [0, -1], "outside 0..1"),  # hidden test labels
        ("stsb", [1.0, float("nan")], [1.0, 2.0], "finite"),
        ("sst2", ["a", "b"], [0, 1], "numbers"),
        ("ax", [0], [0], "unknown GLUE task"),
        ("mnli_test", [0], [0], "unknown GLUE task"),
    ],
)
def test_bad_inputs_raise(task, preds, labels, match):
    with pytest.raises(ValueError, match=match):
        compute_metrics(task, preds, labels)


def test_task_score_is_the_plain_mean():
    assert task_score({"f1": 0.8, "accuracy": 0.6}) == pytest.approx(0.7)
    assert task_score({"matthews_correlation": -0.2}) == pytest.approx(-0.2)
    with pytest.raises(ValueError, match="not GLUE metrics"):
        task_score({"accuracy": 0.9, "eval_loss": 0.3})
    with pytest.raises(ValueError, match="no metrics"):
        task_score({})
    with pytest.raises(ValueError, match="finite"):
        task_score({"pearson": float("nan")})


def _results(row: dict[str, float | tuple[float, float]]) -> dict[str, dict[str, float]]:
    """Result dicts from a published table row (one number per metric; pairs in the table's order)."""
    return {
        "cola": {"matthews_correlation": row["cola"]},
        "sst2": {"accuracy": row["sst2"]},
        "mrpc": dict(zip(("f1", "accuracy"), row["mrpc"])),
        "stsb": dict(zip(("pearson", "spearmanr"), row["stsb"])),
        "qqp": dict(zip(("f1", "accuracy"), row["qqp"])),
        "mnli_matched": {"accuracy": row["mnli"][0]},
        "mnli_mismatched": {"accuracy": row["mnli"][1]},
        "qnli": {"accuracy": row["qnli"]},
        "rte": {"accuracy": row["rte"]},
        "wnli": {"accuracy": row["wnli"]},
    }


# Turc et al. 2019 small BERTs, GLUE test (google-research/bert README; facts §D3). MRPC F1/acc, STS-B P/S,
# QQP F1/acc, MNLI m/mm. Tiny's published 64.2 is not reproduced exactly (mean = 64.14, facts §D2).
TURC = {
    "tiny": (64.14, dict(cola=0.0, sst2=83.2, mrpc=(81.1, 71.1), stsb=(74.3, 73.6), qqp=(62.2, 83.4),
                         mnli=(70.2, 70.3), qnli=81.5, rte=57.2, wnli=62.3)),
    "mini": (65.8, dict(cola=0.0, sst2=85.9, mrpc=(81.1, 71.8), stsb=(75.4, 73.3), qqp=(66.4, 86.2),
                        mnli=(74.8, 74.3), qnli=84.1, rte=57.9, wnli=62.3)),
    "small": (71.2, dict(cola=27.8, sst2=89.7, mrpc=(83.4, 76.2), stsb=(78.8, 77.0), qqp=(68.1, 87.0),
                         mnli=(77.6, 77.0), qnli=86.4, rte=61.8, wnli=62.3)),
    "medium": (73.5, dict(cola=38.0, sst2=89.6, mrpc=(86.6, 81.6), stsb=(80.4, 78.4), qqp=(69.6, 87.9),
                          mnli=(80.0, 79.1), qnli=87.7, rte=62.2, wnli=62.3)),
}


@pytest.mark.parametrize("model", list(TURC))
def test_glue_score_reproduces_turc_small_berts(model):
    published, row = TURC[model]
    digits = 2 if model == "tiny" else 1
    percents = _results(row)
    assert round(glue_score(percents), digits) == published
    fractions = {k: {m: v / 100 for m, v in ms.items()} for k, ms in percents.items()}
    assert round(100 * glue_score(fractions), digits) == published


def test_glue_score_bert_base_dev():
    # HF run_glue README, bert-base-cased dev (facts §D3): the GLUE-style dev score is 78.9.
    row = dict(cola=56.53, sst2=92.32, mrpc=(88.85, 84.07), stsb=(88.64, 88.48), qqp=(87.49, 90.71),
               mnli=(83.91, 84.10), qnli=90.66, rte=65.70, wnli=56.34)
    assert round(glue_score(_results(row)), 1) == 78.9


def test_per_task_scores_count_mnli_once():
    scores = per_task_scores(_results(TURC["small"][1]))
    assert list(scores) == list(TASKS)  # nine tasks, MNLI once, WNLI included
    assert scores["mnli"] == pytest.approx((77.6 + 77.0) / 2)
    assert scores["mrpc"] == pytest.approx((83.4 + 76.2) / 2)
    assert scores["cola"] == 27.8


def test_glue_score_over_the_tasks_run():
    results = {"sst2": {"accuracy": 0.9}, "rte": {"accuracy": 0.6}, "mrpc": {"f1": 0.8, "accuracy": 0.7}}
    assert per_task_scores(results) == pytest.approx({"sst2": 0.9, "mrpc": 0.75, "rte": 0.6})
    assert glue_score(results) == pytest.approx((0.9 + 0.75 + 0.6) / 3)


@pytest.mark.parametrize(
    ("results", "match"),
    [
        ({}, "no GLUE results"),
        ({"mnli": {"accuracy": 0.8}}, "unknown GLUE result keys"),
        ({"ax": {"matthews_correlation": 0.1}}, "unknown GLUE result keys"),
        ({"mnli_matched": {"accuracy": 0.8}}, "mnli needs results"),
        ({"mrpc": {"f1": 0.8}}, "expected exactly"),
        ({"sst2": {"accuracy": 0.9, "eval_loss": 0.2}}, "expected exactly"),
    ],
)
def test_glue_score_rejects_bad_results(results, match):
    with pytest.raises(ValueError, match=match):
        glue_score(results)
