"""zstd-compressed WARC and WET files are read whole (one frame, or a frame per record as with gzip).

Before: the zstd stream reader has no `readline`, so the first record raised `UnsupportedOperation`
and the file was reported as corrupt with no record read (fixed in `tasks/common/io.py`).
"""

from __future__ import annotations

import gzip

import pytest
import zstandard

from data_specs.sources import CommonCrawlSource
from tasks.common.documents import Document
from tasks.sources.core import WorkUnit, read_unit
from tests.unit._warc_build import Rec, page, warc_bytes, warcio_payloads

def text(topic: str) -> str:
    return f"A long and quiet paragraph about the {topic} keeps its readers through the windy autumn. " * 3


RECORDS = {
    "warc": [Rec(f"page-{i}", page(text(f"garden {i}"))) for i in range(40)],
    "wet": [Rec(f"text-{i}", text(f"river {i}").encode(), kind="conversion") for i in range(40)],
}


def zstd_frames(records: list[Rec]) -> bytes:
    """A zstd frame per record, as Common Crawl does with gzip members."""
    return b"".join(zstandard.compress(warc_bytes([r], gzip=False)) for r in records)


@pytest.mark.parametrize("kind", ["warc", "wet"])
@pytest.mark.parametrize("framing", ["one-frame", "frame-per-record"])
def test_zstd_warc_and_wet_read_whole(tmp_path, kind, framing):
    records = RECORDS[kind]
    plain = warc_bytes(records, gzip=False)
    data = zstandard.compress(plain) if framing == "one-frame" else zstd_frames(records)
    path = tmp_path / f"sample.{kind}.zst"
    path.write_bytes(data)
    got = list(read_unit(CommonCrawlSource(kind="common_crawl", paths=[str(path)]),
                         WorkUnit(0, "common_crawl", str(path))))
    assert all(isinstance(d, Document) for d in got) and [d.id for d in got] == [f"common_crawl/{r.rid}" for r in records]
    # The same records as gzip: identical documents (the reference: warcio reads each payload whole).
    gz = tmp_path / f"sample.{kind}.gz"
    gz.write_bytes(warc_bytes(records))
    assert set(warcio_payloads(gz.read_bytes())) == {r.rid for r in records}
    same = list(read_unit(CommonCrawlSource(kind="common_crawl", paths=[str(gz)]), WorkUnit(0, "common_crawl", str(gz))))
    assert [(d.id, d.text) for d in got] == [(d.id, d.text) for d in same]
    assert gzip.decompress(gz.read_bytes()) == plain
