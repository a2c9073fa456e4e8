"""Wikitext conversion is linear on adversarial pages: under 1 s per MB of CPU time, where the backtracking
regexes took 11 s for 36 KB of `[//` and grew quadratically (a 1 MB vandalised page: hours).

The scanners that replace those regexes must find what the regexes found: each is checked here against its
regex (and the link stripper against the recursive one it replaces) on random markup. The real samples in
../shared/data convert identically too (3,418 pages: checked when the change was made).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable

import pytest

from tasks.sources import wikitext
from tasks.sources.wikipedia import wikitext_to_text

SIZE = 512 * 1024
SECONDS_PER_MB = 1.0


def _rep(unit: str) -> str:
    return unit * (SIZE // len(unit))


ADVERSARIAL = {
    "external link openers": _rep("[//"),  # was 11 s for 36 KB
    "external links without ]": _rep("[http://x "),
    "unclosed <ref>": _rep("<ref>"),  # was 2.3 s for 56 KB
    "<ref without >": _rep("<ref "),
    "<ref / without >": _rep("<ref /"),
    "heading with trailing spaces": "= x" + " " * SIZE,
    "heading over blank lines": "=" + " \n" * (SIZE // 2) + "x",
    "lines of =": _rep("= \n"),
    "every line a heading": _rep("== a\n"),
    "deeply nested links": "[[a|" * (SIZE // 6) + "]]" * (SIZE // 6),  # was a RecursionError past ~500 levels
    "unclosed nested links": _rep("[[a|"),
    "unclosed links": _rep("[["),
    "stray link closers": _rep("]]"),
    "table closers under templates": "{{" * (SIZE // 5) + "\n|}" * (SIZE // 5),  # was O(depth) per closer
    "comment openers": _rep("<!--"),
    "tags without >": _rep("<a "),
    "huge character reference": "&#" + "1" * SIZE,  # was a ValueError from int()
    "magic word opener": "__" + "A" * SIZE,
    "table lines": _rep("\n{|"),
    "mixed": _rep("[[a|{{b|<ref>[//x ]]== c\n"),
}


@pytest.mark.parametrize("name", ADVERSARIAL)
def test_adversarial_page_converts_in_linear_time(name):
    text = ADVERSARIAL[name]
    started = time.process_time()
    out = wikitext_to_text(text)
    seconds = time.process_time() - started
    assert isinstance(out, str)
    assert seconds < SECONDS_PER_MB * len(text) / (1 << 20), f"{name}: {seconds:.2f} s for {len(text)} bytes"


# --------------------------------------------------------------------------------------------------
# The same output as what they replace

_REF_SELF_CLOSING = re.compile(rf"<(?:{wikitext._INVISIBLE})\b[^>]*/\s*>", re.I)
_REF_PAIRED = re.compile(rf"<({wikitext._INVISIBLE})\b[^>]*>.*?</\1\s*>", re.I | re.S)
_REF_EXT_LINK = re.compile(r"\[(?:https?:|ftp:)?//[^\s\]]+(?:\s+([^\]]*))?\]")
_REF_HEADING = re.compile(r"^(={1,6})\s*(.+?)\s*\1\s*$", re.M)


def _ref_strip_links(text: str, drop: frozenset[str] = wikitext.CANONICAL_DROP) -> str:
    """The recursive link stripper the stack-based one replaces."""
    if "[[" not in text:
        return text
    out, depth, last, open_at = [], 0, 0, 0
    for m in re.finditer(r"\[\[|\]\]", text):
        if m.group() == "[[":
            if depth == 0:
                out.append(text[last : m.start()])
                open_at = m.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                target, sep, display = text[open_at + 2 : m.start()].partition("|")
                target = target.strip()
                if wikitext.dropped_link(target, drop):
                    out.append("")
                elif sep and display.strip():
                    out.append(_ref_strip_links(display, drop))
                else:
                    out.append(target.lstrip(":").split("#", 1)[0] if not target.startswith("#") else target[1:])
                last = m.end()
    out.append(text[open_at:] if depth else text[last:])
    return "".join(out)


PAIRS: dict[str, tuple[Callable[[str], str], Callable[[str], str], list[str]]] = {
    "self-closing tags": (lambda t: _REF_SELF_CLOSING.sub("", t), wikitext._drop_self_closing,
                          ["<ref", "<REF", "<references", ">", "/", " ", "\n", "</ref>", "x", "<math", "<ce", "\t"]),
    "paired tags": (lambda t: _REF_PAIRED.sub("", t), wikitext._drop_paired,
                    ["<ref", "<Ref", "<references", ">", "/", " ", "\n", "</ref>", "</ref >", "</REF\t>",
                     "</references>", "x", "<math>", "</math>", "<", "</"]),
    "external links": (lambda t: _REF_EXT_LINK.sub(lambda m: m.group(1) or "", t), wikitext._replace_external_links,
                       ["[", "]", "//", "http:", "https:", "ftp:", " ", "\n", "x", "[//", "[http://", "]]", "\t"]),
    "headings": (lambda t: _REF_HEADING.sub(r"\2", t), wikitext._strip_headings,
                 ["=", "==", " ", "\n", "x", "\t", "===", "y z", "\n\n", "======="]),
    "links": (_ref_strip_links, lambda t: wikitext._strip_links(t, wikitext.CANONICAL_DROP),
              ["[[", "]]", "|", ":", "File:", "Category:", "en:", "x", " ", "#", "[", "]", "a.jpg", "\n"]),
}


@pytest.mark.parametrize("name", PAIRS)
def test_scanner_finds_what_its_regex_found(name):
    reference, scanner, alphabet = PAIRS[name]
    rng = random.Random(name)
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 24)))
        assert scanner(text) == reference(text), repr(text)


def test_character_references_unescape_as_html_does():
    import html

    rng = random.Random(5)
    alphabet = ["&#", "&", "#", "0", "00", "1", "9", "12345678", "x", "X", "f", ";", " ", "&#x", "&amp;"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert wikitext._unescape(text) == html.unescape(text), repr(text)
    assert wikitext._unescape("&#" + "0" * 5000 + "65;") == "A"
