"""Quality filters side by side with datatrove 0.10.1: documents/s per core and keep/drop agreement.

The same documents go through datatrove's `GopherRepetitionFilter`, `GopherQualityFilter`, `C4QualityFilter`
(`filter_no_terminal_punct=False`) and `FineWebQualityFilter`, in that order and with their defaults (the
FineWeb recipe, datatrove `examples/fineweb.py`), and through lmpipe's clean-stage filters with the same
rules (`tasks.clean.core.apply_filters` with `FilterSetSpec()`, the FineWeb recipe). Both sides see the same
text: lmpipe's Unicode normalisation runs once beforehand, outside the timings, as the clean stage runs it
before its filters. Language ID, PII and the signals are not part of either side.

Document sets (real text from ../shared/data):
- `books`: ~400-word passages of the five Gutenberg books as cut, paragraphs and line breaks kept;
- `books-flat`: the same passages flattened to one line;
- `web`: every document lmpipe's common_crawl reader yields from the WARC/WET samples under commoncrawl/.

One process pinned to one CPU; the two sides alternate (the order flips every repeat), `--repeats` times;
medians with min-max spread. Decisions come from the first repeat; every disagreement is listed by the two
reasons (`--show N` prints N example documents per pair).

Needs the `bench` extra (datatrove, and spaCy for its English word tokenizer):
    .venv/bin/pip install -e '.[bench]'
Run: `.venv/bin/python benchmarks/bench_filters.py [--repeats 3] [--show 1]`
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_specs.clean import FilterSetSpec  # noqa: E402
from data_specs.sources import CommonCrawlSource  # noqa: E402
from tasks.clean.core import apply_filters  # noqa: E402
from tasks.clean.normalize import normalize  # noqa: E402
from tasks.sources.core import plan_units, read_unit  # noqa: E402

from benchmarks._real_text import DATA  # noqa: E402

Decision = tuple[bool, str]  # (keep, reason: "filter/rule" or "kept")


def book_passages(words: int = 400) -> list[str]:
    """Consecutive paragraphs of each book until `words` words (the tail of each book left out)."""
    out: list[str] = []
    for path in sorted((DATA / "books").glob("*.txt")):
        paras = [p.strip() for p in path.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        cur, n = [], 0
        for p in paras:
            cur.append(p)
            n += len(p.split())
            if n >= words:
                out.append("\n\n".join(cur))
                cur, n = [], 0
    return out


def web_documents() -> list[str]:
    """Every document lmpipe's common_crawl reader yields from the WARC and WET samples."""
    folder = DATA / "commoncrawl"
    paths = sorted(str(p) for p in folder.glob("*.gz") if ".wat." not in p.name and "TRUNCATED" not in p.name)
    source = CommonCrawlSource(kind="common_crawl", paths=paths)
    units, _ = plan_units(source, 0)
    docs: list[str] = []
    for unit in units:
        docs.extend(d.text for d in read_unit(source, unit) if hasattr(d, "text"))
    return docs


def lmpipe_side() -> Callable[[str], Decision]:
    spec = FilterSetSpec()

    def decide(text: str) -> Decision:
        reason = apply_filters(text, spec)[0]
        return (reason is None, reason or "kept")

    return decide


def datatrove_side() -> Callable[[str], Decision]:
    from datatrove.data import Document
    from datatrove.pipeline.filters import (
        C4QualityFilter,
        FineWebQualityFilter,
        GopherQualityFilter,
        GopherRepetitionFilter,
    )
    from loguru import logger

    logger.remove()
    filters = [
        ("gopher_repetition", GopherRepetitionFilter()),
        ("gopher_quality", GopherQualityFilter()),
        ("c4", C4QualityFilter(filter_no_terminal_punct=False)),
        ("fineweb", FineWebQualityFilter()),
    ]

    def decide(text: str) -> Decision:
        doc = Document(text=text, id="0")
        for name, f in filters:
            result = f.filter(doc)  # C4 rewrites doc.text in place, as in the pipeline
            keep, reason = result if isinstance(result, tuple) else (result, None)
            if not keep:
                return False, f"{name}/{reason}"
        return True, "kept"

    return decide


