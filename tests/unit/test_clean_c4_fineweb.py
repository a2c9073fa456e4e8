"""C4 line and document rules, FineWeb rules: one crafted document per rule; switches turn them off."""

from __future__ import annotations

import pytest

from data_specs.clean import C4Spec, FineWebSpec
from tasks.clean.c4 import count_sentences
from tests.unit._clean_helpers import GOOD, GOOD_LINES, only, reason, run, unique_words


def c4(**kw: object):
    return only(c4=C4Spec(**kw))


def fw(**kw: object):
    return only(fineweb=FineWebSpec(**kw))


def test_good_document_passes_c4_and_fineweb_unchanged():
    doc, _ = run(GOOD, only(c4=C4Spec(), fineweb=FineWebSpec()))
    assert doc is not None and doc.text == GOOD
    assert doc.signals["c4_removed_line_frac"] == 0.0


@pytest.mark.parametrize(
    ("rule", "extra_line", "switch"),
    [
        ("lorem_ipsum", "Lorem ipsum dolor sit amet, consectetur adipiscing elit.", {"filter_lorem_ipsum": False}),
        ("curly_bracket", "The function f{x} returns a value for every input.", {"filter_curly_bracket": False}),
    ],
)
def test_c4_document_rules_drop(rule: str, extra_line: str, switch: dict):
    text = GOOD + "\n" + extra_line
    assert reason(text, c4()) == f"c4/{rule}"
    assert reason(text, c4(**switch)) is None
    assert reason(text, c4(enabled=False)) is None


def test_c4_too_few_sentences():
    text = "\n".join(GOOD_LINES[:3] + ["Home", "Contact us"])
    assert reason(text, c4()) == "c4/too_few_sentences"
    assert reason(text, c4(min_num_sentences=None)) is None


def test_c4_line_rules_remove_lines_and_keep_document():
    bad = [
        "Please enable JavaScript to view the comments on this page.",
        "By continuing you agree to our Terms of Use and the rest of it.",
        "This site uses cookies to improve your experience here.",
        "Menu",
        "Two words.",
        "A heading without a full stop at the end",
        "It went on and on and on...",
        "A line with " + "x" * 1001 + " in it.",
    ]
    cited = "The keeper was born in the village in 1850.[1] He lived there all his life.[edit]"
    text = "\n".join(GOOD_LINES[:5] + bad + [cited] + GOOD_LINES[5:])
    doc, stats = run(text, c4())
    assert doc is not None and not stats
    uncited = cited.replace("[1]", "").replace("[edit]", "")
    assert doc.text.split("\n") == GOOD_LINES[:5] + [uncited] + GOOD_LINES[5:]
    assert doc.signals["c4_removed_line_frac"] == pytest.approx(len(bad) / (len(bad) + 11))


def test_c4_line_switches_keep_lines():
    text = GOOD + "\nA heading without a full stop at the end\nPlease enable javascript now."
    doc, _ = run(text, c4(filter_no_terminal_punct=False, filter_javascript=False))
    assert doc is not None and doc.text == text
    doc, _ = run(GOOD + "\nTwo words.", c4(min_words_per_line=None))
    assert doc is not None and doc.text.endswith("Two words.")
    keep_citations = c4(remove_citations=False, min_words_per_line=None, filter_no_terminal_punct=False)
    doc, _ = run(GOOD + "\nCite this.[1]", keep_citations)
    assert doc is not None and doc.text.endswith("[1]")


def test_sentence_count():
    """Counts as spaCy's sentencizer (datatrove's English sentence splitter) does on these lines."""
    assert count_sentences("One. Two! Three? \"Four.\" Five") == 5  # the unterminated tail is a sentence
    assert count_sentences("Version 3.14 is out.") == 1
    assert count_sentences("Mr. Smith saw e.g. a dog... and then left. U.S. troops") == 2
    assert count_sentences("你好。再见！") == 1  # no space after the CJK stop: spaCy keeps one token


LONG_NO_PUNCT = [" ".join(unique_words(6, seed=i)) for i in range(12)]  # lines of ~47 chars, no punctuation


@pytest.mark.parametrize(
    ("rule", "text", "switch"),
    [
        ("line_punct_ratio", "\n".join(LONG_NO_PUNCT + GOOD_LINES[:1]), {"line_punct_thr": None}),
        (
            "short_line_ratio",
            "\n".join(f"{w.capitalize()} is here." for w in unique_words(20)),
            {"short_line_thr": None},
        ),
        ("char_dup_ratio", GOOD + "\n" + GOOD_LINES[3], {"char_duplicates_ratio": None}),
        (
            "list_ratio",
            "\n".join(f"{a.capitalize()}{b}{a} {b}{a}{b}." for a, b in zip(unique_words(15), unique_words(15, 1))),
            {"new_line_ratio": None},
        ),
    ],
)
def test_fineweb_rules(rule: str, text: str, switch: dict):
    assert reason(text, fw()) == f"fineweb/{rule}"
    assert reason(text, fw(**switch)) is None
    assert reason(text, fw(enabled=False)) is None


def test_fineweb_line_punct_exclude_zero():
    text = "\n".join(LONG_NO_PUNCT)
    assert reason(text, fw()) == "fineweb/line_punct_ratio"
    assert reason(text, fw(line_punct_exclude_zero=True)) is None
