"""An MLflow pyfunc over a fine-tuned GLUE model: label names and probabilities, or STS-B's similarity score.

Logged as *models-from-code*, like hf_pyfunc.py: MLflow copies this file into the model and runs it at load
time, so it stays self-contained (mlflow, pandas, torch, transformers only; no `tasks.*` imports) and ends
with `set_model(...)`. Nothing is pickled.

Artifacts: "hf_model" = the save_pretrained folder of an `AutoModelForSequenceClassification` (BERT-style
or GPT-2-style) and its tokenizer.
Model config: {"glue_task": "sst2", "text_columns": ["sentence"], "label_names": ["negative", "positive"],
"max_length": 128};
label_names [] means regression (STS-B: one output). Without label_names they come from config.json.

    m = mlflow.pyfunc.load_model("models:/glue-sst2@candidate")
    m.predict(pd.DataFrame({"sentence": ["a gripping, moving film"]}))
      -> DataFrame[label, score, negative, positive]   (label name, its probability, one column per label)
    m.predict(pd.DataFrame({"sentence1": ["a man plays"], "sentence2": ["a man is playing"]}))   # stsb
      -> DataFrame[score]                              (the predicted similarity, the model's raw output)

Rows come back in the input order. Encoding is fine-tuning's, through the one function both use
(`encode_rows`, imported by cluster/train/finetune.py): a BERT-style pair is `tokenizer(first, second)` with
segment ids; a GPT-style tokenizer (no separator token of its own) joins the pair as `first <eos> second`
without segment ids (GPT-2 would add a learned embedding of token-type 1 to the second sentence otherwise).
Rows are cut to the `max_length` the task was fine-tuned and scored with (model config "max_length"; without
it, the model's context), the longer text first for pairs ('longest_first'), so inputs of any length work.
GPT-2 tokenizers ship no pad token: eos pads the batch (GPT-2 classifies from each row's last non-pad token, so
padding is harmless).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import mlflow
import pandas as pd

HF_ARTIFACT = "hf_model"
LABEL = "label"  # output: the predicted label's name
SCORE = "score"  # output: its probability (classification) or the predicted similarity (regression)
_BATCH = 32  # rows per forward pass
_UNSET = 1_000_000  # a tokenizer that records no limit reports ~1e30 (transformers' VERY_LARGE_INTEGER)
_LEARNED_OFFSET = {"roberta": 2, "xlm-roberta": 2, "camembert": 2}  # positions start after padding_idx


def output_columns(label_names: list[str]) -> list[str]:
    """Columns predict returns: label, score and one probability per label name; only score for regression."""
    return [LABEL, SCORE, *label_names] if label_names else [SCORE]


def check_columns(text_columns: list[str], label_names: list[str]) -> None:
    """Raise ValueError unless there are one or two distinct text columns and 0 (regression) or 2+ distinct
    label names that do not collide with the label/score outputs."""
    if len(text_columns) not in (1, 2) or len(set(text_columns)) != len(text_columns) or not all(text_columns):
        raise ValueError(f"text_columns must be one or two distinct column names, got {text_columns!r}")
    if len(label_names) == 1 or len(set(label_names)) != len(label_names) or not all(label_names):
        raise ValueError(f"label_names must be [] (regression) or 2+ distinct names, got {label_names!r}")
    reserved = {LABEL, SCORE} & set(label_names)
    if reserved:
        raise ValueError(f"label names {sorted(reserved)} collide with the output columns {LABEL!r}/{SCORE!r}")


def max_tokens(config: Any, tokenizer: Any) -> int | None:
    """The model's context: min(position embeddings, tokenizer.model_max_length if recorded); None if unknown."""
    positions = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
    bounds = []
    if isinstance(positions, int) and positions > 0:
        bounds.append(positions - _LEARNED_OFFSET.get(getattr(config, "model_type", ""), 0))
    recorded = getattr(tokenizer, "model_max_length", None)
    if isinstance(recorded, int) and 0 < recorded < _UNSET:
        bounds.append(recorded)
    return min(bounds, default=None)


def pair_joiner(tokenizer: Any) -> int | None:
    """The token id that joins a pair for a tokenizer without a pair template (GPT-style: no sep token): its
    eos. None when the tokenizer builds pairs itself (BERT: `[CLS] a [SEP] b [SEP]` and segment ids)."""
    if tokenizer.sep_token_id is not None:
        return None
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has neither a sep nor an eos token to join a sentence pair with")
    return int(tokenizer.eos_token_id)


