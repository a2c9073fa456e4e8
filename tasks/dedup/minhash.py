"""Batch MinHash signatures, bit-identical to datasketch 2.0's default ("affine32") scheme.

Input: a batch of texts. Output: a `(N, num_perm)` uint32 array, row i equal to the `hashvalues` of
`datasketch.MinHash(num_perm, seed, scheme="affine32", hashfunc=hash_shingle)` fed document i's
shingles (`tests/unit/test_dedup_minhash.py` checks this bit for bit).

Why affine32: it is datasketch 2.0's default, and it is all uint32 arithmetic, where the hardware
wraparound *is* the modulo 2^32. One shingle hash h becomes `a_k * fmix32(h) + b_k  (mod 2^32)` for
each permutation k, with `a_k` odd (a bijection), so the permutation step introduces no collisions.
The legacy scheme, `(a*h + b) mod (2^61-1)` in uint64, wraps modulo 2^64 before the mod (datasketch
#99/#212) and needs 8-byte intermediates; we do not replicate it.

How a batch is hashed (all vectorised over the whole batch, Python only per document and per
*distinct* token):
1. per document: NFKC + casefold, then `\\w+` runs (Python's unicode-aware regex);
2. all tokens of the batch go into one Arrow array; `dictionary_encode` finds the distinct tokens at
   C speed, and each distinct token is hashed once with xxh3_64 -> T (total_tokens,) uint64;
3. a word n-gram starting at token k is `G_k = sum_j C_j * T[k+j]  (mod 2^64)` with fixed odd
   constants C_j (order-sensitive), computed as n shifted multiply-adds over the concatenated
   array; only starts whose n-gram stays inside one document are kept. A document with
   0 < words < n has one shingle: the same sum over its words. The 32-bit shingle hash is the top
   half of `fmix64(G)`;
4. permutations: `(P, S_chunk)` uint32 products, reduced per document with `np.minimum.reduceat`
   over shingle offsets, in chunks of about `CHUNK_BYTES`, so memory stays bounded whatever the
   batch size (a chunk may cut a document: partial minima are folded in with `np.minimum`).

Shingle hashes depend only on the text (not on the batch or on `seed`), so signatures computed on
different workers and batches are comparable.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from itertools import chain

import datasketch
import numpy as np
import pyarrow as pa
import xxhash

from data_specs.dedup import MinHashSpec

SCHEME = "affine32"
"""The datasketch permutation scheme the signatures follow (datasketch 2.0's default)."""

EMPTY = np.uint32(0xFFFFFFFF)
"""Signature value of a document without shingles (datasketch's initial hash value)."""

CHUNK_BYTES = 8 * 1024 * 1024
"""Size of one (P, S_chunk) uint32 permutation block. (P, S) with the min-reduction running along
contiguous rows measured ~10x faster than (S, P) here; blocks of a few MB stay in cache."""

_WORD = re.compile(r"\w+")
_M64 = (1 << 64) - 1
# n-gram mixing constants: odd, well-mixed 64-bit values (splitmix64 of 1, 2, ...), fixed forever:
# changing them changes every signature.


def _splitmix64(x: int) -> int:
    x = (x + 0x9E3779B97F4A7C15) & _M64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _M64
    return x ^ (x >> 31)


_MAX_NGRAM = 64
_NGRAM_C = np.array([_splitmix64(j + 1) | 1 for j in range(_MAX_NGRAM)], dtype=np.uint64)


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection), element-wise on uint64 arrays."""
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xFF51AFD7ED558CCD)
    h = h ^ (h >> np.uint64(33))
    h = h * np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finaliser; datasketch's affine32 pre-mix (`datasketch.minhash._fmix`)."""
    h = h ^ (h >> np.uint32(16))
    h = h * np.uint32(0x85EBCA6B)
    h = h ^ (h >> np.uint32(13))
    h = h * np.uint32(0xC2B2AE35)
    return h ^ (h >> np.uint32(16))


def words(text: str) -> list[str]:
    """The shingle tokens of a text: `\\w+` runs of the NFKC-normalised, casefolded text."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def hash_shingle(tokens: Sequence[str]) -> int:
    """Scalar reference of the 32-bit hash of one shingle (a tuple of words); usable as a datasketch hashfunc."""
    g = 0
    for j, tok in enumerate(tokens):
        g = (g + int(_NGRAM_C[j]) * xxhash.xxh3_64_intdigest(tok.encode("utf-8"))) & _M64
    return int(_fmix64(np.array([g], dtype=np.uint64))[0] >> np.uint64(32))


def shingles(text: str, ngram: int) -> list[tuple[str, ...]]:
    """Scalar reference of a document's shingles: word n-grams; one shingle of all words if shorter."""
    toks = words(text)
    if not toks:
        return []
    if len(toks) < ngram:
        return [tuple(toks)]
    return [tuple(toks[k : k + ngram]) for k in range(len(toks) - ngram + 1)]


