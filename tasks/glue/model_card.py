"""Model cards for evaluated versions, in the Hugging Face model-card layout (YAML metadata, then sections).

    card = model_card(CardFacts(...))   # markdown: MLflow version description and README.md

Sections: the model and its lineage, the training data (the curated corpus's data card summary), the GLUE
table (each task's score with its 95% paired-bootstrap interval, beside the trivial baseline on the same dev
rows and the published BERT-base / DistilBERT dev numbers), contamination rates, the evaluation protocol, and
intended uses and limits. Pure: `tasks.glue.evaluation` gathers the facts and stores the card.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tasks.glue.report import PUBLISHED_DEV
from tasks.glue.tasks import TASK_NAMES, TASKS, result_keys

_PUBLISHED = ("bert-base-hf", "distilbert-sanh")  # the rows a GLUE user compares against
_SUMMARY_END = "## Languages"  # the data card's summary and source table end here


@dataclass
class CardFacts:
    """What a card says about one registered version (a base model, or one task model when `task` is set)."""

    name: str
    version: str | None
    model_uri: str
    lineage: Mapping[str, str]
    results: Mapping[str, Mapping[str, float]]  # result key -> metric -> fraction
    baselines: Mapping[str, Mapping[str, float]]
    intervals: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # task (or "glue") -> (low, high)
    glue_score: float | None = None
    contamination: Mapping[str, Mapping[str, Any]] | None = None
    protocol: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # task -> TaskSetup.protocol
    n_eval: Mapping[str, int] = field(default_factory=dict)
    data_card: str | None = None  # the curated corpus's DATA_CARD.md, when on this machine
    task: str | None = None


def data_card_summary(curated_dir: str | None) -> str | None:
    """The head of `<curated_dir>/DATA_CARD.md` (counts, dedup rate, sources table); None when absent."""
    if not curated_dir:
        return None
    path = Path(curated_dir) / "DATA_CARD.md"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return None
    head = text.split(_SUMMARY_END, 1)[0].strip().splitlines()
    return "\n".join(line for line in head[1:] if not line.startswith("# ")).strip() or None


def model_card(facts: CardFacts) -> str:
    """The card's markdown."""
    keys = [k for t in TASK_NAMES for k in result_keys(t) if k in facts.results]
    title = f"{facts.name}" + (f" v{facts.version}" if facts.version else "")
    meta = ["---", "library_name: transformers", "tags: [lmpipe, glue]", "datasets: [nyu-mll/glue]",
            "model-index:", f"- name: {facts.name}", "  results:"]
    for key in keys:
        task = _task_of(key)
        meta += [f"  - task: {{type: text-classification, name: {task}}}",
                 f"    dataset: {{type: nyu-mll/glue, name: GLUE {TASKS[task].folder}, config: {task}, split: "
                 f"{key.replace(task, 'validation') if key != task else 'validation'}}}",
                 "    metrics:"]
        meta += [f"    - {{type: {m}, value: {v * 100:.2f}}}" for m, v in facts.results[key].items()]
    meta += ["---", ""]
    out = meta + [f"# {title}", ""]
    if facts.task:
        out += [f"`{facts.name}` is the base model fine-tuned on GLUE {TASKS[facts.task].folder} "
                f"({', '.join(TASKS[facts.task].label_names) or 'regression: a similarity score 0..5'}).", ""]
    out += ["## Model", "", f"- Registered model: `{facts.model_uri}`"]
    out += [f"- {label}: `{facts.lineage[k]}`" for k, label in (
        ("lmpipe.base_model", "Base model"), ("lmpipe.base_model_fingerprint", "Base weights fingerprint"),
        ("lmpipe.base_model_run_id", "Pretraining run"), ("lmpipe.glue_spec_fingerprint", "GLUE spec fingerprint"),
        ("lmpipe.git_commit", "lmpipe commit")) if facts.lineage.get(k)]
    out += ["", "## Training data", ""]
    out += [facts.data_card, ""] if facts.data_card else [
        "The pretraining corpus's data card was not found: the lineage names no curated corpus on this machine, "
        "or it has no DATA_CARD.md.", ""]
    out += _evaluation(facts, keys) + _contamination(facts, keys) + _protocol(facts)
    out += ["## Intended uses and limits", "",
            "- Intended for research on and comparison of pretraining recipes; scores are GLUE dev-set scores, not "
            "the test server's.",
            "- The checkpoint scored is the last one of fine-tuning: no selection on the dev rows. Small dev sets "
            "(RTE 277, MRPC 408, WNLI 71 rows) have wide intervals: read the interval, not the point.",
            "- Outputs reflect the pretraining corpus's biases; the data card above lists its sources. Not for "
            "decisions about people.",
            "- English only, inputs cut at the protocol's `max_length_used` tokens when served.", ""]
    return "\n".join(out)


