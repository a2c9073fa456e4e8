"""Readers: turn a source spec into work units, and a work unit into Documents and Dropped records.

Pure logic (no Prefect/Ray/MLflow). The flow calls `plan_units` once per source, maps one task per
`WorkUnit`, and each task iterates `read_unit`. A unit is a whole input file or a byte range of a
large splittable one (uncompressed XML, multistream bz2), so the same dump can be read by many workers
without any of them holding it in memory.

Every record a reader sees is either a `Document` or a `Dropped(id, reason)`; records that are not
documents at all (WARC request/metadata/warcinfo records, the MediaWiki siteinfo header) are skipped.
On a corrupt or truncated input a reader first yields every complete record before the damage and
then raises `ReaderError` with a message that says where it stopped.

Identity: `plan_units` fingerprints every input once (a file split into many units is hashed once, and a
local file whose path, inode, size and mtime are unchanged since an earlier run is not hashed at all, see
`cached_content_fingerprint`) and carries the result in `WorkUnit.content`, so the workers never re-hash.

Kinds live in their own modules: `wikipedia.py`, `common_crawl.py`, `books.py`, `hf_dataset.py`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from data_specs.sources import CommonCrawlSource, HFDatasetSource, SourceSpec, WikipediaSource
from tasks.common.documents import Document, Dropped
from tasks.common.io import (
    cached_content_fingerprint, expand_paths, file_size, fingerprint_cache_dir, open_decompressed, open_raw,
    write_text_atomically,
)

if TYPE_CHECKING:
    from tasks.sources.planning import Mapper

# An hf_dataset stored as Parquet becomes units of whole row groups of about this many rows (at least
# one row group, never crossing a file), like `split_bytes` for a dump.
HF_ROWS_PER_UNIT = 100_000


class ReaderError(Exception):
    """An input that was read only in part: complete records were yielded before this was raised."""


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """One input file, or the byte range [start, end) of a large splittable one.

    An `hf_dataset` unit is either the whole dataset (`url` is `hf://<name>[/<config>]:<split>`) or the
    rows [start, end) of one of its Parquet files, whose first row is the dataset's row `first_row`.
    `content` is the input's fingerprint when the planner computed it (see `unit_content_fingerprint`);
    it is derived from the other fields and the file, so it takes no part in equality.
    """

    source_index: int
    kind: str
    url: str
    start: int | None = None
    end: int | None = None
    first_row: int | None = None
    content: str | None = dataclasses.field(default=None, compare=False)

    @property
    def label(self) -> str:
        """Short human label: the file's basename, plus the byte (or row) range when there is one."""
        if self.url.startswith("hf://") and self.first_row is None:
            return self.url.removeprefix("hf://")
        path = urlsplit(self.url).path if "://" in self.url else self.url
        name = os.path.basename(path.rstrip("/")) or self.url
        if self.start is None and self.end is None:
            return name
        return f"{name}[{self.start or 0}:{'' if self.end is None else self.end}]"


def plan_units(source: SourceSpec, source_index: int, mapper: Mapper | None = None
               ) -> tuple[list[WorkUnit], list[tuple[str, str]]]:
    """Expand the source's paths into work units; returns (units, problems).

    `problems` are `(pattern_or_url, error)` pairs for the manifest: a missing file, a glob matching
    nothing. Wikipedia files larger than `split_bytes` become byte-range units (uncompressed XML and
    bz2, where each unit owns the bz2 streams starting in its range); everything else is one unit per file.
    The inputs are hashed in parallel by `mapper` (default: a thread pool, see `tasks.sources.planning`).
    """
    if isinstance(source, HFDatasetSource):
        return with_content(source, hf_units(source, source_index), mapper), []
    files, problems = expand_paths(list(source.paths))
    if isinstance(source, CommonCrawlSource) and source.paths_file:
        listed, problem = read_paths_listing(source.paths_file, source.base_url, source.max_files)
        files += [f for f in listed if f not in files]
        problems += problem
    units: list[WorkUnit] = []
    for url in files:
        if isinstance(source, WikipediaSource) and source.split_bytes:
            from tasks.sources.wikipedia import splittable

            size = file_size(url)
            if size is not None and size > source.split_bytes and splittable(url):
                for start in range(0, size, source.split_bytes):
                    units.append(WorkUnit(source_index, source.kind, url, start, min(start + source.split_bytes, size)))
                continue
        units.append(WorkUnit(source_index, source.kind, url))
    return with_content(source, units, mapper), problems


