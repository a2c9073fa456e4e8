"""GLUE split loaders: local TSV files (original GLUE release or HF export) or the Hub, one `GlueExamples` out.

Pure Python (no Prefect/Ray/MLflow). Every loader returns HF column names and HF label ids (facts §D1), so
fine-tuning and scoring never see a layout difference:

    load_glue_split("mrpc", "validation", "/data/glue")   # reads /data/glue/MRPC/dev.tsv, layout auto-detected
    load_glue_split("sst2", "validation")                  # datasets.load_dataset("nyu-mll/glue", "sst2", ...)

Local files are read the way GLUE's own readers read them: tab-separated, no quoting (`csv.QUOTE_NONE`: a `"`
is a literal character), one row per `\\n` line (a trailing `\\r` and a leading UTF-8 BOM are removed). The
layout is detected per file from its header:

- "glue": the original release (`download_glue_data.py`); CoLA has no header; labels are ids or names per task.
- "hf":   a Hugging Face export: the HF text columns + `label` (+ optional `idx`), int ids (float for STS-B).

Nothing is dropped or guessed: a row with the wrong number of fields, an unknown label, a bad score, an empty
file or a missing file raises `GlueDataError` naming the file and the 1-based line (or the path expected).
Only blank lines at the very end of a file are ignored (they hold no row).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from tasks.glue.tasks import TASKS, GlueTask

if TYPE_CHECKING:
    import pandas

# GLUE file name of each split; "validation" is dev.tsv, MNLI's two dev sets have their own files.
SPLIT_FILES: dict[str, str] = {
    "train": "train.tsv",
    "validation": "dev.tsv",
    "validation_matched": "dev_matched.tsv",
    "validation_mismatched": "dev_mismatched.tsv",
}

STSB_RANGE = (0.0, 5.0)  # STS-B similarity scores are 0 (unrelated) .. 5 (equivalent)


class GlueDataError(ValueError):
    """A GLUE file or split that cannot be read as-is; the message names the path (and line) to fix."""


@dataclass(frozen=True)
class GlueExamples:
    """One GLUE split as HF column names and HF label ids, plus where it came from."""

    task: str  # HF task name, e.g. "mrpc"
    split: str  # "train" | "validation" | "validation_matched" | "validation_mismatched"
    texts: tuple[list[str], ...]  # one list per TASKS[task].text_columns, aligned with labels
    labels: list  # int ids in TASKS[task].label_names order; float scores for stsb
    source: str  # the file read, or "hf://<hub_repo>/<config>/<split>"
    sha256: str | None  # sha256 hex of the file read; None for the hub
    layout: str  # "glue", "hf" or "hub"

    def __post_init__(self) -> None:
        spec = _task(self.task)
        if len(self.texts) != len(spec.text_columns):
            raise ValueError(f"{self.task}: expected {len(spec.text_columns)} text lists, got {len(self.texts)}")
        if any(len(col) != len(self.labels) for col in self.texts):
            raise ValueError(f"{self.task}: text lists and labels differ in length")

    def __len__(self) -> int:
        return len(self.labels)

    def head(self, n: int) -> GlueExamples:
        """The first n rows (all when n >= len): run_glue's `max_train_samples` / `max_eval_samples`."""
        if n < 0:
            raise ValueError(f"head(n) needs n >= 0, got {n}")
        return dataclasses.replace(self, texts=tuple(col[:n] for col in self.texts), labels=self.labels[:n])

    def take(self, rows: Sequence[int]) -> GlueExamples:
        """The given rows, in that order."""
        return dataclasses.replace(self, texts=tuple([col[i] for i in rows] for col in self.texts),
                                   labels=[self.labels[i] for i in rows])

    def to_dataframe(self) -> pandas.DataFrame:
        """The rows as a DataFrame with the HF text column names and "label"."""
        import pandas as pd

        columns = dict(zip(TASKS[self.task].text_columns, self.texts))
        columns["label"] = self.labels
        return pd.DataFrame(columns)

    def label_counts(self) -> dict[str, int]:
        """Label name -> row count, every name listed in id order (zeros included); {} for regression (stsb)."""
        names = TASKS[self.task].label_names
        counts = [0] * len(names)
        for label in self.labels if names else ():
            counts[label] += 1
        return dict(zip(names, counts))


def split_file(task: str, split: str, data_dir: str | Path) -> Path:
    """Where the original GLUE release keeps a split: <data_dir>/<folder>/<train|dev|dev_matched|...>.tsv."""
    spec = _task(task)
    _check_split(spec, split)
    return Path(data_dir) / spec.folder / SPLIT_FILES[split]


