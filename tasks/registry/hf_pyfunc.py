"""An MLflow pyfunc over a Hugging Face `save_pretrained` directory (masked LM or causal LM).

Logged as *models-from-code*: MLflow copies this file into the model and runs it at load time, so it must
stay self-contained (mlflow, pandas, torch, transformers only; no `tasks.*` imports) and end with
`set_model(...)`. Nothing is pickled, so a fresh process with those packages loads it.

Artifacts: "hf_model" = the save_pretrained folder (config, weights, tokenizer).
Model config (optional): {"task": "fill-mask" | "text-generation"}; without it the task is read from
config.json (`architectures` / `model_type`).

    m = mlflow.pyfunc.load_model("models:/tiny-bert@candidate")
    m.predict(pd.DataFrame({"text": ["the [MASK] sat on the mat"]}), params={"top_k": 3})
      -> DataFrame[text, token_str, score, top_k]          (top_k: list of {"token_str", "score"})
    m.predict(pd.DataFrame({"text": ["once upon a"]}), params={"max_new_tokens": 10})
      -> DataFrame[text, generated_text]                   (greedy; prompt + continuation)

Any input length works; the model's context C (the smaller of its position embeddings and the tokenizer's
model_max_length, when the tokenizer records one) bounds what the model sees:
- generation: max_new_tokens is capped at C - 1 and only the last C - max_new_tokens prompt tokens are fed
  (left truncation: the continuation depends on the end of the prompt); the full prompt is still echoed;
- fill-mask: a text longer than C is cut to a window of C tokens around its first mask, [CLS]/[SEP] (or
  the tokenizer's own specials) kept at the ends, so the mask is never cut away.
"""

from __future__ import annotations

from typing import Any

import mlflow
import pandas as pd

FILL_MASK = "fill-mask"
TEXT_GENERATION = "text-generation"
HF_ARTIFACT = "hf_model"
_BATCH = 32  # texts per forward pass in fill-mask

_MASKED_TYPES = {"bert", "roberta", "distilbert", "albert", "electra", "deberta", "deberta-v2", "modernbert"}
_CAUSAL_TYPES = {"gpt2", "gpt_neo", "gpt_neox", "gptj", "llama", "mistral", "qwen2", "qwen3", "opt"}
_CONTEXT_ATTRS = ("n_positions", "max_position_embeddings", "n_ctx")  # first one a config has wins
# RoBERTa-style position ids start after padding_idx (= 1), so 514 embeddings hold 512 tokens.
_POSITION_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}
_NO_LIMIT = 1_000_000  # tokenizers without a recorded limit report ~1e30 (transformers' VERY_LARGE_INTEGER)


def detect_task(config: Any) -> str:
    """fill-mask or text-generation from a transformers config (architectures first, then model_type)."""
    for arch in getattr(config, "architectures", None) or []:
        if arch.endswith("ForMaskedLM"):
            return FILL_MASK
        if arch.endswith("ForCausalLM") or arch.endswith("LMHeadModel"):
            return TEXT_GENERATION
    model_type = getattr(config, "model_type", "")
    if model_type in _MASKED_TYPES:
        return FILL_MASK
    if model_type in _CAUSAL_TYPES:
        return TEXT_GENERATION
    raise ValueError(
        f"cannot tell the task of model_type={model_type!r} architectures={getattr(config, 'architectures', None)}; "
        "pass model_config={'task': 'fill-mask' | 'text-generation'}"
    )


def context_length(config: Any, tokenizer: Any = None) -> int | None:
    """Tokens the model can attend to: its position embeddings, lowered to the tokenizer's model_max_length
    when that is recorded (set_model_max_length); None when neither says (e.g. no absolute positions)."""
    limits = []
    for attr in _CONTEXT_ATTRS:
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            limits.append(value - _POSITION_OFFSET.get(getattr(config, "model_type", ""), 0))
            break
    tok_limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_limit, int) and 0 < tok_limit < _NO_LIMIT:
        limits.append(tok_limit)
    return min(limits) if limits else None


