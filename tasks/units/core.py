"""One work unit, end to end on one worker: read → clean → dedup keys → unit Parquet file.

A unit is one input file or one byte range of a large one. Its output is named by a key built from
the input's content fingerprint and every spec section that shapes the output, so a rerun finds the
unit file and its JSON summary (written last) and skips the work.

What may be reused: only a *complete* unit, one whose reader reached the end of its input without
error. Its summary (`complete: true`) is the only one ever written, and `load_cached` accepts nothing
else. The two ways a unit ends early:
- `ReaderError` (the reader judged the input corrupt or truncated; the WARC reader also reports a
  broken stream this way): the unit keeps every complete record read before the damage and reports
  the error in its result (the manifest lists it as a failed input); no summary is written, so a rerun
  reads it again, and the run key (which covers every unit's outcome) rebuilds the output if it changed.
- Any other exception (MemoryError, a network error the reader did not classify, a bug in a reader):
  nothing about the input is known, so the unit fails as a whole: its partial Parquet file is removed,
  the exception propagates, and Prefect retries the task. A silently partial unit is never produced.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from data_specs import CleanSpec, MinHashSpec, SourceSpec, canonical_json, fingerprint
from tasks.clean.core import Cleaner
from tasks.common import faults
from tasks.common.documents import Document, Dropped, Record
from tasks.dedup.core import MinHasher, exact_key
from tasks.dedup.lsh import band_key_matrix
from tasks.shards.core import AtomicParquetWriter, documents_to_columns, unit_schema, write_bytes_atomic
from tasks.sources.books import book_path
from tasks.sources.core import ReaderError, WorkUnit, read_unit, unit_content_fingerprint

# Bump when a change in this code (or in a reader) changes unit outputs for the same inputs and spec.
# 2: readers' document ids changed; summaries say whether the unit is complete.
# 3: Gopher/C4/FineWeb decide (and compute their signals) as datatrove 0.10.1 does.
# 4: readers keep records under stale coding headers, drop one bad record (not the file), new ids for
#    id-less WARC records and new drop reasons; summaries count the readers' notes.
UNIT_FORMAT_VERSION = 4

BATCH_DOCS = 256
# Text per MinHash batch (characters, close to bytes for most text). MinHash peaks at about 23x its batch's text,
# so 8 MB keeps a batch under about 200 MB however long the documents are; 256 web pages of ~5 KB are ~1.3 MB,
# so ordinary batches are still cut by count.
BATCH_BYTES = 8 << 20

log = logging.getLogger(__name__)


@dataclass
class UnitResult:
    """Summary of one processed unit; the flow and the manifest use this, never the documents."""

    key: str
    label: str
    source_index: int
    kind: str
    url: str
    start: int | None
    end: int | None
    path: str
    docs_in: int = 0
    kept: int = 0
    text_bytes: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    # Remarks the readers made on records they kept (`Document.notes`, e.g. a stale coding header read as
    # identity), counted per record read: a noted record may still be dropped later by a filter.
    notes: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    complete: bool = False  # the reader reached the end of the input without error: the only reusable state
    seconds: float = 0.0
    cached: bool = False

    @classmethod
    def from_json(cls, data: dict) -> UnitResult:
        return cls(**data)


def unit_key(source: SourceSpec, unit: WorkUnit, content: str, clean: CleanSpec, minhash: MinHashSpec) -> str:
    """Key of a unit's output: input content + byte range + every spec section that shapes it."""
    source_part = source.model_dump(mode="json", exclude={"paths"})
    return fingerprint(
        {
            "format": UNIT_FORMAT_VERSION,
            "content": content,
            "range": [unit.start, unit.end],
            # Book ids are the path below the source's root: two copies in two folders are two units.
            "url": book_path(source.paths, unit.url) if source.kind == "books" else unit.url.rsplit("/", 1)[-1],
            "source": source_part,
            "clean": clean.model_dump(mode="json"),
            "minhash": minhash.model_dump(mode="json", include={"ngram", "num_perm", "seed"}),
        },
        length=20,
    )


def _exists(path: str) -> bool:
    fs, p = url_to_fs(path)
    return fs.exists(p)


def is_reusable(result: UnitResult) -> bool:
    """A unit may be reused by a rerun only if it is complete and error-free."""
    return result.complete and result.error is None


