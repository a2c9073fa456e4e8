"""A tiny curated output (manifest.json + data/shard-*.parquet with id/text/source) for the tokenize tests.

Every document starts with a unique marker word `zq0007` (from its id number), so tests can find out
which documents a decoded row came from.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

WORDS = (
    "the lighthouse keeper climbed spiral stairs every evening before sun went down he carried small lantern "
    "and notebook in which wrote weather of each day ships passing rocky point relied on beam to find their way "
    "into harbour during winter storms waves crashed against walls with tremendous force his daughter often "
    "joined him bringing bread cheese flask hot tea together they watched horizon counted fishing boats"
).split()
MARKER = re.compile(r"zq(\d{4})")


def doc_text(n: int, words: int = 60) -> str:
    rng = random.Random(n)
    body = " ".join(rng.choice(WORDS) for _ in range(words))
    return f"zq{n:04d} {body.capitalize()}, said Zoë. It's 12.5% «done»!"


def make_docs(sources: dict[str, int], start: int = 0) -> list[dict]:
    """`count` documents per source, numbered from `start` (ids `{source}/{n}`)."""
    docs, n = [], start
    for source, count in sources.items():
        for _ in range(count):
            docs.append({"id": f"{source}/{n}", "text": doc_text(n), "source": source})
            n += 1
    return docs


def write_curated(root: Path, shards: list[list[dict]], fingerprint: str = "curatedfp01") -> Path:
    """Write shards and the manifest (last) the way a curate run lays them out."""
    schema = pa.schema(
        [pa.field("id", pa.string(), False), pa.field("text", pa.large_string(), False),
         pa.field("source", pa.string(), False)]
    )  # fmt: skip
    (root / "data").mkdir(parents=True, exist_ok=True)
    entries = []
    for i, docs in enumerate(shards):
        name = f"shard-{i:05d}-of-{len(shards):05d}.parquet"
        table = pa.Table.from_pylist(docs, schema=schema)
        pq.write_table(table, root / "data" / name, compression="zstd")
        raw = (root / "data" / name).read_bytes()
        entries.append({"path": name, "rows": len(docs), "bytes": len(raw), "sha256": hashlib.sha256(raw).hexdigest()})
    (root / "manifest.json").write_text(json.dumps({"fingerprint": fingerprint, "shards": entries}, indent=1))
    return root


def markers(text: str) -> set[int]:
    return {int(m) for m in MARKER.findall(text)}