def with_content(source: SourceSpec, units: list[WorkUnit], mapper: Mapper | None = None) -> list[WorkUnit]:
    """The units with `content` filled in, hashing each file once however many units share it.

    Filled for local files, files shared by several units and hf_dataset units. A remote file that is
    one unit keeps `content` empty: its worker asks the store for the ETag itself, so a long list of
    remote files is not queried one by one here. A file that cannot be fingerprinted now also stays
    empty: its unit fingerprints it and fails there, as one failed unit, instead of stopping the planning.
    The files are hashed first, all at once through `mapper` (in parallel), then looked up per unit.
    """
    from tasks.sources.planning import ThreadMap, default_workers, hash_inputs

    shared = Counter(unit.url for unit in units)
    wanted = [_is_local(u.url) or shared[u.url] > 1 or u.kind == "hf_dataset" for u in units]
    to_hash = [f for unit, want in zip(units, wanted, strict=True) if want for f in _files_of(source, unit)]
    hashed = hash_inputs(to_hash, mapper or ThreadMap(default_workers()))
    fingerprint_file = functools.cache(functools.partial(_hashed_or_now, hashed))
    identity = functools.cache(functools.partial(_hf_identity, source))  # once per source, not once per unit
    filled = []
    for unit, want in zip(units, wanted, strict=True):
        if not want:
            filled.append(unit)
            continue
        try:
            content: str | None = _unit_fingerprint(source, unit, fingerprint_file, identity)
        except Exception:  # noqa: BLE001 - re-raised by the unit that reads the file
            content = None
        filled.append(dataclasses.replace(unit, content=content))
    return filled


def dataset_url(source: HFDatasetSource) -> str:
    """`hf://<name>[/<config>]:<split>`: the whole-dataset unit's url and every hf_dataset Document's origin."""
    return f"hf://{source.name}{'/' + source.config if source.config else ''}:{source.split}"


def hf_units(source: HFDatasetSource, source_index: int, rows_per_unit: int = HF_ROWS_PER_UNIT) -> list[WorkUnit]:
    """Units of an hf_dataset: runs of whole row groups of its Parquet files, one unit per JSON/CSV file, or
    the whole dataset.

    The files are those `datasets` itself resolves for the split (the `data_files`, or a hub dataset's
    shards), in its order, so row `first_row + i` here is row `i` of the streamed dataset and ids stay
    the same. JSON and CSV files split only for the `json` / `csv` builders with several data files (a hub
    dataset's own builder options, in its card, would be lost reading file by file): each file's row count
    comes from the same `datasets` parser, once per file content (`hf_file_rows`). Anything else (text
    builders, one JSON/CSV file, an unresolvable hub id, `max_documents` set: a limit per input means per
    dataset here, a file that cannot be read now) stays one unit read by `datasets` streaming, which
    reports any error as that unit's failure.
    """
    whole = [WorkUnit(source_index, source.kind, dataset_url(source))]
    resolved = None if source.max_documents is not None else resolved_data_files(source)
    if not resolved:
        return whole
    builder, files = resolved
    units: list[WorkUnit] = []
    first_row = 0
    if builder == "parquet":
        try:
            group_rows = [parquet_row_groups(url) for url in files]
        except Exception:  # noqa: BLE001 - see above
            return whole
        for url, sizes in zip(files, group_rows, strict=True):
            for start, end in row_ranges(sizes, rows_per_unit):
                units.append(WorkUnit(source_index, source.kind, url, start, end, first_row))
            first_row += sum(sizes)
        return units
    if not (reads_file_by_file(source) and builder == source.name and len(files) > 1):
        return whole
    try:
        counts = [hf_file_rows(source, url) for url in files]
    except Exception:  # noqa: BLE001 - see above
        return whole
    for url, rows in zip(files, counts, strict=True):
        units.append(WorkUnit(source_index, source.kind, url, None, None, first_row))
        first_row += rows
    return units


