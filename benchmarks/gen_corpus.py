"""A generated corpus for scale runs: N documents of real paragraphs, with planted duplicates and a truth file.

    .venv/bin/python benchmarks/gen_corpus.py OUT_DIR --docs 100000 --seed 0 [--file-mb 32]

What it builds, deterministically from `--seed` (the same arguments give byte-identical files):
- A pool of real English paragraphs from ../shared/data (see its SOURCES.md): the five Project Gutenberg
  books (boilerplate stripped), the enwiki dump excerpt (wikitext converted by lmpipe's own reader) and the
  English lines of the Common Crawl WET sample. A paragraph enters the pool only if it would come through
  every default reader and filter unchanged: 20-250 words, one line ending in terminal punctuation, no markup
  characters (`{ [ < | & @ #`, wikitext quotes), no URL, e-mail or IP, no C4 policy/javascript phrase, at
  least 82% of its tokens alphabetic (lmpipe's `TextStats`, punctuation counted as in Gopher's rule), and
  fastText says English (score >= 0.8).
- N documents, each a random draw of distinct pool paragraphs (web 3-12, wiki 4-20, books 80-250). Document i
  is an *original* unless it is planted: an exact copy (`--exact-rate`), a near copy at shingle Jaccard about
  `--near-jaccard` (`--near-rate`), or a far copy at about `--far-jaccard` (`--far-rate`, a pair that must
  NOT be removed: it measures precision near the threshold). A planted copy's source is a random earlier
  original, in any format, so pairs cross formats. Near and far copies replace spaced words
  (`tasks.dedup.synthetic`'s construction: each replacement removes n shingles and adds n new ones), and the
  truth records the exact Jaccard of the two texts' word 5-gram shingles (equal to `tasks.dedup.synthetic.jaccard`).
- Files in the real input formats, rolled over at `--file-mb` of uncompressed bytes:
  `warc/part-CCCCC-NNN.warc.gz` (chunk C, file N; warcinfo, then a request and an HTML `response` per page,
  one gzip member per record, as Common Crawl writes them), `wet/part-CCCCC-NNN.warc.wet.gz` (warcinfo +
  `conversion` records), `wiki/part-CCCCC-NNN-pages-articles.xml` (MediaWiki export-0.10, uncompressed,
  so lmpipe can split it into byte ranges) and `books/bNNNNNNNNN.txt` (one Project Gutenberg-style book
  per file, as lmpipe reads them).
- `truth.parquet`: one row per planted copy: `id`, `of_id` (the original), `kind` (exact | near | far),
  `jaccard` (exact, of the generated texts); ids are the ids lmpipe gives those documents
  (`common_crawl/<record uuid>`, `wikipedia/enwiki/<page id>`, `books/<file stem>`).
- `corpus.json`: the arguments, counts per format and kind, the curate `sources` to put in a spec, and the
  generation time. It is written last: a folder without it is incomplete.

Speed: about 6,400 documents per CPU second on one core here (30 k documents, 3.6 KB average; the gzip of
WARC/WET records, the HTML/XML escaping and the exact Jaccard of planted pairs dominate), short of the 20 k
aimed at; `--jobs N` writes fixed chunks of CHUNK_DOCS documents in N processes, with the same bytes. The
paragraph pool takes a few seconds (language ID). 1 M documents take about 3.6 GB of disk.
Exits with status 2 and a message when ../shared/data is absent.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import textwrap
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from xml.sax.saxutils import escape

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DATA = REPO.parent / "shared" / "data"
ENWIKI = DATA / "wikipedia" / "enwiki-2016-pages-articles1-shortened.xml.bz2"
WET_SAMPLE = DATA / "commoncrawl" / "CC-MAIN-20201129214615-20201130004615-00404.warc.wet.first319records.gz"

FORMATS = ("warc", "wet", "wiki", "books")
DEFAULT_MIX = {"warc": 0.2, "wet": 0.5, "wiki": 0.299, "books": 0.001}
# Paragraphs per document, [low, high] inclusive: web pages and articles are a few paragraphs, books long.
PARAS = {"warc": (3, 12), "wet": (3, 12), "wiki": (4, 20), "books": (80, 250)}
NGRAM = 5  # the shingle size of lmpipe's default MinHash spec; the truth's Jaccard uses it
WIKI_DB = "enwiki"

_BANNED = re.compile(r"[{}\[\]<>|&@#\\]|''|__|\.\.\.|…|https?:|www\.|\d+\.\d+\.\d+|javascript|lorem ipsum"
                     r"|terms of use|privacy policy|cookie", re.I)
_END = (".", "?", "!", '"', "'")
_START_BAD = ("-", "•", ":", ";", "*", "=", "!")
# Gopher's alpha-words ratio (tokens with a letter / all tokens, punctuation counted as datatrove does) must
# be >= 0.8 for a document; a document's ratio lies between its paragraphs', so each keeps a small margin.
MIN_ALPHA_TOKENS = 0.82


class NoData(RuntimeError):
    """../shared/data (the real paragraphs) is absent."""


# ------------------------------------------------------------------------------------------------ pool
def good_paragraph(p: str) -> bool:
    """A paragraph every default reader and filter passes through unchanged (see the module docstring)."""
    n = p.count(" ") + 1
    if not (20 <= n <= 250 and p.endswith(_END) and not p.startswith(_START_BAD) and not p.isupper()
            and _BANNED.search(p) is None):
        return False
    from tasks.clean.text_stats import TextStats

    stats = TextStats(p)
    return stats.alpha_words >= MIN_ALPHA_TOKENS * len(stats.tokens)


def _raw_paragraphs(data: Path) -> Iterator[str]:
    """Every candidate paragraph of the books, the enwiki excerpt and the WET sample, as one line each."""
    from data_specs.sources import CommonCrawlSource, WikipediaSource
    from tasks.common.documents import Document
    from tasks.sources.books import decode_book, strip_gutenberg
    from tasks.sources.core import WorkUnit, read_unit

    for book in sorted((data / "books").glob("*.txt")):
        body, _ = strip_gutenberg(decode_book(book.read_bytes()))
        yield from (" ".join(block.split()) for block in re.split(r"\n\s*\n", body))
    sources = []
    if ENWIKI.exists():
        sources.append((WikipediaSource(kind="wikipedia", paths=[str(ENWIKI)]), str(ENWIKI)))
    if WET_SAMPLE.exists():
        sources.append((CommonCrawlSource(kind="common_crawl", paths=[str(WET_SAMPLE)]), str(WET_SAMPLE)))
    for source, path in sources:
        for rec in read_unit(source, WorkUnit(0, source.kind, path)):
            if isinstance(rec, Document):
                yield from (" ".join(line.split()) for line in rec.text.split("\n"))


def load_pool(data: Path = DATA) -> list[str]:
    """The paragraph pool, in a fixed order (sources sorted, first occurrence kept)."""
    if not (data / "books").is_dir():
        raise NoData(f"{data} is absent (or has no books/): the generator recombines its real paragraphs; "
                     "see ../shared/data/SOURCES.md")
    from tasks.clean.language import identify

    candidates = [p for p in dict.fromkeys(_raw_paragraphs(data)) if good_paragraph(p)]
    pool = []
    for p in candidates:
        lang, score = identify(p)
        if lang == "en" and score >= 0.8:
            pool.append(p)
    return pool


# ------------------------------------------------------------------------------------------------ plan
@dataclass(frozen=True)
class Plan:
    """What every document is: its format, its role and source, and its paragraphs (all numpy, O(N) ints)."""

    fmt: np.ndarray        # (N,) int8 index into FORMATS
    role: np.ndarray       # (N,) int8: 0 original, 1 exact, 2 near, 3 far
    source: np.ndarray     # (N,) int64: the original a planted copy copies (-1 for an original)
    para_off: np.ndarray   # (N+1,) int64: doc i's paragraphs are paras[para_off[i]:para_off[i+1]]
    paras: np.ndarray      # (total,) int32 pool indices


ROLES = ("original", "exact", "near", "far")


def make_plan(n_docs: int, pool_size: int, rng: np.random.Generator, mix: dict[str, float],
              rates: tuple[float, float, float]) -> Plan:
    """Draw formats, roles, sources and paragraph lists for `n_docs` documents, vectorised."""
    probs = np.array([mix.get(f, 0.0) for f in FORMATS])
    fmt = rng.choice(len(FORMATS), size=n_docs, p=probs / probs.sum()).astype(np.int8)
    u = rng.random(n_docs)
    edges = np.cumsum(rates)
    band = np.searchsorted(edges, u, side="right")  # 0: u < e0, 1: [e0, e1), 2: [e1, e2), 3: the rest
    role = np.where(band >= 3, 0, band + 1).astype(np.int8)  # exact, near, far copies; the rest originals
    role[0] = 0
    is_orig = role == 0
    n_orig_before = np.cumsum(is_orig) - is_orig  # originals strictly before each doc (>= 1 for i > 0)
    orig_index = np.flatnonzero(is_orig)
    pick = np.floor(rng.random(n_docs) * n_orig_before).astype(np.int64)
    source = np.where(is_orig, -1, orig_index[np.minimum(pick, len(orig_index) - 1)])
    lo = np.array([PARAS[f][0] for f in FORMATS])[fmt]
    hi = np.array([PARAS[f][1] for f in FORMATS])[fmt]
    counts = np.where(is_orig, rng.integers(lo, hi + 1), 0)  # copies take their source's paragraphs
    para_off = np.zeros(n_docs + 1, dtype=np.int64)
    np.cumsum(counts, out=para_off[1:])
    paras = rng.integers(0, pool_size, int(para_off[-1])).astype(np.int32)
    _redraw_repeats(paras, para_off, pool_size, rng)
    return Plan(fmt, role, source, para_off, paras)


def _redraw_repeats(paras: np.ndarray, off: np.ndarray, pool_size: int, rng: np.random.Generator) -> None:
    """Redraw paragraphs until no document holds one twice (a repeated paragraph trips the repetition rules)."""
    doc = np.repeat(np.arange(len(off) - 1), np.diff(off))
    while True:
        order = np.lexsort((paras, doc))
        same = (doc[order][1:] == doc[order][:-1]) & (paras[order][1:] == paras[order][:-1])
        dup = order[1:][same]
        if not len(dup):
            return
        paras[dup] = rng.integers(0, pool_size, len(dup))


# ------------------------------------------------------------------------------------------------ text
def vary(paragraphs: list[str], target: float, rng: np.random.Generator, vocab: list[str]) -> list[str]:
    """A copy with spaced one-word replacements so its word 5-gram Jaccard with the input is about `target`.

    As `tasks.dedup.synthetic.plant_variant`, but on real text: only plain alphabetic words are replaced
    (punctuation and line ends stay), by words of the pool's vocabulary, one per slot of NGRAM words.
    """
    words = "\n".join(paragraphs).split(" ")
    n_sh = max(len(words) - NGRAM + 1, 1)
    k = int(round(n_sh * (1 - target) / (NGRAM * (1 + target))))
    slots = len(words) // NGRAM
    chosen = rng.choice(slots, size=min(k, slots), replace=False) if k else []
    picks = rng.integers(0, len(vocab), len(chosen))
    for slot, w in zip(chosen, picks):
        for pos in (slot * NGRAM + NGRAM // 2, slot * NGRAM + NGRAM // 2 + 1, slot * NGRAM + 1):
            if pos < len(words) and words[pos].isalpha():
                words[pos] = vocab[w]
                break
    return " ".join(words).split("\n")


def record_uuid(seed: int, fmt: int, i: int) -> str:
    """A fixed, unique WARC-Record-ID uuid for document i (lmpipe's id is `common_crawl/<uuid>`)."""
    return f"{seed & 0xFFFFFFFF:08x}-{fmt:04x}-4000-8000-{i:012x}"


def doc_id(fmt: str, seed: int, i: int) -> str:
    """The id lmpipe gives document i."""
    if fmt in ("warc", "wet"):
        return f"common_crawl/{record_uuid(seed, FORMATS.index(fmt), i)}"
    if fmt == "wiki":
        return f"wikipedia/{WIKI_DB}/{i + 1}"
    return f"books/b{i:09d}"


def _date(i: int) -> str:
    s = i % 86400
    return f"2024-05-{18 + (i // 86400) % 10:02d}T{s // 3600:02d}:{s % 3600 // 60:02d}:{s % 60:02d}Z"


def _gz(data: bytes, level: int) -> bytes:
    """One gzip member (header mtime 0: deterministic)."""
    c = zlib.compressobj(level, zlib.DEFLATED, 31)
    return c.compress(data) + c.flush()


def _warc_record(headers: list[tuple[str, str]], block: bytes) -> bytes:
    head = "".join(f"{k}: {v}\r\n" for k, v in headers)
    return (f"WARC/1.0\r\n{head}Content-Length: {len(block)}\r\n\r\n").encode() + block + b"\r\n\r\n"


_NAV = ("<nav><ul><li><a href=\"/\">Home</a></li><li><a href=\"/news\">News</a></li>"
        "<li><a href=\"/about\">About us</a></li><li><a href=\"/contact\">Contact</a></li></ul></nav>")
_FOOTER = "<footer><p>Copyright 2024 Example Media. All rights reserved.</p><a href=\"/top\">Back to top</a></footer>"


def html_page(title: str, paragraphs: list[str]) -> bytes:
    """A plain article page with navigation and footer boilerplate around the paragraphs."""
    body = "".join(f"<p>{escape(p)}</p>\n" for p in paragraphs)
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{escape(title)}</title></head>\n"
            f"<body>{_NAV}\n<main><article>\n{body}</article></main>\n{_FOOTER}</body></html>\n").encode()


