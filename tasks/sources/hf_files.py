"""Record-by-record reading of an hf_dataset JSON Lines or CSV data file whose whole-file parse failed.

Why: `datasets` parses a data file as a whole (Arrow's JSON reader, pandas for CSV), so one invalid-UTF-8
cell or one malformed line raises for the entire file, and the unit fails again on every retry. Here the
file is split into its records (JSON Lines: its non-blank lines; CSV: the records after the header, quoted
newlines kept), each record is checked on its own, and the good ones are parsed together by the same
`datasets` parser, so they get exactly the values they would get if the bad records were fixed. A bad
record keeps its slot in the row numbering, so every good row keeps the index, and the id, of the normal
path. Bad records become `Dropped` with one of these reasons:

- `hf_dataset/decode_error`: the record is not valid UTF-8;
- `hf_dataset/bad_json`: a JSON Lines line that is not one JSON object;
- `hf_dataset/bad_csv`: a CSV record with more fields than the header (pandas rejects it).

Only a parse failure (`ValueError`: `UnicodeDecodeError`, pyarrow's `ArrowInvalid`, pandas' `ParserError`)
falls back; I/O errors and `MemoryError` propagate so the unit is retried. A file the fallback cannot read
either (a JSON array file, a CSV with an unreadable header, a file whose good records still do not parse)
is a `ReaderError` naming the first error.

Used by `tasks.sources.hf_dataset` (reading) and `tasks.sources.core.hf_file_rows` (counting rows to plan).
"""

from __future__ import annotations

import csv
import itertools
import json
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from data_specs.sources import HFDatasetSource
from tasks.common.io import open_decompressed
from tasks.sources.core import ReaderError, stream_data_file

log = logging.getLogger(__name__)

# A row from `datasets`, or the reason a bad record was dropped.
RowOrReason = dict | str


def with_fallback(source: HFDatasetSource, rows: Iterable[dict], files: Callable[[], list[str] | None]
                  ) -> Iterator[RowOrReason]:
    """`rows` (a `datasets` stream of the `files`, in order) until it fails to parse; then the rest of the
    files record by record (`tolerant_rows`), starting after the rows already yielded.

    The rows before the failure are all good (the parser fails on the first bad block), so record n of the
    files is the row after them.
    """
    done = 0
    try:
        for row in rows:
            yield row
            done += 1
    except ValueError as exc:
        error: ValueError = exc
    else:
        return
    urls = files()
    if not urls:
        raise error
    log.warning("hf_dataset %s: parsing failed after %d rows (%s: %s); reading the rest record by record",
                source.name, done, type(error).__name__, error)
    records = itertools.chain.from_iterable(tolerant_rows(source, url) for url in urls)
    yield from itertools.islice(records, done, None)


def tolerant_rows(source: HFDatasetSource, url: str) -> Iterator[RowOrReason]:
    """Every record of one data file in order: its row as `datasets` parses it, or the reason it is bad."""
    slots: list[str | None] = []  # one per record: None for a good one, else why it is bad
    with tempfile.TemporaryDirectory(prefix="lmpipe-hf-records-") as tmp:
        good = Path(tmp) / f"good.{'csv' if source.name == 'csv' else 'jsonl'}"
        with good.open("wb") as out:
            for raw, reason in checked_records(source.name, url, header=out.write):
                slots.append(reason)
                if reason is None:
                    out.write(raw if raw.endswith(b"\n") else raw + b"\n")
        parsed = iter(stream_data_file(source, str(good)) if None in slots else ())
        for n, reason in enumerate(slots):
            if reason is not None:
                yield reason
                continue
            try:
                row = next(parsed, None)
            except ValueError as exc:
                raise ReaderError(f"{url}: its records that are valid one by one still do not parse together "
                                  f"({type(exc).__name__}: {exc}); fix or remove the file") from exc
            if row is None:
                raise ReaderError(f"{url}: its good records parse to fewer rows than records (at record {n}); "
                                  "fix or remove the file")
            yield row


def count_records(builder: str, url: str) -> int:
    """The file's rows, bad records included: the row numbering `tolerant_rows` keeps."""
    return sum(1 for _ in checked_records(builder, url))


def checked_records(builder: str, url: str, header: Callable[[bytes], object] = lambda _: None
                    ) -> Iterator[tuple[bytes, str | None]]:
    """(raw bytes, None or why it is bad) for each record of a JSON Lines (`json`) or CSV (`csv`) file.

    A CSV file's header line is handed to `header` (not yielded): its column count is what records are
    checked against. The file is decompressed by content, as everywhere in lmpipe.
    """
    with open_decompressed(url) as (stream, _):
        if builder != "csv":
            first = True
            for line in stream:
                if not line.strip():
                    continue
                if first and line.lstrip().startswith(b"["):
                    raise ReaderError(f"{url}: a JSON array file cannot be read record by record, and its parse "
                                      "failed; convert it to JSON Lines (one object per line) or fix it")
                first = False
                yield line, _json_problem(line)
            return
        records = _csv_records(stream)
        first = next(records, None)
        if first is None:
            return
        raw, fields = first
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ReaderError(f"{url}: the CSV header is not valid UTF-8 ({exc}); fix or remove the file") from exc
        header(raw if raw.endswith(b"\n") else raw + b"\n")
        for raw, row in records:
            yield raw, _csv_problem(raw, row, len(fields))


def _json_problem(line: bytes) -> str | None:
    """Why one JSON Lines line is a bad record, or None."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError:
        return "decode_error"
    try:
        value = json.loads(text)
    except ValueError:
        return "bad_json"
    return None if isinstance(value, dict) else "bad_json"


def _csv_problem(raw: bytes, fields: list[str], columns: int) -> str | None:
    """Why one CSV record is a bad record, or None (fewer fields than the header are missing values to pandas)."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return "decode_error"
    return "bad_csv" if len(fields) > columns else None


def _csv_records(stream: Iterable[bytes]) -> Iterator[tuple[bytes, list[str]]]:
    """(raw bytes, fields) of each non-blank CSV record, a quoted newline kept inside its record.

    Invalid UTF-8 is carried through `surrogateescape`, so the record boundaries are found in any file.
    """
    pending: list[bytes] = []

    def lines() -> Iterator[str]:
        for line in stream:
            pending.append(line)
            yield line.decode("utf-8", errors="surrogateescape")

    for fields in csv.reader(lines()):
        raw = b"".join(pending)
        pending.clear()
        if fields:  # a blank line: pandas skips it too
            yield raw, fields
