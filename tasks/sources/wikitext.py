"""Wikitext to plain text, for the Wikipedia reader: a fast linear stripper and a full-parser reference.

`wikitext_to_text` (the reader's default, `WikipediaSource.wikitext: fast`) drops comments, refs and other
invisible tags, `{{templates}}` and `{| tables |}`, file/category/interlanguage links, and keeps the display
text of links, external links and headings. `wikitext_to_text_mwparserfromhell` does the same from
mwparserfromhell's parse tree (slower; the reference). See `tasks/sources/wikipedia.py` for measurements.
"""

from __future__ import annotations

import bisect
import html
import re
from collections.abc import Iterator, Set

CANONICAL_DROP = frozenset({"file", "image", "media", "category"})  # English names every wiki accepts

_MEDIA_EXT = re.compile(
    r"\.(?:jpe?g|png|gif|svg|tiff?|webp|xcf|bmp|ogg|oga|ogv|webm|mp3|mp4|wav|flac|mid|midi|pdf|djvu|stl)\s*$", re.I
)


def ns_key(name: str) -> str:
    """How MediaWiki compares namespace prefixes: case-insensitive, `_` and runs of spaces are one space."""
    return " ".join(name.replace("_", " ").split()).lower()


# --------------------------------------------------------------------------------------------------
# Wikitext to plain text: the fast path
#
# Every step is linear in the page: a vandalised page (36 KB of `[//`, 56 KB of unclosed `<ref>`) took
# seconds to hours with the backtracking regexes these replace, which found the same matches. Where a
# pattern's scan could restart at each of many candidates (an unclosed `<ref` scans to the end of the page,
# then the next one does again), a small scanner finds the candidates with a regex and remembers the
# next delimiter (`>`, `]`, whitespace) it has already found, so each byte is looked at a bounded number of
# times. The regex each replaces is named in its docstring; the output is the same (tests/unit/
# test_wikitext_adversarial.py checks them against the regexes on random markup).

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_INVISIBLE = "ref|references|gallery|timeline|imagemap|math|chem|ce|score|graph|mapframe|syntaxhighlight|source|templatedata|noinclude|inputbox|categorytree|hiero"  # noqa: E501
_INVISIBLE_OPEN = re.compile(rf"<({_INVISIBLE})\b", re.I)
_INVISIBLE_CLOSE = re.compile(rf"</({_INVISIBLE})\s*>", re.I)
_ANY_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
_BRACES = re.compile(r"\{\{|\}\}|^[ \t:]*\{\||^[ \t]*\|\}(?!\})", re.M)
_LINKS = re.compile(r"\[\[|\]\]")
_EXT_OPEN = re.compile(r"\[(?:https?:|ftp:)?//")
_URL_END = re.compile(r"[\s\]]")
_SPACES = re.compile(r"\s*")
_NON_SPACE = re.compile(r"\S")
_HEADING_START = re.compile(r"^=", re.M)
_EQUALS = re.compile(r"={1,6}")
# A heading of level k: k `=`, all the spaces after them, the title (lazy: one character, or ending in a
# non-space one), spaces, k `=`, spaces to the end of a line. `_HEADING_TAIL`: the closing part alone.
_HEADING_LINE = {k: re.compile(rf"={{{k}}}\s*+(.(?:.*?\S)??)\s*+={{{k}}}\s*$", re.M) for k in range(1, 7)}
_HEADING_TAIL = {k: re.compile(rf"={{{k}}}\s*$", re.M) for k in range(1, 7)}
_CLOSER = re.compile(r"=[^\S\n]*$", re.M)  # a `=` that ends a line (trailing spaces aside)
_LIST = re.compile(r"^[*#:;]+\s*", re.M)
_BOLD_ITALIC = re.compile(r"'{2,}")
_MAGIC = re.compile(r"__[A-Z]+__")
_INTERLANG = re.compile(r"[a-z]{2,3}(?:-[a-z]{2,8})*")
_BLANKS = re.compile(r"\n{3,}")
_CHARREF_ZEROS = re.compile(r"&#0+(?=[0-9])")
_CHARREF_HUGE = re.compile(r"&#[1-9][0-9]{7,};?")