WIKI_HEADER = f"""<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/" version="0.10" xml:lang="en">
  <siteinfo>
    <sitename>Wikipedia</sitename>
    <dbname>{WIKI_DB}</dbname>
    <base>https://en.wikipedia.org/wiki/Main_Page</base>
    <generator>MediaWiki 1.27.0-wmf.22</generator>
    <case>first-letter</case>
    <namespaces>
      <namespace key="0" case="first-letter" />
      <namespace key="1" case="first-letter">Talk</namespace>
    </namespaces>
  </siteinfo>
"""


def wiki_page(page_id: int, title: str, paragraphs: list[str], date: str) -> str:
    text = escape("\n\n".join(paragraphs))
    return (f"  <page>\n    <title>{escape(title)}</title>\n    <ns>0</ns>\n    <id>{page_id}</id>\n    <revision>\n"
            f"      <id>{page_id * 10 + 1}</id>\n      <timestamp>{date}</timestamp>\n"
            f"      <contributor>\n        <username>Generator</username>\n        <id>1</id>\n      </contributor>\n"
            f"      <model>wikitext</model>\n      <format>text/x-wiki</format>\n"
            f"      <text xml:space=\"preserve\" bytes=\"{len(text)}\">{text}</text>\n    </revision>\n  </page>\n")


