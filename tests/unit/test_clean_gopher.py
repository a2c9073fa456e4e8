"""Gopher quality and repetition rules: each crafted document trips exactly its rule; None turns it off."""

from __future__ import annotations

import pytest

from data_specs.clean import GopherQualitySpec, GopherRepetitionSpec
from tests.unit._clean_helpers import GOOD, GOOD_LINES, only, reason, unique_words

GQ = GopherQualitySpec()


def gq(**kw: object):
    return only(gopher_quality=GopherQualitySpec(**kw))


def gr(**kw: object):
    return only(gopher_repetition=GopherRepetitionSpec(**kw))


def test_good_document_passes_gopher():
    assert reason(GOOD, only(gopher_quality=GQ, gopher_repetition=GopherRepetitionSpec())) is None


LONG_WORDS = (
    "Internationalization characteristically overcomplicates the administrative "
    "responsibilities of multidisciplinary organizations, notwithstanding extraordinarily "
    "comprehensive documentation. "
)

QUALITY_CASES = {
    "min_words": (" ".join(GOOD_LINES[:2]), "min_words"),
    "max_words": (GOOD, "max_words"),  # tripped with max_words=60 below
    "min_avg_word_length": (
        "\n".join(f"I am at the top of it and we go up to be on it so do as I do {w[:2]}." for w in unique_words(6)),
        "min_avg_word_length",
    ),
    "max_avg_word_length": (
        "\n".join([LONG_WORDS] + [LONG_WORDS.replace("the", "with")] * 4),
        "max_avg_word_length",
    ),
    # 24 '#' or '...' in ~210 tokens: over 0.1 of the tokens, while 81% of the tokens still hold a letter
    "hash_word_ratio": (GOOD + "\n" + " ".join(f"#{w}" for w in unique_words(24)), "max_symbol_word_ratio"),
    "ellipsis_word_ratio": (GOOD + "\n" + " ... ".join(unique_words(25)), "max_symbol_word_ratio"),
    "bullet_lines_ratio": ("\n".join(f"• {line}" for line in GOOD_LINES), "max_bullet_lines_ratio"),
    "ellipsis_lines_ratio": (
        "\n".join(line[:-1] + "…" if i % 2 else line for i, line in enumerate(GOOD_LINES)),
        "max_ellipsis_lines_ratio",
    ),
    "alpha_words_ratio": (GOOD + "\n" + " ".join(str(1000 + i) for i in range(60)), "max_non_alpha_words_ratio"),
    "min_stop_words": (
        "\n".join(" ".join(w.capitalize() for w in unique_words(12, seed=i)) + "." for i in range(6)),
        "min_stop_words",
    ),
}


@pytest.mark.parametrize("rule", sorted(QUALITY_CASES))
def test_gopher_quality_rule_trips_alone_and_switches_off(rule: str):
    text, field = QUALITY_CASES[rule]
    on = {"max_words": 60} if rule == "max_words" else {}
    assert reason(text, gq(**on)) == f"gopher_quality/{rule}"
    assert reason(text, gq(**{**on, field: None})) is None
    assert reason(text, only(gopher_quality=GopherQualitySpec(enabled=False))) is None


def _long_line(seed: int, n: int = 30) -> str:
    return " ".join(unique_words(n, seed=seed)) + "."


def _rep_cases() -> dict[str, tuple[str, str]]:
    para = [_long_line(i) for i in range(6)]
    lines = [_long_line(100 + i) for i in range(10)]
    k, phrase = 20, "alpha beta gamma delta epsilon"
    fillers = [" ".join(unique_words(15, seed=500 + i)) for i in range(k)]
    return {
        # 4 of 11 paragraphs repeat a short paragraph: paragraph fraction trips, characters do not
        "dup_para_frac": ("\n\n".join(para + ["Yes indeed."] * 5), "dup_para_frac"),
        # one long paragraph repeated once: 1/5 paragraphs but > 20% of the characters
        "dup_para_char_frac": (
            "\n\n".join(para[:3] + [para[0]] + ["One more short closing line."]),
            "dup_para_char_frac",
        ),
        # single-newline text (one paragraph): 5 of 16 lines are a repeated short line
        "dup_line_frac": ("\n".join(lines + ["Ok."] * 6), "dup_line_frac"),
        "dup_line_char_frac": ("\n".join(lines[:3] + [lines[0], "Short tail line here."]), "dup_line_char_frac"),
        # "aa bb" between unique words: the top 2-gram covers half the characters, nothing longer repeats
        "top_2_gram": (" ".join(f"aa bb {w}" for w in unique_words(200, seed=7)), "top_n_grams"),
        # a 5-word phrase repeated between unique fillers: duplicated 5-grams > 15%, top 2/3/4-grams under
        "dup_5_gram": (" ".join(f"{phrase} {f}" for f in fillers), "dup_n_grams"),
    }


@pytest.mark.parametrize("rule", sorted(_rep_cases()))
def test_gopher_repetition_rule_trips_first_and_switches_off(rule: str):
    text, field = _rep_cases()[rule]
    assert reason(text, gr()) == f"gopher_repetition/{rule}"
    off = () if field in ("top_n_grams", "dup_n_grams") else None
    # switching the rule off: that rule no longer fires (a later rule may still catch the document)
    assert reason(text, gr(**{field: off})) != f"gopher_repetition/{rule}"
    assert reason(text, only(gopher_repetition=GopherRepetitionSpec(enabled=False))) is None


def test_single_rules_off_make_crafted_repetition_pass():
    lines = [_long_line(100 + i) for i in range(10)]
    assert reason("\n".join(lines + ["Ok."] * 6), gr(dup_line_frac=None)) is None
    assert reason(" ".join(f"aa bb {w}" for w in unique_words(200, seed=7)), gr(top_n_grams=())) is None


def test_duplicate_ngram_count_matches_reference():
    """The hashed, candidates-only walk equals datatrove's `find_all_duplicate` (n-grams joined by "")."""
    from tasks.clean.text_stats import TextStats

    def reference(words: list[str], n: int) -> int:
        unique: set[str] = set()
        repeated, idx = 0, 0
        while idx < len(words) - n + 1:
            g = "".join(words[idx : idx + n])
            if g in unique:
                repeated += len(g)
                idx += n
            else:
                unique.add(g)
                idx += 1
        return repeated

    import random

    rng = random.Random(3)
    vocab = ["a", "bb", "ccc", "dd", "e", "ff", "ggg"]
    for _ in range(30):
        text = " ".join(rng.choice(vocab) for _ in range(rng.randint(0, 300)))
        st = TextStats(text)
        for n in (2, 5, 7, 10):
            assert st.duplicate_ngram_chars(n) == reference(st.tokens, n)