def wikitext_to_text(text: str, drop_prefixes: Set[str] = CANONICAL_DROP) -> str:
    """Wikitext to plain text without a full parse (see the module docstring for what is kept)."""
    text = _COMMENT.sub("", text)
    text = _drop_self_closing(text)
    text = _drop_paired(text)
    text = _strip_braces(text)
    text = _strip_links(text, drop_prefixes)
    text = _ANY_TAG.sub("", text)
    text = _replace_external_links(text)
    text = _strip_headings(text)
    text = _LIST.sub("", text)
    text = _BOLD_ITALIC.sub("", text)
    text = _MAGIC.sub("", text)
    return _tidy(_unescape(text))


def _unescape(text: str) -> str:
    """`html.unescape`, except that a decimal reference of 8 or more digits becomes U+FFFD (what unescape
    makes of any number past U+10FFFF) before `int()` sees it: `int()` refuses over 4300 digits."""
    if "&#" in text:
        text = _CHARREF_HUGE.sub("\ufffd", _CHARREF_ZEROS.sub("&#", text))
    return html.unescape(text)


def _tidy(text: str) -> str:
    """Collapse runs of spaces inside lines and runs of blank lines."""
    return _BLANKS.sub("\n\n", "\n".join([" ".join(line.split()) for line in text.split("\n")])).strip()


def _drop_self_closing(text: str) -> str:
    """Drop self-closing invisible tags (`<ref name=a />`): the regex `<(?:INVISIBLE)\\b[^>]*/\\s*>`, re.I.

    Such a tag ends at the first `>` after its name, and the last non-space character before that `>` is `/`.
    """
    out: list[str] = []
    last = 0
    gt = -1  # the first `>` at or after the current candidate's name (shared by the candidates before it)
    before_gt = -1  # index of the last non-space character before `gt`
    for m in _INVISIBLE_OPEN.finditer(text):
        if m.start() < last:
            continue
        name_end = m.end()
        if gt < name_end:
            gt = text.find(">", name_end)
            if gt < 0:
                break  # no `>` after this point: no more tags
            before_gt = name_end + len(text[name_end:gt].rstrip()) - 1
        if before_gt >= name_end and text[before_gt] == "/":
            out.append(text[last : m.start()])
            last = gt + 1
    out.append(text[last:])
    return "".join(out)


def _drop_paired(text: str) -> str:
    """Drop invisible elements with their content (`<ref>...</ref>`, `<math>`): the regex
    `<(INVISIBLE)\\b[^>]*>.*?</\\1\\s*>`, re.I | re.S.

    An element opens at the first `>` after its name and ends at the first closing tag of the same name
    after that; an opening tag with no such closing tag is left as it is.
    """
    out: list[str] = []
    last = 0
    gt = -1
    closes: dict[str, tuple[list[int], list[int]]] | None = None  # name -> (starts, ends) of its closing tags
    for m in _INVISIBLE_OPEN.finditer(text):
        if m.start() < last:
            continue
        if gt < m.end():
            gt = text.find(">", m.end())
            if gt < 0:
                break
        if closes is None:
            closes = {}
            for c in _INVISIBLE_CLOSE.finditer(text):
                starts, ends = closes.setdefault(c.group(1).lower(), ([], []))
                starts.append(c.start())
                ends.append(c.end())
        starts, ends = closes.get(m.group(1).lower(), ([], []))
        i = bisect.bisect_left(starts, gt + 1)
        if i < len(starts):
            out.append(text[last : m.start()])
            last = ends[i]
    out.append(text[last:])
    return "".join(out)


def _replace_external_links(text: str) -> str:
    """`[http://x.org title]` to `title`, `[//x.org]` to nothing: the regex
    `\\[(?:https?:|ftp:)?//[^\\s\\]]+(?:\\s+([^\\]]*))?\\]` replaced by its group 1.

    The URL runs to the first space or `]`; at `]` the link ends there, at a space it ends at the next `]`
    (its title is what follows the spaces); with no `]` after it, it is text.
    """
    out: list[str] = []
    last = 0
    n = len(text)
    url_end = -1  # the first space or `]` at or after the current URL's start (n: none)
    close = -1  # the first `]` at or after `url_end` (n: none)
    for m in _EXT_OPEN.finditer(text):
        if m.start() < last:
            continue
        url = m.end()
        if url_end < url:
            found = _URL_END.search(text, url)
            url_end = found.start() if found else n
        if url_end == url or url_end == n:
            continue  # an empty URL, or one that runs to the end of the page
        if text[url_end] == "]":
            out.append(text[last : m.start()])
            last = url_end + 1
            continue
        if close < url_end:
            close = text.find("]", url_end)
            close = n if close < 0 else close
        if close == n:
            continue
        out.append(text[last : m.start()])
        out.append(text[_SPACES.match(text, url_end).end() : close])
        last = close + 1
    out.append(text[last:])
    return "".join(out)