def load_glue_split(
    task: str, split: str, data_dir: str | Path | None = None, *, hub_repo: str = "nyu-mll/glue",
    hub_revision: str | None = None,
) -> GlueExamples:
    """Load one GLUE split: from `data_dir` (layout detected from the file) or, when it is None, from the Hub.

    The Hub path resolves `hub_revision` (None = main) to its commit (`hub_commit`) and calls
    `datasets.load_dataset(hub_repo, task, split=split, revision=<commit>)`; the source names the commit
    (`hf://<repo>@<sha>/<task>/<split>`). `hub_repo` may also be a local folder laid out like the Hub repo
    (README.md `configs:` + parquet files), which loads offline and has no revision. Label names the dataset
    declares (a `ClassLabel`) must be the task's, in its order.
    """
    spec = _task(task)
    _check_split(spec, split)
    if data_dir is None:
        return _load_hub(spec, split, hub_repo, hub_revision)
    path = split_file(task, split, data_dir)
    if not path.parent.is_dir():
        raise GlueDataError(f"GLUE {task} {split}: task folder {path.parent} not found; expected the file {path}")
    if not path.is_file():
        raise GlueDataError(f"GLUE {task} {split}: file not found; expected {path}")
    return _load_tsv(spec, split, path)


# --- layouts ----------------------------------------------------------------------------------------------

LabelKind = Literal["id", "name", "score"]  # int id as HF numbers it | label name | STS-B float score


@dataclass(frozen=True)
class _Layout:
    """How one task's TSV names its columns: text columns (aligned with HF's) and the label column."""

    text: tuple[str, ...]  # header names, in TASKS[task].text_columns order
    label: str
    label_kind: LabelKind
    header: tuple[str, ...] | None  # the release's exact header; None when it varies (MNLI train 12, dev 16 cols)
    has_header: bool = True  # False for CoLA: `header` then names its 4 columns


