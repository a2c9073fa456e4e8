"""Durable renames: what is under a final name survives a power loss whole, not as a zero-byte file.

A rename is atomic for readers, but not durable: after a power loss the kernel may have kept the new
directory entry and lost the file's data, leaving a file of zero bytes (or a garbled tail) under its
final name. Every lmpipe writer therefore does, for local files:

1. write the temporary file and `fsync` it (its data is on disk);
2. `os.replace` it onto the final name;
3. `fsync` the folder (the rename itself is on disk).

`replace_durably` does steps 1–3 for a file; `fsync_tree` does step 1 for every file and folder under
a directory about to be renamed (a published model). Remote fsspec stores have no page cache to lose:
there these are plain moves (no-ops for fsync). Readers still treat an unreadable file as missing
(`tasks.units.core.load_cached`), since old outputs and other writers may predate this.
"""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
from fsspec.implementations.local import LocalFileSystem


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    """True for the local filesystem, the only one where lmpipe calls fsync."""
    return isinstance(fs, LocalFileSystem)


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync one local file or folder by path (a folder's fsync makes its entries' renames durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_durably(tmp: str | os.PathLike[str], dest: str | os.PathLike[str],
                    fs: fsspec.AbstractFileSystem | None = None) -> None:
    """Move `tmp` onto `dest` so that after a crash `dest` is the old file or the whole new one.

    Local (`fs` None or local): fsync `tmp`, `os.replace`, fsync `dest`'s folder. Other stores: `fs.mv`.
    """
    if fs is not None and not is_local(fs):
        fs.mv(str(tmp), str(dest))
        return
    fsync_path(tmp)
    os.replace(tmp, dest)
    fsync_path(os.path.dirname(os.path.abspath(dest)))


def fsync_tree(root: str | os.PathLike[str]) -> None:
    """fsync every file under `root`, then every folder from the deepest up to `root` itself.

    Call it before renaming a folder into place (then fsync the parent, as `replace_durably` does).
    """
    folders: list[str] = []
    for dirpath, _dirs, files in os.walk(root):
        folders.append(dirpath)
        for name in files:
            fsync_path(Path(dirpath) / name)
    for folder in sorted(folders, key=lambda p: p.count(os.sep), reverse=True):
        fsync_path(folder)


def replace_tree_durably(tmp: str | os.PathLike[str], dest: str | os.PathLike[str]) -> None:
    """Rename the local folder `tmp` to `dest` (which must not exist) durably: fsync its tree, rename, fsync
    the parent folder."""
    fsync_tree(tmp)
    os.rename(tmp, dest)
    fsync_path(os.path.dirname(os.path.abspath(dest)))


def write_bytes_durably(path: str | os.PathLike[str], data: bytes) -> None:
    """Write a small local file through a temporary name beside it and `replace_durably`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        replace_durably(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


__all__ = ["fsync_path", "fsync_tree", "is_local", "replace_durably", "replace_tree_durably", "write_bytes_durably"]
