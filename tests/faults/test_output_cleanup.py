"""A curate output is shared with its user: lmpipe touches only its own files there, and reruns are exact.

Faults:
- a user keeps files and folders in the output, at its root and in `data/`, some named like lmpipe's
  temporary files, then reruns with the same spec and with a changed one (stale shards to remove);
- the output folder holds someone else's files (a typo'd `output:`);
- an output written before the marker existed (manifest, `_work/`, no `.lmpipe-output`);
- a shard rewritten in place with other bytes of the same size; a `manifest.json` cut to 0 bytes;
- failed inputs finishing in different orders in two runs (a loopback HTTP server orders the downloads).
What must survive: every user file, byte for byte, and no run fails because of them; a foreign folder is
refused before anything is written (CLI exit 2, a message naming the folder and the fix); old outputs
keep working.
What the output must equal: shards with the manifest's sha256 (a corrupt shard is rebuilt, the same
bytes as before), and the same manifest bytes whatever order the units finished in.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from flows.curate import curate
from tasks.corpus.output import MARKER_NAME, ForeignOutput
from tests.conftest import SAMPLE_CORPUS
from tests.flows.helpers import shard_digests, write_spec

BOOKS = [{"kind": "books", "paths": [str(SAMPLE_CORPUS / "books" / "*.txt")]}]
USER_FILES = {  # relative path -> bytes: a user's things, some with lmpipe-looking names
    "README.md": b"# my corpus notes\n",
    "notes.tmp-draft": b"a user's draft",
    "manifest.json.tmp-notmine": b"not 8 hex digits: not a name lmpipe writes",
    "analysis/plots.ipynb": b"{}",
    "analysis/shard-00000-of-00001.parquet.tmp-0badf00d": b"inside a user's folder: never looked at",
    "data/README.txt": b"shards below, my extras in extra/",
    "data/extra/mine.parquet": b"PAR1 mine PAR1",
    "data/extra/shard-00000-of-00003.parquet": b"a user's folder is not lmpipe's, whatever its files are called",
    "data/my-sample.parquet.tmp-1234abcd": b"not a shard name",
}


def _spec(root: Path, **extra) -> Path:  # noqa: ANN003
    return write_spec(root / "spec.yaml", root / "out", sources=BOOKS, run={"workers": 1, "retries": 0}, **extra)


def _add_user_files(out: Path) -> None:
    for name, data in USER_FILES.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    (out / "data" / "empty-folder").mkdir()


def _assert_user_files_intact(out: Path) -> None:
    for name, data in USER_FILES.items():
        assert (out / name).read_bytes() == data, name
    assert (out / "data" / "empty-folder").is_dir()


def _assert_shards_are_the_manifests(out: Path, manifest: dict) -> None:
    digests = {name: sha for name, sha in shard_digests(out).items() if not name.startswith("my-")}
    assert digests == {s["path"]: s["sha256"] for s in manifest["shards"]}


def test_user_files_survive_a_rerun_and_a_changed_spec(tmp_path):
    spec = _spec(tmp_path, shards={"target_mb": 0.012})
    first = curate(str(spec))
    assert len(first["shards"]) >= 2
    out = tmp_path / "out"
    _add_user_files(out)

    same = curate(str(spec))  # up to date: nothing written, nothing deleted
    assert same["run_key"] == first["run_key"]
    _assert_user_files_intact(out)

    changed = curate(str(_spec(tmp_path, shards={"target_mb": 100})))  # one shard now: the others are stale
    assert len(changed["shards"]) == 1
    _assert_user_files_intact(out)
    _assert_shards_are_the_manifests(out, changed)
    assert sorted(p.name for p in (out / "data").glob("shard-*")) == [changed["shards"][0]["path"]]


def test_a_folder_lmpipe_did_not_write_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "out"
    (out / "photos").mkdir(parents=True)
    (out / "photos" / "holiday.jpg").write_bytes(b"jpeg")
    (out / "todo.txt").write_text("buy milk")
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    spec = _spec(tmp_path)

    result = CliRunner().invoke(app, ["curate", str(spec)])
    message = " ".join(result.output.split())
    assert result.exit_code == 2, result.output[-3000:]
    assert "Output refused" in message and str(out) in message
    assert "new or empty folder" in message and f"delete {out}" in message
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before  # no lock file, no _work, no marker
    with pytest.raises(ForeignOutput):
        curate(str(spec))


def test_an_output_written_before_the_marker_is_accepted_and_marked(tmp_path):
    spec = _spec(tmp_path)
    first = curate(str(spec))
    out = tmp_path / "out"
    (out / MARKER_NAME).unlink()  # what lmpipe before issue 14 left: manifest, _work, data, a lock file
    (out / ".lmpipe.lock").unlink()  # (a remote output has no lock file left either)
    (out / "README.md").write_text("notes")
    again = curate(str(spec))
    assert again["run_key"] == first["run_key"] and (out / MARKER_NAME).is_file()
    assert (out / "README.md").read_text() == "notes"


def test_a_shard_with_other_bytes_of_the_same_size_is_rebuilt(tmp_path):
    spec = _spec(tmp_path, shards={"target_mb": 0.012})
    first = curate(str(spec))
    out = tmp_path / "out"
    victim = out / "data" / first["shards"][0]["path"]
    data = bytearray(victim.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])  # bit rot, same size
    victim.write_bytes(bytes(data))
    assert victim.stat().st_size == first["shards"][0]["bytes"]

    again = curate(str(spec))
    assert again["shards"] == first["shards"]
    _assert_shards_are_the_manifests(out, first)  # rebuilt: the manifest's bytes again


def test_an_empty_manifest_is_rebuilt_not_a_failure_on_every_rerun(tmp_path):
    spec = _spec(tmp_path)
    first = curate(str(spec))
    out = tmp_path / "out"
    (out / "manifest.json").write_bytes(b"")  # renamed into place, then the power went: zero bytes
    again = curate(str(spec))
    assert again["run_key"] == first["run_key"] and again["shards"] == first["shards"]
    assert json.loads((out / "manifest.json").read_text())["run_key"] == first["run_key"]


# ---- manifest bytes do not depend on the order units finish in ---------------------------------------------------


class _OrderedHandler(http.server.BaseHTTPRequestHandler):
    """Serves `files` (name -> bytes) with an ETag, Content-Length and Range. `order["first"]` names the file
    whose downloads go first: every GET of another file waits until it was served once, then 1.5 s more."""

    protocol_version = "HTTP/1.1"
    files: dict[str, bytes]
    order: dict[str, str]
    served: dict[str, threading.Event]
    log: list[str]

    def log_message(self, *args) -> None:  # noqa: ANN002
        pass

    def _headers(self, data: bytes, length: int, status: int = 200, extra: dict | None = None) -> None:
        self.send_response(status)
        etag = hashlib.sha256(data).hexdigest()[:16]
        for name, value in {"Content-Length": str(length), "ETag": f'"{etag}"', "Accept-Ranges": "bytes",
                            **(extra or {})}.items():
            self.send_header(name, value)
        self.end_headers()

    def do_HEAD(self) -> None:  # noqa: N802
        data = self.files[self.path.lstrip("/")]
        self._headers(data, len(data))

    def do_GET(self) -> None:  # noqa: N802
        name = self.path.lstrip("/")
        data = self.files[name]
        if name != self.order["first"]:
            assert self.served[self.order["first"]].wait(timeout=120)
            time.sleep(1.5)  # the first file's unit fails and finishes meanwhile
        body, status, extra = data, 200, {}
        if rng := self.headers.get("Range"):
            first, _, last = rng.removeprefix("bytes=").partition("-")
            start, end = int(first), min(int(last) if last else len(data) - 1, len(data) - 1)
            body, status = data[start : end + 1], 206
            extra = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
        self._headers(data, len(body), status, extra)
        self.wfile.write(body)
        self.log.append(name)
        self.served[name].set()


@pytest.fixture
def ordered_server() -> Iterator[tuple[str, dict[str, str], dict[str, threading.Event], list[str]]]:
    """(base URL, order, served, log): two corrupt WARCs whose downloads finish in the order `order` says."""
    rng = random.Random(14)
    files = {name: b"\x1f\x8b\x08\x00" + rng.randbytes(4000) for name in ("a.warc.gz", "b.warc.gz")}
    order = {"first": "a.warc.gz"}
    served = {name: threading.Event() for name in files}
    log: list[str] = []
    handler = type("Handler", (_OrderedHandler,), {"files": files, "order": order, "served": served, "log": log})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", order, served, log
    for event in served.values():
        event.set()
    server.shutdown()
    server.server_close()


def test_manifest_bytes_are_the_same_whatever_order_units_finish_in(tmp_path, ordered_server):
    base, order, served, log = ordered_server
    sources = [{"kind": "common_crawl", "paths": [f"{base}/a.warc.gz", f"{base}/b.warc.gz"]}, *BOOKS]
    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "out", sources=sources, run={"workers": 2, "retries": 0})
    out = tmp_path / "out"
    written = []
    for first in ("b.warc.gz", "a.warc.gz"):
        order["first"] = first
        for event in served.values():
            event.clear()
        log.clear()
        manifest = curate(str(spec))
        assert log[0] == first  # the downloads (and so the failures) came in this order
        assert [f["input"] for f in manifest["failed_inputs"]] == ["a.warc.gz", "b.warc.gz"]  # corpus order
        written.append(((out / "manifest.json").read_bytes(), (out / "DATA_CARD.md").read_bytes()))
        (out / "manifest.json").unlink()  # the next run assembles again (its failed units are read again)
    assert written[0] == written[1]