# The original GLUE release (download_glue_data.py), per task. Labels: CoLA/SST-2/MRPC/QQP/WNLI are ids that
# already match HF's order (WNLI: 1 = entailment = HF id 1); MNLI/QNLI/RTE are names; STS-B is a score.
_GLUE_LAYOUTS: dict[str, _Layout] = {
    "cola": _Layout(("sentence",), "label", "id", ("source", "label", "orig_label", "sentence"), has_header=False),
    "sst2": _Layout(("sentence",), "label", "id", ("sentence", "label")),
    "mrpc": _Layout(
        ("#1 String", "#2 String"), "Quality", "id", ("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String")
    ),
    "qqp": _Layout(
        ("question1", "question2"), "is_duplicate", "id",
        ("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
    ),
    "stsb": _Layout(
        ("sentence1", "sentence2"), "score", "score",
        ("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2", "score"),
    ),
    "mnli": _Layout(("sentence1", "sentence2"), "gold_label", "name", None),
    "qnli": _Layout(("question", "sentence"), "label", "name", ("index", "question", "sentence", "label")),
    "rte": _Layout(("sentence1", "sentence2"), "label", "name", ("index", "sentence1", "sentence2", "label")),
    "wnli": _Layout(("sentence1", "sentence2"), "label", "id", ("index", "sentence1", "sentence2", "label")),
}


def _hf_layout(spec: GlueTask, header: tuple[str, ...]) -> _Layout:
    kind: LabelKind = "score" if spec.is_regression else "id"
    return _Layout(spec.text_columns, "label", kind, header)


def _is_hf_header(spec: GlueTask, header: tuple[str, ...]) -> bool:
    base = {*spec.text_columns, "label"}
    return len(set(header)) == len(header) and set(header) in (base, base | {"idx"})


def _detect(spec: GlueTask, first: tuple[str, ...], path: Path) -> tuple[str, _Layout, bool]:
    """(layout name, column layout, whether line 1 is a header) for a file whose first line is `first`."""
    glue = _GLUE_LAYOUTS[spec.name]
    if _is_hf_header(spec, first):
        if first == glue.header and glue.has_header:  # SST-2's release header is also a valid HF header
            return "glue", dataclasses.replace(glue, header=first), True
        return "hf", _hf_layout(spec, first), True
    if not glue.has_header:  # CoLA: line 1 is already a row
        return "glue", glue, False
    if len(set(first)) == len(first) and {*glue.text, glue.label} <= set(first):
        return "glue", dataclasses.replace(glue, header=first), True
    expected_glue = ", ".join(glue.header or (*glue.text, "...", glue.label))
    expected_hf = ", ".join((*spec.text_columns, "label", "[idx]"))
    raise GlueDataError(
        f"{path}:1: header {', '.join(first)!r} is neither the GLUE release's ({expected_glue}) "
        f"nor a Hugging Face export's ({expected_hf})"
    )


# --- reading ----------------------------------------------------------------------------------------------


def _load_tsv(spec: GlueTask, split: str, path: Path) -> GlueExamples:
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if not data.strip():
        raise GlueDataError(f"{path}: file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise GlueDataError(f"{path}:{lineno}: not valid UTF-8 ({e.reason})") from None
    lines = text.removeprefix("\ufeff").split("\n")  # \n only: QUOTE_NONE rows never span lines
    while lines and not lines[-1].strip("\r"):  # blank lines at the end hold no row
        lines.pop()
    lines = [line.removesuffix("\r") for line in lines]

    layout_name, layout, has_header = _detect(spec, tuple(lines[0].split("\t")), path)
    header = layout.header
    assert header is not None
    text_at = [header.index(c) for c in layout.text]
    label_at = header.index(layout.label)
    parse_label = _label_parser(spec, layout.label_kind)

    texts: tuple[list[str], ...] = tuple([] for _ in text_at)
    labels: list = []
    for lineno, line in enumerate(lines[1:] if has_header else lines, start=2 if has_header else 1):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise GlueDataError(
                f"{path}:{lineno}: expected {len(header)} tab-separated fields ({', '.join(header)}), "
                f"found {len(fields)}"
            )
        try:
            labels.append(parse_label(fields[label_at]))
        except ValueError as e:
            raise GlueDataError(f"{path}:{lineno}: {layout.label} {e}") from None
        for col, i in zip(texts, text_at):
            col.append(fields[i])
    if not labels:
        raise GlueDataError(f"{path}: header only, no rows")
    return GlueExamples(spec.name, split, texts, labels, str(path), digest, layout_name)


def hub_commit(hub_repo: str, revision: str | None) -> str | None:
    """The commit `revision` of hub dataset `hub_repo` points to (offline: the HF cache's ref); None for a local
    folder. GlueDataError with the fix when it cannot be resolved."""
    from tasks.sources.hf_identity import UnresolvedRevision, resolve_revision

    if Path(hub_repo).is_dir():
        return None
    if revision and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    try:
        return resolve_revision(hub_repo, revision)
    except UnresolvedRevision as e:
        raise GlueDataError(f"{e} (GLUE: set data.hub_revision in the spec)") from None


def _load_hub(spec: GlueTask, split: str, hub_repo: str, revision: str | None = None) -> GlueExamples:
    import datasets  # heavy; only the hub path needs it

    commit = hub_commit(hub_repo, revision)
    source = f"hf://{hub_repo}{f'@{commit}' if commit else ''}/{spec.name}/{split}"
    ds = datasets.load_dataset(hub_repo, spec.name, split=split, **({"revision": commit} if commit else {}))
    missing = [c for c in (*spec.text_columns, "label") if c not in ds.column_names]
    if missing:
        raise GlueDataError(f"{source}: columns {missing} missing (has {ds.column_names})")
    declared = getattr(ds.features.get("label"), "names", None)
    if declared is not None and list(declared) != list(spec.label_names):
        raise GlueDataError(f"{source}: label names {list(declared)} are not {spec.name}'s {list(spec.label_names)} "
                            "(in that order): the label ids would mean other classes")
    parse_label = _label_parser(spec, "score" if spec.is_regression else "id")
    labels = []
    for row, value in enumerate(ds["label"], start=1):
        try:
            labels.append(parse_label(str(value)))
        except ValueError as e:
            raise GlueDataError(f"{source}: row {row}: label {e}") from None
    texts = tuple(list(ds[c]) for c in spec.text_columns)
    return GlueExamples(spec.name, split, texts, labels, source, None, "hub")


def _label_parser(spec: GlueTask, kind: LabelKind) -> Callable[[str], int | float]:
    """A function from the label field to the HF label; raises ValueError with the reason."""
    names = spec.label_names
    if kind == "score":
        low, high = STSB_RANGE

        def parse_score(s: str) -> float:
            try:
                x = float(s)
            except ValueError:
                raise ValueError(f"{s!r} is not a number") from None
            if not (math.isfinite(x) and low <= x <= high):
                raise ValueError(f"{s!r} is outside [{low:g}, {high:g}]")
            return x

        return parse_score
    if kind == "name":

        def parse_name(s: str) -> int:
            if s not in names:
                raise ValueError(f"{s!r} is not one of {', '.join(names)}")
            return names.index(s)

        return parse_name

    def parse_id(s: str) -> int:
        # ASCII digits only: int() would also take " 1", "1_0" or "٣".
        if not (s.isascii() and s.isdigit() and int(s) < len(names)):
            ids = ", ".join(f"{i}={n}" for i, n in enumerate(names))
            raise ValueError(f"{s!r} is not a label id ({ids})")
        return int(s)

    return parse_id


def _task(task: str) -> GlueTask:
    if task not in TASKS:
        raise ValueError(f"unknown GLUE task {task!r}; expected one of {', '.join(TASKS)}")
    return TASKS[task]


def _check_split(spec: GlueTask, split: str) -> None:
    allowed = ("train", *spec.eval_splits)
    if split not in allowed:
        raise ValueError(
            f"{spec.name} has no split {split!r} with labels; expected one of {', '.join(allowed)} "
            "(test labels are hidden)"
        )
