"""The conformance runner's parts: case loading/ordering, judging, contents checks, SOAP/MTOM wire, JUnit, feed.

The real end-to-end conformance run against the Registry lives elsewhere; here the HTTP plumbing is exercised
against a tiny Starlette app (see ``fake_actor``).
"""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import socket
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from lxml import etree
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from conformance import cli
from conformance.cases import Case, load_cases, parse_expected_contents, requirement_key, run_order, static_skips
from conformance.check import check_contents, judge
from conformance.patients import ack_code, patients_to_register, register_patients
from conformance.report import FAIL, PASS, SKIP, CaseResult, RunResult, junit_xml, text_report
from xdsi.soap.client import ANONYMOUS
from conformance.wire import (ACTIONS, SoapResponse, encode, envelope, load_message, parse_response,
                              split_multipart)
from xdsi.ebxml.namespaces import LCM, QUERY, RIM, RS, SOAP12, WSA, XDSB, XOP, q
from xdsi.metadata import vocabulary as v

from tests.conftest import SHARED, need

MESSAGES = SHARED / "messages"


@pytest.fixture
def shared_messages() -> Path:
    need(MESSAGES.is_dir(), f"conformance data not found at {MESSAGES}")
    return MESSAGES


def make_case(status="Success", codes=(), contents=(), transaction="ITI-42", name="x.xml") -> Case:
    return Case(file=Path(transaction.lower().replace("-", "")) / name, transaction=transaction,
                expected_status=status, expected_error_codes=list(codes), what_it_tests="hand-written",
                expected_contents=list(contents))


def xml(text: str) -> etree._Element:
    return etree.fromstring(text.strip())


def answer(text: str, status: int = 200) -> SoapResponse:
    return SoapResponse(status, xml(text))


NS = f'xmlns:rs="{RS}" xmlns:rim="{RIM}" xmlns:query="{QUERY}" xmlns:xdsb="{XDSB}"'
SUCCESS, FAILURE = v.RESPONSE_SUCCESS, v.RESPONSE_FAILURE


def registry_response(status: str, *errors: tuple[str, str | None]) -> str:
    """A RegistryResponse with (errorCode, severity or None for the default)."""
    items = "".join(f'<rs:RegistryError errorCode="{c}" codeContext="x"'
                    + (f' severity="{s}"' if s else "") + "/>" for c, s in errors)
    body = f"<rs:RegistryErrorList>{items}</rs:RegistryErrorList>" if errors else ""
    return f'<rs:RegistryResponse {NS} status="{status}">{body}</rs:RegistryResponse>'


# --- cases: loading and ordering on the shared data ----------------------------------------------------


def test_load_cases_reads_index_and_sequence(shared_messages):
    cases = {c.key: c for c in load_cases(shared_messages)}
    assert len(cases) == 414
    c = cases["iti18/nist11992_doc-replace-rplc_03_eval_validate_deprecate.xml"]
    assert (c.transaction, c.expected_status, c.group, c.step, c.mode) == ("ITI-18", "Success", "nist11992", 3, "live")
    assert c.expected_contents == ["SSwithOneDoc", "DocDep"]
    assert [requirement_key(r) for r in c.requires] == ["iti42/nist11992_doc-replace-rplc_01_submit.xml"]
    assert c.file.is_file()
    rejected = cases["iti62/nist30000_delete-unknown-object_01_remove_remove_target.xml"]
    assert rejected.expected_error_codes == ["UnresolvedReferenceException"]
    assert sum(c.mode == "validate-only" for c in cases.values()) == 9


def test_run_order_fixtures_first_steps_ascending_requirements_before(shared_messages):
    ordered = run_order(load_cases(shared_messages))
    fixtures = [c.group for c in ordered[:10]]
    assert fixtures == ["nist12346"] * 5 + ["nist12374"] * 5
    position = {c.key: i for i, c in enumerate(ordered)}
    for i, c in enumerate(ordered):
        for req in c.requires:
            assert position[requirement_key(req)] < i, (c.key, req)
    last_step: dict[str, int] = {}
    for c in ordered:  # a group's steps are consecutive and ascending, across transaction folders
        assert c.step >= last_step.get(c.group, 0)
        last_step[c.group] = c.step
    spans: dict[str, list[int]] = {}
    for i, c in enumerate(ordered):
        spans.setdefault(c.group, []).append(i)
    assert all(idx[-1] - idx[0] + 1 == len(idx) for idx in spans.values())  # groups are not interleaved


