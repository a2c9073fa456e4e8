"""The GLUE evaluation report: a candidate beside the champion and published BERT-base / DistilBERT dev numbers.

Inputs (plain dicts, as the GLUE flow has them):

    candidate / champion = {"name": str, "version": str | None, "glue_score": float,
                            "tasks": {result_key: {metric: value, ..., "n_train": int, "n_eval": int}}}
    contamination = {result_key: {"n_examples", "n_contaminated", "rate", "examples": [text, ...]}}

Metric values and GLUE scores are fractions (as Hugging Face reports them); everything shown is percent
with one decimal, the way the published numbers are printed. Outputs: `markdown_report()` (one table, the
notes saying which published number is which metric, a contamination section) and `table_rows()` (the
same table as flat dicts, for a Prefect table artifact). The markdown table is rendered from
`table_rows()`, so the two never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from tasks.glue.metrics import glue_score
from tasks.glue.tasks import TASK_NAMES, TASKS, result_keys


@dataclass(frozen=True)
class PublishedDev:
    """Published GLUE dev-set numbers of one model, in percent, exactly as printed (facts §D3)."""

    column: str  # the report's column header
    model: str
    source: str
    # Per result key and metric, when the source prints every metric (the HF README does).
    metrics: Mapping[str, Mapping[str, float]] | None
    # One number per HF task name, when the source prints one (Sanh et al. Table 1).
    task_numbers: Mapping[str, float] | None
    score: float | None  # the GLUE score as printed; None when the source prints none
    note: str  # which number is which metric


PUBLISHED_DEV: dict[str, PublishedDev] = {
    "bert-base-hf": PublishedDev(
        column="BERT-base (HF)",
        model="bert-base-cased",
        source=(
            "Hugging Face transformers examples/pytorch/text-classification/README.md (run_glue.py: max_seq 128, "
            "batch 32, lr 2e-5, 3 epochs, 5 for MRPC and WNLI)"
        ),
        metrics={
            "cola": {"matthews_correlation": 56.53},
            "sst2": {"accuracy": 92.32},
            "mrpc": {"f1": 88.85, "accuracy": 84.07},
            "stsb": {"pearson": 88.64, "spearmanr": 88.48},
            "qqp": {"accuracy": 90.71, "f1": 87.49},  # printed as acc/F1, the reverse of MRPC's F1/acc
            "mnli_matched": {"accuracy": 83.91},
            "mnli_mismatched": {"accuracy": 84.10},
            "qnli": {"accuracy": 90.66},
            "rte": {"accuracy": 65.70},
            "wnli": {"accuracy": 56.34},
        },
        task_numbers=None,
        score=None,  # the README prints no GLUE score; the GLUE-paper convention gives 78.85 (derived)
        note="every metric printed, shown here in the Metric column's order (the README prints QQP as acc/F1)",
    ),
    "bert-base-sanh": PublishedDev(
        column="BERT-base (Sanh)",
        model="BERT-base",
        source="Sanh et al. 2019, DistilBERT (arXiv 1910.01108), Table 1: GLUE dev sets, medians of 5 runs",
        metrics=None,
        task_numbers={
            "cola": 56.3, "mnli": 86.7, "mrpc": 88.6, "qnli": 91.8, "qqp": 89.6,
            "rte": 69.3, "sst2": 92.7, "stsb": 89.0, "wnli": 53.5,
        },
        # Printed "Score"; note the mean of the nine numbers above is 717.5 / 9 = 79.7 (derived), not 79.5.
        score=79.5,
        note=(
            "one number per task, metric not named for MRPC, QQP (F1 or accuracy) and STS-B (Pearson or "
            "Spearman); CoLA is Matthews correlation and the rest accuracy by GLUE convention; one MNLI "
            "number (matched/mismatched not stated), shown on both MNLI rows"
        ),
    ),
    "distilbert-sanh": PublishedDev(
        column="DistilBERT (Sanh)",
        model="distilbert-base-uncased",
        source="Sanh et al. 2019, DistilBERT (arXiv 1910.01108), Table 1: GLUE dev sets, medians of 5 runs",
        metrics=None,
        task_numbers={
            "cola": 51.3, "mnli": 82.2, "mrpc": 87.5, "qnli": 89.2, "qqp": 88.5,
            "rte": 59.9, "sst2": 91.3, "stsb": 86.9, "wnli": 56.3,
        },
        score=77.0,  # printed "Score" = mean of the nine numbers above (693.1 / 9 = 77.01, derived)
        note="as BERT-base (Sanh): same table, same conventions",
    ),
}

_DASH = "–"  # a cell with no number
_EXAMPLE_CHARS = 200  # contaminated example texts are cut to this many characters in the report


def table_rows(
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None = None,
    contamination: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """The report's table as flat rows: one per candidate result key, in GLUE order, then the GLUE score row.

    Keys: task, metric, candidate, champion, one per PUBLISHED_DEV column, n_train, n_eval, contaminated.
    Scores are strings in percent with one decimal ("88.9 / 84.1" for a two-metric task, metrics in the
    `metric` cell's order; "–" where there is no number); n_train / n_eval are ints (None if unknown).
    The GLUE row compares like with like: published columns are averaged over the candidate's tasks only.
    """
    keys = _ordered_keys(candidate["tasks"])
    champ_tasks = champion["tasks"] if champion else {}
    rows: list[dict[str, Any]] = []
    for key in keys:
        task = _task_of(key)
        metrics = TASKS[task].metrics
        cand = candidate["tasks"][key]
        row: dict[str, Any] = {
            "task": key,
            "metric": " / ".join(metrics),
            "candidate": _cell([cand.get(m) for m in metrics], scale=100.0),
            "champion": _cell([champ_tasks[key].get(m) for m in metrics] if key in champ_tasks else [], scale=100.0),
        }
        for pub in PUBLISHED_DEV.values():
            if pub.metrics is not None:
                row[pub.column] = _cell([pub.metrics.get(key, {}).get(m) for m in metrics])
            else:
                row[pub.column] = _cell([(pub.task_numbers or {}).get(task)])
        row["n_train"] = cand.get("n_train")
        row["n_eval"] = cand.get("n_eval")
        row["contaminated"] = _contamination_cell((contamination or {}).get(key))
        rows.append(row)

    tasks = {_task_of(k) for k in keys}
    score_row: dict[str, Any] = {
        "task": f"GLUE score ({len(tasks)} tasks)",
        "metric": "mean of task scores",
        "candidate": _cell([candidate.get("glue_score")], scale=100.0),
        "champion": _champion_score_cell(candidate, champion),
    }
    for pub in PUBLISHED_DEV.values():
        score_row[pub.column] = _cell([_published_score(pub, keys)])
    score_row.update({"n_train": None, "n_eval": None, "contaminated": ""})
    rows.append(score_row)
    return rows


def markdown_report(
    model: str,
    candidate: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    contamination: Mapping[str, Mapping[str, Any]] | None,
) -> str:
    """The evaluation report in markdown: the table, what each published number is, and contamination.

    It is what a reviewer reads before promoting `model`: how the candidate compares with the current
    champion and with published models, and whether any dev example also sits in the pretraining corpus
    (a score on contaminated examples may be memorisation, not understanding).
    """
    rows = table_rows(candidate, champion, contamination)
    cols = list(rows[0])
    header = {
        "candidate": f"Candidate {_who(candidate)}",
        "champion": f"Champion {_who(champion)}" if champion else "Champion",
    }
    lines = [
        f"# GLUE evaluation: `{model}`",
        "",
        (
            "Dev-set scores in percent (one decimal). Two numbers in a cell are the task's two metrics, in the "
            "Metric column's order."
        ),
        "",
        "| " + " | ".join(_escape(header.get(c, c)) for c in cols) + " |",
        "|" + "|".join("---" if c in ("task", "metric") else "---:" for c in cols) + "|",
    ]
    for row in rows:
        lines.append("| " + " | ".join(_escape("" if row[c] is None else str(row[c])) for c in cols) + " |")

    lines += ["", "## Notes", ""]
    lines.append(
        "- GLUE score: the mean over tasks of each task's mean metric, MNLI counted once as the mean of "
        "matched and mismatched (Wang et al. 2019, §3). Published columns are averaged over the same "
        "tasks as the candidate, so the row compares like with like."
    )
    if champion is None:
        lines.append("- No champion yet: the candidate has nothing to beat.")
    elif not _same_keys(candidate, champion):
        lines.append(
            "- † The champion was evaluated on other tasks ("
            + ", ".join(_ordered_keys(champion["tasks"]))
            + "): its GLUE score is not comparable with the candidate's."
        )
    for pub in PUBLISHED_DEV.values():
        printed = ""
        if pub.score is not None:
            printed = f"; printed GLUE score {pub.score:.1f}"
            mean = _published_score(pub, [k for t in TASK_NAMES for k in result_keys(t)])
            if mean is not None and abs(mean - pub.score) >= 0.05:  # differs at the printed precision
                printed += f", although its nine numbers average {mean:.1f}"
        lines.append(f"- **{pub.column}**: `{pub.model}`, {pub.source}. {pub.note[0].upper()}{pub.note[1:]}{printed}.")

    lines += ["", "## Contamination", ""]
    lines += _contamination_section(contamination)
    return "\n".join(lines) + "\n"


# --- helpers ---------------------------------------------------------------------------------------


def _task_of(key: str) -> str:
    """HF task name of a result key ("mnli_matched" -> "mnli"); unknown keys are an error."""
    for task in TASK_NAMES:
        if key in result_keys(task):
            return task
    raise ValueError(f"unknown GLUE result key {key!r}")


def _ordered_keys(tasks: Mapping[str, Any]) -> list[str]:
    """The result keys present, in GLUE order (TASK_NAMES, MNLI matched before mismatched)."""
    for key in tasks:
        _task_of(key)  # raises on an unknown key
    return [k for t in TASK_NAMES for k in result_keys(t) if k in tasks]


def _published_score(pub: PublishedDev, keys: list[str]) -> float | None:
    """A published model's GLUE score over exactly `keys`, by the source's own convention; None if it lacks one."""
    tasks = {_task_of(k) for k in keys}
    if pub.metrics is not None:  # every metric printed: the GLUE-paper convention, as for the candidate
        try:
            return glue_score({k: pub.metrics[k] for k in keys})
        except (KeyError, ValueError):  # a key it has no number for, or half of MNLI
            return None
    numbers = [(pub.task_numbers or {}).get(t) for t in tasks]  # one number per task (Sanh et al.)
    if not numbers or any(v is None for v in numbers):
        return None
    return sum(numbers) / len(numbers)  # type: ignore[arg-type]


def _cell(values: list[float | None], scale: float = 1.0) -> str:
    """'88.9 / 84.1' from values × scale; '–' when there is no value at all."""
    if not values or all(v is None for v in values):
        return _DASH
    return " / ".join(_DASH if v is None else _one_decimal(float(v) * scale) for v in values)


def _one_decimal(x: float) -> str:
    """Round half up, as papers print: 88.85 -> "88.9" (f"{88.85:.1f}" gives "88.8": 88.85 is 88.8499… in binary)."""
    if not math.isfinite(x):
        return str(x)
    return str(Decimal(repr(round(x, 9))).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _same_keys(candidate: Mapping[str, Any], champion: Mapping[str, Any]) -> bool:
    return set(_ordered_keys(candidate["tasks"])) == set(_ordered_keys(champion["tasks"]))


def _champion_score_cell(candidate: Mapping[str, Any], champion: Mapping[str, Any] | None) -> str:
    if champion is None:
        return _DASH
    cell = _cell([champion.get("glue_score")], scale=100.0)
    return cell if _same_keys(candidate, champion) else f"{cell} †"


def _who(record: Mapping[str, Any] | None) -> str:
    if not record:
        return ""
    version = record.get("version")
    return f"{record.get('name', '')} v{version}".strip() if version is not None else str(record.get("name", ""))


def _contamination_cell(entry: Mapping[str, Any] | None) -> str:
    """'3/872 (0.3%) ⚠' when dirty examples exist, '0/872' when none, '' when not checked."""
    if entry is None:
        return ""
    n, total = int(entry["n_contaminated"]), int(entry["n_examples"])
    if n == 0:
        return f"0/{total}"
    return f"{n}/{total} ({float(entry['rate']) * 100:.1f}%) ⚠"


def _contamination_section(contamination: Mapping[str, Mapping[str, Any]] | None) -> list[str]:
    if contamination is None:
        return ["Not checked: no pretraining corpus was available to compare against."]
    lines = [
        (
            "Dev examples sharing an n-gram (13 words unless configured otherwise) with a pretraining document, "
            "as in GPT-3 appendix C: lower-cased, punctuation dropped, and a field shorter than n words counts "
            "when it occurs whole (unless short fields are skipped). Scores on flagged tasks may be inflated "
            "by memorisation."
        ),
        "",
    ]
    dirty = [k for k in _ordered_keys(contamination) if int(contamination[k]["n_contaminated"]) > 0]
    clean = [k for k in _ordered_keys(contamination) if k not in dirty]
    for key in dirty:
        e = contamination[key]
        lines.append(
            f"- ⚠ **{key}**: {e['n_contaminated']} of {e['n_examples']} dev examples "
            f"({float(e['rate']) * 100:.1f}%) are contaminated, e.g.:"
        )
        for text in e.get("examples", []):
            lines.append(f"  - {_quote(text)}")
    if clean:
        lines.append(f"- No contaminated example in: {', '.join(clean)}.")
    return lines


def _quote(text: str) -> str:
    """One line of example text, cut to _EXAMPLE_CHARS, safe inside a markdown list item."""
    text = " ".join(str(text).split())
    if len(text) > _EXAMPLE_CHARS:
        text = text[: _EXAMPLE_CHARS - 1] + "…"
    return "“" + _escape(text) + "”"


def _escape(text: str) -> str:
    """Keep table cells and list items intact: escape the characters markdown would act on."""
    for ch in ("\\", "|", "*", "_", "`", "<", ">", "[", "]"):
        text = text.replace(ch, "\\" + ch)
    return text
