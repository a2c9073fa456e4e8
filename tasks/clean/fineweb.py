"""FineWeb's own rules (Penedo et al. 2024), deciding as datatrove 0.10.1's `FineWebQualityFilter` does.

`fineweb_filter(stats, spec)` returns a `Verdict`. As in datatrove: lines are the non-blank lines of
`text.split("\\n")`; a line is punctuated when it ends in one of `stop_chars` (default datatrove's
`TERMINAL_PUNCTUATION`: sentence terminators of every script, quotes not among them); every comparison is
strict (`<` for the punctuated fraction, `>` for the others); the newline ratio divides by all tokens,
punctuation included (datatrove's word tokens). A document without a non-blank line is dropped
(`fineweb/empty`).

Deliberate difference, off by default: `stop_chars` may add the quotes (lmpipe's earlier rule, which let
dialogue lines such as `"Come in," she said."` count as punctuated). Measured under the FineWeb recipe: on
the 335 web documents of the samples it changes nothing (23 kept either way); of the 1,178 ~400-word book
passages as cut it keeps 381 instead of 277 (hard-wrapped prose fails the rule either way).
"""

from __future__ import annotations

from data_specs.clean import FineWebSpec
from tasks.clean.text_stats import TERMINAL_PUNCTUATION, TextStats
from tasks.common.documents import Verdict


def line_punct_frac(stats: TextStats, stop_chars: tuple[str, ...] | None = None) -> float:
    """Fraction of non-blank lines ending in one of `stop_chars` (None: datatrove's terminal punctuation)."""
    lines = stats.nonempty_lines
    if not lines:
        return 0.0
    if stop_chars is None:
        n = sum(1 for line in lines if line[-1] in TERMINAL_PUNCTUATION)
    else:
        n = sum(1 for line in lines if line.endswith(stop_chars))
    return n / len(lines)


def short_line_frac(stats: TextStats, length: int) -> float:
    """Fraction of non-blank lines of at most `length` characters."""
    lines = stats.nonempty_lines
    return sum(1 for line in lines if len(line) <= length) / len(lines) if lines else 0.0


def fineweb_filter(stats: TextStats, spec: FineWebSpec) -> Verdict:
    """Drop list-like, boilerplate-heavy and line-repetitive documents."""
    text = stats.text
    if not stats.nonempty_lines:
        return False, "fineweb/empty"
    if spec.line_punct_thr is not None:
        ratio = line_punct_frac(stats, spec.stop_chars)
        if ratio < spec.line_punct_thr and not (ratio == 0 and spec.line_punct_exclude_zero):
            return False, "fineweb/line_punct_ratio"
    if spec.short_line_thr is not None and short_line_frac(stats, spec.short_line_length) > spec.short_line_thr:
        return False, "fineweb/short_line_ratio"
    if spec.char_duplicates_ratio is not None:
        # duplicates among non-blank lines, divided by the text without newlines (datatrove)
        dup_chars = stats.line_duplicates[1]
        if dup_chars / max(1, len(text) - text.count("\n")) > spec.char_duplicates_ratio:
            return False, "fineweb/char_dup_ratio"
    if spec.new_line_ratio is not None and text.count("\n") / max(1, len(stats.tokens)) > spec.new_line_ratio:
        return False, "fineweb/list_ratio"
    return True, None
