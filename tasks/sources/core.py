"""Readers: turn a source spec into work units, and a work unit into Documents and Dropped records.

Pure logic (no Prefect/Ray/MLflow). The flow calls `plan_units` once per source, maps one task per
`WorkUnit`, and each task iterates `read_unit`. A unit is a whole input file or a byte range of a
large splittable one (uncompressed XML, multistream bz2), so the same dump can be read by many workers
without any of them holding it in memory.

Every record a reader sees is either a `Document` or a `Dropped(id, reason)`; records that are not
documents at all (WARC request/metadata/warcinfo records, the MediaWiki siteinfo header) are skipped.
On a corrupt or truncated input a reader first yields every complete record before the damage and
then raises `ReaderError` with a message that says where it stopped.

Kinds live in their own modules: `wikipedia.py`, `common_crawl.py`, `books.py`, `hf_dataset.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from data_specs.sources import CommonCrawlSource, HFDatasetSource, SourceSpec, WikipediaSource
from tasks.common.documents import Document, Dropped
from tasks.common.io import content_fingerprint, expand_paths, file_size, open_decompressed


class ReaderError(Exception):
    """An input that was read only in part: complete records were yielded before this was raised."""


@dataclass(frozen=True, slots=True)
class WorkUnit:
    """One input file, or the byte range [start, end) of a large splittable one."""

    source_index: int
    kind: str
    url: str
    start: int | None = None
    end: int | None = None

    @property
    def label(self) -> str:
        """Short human label: the file's basename, plus the byte range when there is one."""
        if self.url.startswith("hf://"):
            return self.url.removeprefix("hf://")
        path = urlsplit(self.url).path if "://" in self.url else self.url
        name = os.path.basename(path.rstrip("/")) or self.url
        if self.start is None and self.end is None:
            return name
        return f"{name}[{self.start or 0}:{'' if self.end is None else self.end}]"


def plan_units(source: SourceSpec, source_index: int) -> tuple[list[WorkUnit], list[tuple[str, str]]]:
    """Expand the source's paths into work units; returns (units, problems).

    `problems` are `(pattern_or_url, error)` pairs for the manifest: a missing file, a glob matching
    nothing. Wikipedia files larger than `split_bytes` become byte-range units (uncompressed XML and
    bz2, where each unit owns the bz2 streams starting in its range); everything else is one unit per file.
    """
    if isinstance(source, HFDatasetSource):
        url = f"hf://{source.name}{'/' + source.config if source.config else ''}:{source.split}"
        return [WorkUnit(source_index, source.kind, url)], []
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
    return units, problems


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
    file also contributes its content fingerprint, so editing it invalidates the cache.
    """
    if isinstance(source, HFDatasetSource):
        files = []
        for f in source.data_files or []:
            local = "://" not in f or f.startswith("file://")
            files.append([f, content_fingerprint(f) if local and os.path.exists(f.removeprefix("file://")) else None])
        payload = {
            "name": source.name,
            "config": source.config,
            "split": source.split,
            "revision": source.revision,
            "data_files": files,
        }
        return "hf:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    fingerprint = content_fingerprint(unit.url)
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

