"""Assemble the curated corpus from finished units: global dedup, balanced shard plan, manifest, data card.

Dedup runs over all units at once (all sources), reading only the small dedup columns (`id`,
`source`, `exact_key`, `minhash`, `n_bytes`), and the text only of rows in ambiguous LSH pairs. Its
decisions depend only on the documents, so the corpus is the same for any worker count.

Dedup streams (`deduplicate_units`): pass 1 reads one unit at a time, keeps compact arrays (ids as one
Arrow array, source/language codes, (n, 16) exact keys, text bytes: about 60 bytes per document plus the
ids) and spills each unit's signatures and its 18 LSH band keys to local scratch files; pass 2
(`tasks.dedup.core.decide`) loads one band's keys at a time (8 bytes per document) and reads only the
signature rows of the pairs it verifies; ambiguous pairs of all bands are settled together, and their
texts are read once per run, row group by row group (`tasks.dedup.exact_verify`), not once per band or
block. Disk: 4 * num_perm + 8 * bands bytes per document in the scratch folder, removed after.
The survivors (`KeptRows`: unit, row and text bytes as arrays, 20 bytes per kept document) are the
interface to the shard plan. With the Ray engine, both passes are Ray Data jobs instead
(`tasks.corpus.ray_decide`, near dedup in `tasks.corpus.ray_dedup`): nothing is spilled on this node.

Ids must be unique across the whole corpus (every source, wiki and folder): `removed.parquet` maps
an id to its survivor, and shards are keyed by id. Dedup checks this once the ids are read (Arrow's
distinct count; `tasks.corpus.ids.id_clashes` runs only when an id repeats). Two different documents under
one id is a spec or reader problem, never a duplicate to drop: the inputs involved are left out and reported
as failed inputs (`DedupOutcome.failed_units`, `tasks.corpus.ids`), the rest of the corpus ships. The one
exception is the same document read twice (same id, same text: two overlapping slices of
one crawl file, one book listed under two patterns): that is a true exact duplicate, and exact dedup keeps
its first copy (`removed.parquet` then maps the id to itself).

With the Ray engine the whole decision runs as Ray Data jobs (`tasks.corpus.ray_decide`): the driver holds
per-unit figures only, and the survivors are per-unit files (`KeptRowFiles`) that the shard plan reads unit by
unit.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from data_specs import DedupSpec
from tasks.corpus.ids import DuplicateDocumentId, clash_errors, id_clashes
from tasks.dedup.core import REASON_CODES, Decisions, decide
from tasks.dedup.exact_verify import ExactJaccard
from tasks.corpus.output import is_shard_name
from tasks.corpus.unit_files import has_band_keys, load_texts, fixed_list_matrix
from tasks.dedup.lsh import band_key_matrix
from tasks.dedup.minhash import EMPTY
from tasks.shards.core import AtomicParquetWriter, KeptRowFiles, KeptRows, ShardPlan, plan_balanced_shards
from tasks.units.core import UnitResult

REMOVED_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("reason", pa.string(), nullable=False),
        pa.field("survivor_id", pa.string(), nullable=False),
    ]
)


@dataclass(frozen=True)
class DedupOutcome:
    """Global dedup decisions: which unit rows survive, and counts for the manifest."""

    kept_rows: KeptRows | KeptRowFiles           # (unit path, row, text bytes) of each survivor, in corpus order
    removed: dict[str, int]                      # reason -> documents removed
    clusters: int
    cluster_sizes: dict[int, int]
    candidate_pairs: int
    verified_pairs: int
    exact_checked: int                           # ambiguous pairs settled by exact Jaccard from the text
    removed_path: str | None
    kept_by_source: dict[str, int]
    kept_languages: dict[str, int]
    engine: str = "local"                        # where near dedup ran: "local" (this node) or "ray" (Ray Data)
    text_bytes_read: int = 0                     # text bytes exact verification read (whole row groups) ...
    text_bytes_wanted: int = 0                   # ... and the bytes of the texts it needed: read/wanted stays O(1)
    failed_units: dict[str, str] = field(default_factory=dict)  # unit path -> error: left out for an id clash


def unit_order(results: Sequence[UnitResult]) -> list[UnitResult]:
    """Corpus order: source order in the spec, then input URL, then byte range."""
    return sorted(results, key=lambda r: (r.source_index, r.url, r.start or 0))


def deduplicate_units(results: Sequence[UnitResult], spec: DedupSpec, work_dir: str, engine: str = "local",
                      ray_rows_per_group: int | None = None) -> DedupOutcome:
    """Global exact + near dedup over every unit's rows; writes the removed ids with their survivors.

    engine="local" streams on this node: pass 1 reads one unit's small columns at a time into compact arrays
    and spills its signatures and LSH band keys to local scratch files; pass 2 (`decide`) loads one band's
    keys at a time and reads only the signature rows it verifies (see `_CorpusColumns` for the memory bound).
    engine="ray" runs every step as Ray Data jobs on the Ray this process is connected to
    (`tasks.corpus.ray_decide`): nothing on this node grows with the corpus; the decisions are the same.
    Units holding an id clash are left out either way (`failed_units`, see `tasks.corpus.ids`).
    """
    if engine not in ("local", "ray"):
        raise ValueError(f"dedup engine {engine!r}: use 'local' or 'ray'")
    ordered = [r for r in unit_order(results) if r.kept]
    if engine == "ray":
        from tasks.corpus.ray_decide import ROWS_PER_GROUP, deduplicate_ray

        return deduplicate_ray(ordered, spec, work_dir, ray_rows_per_group or ROWS_PER_GROUP)
    with _scratch_dir(work_dir) as scratch:
        corpus = _read_corpus(ordered, spec, scratch)
        failed: dict[str, str] = {}
        if not corpus.ids_unique():
            unit_of = np.repeat(np.arange(len(ordered)), corpus.rows_per_unit)
            keys = pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), len(corpus.ids),
                                                        [None, pa.py_buffer(corpus.exact_keys.tobytes())])
            failed = clash_errors(id_clashes(corpus.ids, unit_of, keys), ordered)
        if failed:  # read again without the inputs left out (an id clash is rare: the simple way is fine)
            ordered = [r for r in ordered if r.path not in failed]
            corpus = _read_corpus(ordered, spec, scratch)
        exact = ExactJaccard(lambda rows: load_texts(corpus.paths, corpus.starts, rows), spec.minhash.ngram,
                             scratch_dir=scratch)
        decision = decide(corpus.priority_order(spec.source_priority), corpus.exact_groups(), corpus.has_shingles,
                          corpus.band_keys, corpus.signature_rows, spec, exact_jaccard=exact)
    return replace(_outcome(corpus, decision, work_dir), engine=engine, failed_units=failed,
                   text_bytes_read=exact.text_bytes_read, text_bytes_wanted=exact.text_bytes_wanted)


@dataclass
class _CorpusColumns:
    """The dedup columns of every unit row in corpus order, compact (about 60 bytes per row plus the ids).

    ids: one Arrow string array; sources and languages: small integer codes into `vocab`; exact keys:
    an (n, 16) uint8 array; text bytes: int64. The (n, num_perm) signatures and each band's (n,) uint64
    keys live in local scratch files (`signatures.npy`, `band-<b>.npy`): one band is loaded at a time, and
    only the signature rows of the pairs being verified are read (`pread`, no memory map, so the pages stay
    in the page cache rather than in this process's resident memory).
    """

    paths: list[str]              # unit file per unit
    starts: np.ndarray            # (units + 1,) first corpus row of each unit, then n
    ids: pa.Array
    source: np.ndarray            # (n,) int32 code into vocab
    lang: np.ndarray              # (n,) int32 code into vocab ("unknown" for a missing or empty language)
    vocab: list[str]
    exact_keys: np.ndarray        # (n, 16) uint8
    n_bytes: np.ndarray           # (n,) int64
    has_shingles: np.ndarray      # (n,) bool: the signature is not EMPTY
    signatures: _NpyRows | None   # (n, P) uint32 on disk (None: not spilled, the Ray engine reads unit files)
    band_files: list[str]

    @property
    def rows_per_unit(self) -> np.ndarray:
        return np.diff(self.starts)

    def ids_unique(self) -> bool:
        return len(self.ids) == 0 or pc.count_distinct(self.ids).as_py() == len(self.ids)

    def priority_order(self, priority: Sequence[str]) -> np.ndarray:
        """Rows sorted by (source priority, id, row): Arrow sorts strings by UTF-8 bytes, i.e. by code point,
        as Python compares str."""
        prio = {kind: i for i, kind in enumerate(priority)}
        rank = np.asarray([prio.get(v, len(prio)) for v in self.vocab] or [0], dtype=np.int32)[self.source]
        table = pa.table({"p": rank, "id": self.ids, "row": np.arange(len(self.ids), dtype=np.int64)})
        keys = [("p", "ascending"), ("id", "ascending"), ("row", "ascending")]
        return pc.sort_indices(table, sort_keys=keys).to_numpy().astype(np.int64)

    def exact_groups(self) -> np.ndarray:
        """(n,) label per row, equal for equal exact keys."""
        if len(self.exact_keys) == 0:
            return np.zeros(0, dtype=np.int64)
        keys = np.ascontiguousarray(self.exact_keys).view(np.dtype((np.void, 16))).ravel()
        return np.unique(keys, return_inverse=True)[1].ravel().astype(np.int64)

    def band_keys(self, band: int) -> np.ndarray:
        return np.load(self.band_files[band])

    def signature_rows(self, rows: np.ndarray) -> np.ndarray:
        return self.signatures.take(rows)


@contextmanager
def _scratch_dir(work_dir: str) -> Iterator[str]:
    """A local scratch folder for the spilled signatures and band keys, removed afterwards:
    under `work_dir/dedup/` when the work dir is local, else in the system temp folder."""
    fs, path = url_to_fs(work_dir)
    parent = None
    if "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)):
        parent = os.path.join(path, "dedup")
        os.makedirs(parent, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="spill-", dir=parent) as scratch:
        yield scratch
    if parent and not os.listdir(parent):
        os.rmdir(parent)


def _read_corpus(ordered: Sequence[UnitResult], spec: DedupSpec, scratch: str, spill: bool = True) -> _CorpusColumns:
    """Pass 1: one unit at a time, keep the small columns and (`spill`) spill signatures and band keys."""
    mh = spec.minhash
    counts = []
    for result in ordered:
        fs, path = url_to_fs(result.path)
        counts.append(pq.read_metadata(path, filesystem=fs).num_rows)
    starts = np.r_[0, np.cumsum(counts, dtype=np.int64)].astype(np.int64)
    n = int(starts[-1])
    sig_file = os.path.join(scratch, "signatures.npy")
    band_files = [os.path.join(scratch, f"band-{b}.npy") for b in range(mh.bands if mh.enabled and spill else 0)]
    spills = [_NpySpill(sig_file, np.uint32, (n, mh.num_perm))] if spill else []
    spills += [_NpySpill(f, np.uint64, (n,)) for f in band_files]
    vocab: dict[str, int] = {}
    ids, source, lang = [], np.zeros(n, np.int32), np.zeros(n, np.int32)
    exact_keys, n_bytes, has_shingles = np.zeros((n, 16), np.uint8), np.zeros(n, np.int64), np.zeros(n, bool)
    columns = ["id", "source", "lang", "exact_key", "minhash", "n_bytes"]
    for u, result in enumerate(ordered):
        fs, path = url_to_fs(result.path)
        stored_keys = band_files and has_band_keys(pq.read_schema(path, filesystem=fs), mh)
        table = pq.read_table(path, columns=columns + ["band_keys"] * bool(stored_keys), filesystem=fs)
        lo, hi = int(starts[u]), int(starts[u + 1])
        ids.append(table["id"].combine_chunks())
        source[lo:hi] = _codes(table["source"], vocab)
        lang[lo:hi] = _codes(_language(table["lang"]), vocab)
        keys = table["exact_key"].combine_chunks()
        if hi > lo:
            data = np.frombuffer(keys.buffers()[1], np.uint8, (hi - lo) * 16, keys.offset * 16)
            exact_keys[lo:hi] = data.reshape(-1, 16)
        n_bytes[lo:hi] = table["n_bytes"].to_numpy()
        sig = fixed_list_matrix(table["minhash"])
        has_shingles[lo:hi] = ~np.all(sig == EMPTY, axis=1)
        if spill:
            spills[0].append(sig)
        if band_files:
            keys = (fixed_list_matrix(table["band_keys"]) if stored_keys
                    else band_key_matrix(sig, mh.bands, mh.rows))
            for b, band_spill in enumerate(spills[1:]):
                band_spill.append(keys[:, b])
        del table, sig
    for spill in spills:
        spill.close()
    return _CorpusColumns(
        paths=[r.path for r in ordered], starts=starts,
        ids=pa.concat_arrays(ids) if ids else pa.array([], pa.string()),
        source=source, lang=lang, vocab=list(vocab), exact_keys=exact_keys, n_bytes=n_bytes,
        has_shingles=has_shingles, signatures=_NpyRows(sig_file) if spill else None,
        band_files=band_files,
    )


class _NpySpill:
    """Write an .npy file of known shape by appending blocks of rows with plain file writes (the pages go to
    the page cache, not to this process's resident memory as a writable memory map's would)."""

    def __init__(self, path: str, dtype: type, shape: tuple[int, ...]):
        self.file = open(path, "wb")  # noqa: SIM115 - closed by close()
        np.lib.format.write_array_header_1_0(self.file, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                         "shape": shape})
        self.dtype = dtype

    def append(self, rows: np.ndarray) -> None:
        self.file.write(np.ascontiguousarray(rows, dtype=self.dtype).tobytes())

    def close(self) -> None:
        self.file.close()


class _NpyRows:
    """Rows of a 2-d .npy file by index, read with one `pread` per run of consecutive rows."""

    def __init__(self, path: str):
        with open(path, "rb") as f:
            np.lib.format.read_magic(f)
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)  # as `_NpySpill` writes it
            self.offset = f.tell()
        self.path, self.shape, self.dtype = path, shape, dtype
        self.row_bytes = int(np.prod(shape[1:])) * dtype.itemsize

    def take(self, rows: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(np.asarray(rows, dtype=np.int64), return_inverse=True)
        out = np.empty((uniq.size, *self.shape[1:]), dtype=self.dtype)
        buf = memoryview(out.reshape(-1).view(np.uint8))
        starts = np.flatnonzero(np.r_[True, np.diff(uniq) != 1])
        ends = np.r_[starts[1:], uniq.size]
        fd = os.open(self.path, os.O_RDONLY)
        try:
            for a, b in zip(starts.tolist(), ends.tolist()):
                want = (b - a) * self.row_bytes
                got = os.preadv(fd, [buf[a * self.row_bytes : b * self.row_bytes]],
                                self.offset + int(uniq[a]) * self.row_bytes)
                if got != want:
                    raise OSError(f"short read from {self.path}: {got} of {want} bytes")
        finally:
            os.close(fd)
        return out[inverse.ravel()]


def _language(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The language as the data card counts it: a missing or empty language is "unknown"."""
    return pc.if_else(pc.equal(column, ""), pa.scalar(None, column.type), column).fill_null("unknown")


def _codes(column: pa.ChunkedArray, vocab: dict[str, int]) -> np.ndarray:
    """Integer codes of a string column into `vocab` (extended with new values): a few distinct kinds."""
    encoded = column.combine_chunks().dictionary_encode()
    mapping = np.asarray([vocab.setdefault(v, len(vocab)) for v in encoded.dictionary.to_pylist()] or [0], np.int32)
    return mapping[encoded.indices.to_numpy(zero_copy_only=False)]


def _outcome(corpus: _CorpusColumns, decision: Decisions, work_dir: str) -> DedupOutcome:
    """Write `removed.parquet` (sorted by id) and summarise the survivors for the manifest."""
    names = {code: name for name, code in REASON_CODES.items()}
    removed_rows = np.flatnonzero(decision.reason)
    removed_path = None
    if removed_rows.size:
        by_id = pc.sort_indices(pa.table({"id": corpus.ids.take(removed_rows), "row": removed_rows}),
                                sort_keys=[("id", "ascending"), ("row", "ascending")]).to_numpy()
        rows = removed_rows[by_id]
        removed_path = f"{work_dir.rstrip('/')}/dedup/removed.parquet"
        writer = AtomicParquetWriter(removed_path, REMOVED_SCHEMA)
        writer.write(
            pa.table(
                {
                    "id": corpus.ids.take(rows),
                    "reason": np.asarray([names[c] for c in (1, 2)], dtype=object)[decision.reason[rows] - 1],
                    "survivor_id": corpus.ids.take(decision.final[rows]),
                },
                schema=REMOVED_SCHEMA,
            ),
            row_group_rows=65536,
        )
        writer.commit()
    removed_counts = Counter(dict(zip(*np.unique(decision.reason[removed_rows], return_counts=True))))
    survivors = np.flatnonzero(decision.reason == 0)
    unit_of = np.searchsorted(corpus.starts, survivors, side="right") - 1
    kept = KeptRows(tuple(corpus.paths), unit_of.astype(np.int32), survivors - corpus.starts[unit_of],
                    corpus.n_bytes[survivors])
    return DedupOutcome(
        kept_rows=kept,
        removed={names[int(c)]: int(k) for c, k in sorted(removed_counts.items(), key=lambda x: names[int(x[0])])},
        clusters=decision.clusters,
        cluster_sizes=dict(sorted(decision.cluster_sizes.items())),
        candidate_pairs=decision.candidate_pairs,
        verified_pairs=decision.verified_pairs,
        exact_checked=decision.exact_checked,
        removed_path=removed_path,
        kept_by_source=dict(sorted(_count(corpus.source[survivors], corpus.vocab))),
        kept_languages=dict(_most_common(corpus.lang[survivors], corpus.vocab)),
    )


def _count(codes: np.ndarray, vocab: Sequence[str]) -> list[tuple[str, int]]:
    """(value, count) of each code present."""
    counts = np.bincount(codes, minlength=len(vocab))
    return [(vocab[c], int(counts[c])) for c in np.flatnonzero(counts)]


def _most_common(codes: np.ndarray, vocab: Sequence[str]) -> list[tuple[str, int]]:
    """As `Counter(values).most_common()`: by count, descending, ties in order of first appearance."""
    values, first, counts = np.unique(codes, return_index=True, return_counts=True)
    ranked = sorted(zip(values.tolist(), first.tolist(), counts.tolist()), key=lambda v: (-v[2], v[1]))
    return [(vocab[v], c) for v, _, c in ranked]


def check_unique_ids(ids: Sequence[str], units: Sequence[UnitResult], rows_per_unit: Sequence[int],
                     exact_keys: Sequence[bytes]) -> None:
    """Raise `DuplicateDocumentId` for the first unit holding an id of two different documents (`exact_keys`
    differ); `ids` are the rows of `units` in order. The same id with the same text is one document read twice.
    (Dedup itself leaves such units out instead: `tasks.corpus.ids`.)"""
    unit_of = np.repeat(np.arange(len(units)), rows_per_unit)
    if errors := clash_errors(id_clashes(pa.array(ids, pa.string()), unit_of,
                                         pa.array(exact_keys, pa.binary(16))), units):
        raise DuplicateDocumentId(next(iter(errors.values())).removeprefix("DuplicateDocumentId: "))


def plan_shards(outcome: DedupOutcome, output: str, target_mb: float) -> list[ShardPlan]:
    """Balanced shard plan for the surviving rows under `output/data/`."""
    return plan_balanced_shards(outcome.kept_rows, f"{output.rstrip('/')}/data", int(target_mb * 1_000_000))


def read_manifest(output: str) -> dict | None:
    """The manifest at an output root, or None when there is none or it cannot be read.

    An unreadable manifest (cut short by a power loss, not JSON, not an object with a shard list) is what a
    missing one is: the run rebuilds the output and writes a new one, instead of failing on it every rerun.
    """
    fs, path = url_to_fs(f"{output.rstrip('/')}/manifest.json")
    try:
        with fs.open(path, "rb") as f:
            manifest = json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, ValueError) as exc:
        logging.getLogger(__name__).warning("manifest %s cannot be read (%s): rebuilding the output", path, exc)
        return None
    shards = manifest.get("shards") if isinstance(manifest, dict) else None
    if not isinstance(shards, list) or not all(isinstance(s, dict) and {"path", "bytes", "sha256"} <= s.keys()
                                               for s in shards):
        logging.getLogger(__name__).warning("manifest %s has no shard list: rebuilding the output", path)
        return None
    return manifest


def remove_stale_shards(output: str, keep: set[str]) -> list[str]:
    """Delete shard files under `output/data/` that the current plan does not name (a changed spec).

    Only lmpipe's own shard names (`shard-NNNNN-of-NNNNN.parquet`) are candidates: a user's file or folder
    in `data/` is never deleted, descended into, or a reason to fail (see `tasks.corpus.output`).
    """
    fs, data = url_to_fs(f"{output.rstrip('/')}/data")
    if not fs.isdir(data):
        return []
    files = {e["name"]: e["name"].rstrip("/").rsplit("/", 1)[-1] for e in fs.ls(data, detail=True)
             if e.get("type") == "file"}
    stale = [path for path, name in files.items() if is_shard_name(name) and name not in keep]
    for path in stale:
        fs.rm(path)
    return stale
