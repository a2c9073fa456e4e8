"""Token shards: deterministic packing and split, exact per-source counts, mixture weights, free reruns."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from data_specs.pretrain import PackingSpec, TokenizerSpec
from tasks.tokenize.core import (
    TOKEN_SCHEMA,
    build_token_shards,
    is_validation,
    iter_curated_texts,
    load_tokenizer,
    pack_group,
    read_token_manifest,
    repeats,
    train_tokenizer,
)
from tests.unit._tokenize_helpers import make_docs, markers, write_curated

SEQ = 32
PACK = PackingSpec(seq_len=SEQ, validation_fraction=0.2, encode_batch_size=7, rows_per_shard=40, seed=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict:
    """Two curated shards with two sources, and a tokenizer of each kind trained on them."""
    root = tmp_path_factory.mktemp("tok")
    docs = make_docs({"wiki": 40, "books": 40})
    curated = write_curated(root / "curated", [docs[:50], docs[50:]])
    toks = {}
    for kind in ("gpt", "bert"):
        toks[kind] = str(root / f"tok-{kind}")
        train_tokenizer(iter_curated_texts(str(curated)), TokenizerSpec(vocab_size=400), kind, toks[kind])
    return {"root": root, "curated": str(curated), "docs": docs, "tok": toks}


def build(corpus, out: Path, kind: str = "gpt", curated: str | None = None, **packing) -> dict:
    spec = PACK.model_copy(update=packing)
    return build_token_shards(curated or corpus["curated"], str(out), corpus["tok"][kind], spec, kind)


def rows_of(tokens_dir: Path, manifest: dict, split: str) -> tuple[np.ndarray, list[str]]:
    ids, sources = [], []
    for shard in manifest["splits"][split]["shards"]:
        t = pq.read_table(tokens_dir / shard["path"])
        assert t.schema == TOKEN_SCHEMA(manifest["seq_len"])
        ids.append(np.asarray(t.column("input_ids").combine_chunks().flatten()).reshape(-1, manifest["seq_len"]))
        sources += t.column("source").to_pylist()
    return np.concatenate(ids), sources


def decoded_markers(tok, rows: np.ndarray) -> set[int]:
    return set().union(*(markers(tok.decode(r, skip_special_tokens=True)) for r in rows))


# --- pure pieces -----------------------------------------------------------------------------


def test_split_and_repeats_are_stable_hash_draws():
    ids = [f"wiki/{i}" for i in range(20_000)]
    val = [i for i in ids if is_validation(i, 0.1, seed=0)]
    assert 0.09 < len(val) / len(ids) < 0.11
    assert val == [i for i in ids if is_validation(i, 0.1, seed=0)]
    assert val != [i for i in ids if is_validation(i, 0.1, seed=1)]
    assert not any(is_validation(i, 0.0, 0) for i in ids[:100])
    assert [repeats(i, 2.0, 0) for i in ids[:100]] == [2] * 100
    assert [repeats(i, 0.0, 0) for i in ids[:100]] == [0] * 100
    assert 1.48 < np.mean([repeats(i, 1.5, 0) for i in ids]) < 1.52


def test_pack_group_layouts():
    docs = [np.arange(10, 15, dtype=np.int32), np.arange(20, 27, dtype=np.int32)]  # 5 + 7 tokens
    rows, tail = pack_group(docs, 4, "gpt", {"eos": 0})
    assert rows.tolist() == [[10, 11, 12, 13], [14, 0, 20, 21], [22, 23, 24, 25]] and tail == 2  # 26, <eos>
    rows, tail = pack_group(docs, 6, "bert", {"cls": 2, "sep": 3})
    body = [10, 11, 12, 13, 14, 3, 20, 21, 22, 23, 24, 25, 26]  # [SEP] between documents only
    assert rows.tolist() == [[2, *body[0:4], 3], [2, *body[4:8], 3], [2, *body[8:12], 3]] and tail == 1
    rows, tail = pack_group([], 4, "gpt", {"eos": 0})
    assert rows.shape == (0, 4) and tail == 0


# --- builds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["gpt", "bert"])
def test_build_is_deterministic_and_consistent(corpus, tmp_path, kind):
    a, b = tmp_path / "a", tmp_path / "b"
    ma, mb = build(corpus, a, kind), build(corpus, b, kind)
    files = sorted(str(p.relative_to(a)) for p in a.rglob("*.parquet"))
    assert files and files == sorted(str(p.relative_to(b)) for p in b.rglob("*.parquet"))
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes()
    assert ma["splits"] == mb["splits"] and read_token_manifest(str(a)) == ma

    tok = load_tokenizer(corpus["tok"][kind])
    assert ma["seq_len"] == SEQ and ma["model_kind"] == kind
    assert ma["tokenizer"]["hash"] and ma["tokenizer"]["vocab_size"] == len(tok)
    expected_ids = {"pad_id": 0, "unk_id": 0, "bos_id": 0, "eos_id": 0} if kind == "gpt" else {
        "pad_id": 0, "unk_id": 1, "cls_id": 2, "sep_id": 3, "mask_id": 4}
    assert {k: v for k, v in ma["tokenizer"].items() if k.endswith("_id")} == expected_ids
    assert ma["curated"]["fingerprint"] == "curatedfp01" and len(ma["curated"]["manifest_sha256"]) == 64
    assert ma["packing"]["seq_len"] == SEQ and ma["packing_fingerprint"]
    assert ma["documents"] == {
        "train": sum(not is_validation(d["id"], 0.2, 3) for d in corpus["docs"]),
        "val": sum(is_validation(d["id"], 0.2, 3) for d in corpus["docs"]),
        "dropped_by_mixture": 0,
    }
    assert ma["documents"]["val"] > 0
    for split in ("train", "val"):
        info = ma["splits"][split]
        rows, sources = rows_of(a, ma, split)
        assert rows.shape == (info["sequences"], SEQ)
        assert sum(info["tokens_by_source"].values()) == info["tokens"] == rows.size
        assert {s: sources.count(s) * SEQ for s in set(sources)} == info["tokens_by_source"]
        assert all(s["rows"] <= PACK.rows_per_shard for s in info["shards"])
        if kind == "bert":
            assert (rows[:, 0] == tok.cls_token_id).all() and (rows[:, -1] == tok.sep_token_id).all()
            assert not np.isin(rows[:, 1:-1], [tok.cls_token_id, tok.pad_token_id]).any()


def test_validation_and_train_are_disjoint_and_stable_when_documents_are_added(corpus, tmp_path):
    tok = load_tokenizer(corpus["tok"]["gpt"])
    val_ids = {int(d["id"].split("/")[1]) for d in corpus["docs"] if is_validation(d["id"], 0.2, 3)}
    m = build(corpus, tmp_path / "base")
    seen_val = decoded_markers(tok, rows_of(tmp_path / "base", m, "val")[0])
    seen_train = decoded_markers(tok, rows_of(tmp_path / "base", m, "train")[0])
    assert seen_val and seen_val <= val_ids
    assert seen_train and not (seen_train & val_ids)

    # more documents, in the existing shards' neighbourhood and in a new shard
    extra = make_docs({"wiki": 30, "books": 30}, start=500)
    bigger = write_curated(tmp_path / "bigger", [corpus["docs"][:50] + extra[:30], corpus["docs"][50:], extra[30:]])
    m2 = build(corpus, tmp_path / "bigger-tokens", curated=str(bigger))
    seen_val2 = decoded_markers(tok, rows_of(tmp_path / "bigger-tokens", m2, "val")[0])
    seen_train2 = decoded_markers(tok, rows_of(tmp_path / "bigger-tokens", m2, "train")[0])
    old = set(range(80))
    assert (seen_val2 & old) <= val_ids and not (seen_train2 & val_ids)
    assert m2["documents"]["val"] >= m["documents"]["val"]
    # the untouched curated shard gives the very same unit and bytes
    assert m["units"][1] == m2["units"][1]
    assert m["splits"]["val"]["shards"][-1] in m2["splits"]["val"]["shards"]


def test_mixture_weights(corpus, tmp_path):
    base = build(corpus, tmp_path / "w1")["splits"]["train"]["tokens_by_source"]
    tail = 2 * 2 * SEQ  # at most one partial row per (curated shard, split), per source

    zero = build(corpus, tmp_path / "w0", mixture={"books": 0.0})
    assert "books" not in zero["splits"]["train"]["tokens_by_source"]
    assert "books" not in zero["splits"]["val"]["tokens_by_source"]
    assert zero["documents"]["dropped_by_mixture"] == 40
    assert zero["splits"]["train"]["tokens_by_source"]["wiki"] == base["wiki"]

    double = build(corpus, tmp_path / "w2", mixture={"books": 2.0})["splits"]["train"]["tokens_by_source"]
    assert abs(double["books"] - 2 * base["books"]) <= tail and double["wiki"] == base["wiki"]

    half = build(corpus, tmp_path / "w05", mixture={"books": 0.5})
    again = build(corpus, tmp_path / "w05b", mixture={"books": 0.5})
    assert half["splits"] == again["splits"] and half["documents"] == again["documents"]
    books_kept = sum(repeats(d["id"], 0.5, 3) for d in corpus["docs"] if d["source"] == "books")
    assert half["documents"]["dropped_by_mixture"] == 40 - books_kept and 10 <= books_kept <= 30
    ratio = half["splits"]["train"]["tokens_by_source"]["books"] / base["books"]
    assert 0.25 < ratio < 0.75


def test_rerun_skips_finished_units_and_removes_stale_ones(corpus, tmp_path):
    out = tmp_path / "tokens"
    calls: list[tuple[int, int]] = []
    first = build_token_shards(
        corpus["curated"], str(out), corpus["tok"]["gpt"], PACK, "gpt", progress=lambda *a: calls.append(a)
    )
    assert calls == [(1, 2), (2, 2)]
    written = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert any(p.suffix == ".json" for p in written) and any(p.suffix == ".parquet" for p in written)
    second = build(corpus, out)
    assert second == first
    assert {p: p.stat().st_mtime_ns for p in written} == written

    # a broken unit (shard deleted) is rebuilt; the other one is still skipped
    victim = out / first["splits"]["train"]["shards"][0]["path"]
    victim.unlink()
    third = build(corpus, out)
    assert third == first and victim.exists()
    assert all(p.stat().st_mtime_ns == t for p, t in written.items() if not p.name.startswith(first["units"][0]))

    # a changed spec writes new units and removes the old ones once its manifest is written
    changed = build(corpus, out, seq_len=16)
    assert set(changed["units"]).isdisjoint(first["units"])
    left = {str(p.relative_to(out)) for p in out.rglob("*.parquet")}
    assert left == {s["path"] for sp in changed["splits"].values() for s in sp["shards"]}


def test_model_kind_must_match_tokenizer(corpus, tmp_path):
    with pytest.raises(ValueError, match="cls"):
        build_token_shards(corpus["curated"], str(tmp_path), corpus["tok"]["gpt"], PACK, "bert")
    assert read_token_manifest(str(tmp_path)) is None
    assert not os.listdir(tmp_path)