def longest_first(first: int, second: int, budget: int) -> tuple[int, int]:
    """Lengths the pair keeps under `budget` tokens, as `tokenizers`' 'longest_first' truncation keeps them: the
    shorter side (the first, on a tie) keeps up to half the budget, the longer side the rest."""
    if first + second <= budget:
        return first, second
    if first > second:
        keep_second = min(second, budget // 2)
        return min(first, budget - keep_second), keep_second
    keep_first = min(first, budget // 2)
    return keep_first, min(second, budget - keep_first)


def encode_rows(tokenizer: Any, texts: Sequence[Sequence[str]], max_length: int | None) -> dict[str, list]:
    """input_ids, attention_mask and (BERT-style pairs only) token_type_ids for one or two text columns, cut to
    `max_length`: how fine-tuning encodes and how serving must, so both call this."""
    pair = len(texts) == 2
    joiner = pair_joiner(tokenizer) if pair else None
    if joiner is None:
        enc = tokenizer(*(list(t) for t in texts), truncation="longest_first" if max_length else False,
                        max_length=max_length, return_token_type_ids=pair)
        out = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
        types = enc.get("token_type_ids")
        if pair and types and any(any(row) for row in types):  # all zeros (no segments) means: leave them out
            out["token_type_ids"] = types
        return out
    firsts = tokenizer(list(texts[0]))["input_ids"]  # the tokenizer's own specials (a bos, if any) lead
    seconds = tokenizer(list(texts[1]), add_special_tokens=False)["input_ids"]
    ids = []
    for a, b in zip(firsts, seconds):
        if max_length:
            keep_a, keep_b = longest_first(len(a), len(b), max(0, max_length - 1))
            a, b = a[:keep_a], b[:keep_b]
        ids.append([*a, joiner, *b])
    return {"input_ids": ids, "attention_mask": [[1] * len(row) for row in ids]}


def _frame(model_input: Any) -> pd.DataFrame:
    if isinstance(model_input, pd.DataFrame):
        return model_input.reset_index(drop=True)
    if isinstance(model_input, dict) and all(isinstance(v, str) for v in model_input.values()):
        return pd.DataFrame([model_input])  # one row given as {"sentence": "..."}
    return pd.DataFrame(model_input)


class GlueClassifier(mlflow.pyfunc.PythonModel):
    """Sequence classification (softmax over label names) or regression over the "hf_model" folder."""

    def load_context(self, context) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        cfg = context.model_config or {}
        path = context.artifacts[HF_ARTIFACT]
        self.glue_task = cfg.get("glue_task", "")
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        if self.tokenizer.pad_token is None:  # GPT-2: a batch of unequal rows needs a pad token
            if self.tokenizer.eos_token is None:
                raise ValueError(f"{path}: the tokenizer has neither a pad nor an eos token to pad batches with")
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(self.device).eval()
        if self.model.config.pad_token_id is None:  # GPT-2 finds each row's last real token by pad_token_id
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        n_out = self.model.config.num_labels
        names = cfg.get("label_names")
        if names is None:  # not given: regression for one output, else config.json's id2label
            names = [] if n_out == 1 else [self.model.config.id2label[i] for i in range(n_out)]
        self.label_names = [str(n) for n in names]
        self.text_columns = [str(c) for c in cfg.get("text_columns") or []]
        check_columns(self.text_columns, self.label_names)
        if n_out != (len(self.label_names) or 1):
            raise ValueError(f"the model has {n_out} output(s) but label_names is {self.label_names!r}")
        # The length the task was fine-tuned and scored with; never more than the model's context.
        context = max_tokens(self.model.config, self.tokenizer)
        bounds = [int(v) for v in (cfg.get("max_length"), context) if v]
        self.max_length = min(bounds) if bounds else None

    def predict(self, context, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        import torch

        df = _frame(model_input)
        missing = [c for c in self.text_columns if c not in df.columns]
        if missing:
            raise ValueError(
                f"input lacks column(s) {missing}: this {self.glue_task or 'GLUE'} model expects "
                f"{self.text_columns}, got {list(df.columns)}"
            )
        texts = [df[c].fillna("").astype(str).tolist() for c in self.text_columns]  # 1 or 2 lists of len(df)
        chunks = []
        for start in range(0, len(df), _BATCH):
            enc = encode_rows(self.tokenizer, [column[start : start + _BATCH] for column in texts], self.max_length)
            for row, ids in enumerate(enc["input_ids"]):
                if not ids:  # "" with GPT-2 (no specials added): one attended pad token, so the row has a last token
                    for key in enc:
                        enc[key][row] = [int(key == "attention_mask")]
                    enc["input_ids"][row] = [self.tokenizer.pad_token_id]
            enc = self.tokenizer.pad(enc, return_tensors="pt").to(self.device)  # (B, T) each
            with torch.no_grad():
                chunks.append(self.model(**enc).logits.float().cpu())  # (B, num_labels)
        logits = torch.cat(chunks) if chunks else torch.zeros(0, len(self.label_names) or 1)  # (N, num_labels)
        if not self.label_names:
            return pd.DataFrame({SCORE: logits[:, 0].tolist()}, columns=output_columns([]))
        probs = logits.softmax(-1)  # (N, num_labels)
        best, best_id = probs.max(-1)
        out = {LABEL: [self.label_names[i] for i in best_id.tolist()], SCORE: best.tolist()}
        out.update({name: probs[:, j].tolist() for j, name in enumerate(self.label_names)})
        return pd.DataFrame(out, columns=output_columns(self.label_names))


# Models-from-code entry point: MLflow runs this file at load time and takes the object set here.
mlflow.models.set_model(GlueClassifier())
