"""Wikitext to plain text, for the Wikipedia reader: a fast linear stripper and a full-parser reference.

`wikitext_to_text` (the reader's default, `WikipediaSource.wikitext: fast`) drops comments, refs and other
invisible tags, `{{templates}}` and `{| tables |}`, file/category/interlanguage links, and keeps the display
text of links, external links and headings. `wikitext_to_text_mwparserfromhell` does the same from
mwparserfromhell's parse tree (slower; the reference). See `tasks/sources/wikipedia.py` for measurements.
"""

from __future__ import annotations

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

_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.S)
_INVISIBLE = "ref|references|gallery|timeline|imagemap|math|chem|ce|score|graph|mapframe|syntaxhighlight|source|templatedata|noinclude|inputbox|categorytree|hiero"  # noqa: E501
_SELF_CLOSING = re.compile(rf"<(?:{_INVISIBLE})\b[^>]*/\s*>", re.I)
_PAIRED = re.compile(rf"<({_INVISIBLE})\b[^>]*>.*?</\1\s*>", re.I | re.S)
_ANY_TAG = re.compile(r"</?[a-zA-Z][a-zA-Z0-9]*(?:\s[^<>]*)?/?>")
_BRACES = re.compile(r"\{\{|\}\}|^[ \t:]*\{\||^[ \t]*\|\}(?!\})", re.M)
_LINKS = re.compile(r"\[\[|\]\]")
_EXT_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
_HEADING = re.compile(r"^(={1,6})\s*(.+?)\s*\1\s*$", re.M)
_LIST = re.compile(r"^[*#:;]+\s*", re.M)
_BOLD_ITALIC = re.compile(r"'{2,}")
_MAGIC = re.compile(r"__[A-Z]+__")
_INTERLANG = re.compile(r"[a-z]{2,3}(?:-[a-z]{2,8})*")
_BLANKS = re.compile(r"\n{3,}")


def wikitext_to_text(text: str, drop_prefixes: Set[str] = CANONICAL_DROP) -> str:
    """Wikitext to plain text without a full parse (see the module docstring for what is kept)."""
    text = _COMMENT.sub("", text)
    text = _SELF_CLOSING.sub("", text)
    text = _PAIRED.sub("", text)
    text = _strip_braces(text)
    text = _strip_links(text, drop_prefixes)
    text = _ANY_TAG.sub("", text)
    text = _EXT_LINK.sub(lambda m: m.group(1) or "", text)
    text = _HEADING.sub(r"\2", text)
    text = _LIST.sub("", text)
    text = _BOLD_ITALIC.sub("", text)
    text = _MAGIC.sub("", text)
    return _tidy(html.unescape(text))


def _tidy(text: str) -> str:
    """Collapse runs of spaces inside lines and runs of blank lines."""
    return _BLANKS.sub("\n\n", "\n".join([" ".join(line.split()) for line in text.split("\n")])).strip()


def _strip_braces(text: str) -> str:
    """Drop `{{templates}}` and `{| tables |}` with nesting, in one pass over the brace tokens."""
    out: list[str] = []
    stack: list[str] = []
    last = 0
    outer = 0
    for m in _BRACES.finditer(text):
        tok = m.group().strip(" \t:")
        if tok in ("{{", "{|"):
            if not stack:
                out.append(text[last : m.start()])
                outer = m.start()
            stack.append(tok)
            continue
        if not stack:
            continue  # a stray closer is plain text
        want = "{{" if tok == "}}" else "{|"
        if want not in stack:
            continue
        while stack.pop() != want:
            pass  # close unclosed inner constructs
        if not stack:
            last = m.end()
    if stack:  # unclosed: like MediaWiki, show the rest as text (without its stray openers)
        out.append(text[outer:].replace("{{", "").replace("{|", ""))
    else:
        out.append(text[last:])
    return "".join(out)


def _strip_links(text: str, drop_prefixes: Set[str]) -> str:
    """Replace `[[target|display]]` by its display text; drop file, category and interlanguage links."""
    if "[[" not in text:
        return text
    out: list[str] = []
    depth = 0
    last = 0
    open_at = 0
    for m in _LINKS.finditer(text):
        if m.group() == "[[":
            if depth == 0:
                out.append(text[last : m.start()])
                open_at = m.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                out.append(_link_text(text[open_at + 2 : m.start()], drop_prefixes))
                last = m.end()
    out.append(text[open_at:] if depth else text[last:])
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


def _link_text(inner: str, drop_prefixes: Set[str]) -> str:
    target, sep, display = inner.partition("|")
    target = target.strip()
    if dropped_link(target, drop_prefixes):
        return ""
    if sep and display.strip():
        return _strip_links(display, drop_prefixes) if "[[" in display else display
    return target.lstrip(":").split("#", 1)[0] if not target.startswith("#") else target[1:]


# --------------------------------------------------------------------------------------------------
# Wikitext to plain text: the full parser (slow, reference)


def wikitext_to_text_mwparserfromhell(text: str, drop_prefixes: Set[str] = CANONICAL_DROP) -> str:
    """The same conversion from mwparserfromhell's full parse tree (the slow reference path).

    Walks the tree once: templates, comments, refs, tables and file/category/interlanguage links emit
    nothing; other tags, links and headings emit their visible text.
    """
    import mwparserfromhell

    return _tidy(html.unescape("".join(_mwp_walk(mwparserfromhell.parse(text), drop_prefixes))))


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
