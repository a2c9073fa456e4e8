"""13-gram contamination: planted overlaps are found exactly, and nothing else is."""

from __future__ import annotations

import csv
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tasks.glue import contamination as C
from tasks.glue.contamination import EvalNgramIndex, iter_curated_documents, words

# 20 distinct words, so every 13-gram of it is unique
SENT = "the quick brown fox jumps over the lazy dog while seven tired owls watch from an old oak tree tonight"
W = SENT.split()
FILLER = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"


def dirty(examples: dict, docs: list[str], **kw) -> dict[str, tuple[int, ...]]:
    index = EvalNgramIndex(examples, **kw)
    index.scan(docs)
    return {k: r.contaminated for k, r in index.results().items()}


def test_words_lowercases_and_drops_punctuation():
    assert words("Hello, World! It's well-known_stuff.") == ["hello", "world", "its", "well", "known", "stuff"]
    assert words("") == []


def test_words_undoes_ptb_tokenisation():
    # GLUE's SST-2 is PTB-tokenised; the corpus is running text: both must give the same words
    assert words("it 's a film that do n't -lrb- really -rrb- work , you 've got ca n't") == words(
        "It’s a film that don't (really) work, you've got can't"
    )


def test_shared_13gram_is_found_and_12gram_is_not():
    ex = {"sst2": [(SENT,), ("something else entirely",)]}
    doc13 = f"{FILLER} {' '.join(W[3:16])} {FILLER}"
    doc12 = f"{FILLER} {' '.join(W[3:15])} {FILLER}"
    assert dirty(ex, [doc13], short_fields="skip") == {"sst2": (0,)}
    assert dirty(ex, [doc12], short_fields="skip") == {"sst2": ()}


def test_case_and_punctuation_insensitive():
    ex = {"sst2": [("The quick, brown fox -- jumps over the lazy dog ; while seven tired owls watch .",)]}
    doc = "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG WHILE SEVEN TIRED OWLS!"
    assert dirty(ex, [doc]) == {"sst2": (0,)}


def test_ngrams_do_not_span_documents():
    ex = {"sst2": [(SENT,)]}
    docs = [" ".join(W[:7]), " ".join(W[7:20])]  # 7 + 13 words: only the second doc holds a 13-gram
    assert dirty(ex, docs) == {"sst2": (0,)}
    docs = [" ".join(W[:7]), " ".join(W[7:19])]  # 7 + 12 words: the 13-gram exists only across the gap
    assert dirty(ex, docs) == {"sst2": ()}


def test_short_field_whole_or_skip():
    ex = {"sst2": [("A masterpiece .",), ("utterly great film",), ("",)]}
    docs = ["It was, truly, a MASTERPIECE! Some great film."]
    assert dirty(ex, docs) == {"sst2": (0,)}  # "great film" is not the whole of "utterly great film"
    assert dirty(ex, docs, short_fields="skip") == {"sst2": ()}


def test_pair_task_field_by_field_as_a_named_option():
    a, b = " ".join(W[:10]), " ".join(W[10:])
    ex = {"rte": [(a, SENT), (SENT, "no"), (a, b)]}
    # the doc holds SENT: examples 0 (second field) and 1 (first field) share its 13-grams; example 2's
    # fields are 10 words each, so under "whole" each counts dirty because it occurs whole in the doc
    assert dirty(ex, [SENT], pairs="each_field") == {"rte": (0, 1, 2)}
    # with short fields skipped example 2 has no 13-gram: its two fields never join into one 20-word run
    assert dirty(ex, [SENT], short_fields="skip", pairs="each_field") == {"rte": (0, 1)}


def test_pair_task_matched_as_whole_examples():
    """A short hypothesis no longer flags any document with its words: the example is matched whole."""
    premise = " ".join(W[:10])  # 10 words the corpus does not hold contiguously with the hypothesis
    ex = {"rte": [(premise, "He refused."), ("The cat sat.", "He refused."), (" ".join(W[:10]), " ".join(W[10:]))]}
    docs = ["When asked to leave, he refused.", f"{FILLER} the cat sat. he refused! {FILLER}"]
    assert dirty(ex, docs, pairs="each_field") == {"rte": (0, 1)}  # the old rule: "He refused." alone
    # whole examples: 0 is 12 words and not in the corpus whole; 1 occurs whole (5 words, across the fields);
    # 2's two 10-word halves are SENT's 20 words, whose 13-grams span the field boundary
    assert dirty(ex, [*docs, SENT]) == {"rte": (1, 2)}
    assert dirty(ex, [*docs, SENT], short_fields="skip") == {"rte": (2,)}


def test_several_result_keys_keep_their_own_indices():
    ex = {
        "mnli_matched": [("x y", "z"), ("premise one two", "hypothesis")],
        "mnli_mismatched": [("a b", "c"), ("d", "e"), (SENT, "f")],
    }
    index = EvalNgramIndex(ex, short_fields="skip")
    index.scan([f"{FILLER} {SENT}"])
    res = index.results()
    assert res["mnli_matched"] == C.ContaminationResult(2, 0, 0.0, ())
    assert res["mnli_mismatched"] == C.ContaminationResult(3, 1, 1 / 3, (2,))


