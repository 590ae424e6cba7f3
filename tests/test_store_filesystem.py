"""FileStore on a real filesystem: round trips, deduplication, the durability steps, refused keys, the orphan
sweep's listing, spool hygiene, and a 200 MB document moved and streamed with bounded memory."""

from __future__ import annotations

import errno
import gc
import hashlib
import os
import threading
import time
from pathlib import Path
from typing import Self

import pytest

from repository.store import filesystem, open_store
from repository.store.filesystem import FileStore

MiB = 1 << 20

BAD_KEYS = [
    "../../../../etc/passwd",
    "ab/../../../../../etc/hostname",
    "A" * 40,  # upper case would alias the lower-case key
    "0" * 39,
    "0" * 41,
    "g" * 40,
    "/" + "0" * 39,
    "0" * 38 + "/.",
    "٠" * 40,  # Arabic-Indic digits: str.isdigit() says yes, we say no
    "",
]


# -- helpers shared with test_store_s3 ---------------------------------------------------------------------


def write_random_file(path: Path, size: int, chunk: int = MiB) -> str:
    """Write ``size`` bytes of distinct-per-run data to ``path`` one chunk at a time (never the whole in
    memory); return its SHA-1 hex, computed while writing as the repository does while spooling."""
    block = bytearray(os.urandom(chunk))
    digest = hashlib.sha1()
    with open(path, "wb") as f:
        written = 0
        index = 0
        while written < size:
            block[:8] = index.to_bytes(8, "little")  # no two chunks alike
            piece = block[: min(chunk, size - written)]
            digest.update(piece)
            f.write(piece)
            written += len(piece)
            index += 1
    return digest.hexdigest()


def sha1_of_stream(chunks, max_chunk: int) -> tuple[str, int]:  # type: ignore[no-untyped-def]
    digest = hashlib.sha1()
    total = 0
    for chunk in chunks:
        assert 0 < len(chunk) <= max_chunk
        digest.update(chunk)
        total += len(chunk)
    return digest.hexdigest(), total


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")


class PeakRss:
    """Peak resident-set growth of this process over a block: ``echo 5 > /proc/self/clear_refs`` resets the
    high-water mark VmHWM to the current RSS, which is read back afterwards."""

    def __enter__(self) -> Self:
        gc.collect()
        Path("/proc/self/clear_refs").write_text("5")
        self.base = _status_kib("VmRSS")
        return self

    def __exit__(self, *exc: object) -> None:
        self.growth = (_status_kib("VmHWM") - self.base) * 1024


def files_under(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file())


# -- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path / "documents")


def spool(store: FileStore, data: bytes, name: str = "request.bin") -> tuple[Path, str]:
    path = store.spool_dir / name
    path.write_bytes(data)
    return path, hashlib.sha1(data).hexdigest()


# -- round trips -------------------------------------------------------------------------------------------


def test_put_bytes_round_trip_in_sharded_folders(store: FileStore) -> None:
    data = b"%PDF-1.4 inline document\n" * 1000
    stored = store.put_bytes(data)
    key = hashlib.sha1(data).hexdigest()
    assert (stored.key, stored.size) == (key, len(data))
    assert store.path_of(key) == store.root / "objects" / key[:2] / key[2:4] / key
    assert store.path_of(key).read_bytes() == data
    assert store.exists(key)
    assert store.size(key) == len(data)
    chunks = list(store.iter_chunks(key, chunk_size=4096))
    assert b"".join(chunks) == data
    assert all(len(c) == 4096 for c in chunks[:-1])
    assert files_under(store.spool_dir) == []  # the temp file became the object


def test_put_file_moves_the_spooled_file_without_copying(store: FileStore) -> None:
    path, sha1 = spool(store, os.urandom(300_000))
    inode = os.stat(path).st_ino
    stored = store.put_file(path, sha1, 300_000)
    assert stored.key == sha1 and stored.size == 300_000
    assert not path.exists()
    assert os.stat(store.path_of(sha1)).st_ino == inode  # renamed, not copied
    assert hashlib.sha1(store.path_of(sha1).read_bytes()).hexdigest() == sha1