PER_FILE_BUILDERS = ("json", "csv")


def reads_file_by_file(source: HFDatasetSource) -> bool:
    """A unit of this source with `first_row` set is one data file read by `datasets` (json, csv), not Parquet."""
    return source.name in PER_FILE_BUILDERS


def resolved_data_files(source: HFDatasetSource) -> tuple[str, list[str]] | None:
    """(builder name, the split's files) as `datasets` resolves them; None when it cannot resolve them here."""
    try:
        import datasets

        kwargs: dict = {}
        if source.revision:
            kwargs["revision"] = source.revision
        if source.data_files:
            kwargs["data_files"] = list(source.data_files)
        builder = datasets.load_dataset_builder(source.name, source.config, **kwargs)
        files = (builder.config.data_files or {}).get(source.split)
    except Exception:  # noqa: BLE001 - not resolvable here: the single streaming unit reports it
        return None
    return (builder.name, [str(f) for f in files]) if files else None


def stream_data_file(source: HFDatasetSource, url: str) -> Any:
    """One data file of a json/csv source as `datasets` streams it (the same parser as the whole dataset)."""
    import datasets

    return datasets.load_dataset(source.name, source.config, data_files={source.split: [url]}, split=source.split,
                                 streaming=True)


def hf_file_rows(source: HFDatasetSource, url: str) -> int:
    """Rows of one json/csv data file as `datasets` parses it (Arrow batches, no Python rows), remembered per
    file content in `fingerprint_cache_dir()` so an unchanged rerun parses nothing to plan."""
    key = hashlib.sha256(f"rows|{source.name}|{source.config}|{cached_content_fingerprint(url)}".encode())
    entry = fingerprint_cache_dir() / f"rows-{key.hexdigest()[:32]}.json"
    try:
        return int(json.loads(entry.read_text())["rows"])
    except (OSError, ValueError, KeyError, TypeError):
        pass
    try:
        rows = sum(batch.num_rows for batch in stream_data_file(source, url).with_format("arrow").iter(batch_size=8192))
    except ValueError:  # a bad record: counted as the record-by-record fallback reads the file
        from tasks.sources.hf_files import count_records

        rows = count_records(source.name, url)
    try:
        write_text_atomically(entry, json.dumps({"url": url, "rows": rows}))
    except OSError:
        pass
    return rows


def parquet_row_groups(url: str) -> list[int]:
    """Row counts of a Parquet file's row groups, from its footer."""
    import pyarrow.parquet as pq

    with open_raw(url) as f:
        meta = pq.ParquetFile(f).metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def row_ranges(group_rows: list[int], rows_per_unit: int) -> list[tuple[int, int]]:
    """Cut consecutive row groups into [start, end) row ranges of at most `rows_per_unit` rows each
    (a bigger row group is a range of its own); empty row groups add nothing."""
    ranges: list[tuple[int, int]] = []
    start = end = 0
    for rows in group_rows:
        if end > start and end - start + rows > rows_per_unit:
            ranges.append((start, end))
            start = end
        end += rows
    if end > start:
        ranges.append((start, end))
    return ranges


def read_paths_listing(listing: str, base_url: str, max_files: int | None) -> tuple[list[str], list[tuple[str, str]]]:
    """URLs from a Common Crawl `*.paths(.gz)` listing: one path per line, relative to `base_url`."""
    try:
        with open_decompressed(listing) as (stream, _):
            lines = stream.read().decode("utf-8").splitlines()
    except Exception as exc:  # noqa: BLE001 - reported in the manifest, the other sources still run
        return [], [(listing, f"cannot read the path listing: {type(exc).__name__}: {exc}")]
    paths = [line.strip() for line in lines if line.strip()]
    if max_files is not None:
        paths = paths[:max_files]
    urls = [p if "://" in p else base_url.rstrip("/") + "/" + p.lstrip("/") for p in paths]
    return urls, ([] if urls else [(listing, "the path listing is empty")])


