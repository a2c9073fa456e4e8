"""The Cleaner end to end: normalisation, length guards, language ID, PII, signals, stats reconciliation."""

from __future__ import annotations

import unicodedata
from collections import Counter

import pytest

from data_specs.clean import (
    C4Spec,
    CleanSpec,
    FilterSetSpec,
    FineWebSpec,
    GopherQualitySpec,
    GopherRepetitionSpec,
    LanguageSpec,
    PIISpec,
)
from tasks.clean.core import SIGNAL_NAMES, Cleaner
from tasks.clean.normalize import normalize
from tasks.clean.pii import Redactor
from tasks.common.documents import Document
from tests.unit._clean_helpers import GOOD, only, reason, run

GERMAN = (
    "Die Katze sitzt auf der Matte und schläft den ganzen Tag, weil es draußen regnet und kalt ist. "
    "Am Abend kommt der Nachbar vorbei und bringt frisches Brot aus der Bäckerei mit."
)
WITH_LANG = CleanSpec()


def test_signal_names_are_a_short_fixed_tuple():
    assert len(SIGNAL_NAMES) == len(set(SIGNAL_NAMES)) <= 12
    assert {"n_chars", "n_words", "pii_redactions", "dup_line_char_frac"} <= set(SIGNAL_NAMES)


def test_kept_document_has_every_signal_as_float():
    doc, _ = run(GOOD, FilterSetSpec(), clean=WITH_LANG)
    assert doc is not None
    assert list(doc.signals) == list(SIGNAL_NAMES)
    assert all(isinstance(v, float) for v in doc.signals.values())
    assert doc.signals["n_chars"] == len(GOOD)
    assert doc.signals["n_lines"] == 10 and doc.signals["stop_words"] >= 2


# --- normalisation ---------------------------------------------------------------------------------------


def test_mojibake_repaired_and_nfc_applied():
    assert normalize("Grüße fÃ¼r dich") == "Grüße für dich"
    decomposed = "Cafe\u0301 au lait"
    out = normalize(decomposed)
    assert out == "Café au lait" and unicodedata.is_normalized("NFC", out)
    assert normalize(decomposed, form="none") == decomposed
    assert normalize("ﬁne", form="NFKC") == "fine"
    assert normalize("fÃ¼r", fix_unicode_=False) == "fÃ¼r"


def test_control_chars_line_breaks_and_blank_lines():
    text = "  a\x00b\x07c\td \r\nnext\u2028line\x1b[0m\n\n\n\n\n\nend\ufeff  "
    assert normalize(text) == "abc\td\nnext\nline\n\n\nend"  # ftfy drops the terminal escape


def test_html_entities_unescaped_only_without_markup():
    assert normalize("Fish &amp; chips") == "Fish & chips"
    assert normalize("<b>Fish &amp; chips</b>") == "<b>Fish &amp; chips</b>"


def test_cleaned_text_replaces_document_text():
    doc, _ = run("fÃ¼r " + GOOD, only())
    assert doc is not None and doc.text.startswith("für The old")


# --- length guards ---------------------------------------------------------------------------------------


def test_empty_and_too_long():
    assert reason("   \n\x00\n  ", only()) == "clean/empty"
    assert reason("short", FilterSetSpec(min_chars=10, **_off())) == "clean/empty"
    assert reason(GOOD, FilterSetSpec(max_chars=100, **_off())) == "clean/too_long"
    assert reason(GOOD, FilterSetSpec(max_chars=None, **_off())) is None


def _off() -> dict:
    return dict(
        gopher_quality=GopherQualitySpec(enabled=False),
        gopher_repetition=GopherRepetitionSpec(enabled=False),
        c4=C4Spec(enabled=False),
        fineweb=FineWebSpec(enabled=False),
    )


def test_c4_removing_every_line_is_empty():
    assert reason("Menu\nHome\nContact", only(c4=C4Spec(min_num_sentences=None))) == "clean/empty"


