"""The Document Repository end to end over HTTP: ITI-41 (MTOM and inline) -> ITI-42 to a real registry,
ITI-43 byte-exact retrieval, every refusal leaving nothing behind."""

from __future__ import annotations

import hashlib
import os

import httpx
import pytest
from lxml import etree
from sqlalchemy import func, select

from repository import ledger
from tests.conftest import REPOSITORY_UID, start_repository
from xdsi import samples
from xdsi.ebxml.namespaces import RIM, RS, XDSB, q
from xdsi.ebxml.query import find_documents
from xdsi.metadata import vocabulary as v
from conformance.wire import split_multipart
from xdsi.soap.client import call, call_mtom, request_envelope
from xdsi.transform.ebrim_write import write_provide_and_register

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"


def submission(pid: str, content: bytes, **kw):  # type: ignore[no-untyped-def]
    """A one-document submission for ``content`` (hash/size/repositoryUniqueId left for the repository)."""
    sub = samples.imaging_study_submission(pid, manifest=content, **kw)
    de = sub.documents[0]
    de.mime_type, de.format_code = "text/plain", samples.Code("urn:ihe:rad:TEXT", "1.3.6.1.4.1.19376.1.2.3")
    de.hash = de.size = de.repository_unique_id = ""
    return sub


def provide(repo, sub, content: bytes, *, mtom: bool = True, client=None) -> etree._Element:  # type: ignore[no-untyped-def]
    with httpx.Client(timeout=60) as c:
        client = client or c
        doc_id = sub.documents[0].id
        if mtom:
            return call_mtom(repo.url, ITI41, write_provide_and_register(sub, {doc_id: "doc1@test"}),
                             [("doc1@test", "application/octet-stream", content)], client=client)
        return call(repo.url, ITI41, write_provide_and_register(sub, {doc_id: content}), client=client)


def retrieve_request(*unique_ids: str, repository: str = REPOSITORY_UID) -> etree._Element:
    root = etree.Element(q(XDSB, "RetrieveDocumentSetRequest"), nsmap={"xdsb": XDSB})
    for uid in unique_ids:
        dr = etree.SubElement(root, q(XDSB, "DocumentRequest"))
        etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = repository
        etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = uid
    return root


def retrieve(repo, *unique_ids: str, repository: str = REPOSITORY_UID) -> tuple[str, dict[str, bytes], list[str]]:  # type: ignore[no-untyped-def]
    """(status, {uniqueId: bytes}, error codes) of an ITI-43, parsing the MTOM answer byte-exact."""
    data = etree.tostring(request_envelope(retrieve_request(*unique_ids, repository=repository), ITI43, repo.url))
    resp = httpx.post(repo.url, content=data,
                      headers={"Content-Type": f'application/soap+xml; charset=UTF-8; action="{ITI43}"'}, timeout=60)
    assert resp.headers["content-type"].startswith("multipart/related")
    # The conformance runner's splitter, independent of the server's streaming reader/writer.
    root, parts = split_multipart(resp.content, resp.headers["content-type"])
    body = etree.fromstring(root).find("{*}Body")[0]
    status = body.find(q(RS, "RegistryResponse")).get("status")
    docs = {}
    for dr in body.iter(q(XDSB, "DocumentResponse")):
        href = dr.find(f"{q(XDSB, 'Document')}/{{*}}Include").get("href")
        docs[dr.findtext(q(XDSB, "DocumentUniqueId"))] = parts[href[4:]]
    return status, docs, [e.get("errorCode") for e in body.iter(q(RS, "RegistryError"))]


def ledger_rows(repo) -> int:  # type: ignore[no-untyped-def]
    with repo.repo.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(ledger.document)).scalar_one()


def stored_files(repo) -> list[str]:  # type: ignore[no-untyped-def]
    root = repo.repo.store.root / "objects"
    return [f for _, _, files in os.walk(root) for f in files]


def codes(resp: etree._Element) -> list[str]:
    return [e.get("errorCode") for e in resp.iter(q(RS, "RegistryError"))]


@pytest.mark.parametrize("mtom", [True, False], ids=["mtom", "inline"])
def test_provide_register_retrieve(affinity_domain, mtom: bool) -> None:  # type: ignore[no-untyped-def]
    reg, repo = affinity_domain
    pid = samples.patient_id("REPO001")
    reg.feed(pid)
    content = os.urandom(100_000) + b"\r\n"  # trailing CRLF: the classic MTOM truncation bug
    sub = submission(pid, content)
    resp = provide(repo, sub, content, mtom=mtom)
    assert resp.get("status") == v.RESPONSE_SUCCESS, etree.tostring(resp)

    # The registry got hash, size and repositoryUniqueId from the repository.
    found = call(reg.url, ITI18, find_documents(pid))
    [entry] = found.iter(q(RIM, "ExtrinsicObject"))
    slots = {s.get("name"): s.findtext(f"{q(RIM, 'ValueList')}/{q(RIM, 'Value')}") for s in entry.iter(q(RIM, "Slot"))}
    assert slots["hash"] == hashlib.sha1(content).hexdigest()
    assert slots["size"] == str(len(content))
    assert slots["repositoryUniqueId"] == REPOSITORY_UID

    status, docs, errs = retrieve(repo, sub.documents[0].unique_id)
    assert status == v.RESPONSE_SUCCESS and errs == []
    assert docs == {sub.documents[0].unique_id: content}


