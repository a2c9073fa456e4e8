"""Real benchmark text: the ../shared/data books in chunks plus the Common Crawl WET sample.

Falls back to synthetic text, and says so in the description, when the samples are absent.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WET = DATA / "commoncrawl" / "CC-MAIN-20201129214615-20201130004615-00404.warc.wet.first319records.gz"


def real_docs(chunk_size: int, measure: Callable[[str], int], keep_tail: bool, unit: str) -> tuple[list[str], str]:
    """Book chunks of about `chunk_size` (as `measure` counts a paragraph) + WET records; (docs, description)."""
    docs: list[str] = []
    books = sorted((DATA / "books").glob("*.txt"))
    for path in books:
        paras = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        cur, n = [], 0
        for p in paras:  # consecutive paragraphs until ~chunk_size
            cur.append(p)
            n += measure(p)
            if n >= chunk_size:
                docs.append("\n\n".join(cur))
                cur, n = [], 0
        if cur and keep_tail:
            docs.append("\n\n".join(cur))
    n_books = len(docs)
    n_wet = 0
    if WET.exists():
        from fastwarc.warc import ArchiveIterator, WarcRecordType

        with open(WET, "rb") as f:
            for rec in ArchiveIterator(f, record_types=WarcRecordType.conversion):
                docs.append(rec.reader.read().decode("utf-8", errors="replace"))
                n_wet += 1
    if not docs:
        rng = np.random.default_rng(0)
        vocab = [f"w{i}" for i in range(50_000)]
        docs = [" ".join(vocab[k] for k in rng.integers(0, 50_000, 330)) for _ in range(3000)]
        return docs, f"SYNTHETIC text ({len(docs)} docs): {DATA} is absent"
    return docs, f"real text: {n_books} {unit} chunks of {len(books)} books + {n_wet} WET records"
