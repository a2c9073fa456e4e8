"""Evaluation records and predictions files: what one GLUE evaluation run stores, and which record the gate
picks."""

from __future__ import annotations


def test_records_and_predictions_round_trip(tmp_path):
    from tasks.glue.gate import EvalRecord
    from tasks.glue.protocol import EvalSetup, TaskSetup, protocol_of
    from tasks.glue.records import choose_record, read_predictions, record_from_json, record_to_json, write_predictions

    proto = protocol_of({"lr": 5e-5, "seed": 42, "eval_batch_size": 64, "max_train_examples": None},
                        max_length_used=128, seeds=[42, 43])
    assert proto == {"lr": 5e-5, "max_train_examples": None, "max_length_used": 128, "seeds": [42, 43]}
    setup = EvalSetup(("stsb",), {"stsb": TaskSetup({"validation": "sha256:x"}, 10, {"stsb": 3}, proto)}, "fp")
    rec = EvalRecord("3", "complete", ("stsb",), {"stsb": {"pearson": 0.5, "spearmanr": 0.4}}, setup,
                     {"stsb": {"pearson": 0.0, "spearmanr": 0.0}}, {"stsb": [0.5, 0.4]}, "m", "run")
    import json

    assert record_from_json(json.loads(json.dumps(record_to_json(rec)))) == rec
    path = write_predictions(tmp_path, "stsb", [1.5, 2.0, 4.25], {42: [1.0, 2.0, 3.5], 43: [1.25, 2.0, 4.0]})
    labels, preds = read_predictions(path)
    assert labels.tolist() == [1.5, 2.0, 4.25] and preds.tolist() == [[1.0, 2.0, 3.5], [1.25, 2.0, 4.0]]
    path = write_predictions(tmp_path, "rte", [1, 0], {42: [1, 1]}, {42: [0.75, 0.5]})  # with probabilities
    assert path.read_text().splitlines() == ["idx,seed,label,prediction,score", "0,42,1,1,0.75", "1,42,0,1,0.5"]
    assert read_predictions(path)[1].tolist() == [[1, 1]]
    other = EvalSetup(("stsb",), {"stsb": TaskSetup({"validation": "sha256:y"}, 10, {"stsb": 3}, proto)}, "fp")
    newer_other = EvalRecord("1", "complete", ("stsb",), rec.results, other)
    older_alike = EvalRecord("1", "complete", ("stsb",), rec.results, setup)
    failed = EvalRecord("1", "failed", ("stsb",), {}, setup)
    assert choose_record([failed, newer_other, older_alike], rec, ["stsb"]) is older_alike
    assert choose_record([failed, newer_other], rec, ["stsb"]) is newer_other
    assert choose_record([failed], rec, ["stsb"]) is failed and choose_record([], rec, ["stsb"]) is None
