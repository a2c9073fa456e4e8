"""What pins an hf_dataset's content beyond its spec: the hub commit it resolves to and its remote files' stamps.

Why: a unit's cache key is its spec coordinates (name, config, split, revision, data files). With
`revision: null` (or a branch or tag such as `main`) a hub dataset moves under the same coordinates, and a
remote data file (`https://...`) can be replaced under the same URL, so a rerun reused the first run's output
forever. `source_identity` adds what does change with the content:

- a hub dataset whose revision is not a full commit sha: the commit it resolves to now. Online, the Hub says
  (`HfApi.dataset_info(...).sha`); offline (`HF_HUB_OFFLINE` / `HF_DATASETS_OFFLINE`), the ref that the local
  Hugging Face cache holds (`<HF_HUB_CACHE>/datasets--<org>--<name>/refs/<revision>`, written whenever the
  dataset was downloaded). Neither: `UnresolvedRevision`, which says to pin `revision:` or to go online;
- each remote data file: the store's own stamps from fsspec `info` (ETag or checksum, size, modification time).

Builder names (`json`, `parquet`, ...) with local data files and hub datasets pinned to a commit sha add
nothing here, so their keys are the ones earlier versions computed.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from data_specs.sources import HFDatasetSource

_SHA = re.compile(r"[0-9a-f]{40}")
# `info` fields that change when a stored object is replaced: checksums first, then size and time stamps.
_STAMP_KEYS = ("ETag", "etag", "md5Hash", "md5", "Content-MD5", "Digest", "crc32c", "checksum", "blob_id",
               "size", "Last-Modified", "LastModified", "last_modified", "mtime", "updated")


class UnresolvedRevision(Exception):
    """A hub dataset's moving revision (null, a branch, a tag) cannot be resolved to a commit here."""


def source_identity(source: HFDatasetSource) -> dict[str, object]:
    """Extra cache-key fields for `source` (empty when its coordinates already pin the content)."""
    identity: dict[str, object] = {}
    if is_hub_dataset(source.name) and not (source.revision and _SHA.fullmatch(source.revision)):
        identity["resolved_revision"] = resolve_revision(source.name, source.revision)
    remote = [f for f in source.data_files or [] if "://" in f and not f.startswith("file://")]
    if remote:
        identity["remote_files"] = [[f, remote_stamp(f)] for f in remote]
    return identity


def is_hub_dataset(name: str) -> bool:
    """True for a hub id; False for a `datasets` builder name (json, parquet, csv, text, ...) or a local folder."""
    from datasets.packaged_modules import _PACKAGED_DATASETS_MODULES

    return name not in _PACKAGED_DATASETS_MODULES and not os.path.isdir(name)


def resolve_revision(name: str, revision: str | None) -> str:
    """The commit sha that `revision` (None = the default branch) of hub dataset `name` points to now."""
    ref = revision or "main"
    if _offline():
        cached = hub_cache_dir() / f"datasets--{name.replace('/', '--')}" / "refs" / ref
        try:
            sha = cached.read_text().strip()
        except OSError:
            sha = ""
        if _SHA.fullmatch(sha):
            return sha
        raise UnresolvedRevision(
            f"hf_dataset {name!r}: revision {revision!r} cannot be resolved to a commit offline (no {cached}), so "
            "the cache key cannot tell whether the dataset changed. Pin `revision:` to a commit sha in the source "
            "spec, or run once online (unset HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)."
        )
    from huggingface_hub import HfApi

    sha = HfApi().dataset_info(name, revision=revision).sha
    if not sha:
        raise UnresolvedRevision(f"hf_dataset {name!r}: the Hub gave no commit for revision {ref!r}; pin `revision:`")
    return sha


def remote_stamp(url: str) -> dict[str, object]:
    """The stamps fsspec `info` gives for a remote file (ETag/checksum, size, mtime), as a sorted dict."""
    from fsspec.core import url_to_fs

    fs, path = url_to_fs(url)
    info = fs.info(path)
    return {key: str(info[key]) for key in sorted(_STAMP_KEYS) if info.get(key) is not None}


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else huggingface_hub's default."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]) / "hub"
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _offline() -> bool:
    from huggingface_hub import constants

    flags = (os.environ.get("HF_HUB_OFFLINE", ""), os.environ.get("HF_DATASETS_OFFLINE", ""))
    return any(f.strip().lower() in ("1", "true", "yes", "on") for f in flags) or bool(constants.HF_HUB_OFFLINE)
