"""End-to-end curate throughput on the real samples in ../shared/data, against a plain script, per core.

    .venv/bin/python benchmarks/bench_curate.py [--quick] [--repeats 3]

lmpipe: the `curate` flow (Prefect, temporary local server already started) with 1 and 2 worker
processes, each from an empty output folder, then a rerun of the 2-worker output (every unit cached).

Baseline, in the same run: the single-process script a competent user would write with the usual
libraries, every stage run once over the corpus:
1. extract: ElementTree `iterparse` + `mwparserfromhell.parse().strip_code()` for wikitext, `warcio` +
   resiliparse for WARC/WET, plain file reads for books; every input file is read exactly once
   (counted, and checked after every repeat);
2. clean: the same lmpipe `Cleaner` per source, so both sides filter the same;
3. exact dedup: a set of hashes of the normalised text;
4. MinHash: datasketch `MinHash.bulk` (shared permutations, one `update_batch` per document; its fastest
   public API) over the same word 5-gram shingles as lmpipe;
5. near dedup: `MinHashLSH` with lmpipe's bands x rows for candidates, kept if the estimated Jaccard
   reaches lmpipe's threshold.

Per core: each side's cores = max(workers, measured CPU seconds / wall seconds of its whole process
tree: the bench process, the unit workers and the Prefect server). The ratio divides lmpipe's MB/s per
core by the baseline's, so 2 workers are not credited for their second core. A second ratio compares the
CPU seconds each side spent on the same input, which moves less with the machine's load. The sides are interleaved
(the order rotates each repeat) and each runs `--repeats` times; tables show medians and [min-max].
"""

from __future__ import annotations

import argparse
import bz2
import gzip
import hashlib
import lzma
import os
import re
import statistics
import sys
import tempfile
import time
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")

import psutil  # noqa: E402
import yaml  # noqa: E402

from tasks.common.documents import Document  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def real_sources(quick: bool) -> list[dict]:
    """The real sample files as curate sources, one source per kind."""
    wiki = sorted(str(p) for p in (DATA / "wikipedia").iterdir())
    cc = sorted(str(p) for p in (DATA / "commoncrawl").iterdir() if ".wat." not in p.name)
    books = sorted(str(p) for p in (DATA / "books").glob("*.txt"))
    if quick:
        wiki = [w for w in wiki if "enwiki" in w]
        cc = [c for c in cc if "first319" in c or "resiliparse" in c]
    return [
        {"kind": "wikipedia", "paths": wiki},
        {"kind": "common_crawl", "paths": cc},
        {"kind": "books", "paths": books},
    ]


def input_bytes(sources: list[dict]) -> int:
    return sum(os.path.getsize(p) for s in sources for p in s["paths"])


# ---------------------------------------------------------------- CPU time of a process tree
def _tree_cpu() -> tuple[float, dict[int, float]]:
    """(CPU s of this process + its reaped children, {pid: CPU s} of its live descendants)."""
    t = os.times()
    live = {}
    for child in psutil.Process().children(recursive=True):
        try:
            c = child.cpu_times()
            live[child.pid] = c.user + c.system
        except psutil.Error:
            continue
    return t.user + t.system + t.children_user + t.children_system, live


def timed(fn: Callable[[], object], tree: bool = True) -> tuple[object, float, float]:
    """(fn(), wall s, CPU s while fn ran: of the whole process tree, or of this process alone).

    In the tree, a worker that starts and exits inside `fn` is counted when it is reaped (os.times
    children); one alive at the end (the Prefect server) by its psutil delta. The single-process
    baseline is measured alone, so the idle Prefect server is not charged to it.
    """
    own0, live0 = _tree_cpu() if tree else (time.process_time(), {})
    t0 = time.perf_counter()
    out = fn()
    wall = time.perf_counter() - t0
    own1, live1 = _tree_cpu() if tree else (time.process_time(), {})
    return out, wall, own1 - own0 + sum(cpu - live0.get(pid, 0.0) for pid, cpu in live1.items())