def unit_content_fingerprint(source: SourceSpec, unit: WorkUnit) -> str:
    """What identifies the unit's input content: the file's fingerprint plus the byte range.

    For `hf_dataset`, the dataset coordinates (name, config, split, revision, data files); a local data
    file also contributes its content fingerprint, so editing it invalidates the cache. A row-range unit
    adds its file's fingerprint, the file's first row and the range. A hub dataset not pinned to a commit
    adds the commit it resolves to, and remote data files their ETag/size/mtime (`hf_identity`).

    The planner's `unit.content` is used when present; otherwise the files are fingerprinted here
    (through the cache of `cached_content_fingerprint`). Either way the string is the one earlier
    versions produced for whole files, byte ranges and whole-dataset units, so their caches stay valid.
    """
    if unit.content is not None:
        return unit.content
    return _unit_fingerprint(source, unit, cached_content_fingerprint)


def _is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def _files_of(source: SourceSpec, unit: WorkUnit) -> list[str]:
    """The files whose fingerprints `_unit_fingerprint` takes for this unit (so the planner hashes them first)."""
    if not isinstance(source, HFDatasetSource):
        return [unit.url]
    files = [f for f in source.data_files or [] if _is_local(f) and os.path.exists(f.removeprefix("file://"))]
    return files + ([unit.url] if unit.first_row is not None else [])


def _hashed_or_now(hashed: dict[str, str | BaseException], url: str) -> str:
    """The planner's fingerprint of `url` (raising what hashing it raised), else hash it now."""
    got = hashed.get(url)
    if got is None:
        return cached_content_fingerprint(url)
    if isinstance(got, BaseException):
        raise got
    return got


def _hf_identity(source: HFDatasetSource) -> dict:
    from tasks.sources.hf_identity import source_identity

    return source_identity(source)


def _unit_fingerprint(source: SourceSpec, unit: WorkUnit, fingerprint_file: Callable[[str], str],
                      identity: Callable[[], dict] | None = None) -> str:
    """`unit_content_fingerprint` with the per-file fingerprint and hf identity functions given (the planner
    memoises both)."""
    if isinstance(source, HFDatasetSource):
        files = []
        local = set(_files_of(source, dataclasses.replace(unit, first_row=None)))  # the local files that exist
        for f in source.data_files or []:
            files.append([f, fingerprint_file(f) if f in local else None])
        payload: dict = {
            "name": source.name,
            "config": source.config,
            "split": source.split,
            "revision": source.revision,
            "data_files": files,
        }
        if unit.first_row is not None:
            payload["part"] = [fingerprint_file(unit.url), unit.first_row, unit.start, unit.end]
        payload.update(identity() if identity is not None else _hf_identity(source))  # {} when pinned and local
        return "hf:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    fingerprint = fingerprint_file(unit.url)
    if unit.start is None and unit.end is None:
        return fingerprint
    return f"{fingerprint}[{unit.start}:{unit.end}]"


def read_unit(source: SourceSpec, unit: WorkUnit) -> Iterator[Document | Dropped]:
    """Yield every record of the unit (Documents and Dropped), stopping after `max_documents` Documents.

    Raises `ReaderError` after the last complete record when the input is truncated or corrupt.
    """
    if source.kind != unit.kind:
        raise ValueError(f"work unit of kind {unit.kind!r} given a {source.kind!r} source")
    if source.kind == "wikipedia":
        from tasks.sources.wikipedia import read_wikipedia as reader
    elif source.kind == "common_crawl":
        from tasks.sources.common_crawl import read_common_crawl as reader
    elif source.kind == "books":
        from tasks.sources.books import read_book as reader
    elif source.kind == "hf_dataset":
        from tasks.sources.hf_dataset import read_hf_dataset as reader
    else:  # pragma: no cover - the spec's Literal makes this unreachable
        raise ValueError(f"unknown source kind {source.kind!r}")
    limit = source.max_documents
    n_docs = 0
    for record in reader(source, unit):  # type: ignore[arg-type]
        yield record
        if isinstance(record, Document):
            n_docs += 1
            if limit is not None and n_docs >= limit:
                return

