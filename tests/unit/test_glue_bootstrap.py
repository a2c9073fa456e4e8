"""Trivial baselines and the paired bootstrap: the numbers the gate's floor and noise rules read."""

from __future__ import annotations

import numpy as np
import pytest

from tasks.glue.baselines import trivial_metrics, trivial_predictions
from tasks.glue.bootstrap import _score, paired_bootstrap
from tasks.glue.metrics import compute_metrics, task_score


def test_majority_class_of_the_scored_rows():
    labels = [1] * 89 + [0] * 61  # SST-2's first 150 dev rows: 59.3% positive
    assert trivial_predictions("sst2", labels).tolist() == [1] * 150
    assert trivial_metrics("sst2", labels) == {"accuracy": pytest.approx(89 / 150)}
    assert trivial_predictions("rte", [0, 1]).tolist() == [0, 0]  # a tie: the lowest id


def test_constant_guesses_score_zero_correlation():
    assert trivial_metrics("cola", [1, 1, 0, 1]) == {"matthews_correlation": 0.0}
    assert trivial_predictions("stsb", [1.0, 3.0]).tolist() == [2.0, 2.0]
    assert trivial_metrics("stsb", [1.0, 3.0, 4.5]) == {"pearson": 0.0, "spearmanr": 0.0}


def test_mrpc_floor_is_always_equivalent():
    labels = [1] * 68 + [0] * 32
    m = trivial_metrics("mrpc", labels)
    assert m["accuracy"] == pytest.approx(0.68)
    assert m["f1"] == pytest.approx(2 * 0.68 / 1.68)


@pytest.mark.parametrize("task", ["cola", "sst2", "mrpc", "stsb", "mnli_matched"])
def test_vectorised_scores_equal_the_official_metrics(task):
    rng = np.random.default_rng(1)
    n = 60
    if task == "stsb":
        true = np.round(rng.uniform(0, 5, n), 1)  # ties, as STS-B's scores have
        pred = np.round(true + rng.normal(0, 1, n), 1)
    else:
        k = 3 if task.startswith("mnli") else 2
        true = rng.integers(0, k, n)
        pred = np.where(rng.random(n) < 0.6, true, rng.integers(0, k, n))
    idx = rng.integers(0, n, size=(25, n))
    idx[0] = 0  # one resample of a single repeated row: constant sides score 0, as compute_metrics does
    got = _score(task, pred[idx], true[idx])
    want = [task_score(compute_metrics(task, pred[i], true[i])) for i in idx]
    np.testing.assert_allclose(got, want, atol=1e-12)


def _systems(n=277, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    good = np.where(rng.random(n) < 0.8, labels, 1 - labels)
    slightly = good.copy()
    wrong = np.flatnonzero(good != labels)[:3]
    slightly[wrong] = labels[wrong]  # three rows better than `good`
    return labels, good, slightly


def test_seeded_and_paired():
    labels, good, slightly = _systems()
    preds = {"a": {"rte": good}, "b": {"rte": slightly}, "base": {"rte": trivial_predictions("rte", labels)}}
    one = paired_bootstrap({"rte": labels}, preds, n_resamples=500, seed=7)
    two = paired_bootstrap({"rte": labels}, preds, n_resamples=500, seed=7)
    assert one.interval("a", "rte") == two.interval("a", "rte")
    a = one.interval("a", "rte")
    assert a.low < a.point < a.high and a.point == pytest.approx(task_score(compute_metrics("rte", good, labels)))
    # Paired: the gain of a model over itself is exactly 0 on every resample.
    assert one.gain_interval("a", "a").as_dict() == {"point": 0.0, "low": 0.0, "high": 0.0, "stderr": 0.0}
    gain = one.gain_interval("b", "a")
    assert gain.point > 0 and gain.low >= 0  # b is never worse on any resample
    # ... and far narrower than the two systems' own intervals, which overlap almost entirely.
    assert gain.high - gain.low < (a.high - a.low) / 3
    assert one.gain_interval("a", "base").low > 0  # 80% accurate beats the majority class on 277 rows


def test_glue_interval_averages_tasks_and_counts_mnli_once():
    rng = np.random.default_rng(2)
    labels = {"rte": rng.integers(0, 2, 50), "mnli_matched": rng.integers(0, 3, 40),
              "mnli_mismatched": rng.integers(0, 3, 40)}
    b = paired_bootstrap(labels, {"m": labels}, n_resamples=50)  # perfect predictions
    assert set(b.points["m"]) == {"mnli", "rte"}
    assert b.glue_interval("m").as_dict() == {"point": 1.0, "low": 1.0, "high": 1.0, "stderr": 0.0}
    with pytest.raises(ValueError, match="mnli needs labels"):
        paired_bootstrap({"mnli_matched": labels["mnli_matched"]}, {"m": labels}, n_resamples=5)
    with pytest.raises(ValueError, match="no predictions"):
        paired_bootstrap(labels, {"m": {"rte": labels["rte"]}}, n_resamples=5)


def test_chunked_resampling_matches_one_chunk(monkeypatch):
    import tasks.glue.bootstrap as bs

    labels, good, _ = _systems(n=100)
    whole = paired_bootstrap({"rte": labels}, {"a": {"rte": good}}, n_resamples=40, seed=3)
    monkeypatch.setattr(bs, "_CELLS", 100 * 7)  # 7 resamples per chunk: the same draws, in 6 pieces
    pieces = paired_bootstrap({"rte": labels}, {"a": {"rte": good}}, n_resamples=40, seed=3)
    np.testing.assert_array_equal(whole.samples["a"]["rte"], pieces.samples["a"]["rte"])


def test_several_seeds_score_as_their_mean():
    labels, good, slightly = _systems(n=120)
    both = paired_bootstrap({"rte": labels}, {"s": {"rte": np.stack([good, slightly])}, "a": {"rte": good},
                                               "b": {"rte": slightly}}, n_resamples=30, seed=4)
    np.testing.assert_allclose(both.samples["s"]["rte"], (both.samples["a"]["rte"] + both.samples["b"]["rte"]) / 2)
    assert both.points["s"]["rte"] == pytest.approx((both.points["a"]["rte"] + both.points["b"]["rte"]) / 2)

