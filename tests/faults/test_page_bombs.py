"""Page bombs: a 4 KB bz2 dump whose middle page decompresses to 1 GB curates in bounded memory, drops that
page as `wikipedia/page_too_large`, and keeps the pages before and after it.

The dump is a multistream bz2: the header and a normal page, then the bomb page's opening tags, 23 streams of
45 MB of `a` each (50 bytes apiece, 1.2 KB in all), the page's closing tags, another normal page and `</mediawiki>`. Before,
`_page_blocks` buffered the whole page (1 GB, then a copy, a decoded str and an XML tree: several GB). The unit
runs in a child process (read, clean, MinHash, Parquet: `process_unit`) that reports its own peak RSS; it also
caps its address space, so a regression fails with MemoryError instead of taking the machine's memory.
A unit of a split dump (`_bz2_range`, by byte range) hands out decompressed pieces of at most CHUNK_BYTES.
"""

from __future__ import annotations

import bz2
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tasks.sources import wikipedia_bytes
from tasks.sources.core import WorkUnit
from tests.fixtures.make_sample_corpus import HONEY_BEE, LIGHTHOUSE, SITEINFO_HEADER, page_xml

REPO = Path(__file__).resolve().parents[2]
BOMB_RUN = 45_000_000  # one bz2 stream of this many `a` is 50 bytes (one 900k block after bzip2's run-length step)


def _bomb_dump(path: Path, streams: int) -> int:
    """Write the dump; returns the bomb page's size in bytes."""
    before = page_xml(11, 0, "Lighthouse", "2020-01-01T00:00:00Z", None, LIGHTHOUSE)
    after = page_xml(13, 0, "Honey bee", "2020-01-01T00:00:00Z", None, HONEY_BEE)
    bomb_open = page_xml(12, 0, "Bomb", "2020-01-01T00:00:00Z", None, "@@")
    head, tail = bomb_open.split("@@")
    run = bz2.compress(b"a" * BOMB_RUN, 9)
    parts = [bz2.compress((SITEINFO_HEADER + before + head).encode(), 9), run * streams,
             bz2.compress((tail + after + "</mediawiki>\n").encode(), 9)]
    path.write_bytes(b"".join(parts))
    return len(head) + len(tail) + streams * BOMB_RUN


_CHILD = """
import json, re, resource, sys, time
resource.setrlimit(resource.RLIMIT_AS, (6 << 30, 6 << 30))  # a regression fails here, not the machine
from data_specs import load_curate_spec
from tasks.sources.core import plan_units
from tasks.units.core import process_unit
spec = load_curate_spec(sys.argv[1])
started = time.perf_counter()
results = [process_unit(spec.sources[0], u, spec.clean, spec.dedup.minhash, sys.argv[2])
           for u in plan_units(spec.sources[0], 0)[0]]
print(json.dumps({"results": [{"docs_in": r.docs_in, "kept": r.kept, "drops": r.drops, "complete": r.complete,
                               "error": r.error, "path": r.path} for r in results],
                  "seconds": time.perf_counter() - started,
                  # VmHWM, not ru_maxrss: ru_maxrss carries the forking parent's peak over fork + exec
                  "peak_rss_mb": int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read())[1]) / 1024}))
"""


def test_a_1gb_page_in_a_4kb_bz2_curates_in_bounded_memory_and_keeps_the_other_pages(tmp_path):
    from tests.flows.helpers import write_spec

    dump = tmp_path / "bomb.xml.bz2"
    page_bytes = _bomb_dump(dump, streams=23)
    assert dump.stat().st_size < 5000 and page_bytes > 1_000_000_000
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "out", sources=[{"kind": "wikipedia", "paths": [str(dump)]}])
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(spec), str(tmp_path / "work")], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    (result,) = report["results"]
    assert result["complete"] and result["error"] is None, result
    assert result["docs_in"] == 3 and result["kept"] == 2
    assert any(k.endswith("wikipedia/page_too_large") and n == 1 for k, n in result["drops"].items()), result["drops"]
    ids = pq.read_table(result["path"], columns=["id"]).column("id").to_pylist()
    assert ids == ["wikipedia/enwiki/11", "wikipedia/enwiki/13"]
    assert report["peak_rss_mb"] < 1024, report  # measured: 193 MB, 13 s for the unit (2 cores, loaded)


def test_a_byte_range_unit_decompresses_a_bomb_stream_in_bounded_pieces(tmp_path):
    # One bz2 stream of 100 MB in three blocks: `decompress(data)` without `max_length` returned it in one piece.
    dump = tmp_path / "ms.xml.bz2"
    header = bz2.compress((SITEINFO_HEADER + page_xml(11, 0, "A", "2020", None, "x") + "<page>").encode())
    dump.write_bytes(header + bz2.compress(b"a" * 100_000_000, 9) + bz2.compress(b"</page></mediawiki>"))
    unit = WorkUnit(0, "wikipedia", str(dump), start=len(header) - 10, end=dump.stat().st_size)
    sizes = [len(chunk) for chunk, _ in wikipedia_bytes.decompressed_chunks(unit)]
    assert sum(sizes) == 100_000_000 + len("</page></mediawiki>")
    assert max(sizes) <= wikipedia_bytes.CHUNK_BYTES


@pytest.mark.parametrize("cap", [1024, 4096])
def test_pages_over_max_page_bytes_are_dropped_whole_or_cut_and_the_reader_goes_on(tmp_path, cap):
    from data_specs.sources import WikipediaSource
    from tasks.sources.core import read_unit

    pages = [(1, "short"), (2, "y" * 3000), (3, "z" * 100_000), (4, "short again")]
    xml = SITEINFO_HEADER + "".join(page_xml(i, 0, f"P{i}", "2020", None, t) for i, t in pages) + "</mediawiki>\n"
    for name, data in (("d.xml", xml.encode()), ("d.xml.bz2", bz2.compress(xml.encode()))):
        (tmp_path / name).write_bytes(data)
        source = WikipediaSource(kind="wikipedia", paths=[str(tmp_path / name)], max_page_bytes=cap)
        got = [(r.id, getattr(r, "reason", "doc")) for r in read_unit(source, WorkUnit(0, "wikipedia", str(tmp_path / name)))]
        big = "wikipedia/page_too_large"
        assert got == [("wikipedia/enwiki/1", "doc"), ("wikipedia/enwiki/2", "doc" if cap > 4000 else big),
                       ("wikipedia/enwiki/3", big), ("wikipedia/enwiki/4", "doc")], name


def test_byte_range_units_skip_oversized_pages_as_the_whole_read_does(tmp_path):
    import random

    from data_specs.sources import WikipediaSource
    from tasks.sources.core import plan_units, read_unit

    rng = random.Random(3)
    pages = [(i, 0, f"P{i}", "2020", None, "w" * rng.choice([10, 500, 3000, 20000])) for i in range(60)]
    path = tmp_path / "dump.xml"
    path.write_text(SITEINFO_HEADER + "".join(page_xml(*p) for p in pages) + "</mediawiki>\n")

    def read(split: int | None) -> list[tuple[str, str]]:
        source = WikipediaSource(kind="wikipedia", paths=[str(path)], max_page_bytes=2048, split_bytes=split)
        return [(r.id, getattr(r, "reason", "doc")) for u in plan_units(source, 0)[0] for r in read_unit(source, u)]

    whole = read(None)
    assert len(whole) == 60 and 0 < sum(reason != "doc" for _, reason in whole) < 60
    assert read(1024) == read(5000) == whole