# ---------------------------------------------------------------- baseline: the plain script
def _open(path: str, parses: Counter[str]) -> IO[bytes]:
    """Open a (possibly compressed) input for reading and count the read."""
    parses[path] += 1
    head = open(path, "rb").read(6)
    if head.startswith(b"BZh"):
        return bz2.open(path, "rb")
    if head.startswith(b"\xfd7zXZ"):
        return lzma.open(path, "rb")
    if head.startswith(b"\x1f\x8b"):
        return gzip.open(path, "rb")
    return open(path, "rb")


def read_wikipedia(paths: list[str], parses: Counter[str]) -> Iterator[Document]:
    """Articles (namespace 0, not redirects) of MediaWiki XML dumps, wikitext stripped to plain text."""
    import mwparserfromhell

    for path in paths:
        try:
            with _open(path, parses) as f:
                for _, elem in ET.iterparse(f):
                    if not elem.tag.endswith("}page"):
                        continue
                    ns = elem.find("{*}ns").text
                    redirect = elem.find("{*}redirect") is not None
                    pid = elem.find("{*}id").text
                    text = elem.find("{*}revision/{*}text").text or ""
                    elem.clear()
                    if ns == "0" and not redirect:
                        yield Document(f"wikipedia/{pid}", mwparserfromhell.parse(text).strip_code(), "wikipedia")
        except (ET.ParseError, EOFError, OSError):  # a truncated sample: keep what was read
            continue


def read_common_crawl(paths: list[str], parses: Counter[str]) -> Iterator[Document]:
    """WET conversion records as they are; HTML responses of WARC files through resiliparse's main-content text."""
    from resiliparse.extract.html2text import extract_plain_text
    from resiliparse.parse.encoding import bytes_to_str, detect_encoding
    from warcio.archiveiterator import ArchiveIterator

    for path in paths:
        try:
            with _open(path, parses) as f:
                for rec in ArchiveIterator(f):
                    rid = rec.rec_headers.get_header("WARC-Record-ID")
                    if rec.rec_type == "conversion":
                        text = rec.content_stream().read().decode("utf-8", "replace")
                        yield Document(f"common_crawl/{rid}", text, "common_crawl")
                    elif rec.rec_type == "response" and rec.http_headers and \
                            "html" in (rec.http_headers.get_header("Content-Type") or ""):
                        body = rec.content_stream().read()
                        html = bytes_to_str(body, detect_encoding(body))
                        yield Document(f"common_crawl/{rid}", extract_plain_text(html, main_content=True),
                                       "common_crawl")
        except Exception:  # noqa: BLE001 - the plain script skips the rest of a broken file
            continue


def read_books(paths: list[str], parses: Counter[str]) -> Iterator[Document]:
    """One document per plain-text book."""
    for path in paths:
        with _open(path, parses) as f:
            yield Document(f"books/{Path(path).stem}", f.read().decode("utf-8", "replace"), "books")


READERS = {"wikipedia": read_wikipedia, "common_crawl": read_common_crawl, "books": read_books}
WORD = re.compile(r"\w+")


def _words(text: str) -> list[str]:
    """lmpipe's shingle tokens: `\\w+` runs of the NFKC-normalised, casefolded text."""
    return WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def shingle_bytes(text: str, n: int) -> list[bytes]:
    """Word n-grams as bytes; a document shorter than n words is one shingle (as in lmpipe)."""
    toks = _words(text)
    if len(toks) < n:
        return [" ".join(toks).encode("utf-8")] if toks else []
    return [" ".join(toks[k : k + n]).encode("utf-8") for k in range(len(toks) - n + 1)]


@dataclass
class BaselineRun:
    docs_in: int
    cleaned: int
    kept: int
    stages: dict[str, float]
    parses: Counter[str] = field(default_factory=Counter)