def test_unselected_transaction_skips_later_steps_as_needs(shared_messages):
    ordered = run_order(load_cases(shared_messages))
    skips = static_skips(ordered, {"ITI-42", "ITI-18"})
    by_step = {c.step: c.key for c in ordered if c.group == "nist15800"}
    assert by_step[1] not in skips  # the ITI-42 original runs
    assert skips[by_step[2]] == "ITI-57 not selected"
    assert skips[by_step[3]] == "needs ITI-57"  # the query that checks the update
    assert skips["iti57/ipf_update_reject_same-lid-twice.xml"] == "validate-only"
    # ITI-43 of nist12021 is not selected; its earlier ITI-41 step is the blocker of the ITI-18 step after it
    assert skips["iti18/nist12021_retrieve-two-docs_02_query_by_uid.xml"] == "needs ITI-41"


def test_expected_contents_parsing():
    assert parse_expected_contents("Query | expected contents: Documents count=2; ObjectRefs count=1") == [
        "Documents count=2", "ObjectRefs count=1"]
    assert parse_expected_contents("no vocabulary here") == []


# --- judging status and error codes -----------------------------------------------------------------------


@pytest.mark.parametrize("case, response, passed", [
    (make_case("Success"), registry_response(SUCCESS), True),
    (make_case("Success"), registry_response(SUCCESS, ("XDSExtraMetadataNotSaved", v.SEVERITY_WARNING)), True),
    (make_case("Success"), registry_response(SUCCESS, ("XDSRegistryError", v.SEVERITY_ERROR)), False),
    (make_case("Success"), registry_response(FAILURE, ("XDSRegistryError", None)), False),
    (make_case("Failure", ["XDSUnknownPatientId", "XDSPatientIdDoesNotMatch"]),
     registry_response(FAILURE, ("XDSRegistryMetadataError", None), ("XDSPatientIdDoesNotMatch", None)), True),
    (make_case("Failure", ["XDSUnknownPatientId"]), registry_response(FAILURE, ("XDSRegistryError", None)), False),
    (make_case("Failure"), registry_response(FAILURE, ("XDSRegistryError", None)), True),  # default severity Error
    (make_case("Failure"), registry_response(FAILURE, ("XDSExtraMetadataNotSaved", v.SEVERITY_WARNING)), False),
    (make_case("Failure"), registry_response(SUCCESS), False),
    (make_case("PartialSuccess", ["XDSDocumentUniqueIdError"]),
     registry_response(v.RESPONSE_PARTIAL_SUCCESS, ("XDSDocumentUniqueIdError", None)), True),
])
def test_judge_status_and_codes(case, response, passed):
    assert judge(case, answer(response)).passed is passed


def test_judge_retrieve_reads_nested_registry_response():
    body = (f'<xdsb:RetrieveDocumentSetResponse {NS}>{registry_response(SUCCESS)}'
            f"<xdsb:DocumentResponse/></xdsb:RetrieveDocumentSetResponse>")
    assert judge(make_case("Success", transaction="ITI-43"), answer(body)).passed
    assert not judge(make_case("Failure", transaction="ITI-43"), answer(body)).passed


def test_judge_accepts_rad69_gold_standard_success(shared_messages):
    cases = {c.file.name: c for c in load_cases(shared_messages) if c.transaction == "RAD-69"}
    checked = 0
    for gold in sorted((shared_messages / "rad69").glob("*.expected-response.xml")):
        case = cases[gold.name.replace(".expected-response.xml", ".xml")]
        if case.expected_status == "Success":  # the Failure gold standards have their error lists commented out
            assert judge(case, SoapResponse(200, load_message(gold))).passed, gold.name
            checked += 1
    assert checked == 2


FAULT = (f'<soap:Fault xmlns:soap="{SOAP12}"><soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code>'
         '<soap:Reason><soap:Text xml:lang="en">bad request</soap:Text></soap:Reason></soap:Fault>')


