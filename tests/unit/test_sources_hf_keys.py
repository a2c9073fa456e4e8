"""hf_dataset cache keys follow what changes the output: the hub commit a moving revision resolves to, and the
stamps (ETag/size/mtime) of remote data files.

Before: `revision: null` and remote `data_files` were keyed on their spec coordinates only, so a dataset that
moved on the Hub, or a file replaced under the same URL, was never read again.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace

import pytest

from data_specs.sources import HFDatasetSource
from tasks.common.io import cached_content_fingerprint
from tasks.sources.core import plan_units, unit_content_fingerprint
from tests.unit._sources_http import http_server  # noqa: F401 - fixture

SHA1, SHA2 = "1" * 40, "2" * 40


def _key(src):
    (unit,), _ = plan_units(src, 0)
    assert unit.content == unit_content_fingerprint(src, replace(unit, content=None))  # planner == worker
    return unit.content


def test_moving_hub_revision_is_keyed_on_the_cached_commit(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    refs = tmp_path / "hub" / "datasets--someorg--tiny" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(SHA1)
    moving = HFDatasetSource(kind="hf_dataset", name="someorg/tiny")  # revision: null
    first = _key(moving)
    assert first == _key(moving)
    (refs / "main").write_text(SHA2)  # the dataset was updated on the Hub and downloaded again
    assert _key(moving) != first
    (refs / "v1").write_text(SHA1)
    assert _key(HFDatasetSource(kind="hf_dataset", name="someorg/tiny", revision="v1")) != _key(moving)
    # A pinned commit needs no lookup: the key is what earlier versions computed for it.
    pinned = HFDatasetSource(kind="hf_dataset", name="someorg/tiny", revision=SHA1)
    (refs / "main").unlink()
    assert _key(pinned).startswith("hf:")


def test_unresolvable_revision_fails_clearly(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    src = HFDatasetSource(kind="hf_dataset", name="someorg/never-downloaded")
    (unit,), _ = plan_units(src, 0)
    assert unit.content is None  # planning goes on; the unit fails on its own, with the message below
    with pytest.raises(Exception, match="Pin `revision:` to a commit sha") as raised:
        unit_content_fingerprint(src, unit)
    assert raised.type.__name__ == "UnresolvedRevision"


def test_remote_data_file_is_keyed_on_its_stamps(tmp_path, http_server):
    served = tmp_path / "remote.jsonl"
    served.write_text(json.dumps({"text": "first version"}) + "\n")
    os.utime(served, (1_700_000_000, 1_700_000_000))
    src = HFDatasetSource(kind="hf_dataset", name="json", data_files=[f"{http_server(tmp_path)}/remote.jsonl"])
    first = _key(src)
    assert first == _key(src)
    served.write_text(json.dumps({"text": "other version"}) + "\n")  # same size, new content
    os.utime(served, (1_700_000_100, 1_700_000_100))
    second = _key(src)
    assert second != first
    served.write_text(json.dumps({"text": "a longer third version"}) + "\n")
    os.utime(served, (1_700_000_100, 1_700_000_100))  # same mtime: the size still tells
    assert _key(src) not in (first, second)


def test_local_builder_keys_are_unchanged(tmp_path):
    # A builder name with local files needs no lookup: its key is the one earlier versions wrote, so their
    # caches stay valid (the payload below is main's formula, written out).
    path = tmp_path / "a.jsonl"
    path.write_text(json.dumps({"text": "x"}) + "\n")
    src = HFDatasetSource(kind="hf_dataset", name="json", data_files=[str(path)])
    payload = {"name": "json", "config": None, "split": "train", "revision": None,
               "data_files": [[str(path), cached_content_fingerprint(str(path))]]}
    assert _key(src) == "hf:" + hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
