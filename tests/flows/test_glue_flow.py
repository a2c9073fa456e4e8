"""`lmpipe glue` and `lmpipe promote` end to end: a registered tiny BERT fine-tuned on RTE (classification) and
STS-B (regression) through the command, on Ray Train, with MLflow on SQLite and the Prefect test server.

Checked: the metrics JSON, nested MLflow runs with data lineage, the task models registered and loadable by
alias in a fresh process, the results on the base version, a planted contamination found, and the gate
promoting, then refusing a worse candidate, an incomplete evaluation and a different task set."""

from __future__ import annotations

import csv
import dataclasses
import json
import subprocess
import sys
import textwrap

import mlflow
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from mlflow import MlflowClient
from typer.testing import CliRunner

from flows.cli import app
from tasks.glue.metrics import glue_score
from tasks.registry.core import log_and_register
from tasks.registry.evaluations import read_eval_record, set_eval_status
from tests.unit._registry_helpers import tiny_bert

pytestmark = pytest.mark.ray

PLANTED = "the quick brown fox jumps over the lazy dog while the cat sat on the red mat"  # 17 words
WORDS = ["cat", "dog", "mat", "log", "fox", "red", "brown", "garden", "model", "word"]


def _sentence(i: int, n: int = 6) -> str:
    return " ".join(WORDS[(i * 7 + k * 3) % len(WORDS)] for k in range(n))


def write_glue_dir(root):
    """RTE in the Hugging Face exported layout, STS-B in the original GLUE layout; dev row 0 of RTE is PLANTED."""
    rte, sts = root / "RTE", root / "STS-B"
    rte.mkdir(parents=True)
    sts.mkdir(parents=True)
    for split, n in (("train", 48), ("dev", 16)):
        rows = ["sentence1\tsentence2\tlabel\tidx"]
        for i in range(n):
            first = PLANTED if (split == "dev" and i == 0) else _sentence(i)
            rows.append(f"{first}\t{_sentence(i + 1, 3)}\t{i % 2}\t{i}")
        (rte / f"{split}.tsv").write_text("\n".join(rows) + "\n")
        head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore"
        rows = [head] + [f"{i}\tmain-news\tf\t2012\t{i}\tnone\tnone\t{_sentence(i)}\t{_sentence(i + i % 3)}\t"
                         f"{(i % 6) * 0.8:.1f}" for i in range(n)]
        (sts / f"{split}.tsv").write_text("\n".join(rows) + "\n")
    # Unlabelled test files in the release layout, for `--predict` (indices that are not 0..n-1, as GLUE's are).
    (rte / "test.tsv").write_text("index\tsentence1\tsentence2\n" + "".join(
        f"{100 + i}\t{_sentence(i + 2)}\t{_sentence(i, 3)}\n" for i in range(5)))
    head = "index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2"
    (sts / "test.tsv").write_text(head + "\n" + "".join(
        f"{i}\tmain-news\tf\t2012\t{i}\tnone\tnone\t{_sentence(i)}\t{_sentence(i + 1)}\n" for i in range(4)))
    return root


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("glue-flow")
    uri = f"sqlite:///{root}/mlflow.db"
    curated = root / "curated"
    (curated / "data").mkdir(parents=True)
    pq.write_table(pa.table({"id": ["books/1", "books/2"], "text": [f"Once upon a time. {PLANTED.capitalize()}!",
                                                                     "nothing to see here at all"]}),
                   curated / "data" / "shard-00000-of-00001.parquet")
    (curated / "DATA_CARD.md").write_text("# Data card: t\n\n- Documents in: **2**; kept: **2**\n\n## Languages\n")
    client = MlflowClient(uri)
    exp = client.create_experiment("pretrain", artifact_location=(root / "artifacts").as_uri())
    versions = []
    for seed in range(2):  # two versions of the base model: v1 (candidate, then champion) and v2
        run = client.create_run(exp, tags={"lmpipe.curated_path": str(curated)})
        hf = tiny_bert(root / f"tiny-bert-{seed}")
        versions.append(log_and_register(str(hf), registered_model="tiny-bert", run_id=run.info.run_id,
                                         tracking_uri=uri, task="fill-mask", tags={}, alias="candidate"))
    client.set_registered_model_alias("tiny-bert", "candidate", versions[0].version)
    spec = yaml.safe_load(open("data_specs/glue/tiny_cpu.yaml"))
    spec["scaling"] = {"num_workers": 1, "cpus_per_worker": 1.0, "storage_path": str(root / "runs"), "max_failures": 0}
    spec["mlflow"] = {"tracking_uri": uri}
    spec["tasks"] = ["rte", "stsb"]  # the whole task set of this spec: the evaluation below is not a subset
    spec["gate"] = {"margin": 0.0, "floor": False}  # a tiny BERT on 16 dev rows: the floor is tested on its own
    spec["defaults"]["max_length"] = 10  # under the model's 64 positions: serving must cut where scoring did
    (root / "glue.yaml").write_text(yaml.safe_dump(spec))
    return {"root": root, "uri": uri, "glue_dir": write_glue_dir(root / "glue"), "spec": root / "glue.yaml",
            "curated": curated}