def _evaluation(facts: CardFacts, keys: list[str]) -> list[str]:
    pubs = [PUBLISHED_DEV[p] for p in _PUBLISHED]
    out = ["## Evaluation (GLUE dev sets)", "",
           f"| task | metric | this model | 95% interval | trivial baseline | {' | '.join(p.column for p in pubs)} "
           "| dev rows |", "|---|---|---:|---:|---:|" + "---:|" * len(pubs) + "---:|"]
    for key in keys:
        task = _task_of(key)
        metrics = list(facts.results[key])
        low_high = facts.intervals.get(task)
        published = []
        for p in pubs:
            if p.metrics is not None:
                values = [p.metrics.get(key, {}).get(m) for m in metrics]
                published.append(" / ".join(f"{v:.1f}" for v in values if v is not None) or "–")
            else:
                value = (p.task_numbers or {}).get(task)
                published.append(f"{value:.1f}" if value is not None else "–")
        score = " / ".join(_pct(facts.results[key][m]) for m in metrics)
        interval = f"{_pct(low_high[0])}–{_pct(low_high[1])}" if low_high else "–"
        baseline = " / ".join(_pct(facts.baselines.get(key, {}).get(m)) for m in metrics)
        out.append(f"| {key} | {' / '.join(metrics)} | {score} | {interval} | {baseline} | {' | '.join(published)} "
                   f"| {facts.n_eval.get(key, '–')} |")
    if facts.glue_score is not None and not facts.task:
        glue = facts.intervals.get("glue")
        interval = f"{_pct(glue[0])}–{_pct(glue[1])}" if glue else "–"
        out.append(f"| **GLUE score** | macro average | **{_pct(facts.glue_score)}** | {interval} | | "
                   + " | ".join(f"{p.score:.1f}" if p.score is not None else "–" for p in pubs) + " | |")
    out += ["", "Intervals: paired bootstrap over the dev rows (seeds averaged). Published rows: "
            + "; ".join(f"{p.column}: {p.source}" for p in pubs) + ".", ""]
    return out


def _contamination(facts: CardFacts, keys: list[str]) -> list[str]:
    if not facts.contamination:
        return ["## Contamination", "", "Not checked (no curated corpus on this machine, or disabled).", ""]
    out = ["## Contamination", "", "| dev set | examples sharing an n-gram with the pretraining corpus | rate | "
           "score on the clean rows |", "|---|---:|---:|---:|"]
    for key in keys:
        r = facts.contamination.get(key)
        if r:
            clean = r.get("clean") or {}
            score = " / ".join(_pct(v) for m, v in clean.items() if m != "n_clean") or "–"
            out.append(f"| {key} | {r['n_contaminated']} of {r['n_examples']} | {r['rate'] * 100:.1f}% | {score} |")
    return out + [""]


def _protocol(facts: CardFacts) -> list[str]:
    out = ["## Evaluation protocol", "", "| task | protocol |", "|---|---|"]
    for task, proto in facts.protocol.items():
        out.append(f"| {task} | " + ", ".join(f"{k}={v}" for k, v in sorted(proto.items())) + " |")
    return out + [""]


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.1f}"


def _task_of(key: str) -> str:
    return next(t for t in TASK_NAMES if key in result_keys(t))