def book_file(i: int, paragraphs: list[str]) -> str:
    """A Project Gutenberg-style book: header, wrapped paragraphs, footer and licence (stripped by lmpipe)."""
    title = f"Collected Passages, Volume {i}"
    body = "\n\n".join(textwrap.fill(p, 72, break_on_hyphens=False, break_long_words=False) for p in paragraphs)
    return (f"The Project Gutenberg EBook of {title}\n\nTitle: {title}\n\nAuthor: Various\n\n"
            f"Release Date: May, 2024 [EBook #{90000 + i}]\n\nLanguage: English\n\nCharacter set encoding: UTF-8\n\n"
            f"*** START OF THIS PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n\n\n\n{body}\n\n\n\n\n"
            f"*** END OF THIS PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n"
            "THE FULL PROJECT GUTENBERG LICENSE\nPLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK\n")


# ------------------------------------------------------------------------------------------------ writers
class RollingFiles:
    """Appends records to `dir/<prefix>-NNN<suffix>`, starting a new file past `limit` uncompressed bytes."""

    def __init__(self, folder: Path, prefix: str, suffix: str, limit: int, header: bytes = b"",
                 footer: bytes = b"") -> None:
        self.folder, self.prefix, self.suffix, self.limit = folder, prefix, suffix, limit
        self.header, self.footer = header, footer
        self.index, self.size, self.file = -1, 0, None
        self.paths: list[str] = []

    def write(self, record: bytes, raw_size: int) -> None:
        if self.file is None or self.size >= self.limit:
            self._next()
        self.file.write(record)
        self.size += raw_size

    def _next(self) -> None:
        self.close()
        self.index += 1
        path = self.folder / f"{self.prefix}-{self.index:03d}{self.suffix}"
        self.paths.append(str(path))
        self.file: IO[bytes] = open(path, "wb")
        self.file.write(self.header)
        self.size = 0

    def close(self) -> None:
        if self.file is not None:
            self.file.write(self.footer)
            self.file.close()
            self.file = None


