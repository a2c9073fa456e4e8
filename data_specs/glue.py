"""The GLUE spec: how `lmpipe glue` fine-tunes and scores a model, and how `lmpipe promote` gates it.

Defaults are Hugging Face `run_glue.py`'s (its `TrainingArguments` defaults): lr 5e-5, 3 epochs, batch 8,
max length 128, no warmup, no weight decay, linear decay, AdamW (0.9, 0.999, eps 1e-8), gradient clip 1.0,
seed 42. `tasks:` overrides them per task; command-line flags override both for every task run.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from data_specs._base import StrictModel

GlueTaskName = Literal["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]
ALL_TASKS: list[str] = ["cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte", "wnli"]  # = tasks.glue.TASK_NAMES


class FinetuneSpec(StrictModel):
    """Hyperparameters of one task's fine-tuning. Every field is optional in a per-task override."""

    lr: float = Field(5e-5, gt=0, description="Peak learning rate (run_glue: 5e-5).")
    epochs: float = Field(3.0, gt=0, description="Passes over the training rows (run_glue: 3).")
    batch_size: int = Field(8, ge=1, description="Training rows per optimizer step, all workers together (run_glue: 8).")
    eval_batch_size: int = Field(64, ge=1, description="Rows per evaluation forward pass.")
    max_length: int = Field(128, ge=8, description="Tokens per input (pairs truncated longest-first; run_glue: 128).")
    warmup_ratio: float = Field(0.0, ge=0, lt=1, description="Share of steps with linear warmup (run_glue: 0).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay on matrix weights (run_glue: 0).")
    grad_clip: float | None = Field(1.0, gt=0, description="Global gradient-norm clip; null = off (run_glue: 1.0).")
    seed: int = Field(42, description="Seed of the head's initialisation, dropout and the shuffle (run_glue: 42).")
    max_train_examples: int | None = Field(None, ge=1, description="Use only the first N training rows.")
    max_eval_examples: int | None = Field(None, ge=1, description="Score only the first N rows of each dev split.")
    checkpoint_every: int = Field(500, ge=1, description="Checkpoint every N steps (and at the end).")
    selection_fraction: float = Field(
        0.0, ge=0, lt=0.5, description="Share of the training rows carved off (seeded by `selection_seed`, the same "
        "for every seed) to choose the checkpoint on; 0 = none: the last checkpoint is scored, as run_glue does."
    )
    selection_seed: int = Field(0, description="Seed of the carve-off: which training rows select the checkpoint.")
    select: Literal["last", "best"] = Field(
        "last", description="'best': score the checkpoint with the best task score on the carved-off rows "
        "(run_glue's load_best_model_at_end, never on dev); needs selection_fraction > 0."
    )
    eval_every: int | None = Field(None, ge=1, description="Steps between selection evaluations; null = every epoch.")
    early_stopping_patience: int | None = Field(
        None, ge=1, description="Stop after this many selection evaluations without improvement (select: best)."
    )

    @model_validator(mode="after")
    def _selection_needs_rows(self) -> FinetuneSpec:
        if self.select == "best" and self.selection_fraction <= 0:
            raise ValueError("select: best needs selection_fraction > 0 (rows carved from train to select on)")
        if self.early_stopping_patience is not None and self.select != "best":
            raise ValueError("early_stopping_patience needs select: best")
        return self


class FinetuneOverride(StrictModel):
    """Per-task changes to the defaults; unset fields keep the default."""

    lr: float | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    batch_size: int | None = Field(None, ge=1)
    eval_batch_size: int | None = Field(None, ge=1)
    max_length: int | None = Field(None, ge=8)
    warmup_ratio: float | None = Field(None, ge=0, lt=1)
    weight_decay: float | None = Field(None, ge=0)
    grad_clip: float | None = Field(None, gt=0)
    seed: int | None = None
    max_train_examples: int | None = Field(None, ge=1)
    max_eval_examples: int | None = Field(None, ge=1)
    checkpoint_every: int | None = Field(None, ge=1)
    selection_fraction: float | None = Field(None, ge=0, lt=0.5)
    selection_seed: int | None = None
    select: Literal["last", "best"] | None = None
    eval_every: int | None = Field(None, ge=1)
    early_stopping_patience: int | None = Field(None, ge=1)


class GlueDataSpec(StrictModel):
    """Where the GLUE data comes from."""

    dir: str | None = Field(
        None,
        description="Local folder with <TASK>/{train,dev}.tsv (GLUE release or HF exported layout); "
        "null = the Hugging Face hub (`hub_repo`).",
    )
    hub_repo: str = Field("nyu-mll/glue", description="Hub dataset used when `dir` is null.")
    hub_revision: str | None = Field(
        None, description="Commit sha (or branch/tag) of `hub_repo`; null = `main`. Either way the commit it "
        "resolves to is read and recorded in the lineage and the evaluation setup, so two evaluations on "
        "different hub revisions never compare."
    )


