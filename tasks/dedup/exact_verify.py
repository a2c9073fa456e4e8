"""Exact Jaccard of shingle sets for the ambiguous LSH pairs, reading each wanted text once per call.

The pairs of one call (`ExactJaccard(lo, hi)`: all ambiguous pairs of a run on one node, or of one verify task
in the Ray Data job) name scattered rows. Settling them block by block and loading each block's texts re-read
every row group that held a wanted row once per block: at 1 M documents about 98% of the text per block, and
the number of blocks grows with n, so the reads grew as n². Here the distinct rows of all pairs are asked
for once, in ascending order, so a loader that reads by unit file and row group
(`tasks.corpus.unit_files.UnitTexts`) reads each row group once; each text becomes its sorted unique shingle
hashes as it arrives and is dropped. The sets are kept in memory up to `max_hashes` hashes (uint32: 64 MB by
default); the rest go to an unlinked scratch file and are read back (`pread`) for the blocks of pairs that
need them. The Jaccard of a pair depends only on its two texts, so the values equal the per-block cache's.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterable

import numpy as np

from tasks.dedup.minhash import shingle_hashes

__all__ = ["ExactJaccard"]

_SHINGLE_BATCH = 1024  # texts tokenised at once when building shingle sets (their tokens are Python objects)


class ExactJaccard:
    """Exact Jaccard of shingle sets for pairs of rows, reading text only for the rows asked about.

    `load_texts(rows)` gets the distinct rows of the call's pairs in ascending order and returns their texts in
    that order: a list, or an iterable that reads them lazily. When that iterable counts what it read
    (`bytes_read`, `bytes_wanted`: `tasks.corpus.unit_files.UnitTexts`), the counts are added to
    `text_bytes_read` and `text_bytes_wanted`. Memory: the in-memory sets (at most `max_hashes` uint32
    hashes), one batch of `_SHINGLE_BATCH` texts, and the spilled sets of one block of `block_pairs` pairs.
    """

    def __init__(self, load_texts: Callable[[np.ndarray], Iterable[str]], ngram: int,
                 max_hashes: int = 1 << 24, block_pairs: int = 1 << 13, scratch_dir: str | None = None):
        self.load_texts = load_texts
        self.ngram = ngram
        self.max_hashes = max_hashes
        self.block_pairs = block_pairs
        self.scratch_dir = scratch_dir  # where the unlinked spill file goes (None: the system temp folder)
        self.sets: dict[int, np.ndarray] = {}  # row -> sorted unique shingle hashes, in memory (during a call)
        self.cached_hashes = 0  # hashes in `sets`
        self.loads = 0  # calls to load_texts
        self.spilled_hashes = 0  # hashes written to the scratch file, over all calls
        self.text_bytes_read = 0
        self.text_bytes_wanted = 0
        self._spilled: dict[int, tuple[int, int]] = {}  # row -> (offset, hashes) in the scratch file
        self._spill = None

    def __call__(self, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        lo, hi = np.asarray(lo, dtype=np.int64), np.asarray(hi, dtype=np.int64)
        out = np.empty(lo.size, dtype=np.float64)
        if lo.size == 0:
            return out
        try:
            self._read_sets(np.unique(np.concatenate([lo, hi])))
            for b0 in range(0, lo.size, self.block_pairs):
                blo, bhi = lo[b0 : b0 + self.block_pairs], hi[b0 : b0 + self.block_pairs]
                spilled = self._load_spilled(np.unique(np.concatenate([blo, bhi])).tolist())
                for k, (a, b) in enumerate(zip(blo.tolist(), bhi.tolist()), start=b0):
                    sa = self.sets[a] if a in self.sets else spilled[a]
                    sb = self.sets[b] if b in self.sets else spilled[b]
                    inter = np.intersect1d(sa, sb, assume_unique=True).size
                    union = sa.size + sb.size - inter
                    out[k] = inter / union if union else 1.0
        finally:
            self._release()
        return out

    def _read_sets(self, rows: np.ndarray) -> None:
        """Every row's shingle set, from one `load_texts` call over all rows (ascending)."""
        self.loads += 1
        texts = self.load_texts(rows)
        order = rows.tolist()
        batch: list[str] = []
        done = 0
        for text in texts:
            batch.append(text)
            if len(batch) == _SHINGLE_BATCH:
                self._add(order[done : done + len(batch)], batch)
                done += len(batch)
                batch = []
        if batch:
            self._add(order[done : done + len(batch)], batch)
            done += len(batch)
        if done != len(order):
            raise ValueError(f"load_texts returned {done} texts for {len(order)} rows")
        self.text_bytes_read += int(getattr(texts, "bytes_read", 0))
        self.text_bytes_wanted += int(getattr(texts, "bytes_wanted", 0))

    def _add(self, rows: list[int], texts: list[str]) -> None:
        hashes, offsets = shingle_hashes(texts, self.ngram)
        for k, row in enumerate(rows):
            unique = np.unique(hashes[offsets[k] : offsets[k + 1]])
            if self.cached_hashes + unique.size <= self.max_hashes:
                self.sets[row] = unique
                self.cached_hashes += unique.size
                continue
            if self._spill is None:
                self._spill = tempfile.TemporaryFile(prefix="exact-jaccard-", dir=self.scratch_dir)  # noqa: SIM115
            self._spilled[row] = (self._spill.tell(), unique.size)
            self._spill.write(unique.astype(np.uint32, copy=False).tobytes())
            self.spilled_hashes += unique.size

    def _load_spilled(self, rows: list[int]) -> dict[int, np.ndarray]:
        """The spilled sets of `rows` (those not in memory), one `pread` each, in file order."""
        wanted = sorted((self._spilled[r], r) for r in rows if r in self._spilled)
        if not wanted:
            return {}
        self._spill.flush()
        fd = self._spill.fileno()
        out = {}
        for (offset, size), row in wanted:
            data = os.pread(fd, size * 4, offset)
            if len(data) != size * 4:
                raise OSError(f"short read from the exact-Jaccard scratch file: {len(data)} of {size * 4} bytes")
            out[row] = np.frombuffer(data, dtype=np.uint32)
        return out

    def _release(self) -> None:
        self.sets, self._spilled, self.cached_hashes = {}, {}, 0
        if self._spill is not None:
            self._spill.close()
            self._spill = None