def _warcinfo(name: str, level: int) -> bytes:
    info = f"software: lmpipe benchmarks/gen_corpus.py\r\nformat: WARC File Format 1.0\r\nfilename: {name}\r\n".encode()
    return _gz(_warc_record([("WARC-Type", "warcinfo"), ("WARC-Date", "2024-05-18T00:00:00Z"),
                             ("WARC-Record-ID", f"<urn:uuid:00000000-ffff-4000-8000-{len(name):012x}>"),
                             ("Content-Type", "application/warc-fields")], info), level)


def shingle_set(text: str) -> set[tuple[str, ...]]:
    """The set of `tasks.dedup.minhash.shingles(text, NGRAM)`, built with zip (about 3x faster)."""
    from tasks.dedup.minhash import words

    toks = words(text)
    if len(toks) < NGRAM:
        return {tuple(toks)} if toks else set()
    return set(zip(*(toks[k:] for k in range(NGRAM))))


def exact_jaccard(a: str, b: str) -> float:
    """`tasks.dedup.synthetic.jaccard(a, b, NGRAM)`: the exact Jaccard of the two shingle sets."""
    sa, sb = shingle_set(a), shingle_set(b)
    return len(sa & sb) / len(sa | sb) if sa or sb else 1.0


@dataclass(frozen=True)
class Settings:
    """What a chunk writer needs besides the plan and the pool."""

    out: Path
    seed: int
    near_jaccard: float
    far_jaccard: float
    file_bytes: int
    gzip_level: int


