"""The filesystem document store (the default backend).

Content lives at ``root/objects/ab/cd/abcd…``: named by its SHA-1 hex (so identical bytes are stored once) and
sharded over two levels of 256 folders, so no directory grows past a few thousand entries. Request bodies are
spooled to ``root/spool``, on the same filesystem, and ``put_file`` moves the spooled file into place with one
atomic ``os.replace``: no copy, however large the document. Guarantee: when ``put_file``/``put_bytes`` returns,
the content is complete on disk under its key and survives a crash or power loss (the file is fsynced before the
rename, then the shard directory, and every directory the put created, are fsynced after it); a crash at any
earlier point leaves the key absent and at worst a stray file in the spool, which :meth:`FileStore.cleanup_spool`
removes at the next start. A file is never visible under its key partially written. Keys are checked to be 40
lower-case hex digits before they reach a path, so no key can address anything outside ``root/objects``.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from repository.store.base import (
    ReadChunks,
    StoredContent,
    check_key,
    is_key,
    remove_stale_files,
)


class FileStore:
    """Content-addressed document store in a local directory (see the module docstring for guarantees)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects_dir = self.root / "objects"
        self.spool_dir = self.root / "spool"
        for directory in _make_dirs(self.objects_dir) + _make_dirs(self.spool_dir):
            _fsync_dir(directory.parent)

    def path_of(self, key: str) -> Path:
        """Where the content of ``key`` lives (whether or not it exists)."""
        check_key(key)
        return self.objects_dir / key[0:2] / key[2:4] / key

    # -- writing -------------------------------------------------------------------------------------------

    def put_file(self, path: Path, sha1: str, size: int) -> StoredContent:
        """Move the complete spooled file ``path`` into the store under ``sha1`` (computed by the caller while
        receiving it; not re-read here). Durable on return.

        Raises ValueError (and leaves ``path`` alone) if ``sha1`` is not a content key or the file's size is
        not ``size``: a short file means the caller's spool was cut, and it must not be stored as complete.
        """
        dest = self.path_of(sha1)
        actual = os.stat(path).st_size
        if actual != size:
            raise ValueError(f"spooled file {path} has {actual} bytes, expected {size}")
        if _refresh_if_stored(dest, size):
            os.unlink(path)
            return StoredContent(sha1, size)
        _fsync_path(path)
        created = _make_dirs(dest.parent)
        try:
            os.replace(path, dest)
        except OSError as e:
            if e.errno != errno.EXDEV:
                raise
            # The spooled file is on another filesystem (a caller that did not use spool_dir): copy it
            # into our spool first so that the final step is still an atomic rename.
            self._adopt_foreign_file(path, dest)
        _fsync_dir(dest.parent)
        for directory in created:  # the new shard folders' own entries in their parents
            _fsync_dir(directory.parent)
        return StoredContent(sha1, size)

    def put_bytes(self, data: bytes) -> StoredContent:
        """Store ``data`` (inline documents), keyed by the SHA-1 computed here. Durable on return."""
        sha1 = hashlib.sha1(data).hexdigest()
        if _refresh_if_stored(self.path_of(sha1), len(data)):
            return StoredContent(sha1, len(data))
        fd, tmp = tempfile.mkstemp(dir=self.spool_dir, prefix="put-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            return self.put_file(Path(tmp), sha1, len(data))
        finally:
            # Gone if put_file took it; left over only when something failed.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _adopt_foreign_file(self, path: Path, dest: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.spool_dir, prefix="adopt-", suffix=".part")
        try:
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                shutil.copyfileobj(src, out, 1 << 20)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.unlink(path)

    # -- reading -------------------------------------------------------------------------------------------

    def exists(self, key: str) -> bool:
        return self.path_of(key).is_file()

    def size(self, key: str) -> int:
        try:
            return os.stat(self.path_of(key)).st_size
        except FileNotFoundError:
            raise KeyError(key) from None

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The content in chunks of ``chunk_size`` bytes. Opens the file now, so an absent key raises KeyError
        here and not at the first chunk (a Retrieve can still answer with an error before streaming)."""
        try:
            f = open(self.path_of(key), "rb")  # noqa: SIM115 -- closed by ReadChunks
        except FileNotFoundError:
            raise KeyError(key) from None
        return ReadChunks(f, chunk_size)

    # -- deleting and housekeeping -------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        _fsync_dir(path.parent)

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        """Keys whose file was last written (or re-put, see ``put_file``) more than ``seconds`` ago."""
        cutoff = time.time() - seconds
        for level1 in _subdirs(self.objects_dir):
            for level2 in _subdirs(level1):
                for entry in _scandir(level2):
                    if not is_key(entry.name) or not entry.is_file(follow_symlinks=False):
                        continue
                    try:
                        if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                            yield entry.name
                    except FileNotFoundError:  # deleted while we walked
                        continue

    def cleanup_spool(self, older_than_seconds: float) -> int:
        """Remove spool files older than ``older_than_seconds`` (crashed requests); returns how many."""
        return remove_stale_files(self.spool_dir, older_than_seconds)


# -- durability helpers ----------------------------------------------------------------------------------------


def _refresh_if_stored(dest: Path, size: int) -> bool:
    """Deduplication: whether ``dest`` already holds the content (same SHA-1 and size). If so its mtime is
    refreshed, so the orphan sweep (``keys_older_than``) does not take content just submitted again for stale.
    A file of another size under the same SHA-1 can only be damage: False, and the put replaces it."""
    try:
        if os.stat(dest).st_size != size:
            return False
        os.utime(dest)
    except FileNotFoundError:  # absent, or swept between the stat and the utime
        return False
    return True


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    """Make ``path``'s entries (a rename, a new file, a new folder) durable: on Linux a directory is fsynced
    through a read-only descriptor on it."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(path: Path) -> list[Path]:
    """Create ``path`` and any missing parents; return the folders created, deepest last. The caller fsyncs
    each one's parent once the content is in place (a fresh shard folder is lost with its content otherwise)."""
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    created: list[Path] = []
    for directory in reversed(missing):
        try:
            os.mkdir(directory)
        except FileExistsError:  # a concurrent put made it
            continue
        created.append(directory)
    return created


def _subdirs(path: Path) -> Iterator[Path]:
    for entry in _scandir(path):
        if len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
            yield Path(entry.path)


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return sorted(it, key=lambda e: e.name)
    except FileNotFoundError:
        return []