def load_cached(summary_path: str) -> UnitResult | None:
    """The complete unit's summary if it and its Parquet file are there and readable, else None.

    An unreadable cached file is a cache miss, not an error: a summary cut short or garbled, or a unit Parquet
    file without a valid footer or with another row count than its summary (what a power loss can leave under
    the final names) is deleted with a warning, and the unit is rebuilt instead of failing every rerun.
    I/O errors reading them propagate (Prefect retries the unit).
    """
    if not _exists(summary_path):
        return None
    fs, p = url_to_fs(summary_path)
    try:
        with fs.open(p, "rb") as f:
            result = UnitResult.from_json(json.loads(f.read().decode("utf-8")))
    except (ValueError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        _discard(summary_path, None, f"summary unreadable ({type(exc).__name__}: {exc})")
        return None
    if not is_reusable(result) or not _exists(result.path):
        return None
    if (problem := _unit_file_problem(result)) is not None:
        _discard(summary_path, result.path, problem)
        return None
    result.cached = True
    return result


def _unit_file_problem(result: UnitResult) -> str | None:
    """Why a cached unit Parquet file cannot be trusted (footer unreadable, row count off), or None.

    Reads the footer only (a few KB): a file cut short loses its footer first.
    """
    fs, p = url_to_fs(result.path)
    try:
        with fs.open(p, "rb") as f:
            rows = pq.ParquetFile(f).metadata.num_rows
    except (pa.ArrowInvalid, ValueError) as exc:  # "Parquet file size is 0 bytes", "magic bytes not found", ...
        return f"unit file unreadable ({type(exc).__name__}: {exc})"
    if rows != result.kept:
        return f"unit file has {rows} rows, its summary says {result.kept}"
    return None


def _discard(summary_path: str, unit_path: str | None, why: str) -> None:
    """Delete a damaged cached unit (summary first: without it the unit is never reused) and log why."""
    log.warning("cached unit %s is damaged (%s): deleting it and rebuilding the unit", summary_path, why)
    for path in (summary_path, unit_path):
        if path is not None:
            fs, p = url_to_fs(path)
            if fs.exists(p):
                fs.rm(p)


def _refresh_cached(cached: UnitResult, unit: WorkUnit, summary_path: str, row_group_rows: int,
                    compression_level: int) -> UnitResult:
    """A cache hit as this run sees the unit: its label, source index and url are the current `WorkUnit`'s.

    The key covers content, range, file name and spec, not where the file lies nor which source lists it, so a
    moved input or reordered sources hit the first run's unit. Its summary then still names the old place, and
    its rows' `origin` the old url: both are rewritten (once, atomically: Parquet file first, summary last), so
    the shards equal a fresh run's.
    """
    stale_url = cached.url
    cached.label, cached.source_index, cached.url = unit.label, unit.source_index, unit.url
    if stale_url == unit.url:
        return cached
    _rewrite_origin(cached.path, stale_url, unit.url, row_group_rows, compression_level)
    saved = dict(asdict(cached), cached=False)
    write_bytes_atomic(summary_path, canonical_json(saved).encode("utf-8"))
    return cached


def _rewrite_origin(path: str, old: str, new: str, row_group_rows: int, compression_level: int) -> None:
    """Rewrite a unit file with `origin` values equal to `old` set to `new`, row group by row group."""
    fs, p = url_to_fs(path)
    with fs.open(p, "rb") as f:
        pf = pq.ParquetFile(f)
        writer = AtomicParquetWriter(path, pf.schema_arrow, compression_level)
        try:
            for i in range(pf.num_row_groups):
                table = pf.read_row_group(i)
                col = table.schema.get_field_index("origin")
                origin = pc.if_else(pc.equal(table.column(col), old), new, table.column(col))
                writer.write(table.set_column(col, table.schema.field(col), origin), row_group_rows)
            writer.commit()
        except BaseException:
            writer.abort()
            raise


def _count_records(records: Iterable[Record], result: UnitResult, stats: Counter[str]) -> Iterator[Document]:
    """Count every record in and the reader's drops; mark the unit complete when the reader ends cleanly.

    A `ReaderError` becomes `result.error` (the records before it are kept). Every other exception
    propagates and fails the unit (see the module docstring).
    """
    armed = faults.armed("curate.record")  # checked once per unit, never per record
    notes: Counter[str] = Counter()
    try:
        for record in records:
            if armed:  # detail "<label>#<records so far>": a test can fail a unit mid-stream
                faults.fault_point("curate.record", f"{result.label}#{result.docs_in}")
            result.docs_in += 1
            if isinstance(record, Dropped):
                stats[record.reason] += 1
            else:
                notes.update(record.notes)
                yield record
    except ReaderError as exc:
        result.error = f"{type(exc).__name__}: {exc}"
        return
    finally:
        result.notes = dict(sorted(notes.items()))
    result.complete = True


def _batches(docs: Iterable[Document], size: int, max_bytes: int | None = None) -> Iterator[list[Document]]:
    """Batches of `size` documents, or fewer once their text reaches `max_bytes`, whichever comes first. Text is
    measured in characters (`len`, free; equal to UTF-8 bytes for ASCII, MinHash works on characters anyway).
    A document larger than `max_bytes` is a batch of its own.

    MinHash holds about 23x its batch's text at its peak (shingles, hashes, permutations), so bounding the batch's
    text, not only its count, bounds the memory of a unit of large documents.
    """
    batch: list[Document] = []
    chars = 0
    for doc in docs:
        batch.append(doc)
        chars += len(doc.text)
        if len(batch) == size or (max_bytes is not None and chars >= max_bytes):
            yield batch
            batch, chars = [], 0
    if batch:
        yield batch


def process_unit(
    source: SourceSpec,
    unit: WorkUnit,
    clean: CleanSpec,
    minhash: MinHashSpec,
    work_dir: str,
    row_group_rows: int = 1024,
    compression_level: int = 3,
) -> UnitResult:
    """Read, clean and sign one unit into `work_dir/units/<key>.parquet`; skip it if already complete.

    Returns the unit's summary; a unit cut short by a `ReaderError` returns with `error` set. Raises on any
    other exception, having written nothing for this attempt.
    """
    started = time.perf_counter()
    content = unit_content_fingerprint(source, unit)
    key = unit_key(source, unit, content, clean, minhash)
    base = f"{work_dir.rstrip('/')}/units/{key}"
    if (cached := load_cached(f"{base}.json")) is not None:
        return _refresh_cached(cached, unit, f"{base}.json", row_group_rows, compression_level)

    result = UnitResult(
        key=key, label=unit.label, source_index=unit.source_index, kind=unit.kind, url=unit.url,
        start=unit.start, end=unit.end, path=f"{base}.parquet",
    )
    stats: Counter[str] = Counter()
    cleaner = Cleaner(clean, source.filters, source.languages)
    hasher = MinHasher(minhash)
    lsh = (minhash.bands, minhash.rows)
    writer = AtomicParquetWriter(result.path, unit_schema(minhash.num_perm, lsh), compression_level)
    try:
        kept_docs = cleaner(_count_records(read_unit(source, unit), result, stats), stats)
        for batch in _batches(kept_docs, BATCH_DOCS, BATCH_BYTES):
            cols = documents_to_columns(batch)
            encoded = [d.text.encode("utf-8") for d in batch]
            cols["n_bytes"] = [len(b) for b in encoded]
            cols["exact_key"] = [exact_key(d.text) for d in batch]
            signatures = hasher.signatures([d.text for d in batch])
            cols["minhash"] = pa.FixedSizeListArray.from_arrays(
                pa.array(signatures.reshape(-1), pa.uint32()), minhash.num_perm
            )
            cols["band_keys"] = pa.FixedSizeListArray.from_arrays(
                pa.array(band_key_matrix(signatures, *lsh).reshape(-1), pa.uint64()), minhash.bands
            )
            writer.write(pa.table(cols, schema=writer.schema), row_group_rows)
            result.kept += len(batch)
            result.text_bytes += sum(cols["n_bytes"])
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    result.drops = dict(sorted(stats.items()))
    result.seconds = round(time.perf_counter() - started, 3)
    if is_reusable(result):
        # The summary is written last, and only for a complete unit: its presence means "reuse me".
        write_bytes_atomic(f"{base}.json", canonical_json(asdict(result)).encode("utf-8"))
        faults.fault_point("curate.unit_written", unit.label)
    return result