def test_fault_counts_as_failure_only_without_expected_codes():
    fault = answer(FAULT, 400)
    assert fault.is_fault
    ok = judge(make_case("Failure"), fault)
    assert ok.passed and "bad request" in ok.reason
    coded = judge(make_case("Failure", ["XDSUnknownStoredQuery"]), fault)
    assert not coded.passed and "SOAP Fault" in coded.reason
    assert not judge(make_case("Success"), fault).passed


def test_non_soap_answer_fails():
    verdict = judge(make_case("Success"), parse_response(500, b"Internal Server Error", "text/plain"))
    assert not verdict.passed and "HTTP 500" in verdict.reason
    verdict = judge(make_case("Success"), answer(registry_response(SUCCESS), 500))
    assert not verdict.passed and verdict.reason == "HTTP 500 with a RegistryResponse (not a Fault)"


# --- ITI-18 expected contents ----------------------------------------------------------------------------

SS, DOC, FOL = "urn:uuid:ss-1", "urn:uuid:doc-1", "urn:uuid:fol-1"
APPROVED, DEPRECATED = v.STATUS_APPROVED, v.STATUS_DEPRECATED


def query_response(*objects: str, status: str = SUCCESS) -> str:
    return (f'<query:AdhocQueryResponse {NS} status="{status}"><rim:RegistryObjectList>{"".join(objects)}'
            f"</rim:RegistryObjectList></query:AdhocQueryResponse>")


def doc(id_: str, status: str = APPROVED) -> str:
    return f'<rim:ExtrinsicObject id="{id_}" status="{status}" objectType="{v.STABLE_DOCUMENT_ENTRY}"/>'


def package(id_: str, node: str | None, status: str = APPROVED) -> str:
    inner = (f'<rim:Classification id="c-{id_}" classifiedObject="{id_}" classificationNode="{node}"/>'
             if node else "")
    return f'<rim:RegistryPackage id="{id_}" status="{status}">{inner}</rim:RegistryPackage>'


def assoc(id_: str, source: str, target: str, kind: str = v.HAS_MEMBER) -> str:
    return f'<rim:Association id="{id_}" associationType="{kind}" sourceObject="{source}" targetObject="{target}"/>'


def contents(body: str, *words: str) -> tuple[list[str], list[str]]:
    return check_contents(xml(body), list(words))


def test_contents_single_doc_submission():
    body = query_response(package(SS, v.SUBMISSION_SET_CLASS_NODE), doc(DOC), assoc("a1", SS, DOC))
    assert contents(body, "SSwithOneDoc", "DocApp", "OneDocApp", "SSApproved", "Documents count=1",
                    "SubmissionSets count=1", "Folders count=0", "Associations count=1") == ([], [])
    mismatches, _ = contents(body, "DocDep", "SSwithTwoDoc", "Documents count=2", "None", "OneDocDep")
    assert len(mismatches) == 5


def test_contents_folder_by_top_level_classification():
    # Folder classified by a top-level Classification (classifiedObject), as some registries answer
    body = query_response(
        package(SS, v.SUBMISSION_SET_CLASS_NODE), package(FOL, None), doc(DOC),
        f'<rim:Classification id="cf" classifiedObject="{FOL}" classificationNode="{v.FOLDER_CLASS_NODE}"/>',
        assoc("a1", SS, DOC), assoc("a2", SS, FOL), assoc("a3", FOL, DOC), assoc("a4", SS, "a3"))
    assert contents(body, "SSwithOneDocOneFol", "FolApp", "Folders count=1", "SubmissionSets count=1") == ([], [])
    missing_link = body.replace(assoc("a4", SS, "a3"), "")
    assert contents(missing_link, "SSwithOneDocOneFol")[0]
    assert contents(body, "SSwithOneFol")[0]


def test_contents_empty_object_refs_relationships_and_unknown_words():
    assert contents(query_response(), "None", "Documents count=0", "ObjectRefs count=0") == ([], [])
    refs = query_response('<rim:ObjectRef id="urn:uuid:1"/>', '<rim:ObjectRef id="urn:uuid:2"/>')
    assert contents(refs, "ObjectRefs count=2") == ([], [])
    assert contents(refs, "ObjectRefs count=1")[0]
    rplc = query_response(doc(DOC), doc("urn:uuid:doc-0", DEPRECATED), assoc("r", DOC, "urn:uuid:doc-0", v.XFRM_RPLC))
    assert contents(rplc, "HasXFRM_RPLC", "OneDocDep", "OneDocApp") == ([], [])
    assert contents(rplc, "HasRPLC", "Frobnicate count=3") == ([], ["HasRPLC", "Frobnicate count=3"])


