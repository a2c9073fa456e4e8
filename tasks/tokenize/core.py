"""Tokenize stage, pure logic: train a tokenizer on curated shards, then encode and pack them into
fixed-length token shards with a train/validation split by document hash and a per-source mixture.

Inputs: a curated output (`manifest.json` + `data/shard-*.parquet` with `id`, `text`, `source`), a
`TokenizerSpec` (training) and a `PackingSpec` (encoding, split, mixture, packing).
Outputs, under `tokens_dir`:

    train/<unit>-00000.parquet     input_ids: fixed_size_list<int32>[seq_len], source: string
    val/<unit>-00000.parquet
    _units/<unit>.json             what one unit wrote (written after its shards; makes reruns free)
    manifest.json                  the token manifest, written last

One *unit* is one curated shard; its name is `(curated shard sha256, tokenizer hash, packing
fingerprint)`, so a rerun with the same inputs skips every finished unit and a changed spec or
tokenizer writes new files beside the old ones (stale files are removed once the manifest is written).

Packing (per curated shard, split and source, so each sequence has exactly one source):
- gpt:  stream = doc₀ <eos> doc₁ <eos> …, cut into rows of `seq_len` tokens;
- bert: stream = doc₀ [SEP] doc₁ [SEP] …, each row = [CLS] + (seq_len − 2) stream tokens + [SEP].
The tail of each group shorter than a full row is dropped and counted (`tokens_dropped_tail`).
Mixture: document copies = `repeats(id, weight, seed)`; copy k of every document comes in pass k
over the group (copies never sit next to each other). The split is decided before the mixture, and
the mixture applies to both splits, so validation measures the distribution that is trained on.
Rows of a unit are shuffled with a seed from (packing seed, curated shard sha256).

Run it through the tokenize flow, or directly:
    tok = train_tokenizer(iter_curated_texts("out/sample", 50_000), TokenizerSpec(), "gpt", "out/tok")
    build_token_shards("out/sample", "out/tokens", "out/tok", PackingSpec(), "gpt")
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import fsspec
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from data_specs import fingerprint
from data_specs.pretrain import PackingSpec, TokenizerSpec
from tasks.shards.core import AtomicParquetWriter, file_sha256, write_bytes_atomic

TOKEN_FORMAT = 1  # bump when the packing layout changes: it is part of every unit name

BERT_SPECIALS = {"pad": "[PAD]", "unk": "[UNK]", "cls": "[CLS]", "sep": "[SEP]", "mask": "[MASK]"}
GPT_EOT = "<|endoftext|>"

TokenizerKind = Literal["wordpiece", "bpe"]


# ---------------------------------------------------------------------------------------------
# Tokenizer
# ---------------------------------------------------------------------------------------------


def tokenizer_kind(model_kind: str) -> TokenizerKind:
    """bert → WordPiece (masked LM), gpt → byte-level BPE (causal LM)."""
    kinds: dict[str, TokenizerKind] = {"bert": "wordpiece", "gpt": "bpe"}
    if model_kind not in kinds:
        raise ValueError(f"unknown model kind {model_kind!r}: expected one of {sorted(kinds)}")
    return kinds[model_kind]


def _read_curated_manifest(curated_dir: str) -> tuple[dict, bytes]:
    fs, path = url_to_fs(f"{curated_dir.rstrip('/')}/manifest.json")
    if not fs.exists(path):
        raise FileNotFoundError(f"no manifest.json in {curated_dir}: run `lmpipe curate` first")
    with fs.open(path, "rb") as f:
        raw = f.read()
    return json.loads(raw), raw


def _curated_shard_url(curated_dir: str, shard: dict) -> str:
    """Shard paths in a curated manifest are relative to `<curated>/data/` (absolute URLs kept)."""
    p = shard["path"]
    if "://" in p or os.path.isabs(p):
        return p
    return f"{curated_dir.rstrip('/')}/data/{p}"


def _read_shard(url: str, columns: list[str]) -> pa.Table:
    fs, path = url_to_fs(url)
    return pq.read_table(path, columns=columns, filesystem=fs)


class CuratedShardChanged(RuntimeError):
    """A curated shard's bytes are not the ones its manifest's sha256 names (the unit's cache key)."""


def _read_verified_shard(url: str, sha256: str, columns: list[str]) -> pa.Table:
    """The curated shard at `url`, read once and checked against the manifest's `sha256` before use.

    The token unit is named by that sha256: encoding other bytes (a curate rerun replaced the shard after the
    manifest was read) would cache new content under the old name, and every later run would reuse it.
    """
    fs, path = url_to_fs(url)
    with fs.open(path, "rb") as f:
        data = f.read()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha256:
        raise CuratedShardChanged(
            f"curated shard {url} has sha256 {actual[:16]}…, its manifest says {sha256[:16]}…: the curated output "
            "changed while tokenize was reading it (or the shard was damaged). Let the curate run finish (rerun "
            "`lmpipe curate` if it was interrupted), then rerun tokenize (`lmpipe pretrain` does both)."
        )
    return pq.read_table(pa.BufferReader(data), columns=columns)


def iter_curated_texts(curated_dir: str, limit: int | None = None) -> Iterator[str]:
    """Document texts from a curated output (reads manifest.json's shard list, in order); with `limit`,
    at most that many documents spread evenly over the corpus (deterministic)."""
    manifest, _ = _read_curated_manifest(curated_dir)
    shards = manifest.get("shards", [])
    total = sum(int(s["rows"]) for s in shards)
    if limit is not None and limit < total:
        # document floor(k * total / limit) for k < limit: evenly spaced, strictly increasing
        wanted = np.unique((np.arange(max(limit, 0), dtype=np.int64) * total) // max(limit, 1))
    else:
        wanted = None
    start = 0
    for shard in shards:
        rows = int(shard["rows"])
        if wanted is None:
            local = None
        else:
            local = wanted[(wanted >= start) & (wanted < start + rows)] - start
            if local.size == 0:
                start += rows
                continue
        texts = _read_shard(_curated_shard_url(curated_dir, shard), ["text"]).column("text")
        if local is not None:
            texts = texts.take(pa.array(local, pa.int64()))
        yield from texts.to_pylist()
        start += rows


def _is_bert_punctuation(c: str) -> bool:
    """BertPreTokenizer's punctuation: ASCII symbols plus Unicode P*; always a word of its own."""
    o = ord(c)
    return 33 <= o <= 47 or 58 <= o <= 64 or 91 <= o <= 96 or 123 <= o <= 126 or unicodedata.category(c)[0] == "P"


def _wordpiece(spec: TokenizerSpec, texts: list[str]) -> tuple[Tokenizer, trainers.Trainer]:
    tok = Tokenizer(models.WordPiece(unk_token=BERT_SPECIALS["unk"], max_input_chars_per_word=100))
    tok.normalizer = normalizers.BertNormalizer(
        clean_text=True, handle_chinese_chars=True, strip_accents=spec.lowercase, lowercase=spec.lowercase
    )
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    # Determinism workaround (huggingface/tokenizers#1794, fix pending in PR #2066): the trainer gives
    # `##c` tokens ids in hash-map order, and merge ties are broken by id, so two runs on the same text
    # can learn different vocabularies. Registering every `##c` up front, sorted, fixes their ids; they
    # are reserved as trainer "special tokens" here and turned back into plain vocab entries afterwards.
    alphabet: set[str] = set()
    for text in texts:
        alphabet.update(tok.normalizer.normalize_str(text))
    continuations = sorted(f"##{c}" for c in alphabet if not c.isspace() and not _is_bert_punctuation(c))
    trainer = trainers.WordPieceTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=[*BERT_SPECIALS.values(), *continuations],  # [PAD] [UNK] [CLS] [SEP] [MASK] = ids 0..4
        continuing_subword_prefix="##",
        show_progress=False,
    )
    return tok, trainer


def _unreserve_continuations(tok: Tokenizer) -> Tokenizer:
    """Drop the `##c` entries from the added (special) tokens; they stay in the WordPiece vocab."""
    state = json.loads(tok.to_str())
    state["added_tokens"] = [t for t in state["added_tokens"] if t["content"] in BERT_SPECIALS.values()]
    return Tokenizer.from_str(json.dumps(state))


def _byte_bpe(spec: TokenizerSpec) -> tuple[Tokenizer, trainers.Trainer]:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        min_frequency=spec.min_frequency,
        special_tokens=[GPT_EOT],  # id 0
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing is ever unknown
        show_progress=False,
    )
    return tok, trainer


