"""The promotion gate: one test per rule, plus the arithmetic at the margin."""

from __future__ import annotations

import dataclasses

import pytest

from tasks.glue.gate import Decision, EvalRecord, decide
from tasks.glue.protocol import EvalSetup, TaskSetup


def results(score: float, tasks: tuple[str, ...] = ("sst2", "rte")) -> dict[str, dict[str, float]]:
    """Results where every metric of every task equals `score`, so the GLUE score is `score`."""
    out: dict[str, dict[str, float]] = {}
    for t in tasks:
        if t == "mnli":
            out["mnli_matched"] = {"accuracy": score}
            out["mnli_mismatched"] = {"accuracy": score}
        elif t == "mrpc":
            out[t] = {"f1": score, "accuracy": score}
        else:
            out[t] = {"accuracy": score}
    return out


def setup(tasks: tuple[str, ...], n_eval: int = 100, max_train: int | None = None, full: bool = True) -> EvalSetup:
    per_task = {t: TaskSetup(data={"validation": "sha256:abc"}, n_train=1000,
                             n_eval={k: n_eval for k in results(0, (t,))},
                             protocol={"lr": 5e-5, "max_train_examples": max_train, "seeds": [42]})
                for t in tasks}
    return EvalSetup(tasks=tasks, per_task=per_task, spec_fingerprint="f", spec_path="spec.yaml", full=full)


def record(
    version: str, score: float, tasks: tuple[str, ...] = ("sst2", "rte"), status: str = "complete",
    baseline: float = 0.5, **setup_args,
) -> EvalRecord:
    return EvalRecord(version, status, tasks, results(score, tasks), setup(tasks, **setup_args),
                      baselines=results(baseline, tasks), model="m")


def test_no_candidate_evaluation_is_refused():
    d = decide(None, record("1", 0.7), margin=0.0)
    assert not d.promote and "no GLUE evaluation" in d.reason
    assert d.candidate_score is None and d.champion_score is None


@pytest.mark.parametrize("status", ["failed", "running", "missing"])
def test_incomplete_candidate_is_refused(status: str):
    d = decide(record("2", 0.9, status=status), record("1", 0.7), margin=0.0)
    assert not d.promote and status in d.reason and "not complete" in d.reason


def test_candidate_missing_a_requested_task_is_refused():
    d = decide(record("2", 0.9), record("1", 0.7, ("sst2", "rte", "cola")), margin=0.0, tasks=["sst2", "cola"])
    assert not d.promote and "no results for cola" in d.reason
    assert d.tasks == ("cola", "sst2")  # TASK_NAMES order


def test_candidate_missing_half_of_mnli_is_refused():
    cand = record("2", 0.9, ("mnli",))
    cand = dataclasses.replace(cand, results={"mnli_matched": {"accuracy": 0.9}})
    d = decide(cand, None, margin=0.0)
    assert not d.promote and "no results for mnli" in d.reason


def test_tasks_default_to_the_champions_whole_task_set():
    cand = record("2", 0.80, ("sst2", "rte"))
    champ = record("1", 0.70, ("sst2", "rte", "cola"))
    d = decide(cand, champ, margin=0.05)
    assert not d.promote and "no results for cola" in d.reason and d.tasks == ("cola", "sst2", "rte")
    # gate.tasks narrows the comparison explicitly: only sst2 and rte are compared, where it scores 0.70
    d = decide(cand, champ, margin=0.05, tasks=["sst2", "rte"])
    assert d.promote and d.tasks == ("sst2", "rte")
    assert d.candidate_score == pytest.approx(0.80) and d.champion_score == pytest.approx(0.70)


def test_a_subset_evaluation_never_promotes():
    # `lmpipe glue ... --tasks wnli; lmpipe promote` must not crown a model on WNLI's 71 rows
    d = decide(record("2", 0.9, ("wnli",), full=False), None, margin=0.0)
    assert not d.promote and "subset" in d.reason


def test_a_record_without_a_setup_is_refused():
    cand = dataclasses.replace(record("2", 0.9), setup=None)
    d = decide(cand, None, margin=0.0)
    assert not d.promote and "recorded no setup" in d.reason and "lmpipe glue models:/m/2" in d.reason
    d = decide(record("2", 0.9), dataclasses.replace(record("1", 0.5), setup=None), margin=0.0)
    assert not d.promote and "champion 1's evaluation recorded no setup" in d.reason


@pytest.mark.parametrize(("champ_args", "field"), [
    ({"n_eval": 277}, "sst2: n_eval['sst2'] is 100 on the candidate but 277 on the champion"),
    ({"max_train": 128}, "protocol['max_train_examples'] is null on the candidate but 128 on the champion"),
])
def test_a_champion_evaluated_otherwise_is_refused_with_the_fix(champ_args, field):
    d = decide(record("2", 0.9), record("1", 0.5, **champ_args), margin=0.0)
    assert not d.promote and field in d.reason
    assert "lmpipe glue models:/m/1 --tasks sst2,rte --spec spec.yaml" in d.reason


