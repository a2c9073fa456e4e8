"""Tiny Hugging Face models with in-test tokenizers, for the registry tests (no hub, seconds on CPU)."""

from __future__ import annotations

from pathlib import Path

SENTENCES = [
    "the cat sat on the mat",
    "the dog sat on the log",
    "a cat and a dog play in the garden",
    "the quick brown fox jumps over the lazy dog",
    "once upon a time there was a small model",
    "models learn to predict the next word",
    "the mat is red and the log is brown",
] * 4


def _tokenizer(model_kind: str, dst: Path):
    """The project's own tokenizer trainer (tasks.tokenize.core) on the sentences above."""
    from data_specs.pretrain import TokenizerSpec
    from tasks.tokenize.core import train_tokenizer

    spec = TokenizerSpec(vocab_size=256 if model_kind == "bert" else 320, min_frequency=1, lowercase=True)
    return train_tokenizer(SENTENCES, spec, model_kind, str(dst))


def tiny_bert(dst: Path) -> Path:
    """BertForMaskedLM (2 layers, 32 wide) + a WordPiece tokenizer trained here; save_pretrained into dst."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    fast = _tokenizer("bert", dst)
    config = BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=fast.pad_token_id,
    )
    torch.manual_seed(0)
    model = BertForMaskedLM(config)
    model.save_pretrained(dst)
    fast.save_pretrained(dst)
    return dst


def tiny_gpt(dst: Path) -> Path:
    """GPT2LMHeadModel (2 layers, 32 wide) + a byte-level BPE tokenizer trained here; save_pretrained into dst."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    fast = _tokenizer("gpt", dst)
    config = GPT2Config(
        vocab_size=len(fast),
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
    )
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    model.save_pretrained(dst)
    fast.save_pretrained(dst)
    return dst
