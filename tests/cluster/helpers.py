"""Fakes for the cluster tests: token shards + manifest as the tokenize stage writes them.

The token stream is repetitive on purpose (`offset, offset+1, ...` modulo a short period) so that a tiny model
learns it within a few dozen steps on CPU: a falling loss is then a real signal, not noise.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

VOCAB = 96
SEQ_LEN = 32
PERIOD = 11  # tokens cycle through FIRST_WORD .. FIRST_WORD+PERIOD-1
FIRST_WORD = 5
BERT_SPECIAL = {"pad_id": 0, "unk_id": 1, "cls_id": 2, "sep_id": 3, "mask_id": 4}
GPT_SPECIAL = {"pad_id": 0, "eos_id": 1}


def synthetic_sequences(n: int, seq_len: int = SEQ_LEN, seed: int = 0, kind: str = "gpt") -> np.ndarray:
    """(n, seq_len) int32: each row counts up modulo PERIOD from a random offset; bert rows are [CLS] … [SEP]."""
    rng = np.random.default_rng(seed)
    offsets = rng.integers(0, PERIOD, size=(n, 1))
    rows = FIRST_WORD + (offsets + np.arange(seq_len)[None, :]) % PERIOD
    if kind == "bert":
        rows[:, 0], rows[:, -1] = BERT_SPECIAL["cls_id"], BERT_SPECIAL["sep_id"]
    return rows.astype(np.int32)


def write_token_dir(root: Path, kind: str, *, n_train: int = 512, n_val: int = 64, shards: int = 2,
                    seq_len: int = SEQ_LEN, vocab: int = VOCAB, with_tokenizer: bool = False) -> Path:
    """A token folder as the tokenize stage writes it: train/ and val/ Parquet shards + manifest.json."""
    root.mkdir(parents=True, exist_ok=True)
    schema = pa.schema([("input_ids", pa.list_(pa.int32(), seq_len)), ("source", pa.string())])
    splits = {}
    for split, n, seed in (("train", n_train, 1), ("val", n_val, 2)):
        (root / split).mkdir(exist_ok=True)
        rows = synthetic_sequences(n, seq_len, seed, kind)
        entries = []
        for i, part in enumerate(np.array_split(rows, shards if split == "train" else 1)):
            rel = f"{split}/shard-{i:05d}.parquet"
            flat = pa.array(part.reshape(-1), pa.int32())
            table = pa.table({"input_ids": pa.FixedSizeListArray.from_arrays(flat, seq_len),
                              "source": pa.array(["synthetic"] * len(part))}, schema=schema)
            pq.write_table(table, root / rel)
            entries.append({"path": rel, "rows": len(part)})
        splits[split] = {"shards": entries, "rows": n}
    tokenizer = {"path": "tokenizer", "vocab_size": vocab,  # relative to the token folder
                 **(BERT_SPECIAL if kind == "bert" else GPT_SPECIAL)}
    if with_tokenizer:
        _write_tokenizer(root / "tokenizer", kind, vocab)
    manifest = {"seq_len": seq_len, "model_kind": kind, "tokenizer": tokenizer, "splits": splits}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return root


def _write_tokenizer(path: Path, kind: str, vocab: int) -> None:
    """A word-level tokenizer over the synthetic vocabulary, saved in Hugging Face format."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] if kind == "bert" else ["<pad>", "<|endoftext|>"]
    words = specials + [f"w{i}" for i in range(vocab - len(specials))]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token=specials[1]))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    names = (dict(pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
             if kind == "bert" else dict(pad_token="<pad>", eos_token="<|endoftext|>", unk_token="<|endoftext|>"))
    PreTrainedTokenizerFast(tokenizer_object=tok, **names).save_pretrained(path)
