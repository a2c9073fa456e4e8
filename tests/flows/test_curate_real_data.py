"""The curate flow over every real sample in ../shared/data: real counts, real truncations."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest

from flows.curate import curate
from tests.flows.helpers import write_spec

pytestmark = pytest.mark.real_data


@pytest.fixture(scope="module")
def real_run(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("real")
    sources = [
        {"kind": "wikipedia", "paths": [str(shared_data / "wikipedia" / "*")]},
        {"kind": "common_crawl", "paths": [str(shared_data / "commoncrawl" / "*")]},
        {"kind": "books", "paths": [str(shared_data / "books" / "*.txt")]},
    ]
    return root, curate(str(write_spec(root / "spec.yaml", root / "out", sources=sources)))


def test_every_input_is_read_with_its_real_record_count(real_run):
    _, manifest = real_run
    by_label = {i["label"]: i["documents_in"] for i in manifest["inputs"]}
    assert by_label["enwiki-2016-pages-articles1-shortened.xml.bz2"] == 206
    assert by_label["ltgwiki-2017-pages-articles.xml"] == 2004
    assert by_label["jawiki-20230501-pages-articles-multistream-truncated-100k.xml.xz"] == 238
    assert by_label["viwiki-20230501-pages-articles-multistream-truncated-100k.xml.xz"] == 970
    assert by_label["CC-MAIN-2020-34_resiliparse-sample.warc.gz"] == 16  # HTML responses
    assert by_label["CC-MAIN-20201129214615-20201130004615-00404.warc.wet.first319records.gz"] == 318
    assert by_label["CC-MAIN-2024-22_whirlwind.warc.wat.gz"] == 0  # metadata only: no documents, no error
    assert all(by_label[b] == 1 for b in by_label if b.startswith("pg"))


def test_truncated_inputs_fail_after_keeping_complete_records(real_run):
    _, manifest = real_run
    failed = {f["input"]: f for f in manifest["failed_inputs"]}
    assert set(failed) == {
        "jawiki-20230501-pages-articles-multistream-truncated-100k.xml.xz",
        "viwiki-20230501-pages-articles-multistream-truncated-100k.xml.xz",
        "CC-MAIN-20201129214615-20201130004615-00404.warc.wet.head50000lines.TRUNCATED.gz",
    }
    assert failed["jawiki-20230501-pages-articles-multistream-truncated-100k.xml.xz"]["documents_read"] == 238
    truncated_wet = failed["CC-MAIN-20201129214615-20201130004615-00404.warc.wet.head50000lines.TRUNCATED.gz"]
    assert truncated_wet["documents_read"] == 318 and "truncated at offset 2482251" in truncated_wet["error"]


def test_counts_reconcile_and_duplicated_crawl_is_removed(real_run):
    root, manifest = real_run
    c = manifest["counts"]
    assert c["documents_in"] == c["kept"] + c["dropped"] + c["duplicates_removed"]
    assert manifest["drop_reasons"]["wikipedia/redirect"] >= 99 + 147  # enwiki + ltgwiki main-namespace redirects
    # The TRUNCATED WET file repeats the first 318 records of the clean one: every surviving copy is removed.
    wet = {i["label"]: i["kept"] for i in manifest["inputs"] if ".wet." in i["label"]}
    truncated = wet["CC-MAIN-20201129214615-20201130004615-00404.warc.wet.head50000lines.TRUNCATED.gz"]
    assert truncated > 0 and manifest["duplicates"]["dedup/exact"] >= truncated
    table = pq.read_table(root / "out" / "data", columns=["id", "lang", "source"])
    assert len(set(table["id"].to_pylist())) == table.num_rows == c["kept"]
    assert set(table["lang"].to_pylist()) == {"en"}
    assert manifest["kept_by_source"]["books"] == 5 and manifest["kept_by_source"]["wikipedia"] >= 100