# --- language ID -----------------------------------------------------------------------------------------


def test_english_kept_with_score():
    doc, _ = run(GOOD, only(), clean=WITH_LANG)
    assert doc is not None and doc.lang == "en" and doc.lang_score > 0.65


def test_german_dropped_or_kept_by_language_list():
    assert reason(GERMAN, only(), clean=WITH_LANG, languages=("en",)) == "language/not_kept"
    assert reason(GERMAN, only(), clean=CleanSpec(language=LanguageSpec(languages=("en",)))) == "language/not_kept"
    for kept in (("de",), (), ("en", "de")):
        doc, _ = run(GERMAN, only(), clean=WITH_LANG, languages=kept)
        assert doc is not None and doc.lang == "de"


@pytest.mark.parametrize("text", ["zxq vbn qwp", "asdf", "12345 678"])
def test_gibberish_and_very_short_low_score(text: str):
    assert reason(text, only(), clean=WITH_LANG) == "language/low_score"


def test_language_disabled_labels_but_never_drops():
    doc, _ = run(GERMAN, only(), clean=CleanSpec(language=LanguageSpec(enabled=False)))
    assert doc is not None and doc.lang == "de" and doc.lang_score > 0.9
    doc, _ = run("asdf", only(), clean=CleanSpec(language=LanguageSpec(enabled=False)))
    assert doc is not None and doc.lang_score < 0.65


def test_long_document_language_sample_is_bounded():
    from tasks.clean.language import SAMPLE_CHARS, sample

    s = sample("x\n" * 100_000)
    assert len(s) <= SAMPLE_CHARS + 1 and "\n" not in s


# --- PII -------------------------------------------------------------------------------------------------


def test_pii_redaction_and_count():
    text = (
        "Write to jane.doe+news@example.co.uk or admin@mail.example.org today.\n"
        "Our server is at 8.8.8.8 and 2001:4860:4860::8888, the router at 192.168.1.1.\n"
        "Loopback 127.0.0.1 and ::1 stay; so do version 1.2.3.4.5 and time 10:30:00."
    )
    out, n = Redactor(PIISpec())(text)
    assert n == 4
    assert "<EMAIL_ADDRESS>" in out and "@" not in out
    assert "8.8.8.8" not in out and "2001:4860" not in out and out.count("<IP_ADDRESS>") == 2
    for kept in ("192.168.1.1", "127.0.0.1", "::1", "1.2.3.4.5", "10:30:00"):
        assert kept in out


def test_pii_switches_and_phones():
    text = "Mail bob@example.com, call +1 415-555-0132, host 8.8.4.4."
    out, n = Redactor(PIISpec(emails=False, ip_addresses=False))(text)
    assert (out, n) == (text, 0)
    out, n = Redactor(PIISpec(phone_numbers=True, ip_replacement="[IP]"))(text)
    assert n == 3 and "<PHONE_NUMBER>" in out and "[IP]" in out


def test_pii_count_lands_in_signal():
    doc, _ = run(GOOD + "\nContact the keeper at keeper@lighthouse.org for visits.", only())
    assert doc is not None and "<EMAIL_ADDRESS>" in doc.text and doc.signals["pii_redactions"] == 1.0


# --- reconciliation ---------------------------------------------------------------------------------------


def test_stats_reconcile_in_equals_kept_plus_dropped():
    texts = [GOOD, GERMAN, "", "asdf", GOOD + "\nLorem ipsum dolor sit amet.", "x" * 50, GOOD.replace(".", "")]
    docs = [Document(id=f"t/{i}", text=t, source="t") for i, t in enumerate(texts * 3)]
    stats: Counter[str] = Counter()
    kept = list(Cleaner(CleanSpec(), FilterSetSpec(max_chars=10_000))(docs, stats))
    assert len(docs) == len(kept) + sum(stats.values())
    assert len(kept) == 3 and all(k.startswith(("clean/", "language/", "c4/", "gopher", "fineweb/")) for k in stats)