def test_delete_removes_the_file(store: FileStore) -> None:
    key = store.put_bytes(b"to be deleted").key
    store.delete(key)
    assert not store.path_of(key).exists()


def test_iter_chunks_can_be_closed_before_reading(store: FileStore) -> None:
    key = store.put_bytes(b"x" * 10).key
    fds_before = len(os.listdir("/proc/self/fd"))
    chunks = store.iter_chunks(key)
    assert len(os.listdir("/proc/self/fd")) == fds_before + 1
    chunks.close()  # type: ignore[attr-defined]
    assert len(os.listdir("/proc/self/fd")) == fds_before


# -- deduplication -----------------------------------------------------------------------------------------


def test_same_content_is_stored_once(store: FileStore) -> None:
    data = b"the same DICOM object submitted twice"
    first = store.put_bytes(data)
    old = time.time() - 86_400
    os.utime(store.path_of(first.key), (old, old))
    path, sha1 = spool(store, data)
    again = store.put_file(path, sha1, len(data))
    assert again == first
    assert not path.exists()  # the duplicate spool file is gone
    assert files_under(store.root / "objects") == [store.path_of(first.key)]
    # Re-submitted content counts as freshly written: the orphan sweep must not take it for stale.
    assert os.stat(store.path_of(first.key)).st_mtime > old + 3600
    assert list(store.keys_older_than(3600)) == []
    assert store.put_bytes(data) == first


def test_damaged_content_is_replaced_by_a_good_copy(store: FileStore) -> None:
    data = b"complete content " * 100
    key = hashlib.sha1(data).hexdigest()
    damaged = store.path_of(key)
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(data[:50])  # e.g. restored from a bad backup
    assert store.put_bytes(data).size == len(data)
    assert damaged.read_bytes() == data


