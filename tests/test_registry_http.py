"""The registry over real HTTP: the WSDL, bad and hostile requests (a clear answer, never a 500), MTOM
requests, and an ITI-42 -> ITI-18 round trip. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.conftest import start_registry
from xdsi import samples
from xdsi.ebxml.namespaces import RIM, RS, SOAP12, q
from xdsi.ebxml.query import adhoc_query, find_documents, quote
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import request_envelope
from xdsi.transform.ebrim_write import write_submission

ITI42 = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"


def post(reg, body: etree._Element | bytes, action: str, *, content_type: str | None = None) -> httpx.Response:
    data = body if isinstance(body, bytes) else etree.tostring(request_envelope(body, action, reg.url))
    ctype = content_type or f'application/soap+xml; charset=UTF-8; action="{action}"'
    return httpx.post(reg.url, content=data, headers={"Content-Type": ctype}, timeout=30)


def body(resp: httpx.Response) -> etree._Element:
    env = etree.fromstring(resp.content)
    return env.find(q(SOAP12, "Body"))[0]


def errors(el: etree._Element) -> list[tuple[str, str]]:
    return [(e.get("errorCode"), e.get("codeContext")) for e in el.iter(q(RS, "RegistryError"))]


def test_register_then_find_documents(registry_server) -> None:  # type: ignore[no-untyped-def]
    pid = samples.patient_id("HTTP001")
    registry_server.feed(pid)
    subs = [samples.imaging_study_submission(pid, modality=m) for m in ("CT", "MR")]
    for sub in subs:
        resp = post(registry_server, write_submission(sub), ITI42)
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/soap+xml")
        assert body(resp).get("status") == v.RESPONSE_SUCCESS, resp.text
    resp = post(registry_server, find_documents(pid), ITI18)
    result = body(resp)
    assert result.get("status") == v.RESPONSE_SUCCESS
    found = {ei.get("value") for ei in result.iter(q(RIM, "ExternalIdentifier"))
             if ei.get("identificationScheme") == v.DE_UNIQUE_ID}
    assert found == {s.documents[0].unique_id for s in subs}
    # The event code filter (modality) narrows to one study.
    mr = find_documents(pid, XDSDocumentEntryEventCodeList="('MR^^1.2.840.10008.2.16.4')", return_type="ObjectRef")
    refs = body(post(registry_server, mr, ITI18)).findall(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ObjectRef')}")
    assert len(refs) == 1


def test_wsdl_is_served(registry_server) -> None:  # type: ignore[no-untyped-def]
    resp = httpx.get(registry_server.url + "?wsdl")
    assert resp.status_code == 200
    wsdl = etree.fromstring(resp.content)
    actions = {el.get("{http://www.w3.org/2007/05/addressing/metadata}Action") for el in wsdl.iter()}
    assert {ITI42, ITI18} <= actions


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_register_with_unknown_patient_names_it(registry_server) -> None:  # type: ignore[no-untyped-def]
    sub = samples.imaging_study_submission(samples.patient_id("NOTFED"))
    result = body(post(registry_server, write_submission(sub), ITI42))
    assert result.get("status") == v.RESPONSE_FAILURE
    [(code, text)] = errors(result)
    assert code == "XDSUnknownPatientId" and "NOTFED" in text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    "payload, action, expect",
    [
        (b"<not xml", ITI42, "fault"),
        (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><x>&e;</x>', ITI42, "fault"),
        (b"", ITI42, "fault"),
        ("wrong-body", ITI42, "registry-error"),  # an AdhocQueryRequest sent as ITI-42
        ("wrong-body", ITI18, "registry-error"),  # a SubmitObjectsRequest sent as ITI-18
        ("unknown-action", "urn:example:Nope", "fault"),
    ],
)
def test_bad_requests_get_clear_answers(registry_server, payload, action, expect) -> None:  # type: ignore[no-untyped-def]
    if payload == "wrong-body":
        if action == ITI42:
            payload = etree.tostring(request_envelope(find_documents("X^^^&1.2&ISO"), action, registry_server.url))
        else:
            sub = write_submission(samples.imaging_study_submission(samples.patient_id("X")))
            payload = etree.tostring(request_envelope(sub, action, registry_server.url))
    elif payload == "unknown-action":
        payload = etree.tostring(request_envelope(find_documents("X^^^&1.2&ISO"), action, registry_server.url))
    resp = post(registry_server, payload, action)
    assert resp.status_code != 500
    assert resp.headers["content-type"].startswith("application/soap+xml")
    result = body(resp)
    if expect == "fault":
        assert result.tag == q(SOAP12, "Fault")
        assert resp.status_code in (400, 413, 415)
    else:
        assert result.get("status", "").endswith(":Failure")
        assert errors(result), resp.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_stored_query_errors(registry_server) -> None:  # type: ignore[no-untyped-def]
    unknown = adhoc_query("urn:uuid:00000000-0000-0000-0000-000000000000", {})
    assert errors(body(post(registry_server, unknown, ITI18)))[0][0] == "XDSUnknownStoredQuery"
    missing = adhoc_query(v.SQ_FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": quote("P^^^&1.2&ISO")})
    codes = [c for c, _ in errors(body(post(registry_server, missing, ITI18)))]
    assert codes == ["XDSStoredQueryMissingParam"]
    two = adhoc_query(v.SQ_FIND_DOCUMENTS, {"$XDSDocumentEntryPatientId": [quote("A^^^&1.2&ISO"), quote("B^^^&1.2&ISO")],
                                            "$XDSDocumentEntryStatus": f"('{v.STATUS_APPROVED}')"})
    [(code, text)] = errors(body(post(registry_server, two, ITI18)))
    assert code == "XDSStoredQueryParamNumber" and "$XDSDocumentEntryPatientId" in text


def test_too_many_results(tmp_path) -> None:  # type: ignore[no-untyped-def]
    pid = samples.patient_id("MANY001")
    with start_registry(f"sqlite:///{tmp_path / 'r.db'}", max_results=2) as reg:
        reg.feed(pid)
        for _ in range(3):
            assert body(post(reg, write_submission(samples.imaging_study_submission(pid)), ITI42)).get(
                "status") == v.RESPONSE_SUCCESS
        result = body(post(reg, find_documents(pid), ITI18))
        assert result.get("status") == v.RESPONSE_FAILURE
        assert [c for c, _ in errors(result)] == ["XDSTooManyResults"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_mutated_submissions_never_crash(registry_server) -> None:  # type: ignore[no-untyped-def]
    """Fuzz: a valid submission with attributes and texts replaced by random strings gets a SOAP answer
    (Success or a RegistryResponse with errors), never a 500 or a half-registered submission."""
    pid = samples.patient_id("FUZZ001")
    registry_server.feed(pid)
    template = etree.tostring(write_submission(samples.imaging_study_submission(pid)))
    n_nodes = len(list(etree.fromstring(template).iter()))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.integers(0, n_nodes - 1), st.sampled_from(["text", "attr", "drop"]),
           st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
    def run(index: int, how: str, junk: str) -> None:
        root = etree.fromstring(template)
        el = list(root.iter())[index]
        if how == "text":
            el.text = junk
        elif how == "attr" and el.attrib:
            el.set(sorted(el.attrib)[0], junk)
        elif how == "drop" and el.getparent() is not None:
            el.getparent().remove(el)
        resp = post(registry_server, root, ITI42)
        assert resp.status_code in (200, 400), resp.text
        result = body(resp)
        if result.tag != q(SOAP12, "Fault"):
            status = result.get("status")
            assert status in (v.RESPONSE_SUCCESS, v.RESPONSE_FAILURE)
            if status == v.RESPONSE_FAILURE:
                assert all(code and text for code, text in errors(result))

    run()
