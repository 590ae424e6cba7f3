"""The document store interface.

Content is addressed by its SHA-1 (the XDS ``hash``), so the same bytes submitted twice are stored once;
the repository's ledger (:mod:`repository.ledger`) says which documents point at which content and decides
when content may be deleted. Every ``put_*`` is durable when it returns: after a crash, content is either
complete under its key or absent (never partial).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, Self

#: A content key: the lower-case SHA-1 hex of the bytes. Anything else is refused before it reaches a path or
#: an object name, so a key can never climb out of the store (``../``) or alias another key (upper case).
_KEY = re.compile(r"[0-9a-f]{40}")


class StoreUnavailable(RuntimeError):
    """The store cannot be used as configured (e.g. its S3 bucket does not exist); the message says why."""


@dataclass(frozen=True)
class StoredContent:
    """What a ``put`` stored: the content key (lower-case SHA-1 hex) and its size in bytes."""

    key: str
    size: int


class DocumentStore(Protocol):
    """Where document bytes live. Implementations: :mod:`.filesystem`, :mod:`.s3`."""

    #: Directory for request spool files. On the filesystem store it is on the same filesystem as the
    #: content, so ``put_file`` is a rename, not a copy.
    spool_dir: Path

    def put_file(self, path: Path, sha1: str, size: int) -> StoredContent:
        """Take ownership of a complete spooled file whose SHA-1/size the caller computed while receiving it.
        The file is moved (or uploaded and removed). Durable on return."""
        ...

    def put_bytes(self, data: bytes) -> StoredContent:
        """Store small in-memory content (inline base64 documents). Durable on return."""
        ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int:
        """Size in bytes; raises KeyError if absent."""
        ...

    def iter_chunks(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """The content, streamed; raises KeyError if absent."""
        ...

    def delete(self, key: str) -> None:
        """Remove content (no error if absent)."""
        ...

    def keys_older_than(self, seconds: float) -> Iterator[str]:
        """Content keys last written more than ``seconds`` ago (the orphan sweep's candidates)."""
        ...

    def cleanup_spool(self, older_than_seconds: float) -> int:
        """Remove spool files older than ``older_than_seconds`` (left by crashed requests); returns how many.
        The repository calls it at start-up."""
        ...


def check_key(key: str) -> str:
    """``key`` if it is a content key (40 lower-case hex digits), else ValueError naming it."""
    if not isinstance(key, str) or not _KEY.fullmatch(key):
        raise ValueError(f"content key must be 40 lower-case hex digits (a SHA-1), got {key!r:.80}")
    return key


def is_key(name: str) -> bool:
    """Whether ``name`` is a content key (for listings that may hold other names)."""
    return bool(_KEY.fullmatch(name))


class ReadChunks(Iterator[bytes]):
    """Iterate a readable (file or HTTP body) in chunks of at most ``chunk_size`` bytes, closing it at the end.

    A plain class rather than a generator so that ``close()`` releases the source even when iteration never
    started (a Retrieve response that was abandoned before its first byte).
    """

    def __init__(self, source: IO[bytes], chunk_size: int) -> None:
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        self._source = source
        self._chunk_size = chunk_size

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> bytes:
        chunk = self._source.read(self._chunk_size)
        if not chunk:
            self.close()
            raise StopIteration
        return chunk

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def remove_stale_files(directory: Path, older_than_seconds: float) -> int:
    """Delete regular files in ``directory`` (not recursive) not modified for ``older_than_seconds``."""
    cutoff = time.time() - older_than_seconds
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < cutoff:
                os.unlink(entry.path)
                removed += 1
        except FileNotFoundError:  # removed meanwhile (another process cleaning, or the request finished)
            continue
    return removed


def open_store(url: str) -> DocumentStore:
    """A store from its URL: ``file:///var/lib/xdsi/documents`` (or a plain path) or
    ``s3://bucket/prefix?endpoint_url=http://127.0.0.1:4568&region=us-east-1``."""
    if url.startswith("s3://"):
        from repository.store.s3 import S3Store

        return S3Store.from_url(url)
    from repository.store.filesystem import FileStore

    path = url.removeprefix("file://")
    return FileStore(Path(path))
