"""Tokenizer training: Hugging Face round trip, special tokens, determinism; curated text sampling."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from data_specs.pretrain import TokenizerSpec
from tasks.tokenize.core import (
    iter_curated_texts,
    load_tokenizer,
    tokenizer_hash,
    tokenizer_kind,
    train_tokenizer,
)
from tests.unit._tokenize_helpers import doc_text, make_docs, write_curated

SPEC = TokenizerSpec(vocab_size=400, min_frequency=2)


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    docs = make_docs({"wiki": 30, "books": 30})
    return write_curated(tmp_path_factory.mktemp("curated"), [docs[:35], docs[35:]])


@pytest.fixture(scope="module")
def trained(curated, tmp_path_factory):
    """kind -> saved tokenizer directory."""
    out = {}
    for kind in ("gpt", "bert"):
        d = tmp_path_factory.mktemp(f"tok-{kind}")
        train_tokenizer(iter_curated_texts(str(curated)), SPEC, kind, str(d))
        out[kind] = d
    return out


def test_tokenizer_kind():
    assert tokenizer_kind("bert") == "wordpiece"
    assert tokenizer_kind("gpt") == "bpe"
    with pytest.raises(ValueError, match="unknown model kind"):
        tokenizer_kind("t5")


def test_iter_curated_texts_reads_shards_in_order_and_spreads_a_limit(curated):
    texts = list(iter_curated_texts(str(curated)))
    assert texts == [doc_text(n) for n in range(60)]
    picked = list(iter_curated_texts(str(curated), limit=6))
    assert picked == [doc_text(n) for n in (0, 10, 20, 30, 40, 50)]  # evenly spaced, across both shards
    assert picked == list(iter_curated_texts(str(curated), limit=6))
    assert len(list(iter_curated_texts(str(curated), limit=1000))) == 60


def test_bpe_round_trip_is_exact_and_specials_are_set(trained):
    tok = AutoTokenizer.from_pretrained(trained["gpt"])
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    assert eot == 0
    assert tok.eos_token_id == tok.bos_token_id == tok.pad_token_id == tok.unk_token_id == eot
    assert len(tok) == SPEC.vocab_size
    for text in [doc_text(3), "  Unseen: naïve café, 東京, emoji 🚂\n\ttabs\r\n", ""]:
        ids = tok.encode(text, add_special_tokens=False)
        assert eot not in ids
        assert tok.decode(ids) == text  # byte-level: every string round-trips, unseen ones included


def test_wordpiece_round_trip_up_to_normalisation_and_specials(trained):
    tok = AutoTokenizer.from_pretrained(trained["bert"])
    expected = {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "[MASK]": 4}
    assert {t: tok.convert_tokens_to_ids(t) for t in expected} == expected
    ids = (tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id)
    assert ids == (0, 1, 2, 3, 4)
    text = doc_text(7)
    ids = tok.encode(text)
    assert ids[0] == tok.cls_token_id and ids[-1] == tok.sep_token_id
    assert tok.unk_token_id not in ids
    decoded = tok.decode(ids, skip_special_tokens=True)
    assert "".join(decoded.split()) == "".join(text.split())  # cased by default; only spacing differs


def test_wordpiece_lowercase_option(curated, tmp_path):
    spec = TokenizerSpec(vocab_size=400, lowercase=True)
    train_tokenizer(iter_curated_texts(str(curated)), spec, "bert", str(tmp_path))
    tok = load_tokenizer(str(tmp_path))
    text = doc_text(5)
    decoded = tok.decode(tok.encode(text), skip_special_tokens=True)
    assert "".join(decoded.split()) == "".join(text.lower().split()).replace("ë", "e")  # uncased also strips accents


def test_training_is_deterministic(curated, trained, tmp_path):
    for kind in ("gpt", "bert"):
        again = tmp_path / kind
        train_tokenizer(iter_curated_texts(str(curated)), SPEC, kind, str(again))
        assert tokenizer_hash(str(again)) == tokenizer_hash(str(trained[kind]))
    assert tokenizer_hash(str(trained["gpt"])) != tokenizer_hash(str(trained["bert"]))
    assert len(tokenizer_hash(str(trained["gpt"]))) == 12
    (tmp_path / "gpt" / "lmpipe-tokenizer-spec.json").write_text("{}")  # a note beside the files: not hashed
    assert tokenizer_hash(str(tmp_path / "gpt")) == tokenizer_hash(str(trained["gpt"]))