def test_judge_reports_content_mismatch_and_unchecked():
    body = answer(query_response(doc(DOC)))
    verdict = judge(make_case("Success", contents=["Documents count=2"], transaction="ITI-18"), body)
    assert not verdict.passed and "Documents: expected 2, got 1" in verdict.reason
    verdict = judge(make_case("Success", contents=["Documents count=1", "SomethingNew"], transaction="ITI-18"), body)
    assert verdict.passed and verdict.unchecked == ["SomethingNew"]


def test_wrong_response_element_fails():
    verdict = judge(make_case("Success", transaction="ITI-18"), answer(registry_response(SUCCESS)))
    assert not verdict.passed and verdict.reason == "expected AdhocQueryResponse, got RegistryResponse"


# --- report ---------------------------------------------------------------------------------------------


def test_text_report_and_junit():
    run = RunResult([CaseResult(make_case(transaction="ITI-18", name="a.xml"), PASS, "Success"),
                     CaseResult(make_case(transaction="ITI-42", name="b.xml"), FAIL, "expected Failure, got \x01"),
                     CaseResult(make_case(transaction="ITI-42", name="c.xml"), SKIP, "needs ITI-57")])
    report = text_report(run)
    assert report.splitlines()[-1] == "1 passed, 1 failed, 1 skipped"
    assert "SKIP ITI-42 iti42/c.xml  needs ITI-57" in report
    root = etree.fromstring(junit_xml(run))
    assert root.tag == "testsuites" and root.get("tests") == "3" and root.get("failures") == "1"
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"ITI-18", "ITI-42"}
    assert suites["ITI-42"].get("failures") == "1" and suites["ITI-42"].get("skipped") == "1"
    assert suites["ITI-42"].find("testcase/failure").get("message").startswith("expected Failure")
    assert suites["ITI-42"].find("testcase/skipped").get("message") == "needs ITI-57"


# --- wire: SOAP 1.2 + WS-Addressing, MTOM -----------------------------------------------------------------

PNR_DOC = b"line one\r\nline two\r\n"  # trailing CRLF must survive the attachment round trip
PNR = (f'<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="{XDSB}">'
       f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}"><rim:RegistryObjectList xmlns:rim="{RIM}"/>'
       f'</lcm:SubmitObjectsRequest><xdsb:Document id="Document01">{base64.b64encode(PNR_DOC).decode()}'
       f"</xdsb:Document></xdsb:ProvideAndRegisterDocumentSetRequest>")


def test_envelope_has_ihe_addressing_headers():
    action = ACTIONS["ITI-42"]
    data, content_type = encode(envelope(xml(PNR), action, "http://actor/reg"), action, mtom=False)
    assert content_type == f'application/soap+xml; charset=UTF-8; action="{action}"'
    env = etree.fromstring(data)
    header = env.find(q(SOAP12, "Header"))
    assert header.findtext(q(WSA, "Action")) == action
    assert header.find(q(WSA, "Action")).get(q(SOAP12, "mustUnderstand")) == "true"
    assert header.findtext(q(WSA, "To")) == "http://actor/reg"
    assert header.find(q(WSA, "To")).get(q(SOAP12, "mustUnderstand")) == "true"
    assert header.findtext(q(WSA, "MessageID")).startswith("urn:uuid:")
    assert header.findtext(f"{q(WSA, 'ReplyTo')}/{q(WSA, 'Address')}") == ANONYMOUS
    assert env.find(q(SOAP12, "Body"))[0].tag == q(XDSB, "ProvideAndRegisterDocumentSetRequest")


def test_envelope_is_schema_valid(shared_messages):
    schema = etree.XMLSchema(etree.parse(str(SHARED / "schemas" / "soap12" / "soap-envelope.xsd")))
    env = envelope(xml(PNR), ACTIONS["ITI-41"], "http://actor/rep")
    assert schema.validate(env), schema.error_log


