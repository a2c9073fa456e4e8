"""Tokenize trusts neither the curated bytes it reads nor its own finished units without checking them.

Faults and what must hold:
- a curate rerun replaces a curated shard after tokenize read the manifest (or the shard is damaged): the
  bytes read do not match the manifest's sha256, the token unit's cache key. Tokenize raises
  `CuratedShardChanged` (saying to rerun curate, then tokenize) and caches nothing under the old name; today it
  encoded the new bytes under the old key.
- a power loss leaves a token shard or a unit summary under its final name with zero bytes or cut short: the
  next build rebuilds that unit, logs it, and its output equals a clean build's byte for byte.
"""

from __future__ import annotations

import hashlib
import json
import logging

import pytest

from data_specs.pretrain import PackingSpec, TokenizerSpec
from tasks.tokenize.core import build_token_shards, iter_curated_texts, train_tokenizer
from tests.unit._tokenize_helpers import make_docs, write_curated

PACK = PackingSpec(seq_len=32, rows_per_shard=8, validation_fraction=0.2)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    docs = make_docs({"wiki": 20, "books": 20})
    curated = write_curated(tmp_path_factory.mktemp("curated"), [docs[:20], docs[20:]])
    tok = tmp_path_factory.mktemp("tok")
    train_tokenizer(iter_curated_texts(str(curated)), TokenizerSpec(vocab_size=400), "gpt", str(tok))
    return {"curated": curated, "tok": str(tok), "docs": docs}


def _digests(tokens_dir):
    return {str(p.relative_to(tokens_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tokens_dir.rglob("*")) if p.is_file()}


def test_curated_shard_replaced_under_its_manifest_is_refused(corpus, tmp_path):
    from tasks.tokenize.core import CuratedShardChanged

    curated = write_curated(tmp_path / "curated", [corpus["docs"][:20], corpus["docs"][20:]])
    manifest = json.loads((curated / "manifest.json").read_text())
    # a curate rerun rewrote shard 1 with other documents; its manifest (written last) is not there yet
    other = write_curated(tmp_path / "other", [corpus["docs"][:20], make_docs({"books": 20}, start=500)])
    (curated / "data" / manifest["shards"][1]["path"]).write_bytes(
        (other / "data" / manifest["shards"][1]["path"]).read_bytes())
    tokens = tmp_path / "tokens"
    with pytest.raises(CuratedShardChanged, match=r"rerun `lmpipe curate`.*then rerun tokenize"):
        build_token_shards(str(curated), str(tokens), corpus["tok"], PACK, "gpt")
    units = sorted(p.name for p in (tokens / "_units").glob("*.json"))
    assert len(units) == 1  # shard 0 matched and is kept; nothing is cached under shard 1's name
    assert not (tokens / "manifest.json").exists()


@pytest.mark.parametrize("target", ["summary", "shard"])
@pytest.mark.parametrize("keep", [0.0, 0.5], ids=["empty", "cut"])
def test_damaged_token_unit_is_rebuilt(corpus, tmp_path, caplog, target, keep):
    clean_dir, tokens = tmp_path / "clean", tmp_path / "tokens"
    clean = build_token_shards(str(corpus["curated"]), str(clean_dir), corpus["tok"], PACK, "gpt")
    build_token_shards(str(corpus["curated"]), str(tokens), corpus["tok"], PACK, "gpt")
    if target == "summary":
        victim = sorted((tokens / "_units").glob("*.json"))[0]
    else:
        victim = tokens / clean["splits"]["train"]["shards"][-1]["path"]
    data = victim.read_bytes()
    victim.write_bytes(data[: int(len(data) * keep)])
    with caplog.at_level(logging.WARNING, logger="tasks.tokenize.core"):
        again = build_token_shards(str(corpus["curated"]), str(tokens), corpus["tok"], PACK, "gpt")
    assert again == clean
    assert _digests(tokens) == _digests(clean_dir)
    if target == "shard" or keep:  # an empty summary reads as no summary at all; anything else is named
        assert "rebuilding it" in caplog.text


def test_same_size_garbled_token_shard_is_rebuilt(corpus, tmp_path):
    """Bytes lost inside the file but the size kept (zeros written back): the footer check catches it."""
    tokens = tmp_path / "tokens"
    clean = build_token_shards(str(corpus["curated"]), str(tokens), corpus["tok"], PACK, "gpt")
    victim = tokens / clean["splits"]["train"]["shards"][0]["path"]
    good = victim.read_bytes()
    victim.write_bytes(b"\0" * len(good))
    build_token_shards(str(corpus["curated"]), str(tokens), corpus["tok"], PACK, "gpt")
    assert victim.read_bytes() == good
