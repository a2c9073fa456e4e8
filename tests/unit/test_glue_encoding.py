"""One encoding for fine-tuning and serving (`tasks.registry.glue_pyfunc.encode_rows`): BERT-style pairs keep the
tokenizer's own template and segment ids; GPT-style pairs are joined by eos, with no segment ids (GPT-2 adds a
learned embedding of the segment id to every token, so the old encoding shifted sentence B by wte[1])."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from cluster.train.finetune import encode
from tasks.registry.glue_pyfunc import encode_rows, longest_first, pair_joiner
from tests.unit._registry_helpers import tiny_bert, tiny_gpt

FIRST = ["the cat sat on the mat", "a", "the quick brown fox jumps over the lazy dog " * 8]
SECOND = ["the dog sat on the log", "the mat is red and the log is brown " * 6, "b"]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("tok")
    gpt = AutoTokenizer.from_pretrained(tiny_gpt(root / "gpt"))
    gpt.pad_token = gpt.eos_token  # as fine-tuning and serving set it up
    return {"bert": AutoTokenizer.from_pretrained(tiny_bert(root / "bert")), "gpt": gpt}


def test_longest_first_cuts_as_transformers_does(tokenizers):
    """Every (len a, len b, budget) up to 12: the same kept lengths as the tokenizer's own 'longest_first'."""
    tok = tokenizers["bert"]
    word = tok("cat", add_special_tokens=False)["input_ids"]
    assert len(word) == 1
    for la, lb, budget in itertools.product(range(1, 13), range(1, 13), range(2, 13)):
        enc = tok(" ".join(["cat"] * la), " ".join(["dog"] * lb), truncation="longest_first", max_length=budget + 3,
                  return_token_type_ids=True)
        types = enc["token_type_ids"]
        kept = (types.count(0) - 2, types.count(1) - 1)  # [CLS] a [SEP] | b [SEP]
        assert longest_first(la, lb, budget) == kept, (la, lb, budget)


def test_gpt_pairs_are_joined_by_eos_without_segment_ids(tokenizers):
    tok = tokenizers["gpt"]
    assert pair_joiner(tok) == tok.eos_token_id and pair_joiner(tokenizers["bert"]) is None
    enc = encode_rows(tok, [FIRST, SECOND], max_length=24)
    assert "token_type_ids" not in enc
    for a, b, ids in zip(FIRST, SECOND, enc["input_ids"]):
        ia, ib = tok(a)["input_ids"], tok(b, add_special_tokens=False)["input_ids"]
        keep_a, keep_b = longest_first(len(ia), len(ib), 23)
        assert ids == [*ia[:keep_a], tok.eos_token_id, *ib[:keep_b]]  # the sentences are separated
        assert len(ids) <= 24
    # What fine-tuning ships to the workers is the same encoding, with no segment ids either.
    split = encode(tok, (FIRST, SECOND), [0, 1, 2], 24, regression=False)
    assert split.type_ids is None
    assert [split.ids[split.offsets[i]:split.offsets[i + 1]].tolist() for i in range(3)] == enc["input_ids"]


def test_bert_pairs_keep_their_template_and_segments(tokenizers):
    tok = tokenizers["bert"]
    enc = encode_rows(tok, [FIRST, SECOND], max_length=24)
    want = tok(FIRST, SECOND, truncation="longest_first", max_length=24, return_token_type_ids=True)
    assert enc["input_ids"] == want["input_ids"] and enc["token_type_ids"] == want["token_type_ids"]
    split = encode(tok, (FIRST, SECOND), [0, 1, 2], 24, regression=False)
    assert split.type_ids is not None and np.array_equal(split.type_ids,
                                                          np.concatenate([np.array(t) for t in want["token_type_ids"]]))
    single = encode_rows(tok, [FIRST], max_length=8)
    assert "token_type_ids" not in single and max(len(r) for r in single["input_ids"]) == 8
