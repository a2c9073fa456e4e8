"""The promotion gate: one test per rule, plus the arithmetic at the margin."""

from __future__ import annotations

import dataclasses

import pytest

from tasks.glue.gate import Decision, EvalRecord, decide


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


def record(
    version: str, score: float, tasks: tuple[str, ...] = ("sst2", "rte"), status: str = "complete"
) -> EvalRecord:
    return EvalRecord(version, status, tasks, results(score, tasks))


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


def test_tasks_default_to_the_candidates_task_set():
    cand = record("2", 0.80, ("sst2", "rte"))
    # the champion has more tasks; only sst2 and rte are compared, where it scores 0.70
    extra = {**results(0.70), "cola": {"matthews_correlation": 0.99}}
    champ = EvalRecord("1", "complete", ("sst2", "rte", "cola"), extra)
    d = decide(cand, champ, margin=0.05)
    assert d.promote and d.tasks == ("sst2", "rte")
    assert d.candidate_score == pytest.approx(0.80) and d.champion_score == pytest.approx(0.70)


def test_champion_on_a_different_task_set_is_refused():
    d = decide(record("2", 0.9, ("sst2", "rte")), record("1", 0.1, ("sst2", "cola")), margin=0.0)
    assert not d.promote
    assert "champion 1 was not evaluated on rte" in d.reason and "re-evaluate" in d.reason
    assert d.candidate_score == pytest.approx(0.9) and d.champion_score is None


def test_incomplete_champion_is_refused():
    d = decide(record("2", 0.9), record("1", 0.1, status="failed"), margin=0.0)
    assert not d.promote and "champion 1's evaluation is 'failed'" in d.reason


def test_same_version_as_champion_is_refused():
    d = decide(record("3", 0.9), record("3", 0.9), margin=0.0)
    assert not d.promote and "already is the champion" in d.reason


def test_no_champion_promotes():
    d = decide(record("1", 0.4), None, margin=0.01)
    assert d.promote and d.champion_score is None and "no champion" in d.reason
    assert d == Decision(True, d.reason, pytest.approx(0.4), None, 0.01, ("sst2", "rte"))


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
    d = decide(record("2", cand), record("1", champ), margin=margin)
    assert d.promote is promote
    assert d.candidate_score == pytest.approx(cand) and d.champion_score == pytest.approx(champ)
    assert d.margin == margin


def test_reason_is_one_sentence_with_both_scores_and_the_margin():
    d = decide(record("7", 0.7842), record("5", 0.7790), margin=0.005)
    assert d.promote
    assert d.reason == (
        "Promoted: candidate 7 scores GLUE 78.42 vs champion 5's 77.90 on sst2, rte, "
        "a gain of +0.52 points against a required margin of 0.50."
    )


def test_scores_use_exactly_the_compared_tasks_with_mnli_once():
    # candidate: sst2 0.9, mnli (0.6 + 0.8) / 2 = 0.7 -> 0.8; champion the same but cola would lift it
    cand = EvalRecord("2", "complete", ("sst2", "mnli"), {
        "sst2": {"accuracy": 0.9}, "mnli_matched": {"accuracy": 0.6}, "mnli_mismatched": {"accuracy": 0.8},
    })
    champ = EvalRecord("1", "complete", ("sst2", "mnli", "cola"), {
        "sst2": {"accuracy": 0.7}, "mnli_matched": {"accuracy": 0.7}, "mnli_mismatched": {"accuracy": 0.7},
        "cola": {"matthews_correlation": 1.0},
    })
    d = decide(cand, champ, margin=0.0)
    assert d.candidate_score == pytest.approx(0.8) and d.champion_score == pytest.approx(0.7) and d.promote


def test_unscorable_results_are_refused_not_raised():
    cand = EvalRecord("2", "complete", ("sst2",), {"sst2": {"accuracy": 0.9, "eval_loss": 0.3}})
    d = decide(cand, None, margin=0.0)
    assert not d.promote and "cannot be scored" in d.reason


def test_configuration_errors_raise():
    with pytest.raises(ValueError, match="margin"):
        decide(record("2", 0.9), None, margin=-0.01)
    with pytest.raises(ValueError, match="unknown GLUE task"):
        decide(record("2", 0.9), None, margin=0.0, tasks=["sst3"])
