"""Leaderboard files (`tasks.glue.submission`): test files in both layouts, the formats gluebenchmark.com reads,
AX from the diagnostic set, and clear errors."""

from __future__ import annotations

import zipfile

import pytest

from tasks.glue.data import GlueDataError
from tasks.glue.submission import (format_predictions, load_test_rows, submission_lines, write_submission_zip)


def _write(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_release_and_hf_layouts(tmp_path):
    _write(tmp_path / "MRPC" / "test.tsv", ["index\t#1 ID\t#2 ID\t#1 String\t#2 String", "0\t1\t2\ta cat\ta dog",
                                            "1\t3\t4\tthe mat\tthe log"])
    (split,) = load_test_rows("mrpc", tmp_path)
    assert split.submission == "MRPC.tsv" and split.indices == ["0", "1"]
    assert split.texts == (["a cat", "the mat"], ["a dog", "the log"])
    _write(tmp_path / "QQP" / "test.tsv", ["id\tquestion1\tquestion2", "7\twhy?\thow?"])
    assert load_test_rows("qqp", tmp_path)[0].indices == ["7"]
    _write(tmp_path / "RTE" / "test.tsv", ["sentence1\tsentence2\tlabel\tidx", "a\tb\t-1\t3"])  # an HF export
    (rte,) = load_test_rows("rte", tmp_path)
    assert rte.indices == ["3"] and rte.texts == (["a"], ["b"])


def test_mnli_reads_both_test_sets_and_the_diagnostic_one(tmp_path):
    head = "index\tpromptID\tpairID\tgenre\tsentence1\tsentence2"
    _write(tmp_path / "MNLI" / "test_matched.tsv", [head, "0\t1\t1a\tfiction\tp\th"])
    _write(tmp_path / "MNLI" / "test_mismatched.tsv", [head, "0\t2\t2a\tletters\tp2\th2"])
    assert [s.submission for s in load_test_rows("mnli", tmp_path)] == ["MNLI-m.tsv", "MNLI-mm.tsv"]
    _write(tmp_path / "diagnostic" / "diagnostic.tsv", ["index\tsentence1\tsentence2", "0\tx\ty"])
    assert [s.submission for s in load_test_rows("mnli", tmp_path)] == ["MNLI-m.tsv", "MNLI-mm.tsv", "AX.tsv"]


def test_formats_the_leaderboard_reads():
    assert format_predictions("rte", [0, 1]) == ["entailment", "not_entailment"]
    assert format_predictions("mnli", [2]) == ["contradiction"]
    assert format_predictions("wnli", [1, 0]) == ["1", "0"] and format_predictions("cola", [1.0]) == ["1"]
    assert format_predictions("stsb", [-0.3, 2.5, 5.7]) == ["0.000", "2.500", "5.000"]
    assert submission_lines(["0", "1"], ["1", "0"]) == "index\tprediction\n0\t1\n1\t0\n"
    with pytest.raises(ValueError):
        submission_lines(["0"], ["1", "0"])


def test_zip_is_flat_and_sorted(tmp_path):
    path = write_submission_zip({"SST-2.tsv": "index\tprediction\n0\t1\n", "CoLA.tsv": "index\tprediction\n"},
                                tmp_path / "out" / "s.zip")
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["CoLA.tsv", "SST-2.tsv"]
        assert z.read("SST-2.tsv").decode() == "index\tprediction\n0\t1\n"


def test_missing_or_malformed_test_files_are_clear_errors(tmp_path):
    with pytest.raises(GlueDataError, match=r"--predict. expects .*SST-2/test.tsv"):
        load_test_rows("sst2", tmp_path)
    _write(tmp_path / "SST-2" / "test.tsv", ["index\ttext", "0\tgood"])
    with pytest.raises(GlueDataError, match="sentence"):
        load_test_rows("sst2", tmp_path)
    _write(tmp_path / "SST-2" / "test.tsv", ["index\tsentence", "0\tgood\textra"])
    with pytest.raises(GlueDataError, match=":2: expected 2"):
        load_test_rows("sst2", tmp_path)
