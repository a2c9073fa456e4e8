"""A GLUE task's jobs (`tasks.glue.job`): a finished job is reused, never retrained; evaluation-only settings
stay out of the job's fingerprint; seeds are scored one by one and summarised as mean and spread."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from data_specs.glue import FinetuneSpec, GlueSpec
from tasks.glue import job
from tasks.glue.data import GlueExamples


@dataclass
class _Outcome:  # what run_finetuning returns, as far as run_seed reads it
    model_dir: str
    predictions: dict
    final_step: int = 7
    resumed_from_step: int | None = None
    metrics: dict | None = None
    scores: dict | None = None

    def __post_init__(self):
        self.metrics = self.metrics or {"train_loss": 0.5}
        self.scores = self.scores or {}


def _run(tmp_path, *, eval_fp="e1", calls=None, fail=False):
    calls = calls if calls is not None else []

    def train(run_name):
        calls.append(("train", run_name))
        if fail:
            raise RuntimeError("worker died")
        model = tmp_path / run_name / "final_model"
        model.mkdir(parents=True, exist_ok=True)
        return _Outcome(str(model), {"validation": [1, 0, 1]}, scores={"validation": [0.9, 0.8, 0.7]})

    def predict(model_dir):
        calls.append(("predict", model_dir))
        return {"validation": [0, 0, 0]}, {"validation": [0.6, 0.6, 0.6]}

    return job.run_seed(task_name="rte", seed=42, hp=FinetuneSpec(), job_fp="fp1", eval_fp=eval_fp,
                        jobs_root=str(tmp_path / "jobs"), train_fn=train, predict_fn=predict)


def test_a_finished_job_is_reused_and_new_dev_rows_are_predicted_not_trained(tmp_path):
    calls = []
    first = _run(tmp_path, calls=calls)
    assert not first.reused and [c[0] for c in calls] == ["train"]
    again = _run(tmp_path, calls=calls)  # same dev rows: the stored predictions, nothing runs
    assert again.reused and again.predictions == first.predictions and len(calls) == 1
    assert again.scores == first.scores == {"validation": [0.9, 0.8, 0.7]}
    assert again.model_dir == first.model_dir and again.final_step == 7
    other = _run(tmp_path, eval_fp="e2", calls=calls)  # other dev rows: the saved model predicts them
    assert other.reused and [c[0] for c in calls] == ["train", "predict"]
    assert other.predictions == {"validation": [0, 0, 0]} and other.scores == {"validation": [0.6, 0.6, 0.6]}
    assert _run(tmp_path, eval_fp="e2", calls=calls).predictions == {"validation": [0, 0, 0]} and len(calls) == 2


def test_an_unfinished_job_resumes_under_its_run_name_and_a_lost_model_retrains(tmp_path):
    calls = []
    with pytest.raises(RuntimeError):
        _run(tmp_path, calls=calls, fail=True)
    _run(tmp_path, calls=calls)
    assert calls[0][1] == calls[1][1]  # the same run name: run_finetuning resumes its checkpoints
    import shutil

    shutil.rmtree(tmp_path / calls[1][1])  # the final model is gone: the job cannot be reused
    out = _run(tmp_path, calls=calls)
    assert not out.reused and len(calls) == 3 and calls[2][1] != calls[1][1]


def test_the_job_fingerprint_holds_what_training_reads_and_nothing_else():
    hp = FinetuneSpec()
    base = job.training_fingerprint("m1", "rte", hp, 128, "sha256:a", 100)
    for change in ({"eval_batch_size": 7}, {"max_eval_examples": 10}, {"checkpoint_every": 3}):
        assert job.training_fingerprint("m1", "rte", hp.model_copy(update=change), 128, "sha256:a", 100) == base
    for change in ({"lr": 1e-4}, {"seed": 1}, {"epochs": 2.0}, {"max_train_examples": 10}):
        assert job.training_fingerprint("m1", "rte", hp.model_copy(update=change), 128, "sha256:a", 100) != base
    assert job.training_fingerprint("m2", "rte", hp, 128, "sha256:a", 100) != base
    assert job.training_fingerprint("m1", "rte", hp, 64, "sha256:a", 100) != base
    assert job.training_fingerprint("m1", "rte", hp, 128, "sha256:b", 100) != base


def test_seeds_are_scored_one_by_one_then_averaged():
    dev = GlueExamples("rte", "validation", (["a"] * 4, ["b"] * 4), [0, 1, 1, 0], "dev.tsv", "ab", "hf")
    train = GlueExamples("rte", "train", (["a"] * 2, ["b"] * 2), [0, 1], "train.tsv", "cd", "hf")
    data = job.TaskData(train, {"validation": dev})
    outcomes = [job.SeedOutcome(1, {"validation": [0, 1, 1, 0]}, "m", "r1", 1, scores={"validation": [.9] * 4}),
                job.SeedOutcome(2, {"validation": [0, 1, 0, 1]}, "m", "r2", 1, scores={"validation": [.6] * 4})]
    scores = job.score_seeds("rte", data, outcomes)
    assert scores.results["rte"] == {"accuracy": 0.75, "n_train": 2, "n_eval": 4}
    assert scores.spread["rte"]["accuracy"] == pytest.approx(0.353553, abs=1e-6)  # sample std of (1.0, 0.5)
    assert scores.seed_scores == [1.0, 0.5]
    assert scores.predictions["rte"] == ([0, 1, 1, 0], {1: [0, 1, 1, 0], 2: [0, 1, 0, 1]},
                                         {1: [.9] * 4, 2: [.6] * 4})
    assert scores.baselines["rte"]["accuracy"] == 0.5


def test_seeds_in_the_spec():
    spec = GlueSpec(name="g", tasks=["rte"], seeds=[1, 2, 3])
    assert spec.seeds_for("rte") == [1, 2, 3] and spec.seeds_for("rte", 9) == [9]
    assert GlueSpec(name="g", tasks=["rte"]).seeds_for("rte") == [42]
    with pytest.raises(ValueError, match="repeats"):
        GlueSpec(name="g", seeds=[1, 1])
    with pytest.raises(ValueError, match="drop the per-task seed"):
        GlueSpec(name="g", seeds=[1, 2], overrides={"rte": {"seed": 3}})


def test_selection_rows_are_carved_from_train_seeded_and_disjoint():
    train = GlueExamples("sst2", "train", ([f"s{i}" for i in range(20)],), [i % 2 for i in range(20)], "t", "x", "hf")
    assert job.carve_selection(train, 0.0, 0) == (train, None)
    rest, held = job.carve_selection(train, 0.25, 7)
    assert len(held) == 5 and len(rest) == 15
    assert sorted(rest.texts[0] + held.texts[0], key=lambda s: int(s[1:])) == train.texts[0]  # a partition
    assert held.texts[0] == sorted(held.texts[0], key=lambda s: int(s[1:]))  # file order kept
    assert job.carve_selection(train, 0.25, 7) == (rest, held)  # the same seed carves the same rows
    assert job.carve_selection(train, 0.25, 8)[1] != held


def test_search_grid_trials_and_choice():
    from data_specs.glue import SearchSpec
    from tasks.glue.task_run import _search

    grid = SearchSpec(lr=[5e-5, 3e-5, 2e-5], batch_size=[16, 32], epochs=[2, 3, 4])
    trials = grid.trials()
    assert len(trials) == 18 and trials[0] == {"lr": 5e-5, "batch_size": 16, "epochs": 2.0}
    assert trials[-1] == {"lr": 2e-5, "batch_size": 32, "epochs": 4.0}
    with pytest.raises(ValueError, match="select: best"):
        GlueSpec(name="g", tasks=["rte"], search={"lr": [1e-5]})
    spec = GlueSpec(name="g", tasks=["rte"], defaults={"select": "best", "selection_fraction": 0.1},
                    search={"lr": [1e-4, 1e-3], "epochs": [1, 2]})
    ran = []

    def run_job(job_hp, name):
        ran.append((job_hp.lr, job_hp.epochs, job_hp.seed, name))
        score = {(1e-4, 1.0): 0.5, (1e-4, 2.0): 0.7, (1e-3, 1.0): 0.7, (1e-3, 2.0): 0.6}[(job_hp.lr, job_hp.epochs)]
        return job.SeedOutcome(job_hp.seed, {}, "m", name, 1, metrics={"best_score": score})

    import logging

    chosen, hp = _search(spec, spec.for_task("rte"), 7, run_job, logging.getLogger("t"), capacity=lambda *a: 1)
    assert [r[:3] for r in ran] == [(1e-4, 1.0, 7), (1e-4, 2.0, 7), (1e-3, 1.0, 7), (1e-3, 2.0, 7)]
    assert chosen == {"lr": 1e-4, "epochs": 2.0, "trial": 1, "selection_score": 0.7, "n_trials": 4,
                      "concurrent": 1}  # tie: the earlier trial
    assert (hp.lr, hp.epochs, hp.batch_size) == (1e-4, 2.0, 8)


def test_search_trials_run_concurrently_and_choose_as_sequential_ones_do():
    """With room for two jobs, two trials are in flight at once (a barrier of two would time out one at a
    time), and the choice equals the sequential one whatever order they finish in."""
    import logging
    import threading
    import time

    from cluster.train.ray_entry import jobs_that_fit
    from data_specs.glue import GlueScalingSpec as ScalingSpec
    from tasks.glue.task_run import _search

    spec = GlueSpec(name="g", tasks=["rte"], defaults={"select": "best", "selection_fraction": 0.1},
                    search={"lr": [1e-4, 1e-3], "epochs": [1, 2], "max_concurrent": 2})
    both_running = threading.Barrier(2, timeout=10)
    scores = {(1e-4, 1.0): 0.5, (1e-4, 2.0): 0.7, (1e-3, 1.0): 0.7, (1e-3, 2.0): 0.6}
    asked = []

    def run_job(job_hp, name):
        if job_hp.lr == 1e-4:  # the first two trials (lr slowest-varying) must overlap
            both_running.wait()
            time.sleep(0.2 if job_hp.epochs == 1 else 0.0)  # the earlier trial finishes last
        return job.SeedOutcome(job_hp.seed, {}, "m", name, 1, metrics={"best_score": scores[(job_hp.lr, job_hp.epochs)]})

    def capacity(scaling, uri, wanted):
        asked.append(wanted)
        return 2

    chosen, _ = _search(spec, spec.for_task("rte"), 7, run_job, logging.getLogger("t"), capacity=capacity)
    assert asked == [2]  # max_concurrent caps what is asked for
    assert (chosen["trial"], chosen["selection_score"], chosen["concurrent"]) == (1, 0.7, 2)
    one_cpu = ScalingSpec(num_workers=1, cpus_per_worker=1.0)
    assert jobs_that_fit([{"CPU": 2.0}], one_cpu, 18) == 2 and jobs_that_fit([{"CPU": 0.5}], one_cpu, 18) == 1
    assert jobs_that_fit([{"CPU": 16.0, "GPU": 1.0}], ScalingSpec(num_workers=1, use_gpu=True), 18) == 1
    assert jobs_that_fit([{"CPU": 16.0}], ScalingSpec(num_workers=2, cpus_per_worker=0.5), 3) == 3
    # places are per node: 1.5 CPUs left on each of two nodes hold two 1-CPU workers, not three
    assert jobs_that_fit([{"CPU": 1.5}, {"CPU": 1.5}], one_cpu, 18) == 2
    assert jobs_that_fit([{"CPU": 3.0}, {"CPU": 1.0}], ScalingSpec(num_workers=2, cpus_per_worker=1.0), 18) == 2