def test_other_dev_data_is_refused():
    champ = record("1", 0.5)
    champ.setup.per_task["rte"].data["validation"] = "sha256:other"
    d = decide(record("2", 0.9), champ, margin=0.0)
    assert not d.promote and "rte: data['validation']" in d.reason


@pytest.mark.parametrize("champion", [None, "record"])
def test_below_the_floor_never_promotes_not_even_the_first_champion(champion):
    # SST-2 54.0% where the majority class is 59.3%: today's demo champion
    cand = record("2", 0.9, ("sst2", "rte"))
    cand = dataclasses.replace(cand, results={"sst2": {"accuracy": 0.540}, "rte": {"accuracy": 0.70}},
                               baselines={"sst2": {"accuracy": 0.593}, "rte": {"accuracy": 0.558}})
    d = decide(cand, record("1", 0.3) if champion else None, margin=0.0)
    assert not d.promote and "does not beat the trivial baseline on sst2" in d.reason and "59.30" in d.reason


def test_the_floor_needs_the_margin_too():
    d = decide(record("2", 0.55, baseline=0.54), None, margin=0.02)
    assert not d.promote and "trivial baseline" in d.reason
    assert decide(record("2", 0.57, baseline=0.54), None, margin=0.02).promote


def test_auto_margin_is_the_seed_spread():
    seeds = {"sst2": [0.80, 0.84, 0.76], "rte": [0.80, 0.84, 0.76]}  # std 0.04
    cand = dataclasses.replace(record("2", 0.83), seed_scores=seeds)
    d = decide(cand, dataclasses.replace(record("1", 0.80), seed_scores=seeds), margin=None)
    assert not d.promote and d.margin == pytest.approx(0.04) and "std over seeds" in d.reason
    d = decide(dataclasses.replace(record("2", 0.85), seed_scores=seeds),
               dataclasses.replace(record("1", 0.80), seed_scores=seeds), margin=None)
    assert d.promote


def test_auto_margin_without_noise_measure_is_refused():
    d = decide(record("2", 0.83), record("1", 0.80), margin=None)
    assert not d.promote and "'auto'" in d.reason


def test_champion_on_a_different_task_set_is_refused():
    d = decide(record("2", 0.9, ("sst2", "rte")), record("1", 0.1, ("sst2", "cola")), margin=0.0,
               tasks=["sst2", "rte"])
    assert not d.promote
    assert "champion 1 was not evaluated on rte" in d.reason and "re-evaluate" in d.reason
    assert d.candidate_score == pytest.approx(0.9) and d.champion_score is None


def test_incomplete_champion_is_refused():
    d = decide(record("2", 0.9), record("1", 0.1, status="failed"), margin=0.0)
    assert not d.promote and "champion 1's evaluation is 'failed'" in d.reason


def test_same_version_as_champion_is_refused():
    d = decide(record("3", 0.9), record("3", 0.9), margin=0.0)
    assert not d.promote and "already is the champion" in d.reason


def test_no_champion_promotes_above_the_floor():
    d = decide(record("1", 0.6), None, margin=0.01)
    assert d.promote and d.champion_score is None and "no champion" in d.reason
    assert d == Decision(True, d.reason, pytest.approx(0.6), None, 0.01, ("sst2", "rte"), d.checks)
    assert [c.split(":")[0] for c in d.checks] == ["floor sst2", "floor rte"]


@pytest.mark.parametrize(
    ("cand", "champ", "margin", "promote"),
    [
        (0.80, 0.70, 0.05, True),  # clear win
        (0.83, 0.82, 0.01, True),  # exactly the margin (0.83 - 0.82 is 0.00999... in floats)
        (0.825, 0.82, 0.01, False),  # better, but by less than the margin
        (0.82, 0.82, 0.0, False),  # a tie never promotes, even with margin 0
        (0.80, 0.82, 0.0, False),  # worse
        (0.8201, 0.82, 0.0, True),  # any gain with margin 0
    ],
)
def test_margin_rule(cand: float, champ: float, margin: float, promote: bool):
    d = decide(record("2", cand, baseline=0.0), record("1", champ, baseline=0.0), margin=margin)
    assert d.promote is promote
    assert d.candidate_score == pytest.approx(cand) and d.champion_score == pytest.approx(champ)
    assert d.margin == margin


def test_reason_is_one_sentence_with_both_scores_and_the_margin():
    d = decide(record("7", 0.7842), record("5", 0.7790), margin=0.005)
    assert d.promote
    assert d.reason == (
        "Promoted: candidate 7 scores GLUE 78.42 vs champion 5's 77.90 on sst2, rte, "
        "a gain of +0.52 points; the gain must reach the margin of 0.50 (gate.margin)."
    )