def run_side(decide: Callable[[str], Decision], docs: list[str]) -> tuple[float, list[Decision]]:
    t0 = time.perf_counter()
    out = [decide(d) for d in docs]
    return time.perf_counter() - t0, out


def bench_set(name: str, docs: list[str], sides: dict[str, Callable[[str], Decision]], repeats: int, show: int):
    times: dict[str, list[float]] = {s: [] for s in sides}
    decisions: dict[str, list[Decision]] = {}
    order = list(sides)
    for r in range(repeats):
        for side in order if r % 2 == 0 else order[::-1]:
            dt, out = run_side(sides[side], docs)
            times[side].append(dt)
            decisions.setdefault(side, out)
    rates = {s: [len(docs) / t for t in ts] for s, ts in times.items()}
    dt_dec, lm_dec = decisions["datatrove"], decisions["lmpipe"]
    agree = sum(a[0] == b[0] for a, b in zip(dt_dec, lm_dec))
    kept = {s: sum(k for k, _ in decisions[s]) for s in sides}
    med = {s: statistics.median(r) for s, r in rates.items()}
    row = (
        f"| {name} | {len(docs)} | {med['datatrove']:.1f} ({min(rates['datatrove']):.1f}-{max(rates['datatrove']):.1f})"
        f" | {med['lmpipe']:.1f} ({min(rates['lmpipe']):.1f}-{max(rates['lmpipe']):.1f})"
        f" | {med['lmpipe'] / med['datatrove']:.1f}x | {kept['datatrove']} | {kept['lmpipe']}"
        f" | {100 * agree / len(docs):.1f}% |"
    )
    pairs = Counter((a[1], b[1]) for a, b in zip(dt_dec, lm_dec) if a[0] != b[0])
    notes = [f"  {name}: {n} x datatrove {a} / lmpipe {b}" for (a, b), n in pairs.most_common()]
    if show:
        shown: Counter[tuple[str, str]] = Counter()
        for doc, a, b in zip(docs, dt_dec, lm_dec):
            if a[0] != b[0] and shown[(a[1], b[1])] < show:
                shown[(a[1], b[1])] += 1
                notes.append(f"    --- datatrove {a[1]} / lmpipe {b[1]}:\n{doc[:1500]!r}")
    return row, notes


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--show", type=int, default=0, help="example documents per disagreeing reason pair")
    ap.add_argument("--sets", default="books,books-flat,web")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    def prep(texts: list[str]) -> list[str]:
        return [t for t in (normalize(x, fix_unicode_=True, form="NFC") for x in texts) if t]

    passages = book_passages()
    sets = {
        "books": lambda: prep(passages),
        "books-flat": lambda: prep([" ".join(p.split()) for p in passages]),
        "web": lambda: prep(web_documents()),
    }
    sides = {"datatrove": datatrove_side(), "lmpipe": lmpipe_side()}
    for decide in sides.values():  # warm up: spaCy's tokenizer, regexes
        decide("Warm up the tokenizers. " * 60)
    print(f"single core, {args.repeats} interleaved repeats, documents/s: median (min-max)\n")
    print("| set | docs | datatrove docs/s | lmpipe docs/s | speed-up | kept (dt) | kept (lmpipe) | agree |")
    print("|---|---|---|---|---|---|---|---|")
    all_notes: list[str] = []
    for name in args.sets.split(","):
        row, notes = bench_set(name, sets[name](), sides, args.repeats, args.show)
        print(row, flush=True)
        all_notes += notes
    print("\ndisagreements (datatrove reason / lmpipe reason):")
    print("\n".join(all_notes) or "  none")


if __name__ == "__main__":
    main()
