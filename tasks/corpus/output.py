"""What lmpipe owns in a curate output folder, and the checks that keep it from touching anything else.

    check_output_is_ours(output)     # before the lock: refuse a non-empty folder lmpipe did not write
    with output_lock(output):
        mark_output(output)          # `<output>/.lmpipe-output`, written once
        remove_orphan_temp_files(output)
        ...

An output folder holds lmpipe's files and maybe a user's (a README, a notebook, a folder of their own
next to `data/`). lmpipe deletes only names it makes itself, in the places it makes them:
- `<output>/data/shard-NNNNN-of-NNNNN.parquet` that the current plan does not name (a changed spec):
  `tasks.corpus.core.remove_stale_shards`, using `is_shard_name`;
- temporary files of a killed run, `<lmpipe file>.tmp-<8 hex>` (`AtomicParquetWriter` and
  `write_bytes_atomic` in `tasks/shards/core.py`), at the root (`manifest.json`,
  `DATA_CARD.md`, `.lmpipe-output`) and in `data/` (shards), and anywhere below `_work/`, where every
  file is lmpipe's (also `.tmp-XXXXXXXX` files of `tasks.common.io.write_text_atomically`'s `mkstemp`);
- scratch folders `_work/dedup/spill-XXXXXXXX` of a dedup killed before its `TemporaryDirectory` ended.
It never descends into, nor deletes, a folder or file of any other name, and never fails because one
exists.

A folder is lmpipe's when it holds the marker `.lmpipe-output` (written at a run's start) or, for outputs
written before the marker existed, the lock file `.lmpipe.lock` (every local run since the lock exists left one),
`_work/units/`, or a `manifest.json` with a `run_key`. A missing or empty folder is fine; any other
non-empty folder is refused before anything is written (`ForeignOutput`), since a run deletes stale
files of its own names there.

Shard check (`shard_matches`): a shard is present when its bytes are the manifest's, compared by sha256,
not by size. Hashing is remembered under the file's stamp (`cached_content_fingerprint`: path, inode,
size, mtime): the first up-to-date rerun after a write hashes each shard once (about 1 GB/s), later ones
hash nothing; a rewrite changes the stamp and is hashed again. What it cannot see: bytes that change in place without the stamp changing (bit
rot on a disk without checksums), which only a full re-hash finds. Remote shards are remembered under
the store's own checksum (ETag, md5, crc), which any rewrite changes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from typing import Any

from fsspec.core import url_to_fs

from tasks.common.io import cached_content_fingerprint, content_fingerprint, fingerprint_cache_dir
from tasks.common.io import write_text_atomically
from tasks.shards.core import file_sha256, write_bytes_atomic

log = logging.getLogger(__name__)

MARKER_NAME = ".lmpipe-output"
LOCK_NAME = ".lmpipe.lock"  # tasks.common.lock.LOCK_NAME (not imported: lock.py stays free of this module)
WORK_DIR = "_work"
DATA_DIR = "data"
ROOT_FILES = ("manifest.json", "DATA_CARD.md", MARKER_NAME)  # what a run writes at the root, atomically

_SHARD_RE = re.compile(r"shard-\d{5,}-of-\d{5,}\.parquet")  # tasks.shards.core.shard_name
_TMP_SUFFIX = r"\.tmp-[0-9a-f]{8}"  # f"{path}.tmp-{uuid4().hex[:8]}": AtomicParquetWriter, write_bytes_atomic
_MKSTEMP_RE = re.compile(r"\.tmp-[a-z0-9_]{8}")  # tempfile.mkstemp(prefix=".tmp-"): write_text_atomically
_ANY_TMP_RE = re.compile(rf".+{_TMP_SUFFIX}")
_ROOT_TMP_RE = re.compile(rf"({'|'.join(re.escape(n) for n in ROOT_FILES)}){_TMP_SUFFIX}")
_SHARD_TMP_RE = re.compile(rf"{_SHARD_RE.pattern}{_TMP_SUFFIX}")
_SPILL_RE = re.compile(r"spill-[a-z0-9_]{8}")  # tempfile.TemporaryDirectory(prefix="spill-"): corpus/core.py


class ForeignOutput(ValueError):
    """The output folder is not empty and holds no sign of lmpipe: the message names it and says what to do."""


def is_shard_name(name: str) -> bool:
    """True for `shard-00000-of-00004.parquet`, the only names lmpipe writes under `<output>/data/`."""
    return _SHARD_RE.fullmatch(name) is not None


def _base(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def _entries(fs: Any, path: str) -> list[dict[str, Any]]:
    """The direct children of a folder (name, type), or nothing when it does not exist."""
    try:
        return fs.ls(path, detail=True) if fs.isdir(path) else []
    except FileNotFoundError:
        return []


def lmpipe_evidence(output: str) -> str | None:
    """What shows that lmpipe wrote this folder (the marker, or a name an earlier version left), or None."""
    fs, root = url_to_fs(output)
    names = {_base(e["name"]): e.get("type") for e in _entries(fs, root)}
    for name in (MARKER_NAME, LOCK_NAME):
        if name in names:
            return name
    if names.get(WORK_DIR) == "directory" and fs.isdir(f"{root.rstrip('/')}/{WORK_DIR}/units"):
        return f"{WORK_DIR}/units"
    if "manifest.json" in names:
        try:
            manifest = json.loads(fs.cat_file(f"{root.rstrip('/')}/manifest.json"))
        except (OSError, ValueError):
            manifest = None
        if isinstance(manifest, dict) and "run_key" in manifest:
            return "manifest.json"
    return None


def check_output_is_ours(output: str) -> None:
    """Raise `ForeignOutput` unless `output` is missing, empty, or written by lmpipe (see the module docstring).

    Call it before taking the lock: the lock file is itself a write, and a refused folder must stay untouched.
    """
    fs, root = url_to_fs(output)
    if fs.exists(root) and not fs.isdir(root):
        raise ForeignOutput(f"output {output} is a file, not a folder: set `output:` in the spec to a folder")
    entries = _entries(fs, root)
    if not entries or lmpipe_evidence(output):
        return
    shown = ", ".join(sorted(_base(e["name"]) for e in entries)[:5]) + (", ..." if len(entries) > 5 else "")
    raise ForeignOutput(
        f"output {output} is not empty ({shown}) and was not written by lmpipe (no {MARKER_NAME} in it). lmpipe "
        "replaces its shards and deletes its temporary files in its output folder, so it writes only into a new "
        "or empty folder, or one it wrote before: set `output:` in the spec to a new or empty folder, or delete "
        f"{output} if nothing in it is needed"
    )


def mark_output(output: str) -> None:
    """Write `<output>/.lmpipe-output` unless it is there: the folder is lmpipe's from now on (hold the lock)."""
    fs, path = url_to_fs(f"{output.rstrip('/')}/{MARKER_NAME}")
    if fs.exists(path):
        return
    note = {"written_by": "lmpipe", "kind": "curate output", "format": 1,
            "note": "lmpipe deletes only its own files here: stale data/shard-*.parquet, its *.tmp-* files, _work/"}
    write_bytes_atomic(f"{output.rstrip('/')}/{MARKER_NAME}", (json.dumps(note, indent=1) + "\n").encode())


