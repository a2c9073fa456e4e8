"""GLUE loaders: the real dev files in ../shared/data/glue, small GLUE/HF-layout files written here, bad rows
(file:line in the error), missing paths, and the hub path offline on a local hub-like folder."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tasks.glue.data import GlueDataError, GlueExamples, load_glue_split, split_file

# ---- real dev files (../shared/data/glue; SOURCES.md) --------------------------------------------------------
# Row counts from SOURCES.md; label counts counted independently with awk on the label column, e.g.
#   awk -F'\t' 'NR>1{c[$1]++} END{for(k in c) print k, c[k]}' MRPC/dev.tsv   (CoLA: no header, column 2)
REAL = {
    # task: (rows, label counts, layout, sha256 from SOURCES.md)
    "cola": (527, {"unacceptable": 162, "acceptable": 365}, "glue",
             "77176f6a03faa5a1c4f23c69971fc1bff565931112fb65af47b2d6e24b7f42f7"),
    "sst2": (872, {"negative": 428, "positive": 444}, "glue",
             "392cb95716435361665d1bb85e5f3ed408cea21f361251e2ca3d491f1b9d63de"),
    "mrpc": (408, {"not_equivalent": 129, "equivalent": 279}, "glue",
             "81c8a1a9e1dfe461dd2c1a4f98f43fe18bece44d2bf9e3d0b245b88e5aa5eaf7"),
    "stsb": (1500, {}, "glue", "fe7dc0632a5033562f3cadff991f6e8d9b9b6311861660e78c3c82eb7db67f59"),
    # HF export: label 0 = entailment, 1 = not_entailment (already HF ids).
    "rte": (277, {"entailment": 146, "not_entailment": 131}, "hf",
            "e7e42b7ee79c36ebd780ebbdba525b939017da4ef9624c9e78b9ac2e69e36c28"),
}


@pytest.mark.real_data
@pytest.mark.parametrize("task", list(REAL))
def test_real_dev_files(shared_data, task):
    rows, counts, layout, sha = REAL[task]
    ex = load_glue_split(task, "validation", shared_data / "glue")
    assert (len(ex), ex.label_counts(), ex.layout, ex.sha256) == (rows, counts, layout, sha)
    assert ex.source == str(split_file(task, "validation", shared_data / "glue"))
    assert all(len(col) == rows for col in ex.texts)
    assert all(s for col in ex.texts for s in col)  # no text column read empty (a shifted column would)


@pytest.mark.real_data
def test_real_rows_read_verbatim(shared_data):
    glue = shared_data / "glue"
    cola = load_glue_split("cola", "validation", glue)
    assert (cola.texts[0][0], cola.labels[0]) == ("The sailors rode the breeze clear of the rocks.", 1)
    sst2 = load_glue_split("sst2", "validation", glue)
    assert (sst2.texts[0][0], sst2.labels[0]) == ("one long string of cliches . ", 0)  # trailing space kept
    mrpc = load_glue_split("mrpc", "validation", glue)  # header starts with a BOM
    assert mrpc.labels[0] == 1
    assert mrpc.texts[1][0] == '"The foodservice pie business does not fit our long-term growth strategy.'  # QUOTE_NONE
    assert mrpc.texts[0][1].startswith("Magnarelli said") and mrpc.labels[1] == 0
    rte = load_glue_split("rte", "validation", glue)
    assert rte.texts[1][0] == "Christopher Reeve had an accident." and rte.labels[0] == 1


@pytest.mark.real_data
def test_real_stsb_scores(shared_data):
    ex = load_glue_split("stsb", "validation", shared_data / "glue")
    # awk -F'\t' 'NR>1{s+=$10; if ($10 >= 2.5) h++} END{print s, h}' STS-B/dev.tsv -> 3545.861 757
    assert sum(ex.labels) == pytest.approx(3545.861)
    assert sum(x >= 2.5 for x in ex.labels) == 757
    assert (ex.labels[0], ex.labels[1]) == (5.0, 4.75)
    assert ex.texts[0][0] == "A man with a hard hat is dancing."
    assert ex.texts[1][0] == "A man wearing a hard hat is dancing."


# ---- small files in the GLUE release layout --------------------------------------------------------------------


def write(root: Path, folder: str, name: str, lines: list[str], *, bom: bool = False, eol: str = "\n") -> Path:
    path = root / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\ufeff" if bom else "").encode() + "".join(f"{line}{eol}" for line in lines).encode())
    return path


def tsv(*fields: object) -> str:
    return "\t".join(str(f) for f in fields)


MNLI_TRAIN_HEADER = tsv("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                        "sentence1_parse", "sentence2_parse", "sentence1", "sentence2", "label1", "gold_label")
MNLI_DEV_HEADER = tsv("index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
                      "sentence1_parse", "sentence2_parse", "sentence1", "sentence2",
                      "label1", "label2", "label3", "label4", "label5", "gold_label")


def mnli_row(i: int, premise: str, hypothesis: str, gold: str, *, dev: bool) -> str:
    labels = [gold, "neutral", gold, gold, gold] if dev else [gold]  # annotators may disagree; gold counts
    return tsv(i, 100 + i, f"{100 + i}e", "fiction", "( ( x ) )", "( y )", "(ROOT x)", "(ROOT y)",
               premise, hypothesis, *labels, gold)


def test_mnli_train_and_both_dev_files(tmp_path):
    write(tmp_path, "MNLI", "train.tsv", [
        MNLI_TRAIN_HEADER,
        mnli_row(0, 'He said "no" twice.', "He refused.", "entailment", dev=False),
        mnli_row(1, "The cat sat.", "A dog sat.", "contradiction", dev=False),
        mnli_row(2, "It rained.", "It rained hard.", "neutral", dev=False),
    ])
    write(tmp_path, "MNLI", "dev_matched.tsv", [
        MNLI_DEV_HEADER,
        mnli_row(0, "P0", "H0", "neutral", dev=True),
        mnli_row(1, "P1", "H1", "neutral", dev=True),
    ])
    write(tmp_path, "MNLI", "dev_mismatched.tsv", [MNLI_DEV_HEADER, mnli_row(0, "Pm", "Hm", "contradiction", dev=True)])

    train = load_glue_split("mnli", "train", tmp_path)
    assert train.texts == (['He said "no" twice.', "The cat sat.", "It rained."],
                           ["He refused.", "A dog sat.", "It rained hard."])
    assert train.labels == [0, 2, 1]  # HF: entailment, neutral, contradiction
    assert train.layout == "glue" and train.split == "train"
    matched = load_glue_split("mnli", "validation_matched", tmp_path)
    assert (matched.labels, matched.texts[0]) == ([1, 1], ["P0", "P1"])
    assert matched.label_counts() == {"entailment": 0, "neutral": 2, "contradiction": 0}
    mismatched = load_glue_split("mnli", "validation_mismatched", tmp_path)
    assert mismatched.labels == [2] and mismatched.source == str(tmp_path / "MNLI" / "dev_mismatched.tsv")
    assert list(mismatched.to_dataframe().columns) == ["premise", "hypothesis", "label"]


def test_mnli_unknown_gold_label_names_line(tmp_path):
    path = write(tmp_path, "MNLI", "dev_matched.tsv", [
        MNLI_DEV_HEADER, mnli_row(0, "P", "H", "neutral", dev=True), mnli_row(1, "P", "H", "-", dev=True),
    ])
    with pytest.raises(GlueDataError, match=f"{path}:3: gold_label '-' is not one of entailment, neutral, contra"):
        load_glue_split("mnli", "validation_matched", tmp_path)


def test_qqp(tmp_path):
    write(tmp_path, "QQP", "train.tsv", [
        tsv("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
        tsv(0, 1, 2, 'What is "GLUE"?', "What does GLUE mean?", 1),
        tsv(1, 3, 4, "How do I cook rice?", "Why is the sky blue?", 0),
    ])
    ex = load_glue_split("qqp", "train", tmp_path)
    assert ex.texts == (['What is "GLUE"?', "How do I cook rice?"], ["What does GLUE mean?", "Why is the sky blue?"])
    assert ex.labels == [1, 0] and ex.label_counts() == {"not_duplicate": 1, "duplicate": 1}


def test_qqp_short_row_is_an_error_not_a_skip(tmp_path):
    # The original QQP release had rows like this; run_glue's old processors skipped them silently.
    path = write(tmp_path, "QQP", "dev.tsv", [
        tsv("id", "qid1", "qid2", "question1", "question2", "is_duplicate"),
        tsv(0, 1, 2, "Q1?", "Q2?", 0),
        tsv(1, 3, 4, "Q3 with no partner", 1),
    ])
    with pytest.raises(GlueDataError, match=f"{path}:3: expected 6 tab-separated fields .*found 5"):
        load_glue_split("qqp", "validation", tmp_path)


def test_qnli_string_labels(tmp_path):
    write(tmp_path, "QNLI", "dev.tsv", [
        tsv("index", "question", "sentence", "label"),
        tsv(0, "Who wrote it?", 'Tolstoy wrote "War and Peace".', "entailment"),
        tsv(1, "When?", "Nobody knows where.", "not_entailment"),
    ])
    ex = load_glue_split("qnli", "validation", tmp_path)
    assert ex.texts == (["Who wrote it?", "When?"], ['Tolstoy wrote "War and Peace".', "Nobody knows where."])
    assert ex.labels == [0, 1]


def test_wnli_int_labels_keep_their_meaning(tmp_path):
    # WNLI's release uses 1 = entailment, which is HF's id 1 too (HF order: not_entailment, entailment).
    write(tmp_path, "WNLI", "train.tsv", [
        tsv("index", "sentence1", "sentence2", "label"),
        tsv(0, "The trophy didn't fit; it was too big.", "The trophy was too big.", 1),
        tsv(1, "The trophy didn't fit; it was too big.", "The suitcase was too big.", 0),
    ])
    ex = load_glue_split("wnli", "train", tmp_path)
    assert ex.labels == [1, 0]
    assert ex.label_counts() == {"not_entailment": 1, "entailment": 1}


def test_rte_glue_layout_string_labels(tmp_path):
    write(tmp_path, "RTE", "train.tsv", [
        tsv("index", "sentence1", "sentence2", "label"),
        tsv(0, "A", "B", "not_entailment"), tsv(1, "C", "D", "entailment"),
    ])
    ex = load_glue_split("rte", "train", tmp_path)
    assert (ex.layout, ex.labels) == ("glue", [1, 0])


def test_rte_glue_layout_rejects_int_labels(tmp_path):
    # In the release RTE labels are names; a bare 0/1 under a GLUE header is ambiguous, so it is refused.
    path = write(tmp_path, "RTE", "dev.tsv", [tsv("index", "sentence1", "sentence2", "label"), tsv(0, "A", "B", 1)])
    with pytest.raises(GlueDataError, match=f"{path}:2: label '1' is not one of entailment, not_entailment"):
        load_glue_split("rte", "validation", tmp_path)


def test_cola_headerless_with_quotes(tmp_path):
    path = write(tmp_path, "CoLA", "train.tsv", [
        tsv("gj04", 1, "", 'He said "hi".'),
        tsv("gj04", 0, "*", "Him said hi."),
        tsv("cj99", 1, "", "It's a \"quoted, odd' sentence"),
    ])
    ex = load_glue_split("cola", "train", tmp_path)
    assert ex.texts == (['He said "hi".', "Him said hi.", "It's a \"quoted, odd' sentence"],)
    assert ex.labels == [1, 0, 1] and ex.layout == "glue"
    assert ex.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_mrpc_bom_and_crlf(tmp_path):
    write(tmp_path, "MRPC", "train.tsv", [
        tsv("Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"),
        tsv(1, 11, 12, "Shares rose 5%.", '"Shares gained 5 percent.'),
        tsv(0, 13, 14, "A.", "B."),
    ], bom=True, eol="\r\n")
    ex = load_glue_split("mrpc", "train", tmp_path)
    assert ex.texts == (["Shares rose 5%.", "A."], ['"Shares gained 5 percent.', "B."])  # no \r left over
    assert ex.labels == [1, 0] and ex.layout == "glue"


def test_stsb_glue_layout_and_bad_score(tmp_path):
    header = tsv("index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
                 "score")
    write(tmp_path, "STS-B", "train.tsv", [
        header, tsv(0, "main-news", "x", 2012, 1, "none", "none", "A man runs.", "A man is running.", "4.750"),
        tsv(1, "main-news", "x", 2012, 2, "none", "none", "Cats.", "Stocks fell.", "0.000"),
    ])
    ex = load_glue_split("stsb", "train", tmp_path)
    assert ex.labels == [4.75, 0.0] and ex.label_counts() == {}
    path = write(tmp_path, "STS-B", "dev.tsv", [
        header, tsv(0, "g", "f", 2012, 1, "none", "none", "A.", "B.", "high"),
    ])
    with pytest.raises(GlueDataError, match=f"{path}:2: score 'high' is not a number"):
        load_glue_split("stsb", "validation", tmp_path)
    write(tmp_path, "STS-B", "dev.tsv", [header, tsv(0, "g", "f", 2012, 1, "none", "none", "A.", "B.", "5.5")])
    with pytest.raises(GlueDataError, match="outside"):
        load_glue_split("stsb", "validation", tmp_path)


# ---- Hugging Face export layout --------------------------------------------------------------------------------


def test_hf_export_layout(tmp_path):
    write(tmp_path, "MNLI", "dev_mismatched.tsv", [
        tsv("premise", "hypothesis", "label", "idx"), tsv('A "q".', "B.", 2, 0), tsv("C.", "D.", 0, 1),
    ])
    ex = load_glue_split("mnli", "validation_mismatched", tmp_path)
    assert (ex.layout, ex.texts, ex.labels) == ("hf", (['A "q".', "C."], ["B.", "D."]), [2, 0])
    # Column order is free and idx is optional.
    write(tmp_path, "QNLI", "train.tsv", [tsv("label", "sentence", "question"), tsv(1, "S.", "Q?")])
    ex = load_glue_split("qnli", "train", tmp_path)
    assert (ex.layout, ex.texts, ex.labels) == ("hf", (["Q?"], ["S."]), [1])
    write(tmp_path, "STS-B", "dev.tsv", [tsv("sentence1", "sentence2", "label", "idx"), tsv("A.", "B.", 3.8, 0)])
    assert load_glue_split("stsb", "validation", tmp_path).labels == [3.8]
    write(tmp_path, "SST-2", "train.tsv", [tsv("sentence", "label", "idx"), tsv("good .", 1, 0)])
    assert load_glue_split("sst2", "train", tmp_path).layout == "hf"
    write(tmp_path, "CoLA", "dev.tsv", [tsv("sentence", "label", "idx"), tsv("Ok.", 1, 0)])
    ex = load_glue_split("cola", "validation", tmp_path)
    assert (ex.layout, ex.labels) == ("hf", [1])


@pytest.mark.parametrize(
    ("row", "why"),
    [
        (tsv("A.", "B.", "entailment", 0), "label 'entailment' is not a label id"),  # names are not HF ids
        (tsv("A.", "B.", 2, 0), "label '2' is not a label id"),
        (tsv("A.", "B.", -1, 0), "label '-1' is not a label id"),  # hidden test label
        (tsv("A.", "B.", " 1", 0), "label ' 1' is not a label id"),
        (tsv("A.", "B.", 1), "expected 4 tab-separated fields"),
        (tsv("A.", "B.", 1, 0, "extra"), "expected 4 tab-separated fields"),
    ],
)
def test_hf_export_bad_rows(tmp_path, row, why):
    header = tsv("sentence1", "sentence2", "label", "idx")
    path = write(tmp_path, "RTE", "dev.tsv", [header, tsv("X.", "Y.", 0, 0), row])
    with pytest.raises(GlueDataError, match=f"{path}:3: {why}"):
        load_glue_split("rte", "validation", tmp_path)


# ---- bad files and missing paths -------------------------------------------------------------------------------


def test_unrecognised_header(tmp_path):
    path = write(tmp_path, "SST-2", "dev.tsv", [tsv("text", "sentiment"), tsv("good", 1)])
    with pytest.raises(GlueDataError, match=f"{path}:1: header 'text, sentiment' is neither"):
        load_glue_split("sst2", "validation", tmp_path)


def test_cola_wrong_field_count_and_bad_label(tmp_path):
    path = write(tmp_path, "CoLA", "dev.tsv", [tsv("s", 1, "", "Fine."), tsv("s", 1, "A tab\tinside.", "x")])
    with pytest.raises(GlueDataError, match=f"{path}:2: expected 4 tab-separated fields"):
        load_glue_split("cola", "validation", tmp_path)
    write(tmp_path, "CoLA", "dev.tsv", [tsv("s", 1, "", "Fine."), tsv("s", "?", "", "Odd.")])
    with pytest.raises(GlueDataError, match=f"{path}:2: label '\\?' is not a label id"):
        load_glue_split("cola", "validation", tmp_path)


def test_blank_lines(tmp_path):
    header = tsv("sentence", "label")
    write(tmp_path, "SST-2", "dev.tsv", [header, tsv("a .", 0), "", ""])  # trailing blank lines hold no row
    assert len(load_glue_split("sst2", "validation", tmp_path)) == 1
    path = write(tmp_path, "SST-2", "dev.tsv", [header, tsv("a .", 0), "", tsv("b .", 1)])
    with pytest.raises(GlueDataError, match=f"{path}:3: expected 2 tab-separated fields .*found 1"):
        load_glue_split("sst2", "validation", tmp_path)


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "file is empty"), (b"\n\n", "file is empty"), (b"sentence\tlabel\n", "header only, no rows"),
     (b"sentence\tlabel\nok\t1\nbad \xff\t0\n", ":3: not valid UTF-8")],
)
def test_empty_header_only_and_undecodable_files(tmp_path, content, match):
    path = tmp_path / "SST-2" / "dev.tsv"
    path.parent.mkdir()
    path.write_bytes(content)
    with pytest.raises(GlueDataError, match=f"{path}.*{match}"):
        load_glue_split("sst2", "validation", tmp_path)


def test_missing_folder_and_file_name_the_expected_path(tmp_path):
    expected = tmp_path / "QNLI" / "dev.tsv"
    folder = tmp_path / "QNLI"
    with pytest.raises(GlueDataError, match=f"task folder {folder} not found; expected the file {expected}$"):
        load_glue_split("qnli", "validation", tmp_path)
    (tmp_path / "MNLI").mkdir()
    with pytest.raises(GlueDataError, match=f"file not found; expected {tmp_path / 'MNLI' / 'dev_mismatched.tsv'}$"):
        load_glue_split("mnli", "validation_mismatched", tmp_path)


def test_split_file_and_split_names(tmp_path):
    assert split_file("sst2", "validation", tmp_path) == tmp_path / "SST-2" / "dev.tsv"
    assert split_file("stsb", "train", str(tmp_path)) == tmp_path / "STS-B" / "train.tsv"
    assert split_file("mnli", "validation_matched", tmp_path) == tmp_path / "MNLI" / "dev_matched.tsv"
    with pytest.raises(ValueError, match="mnli has no split 'validation'"):
        split_file("mnli", "validation", tmp_path)
    with pytest.raises(ValueError, match="test labels are hidden"):
        load_glue_split("rte", "test", tmp_path)
    with pytest.raises(ValueError, match="unknown GLUE task 'ax'"):
        split_file("ax", "validation", tmp_path)


# ---- GlueExamples ----------------------------------------------------------------------------------------------


def test_examples_head_dataframe_counts():
    ex = GlueExamples("rte", "validation", (["a", "b", "c"], ["x", "y", "z"]), [0, 1, 1], "f.tsv", None, "hf")
    assert len(ex) == 3
    two = ex.head(2)
    assert (two.texts, two.labels, two.source, len(ex)) == ((["a", "b"], ["x", "y"]), [0, 1], "f.tsv", 3)
    assert ex.head(10) == ex and len(ex.head(0)) == 0
    with pytest.raises(ValueError):
        ex.head(-1)
    df = ex.to_dataframe()
    assert list(df.columns) == ["sentence1", "sentence2", "label"] and df["label"].tolist() == [0, 1, 1]
    assert ex.label_counts() == {"entailment": 1, "not_entailment": 2}
    with pytest.raises(ValueError, match="differ in length"):
        GlueExamples("rte", "validation", (["a"], ["x", "y"]), [0], "f.tsv", None, "hf")
    with pytest.raises(ValueError, match="text lists"):
        GlueExamples("sst2", "validation", (["a"], ["x"]), [0], "f.tsv", None, "hf")


# ---- hub path, offline, on a local folder laid out like nyu-mll/glue -------------------------------------------


@pytest.fixture
def hub_repo(tmp_path, monkeypatch) -> Path:
    """A local nyu-mll/glue look-alike: README.md `configs:` YAML + parquet files, as the Hub repo has."""
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "cache")  # keep ~/.cache clean
    repo = tmp_path / "glue"
    tables = {
        ("sst2", "validation"): {"sentence": ['it \'s "fine" .', "bad .", "great ."], "label": [1, 0, 1]},
        ("mnli", "validation_matched"): {"premise": ["P0", "P1"], "hypothesis": ["H0", "H1"], "label": [2, 1]},
        ("mnli", "validation_mismatched"): {"premise": ["Pm"], "hypothesis": ["Hm"], "label": [0]},
        ("stsb", "validation"): {"sentence1": ["A."], "sentence2": ["B."], "label": pa.array([3.8], pa.float32())},
        ("rte", "validation"): {"sentence1": ["A."], "sentence2": ["B."], "label": [-1]},  # as if test were fed
    }
    configs: dict[str, list[str]] = {}
    for (config, split), columns in tables.items():
        n = len(columns["label"])
        table = pa.table({**columns, "idx": pa.array(range(n), pa.int32())})
        (repo / config).mkdir(parents=True, exist_ok=True)
        pq.write_table(table, repo / config / f"{split}-00000-of-00001.parquet")
        configs.setdefault(config, []).append(f"  - split: {split}\n    path: {config}/{split}-*")
    yaml = "".join(f"- config_name: {c}\n  data_files:\n" + "\n".join(s) + "\n" for c, s in configs.items())
    (repo / "README.md").write_text(f"---\nconfigs:\n{yaml}---\n")
    return repo


def test_hub_path_offline(hub_repo):
    ex = load_glue_split("sst2", "validation", hub_repo=str(hub_repo))
    assert (ex.texts, ex.labels) == ((['it \'s "fine" .', "bad .", "great ."],), [1, 0, 1])
    assert (ex.layout, ex.sha256, ex.source) == ("hub", None, f"hf://{hub_repo}/sst2/validation")
    mm = load_glue_split("mnli", "validation_mismatched", hub_repo=str(hub_repo))
    assert (mm.texts, mm.labels) == ((["Pm"], ["Hm"]), [0])
    assert load_glue_split("mnli", "validation_matched", hub_repo=str(hub_repo)).labels == [2, 1]
    stsb = load_glue_split("stsb", "validation", hub_repo=str(hub_repo))
    assert stsb.labels == [pytest.approx(3.8)] and stsb.label_counts() == {}


def test_hub_hidden_labels_are_an_error(hub_repo):
    with pytest.raises(GlueDataError, match=r"rte/validation: row 1: label '-1' is not a label id"):
        load_glue_split("rte", "validation", hub_repo=str(hub_repo))


def test_hub_label_names_must_be_the_tasks(hub_repo):
    """A dataset that declares its labels (ClassLabel) in another order would give ids other classes."""
    import datasets

    feats = datasets.Features({"question": datasets.Value("string"), "sentence": datasets.Value("string"),
                               "label": datasets.ClassLabel(names=["not_entailment", "entailment"])})
    (hub_repo / "qnli").mkdir()
    datasets.Dataset.from_dict({"question": ["q"], "sentence": ["s"], "label": [0]}, features=feats).to_parquet(
        str(hub_repo / "qnli" / "validation-00000-of-00001.parquet"))
    readme = (hub_repo / "README.md").read_text()
    (hub_repo / "README.md").write_text(readme.replace(
        "configs:\n", "configs:\n- config_name: qnli\n  data_files:\n  - split: validation\n    path: qnli/validation-*\n", 1))
    with pytest.raises(GlueDataError, match=r"label names \['not_entailment', 'entailment'\] are not qnli's"):
        load_glue_split("qnli", "validation", hub_repo=str(hub_repo))


def test_hub_revision_resolves_to_a_commit_offline_from_the_cache(tmp_path, monkeypatch):
    from tasks.glue.data import hub_commit

    sha = "0123456789abcdef0123456789abcdef01234567"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert hub_commit("nyu-mll/glue", sha) == sha  # pinned: as given
    with pytest.raises(GlueDataError, match="data.hub_revision"):
        hub_commit("nyu-mll/glue", None)
    refs = tmp_path / "datasets--nyu-mll--glue" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(sha)
    assert hub_commit("nyu-mll/glue", None) == sha
    assert hub_commit(str(tmp_path), None) is None  # a local folder laid out like the hub has no revision