@pytest.fixture(scope="module")
def evaluated(setup, monkeypatch_module):
    monkeypatch_module.setenv("MLFLOW_TRACKING_URI", setup["uri"])
    out = setup["root"] / "metrics.json"
    result = CliRunner().invoke(app, [
        "glue", "models:/tiny-bert@candidate", "--tasks", "rte,stsb", "--data-dir", str(setup["glue_dir"]),
        "--spec", str(setup["spec"]), "--epochs", "2", "--lr", "1e-3", "--metrics-json", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    return {"output": result.output, "metrics": json.loads(out.read_text())}


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_command_prints_and_writes_the_metrics(evaluated):
    m = evaluated["metrics"]
    assert m["model"] == "models:/tiny-bert@candidate"
    assert set(m["tasks"]) == {"rte", "stsb"}
    assert set(m["tasks"]["rte"]) == {"accuracy", "n_train", "n_eval"}
    assert set(m["tasks"]["stsb"]) == {"pearson", "spearmanr", "n_train", "n_eval"}
    assert m["tasks"]["rte"]["n_train"] == 48 and m["tasks"]["rte"]["n_eval"] == 16
    scores = {k: {x: v for x, v in r.items() if x not in ("n_train", "n_eval")} for k, r in m["tasks"].items()}
    assert m["glue_score"] == pytest.approx(glue_score(scores))
    assert "GLUE score" in evaluated["output"] and "tiny-bert-glue-rte" in evaluated["output"]


def test_mlflow_runs_lineage_and_base_version(setup, evaluated):
    client = MlflowClient(setup["uri"])
    exp = client.get_experiment_by_name("lmpipe-glue")
    runs = client.search_runs([exp.experiment_id])
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["lmpipe.glue.task"] for r in children) == ["rte", "stsb"]
    rte = next(r for r in children if r.data.tags["lmpipe.glue.task"] == "rte")
    assert rte.data.tags["lmpipe.base_model_version"] == "1"
    assert rte.data.tags["lmpipe.data.train.path"].endswith("RTE/train.tsv")
    assert len(rte.data.tags["lmpipe.data.validation.sha256"]) == 64
    assert "accuracy" in rte.data.metrics
    assert parent.data.metrics["glue_score"] == pytest.approx(evaluated["metrics"]["glue_score"])
    assert parent.data.metrics["contamination_rate_rte"] == pytest.approx(1 / 16)  # the planted dev row
    assert parent.data.metrics["contamination_rate_stsb"] == 0.0
    record = read_eval_record("tiny-bert", "candidate", setup["uri"])
    assert record.status == "complete" and record.tasks == ("rte", "stsb")
    assert client.get_model_version("tiny-bert", "1").tags["glue_score"] == f"{evaluated['metrics']['glue_score']:.4f}"
    report = client.download_artifacts(parent.info.run_id, "glue_report.md", str(setup["root"]))
    assert "BERT-base" in open(report).read()
    # Model cards: the version description and README.md on the run that logged the model, for all three.
    card = client.get_model_version("tiny-bert", "1").description
    assert card.startswith("---") and "# tiny-bert v1" in card and "95% interval" in card and "| rte |" in card
    assert "- Documents in: **2**; kept: **2**" in card  # the curated corpus's data card summary
    readme = client.download_artifacts(parent.info.run_id, "README.md", str(setup["root"] / "card"))
    assert open(readme).read() == card
    for task in ("rte", "stsb"):
        task_card = client.get_model_version(f"tiny-bert-glue-{task}", "1").description
        assert f"# tiny-bert-glue-{task} v1" in task_card and f"| {task} |" in task_card


def test_task_models_load_by_alias_in_a_fresh_process(setup, evaluated):
    code = textwrap.dedent(f"""
        import mlflow, pandas as pd
        mlflow.set_tracking_uri({setup['uri']!r})
        long = " ".join(["cat dog"] * 600)
        rte = mlflow.pyfunc.load_model("models:/tiny-bert-glue-rte@candidate")
        out = rte.predict(pd.DataFrame({{"sentence1": ["the cat sat", long], "sentence2": ["a dog", long]}}))
        assert set(out["label"]) <= {{"entailment", "not_entailment"}}, out
        sts = mlflow.pyfunc.load_model("models:/tiny-bert-glue-stsb@candidate")
        out = sts.predict(pd.DataFrame({{"sentence1": ["the cat sat"], "sentence2": [long]}}))
        print("OK", float(out["score"][0]))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "OK" in done.stdout, done.stderr[-3000:]


def test_served_predictions_equal_the_logged_ones(setup, evaluated):
    """Every registered task model, served by MLflow, predicts on the dev rows what the run logged (and scored),
    label and score: the pyfunc cuts inputs at the 10 tokens of fine-tuning, not at the model's 64 positions."""
    from tasks.glue.data import load_glue_split
    from tasks.glue.tasks import TASKS
    from tasks.registry.evaluations import list_records, load_predictions

    mlflow.set_tracking_uri(setup["uri"])
    (record,) = list_records("tiny-bert", "1", setup["uri"])
    logged = load_predictions(record.run_id, ["rte", "stsb"], setup["uri"])
    for task in ("rte", "stsb"):
        dev = load_glue_split(task, "validation", str(setup["glue_dir"]))
        served = mlflow.pyfunc.load_model(f"models:/tiny-bert-glue-{task}@candidate").predict(dev.to_dataframe())
        labels, preds = logged[task]
        csv_path = MlflowClient(setup["uri"]).download_artifacts(record.run_id, f"predictions/{task}.csv",
                                                                str(setup["root"] / f"served-{task}"))
        logged_scores = [float(r["score"]) for r in csv.DictReader(open(csv_path))]
        assert served["score"].tolist() == pytest.approx(logged_scores, abs=1e-4)  # probability or output
        if TASKS[task].is_regression:
            assert served["score"].tolist() == pytest.approx(preds[0].tolist(), abs=1e-4)
        else:
            names = list(TASKS[task].label_names)
            assert [names.index(x) for x in served["label"]] == preds[0].astype(int).tolist()
        assert labels.tolist() == pytest.approx([float(y) for y in dev.labels])


def _record_for_v2(uri: str, base, *, results=None, status: str = "complete", tasks=None, full: bool = True,
                   n_eval: int | None = None) -> None:
    """An evaluation run of tiny-bert v2, made from v1's real record and predictions (scores changed)."""
    from tasks.registry.evaluations import load_predictions, store_record

    c = MlflowClient(uri)
    run = c.create_run(c.get_experiment_by_name("lmpipe-glue").experiment_id, run_name="glue-tiny-bert-v2")
    tasks = tuple(tasks or base.tasks)
    set_eval_status("tiny-bert", "2", "running", uri, run_id=run.info.run_id, tasks=list(tasks))
    if status != "complete":
        set_eval_status("tiny-bert", "2", status, uri, run_id=run.info.run_id)
        return
    results = {k: v for k, v in (results or base.results).items() if any(k.startswith(t) for t in tasks)}
    per_task = {t: base.setup.per_task[t] for t in tasks}
    if n_eval is not None:
        per_task["rte"] = dataclasses.replace(per_task["rte"], n_eval={"rte": n_eval})
    setup = dataclasses.replace(base.setup, tasks=tasks, per_task=per_task, full=full)
    record = dataclasses.replace(base, version="2", run_id=run.info.run_id, results=results, tasks=tasks, setup=setup)
    preds = load_predictions(base.run_id, list(results), uri)
    store_record(record, {k: (preds[k][0].tolist(), {42: preds[k][1][0].tolist()}) for k in results},
                 glue_score(results), uri)


def test_gate_promotes_then_refuses(setup, evaluated):
    from tasks.registry.evaluations import BASE_NAME, BASE_VERSION, list_records

    uri, runner = setup["uri"], CliRunner()
    client = MlflowClient(uri)
    promote = ["promote", "tiny-bert", "--spec", str(setup["spec"])]
    first = runner.invoke(app, promote)
    assert first.exit_code == 0 and "promoted" in first.output, first.output
    for model in ("tiny-bert", "tiny-bert-glue-rte", "tiny-bert-glue-stsb"):
        assert str(client.get_model_version_by_alias(model, "champion").version) == "1"

    (v1,) = list_records("tiny-bert", "1", uri)
    client.set_registered_model_alias("tiny-bert", "candidate", "2")
    better = {k: {m: min(1.0, v + 0.3) for m, v in r.items()} for k, r in v1.results.items()}
    worse = {k: {m: v - 0.2 for m, v in r.items()} for k, r in v1.results.items()}
    reasons = []

    def refused(*extra):
        out = runner.invoke(app, [*promote, *extra])
        assert "refused" in out.output, out.output
        assert str(client.get_model_version_by_alias("tiny-bert", "champion").version) == "1"
        reasons.append(out.output)

    _record_for_v2(uri, v1, results=better, status="failed")  # better on paper, but the evaluation failed
    refused()
    _record_for_v2(uri, v1, results=better, tasks=["rte"], full=False)  # `--tasks rte`: a subset
    refused()
    _record_for_v2(uri, v1, results=better, n_eval=8)  # scored on other dev rows than the champion
    refused()
    _record_for_v2(uri, v1, results=worse)  # complete, alike, worse
    refused("--margin", "0")
    assert client.get_model_version("tiny-bert", "2").tags["lmpipe.gate.decision"] == "refused"
    _record_for_v2(uri, v1, results=better)  # better, but v2 has no task models: nothing moves
    refused()

    # v2's task models exist: champion moves for all three, together.
    for task in ("rte", "stsb"):
        src = client.get_model_version(f"tiny-bert-glue-{task}", "1")
        client.create_model_version(f"tiny-bert-glue-{task}", src.source, run_id=src.run_id,
                                    tags={BASE_NAME: "tiny-bert", BASE_VERSION: "2", "lmpipe.glue.task": task})
    promoted = runner.invoke(app, promote)
    assert "promoted" in promoted.output, promoted.output
    for model in ("tiny-bert", "tiny-bert-glue-rte", "tiny-bert-glue-stsb"):
        assert str(client.get_model_version_by_alias(model, "champion").version) == "2"
    exp = client.get_experiment_by_name("lmpipe-glue")
    runs = client.search_runs([exp.experiment_id], "tags.`lmpipe.gate.model` = 'tiny-bert'",
                              order_by=["attributes.start_time ASC"])
    assert [r.data.tags["lmpipe.gate.promoted"] for r in runs] == ["true"] + ["false"] * 5 + ["true"]
    why = [r.data.tags["lmpipe.gate.reason"] for r in runs]
    assert "'failed', not complete" in why[1]
    assert "subset" in why[2]
    assert "not evaluated alike (rte: n_eval['rte'] is 8 on the candidate but 16 on the champion)" in why[3]
    assert "lmpipe glue models:/tiny-bert/1 --tasks stsb,rte --spec" in why[3]  # TASK_NAMES order
    assert "gain of -" in why[4]
    assert "has no version fine-tuned from tiny-bert v2; nothing moved" in why[5]
    assert all(len(r.data.tags["lmpipe.prefect_flow_run_id"]) == 36 for r in runs)  # a real flow run id
    assert runs[6].data.metrics["candidate_score"] > runs[6].data.metrics["champion_score"]
    # Every evaluation of v2 is kept, the failed one included; v1's single record was never touched.
    assert [r.status for r in list_records("tiny-bert", "2", uri)] == ["complete"] * 4 + ["failed"]
    assert list_records("tiny-bert", "1", uri) == [v1]


def test_the_floor_refuses_a_model_worse_than_a_constant_guess(setup, evaluated):
    """With the gate's default floor, a record below the majority class is refused, even as the first champion."""
    from tasks.glue.gate import decide
    from tasks.registry.evaluations import list_records

    (v1,) = list_records("tiny-bert", "1", setup["uri"])
    assert v1.baselines["rte"] == {"accuracy": 0.5}  # RTE's 16 dev rows alternate labels: the majority is 50%
    below = dataclasses.replace(v1, results={**v1.results, "rte": {"accuracy": 0.4375}})
    d = decide(below, None, margin=0.0, tasks=["rte"])
    assert not d.promote and "does not beat the trivial baseline on rte" in d.reason
    above = dataclasses.replace(v1, results={**v1.results, "rte": {"accuracy": 0.5625}})
    assert decide(above, None, margin=0.0, tasks=["rte"]).promote


def test_bad_model_and_task_are_clear_errors(setup):
    runner = CliRunner()
    bad_task = runner.invoke(app, ["glue", "models:/tiny-bert@candidate", "--tasks", "sst3"])
    assert bad_task.exit_code == 2 and "unknown GLUE task" in bad_task.output
    missing = runner.invoke(app, ["glue", str(setup["root"] / "nope"), "--tasks", "rte", "--spec", str(setup["spec"])])
    assert missing.exit_code == 2 and "config.json" in missing.output
    no_data = runner.invoke(app, ["glue", str(setup["root"] / "tiny-bert-0"), "--tasks", "cola", "--spec",
                                  str(setup["spec"]), "--data-dir", str(setup["glue_dir"])])
    assert no_data.exit_code == 2 and "CoLA" in no_data.output


def test_a_rerun_reuses_finished_jobs_and_trains_only_a_new_seed(setup, evaluated, monkeypatch_module):
    """Fewer dev rows and a second seed: the seed-42 jobs are reused (their models predict the new rows), only
    seed 7 trains; the record holds both seeds' predictions, the mean and the spread."""
    from tasks.registry.evaluations import list_records, load_predictions

    spec = yaml.safe_load(open(setup["spec"]))
    spec["defaults"]["max_eval_examples"] = 12  # evaluation only: not in the job fingerprint
    spec["seeds"] = [42, 7]
    path = setup["root"] / "glue-seeds.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = setup["root"] / "metrics-seeds.json"
    runs = setup["root"] / "runs"
    before = {p.name for p in runs.iterdir()}
    result = CliRunner().invoke(app, [
        "glue", "models:/tiny-bert/1", "--tasks", "rte,stsb", "--data-dir", str(setup["glue_dir"]),
        "--spec", str(path), "--epochs", "2", "--lr", "1e-3", "--metrics-json", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    m = json.loads(out.read_text())
    assert m["reused_seeds"] == {"rte": [42], "stsb": [42]}
    trained = {p.name for p in runs.iterdir()} - before - {"jobs"}
    assert sorted(n.split("-s")[1].split("-")[0] for n in trained if n.startswith(("rte-", "stsb-"))) == ["7", "7"]
    assert m["tasks"]["rte"]["n_eval"] == 12 and set(m["spread"]["rte"]) == {"accuracy"}
    record = list_records("tiny-bert", "1", setup["uri"])[0]  # v1's newest record: this run's
    assert record.setup.per_task["rte"].protocol["seeds"] == [42, 7] and len(record.seed_scores["rte"]) == 2
    labels, preds = load_predictions(record.run_id, ["rte"], setup["uri"])["rte"]
    assert preds.shape == (2, 12)


def test_a_failure_after_training_keeps_every_result_and_the_rerun_does_not_retrain(setup, evaluated, tmp_path,
                                                                                    monkeypatch):
    """Fault: the flow dies after both tasks trained, scored and registered (`glue.finish`). Must survive: each
    task run's metrics and dev predictions, v1's earlier complete records; the parent run FAILED, not RUNNING.
    The rerun reuses both finished jobs (seed 5) and completes."""
    from tasks.registry.evaluations import list_records

    monkeypatch.setenv("LMPIPE_FAULTS", "glue.finish=raise")
    monkeypatch.setenv("LMPIPE_FAULTS_DIR", str(tmp_path))
    command = ["glue", "models:/tiny-bert/1", "--tasks", "rte,stsb", "--data-dir", str(setup["glue_dir"]),
               "--spec", str(setup["spec"]), "--epochs", "2", "--lr", "1e-3", "--seed", "5",
               "--metrics-json", str(tmp_path / "m.json")]
    complete_before = [r.run_id for r in list_records("tiny-bert", "1", setup["uri"]) if r.status == "complete"]
    failed = CliRunner().invoke(app, command)
    assert failed.exit_code != 0
    records = list_records("tiny-bert", "1", setup["uri"])
    assert records[0].status == "failed"
    assert [r.run_id for r in records if r.status == "complete"] == complete_before
    client = MlflowClient(setup["uri"])
    parent = client.get_run(records[0].run_id)
    assert parent.info.status == "FAILED"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted(r.data.tags["lmpipe.glue.task"] for r in children) == ["rte", "stsb"]
    for run in children:
        assert {"predictions"} <= {a.path for a in client.list_artifacts(run.info.run_id)}
        assert run.data.metrics  # the task's scores

    again = CliRunner().invoke(app, command)
    assert again.exit_code == 0, again.output + repr(again.exception)
    assert json.loads((tmp_path / "m.json").read_text())["reused_seeds"] == {"rte": [5], "stsb": [5]}
    assert list_records("tiny-bert", "1", setup["uri"])[0].status == "complete"


def test_predict_writes_the_leaderboard_zip_from_the_reused_jobs(setup, evaluated, tmp_path):
    """`--predict` on the command the fixture ran: nothing retrains; the zip holds RTE.tsv (label names) and
    STS-B.tsv (scores in 0..5), one row per test row under its own index, and is logged on the run."""
    import zipfile

    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, [
        "glue", "models:/tiny-bert/1", "--tasks", "rte,stsb", "--data-dir", str(setup["glue_dir"]),
        "--spec", str(setup["spec"]), "--epochs", "2", "--lr", "1e-3", "--metrics-json", str(out), "--predict"])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads(out.read_text())
    assert metrics["reused_seeds"] == {"rte": [42], "stsb": [42]}
    path = metrics["submission"]
    with zipfile.ZipFile(path) as z:
        assert z.namelist() == ["RTE.tsv", "STS-B.tsv"]
        rte = z.read("RTE.tsv").decode().splitlines()
        sts = z.read("STS-B.tsv").decode().splitlines()
    assert rte[0] == sts[0] == "index\tprediction"
    assert [r.split("\t")[0] for r in rte[1:]] == ["100", "101", "102", "103", "104"]
    assert {r.split("\t")[1] for r in rte[1:]} <= {"entailment", "not_entailment"}
    assert len(sts) == 5 and all(0.0 <= float(r.split("\t")[1]) <= 5.0 for r in sts[1:])
    from tasks.registry.evaluations import list_records

    run_id = list_records("tiny-bert", "1", setup["uri"])[0].run_id
    assert any(a.path.endswith(".zip") for a in MlflowClient(setup["uri"]).list_artifacts(run_id))


def test_a_grid_search_chooses_on_carved_rows_and_logs_every_trial(setup, tmp_path):
    """`search: {lr: [...]}` on a local folder model: one job per trial, each logged with its selection score
    (rows carved from train), the chosen trial named on the run and in the record; the chosen trial's first
    seed is not trained again."""
    spec = yaml.safe_load(open(setup["spec"]))
    spec["tasks"] = ["rte"]
    spec["defaults"].update({"select": "best", "selection_fraction": 0.25, "epochs": 2})
    spec["search"] = {"lr": [1e-3, 1e-4]}
    spec["scaling"]["storage_path"] = str(tmp_path / "runs")
    path = tmp_path / "search.yaml"
    path.write_text(yaml.safe_dump(spec))
    hf = tiny_bert(tmp_path / "local-bert")
    out = tmp_path / "m.json"
    result = CliRunner().invoke(app, ["glue", str(hf), "--name", "local-bert", "--tasks", "rte", "--data-dir",
                                      str(setup["glue_dir"]), "--spec", str(path), "--metrics-json", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    metrics = json.loads(out.read_text())
    assert metrics["reused_seeds"] == {"rte": [42]}  # the chosen trial's job is the seed's
    assert metrics["tasks"]["rte"]["n_train"] == 36  # 48 rows minus the 12 carved off for selection
    client = MlflowClient(setup["uri"])
    runs = client.search_runs([client.get_experiment_by_name("lmpipe-glue").experiment_id],
                              filter_string="tags.`lmpipe.glue.task` = 'rte' and tags.`lmpipe.base_model_name` = "
                                            "'local-bert'")
    (task_run,) = runs
    chosen = json.loads(task_run.data.tags["lmpipe.glue.chosen_trial"])
    trials = client.search_runs([task_run.info.experiment_id],
                                filter_string=f"tags.`mlflow.parentRunId` = '{task_run.info.run_id}'")
    scores = {float(t.data.params["lr"]): t.data.metrics["selection_score"] for t in trials}
    assert set(scores) == {1e-3, 1e-4} and chosen["n_trials"] == 2
    assert chosen["selection_score"] == max(scores.values()) and scores[chosen["lr"]] == chosen["selection_score"]
    # Two 1-CPU trials on a 2-CPU local Ray: concurrent Ray Train jobs, their runs overlap in time.
    assert chosen["concurrent"] == 2
    first, second = sorted(trials, key=lambda t: t.info.start_time)
    assert second.info.start_time < first.info.end_time


def _glue_task_run_windows(flow_run_id: str) -> dict[str, tuple]:
    """The start and end of each `glue-<task>` task run of a flow run, from the Prefect API."""
    import asyncio
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def read():
        async with get_client() as client:
            return await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[UUID(flow_run_id)])))

    return {r.name.removeprefix("glue-"): (r.start_time, r.end_time) for r in asyncio.run(read())
            if r.name in ("glue-rte", "glue-stsb")}


def _flow_run_of(uri: str, experiment: str, model_tag: str) -> str:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    parents = [r for r in client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"])
               if "mlflow.parentRunId" not in r.data.tags and r.data.tags.get("lmpipe.base_model") == model_tag]
    return parents[0].data.tags["lmpipe.prefect_flow_run_id"]


def test_tasks_fine_tune_at_once_and_score_as_one_after_another(setup, evaluated, tmp_path):
    """Two 1-CPU tasks on a local Ray that holds two jobs fine-tune at once: their Prefect task runs overlap.
    The same run with `scaling.max_concurrent_tasks: 1`, on fresh job folders (it trains, nothing is reused),
    runs them in turn and scores exactly the same (last in the module: its records are another model's)."""
    at_once = _glue_task_run_windows(_flow_run_of(setup["uri"], "lmpipe-glue", "models:/tiny-bert@candidate"))
    assert set(at_once) == {"rte", "stsb"} and at_once["rte"][0] < at_once["stsb"][1] \
        and at_once["stsb"][0] < at_once["rte"][1], f"the tasks ran in turn: {at_once}"

    spec = yaml.safe_load(open(setup["spec"]))
    spec["scaling"].update(max_concurrent_tasks=1, storage_path=str(tmp_path / "runs"))
    (tmp_path / "glue.yaml").write_text(yaml.safe_dump(spec))
    model = str(setup["root"] / "tiny-bert-0")  # v1's weights (models:/tiny-bert@candidate), as a folder
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(app, [
        "glue", model, "--name", "tiny-bert-in-turn", "--tasks", "rte,stsb", "--data-dir", str(setup["glue_dir"]),
        "--spec", str(tmp_path / "glue.yaml"), "--epochs", "2", "--lr", "1e-3", "--metrics-json", str(out)])
    assert result.exit_code == 0, result.output + repr(result.exception)
    in_turn = json.loads(out.read_text())
    assert in_turn["reused_seeds"] == {"rte": [], "stsb": []}
    assert in_turn["tasks"] == evaluated["metrics"]["tasks"]
    windows = _glue_task_run_windows(_flow_run_of(setup["uri"], "lmpipe-glue", model))
    first, second = sorted(windows.values())
    assert first[1] <= second[0], f"max_concurrent_tasks: 1 overlapped the tasks: {windows}"
