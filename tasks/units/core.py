"""One work unit, end to end on one worker: read → clean → dedup keys → unit Parquet file.

A unit is one input file or one byte range of a large one. Its output is named by a key built from
the input's content fingerprint and every spec section that shapes the output, so a rerun finds the
unit file and its JSON summary (written last) and skips the work. A unit whose input is corrupt keeps
every complete record read before the damage and reports the error; it is not cached, so a rerun
tries it again.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field

import pyarrow as pa
from fsspec.core import url_to_fs

from data_specs import CleanSpec, MinHashSpec, SourceSpec, canonical_json, fingerprint
from tasks.clean.core import Cleaner
from tasks.common.documents import Document, Dropped, Record
from tasks.dedup.core import MinHasher, exact_key
from tasks.shards.core import AtomicParquetWriter, documents_to_columns, unit_schema, write_bytes_atomic
from tasks.sources.core import WorkUnit, read_unit, unit_content_fingerprint

# Bump when a change in this code changes unit outputs for the same inputs and spec.
UNIT_FORMAT_VERSION = 1

BATCH_DOCS = 256


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
    error: str | None = None
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
            "url": unit.url.rsplit("/", 1)[-1],
            "source": source_part,
            "clean": clean.model_dump(mode="json"),
            "minhash": minhash.model_dump(mode="json", include={"ngram", "num_perm", "seed"}),
        },
        length=20,
    )


def _exists(path: str) -> bool:
    fs, p = url_to_fs(path)
    return fs.exists(p)


def load_cached(summary_path: str) -> UnitResult | None:
    """The finished unit's summary if its files are there, else None."""
    if not _exists(summary_path):
        return None
    fs, p = url_to_fs(summary_path)
    with fs.open(p, "r") as f:
        result = UnitResult.from_json(json.load(f))
    if result.error is not None or not _exists(result.path):
        return None
    result.cached = True
    return result


def _count_records(records: Iterable[Record], result: UnitResult, stats: Counter[str]) -> Iterator[Document]:
    """Count every record in, count reader drops, and turn a reader failure into `result.error`."""
    try:
        for record in records:
            result.docs_in += 1
            if isinstance(record, Dropped):
                stats[record.reason] += 1
            else:
                yield record
    except Exception as exc:  # noqa: BLE001 - the failure is recorded; complete records are kept
        result.error = f"{type(exc).__name__}: {exc}"


def _batches(docs: Iterable[Document], size: int) -> Iterator[list[Document]]:
    batch: list[Document] = []
    for doc in docs:
        batch.append(doc)
        if len(batch) == size:
            yield batch
            batch = []
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
    """Read, clean and sign one unit into `work_dir/units/<key>.parquet`; skip it if already done."""
    started = time.perf_counter()
    content = unit_content_fingerprint(source, unit)
    key = unit_key(source, unit, content, clean, minhash)
    base = f"{work_dir.rstrip('/')}/units/{key}"
    if (cached := load_cached(f"{base}.json")) is not None:
        return cached

    result = UnitResult(
        key=key, label=unit.label, source_index=unit.source_index, kind=unit.kind, url=unit.url,
        start=unit.start, end=unit.end, path=f"{base}.parquet",
    )
    stats: Counter[str] = Counter()
    cleaner = Cleaner(clean, source.filters, source.languages)
    hasher = MinHasher(minhash)
    writer = AtomicParquetWriter(result.path, unit_schema(minhash.num_perm), compression_level)
    try:
        kept_docs = cleaner(_count_records(read_unit(source, unit), result, stats), stats)
        for batch in _batches(kept_docs, BATCH_DOCS):
            cols = documents_to_columns(batch)
            encoded = [d.text.encode("utf-8") for d in batch]
            cols["n_bytes"] = [len(b) for b in encoded]
            cols["exact_key"] = [exact_key(d.text) for d in batch]
            signatures = hasher.signatures([d.text for d in batch])
            cols["minhash"] = pa.FixedSizeListArray.from_arrays(
                pa.array(signatures.reshape(-1), pa.uint32()), minhash.num_perm
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
    # The summary is written last: its presence means the unit is finished.
    write_bytes_atomic(f"{base}.json", canonical_json(asdict(result)).encode("utf-8"))
    return result