def remove_orphan_temp_files(output: str) -> list[str]:
    """Delete what a killed run left behind, by lmpipe's own names only (module docstring); returns their paths.

    Call it with the output's lock held: then no other run is writing, and such files can only be leftovers.
    """
    fs, root = url_to_fs(output)
    root = root.rstrip("/")
    orphans = [e["name"] for e in _entries(fs, root)
               if e.get("type") == "file" and _ROOT_TMP_RE.fullmatch(_base(e["name"]))]
    orphans += [e["name"] for e in _entries(fs, f"{root}/{DATA_DIR}")
                if e.get("type") == "file" and _SHARD_TMP_RE.fullmatch(_base(e["name"]))]
    work = f"{root}/{WORK_DIR}"
    if fs.isdir(work):
        orphans += [p for p in fs.find(work) if _ANY_TMP_RE.fullmatch(_base(p)) or _MKSTEMP_RE.fullmatch(_base(p))]
    for path in orphans:
        fs.rm(path)
    spills = [e["name"] for e in _entries(fs, f"{work}/dedup")
              if e.get("type") == "directory" and _SPILL_RE.fullmatch(_base(e["name"]))]
    for path in spills:
        fs.rm(path, recursive=True)
    return orphans + spills


def shard_matches(url: str, sha256: str, size: int) -> bool:
    """True when the file at `url` holds exactly the bytes the manifest names (size first, then sha256)."""
    fs, path = url_to_fs(url)
    try:
        if fs.size(path) != size:
            return False
        return remembered_sha256(url) == sha256
    except FileNotFoundError:
        return False


def remembered_sha256(url: str) -> str:
    """sha256 of a file, hashed once per content: remembered under its stamp (local) or store checksum (remote).

    Local files go through `cached_content_fingerprint` (path, inode, size, mtime; a file changed in the last
    2 s is hashed but not remembered). A remote store's checksum (ETag, md5, crc) changes with any rewrite, so a
    sha256 remembered under it stays true; a store without one is hashed in full by `content_fingerprint`.
    """
    fs, path = url_to_fs(url)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol in ("file", "local"):
        return cached_content_fingerprint(url).removeprefix("sha256:")
    store = content_fingerprint(url)
    if store.startswith("sha256:"):
        return store.removeprefix("sha256:")
    entry = fingerprint_cache_dir() / "shards" / (hashlib.sha256(url.encode()).hexdigest()[:32] + ".json")
    try:
        cached = json.loads(entry.read_text())
        if cached.get("url") == url and cached.get("store") == store and isinstance(cached.get("sha256"), str):
            return cached["sha256"]
    except (OSError, ValueError, AttributeError):
        pass
    digest, _ = file_sha256(url)
    if content_fingerprint(url) == store:  # unchanged while we read it: the pair is true
        try:
            write_text_atomically(entry, json.dumps({"url": url, "store": store, "sha256": digest}))
        except OSError:
            log.debug("could not remember the hash of %s in %s", url, entry)
    return digest


def shards_present(output: str, shards: list[dict[str, Any]]) -> bool:
    """True when every shard of a manifest is at `<output>/data/` with the manifest's size and sha256."""
    data = f"{output.rstrip('/')}/{DATA_DIR}"
    return all(shard_matches(f"{data}/{s['path']}", s["sha256"], s["bytes"]) for s in shards)