def train_tokenizer(
    texts: Iterable[str], spec: TokenizerSpec, model_kind: str, out_dir: str
) -> PreTrainedTokenizerFast:
    """Train with HF `tokenizers` (WordPiece + BertPreTokenizer/normalizer for bert with [PAD] [UNK] [CLS] [SEP] [MASK];
    byte-level BPE for gpt with <|endoftext|> as bos/eos/unk and pad), wrap in transformers.PreTrainedTokenizerFast
    with the special tokens set, and save_pretrained(out_dir) so `AutoTokenizer.from_pretrained(out_dir)` loads it.
    Deterministic for the same input (byte-level BPE is by construction; WordPiece through the `##c` workaround in
    `_wordpiece`, which holds the training texts in memory: bound them with `TokenizerSpec.sample_documents`)."""
    kind = tokenizer_kind(model_kind)
    if kind == "wordpiece":
        texts = list(texts)  # read twice: once for the alphabet, once to train
        tok, trainer = _wordpiece(spec, texts)
        tok.train_from_iterator(texts, trainer)
        tok = _unreserve_continuations(tok)
        cls_id, sep_id = tok.token_to_id(BERT_SPECIALS["cls"]), tok.token_to_id(BERT_SPECIALS["sep"])
        tok.post_processor = processors.TemplateProcessing(
            single="[CLS] $A [SEP]",
            pair="[CLS] $A [SEP] $B:1 [SEP]:1",
            special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
        )
        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=tok,
            **{f"{name}_token": token for name, token in BERT_SPECIALS.items()},
        )
    else:
        tok, trainer = _byte_bpe(spec)
        tok.train_from_iterator(texts, trainer)
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
        wrapped = PreTrainedTokenizerFast(
            tokenizer_object=tok, bos_token=GPT_EOT, eos_token=GPT_EOT, unk_token=GPT_EOT, pad_token=GPT_EOT
        )
    wrapped.save_pretrained(out_dir)
    return wrapped


