"""A remembered input hash does not survive new bytes written under the old mtime (`cp -p`, `touch -r`).

Fault: an input is replaced by other content of the same size, keeping its path, inode and mtime (`cp -p new
input`, or an edit followed by `touch -r backup input`). Output must equal: the new content's sha256 (the unit
cache then rebuilds the unit); today's stamp (path, inode, size, mtime) returned the old hash.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess

from tasks.common.io import cached_content_fingerprint

PAST_NS = 1_600_000_000 * 10**9  # an mtime well before any hashing: the hash is remembered


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_same_size_same_mtime_new_bytes_is_rehashed(tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    path = tmp_path / "input.txt"
    path.write_bytes(b"old content")
    os.utime(path, ns=(PAST_NS, PAST_NS))
    assert cached_content_fingerprint(str(path)) == _sha(b"old content")
    assert cached_content_fingerprint(str(path)) == _sha(b"old content")  # remembered

    inode = path.stat().st_ino
    with open(path, "r+b") as f:  # same inode, same size
        f.write(b"new content")
    os.utime(path, ns=(PAST_NS, PAST_NS))  # `touch -r`: the old mtime back
    assert (path.stat().st_ino, path.stat().st_size, path.stat().st_mtime_ns) == (inode, 11, PAST_NS)
    assert cached_content_fingerprint(str(path)) == _sha(b"new content")


def test_cp_p_onto_the_input_is_rehashed(tmp_path, monkeypatch):
    monkeypatch.setenv("LMPIPE_STATE_DIR", str(tmp_path / "state"))
    path, other = tmp_path / "input.txt", tmp_path / "other.txt"
    path.write_bytes(b"version one")
    other.write_bytes(b"version two")
    for p in (path, other):
        os.utime(p, ns=(PAST_NS, PAST_NS))
    assert cached_content_fingerprint(str(path)) == _sha(b"version one")
    if shutil.which("cp"):
        subprocess.run(["cp", "-p", str(other), str(path)], check=True)
    else:  # pragma: no cover
        shutil.copy2(other, path)
    assert path.stat().st_mtime_ns == PAST_NS
    assert cached_content_fingerprint(str(path)) == _sha(b"version two")