CHUNK_DOCS = 25_000  # documents per independently written chunk: the files do not depend on --jobs
_SHARED: dict = {}  # pool, vocab, plan and settings, set before the chunk writers fork


def _paragraphs(i: int) -> list[str]:
    """Document i's paragraphs before any variation (a copy takes its source's)."""
    plan, pool = _SHARED["plan"], _SHARED["pool"]
    j = int(plan.source[i]) if plan.role[i] else i
    return [pool[k] for k in plan.paras[plan.para_off[j]:plan.para_off[j + 1]].tolist()]


def write_chunk(chunk: int) -> tuple[dict[str, list[str]], list[tuple[str, str, str, float]], dict]:
    """Write documents [chunk * CHUNK_DOCS, ...) to this chunk's own files; (paths, truth rows, counts)."""
    plan, cfg, vocab = _SHARED["plan"], _SHARED["settings"], _SHARED["vocab"]
    n_docs = len(plan.fmt)
    lo, hi = chunk * CHUNK_DOCS, min((chunk + 1) * CHUNK_DOCS, n_docs)
    out, seed, level, limit = cfg.out, cfg.seed, cfg.gzip_level, cfg.file_bytes
    prefix = f"part-{chunk:05d}"
    warc = RollingFiles(out / "warc", prefix, ".warc.gz", limit, _warcinfo("warc", level))
    wet = RollingFiles(out / "wet", prefix, ".warc.wet.gz", limit, _warcinfo("wet", level))
    wiki = RollingFiles(out / "wiki", prefix, "-pages-articles.xml", limit, WIKI_HEADER.encode(), b"</mediawiki>\n")
    truth: list[tuple[str, str, str, float]] = []
    counts = {f: {r: 0 for r in ROLES} for f in FORMATS}
    fmts, roles, sources = plan.fmt[lo:hi].tolist(), plan.role[lo:hi].tolist(), plan.source[lo:hi].tolist()
    for i, f, role, src in zip(range(lo, hi), fmts, roles, sources):
        fmt = FORMATS[f]
        ps = _paragraphs(i)
        if role:
            if role > 1:  # a per-document generator: the variant does not depend on the chunking
                target = cfg.near_jaccard if role == 2 else cfg.far_jaccard
                ps = vary(ps, target, np.random.default_rng([seed, i]), vocab)
            j = 1.0 if role == 1 else exact_jaccard("\n".join(ps), "\n".join(_paragraphs(src)))
            truth.append((doc_id(fmt, seed, i), doc_id(FORMATS[plan.fmt[src]], seed, src), ROLES[role], j))
        counts[fmt][ROLES[role]] += 1
        date = _date(i)
        if fmt == "wet":
            block = "\n".join(ps).encode()
            url = f"https://www.example-{i % 997}.com/p/{i}"
            rec = _warc_record([("WARC-Type", "conversion"), ("WARC-Target-URI", url), ("WARC-Date", date),
                                ("WARC-Record-ID", f"<urn:uuid:{record_uuid(seed, 1, i)}>"),
                                ("Content-Type", "text/plain")], block)
            wet.write(_gz(rec, level), len(rec))
        elif fmt == "warc":
            host = f"www.example-{i % 997}.com"
            url = f"https://{host}/p/{i}"
            body = html_page(f"Page {i}", ps)
            http = (f"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\n\r\n"
                    ).encode() + body
            req = f"GET /p/{i} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: CCBot/2.0\r\n\r\n".encode()
            r1 = _warc_record([("WARC-Type", "request"), ("WARC-Target-URI", url), ("WARC-Date", date),
                               ("WARC-Record-ID", f"<urn:uuid:{record_uuid(seed, 0xFFF0, i)}>"),
                               ("Content-Type", "application/http; msgtype=request")], req)
            r2 = _warc_record([("WARC-Type", "response"), ("WARC-Target-URI", url), ("WARC-Date", date),
                               ("WARC-Record-ID", f"<urn:uuid:{record_uuid(seed, 0, i)}>"),
                               ("Content-Type", "application/http; msgtype=response")], http)
            warc.write(_gz(r1, level) + _gz(r2, level), len(r1) + len(r2))
        elif fmt == "wiki":
            page = wiki_page(i + 1, f"Article {i}", ps, date).encode()
            wiki.write(page, len(page))
        else:
            (out / "books" / f"b{i:09d}.txt").write_text(book_file(i, ps), encoding="utf-8")
    for w in (warc, wet, wiki):
        w.close()
    return {"warc": warc.paths, "wet": wet.paths, "wiki": wiki.paths}, truth, counts


