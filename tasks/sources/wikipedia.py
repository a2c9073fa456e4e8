"""Wikipedia reader: MediaWiki XML export (`pages-articles`, plain or multistream) to Documents.

Input: a dump file, bz2 (multistream or not) / xz / gz / zstd / uncompressed, compression detected
from content. Output: one `Document` per kept page (id, title, revision timestamp, plain text),
`Dropped` for redirects, other namespaces and malformed pages.

Ids: `wikipedia/<wiki>/<page id>`, where `<wiki>` is the dump's `<dbname>` from siteinfo (`enwiki`,
`dewiki`, `ltgwiki`): page ids are only unique within one wiki, so the wiki is part of the id. A dump
without `<dbname>` (some older exports lack it) uses the spec's `wiki`, else the host of its `<base>` URL
(`wikipedia/de.wikipedia.org/<page id>`). A dump with no `<siteinfo>` at all (an excerpt cut from a dump)
is named by the spec's `wiki`, else by a file name that follows the dump convention
(`<dbname>-<date>-pages-articles...`), and uses MediaWiki's canonical namespace names; its Documents carry
the note `wikipedia/no_siteinfo`. Otherwise, and for a damaged siteinfo or one whose `<dbname>` contradicts
the spec's `wiki`, the dump is not read: `ReaderError` says why and names the `wiki` field.

Siteinfo: the header at the start of the file (every unit of a split file reads it) gives the wiki's
name, its article URL prefix and the localized names of the Media (-2), File (6) and Category (14)
namespaces (`Datei`, `Kategorie`, `ファイル`, `Fails`, ...). Links into those namespaces are dropped
under their localized names and under the canonical English ones (MediaWiki accepts both). Dumps do
not list namespace aliases (German `Bild:` is a legacy alias of `Datei:`), so a prefixed link whose
target ends in a media file extension (`[[Bild:x.jpg|thumb|caption]]`) counts as a file link too.

Design, for robustness and streaming:
- The decompressed byte stream is scanned for `<page>`...`</page>` blocks; each block is parsed on its
  own with ElementTree. A malformed page is one `Dropped('wikipedia/malformed_page')`, a page whose wikitext
  the converter cannot handle one `Dropped('wikipedia/convert_error')`, not a dead file; a truncated or
  corrupt file yields its complete pages, then raises `ReaderError`. Memory holds one page at a time: a
  page over `max_page_bytes` is skipped to its `</page>` without being held (`wikipedia/page_too_large`),
  and decompression hands out at most CHUNK_BYTES at a time (`wikipedia_bytes.py`, which also reads byte
  ranges), so a bz2 "bomb" costs time, not memory.
- Only decompressor and framing errors are corrupt input. I/O errors (timeouts, connection resets, also
  during a bz2 stream probe) and MemoryError propagate, so the unit is retried, never cached short.
- Byte ranges: for uncompressed XML a unit owns the pages whose `<page>` starts in [start, end); for bz2
  a unit owns the bz2 streams that start in [start, end) (a stream header `BZh[1-9]` followed by the
  block magic `1AY&SY`, verified by decompressing). A unit reads past `end` only to finish its last page.
- Wikitext to text (`tasks/sources/wikitext.py`), two interchangeable paths (`WikipediaSource.wikitext`):
  `fast` (default): one linear pass each for comments, refs and other invisible tags, `{{templates}}`
  and `{| tables |}` (a brace stack), then `[[links]]` (display text kept; file, category and
  interlanguage links dropped, namespace names read from the dump's siteinfo), external links,
  headings, lists and bold/italic. `mwparserfromhell`: parse the page, remove templates, refs, tables,
  file/category/interlanguage links, then `strip_code()`.

Measured on one core of this machine (conversion only, the 106 main-namespace articles of the enwiki
2016 sample in ../shared/data, 5.7 MB of wikitext, best of 3):
  fast path                              ~490 pages/s, ~26 MB/s of wikitext
  mwparserfromhell path (tree walk)       ~43 pages/s, ~2.4 MB/s
  plain mwparserfromhell parse().strip_code()  ~43 pages/s, ~2.3 MB/s (and it keeps refs and tables)
End to end (bz2 decompression, XML, conversion) the 1.7 MB file reads in 0.45 s (fast) vs 2.6 s.
On the sample the two paths agree on 99.8% of words on average; where they differ it is mostly tables
that mwparserfromhell fails to parse and leaves as markup. The fast path is linear on adversarial pages
(under 1 s per MB: tests/unit/test_wikitext_adversarial.py); its scanners replaced backtracking regexes with
the same output on all 3,418 pages of the four samples, and took 0.65 s for the enwiki sample's 206 pages
where the regexes took 0.85 s (best of 3, on a loaded machine).
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Set
from urllib.parse import quote, urlsplit

from data_specs.sources import WikipediaSource
from tasks.common.documents import Document, Dropped
from tasks.common.io import DECODE_ERRORS, is_corrupt_data, open_decompressed, open_raw, sniff_compression
from tasks.sources.core import ReaderError, WorkUnit
from tasks.sources.wikipedia_bytes import decompressed_chunks
from tasks.sources.wikitext import (  # noqa: F401 - wikitext_to_text* re-exported for callers
    CANONICAL_DROP,
    ns_key,
    wikitext_to_text,
    wikitext_to_text_mwparserfromhell,
)

SOURCE = "wikipedia"

_PAGE_OPEN = b"<page>"
_PAGE_CLOSE = b"</page>"
_PAGE_ID = re.compile(rb"<id>\s*(\d+)\s*</id>")
_HEAD_BYTES = 64 << 10  # what is kept of an oversized page: its title and <id> come first


def splittable(url: str) -> bool:
    """Whether a dump can be read in byte ranges: uncompressed XML and bz2 (by stream)."""
    with open_raw(url) as f:
        head = f.read(8)
    return sniff_compression(head) in ("none", "bz2")


# --------------------------------------------------------------------------------------------------
# Reading


def read_wikipedia(source: WikipediaSource, unit: WorkUnit) -> Iterator[Document | Dropped]:
    """Yield a Document per kept page and a Dropped per page seen and not kept.

    Raises `ReaderError` before any page when the wiki cannot be named (see the module docstring), and after
    the complete pages when the input is corrupt or truncated. I/O errors (timeouts, resets) propagate.
    """
    site = _siteinfo(unit.url, source.wiki)
    converter = wikitext_to_text if source.wikitext == "fast" else wikitext_to_text_mwparserfromhell
    keep_ns = set(source.namespaces)
    for block, whole in _page_blocks(unit, source.max_page_bytes):
        if whole:
            yield _page_record(block, site, keep_ns, source.keep_redirects, unit.url, converter)
        else:
            yield Dropped(_block_id(block, site), f"{SOURCE}/page_too_large")


_DROP_NAMESPACES = ("-2", "6", "14")  # Media, File, Category
_WIKI_NAME = re.compile(r"[A-Za-z0-9_.-]+")
# The dump convention, e.g. `enwiki-20240301-pages-articles-multistream.xml.bz2`,
# `dewiki-latest-pages-articles1.xml-p1p297012.bz2`, `enwiktionary-20240301-pages-meta-current.xml.bz2`.
_DUMP_NAME = re.compile(r"([a-z0-9_]+)-(?:\d{8}|latest)-pages-(?:articles|meta-current|meta-history)")
SITEINFO_LIMIT = 1 << 20  # siteinfo is a few KB; a dump with none in its first MiB has none at all
NO_SITEINFO = f"{SOURCE}/no_siteinfo"  # the note on each Document of a dump read without siteinfo


class _Site:
    """What the siteinfo header tells us: the wiki's name, the article URL prefix, file/category namespaces.

    `notes` is what every Document of the dump carries (`wikipedia/no_siteinfo` when there was none)."""

    def __init__(self, wiki: str, base: str | None, drop_prefixes: Set[str], notes: tuple[str, ...] = ()) -> None:
        self.wiki = wiki
        self.article_prefix = base.rsplit("/", 1)[0] + "/" if base and "/" in base else None
        self.drop_prefixes = drop_prefixes
        self.notes = notes


def _siteinfo(url: str, wiki: str | None = None, limit: int = SITEINFO_LIMIT) -> _Site:
    """Read the siteinfo header at the start of the dump (a few KB; the first bz2 stream in multistream).

    Raises `ReaderError` when the header is damaged or the wiki cannot be named (`parse_siteinfo`); I/O
    errors propagate (the unit is retried), only decompressor errors before a complete header are corrupt input.
    """
    head = b""
    try:
        with open_decompressed(url) as (stream, _):
            read = getattr(stream, "read1", stream.read)  # one raw read at a time, as in `decompressed_chunks`
            while len(head) < limit and b"</siteinfo>" not in head and _PAGE_OPEN not in head:
                chunk = read(64 << 10)
                if not chunk:
                    break
                head += chunk
    except DECODE_ERRORS as exc:  # damage after a complete header is the page scan's to report
        if not is_corrupt_data(exc):
            raise
        if b"</siteinfo>" not in head:
            raise ReaderError(f"cannot read the dump's siteinfo header: {type(exc).__name__}: {exc}") from exc
    return parse_siteinfo(head, url, wiki)


def parse_siteinfo(head: bytes, url: str = "", wiki: str | None = None) -> _Site:
    """The `_Site` of a dump from its first bytes (up to `</siteinfo>`), its URL and the spec's `wiki`.

    A dump with no `<siteinfo>` before its first page is named by `wiki`, else by a file name that follows
    the dump convention, and uses MediaWiki's canonical namespace names (noted on every Document).
    `ReaderError` when the header is damaged, names another wiki than `wiki`, or no name can be found.
    """
    if not head.strip():
        raise ReaderError("empty input: no siteinfo header and no pages")
    start, end = head.find(b"<siteinfo>"), head.find(b"</siteinfo>")
    page = head.find(_PAGE_OPEN)
    if start < 0 or 0 <= page < start:
        return _site_without_siteinfo(url, wiki, "before the first <page>" if page >= 0 else f"in the first {len(head)} bytes")
    if end < 0 or (0 <= page < end):
        raise ReaderError(
            "no complete <siteinfo> header before the first <page> (it is cut or damaged): the namespace names "
            "and the wiki's name are unknown; repair the dump's header, or remove <siteinfo> entirely and set "
            "`wiki:` on the source"
        )
    try:
        info = ET.fromstring(head[start : end + len(b"</siteinfo>")].decode("utf-8", errors="replace"))
    except ET.ParseError as exc:
        raise ReaderError(f"malformed <siteinfo> header: {exc}") from exc
    base = _child_text(info, "base")
    dbname = (_child_text(info, "dbname") or "").strip()
    if dbname and wiki and dbname != wiki:
        raise ReaderError(
            f"the dump's siteinfo names the wiki {dbname!r} but the source's `wiki` is {wiki!r}: fix or remove "
            "`wiki:` in the spec (the siteinfo's <dbname> is used when the dump has one)"
        )
    name = dbname or wiki or (urlsplit(base.strip()).hostname if base else None) or ""
    if not _WIKI_NAME.fullmatch(name):
        raise ReaderError(
            f"siteinfo names no usable wiki (<dbname> {dbname!r}, <base> {base!r}): ids would collide; set "
            "`wiki:` on the source (e.g. wiki: enwiki)"
        )
    drop = set(CANONICAL_DROP)
    for ns in info.iter():
        if _local(ns.tag) == "namespace" and ns.get("key") in _DROP_NAMESPACES and ns.text and ns.text.strip():
            drop.add(ns_key(ns.text))
    return _Site(name, base.strip() if base else None, drop)


def _site_without_siteinfo(url: str, wiki: str | None, where: str) -> _Site:
    """A dump with no siteinfo: the wiki from the spec or the file name, canonical namespace names."""
    path = urlsplit(url).path if "://" in url else url
    m = _DUMP_NAME.match(os.path.basename(path))
    name = wiki or (m.group(1) if m else None)
    if name is None:
        raise ReaderError(
            f"no complete <siteinfo> header {where}, and the file name does not follow the dump convention "
            "(<dbname>-<date>-pages-articles...): the wiki's name (part of every document id) is unknown; "
            "set `wiki:` on this wikipedia source (e.g. wiki: enwiki)"
        )
    return _Site(name, None, CANONICAL_DROP, notes=(NO_SITEINFO,))


def _block_id(block: bytes, site: _Site) -> str | None:
    """The document id of a page from its raw bytes (its first `<id>`), for a page that is not parsed."""
    m = _PAGE_ID.search(block)
    return f"{SOURCE}/{site.wiki}/{m.group(1).decode()}" if m else None


def _page_blocks(unit: WorkUnit, max_page_bytes: int) -> Iterator[tuple[bytes, bool]]:
    """Yield `(bytes, True)` for each owned `<page>...</page>` block, `(head, False)` for one over
    `max_page_bytes` (its first bytes only: it is skipped, never held whole); raise ReaderError on damage."""
    buf = bytearray()
    received = 0  # stream offset of buf[len(buf)] (bytes received so far)
    buf_offset = 0  # stream offset of buf[0]
    owned_limit = 0  # pages whose <page> starts before this stream offset are ours
    last_owned = True
    n_pages = 0
    search_close_from = -1
    got_any = False
    skipped_head: bytes | None = None  # set while skipping an oversized page up to its </page>
    chunks = decompressed_chunks(unit)
    while True:
        try:
            chunk, owned_len = next(chunks)
            failure = None
        except StopIteration:
            chunk, failure = None, None
        except ReaderError as exc:
            chunk, failure = None, exc
        except DECODE_ERRORS as exc:  # decompressor errors end the unit after the complete pages
            if not is_corrupt_data(exc):
                raise  # an I/O error (timeout, reset): the unit is retried, never shipped short
            chunk, failure = None, exc
        if chunk is not None:
            got_any = True
            if owned_len:
                owned_limit = received + owned_len
            last_owned = owned_len == len(chunk)
            received += len(chunk)
            buf += chunk
        # Emit every complete page in the buffer.
        while True:
            if skipped_head is not None:
                close_at = buf.find(_PAGE_CLOSE)
                if close_at < 0:  # keep only a tail that may hold a split "</page>"
                    cut = max(0, len(buf) - len(_PAGE_CLOSE) + 1)
                    del buf[:cut]
                    buf_offset += cut
                    break
                end = close_at + len(_PAGE_CLOSE)
                del buf[:end]
                buf_offset += end
                n_pages += 1
                yield skipped_head, False
                skipped_head = None
                continue
            open_at = buf.find(_PAGE_OPEN)
            if open_at < 0:
                # keep a tail that may hold a split "<page>" tag, or the closing </mediawiki>
                keep = 64
                if len(buf) > keep:
                    tail = bytes(buf[-keep:])
                    buf_offset += len(buf) - keep
                    buf = bytearray(tail)
                search_close_from = -1
                break
            if buf_offset + open_at >= owned_limit:
                return  # owned bytes are over (later chunks are not ours): the next page is the next unit's
            close_at = buf.find(_PAGE_CLOSE, max(open_at, search_close_from))
            if close_at < 0:
                search_close_from = max(open_at, len(buf) - len(_PAGE_CLOSE))
                if len(buf) - open_at > max_page_bytes:  # a page bomb or a damaged dump: skip to its </page>
                    skipped_head = bytes(buf[open_at : open_at + _HEAD_BYTES])
                    cut = len(buf) - len(_PAGE_CLOSE) + 1
                    del buf[:cut]
                    buf_offset += cut
                    search_close_from = -1
                    continue
                break
            end = close_at + len(_PAGE_CLOSE)
            fits = end - open_at <= max_page_bytes
            block = bytes(buf[open_at : end if fits else open_at + _HEAD_BYTES])
            del buf[:end]
            buf_offset += end
            search_close_from = -1
            n_pages += 1
            yield block, fits
        if chunk is None:
            break
    # End of stream (or damage): complete pages are out; now say what is wrong, if anything.
    open_at = buf.find(_PAGE_OPEN)
    if failure is not None:
        raise ReaderError(
            f"corrupt or truncated input after {n_pages} complete pages: {type(failure).__name__}: {failure}"
        ) from failure
    if skipped_head is not None:
        raise ReaderError(
            f"truncated input: a <page> over max_page_bytes ({max_page_bytes}) never closes; {n_pages} complete "
            "pages were read"
        )
    if open_at >= 0:
        raise ReaderError(
            f"truncated input: a <page> at byte {buf_offset + open_at} of the decompressed stream never "
            f"closes; {n_pages} complete pages were read"
        )
    whole = unit.start is None and unit.end is None
    if (whole or (got_any and last_owned)) and b"</mediawiki>" not in buf:
        what = "empty input" if not got_any else "truncated input: no closing </mediawiki>"
        raise ReaderError(f"{what} after {n_pages} complete pages")


def _page_record(block: bytes, site: _Site, keep_ns: set[int], keep_redirects: bool, origin: str, converter) -> Document | Dropped:  # noqa: ANN001, E501
    """One page's record. Any error inside the page is that page's `Dropped` (`malformed_page` for its XML,
    `convert_error` for its wikitext), never the file's: a retry would meet it again."""
    try:
        page = ET.fromstring(block.decode("utf-8", errors="replace"))
        page_id = _child_text(page, "id")
        title = _child_text(page, "title") or ""
        ns_text = _child_text(page, "ns")
        ns = int(ns_text) if ns_text and ns_text.strip().lstrip("-").isdigit() else 0
        revision = next((c for c in page if _local(c.tag) == "revision"), None)
        if not page_id or revision is None:
            raise ValueError("page without <id> or <revision>")
    except (ET.ParseError, ValueError):
        return Dropped(_block_id(block, site), f"{SOURCE}/malformed_page")
    doc_id = f"{SOURCE}/{site.wiki}/{page_id.strip()}"
    if ns not in keep_ns:
        return Dropped(doc_id, f"{SOURCE}/namespace")
    if not keep_redirects and any(_local(c.tag) == "redirect" for c in page):
        return Dropped(doc_id, f"{SOURCE}/redirect")
    wikitext = _child_text(revision, "text") or ""
    try:
        text = converter(wikitext, site.drop_prefixes)
    except MemoryError:
        raise  # not the page's fault: the unit is retried
    except Exception:  # noqa: BLE001 - a converter bug or a page it cannot handle costs this page only
        return Dropped(doc_id, f"{SOURCE}/convert_error")
    url = site.article_prefix + quote(title.replace(" ", "_"), safe="/:()'!,*") if site.article_prefix else None
    return Document(
        id=doc_id,
        text=text,
        source=SOURCE,
        url=url,
        title=title,
        date=_child_text(revision, "timestamp"),
        origin=origin,
        notes=site.notes,
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child_text(elem: ET.Element, name: str) -> str | None:
    for child in elem:
        if _local(child.tag) == name:
            return child.text
    return None