def mask_window(ids: list[int], mask_id: int, context: int | None, end_ids: set[int]) -> tuple[list[int], int]:
    """(ids cut to `context` tokens around the first mask, position of that mask in the cut ids).

    Leading and trailing `end_ids` ([CLS] ... [SEP], <s> ... </s>) stay at the ends; the body between them
    is cut to a window centred on the first mask (moved inward at either end of the text). Raises
    ValueError when there is no mask.
    """
    ends = end_ids - {mask_id}
    head = 0
    while head < len(ids) and ids[head] in ends:
        head += 1
    tail = len(ids)
    while tail > head and ids[tail - 1] in ends:
        tail -= 1
    body = ids[head:tail]
    if mask_id not in body:
        raise ValueError("no mask token")
    at = body.index(mask_id)
    if context is None or len(ids) <= context:
        return ids, head + at
    room = max(context - head - (len(ids) - tail), 1)  # body tokens that fit beside the specials
    start = min(max(at - room // 2, 0), len(body) - room)  # (0 <= start <= at < start + room)
    return ids[:head] + body[start : start + room] + ids[tail:], head + at - start


def _texts(model_input: Any) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if "text" not in model_input.columns:
            raise ValueError(f"input needs a 'text' column, got {list(model_input.columns)}")
        return model_input["text"].astype(str).tolist()
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, dict) and "text" in model_input:
        value = model_input["text"]
        return [value] if isinstance(value, str) else [str(v) for v in value]
    return [str(v) for v in model_input]


class HFTextModel(mlflow.pyfunc.PythonModel):
    """Fill-mask (masked LM) or greedy generation (causal LM) over the "hf_model" artifact folder."""

    def load_context(self, context) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

        path = context.artifacts[HF_ARTIFACT]
        self.task = (context.model_config or {}).get("task") or detect_task(AutoConfig.from_pretrained(path))
        if self.task not in (FILL_MASK, TEXT_GENERATION):
            raise ValueError(f"unknown task {self.task!r}")
        auto = AutoModelForMaskedLM if self.task == FILL_MASK else AutoModelForCausalLM
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = auto.from_pretrained(path).to(self.device).eval()
        self.context = context_length(self.model.config, self.tokenizer)

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        texts = _texts(model_input)
        params = params or {}
        if self.task == FILL_MASK:
            return self._fill_mask(texts, int(params.get("top_k", 5)))
        return self._generate(
            texts, int(params.get("max_new_tokens", 20)), bool(params.get("return_full_text", True))
        )

    def _fill_mask(self, texts: list[str], top_k: int) -> pd.DataFrame:
        import torch

        tok = self.tokenizer
        if tok.mask_token_id is None:
            raise ValueError("this tokenizer has no mask token; fill-mask needs one")
        ends = {t for t in (tok.cls_token_id, tok.sep_token_id, tok.bos_token_id, tok.eos_token_id) if t is not None}
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        rows = []
        for start in range(0, len(texts), _BATCH):
            batch = texts[start : start + _BATCH]
            # No truncation here (it could cut the mask away, and saved tokenizers may record no limit):
            # each text is cut to a window around its mask instead.
            windows, mask_at = [], []
            for i, ids in enumerate(tok(batch, verbose=False)["input_ids"]):
                try:
                    ids, at = mask_window(list(ids), tok.mask_token_id, self.context, ends)
                except ValueError:
                    raise ValueError(f"text {start + i} has no {tok.mask_token!r}: {batch[i]!r}") from None
                windows.append(ids)
                mask_at.append(at)
            width = max(len(w) for w in windows)
            input_ids = torch.tensor([w + [pad_id] * (width - len(w)) for w in windows], device=self.device)  # (B, T)
            attention = torch.tensor([[1] * len(w) + [0] * (width - len(w)) for w in windows], device=self.device)
            with torch.no_grad():
                logits = self.model(input_ids=input_ids, attention_mask=attention).logits  # (B, T, V)
            for i, text in enumerate(batch):
                # The first mask is filled; others stay masked in the context (as in one pipeline step).
                probs = logits[i, mask_at[i]].float().softmax(-1)  # (V,)
                scores, ids = probs.topk(min(top_k, probs.numel()))
                candidates = [
                    {"token_str": tok.decode([int(t)]).strip(), "score": float(s)}
                    for s, t in zip(scores.tolist(), ids.tolist())
                ]
                rows.append(
                    {
                        "text": text,
                        "token_str": candidates[0]["token_str"],
                        "score": candidates[0]["score"],
                        "top_k": candidates,
                    }
                )
        return pd.DataFrame(rows, columns=["text", "token_str", "score", "top_k"])

    def _generate(self, texts: list[str], max_new_tokens: int, full_text: bool) -> pd.DataFrame:
        import torch

        tok = self.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        start_id = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        if self.context is not None:
            max_new_tokens = min(max_new_tokens, self.context - 1)  # leave room for one prompt token
        if max_new_tokens <= 0:
            return pd.DataFrame({"text": texts, "generated_text": [t if full_text else "" for t in texts]})
        out = []
        # One text at a time: no padding, so a text's greedy output never depends on its batch mates.
        for text in texts:
            ids = tok(text, return_tensors="pt", verbose=False)["input_ids"]  # (1, T)
            if ids.shape[1] == 0:
                if start_id is None:
                    raise ValueError("empty prompt and the tokenizer has no bos/eos token to start from")
                ids = torch.tensor([[start_id]])
            if self.context is not None:
                ids = ids[:, -(self.context - max_new_tokens) :]  # left truncation: prompt + new <= context
            ids = ids.to(self.device)
            with torch.no_grad():
                seq = self.model.generate(
                    input_ids=ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=max_new_tokens,
                    do_sample=False,
                    pad_token_id=pad_id,
                )
            continuation = tok.decode(seq[0, ids.shape[1] :], skip_special_tokens=True)
            out.append(text + continuation if full_text else continuation)
        return pd.DataFrame({"text": texts, "generated_text": out})


# Models-from-code entry point: MLflow runs this file at load time and takes the object set here.
mlflow.models.set_model(HFTextModel())
