"""GLUE leaderboard submissions, as `run_glue.py --do_predict` writes them and gluebenchmark.com takes them.

    rows = load_test_rows("rte", "/data/glue")            # [TestSplit("RTE.tsv", indices, texts)]
    write_submission_zip({"RTE.tsv": lines}, "out/glue_submission.zip")

Test files are unlabelled and read from a local GLUE folder in either layout: the original release
(`<TASK>/test.tsv`, MNLI `test_matched.tsv`/`test_mismatched.tsv`, the diagnostic set `diagnostic/diagnostic.tsv`)
or a Hugging Face export (`idx` + the text columns, `label` -1). The index column is the file's own (`index`,
`id` or `idx`), so the server can match rows. Each submission file is `index<TAB>prediction`: label names for
MNLI, QNLI, RTE and AX (the diagnostic set, predicted by the MNLI model), label ids for CoLA, SST-2, MRPC,
QQP and WNLI, and STS-B's score clipped to 0..5. Pure; the flow predicts and logs the zip.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.glue.data import STSB_RANGE, GlueDataError
from tasks.glue.tasks import TASKS

# task -> [(test file under the data folder, submission file name)]
TEST_FILES: dict[str, list[tuple[str, str]]] = {
    "cola": [("CoLA/test.tsv", "CoLA.tsv")], "sst2": [("SST-2/test.tsv", "SST-2.tsv")],
    "mrpc": [("MRPC/test.tsv", "MRPC.tsv")], "qqp": [("QQP/test.tsv", "QQP.tsv")],
    "stsb": [("STS-B/test.tsv", "STS-B.tsv")],
    "mnli": [("MNLI/test_matched.tsv", "MNLI-m.tsv"), ("MNLI/test_mismatched.tsv", "MNLI-mm.tsv")],
    "qnli": [("QNLI/test.tsv", "QNLI.tsv")], "rte": [("RTE/test.tsv", "RTE.tsv")],
    "wnli": [("WNLI/test.tsv", "WNLI.tsv")],
}
DIAGNOSTIC_FILES = ("diagnostic/diagnostic.tsv", "AX/test.tsv")  # AX.tsv, predicted by the MNLI model
NAMED_LABELS = frozenset({"mnli", "qnli", "rte"})  # the leaderboard wants names for these (and AX)
# The release's test-file text columns, where they differ from the HF names.
_GLUE_TEXT = {"mrpc": ("#1 String", "#2 String"), "mnli": ("sentence1", "sentence2"),
              "stsb": ("sentence1", "sentence2")}
_INDEX = ("index", "id", "idx")


@dataclass(frozen=True)
class TestSplit:
    """One unlabelled test file: its submission name, row indices and texts (HF column order)."""

    submission: str
    indices: list[str]
    texts: tuple[list[str], ...]
    path: str


def load_test_rows(task: str, data_dir: str | Path) -> list[TestSplit]:
    """The task's test files (MNLI: both, plus the diagnostic set when present); GlueDataError naming the file
    expected when one is missing or malformed."""
    if task not in TEST_FILES:
        raise GlueDataError(f"unknown GLUE task {task!r}")
    out = [_read(task, Path(data_dir) / rel, name) for rel, name in TEST_FILES[task]]
    if task == "mnli":
        found = [Path(data_dir) / rel for rel in DIAGNOSTIC_FILES if (Path(data_dir) / rel).is_file()]
        if found:
            out.append(_read("mnli", found[0], "AX.tsv"))
    return out


def format_predictions(task: str, values: Sequence[float]) -> list[str]:
    """The prediction column as the leaderboard reads it (names, ids, or a clipped STS-B score)."""
    spec = TASKS[task]
    if spec.is_regression:
        lo, hi = STSB_RANGE
        return [f"{min(hi, max(lo, float(v))):.3f}" for v in values]
    if task in NAMED_LABELS:
        return [spec.label_names[int(v)] for v in values]
    return [str(int(v)) for v in values]


def submission_lines(indices: Sequence[str], predictions: Sequence[str]) -> str:
    if len(indices) != len(predictions):
        raise ValueError(f"{len(predictions)} predictions for {len(indices)} test rows")
    return "".join(["index\tprediction\n", *(f"{i}\t{p}\n" for i, p in zip(indices, predictions))])


def write_submission_zip(files: Mapping[str, str], path: str | Path) -> Path:
    """`files` (submission name -> TSV text) zipped flat at `path`, names sorted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name in sorted(files):
            z.writestr(name, files[name])
    tmp.replace(path)
    return path


def _read(task: str, path: Path, submission: str) -> TestSplit:
    if not path.is_file():
        raise GlueDataError(f"GLUE {task} test: file not found; `--predict` expects {path}")
    try:
        text = path.read_text(encoding="utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise GlueDataError(f"{path}: not valid UTF-8 ({e.reason})") from None
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    if len(lines) < 2:
        raise GlueDataError(f"{path}: no test rows")
    header = lines[0].split("\t")
    index = next((c for c in _INDEX if c in header), None)
    columns = next((cols for cols in (_GLUE_TEXT.get(task), TASKS[task].text_columns)
                    if cols and set(cols) <= set(header)), None)
    if index is None or columns is None:
        raise GlueDataError(f"{path}:1: header {', '.join(header)!r} names no index column ({', '.join(_INDEX)}) "
                            f"or not the text columns {', '.join(TASKS[task].text_columns)}")
    at = [header.index(c) for c in columns]
    indices, texts = [], tuple([] for _ in at)
    for lineno, line in enumerate(lines[1:], start=2):
        fields = line.split("\t")
        if len(fields) != len(header):
            raise GlueDataError(f"{path}:{lineno}: expected {len(header)} tab-separated fields, found {len(fields)}")
        indices.append(fields[header.index(index)])
        for col, i in zip(texts, at):
            col.append(fields[i])
    return TestSplit(submission, indices, texts, str(path))