def _strip_headings(text: str) -> str:
    """`== Title ==` to `Title`: the regex `^(={1,6})\\s*(.+?)\\s*\\1\\s*$`, re.M, replaced by its group 2.

    Its quirks are kept (its spaces may span lines: the title can start on a later line, and the blank lines
    after a heading go with it); `_heading_at` tries its alternatives in the regex's order.
    """
    if "=" not in text:
        return text
    out: list[str] = []
    last = 0
    closers = [m.start() for m in _CLOSER.finditer(text)]
    for m in _HEADING_START.finditer(text):
        if m.start() < last:
            continue
        # A heading ends with `=` before the end of a line: without such a line after `start`, none can match
        # here (every later start is then skipped in O(log n), e.g. a page of "== a" lines).
        if bisect.bisect_right(closers, m.start()) == len(closers):
            break
        hit = _heading_at(text, m.start())
        if hit is not None:
            title_start, title_end, end = hit
            out.append(text[last : m.start()])
            out.append(text[title_start:title_end])
            last = end
    out.append(text[last:])
    return "".join(out)


def _heading_at(text: str, start: int) -> tuple[int, int, int] | None:
    """The heading regex's match at line start `start`: (title start, title end, match end), or None.

    For each level k (longest first), the spaces after the `=`s are taken whole first: the title starts at
    the first non-space character and the lazy title is the first that the closing `=`s follow
    (`_HEADING_LINE`). With fewer of those spaces, the title starts on a space; its first candidate is that
    one space, whose closing `=`s are the same for every such start, so one `_HEADING_TAIL` check decides
    them all (longer titles from there were already tried from the first non-space character).
    """
    level = _EQUALS.match(text, start).end() - start
    for k in range(level, 0, -1):
        line = _HEADING_LINE[k].match(text, start)
        if line is not None:
            return line.start(1), line.end(1), line.end()
        after = start + k
        first = _SPACES.match(text, after).end()
        if first > after:
            tail = _HEADING_TAIL[k].match(text, first)
            if tail is not None:
                title = after + len(text[after:first].rstrip("\n")) - 1  # the last space that is not a newline
                if title >= after:
                    return title, title + 1, tail.end()
    return None


def _strip_braces(text: str) -> str:
    """Drop `{{templates}}` and `{| tables |}` with nesting, in one pass over the brace tokens."""
    out: list[str] = []
    stack: list[str] = []
    open_count = {"{{": 0, "{|": 0}  # how many of each are on the stack (`want in stack` would be O(depth))
    last = 0
    outer = 0
    for m in _BRACES.finditer(text):
        tok = m.group().strip(" \t:")
        if tok in ("{{", "{|"):
            if not stack:
                out.append(text[last : m.start()])
                outer = m.start()
            stack.append(tok)
            open_count[tok] += 1
            continue
        if not stack:
            continue  # a stray closer is plain text
        want = "{{" if tok == "}}" else "{|"
        if not open_count[want]:
            continue
        while True:  # close unclosed inner constructs
            popped = stack.pop()
            open_count[popped] -= 1
            if popped == want:
                break
        if not stack:
            last = m.end()
    if stack:  # unclosed: like MediaWiki, show the rest as text (without its stray openers)
        out.append(text[outer:].replace("{{", "").replace("{|", ""))
    else:
        out.append(text[last:])
    return "".join(out)