def test_retrieve_partial_success_and_failure(affinity_domain) -> None:  # type: ignore[no-untyped-def]
    reg, repo = affinity_domain
    pid = samples.patient_id("REPO002")
    reg.feed(pid)
    content = b"first document"
    sub = submission(pid, content)
    assert provide(repo, sub, content).get("status") == v.RESPONSE_SUCCESS
    uid = sub.documents[0].unique_id
    status, docs, errs = retrieve(repo, uid, "2.25.1")
    assert status == v.RESPONSE_PARTIAL_SUCCESS and list(docs) == [uid] and errs == ["XDSDocumentUniqueIdError"]
    status, docs, errs = retrieve(repo, "2.25.1")
    assert status == v.RESPONSE_FAILURE and docs == {} and errs == ["XDSDocumentUniqueIdError"]
    status, docs, errs = retrieve(repo, uid, repository="1.2.3.999")
    assert status == v.RESPONSE_FAILURE and errs == ["XDSUnknownRepositoryId"]


def test_refused_by_registry_leaves_nothing(affinity_domain) -> None:  # type: ignore[no-untyped-def]
    _reg, repo = affinity_domain
    content = b"for a patient the registry does not know"
    resp = provide(repo, submission(samples.patient_id("NOTFED"), content), content)
    assert resp.get("status") == v.RESPONSE_FAILURE
    assert codes(resp) == ["XDSUnknownPatientId"]  # the registry's error, relayed
    assert ledger_rows(repo) == 0 and stored_files(repo) == []


@pytest.mark.parametrize("field, value", [("hash", "0" * 40), ("size", "1")])
def test_hash_or_size_mismatch(affinity_domain, field: str, value: str) -> None:  # type: ignore[no-untyped-def]
    reg, repo = affinity_domain
    pid = samples.patient_id("REPO003")
    reg.feed(pid)
    content = b"some bytes"
    sub = submission(pid, content)
    setattr(sub.documents[0], field, value)
    resp = provide(repo, sub, content)
    assert codes(resp) == ["XDSRepositoryMetadataError"]
    assert field in resp.find(f".//{q(RS, 'RegistryError')}").get("codeContext")
    assert ledger_rows(repo) == 0 and stored_files(repo) == []


def test_document_and_metadata_must_match(affinity_domain) -> None:  # type: ignore[no-untyped-def]
    reg, repo = affinity_domain
    pid = samples.patient_id("REPO004")
    reg.feed(pid)
    sub = submission(pid, b"x")
    with httpx.Client(timeout=30) as client:
        no_doc = call(repo.url, ITI41, write_provide_and_register(sub, {}), client=client)
        assert codes(no_doc) == ["XDSMissingDocument"]
        extra = call(repo.url, ITI41, write_provide_and_register(sub, {sub.documents[0].id: b"x", "Other": b"y"}),
                     client=client)
        assert codes(extra) == ["XDSMissingDocumentMetadata"]


def test_registry_down_gives_clear_error_and_nothing_kept(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with start_repository("http://127.0.0.1:9/registry", tmp_path) as repo:
        content = b"nobody to register with"
        resp = provide(repo, submission(samples.patient_id("REPO005"), content), content)
        assert codes(resp) == ["XDSRegistryNotAvailable"]
        assert ledger_rows(repo) == 0 and stored_files(repo) == []


def test_retry_of_a_registered_submission_succeeds_once(affinity_domain) -> None:  # type: ignore[no-untyped-def]
    reg, repo = affinity_domain
    pid = samples.patient_id("REPO006")
    reg.feed(pid)
    content = b"sent twice"
    sub = submission(pid, content)
    assert provide(repo, sub, content).get("status") == v.RESPONSE_SUCCESS
    again = provide(repo, sub, content)
    assert again.get("status") == v.RESPONSE_SUCCESS, etree.tostring(again)
    assert len(list(call(reg.url, ITI18, find_documents(pid)).iter(q(RIM, "ExtrinsicObject")))) == 1
    other = b"same uniqueId, other bytes"
    changed = provide(repo, sub, other)
    assert codes(changed) == ["XDSNonIdenticalHash"]


def test_same_content_in_two_documents_is_stored_once(affinity_domain) -> None:  # type: ignore[no-untyped-def]
    reg, repo = affinity_domain
    pid = samples.patient_id("REPO007")
    reg.feed(pid)
    content = b"identical bytes"
    subs = [submission(pid, content) for _ in range(2)]
    for sub in subs:
        assert provide(repo, sub, content).get("status") == v.RESPONSE_SUCCESS
    assert ledger_rows(repo) == 2 and len(stored_files(repo)) == 1
    _, docs, _ = retrieve(repo, *(s.documents[0].unique_id for s in subs))
    assert list(docs.values()) == [content, content]


def test_wsdl_is_served(affinity_domain) -> None:  # type: ignore[no-untyped-def]
    _reg, repo = affinity_domain
    resp = httpx.get(repo.url + "?wsdl")
    assert resp.status_code == 200 and b"ProvideAndRegisterDocumentSet-b" in resp.content