def run_baseline(sources: list[dict]) -> BaselineRun:
    """Extract, clean, exact-dedup, MinHash and LSH-dedup the corpus once, stage by stage, in this process."""
    import datasketch

    from data_specs import CurateSpec
    from tasks.clean.core import Cleaner

    spec = CurateSpec.model_validate({"name": "b", "sources": sources, "output": "/tmp/unused"})
    mh = spec.dedup.minhash
    parses: Counter[str] = Counter()
    stages: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        stages[stage] = stages.get(stage, 0.0) + now - clock
        clock = now

    extracted: list[list[Document]] = []
    for source in spec.sources:  # each source's files once, every source once
        extracted.append(list(READERS[source.kind](list(source.paths), parses)))
    lap("extract")
    stats: Counter[str] = Counter()
    cleaned = [doc for source, docs in zip(spec.sources, extracted)
               for doc in Cleaner(spec.clean, source.filters, source.languages)(docs, stats)]
    lap("clean")
    seen: set[bytes] = set()
    unique = []
    for doc in cleaned:
        key = hashlib.md5(" ".join(unicodedata.normalize("NFKC", doc.text).casefold().split()).encode()).digest()
        if key not in seen:
            seen.add(key)
            unique.append(doc)
    lap("exact dedup")
    sigs = datasketch.MinHash.bulk((shingle_bytes(d.text, mh.ngram) for d in unique),
                                   num_perm=mh.num_perm, seed=mh.seed)
    lap("minhash (bulk)")
    lsh = datasketch.MinHashLSH(num_perm=mh.num_perm, params=(mh.bands, mh.rows))
    kept = 0
    for i, sig in enumerate(sigs):
        if not any(sigs[int(j)].jaccard(sig) >= mh.threshold for j in lsh.query(sig)):
            lsh.insert(str(i), sig)
            kept += 1
    lap("lsh")
    return BaselineRun(sum(len(d) for d in extracted), len(cleaned), kept, stages, parses)


# ---------------------------------------------------------------- lmpipe
def run_lmpipe(sources: list[dict], workers: int, out: Path) -> dict:
    """The curate flow with `workers` unit workers into `out`; returns the manifest."""
    from flows.curate import curate

    spec_path = out.with_suffix(".yaml")
    spec_path.write_text(yaml.safe_dump({"name": "bench", "sources": sources, "output": str(out),
                                         "run": {"workers": workers}}))
    return curate(str(spec_path))


# ---------------------------------------------------------------- the interleaved runs and the table
@dataclass
class Side:
    """One row of the table: its runs' wall and CPU seconds, documents in and kept."""

    name: str
    workers: int
    walls: list[float] = field(default_factory=list)
    cpus: list[float] = field(default_factory=list)
    docs_in: int = 0
    cleaned: int = 0
    kept: int = 0

    def cores(self, i: int) -> float:
        """Cores charged to run i: at least its workers, more if its process tree used more."""
        return max(self.workers, self.cpus[i] / self.walls[i])

    def mb_per_core_s(self, mb: float, i: int) -> float:
        return mb / self.walls[i] / self.cores(i)