def shingle_hashes(texts: Sequence[str], ngram: int) -> tuple[np.ndarray, np.ndarray]:
    """All shingle hashes of a batch: (hashes (S,) uint32, doc offsets (N+1,) int64), doc i = hashes[off[i]:off[i+1]]."""
    if not 1 <= ngram <= _MAX_NGRAM:
        raise ValueError(f"ngram must be in [1, {_MAX_NGRAM}], got {ngram}")
    toks_per_doc = [words(t) for t in texts]
    lens = np.fromiter((len(t) for t in toks_per_doc), dtype=np.int64, count=len(toks_per_doc))  # (N,)
    tok_off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(lens, out=tok_off[1:])
    n_tok = int(tok_off[-1])
    if n_tok == 0:
        return np.zeros(0, dtype=np.uint32), np.zeros(len(lens) + 1, dtype=np.int64)

    # 2. one xxh3_64 per distinct token of the batch
    enc = pa.array(chain.from_iterable(toks_per_doc), type=pa.string(), size=n_tok).dictionary_encode()
    uniq = np.fromiter(
        (xxhash.xxh3_64_intdigest(b) for b in enc.dictionary.cast(pa.binary()).to_pylist()),
        dtype=np.uint64,
        count=len(enc.dictionary),
    )
    T = uniq[enc.indices.to_numpy(zero_copy_only=False)]  # (n_tok,) uint64

    # shingles per doc: L-n+1 full n-grams, 1 for a short non-empty doc, 0 for an empty one
    full = lens >= ngram
    short = (lens > 0) & ~full
    n_sh = np.where(full, lens - ngram + 1, short.astype(np.int64))
    sh_off = np.zeros(len(lens) + 1, dtype=np.int64)
    np.cumsum(n_sh, out=sh_off[1:])
    G = np.zeros(int(sh_off[-1]), dtype=np.uint64)  # (S,) n-gram sums

    # 3a. full n-grams: shifted multiply-adds over the concatenated tokens, then keep in-doc starts
    if full.any() and n_tok >= ngram:
        n_start = n_tok - ngram + 1
        acc = T[:n_start] * _NGRAM_C[0]
        for j in range(1, ngram):
            acc += T[j : j + n_start] * _NGRAM_C[j]
        cnt = n_sh[full]
        # start token index of each kept n-gram: doc token offset + position inside the doc
        within = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        starts = np.repeat(tok_off[:-1][full], cnt) + within
        dest = np.repeat(sh_off[:-1][full], cnt) + within
        G[dest] = acc[starts]

    # 3b. short docs: one shingle = weighted sum of all their words
    if short.any():
        cnt = lens[short]
        within = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        terms = T[np.repeat(tok_off[:-1][short], cnt) + within] * _NGRAM_C[within]
        G[sh_off[:-1][short]] = np.add.reduceat(terms, np.cumsum(cnt) - cnt)

    return (_fmix64(G) >> np.uint64(32)).astype(np.uint32), sh_off


class MinHasher:
    """Computes datasketch-compatible (affine32) MinHash signatures for whole batches of texts."""

    def __init__(self, spec: MinHashSpec):
        self.spec = spec
        # The permutations come from datasketch itself, so any change there shows up in the tests.
        ref = datasketch.MinHash(num_perm=spec.num_perm, seed=spec.seed, scheme=SCHEME)
        self.a = np.ascontiguousarray(ref.permutations[0], dtype=np.uint32)  # (P,) odd
        self.b = np.ascontiguousarray(ref.permutations[1], dtype=np.uint32)  # (P,)
        self.chunk = max(1024, CHUNK_BYTES // (4 * spec.num_perm))  # shingles per permutation block

    def signatures(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), num_perm) uint32 MinHash signatures, computed in bulk for the whole batch."""
        P = self.spec.num_perm
        out = np.full((len(texts), P), EMPTY, dtype=np.uint32)  # (N, P)
        h, off = shingle_hashes(texts, self.spec.ngram)
        if h.size == 0:
            return out
        mixed = _fmix32(h)  # (S,) datasketch's pre-mix
        nonempty = np.flatnonzero(off[1:] > off[:-1])  # docs with >= 1 shingle
        d_start, d_end = off[:-1][nonempty], off[1:][nonempty]
        a, b = self.a[:, None], self.b[:, None]  # (P, 1)
        buf = np.empty((P, min(self.chunk, h.size)), dtype=np.uint32)
        for c0 in range(0, h.size, self.chunk):
            c1 = min(c0 + self.chunk, h.size)
            blk = buf[:, : c1 - c0]
            np.multiply(a, mixed[None, c0:c1], out=blk)  # (P, S_chunk), wraps mod 2^32
            blk += b
            first = int(np.searchsorted(d_end, c0, side="right"))  # first doc ending after c0
            last = int(np.searchsorted(d_start, c1, side="left"))  # docs starting before c1
            seg = np.maximum(d_start[first:last], c0) - c0
            mins = np.minimum.reduceat(blk, seg, axis=1)  # (P, docs in chunk)
            rows = nonempty[first:last]
            out[rows] = np.minimum(out[rows], mins.T)
        return out


def to_lean_minhash(signature: np.ndarray, spec: MinHashSpec) -> datasketch.LeanMinHash:
    """A datasketch LeanMinHash for one signature row (insertable into `datasketch.MinHashLSH`)."""
    if signature.shape != (spec.num_perm,):
        raise ValueError(f"signature shape {signature.shape} != ({spec.num_perm},)")
    return datasketch.LeanMinHash(seed=spec.seed, hashvalues=np.asarray(signature, dtype=np.uint32), scheme=SCHEME)
