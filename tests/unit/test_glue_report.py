"""The GLUE report: published numbers as data, the table in percent, the notes and the contamination section."""

from __future__ import annotations

import pytest

from tasks.glue.metrics import glue_score
from tasks.glue.report import PUBLISHED_DEV, markdown_report, table_rows
from tasks.glue.tasks import TASK_NAMES, TASKS, result_keys

ALL_KEYS = [k for t in TASK_NAMES for k in result_keys(t)]


def candidate(tasks: dict | None = None, version: str = "7") -> dict:
    tasks = tasks or {
        "sst2": {"accuracy": 0.85, "n_train": 67349, "n_eval": 872},
        "mrpc": {"f1": 0.8123, "accuracy": 0.70, "n_train": 3668, "n_eval": 408},
        "mnli_matched": {"accuracy": 0.60, "n_train": 392702, "n_eval": 9815},
        "mnli_mismatched": {"accuracy": 0.62, "n_train": 392702, "n_eval": 9832},
    }
    scores_only = {k: {m: v for m, v in r.items() if not m.startswith("n_")} for k, r in tasks.items()}
    return {"name": "lmpipe-bert", "version": version, "glue_score": glue_score(scores_only), "tasks": tasks}


CONTAMINATION = {
    "sst2": {"n_examples": 872, "n_contaminated": 2, "rate": 2 / 872, "examples": ["bad . ", "a | pipe *and* _stars_"]},
    "mrpc": {"n_examples": 408, "n_contaminated": 0, "rate": 0.0, "examples": []},
}


def by_task(rows: list[dict]) -> dict[str, dict]:
    return {r["task"]: r for r in rows}


def test_published_numbers_are_the_cited_ones():
    hf = PUBLISHED_DEV["bert-base-hf"]
    assert hf.model == "bert-base-cased" and "run_glue" in hf.source
    assert set(hf.metrics) == set(ALL_KEYS)
    for key, metrics in hf.metrics.items():  # every metric our evaluation reports, nothing else
        assert set(metrics) == set(TASKS[key.split("_")[0]].metrics)
    assert hf.metrics["mrpc"] == {"f1": 88.85, "accuracy": 84.07}
    assert hf.metrics["qqp"] == {"accuracy": 90.71, "f1": 87.49}
    # facts §D3: the GLUE-style dev score of the HF run is ≈ 78.9 (derived)
    assert glue_score(hf.metrics) == pytest.approx(78.85, abs=0.01)

    for key, printed in (("bert-base-sanh", 79.5), ("distilbert-sanh", 77.0)):
        pub = PUBLISHED_DEV[key]
        assert "Sanh et al. 2019" in pub.source and "Table 1" in pub.source
        assert set(pub.task_numbers) == set(TASK_NAMES) and pub.score == printed
    d = PUBLISHED_DEV["distilbert-sanh"].task_numbers
    assert sum(d.values()) / 9 == pytest.approx(77.0, abs=0.05)  # DistilBERT's Score is its row's mean
    assert (d["cola"], d["mnli"], d["rte"], d["wnli"]) == (51.3, 82.2, 59.9, 56.3)


def test_table_rows_one_row_per_result_key_in_glue_order_then_the_score():
    cand = candidate()
    rows = table_rows(cand, None, CONTAMINATION)
    assert [r["task"] for r in rows] == ["sst2", "mrpc", "mnli_matched", "mnli_mismatched", "GLUE score (3 tasks)"]
    assert all(set(r) == set(rows[0]) for r in rows)  # flat, same columns everywhere
    assert all(not isinstance(v, (dict, list)) for r in rows for v in r.values())
    row = by_task(rows)
    assert row["mrpc"]["metric"] == "f1 / accuracy"
    assert row["mrpc"]["candidate"] == "81.2 / 70.0"  # fractions shown in percent, one decimal
    assert row["mrpc"]["BERT-base (HF)"] == "88.9 / 84.1"  # 88.85 rounds half up, as printed
    assert row["mrpc"]["BERT-base (Sanh)"] == "88.6" and row["mrpc"]["DistilBERT (Sanh)"] == "87.5"
    assert row["mnli_mismatched"]["BERT-base (HF)"] == "84.1"
    assert row["mnli_matched"]["DistilBERT (Sanh)"] == row["mnli_mismatched"]["DistilBERT (Sanh)"] == "82.2"
    assert row["sst2"]["champion"] == "–"
    assert (row["sst2"]["n_train"], row["sst2"]["n_eval"]) == (67349, 872)
    assert row["sst2"]["contaminated"] == "2/872 (0.2%) ⚠" and row["mrpc"]["contaminated"] == "0/408"
    assert row["mnli_matched"]["contaminated"] == ""  # not checked


