"""What every document store promises (:class:`repository.store.base.DocumentStore`), checked against
each backend: the filesystem store and the S3 store on a real s3rver."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from repository.store import DocumentStore, open_store
from repository.store.filesystem import FileStore
from repository.store.s3 import S3Store


@pytest.fixture(scope="module")
def s3_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from tests.s3server import run_s3rver, store_url

    with run_s3rver() as endpoint:
        s = open_store(store_url(endpoint, "unused") + f"&spool_dir={tmp_path_factory.mktemp('spool')}")
        assert isinstance(s, S3Store)
        yield s.client


@pytest.fixture(params=["filesystem", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> DocumentStore:
    if request.param == "filesystem":
        return FileStore(tmp_path / "store")
    s = S3Store(request.getfixturevalue("s3_client"), "xdsi-" + uuid.uuid4().hex[:12], "documents",
                spool_dir=tmp_path / "spool")
    s.ensure_bucket()
    return s


def test_empty_document(store: DocumentStore) -> None:
    stored = store.put_bytes(b"")
    assert stored.key == hashlib.sha1(b"").hexdigest() and stored.size == 0
    assert store.size(stored.key) == 0
    assert list(store.iter_chunks(stored.key)) == []


def test_missing_content(store: DocumentStore) -> None:
    key = "0" * 40
    assert not store.exists(key)
    with pytest.raises(KeyError):
        store.size(key)
    with pytest.raises(KeyError):  # raised by the call itself, before any iteration
        store.iter_chunks(key)
    store.delete(key)  # no error


def test_delete(store: DocumentStore) -> None:
    key = store.put_bytes(b"to be deleted").key
    store.delete(key)
    assert not store.exists(key)
    store.delete(key)  # deleting twice is no error