def load_tokenizer(path: str) -> PreTrainedTokenizerFast:
    """A saved tokenizer directory (ours or any Hugging Face fast tokenizer)."""
    tok = AutoTokenizer.from_pretrained(path)
    if not getattr(tok, "is_fast", False):
        raise TypeError(f"{path}: not a fast (Rust) tokenizer; packing needs one")
    return tok


def set_model_max_length(tokenizer_dir: str | Path, n: int) -> None:
    """Record `model_max_length = n` in a saved tokenizer's tokenizer_config.json (rewritten atomically).

    Why: `train_tokenizer` saves no limit (transformers then assumes ~1e30 tokens), so a plain
    `AutoTokenizer.from_pretrained(dir)(text, truncation=True)` cuts nothing and a long text overflows the
    model's position embeddings. Call it with the model's context where the final model is published;
    every other key of the file is kept as it is. Note that it changes `tokenizer_hash(dir)`.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"model_max_length must be a positive int, got {n!r}")
    path = Path(tokenizer_dir) / "tokenizer_config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: {tokenizer_dir} is not a saved tokenizer folder")
    config = json.loads(path.read_text(encoding="utf-8"))
    config["model_max_length"] = n
    write_bytes_atomic(str(path), (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode())


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                    "vocab.txt", "vocab.json", "merges.txt", "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def tokenizer_hash(path: str, length: int = 12) -> str:
    """sha256 over the saved tokenizer files (names and bytes, sorted by name), short hex.

    Only Hugging Face tokenizer files count, so notes kept beside them (the flow's settings file) do not.
    """
    names = sorted(n for n in os.listdir(path) if n in _TOKENIZER_FILES and os.path.isfile(os.path.join(path, n)))
    if not names:
        raise FileNotFoundError(f"no tokenizer files ({', '.join(_TOKENIZER_FILES[:2])}, ...) in {path}")
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode() + b"\0")
        with open(os.path.join(path, name), "rb") as f:
            digest.update(hashlib.sha256(f.read()).digest())
    return digest.hexdigest()[:length]


def special_token_ids(tok: PreTrainedTokenizerFast) -> dict[str, int]:
    """pad/unk/mask/cls/sep/bos/eos ids the tokenizer defines (absent ones left out)."""
    out = {}
    for name in ("pad", "unk", "mask", "cls", "sep", "bos", "eos"):
        value = getattr(tok, f"{name}_token_id", None)
        if value is not None:
            out[name] = int(value)
    return out


# ---------------------------------------------------------------------------------------------
# Split and mixture: pure functions of (seed, id), so they never depend on order or workers
# ---------------------------------------------------------------------------------------------


def _uniform(salt: str, seed: int, doc_id: str) -> float:
    """A uniform [0, 1) draw from sha256(salt, seed, id): top 53 bits, exactly representable."""
    h = hashlib.sha256(f"{salt}\0{seed}\0{doc_id}".encode()).digest()
    return (int.from_bytes(h[:8], "big") >> 11) / float(1 << 53)


def is_validation(doc_id: str, fraction: float, seed: int) -> bool:
    """True for a stable `fraction` of ids: adding documents never moves another one between splits."""
    return _uniform("split", seed, doc_id) < fraction


def repeats(doc_id: str, weight: float, seed: int) -> int:
    """Copies of a document under a mixture weight: floor(w) + 1 with probability frac(w).

    The draw is independent of the split's (another salt), so a 0.5 weight keeps about half of each split.
    """
    whole = math.floor(weight)
    frac = weight - whole
    return whole + (1 if frac > 0 and _uniform("mixture", seed, doc_id) < frac else 0)


# ---------------------------------------------------------------------------------------------
# Packing
# ---------------------------------------------------------------------------------------------


def TOKEN_SCHEMA(seq_len: int) -> pa.Schema:  # noqa: N802 (a schema "constant" parameterised by length)
    """One row = one packed training sequence and the source all of its tokens come from."""
    return pa.schema(
        [
            pa.field("input_ids", pa.list_(pa.int32(), seq_len), nullable=False),  # (seq_len,)
            pa.field("source", pa.string(), nullable=False),
        ]
    )


def pack_group(
    docs: list[np.ndarray], seq_len: int, model_kind: str, special: dict[str, int]
) -> tuple[np.ndarray, int]:
    """Pack documents (token id arrays, in stream order) into rows; returns ((n, seq_len) int32, tail dropped)."""
    if model_kind == "gpt":
        sep = np.array([special["eos"]], np.int32)
        pieces = [p for d in docs for p in (d, sep)]  # doc <eos> after every document
        body = seq_len
    else:
        sep = np.array([special["sep"]], np.int32)
        pieces = [p for i, d in enumerate(docs) for p in ((sep, d) if i else (d,))]  # [SEP] between documents
        body = seq_len - 2
    stream = np.concatenate(pieces).astype(np.int32, copy=False) if pieces else np.zeros(0, np.int32)
    n = len(stream) // body
    tail = len(stream) - n * body
    rows = stream[: n * body].reshape(n, body)  # (n, body)
    if model_kind == "bert":
        rows = np.concatenate(
            [np.full((n, 1), special["cls"], np.int32), rows, np.full((n, 1), special["sep"], np.int32)], axis=1
        )  # (n, seq_len)
    return rows, tail


def encode_texts(backend: Tokenizer, texts: list[str], batch_size: int) -> list[np.ndarray]:
    """Token ids of each text, without special tokens, via the Rust batch encoder (parallel over
    texts unless TOKENIZERS_PARALLELISM=false), `batch_size` texts per call."""
    encode = getattr(backend, "encode_batch_fast", backend.encode_batch)  # _fast skips offsets
    out: list[np.ndarray] = []
    for i in range(0, len(texts), batch_size):
        for enc in encode(texts[i : i + batch_size], add_special_tokens=False):
            out.append(np.asarray(enc.ids, dtype=np.int32))
    return out


def _check_kind(tok: PreTrainedTokenizerFast, model_kind: str) -> dict[str, int]:
    special = special_token_ids(tok)
    need = ["cls", "sep"] if tokenizer_kind(model_kind) == "wordpiece" else ["eos"]
    missing = [n for n in need if n not in special]
    if missing:
        raise ValueError(f"tokenizer lacks {missing} token(s) needed to pack for model kind {model_kind!r}")
    return special


def _unit_name(shard_sha: str, tok_hash: str, pack_fp: str) -> str:
    return f"{shard_sha[:16]}-{tok_hash}-{pack_fp}"


def _write_rows(rows: np.ndarray, sources: list[str], path: str, seq_len: int) -> dict:
    schema = TOKEN_SCHEMA(seq_len)
    ids = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1), pa.int32()), seq_len)
    table = pa.Table.from_arrays([ids, pa.array(sources, pa.string())], schema=schema)
    writer = AtomicParquetWriter(path, schema)
    try:
        writer.write(table, row_group_rows=1024)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    sha, size = file_sha256(path)
    return {"rows": int(rows.shape[0]), "bytes": size, "sha256": sha}


def build_unit(
    shard_url: str,
    shard_sha: str,
    tokens_dir: str,
    unit: str,
    backend: Tokenizer,
    special: dict[str, int],
    packing: PackingSpec,
    model_kind: str,
) -> dict:
    """Encode, split, mix and pack one curated shard; write its token shards then its summary JSON.

    Raises `CuratedShardChanged` when the shard's bytes are not those of `shard_sha` (its manifest's sha256).
    """
    table = _read_verified_shard(shard_url, shard_sha, ["id", "text", "source"])
    ids, texts, sources = (table.column(c).to_pylist() for c in ("id", "text", "source"))
    # (split, source) -> [(doc index, copies)] in corpus order
    groups: dict[tuple[str, str], list[tuple[int, int]]] = {}
    docs = {"train": 0, "val": 0, "dropped_by_mixture": 0}
    for i, (doc_id, source) in enumerate(zip(ids, sources)):
        split = "val" if is_validation(doc_id, packing.validation_fraction, packing.seed) else "train"
        n = repeats(doc_id, packing.mixture.get(source, 1.0), packing.seed)
        if n == 0:
            docs["dropped_by_mixture"] += 1
            continue
        docs[split] += 1
        groups.setdefault((split, source), []).append((i, n))
    needed = sorted({i for members in groups.values() for i, _ in members})
    encoded = dict(zip(needed, encode_texts(backend, [texts[i] for i in needed], packing.encode_batch_size)))

    summary: dict[str, Any] = {"unit": unit, "documents": docs, "tokens_dropped_tail": 0, "splits": {}}
    for split in ("train", "val"):
        parts_rows, parts_src = [], []
        tokens_by_source: dict[str, int] = {}
        for (g_split, source), members in sorted(groups.items()):
            if g_split != split:
                continue
            passes = max(n for _, n in members)
            stream = [encoded[i] for p in range(passes) for i, n in members if n > p]  # copy p in pass p
            rows, tail = pack_group(stream, packing.seq_len, model_kind, special)
            summary["tokens_dropped_tail"] += tail
            if len(rows):
                parts_rows.append(rows)
                parts_src += [source] * len(rows)
                tokens_by_source[source] = int(rows.size)
        rows = np.concatenate(parts_rows) if parts_rows else np.zeros((0, packing.seq_len), np.int32)
        # a stable shuffle, so a streaming reader sees sources mixed within each shard
        rng = np.random.default_rng([packing.seed, int(shard_sha[:16], 16), 0 if split == "train" else 1])
        order = rng.permutation(len(rows))
        rows, srcs = rows[order], [parts_src[k] for k in order]
        shards = []
        for part, start in enumerate(range(0, len(rows), packing.rows_per_shard)):
            rel = f"{split}/{unit}-{part:05d}.parquet"
            stop = start + packing.rows_per_shard
            entry = _write_rows(rows[start:stop], srcs[start:stop], f"{tokens_dir.rstrip('/')}/{rel}", packing.seq_len)
            shards.append({"path": rel, **entry})
        summary["splits"][split] = {
            "sequences": int(len(rows)),
            "tokens": int(rows.size),
            "tokens_by_source": tokens_by_source,
            "shards": shards,
        }
    raw = json.dumps(summary, indent=1, sort_keys=True).encode()
    write_bytes_atomic(_summary_path(tokens_dir, unit), raw)
    # What a rerun reads back (keys sorted): the manifest is then the same bytes whichever units were cached,
    # so its sha256 (which pretraining resumes on) changes only when the data does.
    return json.loads(raw)


def _summary_path(tokens_dir: str, unit: str) -> str:
    return f"{tokens_dir.rstrip('/')}/_units/{unit}.json"


def _finished_summary(tokens_dir: str, unit: str) -> dict | None:
    """The unit's summary if it and every shard it names exist with the recorded size and a readable footer
    holding the recorded rows; else None (the unit is rebuilt, and a damaged one is logged)."""
    fs, path = url_to_fs(_summary_path(tokens_dir, unit))
    if not fs.exists(path):
        return None
    try:
        with fs.open(path, "rb") as f:
            summary = json.loads(f.read())
        for split in summary["splits"].values():
            for shard in split["shards"]:
                sfs, spath = url_to_fs(f"{tokens_dir.rstrip('/')}/{shard['path']}")
                if not sfs.exists(spath) or sfs.size(spath) != shard["bytes"]:
                    return _damaged(path, f"{shard['path']} is missing or not {shard['bytes']} bytes")
                with sfs.open(spath, "rb") as sf:  # the footer only: a few KB
                    if pq.ParquetFile(sf).metadata.num_rows != shard["rows"]:
                        return _damaged(path, f"{shard['path']} does not hold {shard['rows']} rows")
    except (ValueError, KeyError, TypeError, AttributeError, OSError) as exc:  # JSON, Arrow (ArrowInvalid), shape
        return _damaged(path, f"{type(exc).__name__}: {exc}")
    return summary


def _damaged(summary_path: str, why: str) -> None:
    """Log a finished token unit that cannot be reused; it is rebuilt under the same name."""
    logging.getLogger(__name__).warning("token unit %s cannot be reused (%s): rebuilding it", summary_path, why)
    return None


def _remove_stale(tokens_dir: str, keep: set[str]) -> list[str]:
    """Delete token shards and unit summaries under tokens_dir that the new manifest does not name."""
    removed = []
    fs, root = url_to_fs(tokens_dir.rstrip("/"))
    for sub, ext in (("train", ".parquet"), ("val", ".parquet"), ("_units", ".json")):
        if not fs.isdir(f"{root}/{sub}"):
            continue
        for p in fs.ls(f"{root}/{sub}", detail=False):
            rel = f"{sub}/{os.path.basename(p)}"
            if p.endswith(ext) and rel not in keep:
                fs.rm(p)
                removed.append(rel)
    return removed


def build_token_shards(
    curated_dir: str,
    tokens_dir: str,
    tokenizer_dir: str,
    packing: PackingSpec,
    model_kind: str,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Encode (tokenizer batch encode: Rust-parallel, in batches of packing.encode_batch_size) and pack every curated
    shard into fixed-length sequences; write Parquet token shards under tokens_dir/{train,val}/ and return (and write
    last, atomically, to tokens_dir/manifest.json) the token manifest. Rerun-safe: one unit per curated shard, named by
    (curated shard sha256, tokenizer hash, packing fingerprint); a unit whose output + small JSON summary exist is
    skipped. Deterministic: same inputs → byte-identical shards.

    `progress(units_done, units_total)` is called after each unit, skipped ones included.
    """
    curated, curated_raw = _read_curated_manifest(curated_dir)
    tok = load_tokenizer(tokenizer_dir)
    special = _check_kind(tok, model_kind)
    tok_hash = tokenizer_hash(tokenizer_dir)
    packing_fp = fingerprint(packing)
    # the unit name's packing part also covers the model kind and layout version (they change the bytes)
    unit_fp = fingerprint(
        {"packing": packing.model_dump(mode="json"), "model_kind": model_kind, "format": TOKEN_FORMAT}
    )
    shards = curated.get("shards", [])

    summaries = []
    for k, shard in enumerate(shards):
        unit = _unit_name(shard["sha256"], tok_hash, unit_fp)
        summary = _finished_summary(tokens_dir, unit)
        if summary is None:
            summary = build_unit(
                _curated_shard_url(curated_dir, shard), shard["sha256"], tokens_dir, unit,
                tok.backend_tokenizer, special, packing, model_kind,
            )  # fmt: skip
        summaries.append(summary)
        if progress is not None:
            progress(k + 1, len(shards))

    splits: dict[str, dict[str, Any]] = {}
    for split in ("train", "val"):
        by_source: dict[str, int] = {}
        for s in summaries:
            for source, n in s["splits"][split]["tokens_by_source"].items():
                by_source[source] = by_source.get(source, 0) + n
        splits[split] = {
            "sequences": sum(s["splits"][split]["sequences"] for s in summaries),
            "tokens": sum(s["splits"][split]["tokens"] for s in summaries),
            "tokens_by_source": dict(sorted(by_source.items())),
            "shards": [shard for s in summaries for shard in s["splits"][split]["shards"]],
        }
    manifest = {
        "format": TOKEN_FORMAT,
        "seq_len": packing.seq_len,
        "model_kind": model_kind,
        "tokenizer": {
            "path": tokenizer_dir,
            "hash": tok_hash,
            "kind": tokenizer_kind(model_kind),
            "vocab_size": len(tok),
            # flat `<name>_id` keys (pad/unk/mask/cls/sep for bert; bos/eos/pad/unk for gpt): what cluster/train reads
            **{f"{name}_id": i for name, i in special.items()},
        },
        "curated": {
            "path": curated_dir,
            "manifest_sha256": hashlib.sha256(curated_raw).hexdigest(),
            "fingerprint": curated.get("fingerprint"),
        },
        "packing": packing.model_dump(mode="json"),
        "packing_fingerprint": packing_fp,
        "units": [s["unit"] for s in summaries],
        "splits": splits,
        "documents": {
            key: sum(s["documents"][key] for s in summaries) for key in ("train", "val", "dropped_by_mixture")
        },
        "tokens_dropped_tail": sum(s["tokens_dropped_tail"] for s in summaries),
    }
    write_bytes_atomic(f"{tokens_dir.rstrip('/')}/manifest.json", json.dumps(manifest, indent=2).encode())
    keep = {sh["path"] for sp in splits.values() for sh in sp["shards"]}
    keep |= {f"_units/{u}.json" for u in manifest["units"]}
    _remove_stale(tokens_dir, keep)
    return manifest


def read_token_manifest(tokens_dir: str) -> dict | None:
    """The token manifest of a finished build, or None when there is none yet."""
    fs, path = url_to_fs(f"{tokens_dir.rstrip('/')}/manifest.json")
    if not fs.exists(path):
        return None
    with fs.open(path, "rb") as f:
        return json.loads(f.read())


def manifest_sha256(tokens_dir: str) -> str:
    """sha256 of the token manifest bytes: the data hash MLflow runs are tagged with."""
    with fsspec.open(f"{tokens_dir.rstrip('/')}/manifest.json", "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


__all__ = [
    "TOKEN_FORMAT",
    "CuratedShardChanged",
    "TOKEN_SCHEMA",
    "build_token_shards",
    "encode_texts",
    "is_validation",
    "iter_curated_texts",
    "load_tokenizer",
    "pack_group",
    "read_token_manifest",
    "repeats",
    "set_model_max_length",
    "special_token_ids",
    "tokenizer_hash",
    "tokenizer_kind",
    "train_tokenizer",
]