def test_glue_row_compares_published_models_on_the_candidates_tasks_only():
    cand = candidate()
    score = by_task(table_rows(cand))["GLUE score (3 tasks)"]
    # candidate: (85 + (81.23 + 70) / 2 + (60 + 62) / 2) / 3
    assert score["candidate"] == f"{(85 + 75.615 + 61) / 3:.1f}"
    # HF BERT-base over sst2, mrpc, mnli: (92.32 + 86.46 + 84.005) / 3 = 87.595
    assert score["BERT-base (HF)"] == "87.6"
    # Sanh: one number per task, (92.7 + 88.6 + 86.7) / 3 and (91.3 + 87.5 + 82.2) / 3
    assert score["BERT-base (Sanh)"] == "89.3" and score["DistilBERT (Sanh)"] == "87.0"


def test_all_nine_tasks_reproduce_the_published_scores():
    tasks = {k: {m: 0.5 for m in TASKS[k.split("_")[0]].metrics} for k in ALL_KEYS}
    score = table_rows(candidate(tasks))[-1]
    assert score["task"] == "GLUE score (9 tasks)" and score["candidate"] == "50.0"
    assert score["BERT-base (HF)"] == "78.9"  # facts §D3, derived
    assert score["DistilBERT (Sanh)"] == "77.0"
    assert score["BERT-base (Sanh)"] == "79.7"  # the row's mean; the paper prints 79.5 (noted in the report)


def test_champion_column_and_a_champion_on_other_tasks():
    cand = candidate()
    same = candidate(version="5")
    same["tasks"] = {k: {**v, "accuracy": v["accuracy"] - 0.1} for k, v in cand["tasks"].items()}
    same["glue_score"] = 0.5
    rows = by_task(table_rows(cand, same))
    assert rows["sst2"]["champion"] == "75.0"
    assert rows["GLUE score (3 tasks)"]["champion"] == "50.0"

    fewer = {"name": "lmpipe-bert", "version": "5", "glue_score": 0.8, "tasks": {"sst2": {"accuracy": 0.8}}}
    rows = by_task(table_rows(cand, fewer))
    assert rows["mrpc"]["champion"] == "–"
    assert rows["GLUE score (3 tasks)"]["champion"] == "80.0 †"
    md = markdown_report("lmpipe-bert/7", cand, fewer, None)
    assert "† The champion was evaluated on other tasks (sst2)" in md


def test_markdown_report_has_the_table_notes_and_contamination():
    cand = candidate()
    champ = candidate(version="5")
    md = markdown_report("lmpipe-bert/7", cand, champ, CONTAMINATION)
    assert md.startswith("# GLUE evaluation: `lmpipe-bert/7`")
    table = [line for line in md.splitlines() if line.startswith("|")]
    assert len(table) == 2 + 5  # header, rule, 4 result keys, GLUE score
    assert "Candidate lmpipe-bert v7" in table[0] and "Champion lmpipe-bert v5" in table[0]
    assert "| mrpc | f1 / accuracy | 81.2 / 70.0 | 81.2 / 70.0 | 88.9 / 84.1 | 88.6 | 87.5 |" in md
    # every table line has the same number of cells
    assert len({line.count(" | ") for line in table if not line.startswith("|---")}) == 1
    # which published number is which metric
    assert "`bert-base-cased`" in md and "Sanh et al. 2019" in md
    assert "metric not named for MRPC, QQP" in md and "shown on both MNLI rows" in md
    assert "printed GLUE score 79.5, although its nine numbers average 79.7" in md
    # contamination: flagged with counts, example texts escaped so they cannot break the markdown
    assert "⚠ **sst2**: 2 of 872 dev examples (0.2%) are contaminated" in md
    assert "“bad .”" in md and "“a \\| pipe \\*and\\* \\_stars\\_”" in md
    assert "No contaminated example in: mrpc." in md


def test_markdown_report_without_champion_or_contamination():
    md = markdown_report("m", candidate(), None, None)
    assert "No champion yet" in md
    assert "Not checked: no pretraining corpus" in md


def test_long_example_texts_are_cut():
    cont = {"sst2": {"n_examples": 1, "n_contaminated": 1, "rate": 1.0, "examples": ["word " * 100]}}
    md = markdown_report("m", candidate(), None, cont)
    line = next(line for line in md.splitlines() if line.startswith("  - “"))
    assert line.endswith("…”") and len(line) < 220


def test_unknown_result_key_raises():
    with pytest.raises(ValueError, match="unknown GLUE result key 'sst3'"):
        table_rows({"name": "m", "version": "1", "glue_score": 0.5, "tasks": {"sst3": {"accuracy": 0.5}}})