def test_concurrent_puts_leave_only_complete_objects(store: FileStore) -> None:
    contents = [os.urandom(200_000) for _ in range(4)]
    errors: list[BaseException] = []

    def submit(worker: int) -> None:
        try:
            for round_ in range(5):
                data = contents[(worker + round_) % len(contents)]
                if worker % 2:
                    store.put_bytes(data)
                else:
                    path, sha1 = spool(store, data, f"w{worker}-{round_}.bin")
                    store.put_file(path, sha1, len(data))
        except BaseException as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    threads = [threading.Thread(target=submit, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    objects = files_under(store.root / "objects")
    assert sorted(p.name for p in objects) == sorted(hashlib.sha1(c).hexdigest() for c in contents)
    for p in objects:
        assert hashlib.sha1(p.read_bytes()).hexdigest() == p.name
    assert files_under(store.spool_dir) == []


# -- durability --------------------------------------------------------------------------------------------


def test_durability_steps(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """File fsynced before it is renamed into place; then its folder and every folder the put created."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        real_replace(src, dst)
        events.append(("replace", str(dst)))

    monkeypatch.setattr(filesystem.os, "fsync", fsync)
    monkeypatch.setattr(filesystem.os, "replace", replace)
    path, sha1 = spool(store, b"durable bytes")
    store.put_file(path, sha1, len(b"durable bytes"))
    dest = store.path_of(sha1)
    objects = store.root / "objects"
    assert events == [
        ("fsync", str(path)),  # content on disk before its name appears
        ("replace", str(dest)),
        ("fsync", str(dest.parent)),  # the rename itself
        ("fsync", str(objects)),  # the new folder objects/ab
        ("fsync", str(objects / sha1[:2])),  # the new folder objects/ab/cd
    ]


def test_failed_put_leaves_neither_object_nor_temp_file(store: FileStore, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_replace(src: object, dst: object) -> None:
        raise OSError(errno.EIO, "simulated I/O error")

    monkeypatch.setattr(filesystem.os, "replace", failing_replace)
    with pytest.raises(OSError, match="simulated"):
        store.put_bytes(b"never stored")
    assert files_under(store.root / "objects") == []
    assert files_under(store.spool_dir) == []


def test_put_file_checks_the_size_and_leaves_the_file(store: FileStore) -> None:
    path, sha1 = spool(store, b"12345")
    with pytest.raises(ValueError, match="has 5 bytes, expected 6"):
        store.put_file(path, sha1, 6)
    assert path.read_bytes() == b"12345"
    assert not store.exists(sha1)


def test_put_file_from_another_filesystem(store: FileStore) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(store.root).st_dev:
        pytest.skip("no second filesystem (/dev/shm) to spool on")
    data = os.urandom(100_000)
    path = shm / f"xdsi-test-{os.getpid()}.bin"
    path.write_bytes(data)
    try:
        stored = store.put_file(path, hashlib.sha1(data).hexdigest(), len(data))
    finally:
        path.unlink(missing_ok=True)
    assert store.path_of(stored.key).read_bytes() == data
    assert not path.exists()
    assert files_under(store.spool_dir) == []


# -- refused keys ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_are_not_sha1_hex_are_refused(store: FileStore, key: str, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"keep me")
    path = store.spool_dir / "x.bin"
    path.write_bytes(b"x")
    for call in (
        lambda: store.exists(key),
        lambda: store.size(key),
        lambda: store.iter_chunks(key),
        lambda: store.delete(key),
        lambda: store.put_file(path, key, 1),
    ):
        with pytest.raises(ValueError, match="40 lower-case hex"):
            call()
    assert path.exists() and victim.read_bytes() == b"keep me"
    assert files_under(store.root / "objects") == []


# -- housekeeping ------------------------------------------------------------------------------------------


def test_keys_older_than(store: FileStore) -> None:
    old_key = store.put_bytes(b"old").key
    new_key = store.put_bytes(b"new").key
    old = time.time() - 7200
    os.utime(store.path_of(old_key), (old, old))
    # Strays in the tree (not named like content) are never offered for deletion.
    stray = store.path_of(old_key).parent / "notes.txt"
    stray.write_text("x")
    os.utime(stray, (old, old))
    assert list(store.keys_older_than(3600)) == [old_key]
    assert sorted(store.keys_older_than(-60)) == sorted([old_key, new_key])
    assert list(FileStore(store.root.parent / "empty").keys_older_than(0)) == []


def test_cleanup_spool_removes_only_stale_files(store: FileStore) -> None:
    stale = store.spool_dir / "crashed-request.part"
    stale.write_bytes(b"half a document")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = store.spool_dir / "in-flight.part"
    fresh.write_bytes(b"being received")
    assert store.cleanup_spool(3600) == 1
    assert not stale.exists() and fresh.exists()
    assert store.cleanup_spool(3600) == 0


def test_open_store_file_url_and_path(tmp_path: Path) -> None:
    by_url = open_store(f"file://{tmp_path / 'a'}")
    by_path = open_store(str(tmp_path / "b"))
    assert isinstance(by_url, FileStore) and by_url.root == tmp_path / "a"
    assert isinstance(by_path, FileStore) and by_path.root == tmp_path / "b"
    assert by_url.spool_dir == tmp_path / "a" / "spool" and by_url.spool_dir.is_dir()


# -- a large document --------------------------------------------------------------------------------------


def test_200_mb_document_with_bounded_memory(store: FileStore) -> None:
    size = 200 * MiB
    path = store.spool_dir / "large.part"
    sha1 = write_random_file(path, size)
    with PeakRss() as rss:
        stored = store.put_file(path, sha1, size)
        digest, total = sha1_of_stream(store.iter_chunks(stored.key), max_chunk=MiB)
    assert (digest, total) == (sha1, size)
    assert store.size(sha1) == size
    assert rss.growth < 64 * MiB, f"peak RSS grew by {rss.growth / MiB:.1f} MiB"
    store.delete(sha1)