class GlueScalingSpec(StrictModel):
    """Where fine-tuning runs (the same knobs as pretraining's `scaling`)."""

    num_workers: int = Field(1, ge=1, description="Ray Train workers (data-parallel ranks).")
    use_gpu: bool = Field(False, description="One GPU per worker; bf16 autocast.")
    cpus_per_worker: float = Field(1.0, gt=0, description="Logical CPUs per worker.")
    ray_address: str | None = Field(None, description="Existing Ray cluster; RAY_ADDRESS wins; null = local Ray.")
    storage_path: str | None = Field(None, description="Checkpoints and job results; null = glue/runs under "
                                     "$LMPIPE_STATE_DIR, else .lmpipe/glue/runs in the project.")
    max_failures: int = Field(3, ge=-1, description="Worker failures to recover from (-1 = unlimited).")
    precision: Literal["auto", "fp32", "bf16"] = Field("auto", description="'auto' = bf16 on GPU, fp32 on CPU.")
    max_concurrent_tasks: int | None = Field(
        None, ge=1, description="GLUE tasks fine-tuned at once (each its own Ray Train job), when no search is set: "
        "null = as many jobs as the Ray cluster holds, 1 = one after another. Results do not depend on it.")

    @field_validator("storage_path")
    @classmethod
    def _local_storage(cls, value: str | None) -> str | None:
        if value is not None and "://" in value:
            raise ValueError(f"{value!r}: GLUE job folders (results, reuse by fingerprint, final models) need a "
                             "local or mounted path, shared by every node (NFS); storage URLs are supported for "
                             "pretraining's scaling.storage_path")
        return value


class GlueMLflowSpec(StrictModel):
    """Tracking and registry. MLFLOW_TRACKING_URI wins over `tracking_uri`."""

    tracking_uri: str | None = Field(None, description="null = the project-local SQLite store.")
    experiment: str = Field("lmpipe-glue", description="Experiment of the evaluation runs.")


class GateSpec(StrictModel):
    """The promotion gate (`tasks.glue.gate`): `champion` moves only to a candidate evaluated like the champion,
    above every trivial baseline, and better by `margin`."""

    margin: float | Literal["auto"] = Field(
        "auto", description="Required gain over the champion and over each trivial baseline (fraction: 0.005 = "
        "half a point); 'auto' = the measured noise: the std over seeds, or 2 paired-bootstrap standard errors."
    )
    require: Literal["point", "ci"] = Field(
        "point", description="'point': the gain must reach the margin; 'ci': the lower bound of its paired "
        "bootstrap interval must."
    )
    tasks: list[GlueTaskName] | None = Field(
        None, description="Tasks the gate compares on; null = the champion's whole task set (the candidate's "
        "when there is no champion)."
    )
    floor: bool = Field(
        True, description="Every task must beat its trivial baseline (majority class, mean score) by the margin. "
        "false only for plumbing tests and smoke runs: a model below the floor is worse than a constant guess."
    )
    max_contamination: float | None = Field(
        None, ge=0, le=1, description="Refuse a candidate any of whose compared dev sets has a larger share of its "
        "examples in the pretraining corpus (fraction), or whose contamination was not checked; null = no limit."
    )
    bootstrap_resamples: int = Field(1000, ge=10, description="Paired bootstrap resamples of the dev rows.")
    bootstrap_seed: int = Field(0, description="Seed of the bootstrap resampling.")

    @field_validator("margin")
    @classmethod
    def _margin_not_negative(cls, value: float | str) -> float | str:
        if not isinstance(value, str) and value < 0:
            raise ValueError("margin must be >= 0 or 'auto'")
        return value


class ContaminationSpec(StrictModel):
    """n-gram overlap between the base model's pretraining corpus and the GLUE dev sets (GPT-3 appendix C)."""

    enabled: bool = Field(True, description="Run the check when the model's lineage names a curated corpus.")
    ngram: int = Field(13, ge=4, le=50, description="Words per n-gram (GPT-3 used 13).")
    short_fields: Literal["whole", "skip"] = Field(
        "whole", description="Text shorter than `ngram` words: dirty if it occurs whole (GPT-3), or skipped."
    )
    pairs: Literal["whole_example", "each_field"] = Field(
        "whole_example", description="Pair tasks: match the example's two sentences as one text (a short "
        "hypothesis alone never flags), or field by field."
    )
    workers: int | None = Field(None, ge=1, description="Processes scanning shards at once; null = the cores.")


