"""Every shipped spec validates; typos and impossible settings fail with a message that says what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from data_specs import SPECS_DIR, CurateSpec, SpecError, curate_fingerprint, load_curate_spec

MINIMAL = """
name: my-corpus
sources:
  - {kind: wikipedia, paths: ["/data/enwiki-latest-pages-articles1.xml-p1p41242.bz2"]}
  - {kind: common_crawl, paths: ["/data/cc/*.warc.gz", "/data/cc/*.warc.wet.gz"]}
  - {kind: books, paths: ["/data/books/*.txt"]}
  - {kind: hf_dataset, name: bookcorpus/bookcorpus, split: train, text_field: text}
output: /data/curated/my-corpus
"""


@pytest.mark.parametrize("path", sorted((SPECS_DIR / "curate").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_validate(path: Path):
    spec = load_curate_spec(path)
    assert spec.sources


def test_minimal_spec_from_the_docs_works(tmp_path):
    path = tmp_path / "minimal.yaml"
    path.write_text(MINIMAL)
    spec = load_curate_spec(path)
    assert [s.kind for s in spec.sources] == ["wikipedia", "common_crawl", "books", "hf_dataset"]
    assert spec.dedup.minhash.ngram == 5 and spec.clean.language.languages == ("en",)
    # Per-kind filter defaults: web rules for web text only; books have no length cap.
    books = spec.sources[2]
    assert books.filters.gopher_quality.max_words is None and not books.filters.c4.enabled
    assert spec.sources[1].filters.c4.enabled and spec.sources[1].filters.fineweb.enabled


@pytest.mark.parametrize(
    ("patch", "needle"),
    [
        ({"outptu": "x"}, "outptu"),
        ({"sources": [{"kind": "wikipedia", "paths": []}]}, "sources.0.wikipedia.paths"),
        ({"sources": [{"kind": "ftp", "paths": ["a"]}]}, "sources.0"),
        ({"dedup": {"minhash": {"num_perm": 64, "bands": 16, "rows": 8}}}, "exceeds num_perm"),
        ({"dedup": {"source_priority": ["books"]}}, "does not list"),
        ({"name": "My Corpus"}, "name"),
    ],
)
def test_invalid_specs_fail_loudly(tmp_path, patch, needle):
    raw = yaml.safe_load(MINIMAL)
    raw.update(patch)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError, match="invalid CurateSpec") as info:
        load_curate_spec(path)
    assert needle in str(info.value)


def test_missing_and_non_mapping_files(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_curate_spec(tmp_path / "nope.yaml")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="mapping"):
        load_curate_spec(tmp_path / "list.yaml")


def test_fingerprint_ignores_execution_settings_only():
    raw = yaml.safe_load(MINIMAL)
    base = curate_fingerprint(CurateSpec.model_validate(raw))
    assert curate_fingerprint(CurateSpec.model_validate({**raw, "run": {"workers": 7}, "output": "/x"})) == base
    changed = {**raw, "dedup": {"minhash": {"threshold": 0.7}}}
    assert curate_fingerprint(CurateSpec.model_validate(changed)) != base


def test_specs_are_frozen():
    spec = CurateSpec.model_validate(yaml.safe_load(MINIMAL))
    with pytest.raises(Exception):
        spec.name = "other"  # type: ignore[misc]


def test_reference_doc_matches_the_schema():
    from data_specs.reference import render

    committed = (SPECS_DIR / "REFERENCE.md").read_text()
    assert committed == render() + "\n", "run: python -m data_specs.reference > data_specs/REFERENCE.md"
