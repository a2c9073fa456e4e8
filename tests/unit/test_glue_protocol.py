"""The evaluation setup: what two GLUE records must share before their scores compare."""

from __future__ import annotations

from tasks.glue.protocol import EvalSetup, TaskSetup, first_difference, protocol_of


def _setup(n_eval=277, sha="sha256:a", **hp) -> EvalSetup:
    proto = protocol_of({"lr": 5e-5, "seed": 42, "eval_batch_size": 64, "checkpoint_every": 500,
                         "max_train_examples": None, **hp}, max_length_used=128, seeds=[42])
    return EvalSetup(("rte",), {"rte": TaskSetup({"validation": sha}, 2490, {"rte": n_eval}, proto)}, "fp", "s.yaml")


def test_protocol_keeps_what_changes_the_score():
    proto = protocol_of({"lr": 5e-5, "seed": 42, "eval_batch_size": 64, "checkpoint_every": 500,
                         "max_train_examples": None}, max_length_used=128, seeds=[42, 43])
    assert proto == {"lr": 5e-5, "max_train_examples": None, "max_length_used": 128, "seeds": [42, 43]}


def test_first_difference_names_the_field():
    assert first_difference(_setup(), _setup(), ["rte"]) is None
    assert first_difference(_setup(eval_batch_size=8), _setup(), ["rte"]) is None  # not part of the protocol
    assert first_difference(_setup(n_eval=77), _setup(), ["rte"]) == \
        "rte: n_eval['rte'] is 77 on the candidate but 277 on the champion"
    assert "data['validation']" in first_difference(_setup(sha="sha256:b"), _setup(), ["rte"])
    assert first_difference(_setup(max_train_examples=128), _setup(), ["rte"]) == \
        "rte: protocol['max_train_examples'] is 128 on the candidate but null on the champion"
    assert first_difference(_setup(), _setup(), ["sst2"]) == "sst2: the candidate's record has no setup for it"


def test_setup_round_trips_through_json():
    import json

    s = _setup()
    assert EvalSetup.from_json(json.loads(json.dumps(s.to_json()))) == s