def test_mtom_moves_documents_to_attachments():
    action = ACTIONS["ITI-41"]
    data, content_type = encode(envelope(xml(PNR), action, "http://actor/rep"), action, mtom=True)
    assert content_type.startswith("multipart/related;") and 'type="application/xop+xml"' in content_type
    root, attachments = split_multipart(data, content_type)
    include = etree.fromstring(root).find(f".//{q(XDSB, 'Document')}/{q(XOP, 'Include')}")
    cid = include.get("href").removeprefix("cid:")
    assert attachments == {cid: PNR_DOC}
    # Parsed independently of our own splitter too
    msg = email.message_from_bytes(f"Content-Type: {content_type}\r\n\r\n".encode() + data, policy=email.policy.HTTP)
    assert [p.get_payload(decode=True) for p in msg.iter_parts()][1] == PNR_DOC


def test_parse_mtom_response_picks_start_part():
    boundary, start = "b0undary", "root@x"
    root_xml = f'<s:Envelope xmlns:s="{SOAP12}"><s:Body>{registry_response(SUCCESS)}</s:Body></s:Envelope>'
    data = (f"--{boundary}\r\nContent-ID: <att@x>\r\nContent-Type: application/octet-stream\r\n\r\n"
            f"\r\n--{boundary}x\r\n\r\n--{boundary}\r\nContent-ID: <{start}>\r\n"
            f"Content-Type: application/xop+xml\r\n\r\n{root_xml}\r\n--{boundary}--\r\n").encode()
    resp = parse_response(200, data, f'multipart/related; boundary="{boundary}"; start="<{start}>"')
    assert resp.body.tag == q(RS, "RegistryResponse")
    assert resp.attachments == {"att@x": f"\r\n--{boundary}x\r\n".encode()}
    # a part without headers, no closing delimiter
    assert split_multipart(b"--B\r\n\r\n<a/>\r\n--B\r\nContent-ID: <x>\r\n\r\nDATA", "multipart/related; boundary=B"
                           ) == (b"<a/>", {"x": b"DATA"})


# --- patients / ITI-8 -------------------------------------------------------------------------------------


def test_patients_to_register(shared_messages):
    ids = patients_to_register(shared_messages / "patients.tsv")
    assert "CONFREG001^^^&1.3.6.1.4.1.21367.13.20.1000&ISO" in ids
    assert not any(i.startswith(("CONFUNKNOWN999", "11111^")) for i in ids)


def test_ack_code():
    assert ack_code(b"\x0bMSH|^~\\&|R|F|S|F|20250101||ACK^A01|1|P|2.5\rMSA|AA|1\r\x1c\r") == "AA"
    assert ack_code(b"MSH#^~\\&#R\rMSA#AE#1") == "AE"
    assert ack_code(b"garbage") == ""


class DictPatients:
    """An in-memory PatientStore: enough for the feed round trip."""

    def __init__(self):
        self.ids: dict[str, dict] = {}

    def upsert_patient(self, patient_id, demographics):
        self.ids[patient_id] = demographics

    def merge_patients(self, surviving_id, subsumed_id):
        return 0


