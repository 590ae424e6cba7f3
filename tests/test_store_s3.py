"""S3Store against a real S3-compatible server (s3rver over loopback HTTP): round trips, deduplication,
refused keys, the orphan sweep's listing, URL parsing, and a 100 MB document uploaded (multipart) and
streamed back with bounded memory."""

from __future__ import annotations

import functools
import hashlib
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import ClientError

from repository.store import open_store
from repository.store.s3 import S3Store
from tests.s3server import run_s3rver, store_url
from tests.test_store_filesystem import (
    BAD_KEYS,
    MiB,
    PeakRss,
    sha1_of_stream,
    write_random_file,
)


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with run_s3rver() as url:
        yield url


@pytest.fixture(scope="module")
def client(endpoint: str, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One boto3 client for the module (making one costs a few hundred milliseconds), made by open_store."""
    s = open_store(store_url(endpoint, "unused") + f"&spool_dir={tmp_path_factory.mktemp('spool')}")
    assert isinstance(s, S3Store)
    return s.client


@pytest.fixture
def store(client, tmp_path: Path) -> S3Store:  # type: ignore[no-untyped-def]
    """A store in a fresh bucket, under prefix ``documents/xds``, spooling in the test's temp folder."""
    s = S3Store(client, "xdsi-" + uuid.uuid4().hex[:12], "documents/xds", spool_dir=tmp_path / "spool")
    s.ensure_bucket()
    return s


def spool(store: S3Store, data: bytes, name: str = "request.bin") -> tuple[Path, str]:
    path = store.spool_dir / name
    path.write_bytes(data)
    return path, hashlib.sha1(data).hexdigest()


@pytest.fixture
def record_calls(client) -> Iterator[Callable[..., list[str]]]:  # type: ignore[no-untyped-def]
    """``record_calls("PutObject", ...)``: a list filling with the S3 operations the client actually sends
    (botocore's own event hooks), unhooked after the test."""
    hooks: list[tuple[str, Callable[..., None]]] = []

    def record(*operations: str) -> list[str]:
        calls: list[str] = []
        for op in operations:
            hook = functools.partial(lambda op, calls, **_: calls.append(op), op, calls)
            client.meta.events.register(f"before-call.s3.{op}", hook)
            hooks.append((f"before-call.s3.{op}", hook))
        return calls

    yield record
    for event, hook in hooks:
        client.meta.events.unregister(event, hook)


# -- round trips -------------------------------------------------------------------------------------------


def test_put_bytes_round_trip(store: S3Store) -> None:
    data = b"inline document " * 1000
    key = hashlib.sha1(data).hexdigest()
    stored = store.put_bytes(data)
    assert (stored.key, stored.size) == (key, len(data))
    assert store.object_name(key) == f"documents/xds/{key[:2]}/{key}"
    head = store.client.head_object(Bucket=store.bucket, Key=store.object_name(key))
    assert head["Metadata"] == {"sha1": key}
    assert store.exists(key)
    assert store.size(key) == len(data)
    chunks = list(store.iter_chunks(key, chunk_size=4096))
    assert b"".join(chunks) == data
    assert all(len(c) <= 4096 for c in chunks)


def test_put_file_uploads_and_removes_the_spool_file(store: S3Store) -> None:
    data = os.urandom(300_000)
    path, sha1 = spool(store, data)
    assert store.put_file(path, sha1, len(data)).key == sha1
    assert not path.exists()
    assert b"".join(store.iter_chunks(sha1)) == data


def test_multipart_upload_round_trip(store: S3Store, record_calls: Callable[..., list[str]]) -> None:
    small_parts = S3Store(
        store.client, store.bucket, store.prefix, spool_dir=store.spool_dir,
        multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB,  # S3's smallest part size
    )
    calls = record_calls("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload")
    path = small_parts.spool_dir / "multi.part"
    sha1 = write_random_file(path, 12 * MiB + 123)
    small_parts.put_file(path, sha1, 12 * MiB + 123)
    assert sorted(set(calls)) == ["CompleteMultipartUpload", "CreateMultipartUpload", "UploadPart"]
    assert calls.count("UploadPart") == 3
    assert sha1_of_stream(small_parts.iter_chunks(sha1), max_chunk=MiB) == (sha1, 12 * MiB + 123)
    head = store.client.head_object(Bucket=store.bucket, Key=store.object_name(sha1))
    assert head["Metadata"] == {"sha1": sha1}  # not asserting the ETag: s3rver's multipart ETag differs from S3's


# -- deduplication -----------------------------------------------------------------------------------------


def test_same_content_is_uploaded_once(store: S3Store, record_calls: Callable[..., list[str]]) -> None:
    data = b"the same DICOM object submitted twice"
    first = store.put_bytes(data)
    calls = record_calls("PutObject", "CreateMultipartUpload", "HeadObject")
    path, sha1 = spool(store, data)
    assert store.put_file(path, sha1, len(data)) == first
    assert store.put_bytes(data) == first
    assert calls == ["HeadObject", "HeadObject"]  # looked, found, sent nothing
    assert not path.exists()
    listed = store.client.list_objects_v2(Bucket=store.bucket)["Contents"]
    assert [o["Key"] for o in listed] == [store.object_name(first.key)]


def test_damaged_content_is_replaced_by_a_good_copy(store: S3Store) -> None:
    data = b"complete content " * 100
    key = hashlib.sha1(data).hexdigest()
    store.client.put_object(Bucket=store.bucket, Key=store.object_name(key), Body=data[:50])
    assert store.put_bytes(data).size == len(data)
    assert b"".join(store.iter_chunks(key)) == data


# -- failures ----------------------------------------------------------------------------------------------


def test_put_file_checks_the_size_and_leaves_the_file(store: S3Store) -> None:
    path, sha1 = spool(store, b"12345")
    with pytest.raises(ValueError, match="has 5 bytes, expected 6"):
        store.put_file(path, sha1, 6)
    assert path.read_bytes() == b"12345"
    assert not store.exists(sha1)


def test_failed_upload_leaves_the_spool_file(store: S3Store) -> None:
    no_bucket = S3Store(store.client, "xdsi-missing-" + uuid.uuid4().hex[:8], spool_dir=store.spool_dir)
    path, sha1 = spool(store, b"nowhere to go")
    with pytest.raises((ClientError, S3UploadFailedError), match="NoSuchBucket"):
        no_bucket.put_file(path, sha1, len(b"nowhere to go"))
    assert path.exists()  # the caller (or the next start's cleanup_spool) decides


@pytest.mark.parametrize("key", BAD_KEYS)
def test_keys_that_are_not_sha1_hex_are_refused(
    store: S3Store, key: str, record_calls: Callable[..., list[str]]
) -> None:
    path, _ = spool(store, b"x")
    calls = record_calls("HeadObject", "GetObject", "DeleteObject", "PutObject")
    for call in (
        lambda: store.exists(key),
        lambda: store.size(key),
        lambda: store.iter_chunks(key),
        lambda: store.delete(key),
        lambda: store.put_file(path, key, 1),
    ):
        with pytest.raises(ValueError, match="40 lower-case hex"):
            call()
    assert calls == []  # refused before any request
    assert path.exists()


# -- housekeeping ------------------------------------------------------------------------------------------


def test_keys_older_than(store: S3Store) -> None:
    key = store.put_bytes(b"content").key
    # Objects that are not content of this store are never offered for deletion.
    for other in ("documents/other/" + key[:2] + "/" + key, "documents/xds/README", f"documents/xds/ff/{key}"):
        store.client.put_object(Bucket=store.bucket, Key=other, Body=b"not ours")
    assert list(store.keys_older_than(3600)) == []
    time.sleep(1.1)  # LastModified has one-second resolution
    assert list(store.keys_older_than(0)) == [key]


def test_cleanup_spool(store: S3Store) -> None:
    stale = store.spool_dir / "crashed.part"
    stale.write_bytes(b"half")
    old = time.time() - 7200
    os.utime(stale, (old, old))
    fresh = store.spool_dir / "in-flight.part"
    fresh.write_bytes(b"receiving")
    assert store.cleanup_spool(3600) == 1
    assert not stale.exists() and fresh.exists()


# -- URLs --------------------------------------------------------------------------------------------------


def test_from_url(endpoint: str, tmp_path: Path) -> None:
    s = S3Store.from_url(store_url(endpoint, "bucket-a", "/deep/prefix/") + f"&spool_dir={tmp_path}")
    assert (s.bucket, s.prefix, s.spool_dir) == ("bucket-a", "deep/prefix", tmp_path)
    assert s.client.meta.endpoint_url == endpoint
    assert s.client.meta.region_name == "us-east-1"
    assert s.client.meta.config.s3["addressing_style"] == "path"
    s.ensure_bucket()  # the client works: credentials and endpoint from the URL
    assert s.put_bytes(b"via URL").key == hashlib.sha1(b"via URL").hexdigest()


def test_store_without_prefix(client, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bare = S3Store(client, "xdsi-" + uuid.uuid4().hex[:12], spool_dir=tmp_path)
    bare.ensure_bucket()
    key = bare.put_bytes(b"at the top").key
    assert bare.object_name(key) == f"{key[:2]}/{key}"
    assert list(bare.keys_older_than(-60)) == [key]  # a cutoff in the future: every key, no waiting


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3://bucket/p?endpoint=http://x", "unknown S3 store URL parameter"),
        ("s3:///prefix", "not an S3 store URL"),
        ("s3://bucket/p?addressing_style=sideways", "addressing_style"),
    ],
)
def test_bad_urls(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        S3Store.from_url(url)


# -- a large document --------------------------------------------------------------------------------------


def test_100_mb_document_with_bounded_memory(store: S3Store) -> None:
    size = 100 * MiB
    path = store.spool_dir / "large.part"
    sha1 = write_random_file(path, size)
    store.exists("0" * 40)  # connection pool and credentials set up before measuring
    with PeakRss() as rss:
        stored = store.put_file(path, sha1, size)
        digest, total = sha1_of_stream(store.iter_chunks(stored.key), max_chunk=MiB)
    assert (digest, total) == (sha1, size)
    assert not path.exists()
    assert rss.growth < 64 * MiB, f"peak RSS grew by {rss.growth / MiB:.1f} MiB"
