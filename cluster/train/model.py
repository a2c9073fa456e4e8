"""Model factory: a `transformers` BERT (masked LM) or GPT-2 (causal LM), built from scratch or loaded from a
checkpoint to continue, plus FLOPs/MFU helpers.

Input: a `ModelSpec` (kind, preset, optional overrides), the tokenizer's vocabulary size and special ids, and
the packed sequence length, or the folder of a resolved `model.init_from`. Output: a `PreTrainedModel` whose
`save_pretrained` directory loads with `AutoModelForMaskedLM` / `AutoModelForCausalLM`. No Ray, Prefect or
MLflow here.
"""

from __future__ import annotations

import torch
import transformers
from transformers import (AutoModelForCausalLM, AutoModelForMaskedLM, BertConfig, BertForMaskedLM, GPT2Config,
                          GPT2LMHeadModel)

from data_specs.pretrain import ModelSpec

# Shapes per preset and kind: n_layer × n_embd, n_head heads (head size = n_embd / n_head).
# tiny runs a step in milliseconds on one CPU core (tests); small for gpt is GPT-2 small (124M with a 50k vocab),
# for bert it is BERT-small (Turc et al. 2019: 4 layers, 512 wide, 8 heads).
PRESETS: dict[str, dict] = {
    "tiny": {"gpt": dict(n_layer=2, n_embd=64, n_head=2), "bert": dict(n_layer=2, n_embd=64, n_head=2)},
    "mini": {"gpt": dict(n_layer=4, n_embd=256, n_head=4), "bert": dict(n_layer=4, n_embd=256, n_head=4)},
    "small": {"gpt": dict(n_layer=12, n_embd=768, n_head=12), "bert": dict(n_layer=4, n_embd=512, n_head=8)},
    "base": {"gpt": dict(n_layer=12, n_embd=768, n_head=12), "bert": dict(n_layer=12, n_embd=768, n_head=12)},
}


def resolve_shape(spec: ModelSpec) -> dict[str, int]:
    """The preset's `n_layer`/`n_embd`/`n_head` for this kind, with the spec's overrides applied."""
    shape = dict(PRESETS[spec.preset][spec.kind])
    for key in ("n_layer", "n_embd", "n_head"):
        if getattr(spec, key) is not None:
            shape[key] = getattr(spec, key)
    if shape["n_embd"] % shape["n_head"]:
        raise ValueError(
            f"n_embd {shape['n_embd']} is not divisible by n_head {shape['n_head']}: set model.n_head to a divisor"
        )
    return shape


def build_model(
    spec: ModelSpec, vocab_size: int, seq_len: int, special: dict[str, int], init_dir: str | None = None
) -> transformers.PreTrainedModel:
    """A freshly initialised `BertForMaskedLM` or `GPT2LMHeadModel` (tied input/output embeddings), or, with
    `init_dir`, the checkpoint there with its language-model head (a head the checkpoint lacks, as in a
    sentence-transformers encoder, starts from the seeded random initialisation).

    `special` holds the tokenizer's ids (`pad_id`, and `mask_id`/`cls_id`/`sep_id` for bert or `eos_id` for gpt).
    Position embeddings of a new model cover exactly `seq_len`: it is only ever trained on that many positions.
    The caller seeds torch before calling this so every data-parallel rank starts from the same weights.
    """
    if init_dir is not None:
        auto = AutoModelForMaskedLM if spec.kind == "bert" else AutoModelForCausalLM
        verbosity = transformers.logging.get_verbosity()
        transformers.logging.set_verbosity_error()  # its load report is a 20-line table per rank; ours is one line
        try:
            model, info = auto.from_pretrained(init_dir, output_loading_info=True)
        finally:
            transformers.logging.set_verbosity(verbosity)
        if info.get("missing_keys"):
            print(f"[lmpipe] init_from {init_dir}: newly initialised (not in the checkpoint): "
                  f"{', '.join(sorted(info['missing_keys']))}")
        if model.get_input_embeddings().num_embeddings < vocab_size:
            raise ValueError(f"{init_dir} embeds {model.get_input_embeddings().num_embeddings} tokens, the "
                             f"tokenizer has {vocab_size}: tokenize with the checkpoint's own tokenizer")
        return model
    shape = resolve_shape(spec)
    n_layer, n_embd, n_head = shape["n_layer"], shape["n_embd"], shape["n_head"]
    pad_id = special.get("pad_id")
    if spec.kind == "bert":
        config = BertConfig(
            vocab_size=vocab_size,
            hidden_size=n_embd,
            num_hidden_layers=n_layer,
            num_attention_heads=n_head,
            intermediate_size=4 * n_embd,
            max_position_embeddings=seq_len,
            type_vocab_size=2,  # sentence pairs for GLUE fine-tuning later
            hidden_dropout_prob=spec.dropout,
            attention_probs_dropout_prob=spec.dropout,
            pad_token_id=pad_id if pad_id is not None else 0,
        )
        return BertForMaskedLM(config)
    eos_id = special.get("eos_id")
    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=seq_len,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=spec.dropout,
        embd_pdrop=spec.dropout,
        attn_pdrop=spec.dropout,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id if pad_id is not None else eos_id,
    )
    return GPT2LMHeadModel(config)


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return getattr(model, "module", model)  # DDP → the model inside


def flops_per_token(model: torch.nn.Module, seq_len: int) -> float:
    """Training FLOPs per token, nanoGPT's `estimate_mfu` (PaLM appendix B): 6N + 12·L·H·Q·T.

    N counts every parameter but the position embeddings (token embeddings stay: they are tied with the output
    head, so they do matmul work). 6N = forward 2N + backward 4N; 12·L·H·Q·T is attention's QKᵀ and AV over T
    positions (H·Q = n_embd). For BERT the same holds per *processed* token, not per masked one.
    """
    model = _unwrap(model)
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())  # tied weights counted once
    for name, p in model.named_parameters():
        if "position_embeddings" in name or name.endswith("wpe.weight"):
            n_params -= p.numel()
    n_layer = cfg.num_hidden_layers
    n_embd = cfg.hidden_size
    return 6.0 * n_params + 12.0 * n_layer * n_embd * seq_len


# Dense (no sparsity) bf16/fp16 tensor-core peaks in FLOP/s, from the vendors' datasheets. Order matters:
# the first substring found in `torch.cuda.get_device_name()` wins ("H100 PCIe" before plain "H100").
_PEAK_BF16: list[tuple[str, float]] = [
    ("GH200", 989e12),
    ("H200", 989e12),
    ("H100 PCIE", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),  # SXM5 (names like "NVIDIA H100 80GB HBM3")
    ("H800", 989e12),
    ("B200", 2250e12),
    ("A100", 312e12),
    ("A800", 312e12),
    ("L40S", 362e12),
    ("L40", 181e12),
    ("L4", 121e12),
    ("A10G", 70e12),
    ("A10", 125e12),
    ("RTX 4090", 165e12),
    ("RTX 3090", 71e12),
    ("A6000", 155e12),
]


def peak_flops(device: torch.device, dtype: torch.dtype | None) -> float | None:
    """The bf16/fp16 dense peak of a known CUDA GPU, for MFU; None on CPU, for fp32, or for an unknown GPU."""
    device = torch.device(device)
    if device.type != "cuda" or dtype not in (torch.bfloat16, torch.float16):
        return None
    name = torch.cuda.get_device_name(device).upper()
    for key, flops in _PEAK_BF16:
        if key in name:
            return flops
    return None
