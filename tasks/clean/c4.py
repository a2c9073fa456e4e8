"""C4's line and document rules (Raffel et al. 2020), deciding as datatrove 0.10.1's `C4QualityFilter` does.

`c4_filter(text, spec)` returns `(verdict, new_text, removed_line_frac)`. Line rules remove lines and keep the
document; `lorem ipsum` and `{` drop it (checked, as in datatrove, on lines that survived the earlier line
rules), and so does having fewer than `min_num_sentences` sentences in the kept lines. The kept lines,
stripped and joined by `\\n`, become the document's text (blank lines go, as in datatrove).

Sentences are counted with a regex instead of nltk's punkt (no download at run time): a sentence ends at
`.`, `!` or `?` (optionally followed by closing quotes or brackets) before whitespace or the end of the line,
or at a CJK full stop, `！` or `？`. Every kept line counts as at least one sentence. Unlike punkt it does not
know abbreviations ("e.g. the"), so it counts slightly more sentences than datatrove on such lines.
"""

from __future__ import annotations

import re

from data_specs.clean import C4Spec
from tasks.common.documents import Verdict

CITATION_RE = re.compile(r"\[\d*]|\[edit]|\[citation needed]")
END_PUNCTUATION = (".", "?", "!", '"', "'")
ELLIPSIS = "..."
POLICY_SUBSTRINGS = (
    "terms of use",
    "privacy policy",
    "cookie policy",
    "uses cookies",
    "use of cookies",
    "use cookies",
)
# spaCy's English tokenizer keeps these with their dot, so the dot ends no sentence; so do single letters
# ("A.") and dotted words ("e.g.", "U.S.").
_ABBREVIATIONS = frozenset(
    "Mr Mrs Ms Dr St Jr Sr Prof Inc Ltd Co Corp vs etc Mt Gen Gov Rev Sen Rep Jan Feb Aug Sept Oct Nov Dec".split()
)
_TERMINATORS = frozenset(".!?。！？｡．")
_CLOSERS = "\"'”’)]}»"
_OPENERS = "\"'“‘([{«"
# a whitespace-delimited chunk holding a terminator, followed by a chunk that holds a word character
_CANDIDATE = re.compile(r"(?<!\S)(\S*[.!?。！？｡．]\S*)\s+(?=\S*\w)")


def _breaks_after(chunk: str) -> bool:
    """Whether spaCy's sentencizer starts a new sentence after this chunk (when a word follows)."""
    core = chunk.rstrip(_CLOSERS)
    if not core or core[-1] not in _TERMINATORS or core.endswith(".."):
        return False
    if core[-1] == ".":
        word = core[:-1].lstrip(_OPENERS)
        if len(word) == 1 or "." in word or word in _ABBREVIATIONS:
            return False
    return True


def count_sentences(line: str) -> int:
    """Sentence count of one line, as spaCy's sentencizer would split it (0 for an empty line)."""
    if not line:
        return 0
    return 1 + sum(1 for chunk in _CANDIDATE.findall(line) if _breaks_after(chunk))


def c4_filter(text: str, spec: C4Spec) -> tuple[Verdict, str, float]:
    """Apply the C4 rules to `text` (see the module docstring)."""
    lines = text.splitlines()
    kept: list[str] = []
    n_sentences = 0
    for line in lines:
        line = line.strip()
        words = line.split()
        if spec.max_word_length is not None and any(len(w) > spec.max_word_length for w in words):
            continue
        if spec.remove_citations:
            line = CITATION_RE.sub("", line)
        if spec.filter_no_terminal_punct and (not line.endswith(END_PUNCTUATION) or line.endswith(ELLIPSIS)):
            continue
        if spec.min_words_per_line is not None and len(words) < spec.min_words_per_line:
            continue
        if not line:
            continue
        line_l = line.lower()
        if spec.filter_lorem_ipsum and "lorem ipsum" in line_l:
            return (False, "c4/lorem_ipsum"), text, 0.0
        if spec.filter_javascript and "javascript" in line_l:
            continue
        if spec.filter_curly_bracket and "{" in line:
            return (False, "c4/curly_bracket"), text, 0.0
        if spec.filter_policy and any(p in line_l for p in POLICY_SUBSTRINGS):
            continue
        n_sentences += count_sentences(line)
        kept.append(line)
    if spec.min_num_sentences is not None and n_sentences < spec.min_num_sentences:
        return (False, "c4/too_few_sentences"), text, 0.0
    n_nonempty = sum(1 for line in lines if line.strip())
    removed = 1.0 - len(kept) / n_nonempty if n_nonempty else 0.0
    return (True, None), "\n".join(kept).strip(), removed