def test_streaming_in_two_scans_equals_one(monkeypatch: pytest.MonkeyPatch):
    ex = {"sst2": [(SENT,), ("A masterpiece .",), (" ".join(reversed(W)),), ("nothing here at all",)]}
    docs = [FILLER, f"zz {' '.join(W[2:15])}", "what a masterpiece", FILLER, " ".join(reversed(W))[:80]]
    one = EvalNgramIndex(ex)
    one.scan(docs)
    two = EvalNgramIndex(ex)
    two.scan(docs[:2])
    two.scan(iter(docs[2:]))
    assert one.results() == two.results()
    assert one.results()["sst2"].contaminated == (0, 1, 2)
    assert two.documents_scanned == len(docs)
    # tiny batches: every batch boundary is a document boundary, so nothing changes
    monkeypatch.setattr(C, "_BATCH_WORDS", 3)
    small = EvalNgramIndex(ex)
    small.scan(docs)
    assert small.results() == one.results()


def test_empty_index_and_empty_corpus():
    index = EvalNgramIndex({"sst2": []})
    index.scan([SENT])
    assert index.results() == {"sst2": C.ContaminationResult(0, 0, 0.0, ())}
    index = EvalNgramIndex({"sst2": [(SENT,)]})
    index.scan([])
    assert index.results()["sst2"].n_contaminated == 0


def test_bad_options_raise():
    with pytest.raises(ValueError, match="short_fields"):
        EvalNgramIndex({}, short_fields="partial")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="n must be"):
        EvalNgramIndex({}, n=0)


def _write_curated(root: Path, shards: list[list[str]]) -> None:
    (root / "data").mkdir(parents=True)
    for i, texts in enumerate(shards):
        table = pa.table(
            {
                "id": pa.array([f"t/{i}-{j}" for j in range(len(texts))], pa.string()),
                "text": pa.array(texts, pa.large_string()),  # the curate schema's type
                "source": pa.array(["t"] * len(texts), pa.string()),
            }
        )
        pq.write_table(table, root / "data" / f"shard-{i:05d}-of-{len(shards):05d}.parquet", row_group_size=2)


def test_iter_curated_documents_streams_every_shard(tmp_path: Path):
    shards = [[FILLER, "a", "b", "c", "d"], [f"{FILLER} {SENT}", "e"]]
    _write_curated(tmp_path / "curated", shards)
    (tmp_path / "curated" / "data" / "shard-00000-of-00002.parquet.tmp-123").write_bytes(b"half a file")
    docs = list(iter_curated_documents(str(tmp_path / "curated"), batch_rows=3))
    assert docs == shards[0] + shards[1]
    index = EvalNgramIndex({"sst2": [("nope",), (SENT,)]})
    index.scan(iter_curated_documents(str(tmp_path / "curated")))
    assert index.results()["sst2"].contaminated == (1,)


def test_iter_curated_documents_without_shards_raises(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="lmpipe curate"):
        list(iter_curated_documents(str(tmp_path)))


def test_real_sst2_dev_against_books_with_a_planted_sentence(shared_data: Path):
    with open(shared_data / "glue" / "SST-2" / "dev.tsv", encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    examples = {"sst2": [(r["sentence"],) for r in rows]}
    # a dev sentence of >= 13 words, de-tokenised the way running text would print it
    k = next(i for i, (s,) in enumerate(examples["sst2"]) if len(words(s)) >= 20 and " n't" in s)
    planted = examples["sst2"][k][0].replace(" n't", "n't").replace(" ,", ",").replace(" .", ".").upper()
    books = sorted((shared_data / "books").glob("*.txt"))
    paragraphs = [p for b in books for p in b.read_text(encoding="utf-8").split("\n\n") if p.strip()]
    index = EvalNgramIndex(examples, short_fields="skip")
    index.scan(paragraphs)
    index.scan([f"Some review said: {planted} And more."])
    assert k in index.results()["sst2"].contaminated


def test_parallel_scan_equals_serial_and_the_cache_is_keyed_on_corpus_dev_and_rules(tmp_path: Path):
    from tasks.glue.contamination_scan import clean_subset_scores, scan_key, scan_parallel

    shards = []
    for i in range(3):
        path = tmp_path / "data" / f"shard-{i:05d}-of-00003.parquet"
        path.parent.mkdir(exist_ok=True)
        docs = [FILLER, f"{FILLER} {SENT}" if i == 2 else FILLER, "a masterpiece ." if i == 1 else "x"]
        pq.write_table(pa.table({"text": docs}), path)
        shards.append(str(path))
    ex = {"sst2": [("A masterpiece .",), (SENT,), ("nothing here",)], "rte": [(" ".join(W[:10]), " ".join(W[10:]))]}
    rules = {"n": 13, "short_fields": "whole", "pairs": "whole_example"}
    serial = scan_parallel(ex, shards, rules, workers=1)
    assert scan_parallel(ex, shards, rules, workers=3) == serial
    assert serial["sst2"].contaminated == (0, 1) and serial["rte"].contaminated == (0,)
    key = scan_key(str(tmp_path), shards, ex, rules)
    assert key == scan_key(str(tmp_path), shards, ex, dict(rules))
    assert key != scan_key(str(tmp_path), shards, ex, {**rules, "pairs": "each_field"})
    assert key != scan_key(str(tmp_path), shards, {**ex, "sst2": ex["sst2"][:2]}, rules)
    pq.write_table(pa.table({"text": ["changed corpus, other size"]}), shards[0])
    assert key != scan_key(str(tmp_path), shards, ex, rules)
    found = {"sst2": {"contaminated": [0, 1]}}
    clean = clean_subset_scores(found, {"sst2": ([1, 0, 1], {42: [0, 0, 1], 43: [1, 1, 0]})})
    assert clean == {"sst2": {"accuracy": 0.5, "n_clean": 1}}  # row 2 only: seed 42 right, seed 43 wrong