def _strip_links(text: str, drop_prefixes: Set[str]) -> str:
    """Replace `[[target|display]]` by its display text; drop file, category and interlanguage links.

    Links inside a display text are stripped too. One pass matches every `[[` with its `]]`; the links of a
    display text are then visited from a stack (no recursion: any nesting depth, linear time), each range
    starting where a `|` ends the target (a nested link's `|` can end it: `[[a[[b|c]]|d]]` shows `c]]|d`).
    """
    if "[[" not in text:
        return text
    opens: list[int] = []
    match: dict[int, int] = {}  # `[[` offset -> offset of its `]]`
    pending: list[int] = []
    for m in _LINKS.finditer(text):
        if m.group() == "[[":
            opens.append(m.start())
            pending.append(m.start())
        elif pending:
            match[pending.pop()] = m.start()
    out: list[str] = []
    emit, find, first_opener, has_text = out.append, text.find, bisect.bisect_left, _NON_SPACE.search
    ranges = [(0, len(text))]  # text still to emit, each range stripped of its own top-level links
    push, pop = ranges.append, ranges.pop
    while ranges:
        pos, end = pop()
        i = first_opener(opens, pos)
        close = match.get(opens[i], end) if i < len(opens) and opens[i] < end else end
        if close >= end:  # no link here, or one that does not close inside the range: the rest is text
            emit(text[pos:end])
            continue
        at = opens[i]
        emit(text[pos:at])
        if close + 2 < end:
            push((close + 2, end))
        pipe = find("|", at + 2, close)
        target = text[at + 2 : close if pipe < 0 else pipe].strip()
        if ":" in target and dropped_link(target, drop_prefixes):
            continue
        if pipe >= 0 and has_text(text, pipe + 1, close):
            push((pipe + 1, close))  # the display text, with its own links
            continue
        emit(target.lstrip(":").split("#", 1)[0] if not target.startswith("#") else target[1:])
    return "".join(out)


def dropped_link(target: str, drop_prefixes: Set[str]) -> bool:
    """Whether `[[target|...]]` shows nothing: a file, category or interlanguage link.

    A leading `:` makes a link inline (`[[:Category:X]]` shows text). `drop_prefixes` holds the wiki's
    Media/File/Category namespace names as `ns_key` keys; a prefixed target ending in a media file
    extension is a file link under any alias.
    """
    target = target.strip()
    if ":" not in target or target.startswith(":"):
        return False
    prefix = ns_key(target.split(":", 1)[0])
    return prefix in drop_prefixes or bool(_INTERLANG.fullmatch(prefix)) or bool(_MEDIA_EXT.search(target))



# --------------------------------------------------------------------------------------------------
# Wikitext to plain text: the full parser (slow, reference)


def wikitext_to_text_mwparserfromhell(text: str, drop_prefixes: Set[str] = CANONICAL_DROP) -> str:
    """The same conversion from mwparserfromhell's full parse tree (the slow reference path).

    Walks the tree once: templates, comments, refs, tables and file/category/interlanguage links emit
    nothing; other tags, links and headings emit their visible text.
    """
    import mwparserfromhell

    return _tidy(_unescape("".join(_mwp_walk(mwparserfromhell.parse(text), drop_prefixes))))


_MWP_DROP_TAGS = set(_INVISIBLE.split("|")) | {"table"}


def _mwp_walk(code, drop_prefixes: Set[str]) -> Iterator[str]:  # noqa: ANN001, C901
    from mwparserfromhell import nodes

    for node in code.nodes:
        if isinstance(node, nodes.Text):
            yield node.value
        elif isinstance(node, (nodes.Template, nodes.Comment, nodes.Argument)):
            continue
        elif isinstance(node, nodes.Tag):
            if str(node.tag).strip().lower() in _MWP_DROP_TAGS:
                continue
            if node.contents is not None:
                yield from _mwp_walk(node.contents, drop_prefixes)
            if str(node.tag).lower() in ("li", "dt", "dd", "br", "p", "tr"):
                yield "\n"
        elif isinstance(node, nodes.Wikilink):
            target = str(node.title).strip()
            if dropped_link(target, drop_prefixes):
                continue
            if node.text is not None and str(node.text).strip():
                yield from _mwp_walk(node.text, drop_prefixes)
            else:
                yield target.lstrip(":").split("#", 1)[0]
        elif isinstance(node, nodes.ExternalLink):
            if node.brackets:
                if node.title is not None:
                    yield from _mwp_walk(node.title, drop_prefixes)
            else:
                yield str(node.url)
        elif isinstance(node, nodes.Heading):
            yield from _mwp_walk(node.title, drop_prefixes)
        elif isinstance(node, nodes.HTMLEntity):
            yield node.normalize()
