"""The Document Repository with its documents in S3 (a real s3rver over loopback HTTP), end to end: ITI-41
(MTOM) -> object in the bucket -> ITI-42 to a real registry -> ITI-43 byte-exact; a registry refusal leaves no
object behind; identical content is stored once; a missing bucket is a clear start-up error."""

from __future__ import annotations

import asyncio
import hashlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from repository.app import Repository, RepositoryConfig
from repository.store import StoreUnavailable
from repository.store.s3 import S3Store
from tests.conftest import REPOSITORY_UID, start_registry, start_repository
from tests.s3server import run_s3rver, store_url
from tests.test_repository import (
    ITI41,
    ITI43,
    codes,
    ledger_rows,
    provide,
    retrieve,
    retrieve_request,
    submission,
)
from tests.test_repository_crash import MiB, registered_unique_ids, write_random_file
from xdsi import samples
from xdsi.cli import build_parser
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import call_mtom, call_streaming
from xdsi.transform.ebrim_write import write_provide_and_register

BUCKET = "xdsi-repository"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with run_s3rver(BUCKET) as url:
        yield url


@pytest.fixture
def domain(endpoint: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A registry and a repository storing under a fresh prefix of the bucket (spooling in tmp_path)."""
    prefix = "documents/" + uuid.uuid4().hex[:8]
    url = store_url(endpoint, BUCKET, prefix) + f"&spool_dir={tmp_path / 'spool'}"
    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}") as reg, \
            start_repository(reg.url, tmp_path / "repository", store_url=url) as repo:
        assert isinstance(repo.repo.store, S3Store)
        yield reg, repo


def objects(repo) -> list[str]:  # type: ignore[no-untyped-def]
    """Object names under the repository's prefix, from the S3 server itself."""
    store: S3Store = repo.repo.store
    listing = store.client.list_objects_v2(Bucket=store.bucket, Prefix=store.prefix + "/")
    return sorted(o["Key"] for o in listing.get("Contents", ()))


def test_provide_and_retrieve_byte_exact(domain) -> None:  # type: ignore[no-untyped-def]
    reg, repo = domain
    pid = samples.patient_id("S3REPO001")
    reg.feed(pid)
    content = b"\r\n" + os.urandom(100_000) + b"\r\n"
    sub = submission(pid, content)
    uid = sub.documents[0].unique_id
    resp = provide(repo, sub, content)
    assert resp.get("status") == v.RESPONSE_SUCCESS, codes(resp)
    sha1 = hashlib.sha1(content).hexdigest()
    assert objects(repo) == [f"{repo.repo.store.prefix}/{sha1[:2]}/{sha1}"]
    assert registered_unique_ids(reg.url, pid) == [uid]
    status, docs, errors = retrieve(repo, uid)
    assert (status, errors) == (v.RESPONSE_SUCCESS, []) and docs == {uid: content}
    assert list((repo.repo.store.spool_dir).iterdir()) == []


def test_large_document_goes_multipart_and_streams_back(domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Over the store's multipart threshold (16 MiB): uploaded in parts from the spool, streamed back."""
    reg, repo = domain
    pid = samples.patient_id("S3REPO002")
    reg.feed(pid)
    size = 24 * MiB + 5
    big = tmp_path / "big.bin"
    sha1 = write_random_file(big, size, seed=2)
    sub = submission(pid, b"")
    uid = sub.documents[0].unique_id
    with httpx.Client(timeout=120, trust_env=False) as http:
        resp = call_mtom(repo.url, ITI41,
                         write_provide_and_register(sub, {sub.documents[0].id: "big@s3"}),
                         [("big@s3", "application/octet-stream", big)], client=http)
    assert resp.get("status") == v.RESPONSE_SUCCESS, codes(resp)
    store: S3Store = repo.repo.store
    head = store.client.head_object(Bucket=store.bucket, Key=store.object_name(sha1))
    assert head["ContentLength"] == size and head["Metadata"]["sha1"] == sha1
    body, parts = asyncio.run(call_streaming(repo.url, ITI43, retrieve_request(uid), spool_dir=str(tmp_path)))
    try:
        assert body.find("{*}RegistryResponse").get("status") == v.RESPONSE_SUCCESS
        [part] = parts.values()
        assert (part.sha1, part.size) == (sha1, size)
    finally:
        for part in parts.values():
            part.delete()


def test_refused_by_registry_deletes_the_object(domain) -> None:  # type: ignore[no-untyped-def]
    _reg, repo = domain
    content = b"for a patient the registry does not know"
    resp = provide(repo, submission(samples.patient_id("S3NOTFED"), content), content)
    assert resp.get("status") == v.RESPONSE_FAILURE
    assert codes(resp) == ["XDSUnknownPatientId"]
    assert objects(repo) == [] and ledger_rows(repo) == 0
    assert list(repo.repo.store.spool_dir.iterdir()) == []


def test_identical_content_is_one_object_and_a_retry_registers_once(domain) -> None:  # type: ignore[no-untyped-def]
    reg, repo = domain
    pid = samples.patient_id("S3REPO003")
    reg.feed(pid)
    content = b"identical bytes\r\n"
    subs = [submission(pid, content) for _ in range(2)]
    for sub in subs:
        assert provide(repo, sub, content).get("status") == v.RESPONSE_SUCCESS
    again = provide(repo, subs[0], content)  # the submitter lost our answer and sends again
    assert again.get("status") == v.RESPONSE_SUCCESS, codes(again)
    uids = [s.documents[0].unique_id for s in subs]
    assert sorted(registered_unique_ids(reg.url, pid)) == sorted(uids)
    assert ledger_rows(repo) == 2 and len(objects(repo)) == 1
    status, docs, _ = retrieve(repo, *uids)
    assert status == v.RESPONSE_SUCCESS and docs == {uid: content for uid in uids}
    # A refused document sharing the content must not take the other documents' object with it.
    refused = submission(samples.patient_id("S3NOTFED2"), content)
    assert codes(provide(repo, refused, content)) == ["XDSUnknownPatientId"]
    assert len(objects(repo)) == 1
    assert retrieve(repo, uids[0])[1] == {uids[0]: content}


def test_missing_bucket_is_a_clear_start_up_error(endpoint: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    url = store_url(endpoint, "no-such-bucket", "documents") + f"&spool_dir={tmp_path / 'spool'}"
    config = RepositoryConfig(registry_url="http://127.0.0.1:9/registry", repository_unique_id=REPOSITORY_UID,
                              store_url=url, db_url=f"sqlite:///{tmp_path / 'ledger.db'}")
    with pytest.raises(StoreUnavailable, match="'no-such-bucket'.*does not exist"):
        Repository(config)
    # The command says it in one line and exits 2 (no traceback, no server started).
    args = build_parser().parse_args(["repository", "--registry", config.registry_url, "--repository-id",
                                      REPOSITORY_UID, "--store", url, "--db", config.db_url, "--port", "9"])
    assert args.func(args) == 2
    err = capsys.readouterr().err
    assert "no-such-bucket" in err and "does not exist" in err and "Traceback" not in err
    # Nothing created it behind our back.
    store = S3Store.from_url(url)
    assert "no-such-bucket" not in [b["Name"] for b in store.client.list_buckets()["Buckets"]]
