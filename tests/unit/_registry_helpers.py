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


def _bert_config(fast, **extra):
    """A 2-layer, 32-wide BERT config over `fast`'s vocabulary, 64 positions (the context tests run past)."""
    from transformers import BertConfig

    return BertConfig(
        vocab_size=len(fast),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        pad_token_id=fast.pad_token_id,
        **extra,
    )


def _gpt_config(fast, n_positions: int, **extra):
    """A 2-layer, 32-wide GPT-2 config over `fast`'s vocabulary with `n_positions` positions."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(fast),
        n_positions=n_positions,
        n_embd=32,
        n_layer=2,
        n_head=2,
        bos_token_id=fast.bos_token_id,
        eos_token_id=fast.eos_token_id,
        **extra,
    )


def _save(model_cls, config, fast, dst: Path) -> Path:
    """Seeded random weights of `model_cls(config)` + the tokenizer, save_pretrained into dst."""
    import torch

    torch.manual_seed(0)
    model_cls(config).save_pretrained(dst)
    fast.save_pretrained(dst)
    return dst


def tiny_bert(dst: Path) -> Path:
    """BertForMaskedLM (2 layers, 32 wide, 64 positions) + a WordPiece tokenizer trained here; into dst."""
    from transformers import BertForMaskedLM

    fast = _tokenizer("bert", dst)
    return _save(BertForMaskedLM, _bert_config(fast), fast, dst)


def tiny_gpt(dst: Path, n_positions: int = 128) -> Path:
    """GPT2LMHeadModel (2 layers, 32 wide) + a byte-level BPE tokenizer trained here; save_pretrained into dst."""
    from transformers import GPT2LMHeadModel

    fast = _tokenizer("gpt", dst)
    return _save(GPT2LMHeadModel, _gpt_config(fast, n_positions), fast, dst)


def tiny_bert_classifier(dst: Path, num_labels: int) -> Path:
    """BertForSequenceClassification (64 positions); num_labels=1 is a regression head (STS-B)."""
    from transformers import BertForSequenceClassification

    fast = _tokenizer("bert", dst)
    return _save(BertForSequenceClassification, _bert_config(fast, num_labels=num_labels), fast, dst)


def tiny_gpt_classifier(dst: Path, num_labels: int, *, with_pad: bool = False) -> Path:
    """GPT2ForSequenceClassification (64 positions). Without `with_pad`, neither the tokenizer nor the config
    has a pad token, as with the stock GPT-2 checkpoints: the pyfunc must fall back to eos."""
    from transformers import GPT2ForSequenceClassification

    fast = _tokenizer("gpt", dst)
    extra = {"pad_token_id": fast.eos_token_id} if with_pad else {}
    if not with_pad:
        fast.pad_token = None
    return _save(GPT2ForSequenceClassification, _gpt_config(fast, 64, num_labels=num_labels, **extra), fast, dst)