def generate(out: Path, n_docs: int, seed: int = 0, *, mix: dict[str, float] | None = None,
             exact_rate: float = 0.05, near_rate: float = 0.05, far_rate: float = 0.02,
             near_jaccard: float = 0.85, far_jaccard: float = 0.6, file_mb: float = 32,
             gzip_level: int = 1, jobs: int = 1, pool: list[str] | None = None) -> dict:
    """Write the corpus under `out` (see the module docstring); returns what corpus.json holds.

    Chunks of CHUNK_DOCS documents are written by `jobs` forked processes; the bytes do not depend on `jobs`.
    """
    t0 = time.perf_counter()
    pool = load_pool() if pool is None else pool
    t_pool = time.perf_counter() - t0
    mix = dict(DEFAULT_MIX if mix is None else mix)
    rng = np.random.default_rng(seed)
    plan = make_plan(n_docs, len(pool), rng, mix, (exact_rate, near_rate, far_rate))
    vocab = sorted({w for p in pool[:2000] for w in p.split(" ") if w.isalpha() and w.islower() and len(w) > 3})
    out.mkdir(parents=True, exist_ok=True)
    (out / "corpus.json").unlink(missing_ok=True)
    for f in FORMATS:
        (out / f).mkdir(exist_ok=True)
        for old in (out / f).iterdir():
            old.unlink()
    _SHARED.update(pool=pool, vocab=vocab, plan=plan,
                   settings=Settings(out, seed, near_jaccard, far_jaccard, int(file_mb * 1e6), gzip_level))
    chunks = range((n_docs + CHUNK_DOCS - 1) // CHUNK_DOCS)
    if jobs > 1 and len(chunks) > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(min(jobs, len(chunks))) as procs:
            results = procs.map(write_chunk, chunks, chunksize=1)
    else:
        results = [write_chunk(c) for c in chunks]
    files: dict[str, list[str]] = {"warc": [], "wet": [], "wiki": []}
    truth: list[tuple[str, str, str, float]] = []
    counts = {f: {r: 0 for r in ROLES} for f in FORMATS}
    for paths, rows, chunk_counts in results:
        for k, v in paths.items():
            files[k] += v
        truth += rows
        for f, by_role in chunk_counts.items():
            for r, n in by_role.items():
                counts[f][r] += n
    _write_truth(out / "truth.parquet", truth)
    seconds = time.perf_counter() - t0
    meta = {
        "docs": n_docs, "seed": seed, "mix": mix, "exact_rate": exact_rate, "near_rate": near_rate,
        "far_rate": far_rate, "near_jaccard": near_jaccard, "far_jaccard": far_jaccard, "file_mb": file_mb,
        "gzip_level": gzip_level, "pool_paragraphs": len(pool), "counts": counts,
        "files": {**{k: len(v) for k, v in files.items()}, "books": sum(counts["books"].values())},
        "sources": curate_sources(out),
        "jobs": jobs, "seconds": round(seconds, 2), "pool_seconds": round(t_pool, 2),
        "docs_per_s": round(n_docs / max(seconds - t_pool, 1e-9)),
    }
    (out / "corpus.json").write_text(json.dumps(meta, indent=2))
    return meta


def _write_truth(path: Path, rows: list[tuple[str, str, str, float]]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids, of, kinds, js = (list(c) for c in zip(*rows)) if rows else ([], [], [], [])
    table = pa.table({"id": pa.array(ids, pa.string()), "of_id": pa.array(of, pa.string()),
                      "kind": pa.array(kinds, pa.string()), "jaccard": pa.array(js, pa.float64())})
    pq.write_table(table, path)


def curate_sources(out: Path) -> list[dict]:
    """The curate spec `sources` that read this corpus (absolute globs; kinds without files left out)."""
    out = out.resolve()
    sources = []
    if any((out / "wiki").glob("*.xml")):
        sources.append({"kind": "wikipedia", "paths": [str(out / "wiki" / "*.xml")]})
    cc = [str(out / d / f"*{s}") for d, s in (("warc", ".warc.gz"), ("wet", ".warc.wet.gz"))
          if any((out / d).glob(f"*{s}"))]
    if cc:
        sources.append({"kind": "common_crawl", "paths": cc})
    if any((out / "books").glob("*.txt")):
        sources.append({"kind": "books", "paths": [str(out / "books" / "*.txt")]})
    return sources


def _mix(value: str) -> dict[str, float]:
    mix = {}
    for part in value.split(","):
        name, _, share = part.partition("=")
        if name not in FORMATS:
            raise argparse.ArgumentTypeError(f"unknown format {name!r}: use {', '.join(FORMATS)}")
        mix[name] = float(share)
    return mix


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="Output folder (created).")
    ap.add_argument("--docs", type=int, default=100_000, help="Number of documents.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--mix", type=_mix, default=None,
                    help="Share of each format, e.g. warc=0.2,wet=0.5,wiki=0.299,books=0.001 (the default).")
    ap.add_argument("--exact-rate", type=float, default=0.05, help="Share of documents that are exact copies.")
    ap.add_argument("--near-rate", type=float, default=0.05, help="Share of near copies (Jaccard ~ --near-jaccard).")
    ap.add_argument("--far-rate", type=float, default=0.02,
                    help="Share of far copies (Jaccard ~ --far-jaccard): not duplicates.")
    ap.add_argument("--near-jaccard", type=float, default=0.85)
    ap.add_argument("--far-jaccard", type=float, default=0.6)
    ap.add_argument("--file-mb", type=float, default=32, help="Uncompressed MB per WARC/WET/XML file.")
    ap.add_argument("--gzip-level", type=int, default=1, help="zlib level of the WARC/WET gzip members.")
    ap.add_argument("--jobs", type=int, default=1, help="Processes writing chunks (the bytes do not change).")
    args = ap.parse_args(argv)
    try:
        meta = generate(args.out, args.docs, args.seed, mix=args.mix, exact_rate=args.exact_rate,
                        near_rate=args.near_rate, far_rate=args.far_rate, near_jaccard=args.near_jaccard,
                        far_jaccard=args.far_jaccard, file_mb=args.file_mb, gzip_level=args.gzip_level,
                        jobs=args.jobs)
    except NoData as exc:
        print(f"gen_corpus: skipped: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {meta['docs']:,} documents in {meta['seconds']} s "
          f"({meta['docs_per_s']:,} docs/s after a {meta['pool_seconds']} s pool of {meta['pool_paragraphs']:,} "
          f"paragraphs); files {meta['files']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
