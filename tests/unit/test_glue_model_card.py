"""Model cards (`tasks.glue.model_card`): the HF layout, the GLUE table with intervals beside the baselines
and the published rows, contamination, protocol, and the data card's summary."""

from __future__ import annotations

import yaml

from tasks.glue.model_card import CardFacts, data_card_summary, model_card


def _facts(**kw) -> CardFacts:
    base = dict(
        name="sample-bert", version="3", model_uri="models:/sample-bert/3",
        lineage={"lmpipe.base_model_fingerprint": "abc123", "lmpipe.git_commit": "deadbeef"},
        results={"rte": {"accuracy": 0.6209}, "stsb": {"pearson": 0.81, "spearmanr": 0.8}},
        baselines={"rte": {"accuracy": 0.5271}, "stsb": {"pearson": 0.0, "spearmanr": 0.0}},
        intervals={"rte": (0.563, 0.679), "stsb": (0.78, 0.83), "glue": (0.69, 0.74)}, glue_score=0.7130,
        contamination={"rte": {"n_contaminated": 3, "n_examples": 277, "rate": 3 / 277}},
        protocol={"rte": {"lr": 2e-5, "seeds": [1, 2]}}, n_eval={"rte": 277, "stsb": 1500})
    return CardFacts(**{**base, **kw})


def test_card_layout_table_and_sections():
    card = model_card(_facts(data_card="- Documents in: **10**; kept: **9**"))
    meta = yaml.safe_load(card.split("---")[1])
    assert meta["model-index"][0]["name"] == "sample-bert"
    results = {r["task"]["name"]: r for r in meta["model-index"][0]["results"]}  # TASK_NAMES order: stsb, rte
    assert list(results) == ["stsb", "rte"]
    assert results["rte"]["metrics"] == [{"type": "accuracy", "value": 62.09}]
    assert results["rte"]["dataset"] == {"type": "nyu-mll/glue", "name": "GLUE RTE", "config": "rte",
                                         "split": "validation"}
    assert card.splitlines()[card.splitlines().index("---", 1) + 2] == "# sample-bert v3"
    rte = next(line for line in card.splitlines() if line.startswith("| rte |"))
    cells = [c.strip() for c in rte.strip("|").split("|")]
    assert cells[:5] == ["rte", "accuracy", "62.1", "56.3–67.9", "52.7"]
    assert cells[5] == "65.7" and cells[6] == "59.9" and cells[7] == "277"  # BERT-base (HF), DistilBERT (Sanh)
    assert "| **GLUE score** | macro average | **71.3** | 69.0–74.0 |" in card
    assert "| rte | 3 of 277 | 1.1% |" in card
    assert "lr=2e-05, seeds=[1, 2]" in card
    assert "Documents in: **10**" in card and "abc123" in card
    assert "## Intended uses and limits" in card


def test_task_model_card_and_missing_pieces():
    card = model_card(_facts(name="sample-bert-glue-rte", task="rte", results={"rte": {"accuracy": 0.62}},
                             contamination=None, data_card=None))
    assert "fine-tuned on GLUE RTE (entailment, not_entailment)" in card
    assert "**GLUE score**" not in card and "Not checked" in card and "data card was not found" in card


def test_data_card_summary_is_the_head_of_the_data_card(tmp_path):
    assert data_card_summary(None) is None and data_card_summary(str(tmp_path)) is None
    (tmp_path / "DATA_CARD.md").write_text("# Data card: x\n\n- Documents in: **3**\n\n## Sources\n\n| a |\n\n"
                                           "## Languages (kept documents)\n\n| en | 3 |\n")
    summary = data_card_summary(str(tmp_path))
    assert summary.startswith("- Documents in: **3**") and "## Sources" in summary and "Languages" not in summary
