"""Gopher repetition and quality rules (Rae et al. 2021, Table A1), deciding as datatrove 0.10.1 does.

`gopher_repetition(stats, spec)` and `gopher_quality(stats, spec)` return a `Verdict`: `(True, None)` to keep,
`(False, "gopher_*/<rule>")` to drop. A rule whose threshold is `None` is off. Rule by rule as datatrove's
`gopher_repetition_filter.py` and `gopher_quality_filter.py`:

- repetition: paragraphs split on `\\n{2,}` of the stripped text, lines on `\\n+`; top n-grams measured as
  `" ".join`, duplicated n-grams as `"".join` (datatrove's `find_all_duplicate`); every fraction over
  `len(text)`;
- quality: word counts and mean length over the non-symbol words; the `#` and ellipsis ratios and the letter
  ratio over all tokens, punctuation included; lines are `text.splitlines()` and a bullet line starts with
  `•` or `-`; stop words are counted once each (at least 2 of the 8 distinct words).

Deliberate differences: tokens come from `TextStats` (one regex instead of spaCy, see `text_stats.py`); a
document with no tokens at all is dropped as `gopher_quality/no_words` (datatrove divides by zero); and the
option `alpha_ratio_ignores_punctuation` (off) divides the letter ratio by the non-symbol words instead.
Measured on the 1,178 ~400-word passages of `../shared/data/books` (`benchmarks/bench_filters.py`'s cut),
datatrove's ratio drops 180 of them for their dialogue punctuation and the option none; on whole books it
keeps Alice in Wonderland (0.80 of its tokens hold a letter, 0.96 of its words), which datatrove drops. On
the 335 web documents of the samples it keeps 29 instead of 23 under the FineWeb recipe.
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
        return False, "gopher_repetition/empty"

    paragraphs = stats.paragraphs
    para_dups, para_dup_chars = stats.paragraph_duplicates
    if spec.dup_para_frac is not None and para_dups / len(paragraphs) > spec.dup_para_frac:
        return False, "gopher_repetition/dup_para_frac"
    if spec.dup_para_char_frac is not None and para_dup_chars / n_chars > spec.dup_para_char_frac:
        return False, "gopher_repetition/dup_para_char_frac"

    lines = stats.gopher_lines
    line_dups, line_dup_chars = stats.gopher_line_duplicates
    if spec.dup_line_frac is not None and line_dups / len(lines) > spec.dup_line_frac:
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
    n_words = len(stats.words)  # non-symbol words
    n_tokens = len(stats.tokens)  # datatrove's `len(words)`: punctuation included
    if spec.min_words is not None and n_words < spec.min_words:
        return False, "gopher_quality/min_words"
    if n_tokens == 0:
        return False, "gopher_quality/no_words"
    if spec.max_words is not None and n_words > spec.max_words:
        return False, "gopher_quality/max_words"

    if n_words:  # datatrove's mean of no words is NaN, and NaN fails no comparison
        mean_len = stats.mean_word_length
        if spec.min_avg_word_length is not None and mean_len < spec.min_avg_word_length:
            return False, "gopher_quality/min_avg_word_length"
        if spec.max_avg_word_length is not None and mean_len > spec.max_avg_word_length:
            return False, "gopher_quality/max_avg_word_length"

    if spec.max_symbol_word_ratio is not None:
        if text.count("#") / n_tokens > spec.max_symbol_word_ratio:
            return False, "gopher_quality/hash_word_ratio"
        if (text.count("...") + text.count("…")) / n_tokens > spec.max_symbol_word_ratio:
            return False, "gopher_quality/ellipsis_word_ratio"

    lines = stats.splitlines
    if spec.max_bullet_lines_ratio is not None:
        bullets = sum(1 for line in lines if line.lstrip().startswith(("•", "-")))
        if bullets / len(lines) > spec.max_bullet_lines_ratio:
            return False, "gopher_quality/bullet_lines_ratio"
    if spec.max_ellipsis_lines_ratio is not None:
        ellipsis = sum(1 for line in lines if line.rstrip().endswith(("...", "…")))
        if ellipsis / len(lines) > spec.max_ellipsis_lines_ratio:
            return False, "gopher_quality/ellipsis_lines_ratio"

    if spec.max_non_alpha_words_ratio is not None:
        denom = n_words if spec.alpha_ratio_ignores_punctuation else n_tokens
        if stats.alpha_words / max(1, denom) < spec.max_non_alpha_words_ratio:
            return False, "gopher_quality/alpha_words_ratio"
    if spec.min_stop_words is not None and stats.stop_words < spec.min_stop_words:
        return False, "gopher_quality/min_stop_words"
    return KEEP
