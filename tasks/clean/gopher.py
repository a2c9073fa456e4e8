"""Gopher repetition and quality rules (Rae et al. 2021, Table A1), as datatrove implements them.

`gopher_repetition(stats, spec)` and `gopher_quality(stats, spec)` return a `Verdict`: `(True, None)` to keep,
`(False, "gopher_*/<rule>")` to drop. A rule whose threshold is `None` is off. Differences from datatrove
(`gopher_repetition_filter.py`, `gopher_quality_filter.py`):

- tokens come from `TextStats` (one regex instead of nltk's `word_tokenize`, see `text_stats.py`);
- duplicate lines are counted over non-empty lines (datatrove's current `\\n+` line split), so blank lines
  between paragraphs are not "duplicates";
- a document with no words at all is dropped as `gopher_quality/no_words` (datatrove divides by zero).
"""

from __future__ import annotations

from data_specs.clean import GopherQualitySpec, GopherRepetitionSpec
from tasks.clean.text_stats import TextStats
from tasks.common.documents import Verdict

KEEP: Verdict = (True, None)


def gopher_repetition(stats: TextStats, spec: GopherRepetitionSpec) -> Verdict:
    """Drop documents made of repeated paragraphs, lines or word n-grams."""
    n_chars = len(stats.text)
    if n_chars == 0:
        return KEEP

    paragraphs = stats.paragraphs
    para_dups, para_dup_chars = stats.paragraph_duplicates
    if spec.dup_para_frac is not None and para_dups / len(paragraphs) > spec.dup_para_frac:
        return False, "gopher_repetition/dup_para_frac"
    if spec.dup_para_char_frac is not None and para_dup_chars / n_chars > spec.dup_para_char_frac:
        return False, "gopher_repetition/dup_para_char_frac"

    lines = stats.nonempty_lines
    line_dups, line_dup_chars = stats.line_duplicates
    if spec.dup_line_frac is not None and lines and line_dups / len(lines) > spec.dup_line_frac:
        return False, "gopher_repetition/dup_line_frac"
    if spec.dup_line_char_frac is not None and line_dup_chars / n_chars > spec.dup_line_char_frac:
        return False, "gopher_repetition/dup_line_char_frac"

    denom = stats.ngram_chars
    for n, frac in spec.top_n_grams:
        if stats.top_ngram_chars(n) / denom > frac:
            return False, f"gopher_repetition/top_{n}_gram"
    for n, frac in spec.dup_n_grams:
        if stats.duplicate_ngram_chars(n, stop_above=frac * denom) / denom > frac:
            return False, f"gopher_repetition/dup_{n}_gram"
    return KEEP


def gopher_quality(stats: TextStats, spec: GopherQualitySpec) -> Verdict:
    """Drop documents that do not look like prose: too short or long, odd word lengths, symbol-heavy, lists."""
    text = stats.text
    n_words = len(stats.words)
    if spec.min_words is not None and n_words < spec.min_words:
        return False, "gopher_quality/min_words"
    if n_words == 0:
        return False, "gopher_quality/no_words"
    if spec.max_words is not None and n_words > spec.max_words:
        return False, "gopher_quality/max_words"

    mean_len = stats.mean_word_length
    if spec.min_avg_word_length is not None and mean_len < spec.min_avg_word_length:
        return False, "gopher_quality/min_avg_word_length"
    if spec.max_avg_word_length is not None and mean_len > spec.max_avg_word_length:
        return False, "gopher_quality/max_avg_word_length"

    if spec.max_symbol_word_ratio is not None:
        if text.count("#") / n_words > spec.max_symbol_word_ratio:
            return False, "gopher_quality/hash_word_ratio"
        if (text.count("...") + text.count("…")) / n_words > spec.max_symbol_word_ratio:
            return False, "gopher_quality/ellipsis_word_ratio"

    lines = stats.lines
    if spec.max_bullet_lines_ratio is not None:
        bullets = sum(1 for line in lines if line.lstrip().startswith("•"))
        if bullets / len(lines) > spec.max_bullet_lines_ratio:
            return False, "gopher_quality/bullet_lines_ratio"
    if spec.max_ellipsis_lines_ratio is not None:
        ellipsis = sum(1 for line in lines if line.rstrip().endswith(("...", "…")))
        if ellipsis / len(lines) > spec.max_ellipsis_lines_ratio:
            return False, "gopher_quality/ellipsis_lines_ratio"

    if spec.max_non_alpha_words_ratio is not None and stats.alpha_words / n_words < spec.max_non_alpha_words_ratio:
        return False, "gopher_quality/alpha_words_ratio"
    if spec.min_stop_words is not None and stats.stop_words < spec.min_stop_words:
        return False, "gopher_quality/min_stop_words"
    return KEEP