def test_register_patients_over_mllp():
    from registry.mllp import serve_mllp, stop_mllp
    from registry.patient_feed import handle_adt

    store = DictPatients()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    domain = "1.3.6.1.4.1.21367.13.20.1000"
    server = asyncio.run_coroutine_threadsafe(
        serve_mllp("127.0.0.1", 0, lambda m: handle_adt(m, store, domain_oid=domain)), loop).result(5)
    try:
        port = server.sockets[0].getsockname()[1]
        good, foreign = f"CONFREG001^^^&{domain}&ISO", "X1^^^&1.2.3&ISO"
        problems = register_patients([good, foreign], "127.0.0.1", port)
        assert good in store.ids
        assert len(problems) == 1 and problems[0].startswith(f"ITI-8 {foreign}: ACK MSA-1=A")
        closed = register_patients([good], "127.0.0.1", _free_port(), timeout=1)
        assert len(closed) == 1 and closed[0].startswith(f"ITI-8 {good}:")
    finally:
        asyncio.run_coroutine_threadsafe(stop_mllp(server), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


# --- end to end over real HTTP -----------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def fake_actor():
    """A tiny Starlette app on loopback that answers every request with a fixed Success.

    It only tests the runner's HTTP plumbing (envelope, MTOM, headers, response parsing); it is not an XDS actor.
    The real end-to-end conformance test runs against the Registry.
    """
    seen: list[tuple[str, bytes]] = []
    envelope_of = (f'<s:Envelope xmlns:s="{SOAP12}"><s:Header/><s:Body>%s</s:Body></s:Envelope>').__mod__

    async def endpoint(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        seen.append((content_type, await request.body()))
        if 'action="urn:ihe:iti:2007:RegistryStoredQuery"' in content_type:
            body = query_response(package(SS, v.SUBMISSION_SET_CLASS_NODE), doc(DOC), assoc("a1", SS, DOC))
        elif 'action="urn:ihe:iti:2007:RetrieveDocumentSet"' in content_type:
            # answer MTOM, root part last, as some stacks do
            root = envelope_of(f'<xdsb:RetrieveDocumentSetResponse {NS}>{registry_response(SUCCESS)}'
                               '<xdsb:DocumentResponse><xdsb:Document><xop:Include xmlns:xop="'
                               f'{XOP}" href="cid:d1@x"/></xdsb:Document></xdsb:DocumentResponse>'
                               "</xdsb:RetrieveDocumentSetResponse>")
            data = (b"--B\r\nContent-ID: <d1@x>\r\n\r\n" + PNR_DOC + b"\r\n--B\r\nContent-ID: <r@x>\r\n"
                    b"Content-Type: application/xop+xml\r\n\r\n" + root.encode() + b"\r\n--B--\r\n")
            return Response(data, media_type='multipart/related; boundary="B"; start="<r@x>"')
        else:
            body = registry_response(SUCCESS)
        return Response(envelope_of(body), media_type="application/soap+xml")

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(Starlette(routes=[Route("/{actor}", endpoint, methods=["POST"])]),
                                           log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", seen
    server.should_exit = True
    thread.join(10)
    sock.close()


def write_data_dir(root: Path) -> Path:
    """A miniature data folder in the shared layout, with hand-written messages."""
    sor = (f'<lcm:SubmitObjectsRequest xmlns:lcm="{LCM}"><rim:RegistryObjectList xmlns:rim="{RIM}"/>'
           "</lcm:SubmitObjectsRequest>")
    query = (f'<query:AdhocQueryRequest xmlns:query="{QUERY}" xmlns:rim="{RIM}"><query:ResponseOption '
             f'returnType="LeafClass"/><rim:AdhocQuery id="{v.SQ_GET_ALL}"/></query:AdhocQueryRequest>')
    retrieve = (f'<xdsb:RetrieveDocumentSetRequest xmlns:xdsb="{XDSB}"><xdsb:DocumentRequest>'
                "<xdsb:RepositoryUniqueId>1.2</xdsb:RepositoryUniqueId><xdsb:DocumentUniqueId>1.3"
                "</xdsb:DocumentUniqueId></xdsb:DocumentRequest></xdsb:RetrieveDocumentSetRequest>")
    rows = {  # folder -> [(file, body, status, codes, what, group, step, requires)]
        "iti42": [("a_01.xml", sor, "Success", "", "submit", "a", 1, ""),
                  ("b_01.xml", sor, "Failure", "XDSUnknownPatientId", "reject", "b", 1, ""),
                  ("b_02.xml", sor, "Success", "", "after reject", "b", 2, "messages/iti42/b_01.xml"),
                  ("c_01.xml", sor, "Success", "", "original", "c", 1, "")],
        "iti18": [("a_02.xml", query, "Success", "", "q | expected contents: SSwithOneDoc; DocApp; Frob", "a", 2,
                   "messages/iti42/a_01.xml"),
                  ("c_03.xml", query, "Success", "", "q after update", "c", 3, "")],
        "iti57": [("c_02.xml", sor, "Success", "", "update", "c", 2, "")],
        "iti41": [("d_01.xml", PNR, "Success", "", "pnr", "d", 1, ""),
                  ("wire.mime.txt", "", "Success", "", "[validate-only]", "wire", 1, "")],
        "iti43": [("d_02.xml", retrieve, "Success", "", "retrieve", "d", 2, "messages/iti41/d_01.xml")],
    }
    for folder, cases in rows.items():
        (root / folder).mkdir(parents=True)
        index = ["file\ttransaction\texpected_status\texpected_error_codes\tsource_repo\tsource_path\twhat_it_tests"]
        seq = ["file\tmode\tgroup\tstep\trequires"]
        for file, body, status, codes, what, group, step, requires in cases:
            (root / folder / file).write_text(body)
            index.append(f"{file}\t{folder.upper().replace('ITI', 'ITI-')}\t{status}\t{codes}\tme\tnone\t{what}")
            mode = "validate-only" if file.endswith(".txt") else "live"
            seq.append(f"{file}\t{mode}\t{group}\t{step}\t{requires}")
        (root / folder / "index.tsv").write_text("\n".join(index) + "\n")
        (root / folder / "sequence.tsv").write_text("\n".join(seq) + "\n")
    (root / "patients.tsv").write_text("patient_id\tregister_before_run\tused_in\tnote\n")
    return root


def test_cli_end_to_end_against_loopback_app(fake_actor, tmp_path, capsys):
    url, seen = fake_actor
    data = write_data_dir(tmp_path / "messages")
    junit = tmp_path / "junit.xml"
    code = cli.main(["--registry", f"{url}/registry", "--repository", f"{url}/repository", "--data", str(data),
                     "--transactions", "iti-42,ITI-18,ITI-41,ITI-43", "--junit", str(junit), "--no-feed"])
    out = capsys.readouterr().out.splitlines()
    assert code == 1
    assert out[-2:] == ["not run (transaction not selected): ITI-57 1", "5 passed, 1 failed, 3 skipped"]
    lines = {line.split()[2]: line for line in out[:-2]}
    assert "iti57/c_02.xml" not in lines  # the non-selected transaction is left out ...
    assert lines["iti42/b_01.xml"].startswith("FAIL ITI-42")
    assert "expected Failure, got Success" in lines["iti42/b_01.xml"]
    assert lines["iti42/b_02.xml"].startswith("SKIP") and "requires iti42/b_01.xml (failed)" in lines["iti42/b_02.xml"]
    assert lines["iti18/c_03.xml"].endswith("needs ITI-57")  # ... and the step after it is skipped
    assert lines["iti41/wire.mime.txt"].endswith("validate-only")
    assert lines["iti43/d_02.xml"].startswith("PASS")
    # Only the selected transactions went over the wire; the PnR as MTOM with the document as an attachment
    assert len(seen) == 6
    pnr = [(ct, body) for ct, body in seen if "ProvideAndRegisterDocumentSet-b" in ct]
    assert len(pnr) == 1 and pnr[0][0].startswith("multipart/related")
    msg = email.message_from_bytes(f"Content-Type: {pnr[0][0]}\r\n\r\n".encode() + pnr[0][1],
                                   policy=email.policy.HTTP)
    root_part, doc_part = list(msg.iter_parts())
    assert b"xop:Include" in root_part.get_payload(decode=True) and doc_part.get_payload(decode=True) == PNR_DOC
    suites = {s.get("name") for s in etree.parse(str(junit)).getroot()}
    assert suites == {"ITI-42", "ITI-18", "ITI-41", "ITI-43"}


def test_inline_option_sends_plain_soap(fake_actor, tmp_path):
    from conformance.runner import run

    url, seen = fake_actor
    data = write_data_dir(tmp_path / "messages")
    result = run(data, registry=None, repository=f"{url}/repository", imaging_source=None, mllp=None,
                 transactions={"ITI-41"}, inline=True, feed=False)
    assert [(r.case.key, r.outcome) for r in result.results] == [("iti41/d_01.xml", PASS),
                                                                 ("iti41/wire.mime.txt", SKIP)]
    assert result.not_selected == {"ITI-18": 2, "ITI-42": 4, "ITI-43": 1, "ITI-57": 1}
    assert len(seen) == 1 and seen[0][0].startswith("application/soap+xml")
    assert base64.b64encode(PNR_DOC) in seen[0][1]


def test_unreachable_actor_fails_cleanly(tmp_path):
    from conformance.runner import run

    data = write_data_dir(tmp_path / "messages")
    result = run(data, registry=f"http://127.0.0.1:{_free_port()}/x", repository=None, imaging_source=None,
                 mllp=None, transactions={"ITI-42"}, feed=True)
    assert result.setup_errors and "no MLLP address" in result.setup_errors[0]
    failed = [r for r in result.results if r.outcome == FAIL]
    assert len(failed) == 3 and all("ConnectError" in r.reason for r in failed)
    assert not result.ok