class SearchSpec(StrictModel):
    """A hyperparameter grid per task (the BERT paper's: lr {5e-5, 3e-5, 2e-5} x batch {16, 32} x epochs
    {2, 3, 4}). Every trial is a fine-tuning job chosen on the rows carved from train, never on dev."""

    lr: list[float] | None = Field(None, min_length=1, description="Peak learning rates to try.")
    batch_size: list[int] | None = Field(None, min_length=1, description="Batch sizes to try.")
    epochs: list[float] | None = Field(None, min_length=1, description="Epoch counts to try.")
    max_concurrent: int | None = Field(
        None, ge=1, description="Trials trained at once, each a Ray Train job of `scaling`'s size; null = as many "
        "as the cluster's CPUs (and GPUs with use_gpu) hold. Results do not depend on it: each trial is seeded."
    )

    def trials(self) -> list[dict[str, float | int]]:
        """Every combination, lr slowest-varying: [{lr, batch_size, epochs}, ...] (only the axes given)."""
        axes = [(k, v) for k, v in (("lr", self.lr), ("batch_size", self.batch_size), ("epochs", self.epochs)) if v]
        out: list[dict[str, float | int]] = [{}]
        for key, values in axes:
            out = [{**t, key: v} for t in out for v in values]
        return out


class GlueSpec(StrictModel):
    """Fine-tune and score a model on GLUE tasks; gate the `champion` alias on the GLUE score."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$", description="Spec name (lower case, no spaces).")
    version: int = Field(1, ge=1, description="Bump when the recipe's behaviour changes.")
    tasks: list[GlueTaskName] = Field(default_factory=lambda: list(ALL_TASKS), description="Tasks to run, in order.")
    defaults: FinetuneSpec = Field(default_factory=FinetuneSpec, description="Hyperparameters of every task.")
    seeds: list[int] | None = Field(
        None, min_length=1, description="Fine-tune every task once per seed and report the mean and spread (the "
        "BERT paper's restarts); the first seed's model is registered. null = the one `seed` of each task."
    )
    overrides: dict[GlueTaskName, FinetuneOverride] = Field(
        default_factory=dict, description="Per-task changes to `defaults` (e.g. mrpc: {epochs: 5})."
    )
    search: SearchSpec | None = Field(
        None, description="Grid-search each task on the carved-off rows (needs select: best), the first seed; the "
        "chosen trial then runs every seed. null = the hyperparameters as given."
    )
    data: GlueDataSpec = Field(default_factory=GlueDataSpec)
    scaling: GlueScalingSpec = Field(default_factory=GlueScalingSpec)
    mlflow: GlueMLflowSpec = Field(default_factory=GlueMLflowSpec)
    gate: GateSpec = Field(default_factory=GateSpec)
    contamination: ContaminationSpec = Field(default_factory=ContaminationSpec)

    @field_validator("tasks")
    @classmethod
    def _no_repeats(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("tasks is empty: name at least one GLUE task")
        if len(set(value)) != len(value):
            raise ValueError(f"tasks repeats a task: {value}")
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError(f"seeds repeats a seed: {value}")
        return value

    @model_validator(mode="after")
    def _overrides_apply(self) -> GlueSpec:
        for task, override in self.overrides.items():
            self.for_task(task)  # the merged values must validate too
            if self.seeds is not None and override.seed is not None:
                raise ValueError(f"overrides.{task}.seed and seeds both set: with `seeds`, every task runs each "
                                 "seed; drop the per-task seed")
        return self

    @model_validator(mode="after")
    def _search_selects(self) -> GlueSpec:
        if self.search is not None:
            if not self.search.trials()[0]:
                raise ValueError("search names no axis: give lr, batch_size or epochs lists")
            for task in self.tasks:
                if self.for_task(task).select != "best":
                    raise ValueError(f"search needs select: best (and selection_fraction > 0) for {task}: trials "
                                     "are chosen on rows carved from train, never on dev")
        return self

    def seeds_for(self, task: str, seed_flag: int | None = None) -> list[int]:
        """The seeds `task` is fine-tuned with: a command-line `--seed` alone, else `seeds`, else its one seed."""
        if seed_flag is not None:
            return [int(seed_flag)]
        return list(self.seeds) if self.seeds is not None else [self.for_task(task).seed]

    def for_task(self, task: str, **flags: object) -> FinetuneSpec:
        """The hyperparameters of `task`: defaults, then the spec's override, then non-None `flags`."""
        merged = self.defaults.model_dump()
        if task in self.overrides:
            merged.update({k: v for k, v in self.overrides[task].model_dump().items() if v is not None})
        merged.update({k: v for k, v in flags.items() if v is not None})
        return FinetuneSpec(**merged)