def spread(values: list[float], fmt: str) -> str:
    """'median [min-max]'."""
    return f"{statistics.median(values):{fmt}} [{min(values):{fmt}}-{max(values):{fmt}}]"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="enwiki + two CC files + books only")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each side, interleaved (at least 3)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"bench_curate: NOT RUN — real samples not found at {DATA}")
        return
    sources = real_sources(args.quick)
    paths = [p for s in sources for p in s["paths"]]
    mb = input_bytes(sources) / 1e6
    print(f"# {len(paths)} real input files, {mb:.1f} MB on disk (compressed); cpu cores here: {os.cpu_count()}; "
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    from prefect import flow

    @flow
    def warm_up() -> None:
        """Start the temporary Prefect server once, outside the timings."""

    _, secs, _ = timed(warm_up)
    print(f"# Prefect temporary server start-up (not in the timings below): {secs:.1f} s")

    base = Side("baseline: plain script, 1 process (iterparse+mwparserfromhell, warcio+resiliparse, "
                "datasketch bulk+LSH)", 1)
    one, two = Side("lmpipe curate, 1 worker", 1), Side("lmpipe curate, 2 workers", 2)
    rerun = Side("lmpipe curate rerun, 2 workers (all units cached)", 2)
    stage_secs: dict[str, list[float]] = {}
    failed: list[str] = []

    def baseline() -> None:
        run, wall, cpu = timed(lambda: run_baseline(sources), tree=False)
        if sorted(run.parses) != sorted(paths) or set(run.parses.values()) != {1}:
            raise AssertionError(f"baseline must read every input once: {dict(run.parses)}")
        base.walls.append(wall)
        base.cpus.append(cpu)
        base.docs_in, base.cleaned, base.kept = run.docs_in, run.cleaned, run.kept
        for stage, s in run.stages.items():
            stage_secs.setdefault(stage, []).append(s)

    def lmpipe(side: Side, out: Path) -> None:
        manifest, wall, cpu = timed(lambda: run_lmpipe(sources, side.workers, out))
        side.walls.append(wall)
        side.cpus.append(cpu)
        c = manifest["counts"]
        side.docs_in, side.cleaned, side.kept = c["documents_in"], c["kept"] + c["duplicates_removed"], c["kept"]
        failed[:] = [f["input"] for f in manifest["failed_inputs"]]

    with tempfile.TemporaryDirectory() as tmp:
        for r in range(max(3, args.repeats)):
            out1, out2 = Path(tmp) / f"r{r}-w1", Path(tmp) / f"r{r}-w2"
            order: list[Callable[[], None]] = [
                baseline,
                lambda: lmpipe(one, out1),
                lambda: (lmpipe(two, out2), lmpipe(rerun, out2)),
            ]
            for step in order[r % 3:] + order[: r % 3]:  # rotate so no side always runs first
                step()
            print(f"# repeat {r + 1} done; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
                  flush=True)

    n = len(base.walls)
    base_rate = [base.mb_per_core_s(mb, i) for i in range(n)]
    print(f"\n{'method':100s} {'workers':>7s} {'cores used':>10s} {'docs in':>7s} {'kept':>6s} "
          f"{'wall s':>17s} {'MB/s':>6s} {'MB/s/core':>17s} {'per core vs baseline':>20s} "
          f"{'MB/CPU-s vs baseline':>20s}")
    for side in (base, one, two, rerun):
        used = statistics.median(side.cpus[i] / side.walls[i] for i in range(n))
        per_core = [side.mb_per_core_s(mb, i) for i in range(n)]
        ratio = [per_core[i] / base_rate[i] for i in range(n)]  # paired with the baseline of the same repeat
        cpu_ratio = [base.cpus[i] / side.cpus[i] for i in range(n)]  # the same MB, so MB per CPU-s
        print(f"{side.name:100s} {side.workers:7d} {used:10.2f} {side.docs_in:7d} {side.kept:6d} "
              f"{spread(side.walls, '5.1f'):>17s} {mb / statistics.median(side.walls):6.2f} "
              f"{spread(per_core, '4.2f'):>17s} {spread(ratio, '5.1f') + 'x':>20s} "
              f"{spread(cpu_ratio, '5.1f') + 'x':>20s}")
    print("\nbaseline stages (s, median [min-max]): "
          + "; ".join(f"{stage} {spread(s, '.1f')}" for stage, s in stage_secs.items()))
    print(f"baseline: each of the {len(paths)} input files parsed exactly once per repeat (counted); "
          f"{n} repeats per side, interleaved")
    print("after cleaning -> kept after dedup: "
          + "; ".join(f"{side.name.split(' (')[0].split(',')[0]} {side.workers}w {side.cleaned} -> {side.kept}"
                      for side in (base, one, two)))
    print(f"failed inputs reported by lmpipe (kept their complete records): {failed}")
    print("notes: 'cores used' = CPU s of the side's process tree / wall s (median); per-core figures divide by "
          "max(workers, cores used). 'MB/CPU-s vs baseline' compares CPU seconds spent on the same input (it does "
          "not move with the machine's load the way wall time does). 'docs in' counts every record a reader saw (lmpipe: pages incl. redirects "
          "and other namespaces; baseline: ns-0 non-redirect pages and HTML/WET records), so the ratios compare "
          "MB/s of the same input files.")


if __name__ == "__main__":
    main()