def test_scores_use_exactly_the_compared_tasks_with_mnli_once():
    # candidate: sst2 0.9, mnli (0.6 + 0.8) / 2 = 0.7 -> 0.8; champion the same but cola would lift it
    cand = dataclasses.replace(record("2", 0.0, ("sst2", "mnli")), results={
        "sst2": {"accuracy": 0.9}, "mnli_matched": {"accuracy": 0.6}, "mnli_mismatched": {"accuracy": 0.8},
    }, baselines=results(0.33, ("sst2", "mnli")))
    champ = dataclasses.replace(record("1", 0.0, ("sst2", "mnli", "cola")), results={
        "sst2": {"accuracy": 0.7}, "mnli_matched": {"accuracy": 0.7}, "mnli_mismatched": {"accuracy": 0.7},
        "cola": {"matthews_correlation": 1.0},
    })
    d = decide(cand, champ, margin=0.0, tasks=["sst2", "mnli"])
    assert d.candidate_score == pytest.approx(0.8) and d.champion_score == pytest.approx(0.7) and d.promote


def test_unscorable_results_are_refused_not_raised():
    cand = dataclasses.replace(record("2", 0.9, ("sst2",)), results={"sst2": {"accuracy": 0.9, "eval_loss": 0.3}})
    d = decide(cand, None, margin=0.0)
    assert not d.promote and "cannot be scored" in d.reason


def test_configuration_errors_raise():
    with pytest.raises(ValueError, match="margin"):
        decide(record("2", 0.9), None, margin=-0.01)
    with pytest.raises(ValueError, match="unknown GLUE task"):
        decide(record("2", 0.9), None, margin=0.0, tasks=["sst3"])


def _bootstrapped(n_better: int, n: int = 277):
    """Records of two versions on RTE-sized dev sets, and their paired bootstrap; the candidate fixes
    `n_better` rows the champion gets wrong."""
    import numpy as np

    from tasks.glue.baselines import trivial_predictions
    from tasks.glue.bootstrap import paired_bootstrap
    from tasks.glue.metrics import compute_metrics

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, n)
    champ_pred = np.where(rng.random(n) < 0.7, labels, 1 - labels)
    cand_pred = champ_pred.copy()
    wrong = np.flatnonzero(cand_pred != labels)[:n_better]
    cand_pred[wrong] = labels[wrong]
    base = trivial_predictions("rte", labels)

    def rec(version, pred):
        return EvalRecord(version, "complete", ("rte",), {"rte": compute_metrics("rte", pred, labels)},
                          setup(("rte",)), baselines={"rte": compute_metrics("rte", base, labels)}, model="m")

    evidence = paired_bootstrap({"rte": labels}, {"candidate": {"rte": cand_pred}, "champion": {"rte": champ_pred},
                                                  "baseline": {"rte": base}}, n_resamples=1000, seed=0)
    return rec("2", cand_pred), rec("1", champ_pred), evidence


def test_ci_refuses_a_gain_inside_the_interval():
    cand, champ, evidence = _bootstrapped(n_better=2)  # +0.72 points on 277 rows
    assert decide(cand, champ, margin=0.0, evidence=evidence).promote  # a point gain ...
    d = decide(cand, champ, margin=0.0, require="ci", evidence=evidence)
    assert not d.promote and "lower bound of the gain" in d.reason and d.gain_low <= 0 < d.gain_high


def test_ci_promotes_a_gain_that_clears_the_noise():
    cand, champ, evidence = _bootstrapped(n_better=25)  # +9 points, paired: never worse on a resample
    d = decide(cand, champ, margin=0.005, require="ci", evidence=evidence)
    assert d.promote and d.gain_low > 0.005 and "95% interval" in d.reason


def test_auto_margin_falls_back_to_the_bootstrap_standard_error():
    cand, champ, evidence = _bootstrapped(n_better=1)
    d = decide(cand, champ, margin=None, evidence=evidence)
    stderr = evidence.gain_interval("candidate", "champion", ["rte"]).stderr
    assert not d.promote and d.margin == pytest.approx(2 * stderr) and stderr > 0.0018  # one row: 0.36 points
    assert "2 bootstrap standard errors" in d.reason


def test_ci_without_predictions_is_refused():
    cand, champ, _ = _bootstrapped(n_better=25)
    d = decide(cand, champ, margin=0.0, require="ci", evidence=None)
    assert not d.promote and "per-example predictions" in d.reason


def test_a_contamination_limit_refuses_a_dirty_or_unchecked_candidate():
    def with_rates(rates):
        cand = record("2", 0.9)
        return dataclasses.replace(cand, setup=dataclasses.replace(cand.setup, extra={"contamination": rates}))

    champ = record("1", 0.7)
    assert decide(with_rates({"sst2": 0.0, "rte": 0.02}), champ, margin=0.0).promote  # no limit: as before
    d = decide(with_rates({"sst2": 0.0, "rte": 0.02}), champ, margin=0.0, max_contamination=0.01)
    assert not d.promote and "2.0% of rte's dev examples" in d.reason and "1.0%" in d.reason
    d = decide(record("2", 0.9), champ, margin=0.0, max_contamination=0.01)
    assert not d.promote and "was not checked" in d.reason
    d = decide(with_rates({"sst2": 0.0, "rte": 0.005}), champ, margin=0.0, max_contamination=0.01)
    assert d.promote and "contamination: every dev set at most 1.0%" in d.checks
