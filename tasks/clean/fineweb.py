"""FineWeb's own rules (Penedo et al. 2024), as datatrove's `FineWebQualityFilter`.

`fineweb_filter(stats, spec)` returns a `Verdict`. Comparisons (`<=`, `>=`) are datatrove's. Word count for
the newline ratio uses `TextStats.tokens` (punctuation included, as nltk's `word_tokenize` there).
"""

from __future__ import annotations

from data_specs.clean import FineWebSpec
from tasks.clean.text_stats import TERMINAL_PUNCT, TextStats
from tasks.common.documents import Verdict


def line_punct_frac(stats: TextStats) -> float:
    """Fraction of lines (`split("\\n")`) ending in terminal punctuation."""
    lines = stats.lines
    return sum(1 for line in lines if line.endswith(TERMINAL_PUNCT)) / len(lines)


def short_line_frac(stats: TextStats, length: int) -> float:
    lines = stats.lines
    return sum(1 for line in lines if len(line) <= length) / len(lines)


def fineweb_filter(stats: TextStats, spec: FineWebSpec) -> Verdict:
    """Drop list-like, boilerplate-heavy and line-repetitive documents."""
    text = stats.text
    if spec.line_punct_thr is not None:
        ratio = line_punct_frac(stats)
        if ratio <= spec.line_punct_thr and not (ratio == 0 and spec.line_punct_exclude_zero):
            return False, "fineweb/line_punct_ratio"
    if spec.short_line_thr is not None and short_line_frac(stats, spec.short_line_length) >= spec.short_line_thr:
        return False, "fineweb/short_line_ratio"
    if spec.char_duplicates_ratio is not None:
        # duplicates among non-empty lines, divided by the text without newlines (datatrove)
        dup_chars = stats.line_duplicates[1]
        if dup_chars / max(1, len(text) - text.count("\n")) >= spec.char_duplicates_ratio:
            return False, "fineweb/char_dup_ratio"
    if spec.new_line_ratio is not None and text.count("\n") / max(1, len(stats.tokens)) > spec.new_line_ratio:
        return False, "fineweb/list_ratio"
    return True, None
