"""What lmpipe may touch in an output folder (only its own names), when it refuses a folder, how it tells a
shard is intact, and that a manifest does not depend on the order units finished in."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import fsspec
import numpy as np
import pytest

from flows.curate import _json_bytes
from tasks.corpus.core import DedupOutcome, read_manifest, remove_stale_shards
from tasks.corpus.manifest import build_manifest
from tasks.corpus.output import (
    MARKER_NAME,
    ForeignOutput,
    check_output_is_ours,
    is_shard_name,
    mark_output,
    remove_orphan_temp_files,
    shard_matches,
)
from tasks.shards.core import KeptRows, file_sha256
from tasks.units.core import UnitResult


def _files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _user_things(out: Path) -> set[str]:
    """A user's files and folders in an output, some with names that look like lmpipe's temporary files."""
    made = {
        "README.md": b"my notes", "notes.tmp-draft": b"a user's file", "data/README.txt": b"mine",
        "data/extra/keep.parquet": b"mine", "data/extra/shard-00000-of-00001.parquet.tmp-0badf00d": b"mine",
        "analysis/draft.tmp-1": b"mine", "analysis/manifest.json.tmp-deadbeef": b"mine",
        "data/mine.parquet.tmp-1234abcd": b"not a shard's name",
    }
    for name, data in made.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    (out / "data" / "empty-folder").mkdir()
    return _files(out) & ({*made, "data/empty-folder", "data/extra", "analysis", "data"})


# ---- which folders lmpipe writes into ------------------------------------------------------------------------


def test_a_non_empty_folder_lmpipe_did_not_write_is_refused_untouched(tmp_path):
    out = tmp_path / "photos"
    out.mkdir()
    (out / "holiday.jpg").write_bytes(b"jpeg")
    with pytest.raises(ForeignOutput) as refused:
        check_output_is_ours(str(out))
    message = str(refused.value)
    assert str(out) in message and "holiday.jpg" in message
    assert "new or empty folder" in message and f"delete {out}" in message
    assert _files(out) == {"holiday.jpg"}
    (out / "manifest.json").write_text('{"some": "other tool"}')  # a manifest that is not lmpipe's is no proof
    with pytest.raises(ForeignOutput):
        check_output_is_ours(str(out))
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(ForeignOutput, match="is a file, not a folder"):
        check_output_is_ours(str(tmp_path / "a-file"))


@pytest.mark.parametrize("evidence", [MARKER_NAME, ".lmpipe.lock", "_work/units/", "manifest.json"])
def test_lmpipe_outputs_old_and_new_are_accepted(tmp_path, evidence):
    out = tmp_path / "out"
    (out / "data").mkdir(parents=True)
    (out / "data" / "shard-00000-of-00001.parquet").write_bytes(b"x")
    if evidence.endswith("/"):
        (out / evidence).mkdir(parents=True)
    else:
        (out / evidence).write_text(json.dumps({"run_key": "k", "shards": []}))
    check_output_is_ours(str(out))


def test_missing_and_empty_folders_are_accepted_and_marked(tmp_path):
    check_output_is_ours(str(tmp_path / "new"))
    (tmp_path / "empty").mkdir()
    check_output_is_ours(str(tmp_path / "empty"))
    mark_output(str(tmp_path / "empty"))
    assert json.loads((tmp_path / "empty" / MARKER_NAME).read_text())["written_by"] == "lmpipe"
    (tmp_path / "empty" / "README.md").write_text("added later by the user")
    check_output_is_ours(str(tmp_path / "empty"))


# ---- clean-up deletes lmpipe's names only --------------------------------------------------------------------


def test_orphan_clean_up_deletes_lmpipe_temporaries_only(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    user = _user_things(out)
    ours = [
        "manifest.json.tmp-0123abcd", "DATA_CARD.md.tmp-89abcdef", "data/shard-00001-of-00004.parquet.tmp-00ff00ff",
        "_work/units/k.parquet.tmp-a1b2c3d4", "_work/units/k.json.tmp-a1b2c3d4", "_work/.tmp-ab_c12yz",
        "_work/dedup/removed.parquet.tmp-0000ffff", "_work/dedup/spill-abc_1234/signatures.npy",
    ]
    for name in ours:
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(b"half written")
    removed = remove_orphan_temp_files(str(out))
    assert len(removed) == len(ours)
    assert _files(out) == user | {"_work", "_work/units", "_work/dedup"}


def test_stale_shards_go_and_a_users_files_and_folders_in_data_stay(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    user = _user_things(out)
    for name in ("shard-00000-of-00002.parquet", "shard-00001-of-00002.parquet", "shard-00000-of-00001.parquet"):
        (out / "data" / name).write_bytes(b"shard")
    removed = remove_stale_shards(str(out), {"shard-00000-of-00001.parquet"})
    assert sorted(Path(p).name for p in removed) == ["shard-00000-of-00002.parquet", "shard-00001-of-00002.parquet"]
    assert _files(out) == user | {"data/shard-00000-of-00001.parquet"}
    assert is_shard_name("shard-00012-of-00100.parquet") and not is_shard_name("shard-1-of-2.parquet")


# ---- a shard is present when its bytes are the manifest's -----------------------------------------------------


def test_a_shard_with_the_same_size_but_other_bytes_does_not_match(tmp_path):
    shard = tmp_path / "shard-00000-of-00001.parquet"
    shard.write_bytes(b"PAR1 the real bytes PAR1")
    sha, size = file_sha256(str(shard))
    assert shard_matches(str(shard), sha, size)
    shard.write_bytes(b"PAR1 rotten!bytes!! PAR1")
    assert shard.stat().st_size == size
    assert not shard_matches(str(shard), sha, size)
    assert not shard_matches(str(tmp_path / "missing.parquet"), sha, size)


def test_a_remote_shard_is_compared_by_hash_too():
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/shard-check/s.parquet", b"real bytes")
    sha, size = file_sha256("memory://shard-check/s.parquet")
    try:
        assert shard_matches("memory://shard-check/s.parquet", sha, size)
        fs.pipe_file("/shard-check/s.parquet", b"rotten!!!!")
        assert not shard_matches("memory://shard-check/s.parquet", sha, size)
    finally:
        fs.rm("/shard-check", recursive=True)


def test_a_remote_shard_hash_is_remembered_under_the_stores_checksum(monkeypatch, tmp_path):
    """With an ETag (S3, GCS), the sha256 is hashed once per ETag: a rerun downloads nothing, a rewrite re-hashes."""
    import hashlib

    import tasks.corpus.output as output

    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    fs = fsspec.filesystem("memory")
    real_info = fs.info
    monkeypatch.setattr(fs, "info", lambda path, **kw: {
        **real_info(path, **kw), "ETag": hashlib.md5(fs.cat_file(path)).hexdigest()})  # as S3 gives it
    url = "memory://shard-etag/s.parquet"
    fs.pipe_file("/shard-etag/s.parquet", b"real bytes")
    sha, size = file_sha256(url)
    hashed: list[str] = []
    monkeypatch.setattr(output, "file_sha256", lambda u: (hashed.append(u), file_sha256(u))[1])
    try:
        assert shard_matches(url, sha, size) and hashed == [url]
        assert shard_matches(url, sha, size) and hashed == [url]  # remembered: not downloaded again
        fs.pipe_file("/shard-etag/s.parquet", b"rotten!!!!")  # a rewrite: a new ETag
        assert not shard_matches(url, sha, size) and hashed == [url, url]
    finally:
        fs.rm("/shard-etag", recursive=True)


@pytest.mark.parametrize("content", [b"", b'{"format": 1, "run_k', b"\xff\xfe", b"[]", b'{"run_key": "k"}'])
def test_an_unreadable_manifest_is_no_manifest(tmp_path, content):
    (tmp_path / "manifest.json").write_bytes(content)  # a power loss, or something that is not ours
    assert read_manifest(str(tmp_path)) is None
    assert read_manifest(str(tmp_path / "nowhere")) is None


# ---- manifests do not depend on completion order -------------------------------------------------------------


def _results() -> list[UnitResult]:
    """Units of two sources, four of them failed (two of one file's byte ranges among them)."""
    def unit(source: int, url: str, start: int | None, error: str | None, docs: int) -> UnitResult:
        return UnitResult(key="" if error else f"k{source}{url}{start}", label=url.rsplit("/", 1)[-1],
                          source_index=source, kind=["wikipedia", "books"][source], url=url, start=start,
                          end=None if start is None else start + 10, path="", docs_in=docs, drops={"x/y": docs},
                          error=error, complete=error is None)

    return [
        unit(0, "/in/b.xml.bz2", None, "ReaderError: truncated", 2),
        unit(0, "/in/a.xml.bz2", None, None, 3),
        unit(0, "/in/c.xml.bz2", 10, "ReaderError: bad stream", 1),
        unit(0, "/in/c.xml.bz2", 0, "ReaderError: bad stream", 4),
        unit(1, "/in/a.txt", None, "OSError: gone", 0),
        unit(1, "/in/z.txt", None, None, 5),
    ]


def test_manifest_bytes_do_not_depend_on_the_order_units_finished_in():
    outcome = DedupOutcome(kept_rows=KeptRows((), np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int64)),
                           removed={}, clusters=0, cluster_sizes={}, candidate_pairs=0, verified_pairs=0,
                           exact_checked=0, removed_path=None, kept_by_source={}, kept_languages={})
    spec = {"name": "n", "version": 1}
    problems = [("/in/missing-*.bz2", "no files match this pattern")]
    built = {
        _json_bytes(build_manifest(spec=spec, fingerprint="f", run_key="r", results=list(order),
                                   planning_problems=problems, outcome=outcome, shards=[], output="/out"))
        for order in itertools.islice(itertools.permutations(_results()), 0, None, 37)
    }
    assert len(built) == 1
    failed = json.loads(built.pop())["failed_inputs"]
    assert [(f["input"], f.get("url")) for f in failed] == [
        ("/in/missing-*.bz2", None), ("b.xml.bz2", "/in/b.xml.bz2"), ("c.xml.bz2", "/in/c.xml.bz2"),
        ("c.xml.bz2", "/in/c.xml.bz2"), ("a.txt", "/in/a.txt"),
    ]
    assert [f["documents_read"] for f in failed] == [0, 2, 4, 1, 0]  # byte range 0 before byte range 10


def test_remote_outputs_get_the_same_checks():
    fs = fsspec.filesystem("memory")
    try:
        fs.pipe_file("/out-check/theirs/report.csv", b"a,b")
        with pytest.raises(ForeignOutput, match="report.csv"):
            check_output_is_ours("memory://out-check/theirs")
        check_output_is_ours("memory://out-check/new")
        mark_output("memory://out-check/new")
        for name in ("data/shard-00000-of-00001.parquet.tmp-0123abcd", "data/mine.txt", "manifest.json.tmp-0123abcd"):
            fs.pipe_file(f"/out-check/new/{name}", b"x")
        check_output_is_ours("memory://out-check/new")
        assert len(remove_orphan_temp_files("memory://out-check/new")) == 2
        assert sorted(fs.find("/out-check/new")) == ["/out-check/new/.lmpipe-output", "/out-check/new/data/mine.txt"]
    finally:
        fs.rm("/out-check", recursive=True)
