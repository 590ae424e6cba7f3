"""SOAP 1.2 envelope, WS-Addressing and the Starlette endpoint, over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path

import httpx
import pytest
from lxml import etree
from starlette.applications import Starlette
from starlette.routing import Route

from tests.serving import serve
from xdsi.ebxml.namespaces import SOAP11, SOAP12, WSA, WSSE, q
from xdsi.soap import (
    SOAP_FAULT_ACTION,
    WSA_ANONYMOUS,
    WSA_FAULT_ACTION,
    SoapFault,
    SoapRequest,
    SoapResponse,
    build_envelope,
    new_message_id,
    parse_envelope,
    soap_endpoint,
)
from xdsi.xmlparse import parse_xml

from tests.conftest import SHARED as CONFORMANCE
from tests.conftest import need

ECHO = "urn:test:Echo"
ASYNC_ECHO = "urn:test:AsyncEcho"
BOOM = "urn:test:Boom"
FAULTY = "urn:test:Faulty"
WRONG_TYPE = "urn:test:WrongType"
NS = {"env": SOAP12, "wsa": WSA}


# --- helpers ------------------------------------------------------------------------------------


def envelope(
    action: str | None = ECHO,
    body: str = '<t:Ping xmlns:t="urn:test">hello</t:Ping>',
    *,
    message_id: str | None = "urn:uuid:11111111-2222-3333-4444-555555555555",
    extra_headers: str = "",
    reply_to: str | None = WSA_ANONYMOUS,
    to: str | None = "http://127.0.0.1/xds",
) -> bytes:
    headers = []
    if action is not None:
        headers.append('<wsa:Action env:mustUnderstand="true">%s</wsa:Action>' % action)
    if message_id is not None:
        headers.append("<wsa:MessageID>%s</wsa:MessageID>" % message_id)
    if reply_to is not None:
        headers.append("<wsa:ReplyTo><wsa:Address>%s</wsa:Address></wsa:ReplyTo>" % reply_to)
    if to is not None:
        headers.append('<wsa:To env:mustUnderstand="true">%s</wsa:To>' % to)
    return (
        '<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="%s" xmlns:wsa="%s"><env:Header>%s%s'
        "</env:Header><env:Body>%s</env:Body></env:Envelope>" % (SOAP12, WSA, "".join(headers), extra_headers, body)
    ).encode()


def fault_of(content: bytes) -> dict:
    root = etree.fromstring(content)
    assert root.tag == q(SOAP12, "Envelope"), content[:300]
    fault = root.find("env:Body/env:Fault", NS)
    assert fault is not None, content[:500]
    subcode = fault.findtext("env:Code/env:Subcode/env:Value", namespaces=NS)
    return {
        "code": fault.findtext("env:Code/env:Value", namespaces=NS),
        "subcode": subcode,
        "reason": fault.findtext("env:Reason/env:Text", namespaces=NS),
        "action": root.findtext("env:Header/wsa:Action", namespaces=NS),
        "relates_to": root.findtext("env:Header/wsa:RelatesTo", namespaces=NS),
        "root": root,
        "fault": fault,
    }


def soap_post(client: httpx.Client, url: str, data: bytes, content_type: str = "application/soap+xml; charset=utf-8"):
    return client.post(url, content=data, headers={"content-type": content_type})


# --- the server under test --------------------------------------------------------------------


def echo(request: SoapRequest) -> SoapResponse:
    # Sync handler: runs in the thread pool. Echo the body and what the envelope parser extracted.
    body = etree.Element(q("urn:test", "EchoResponse"), nsmap={"t": "urn:test"})
    body.set("action", request.action)
    body.set("messageId", request.message_id)
    body.set("replyTo", request.reply_to)
    body.set("to", request.to)
    body.set("headers", str(len(request.headers)))
    body.append(etree.fromstring(etree.tostring(request.body)))
    return SoapResponse(action=ECHO + "Response", body=body)


async def async_echo(request: SoapRequest) -> SoapResponse:
    await asyncio.sleep(0)
    payload = etree.tostring(request.body)
    return SoapResponse(action=ASYNC_ECHO + "Response", body=b'<?xml version="1.0"?><t:R xmlns:t="urn:test">' + payload + b"</t:R>")


def boom(request: SoapRequest) -> SoapResponse:
    raise RuntimeError("secret internal detail /etc/passwd")


def faulty(request: SoapRequest) -> SoapResponse:
    raise SoapFault("Sender", "the request names no patient", "wsa:InvalidAddressingHeader")


def wrong_type(request: SoapRequest):
    return "not a SoapResponse"


@pytest.fixture(scope="module")
def wsdl_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("wsdl") / "service.wsdl"
    path.write_bytes(b'<?xml version="1.0"?><definitions xmlns="http://schemas.xmlsoap.org/wsdl/" name="T"/>')
    return path


@pytest.fixture(scope="module")
def base_url(wsdl_file):
    handlers = {ECHO: echo, ASYNC_ECHO: async_echo, BOOM: boom, FAULTY: faulty, WRONG_TYPE: wrong_type}
    app = Starlette(
        routes=[
            Route("/xds", soap_endpoint(handlers, wsdl=wsdl_file), methods=["GET", "POST", "HEAD", "PUT"]),
            Route("/small", soap_endpoint(handlers, max_body_bytes=64 * 1024), methods=["POST"]),
            Route(
                "/security",
                soap_endpoint(handlers, understood_headers={"{urn:custom}Ticket"}),
                methods=["POST"],
            ),
        ]
    )
    with serve(app) as url:
        yield url


@pytest.fixture()
def client():
    with httpx.Client(timeout=30) as c:
        yield c


# --- envelope building ----------------------------------------------------------------------------


def test_build_envelope_with_bytes_body_splices_verbatim():
    body = b'<?xml version="1.0" encoding="UTF-8"?><q:Resp xmlns:q="urn:q" n="1"><q:X>a &amp; b</q:X></q:Resp>'
    out = build_envelope("urn:ihe:iti:2007:RegistryStoredQueryResponse", "urn:uuid:abc", body)
    root = etree.fromstring(out)
    header = root.find(q(SOAP12, "Header"))
    action = header.find(q(WSA, "Action"))
    assert action.text == "urn:ihe:iti:2007:RegistryStoredQueryResponse"
    assert action.get(q(SOAP12, "mustUnderstand")) == "true"
    assert header.findtext(q(WSA, "RelatesTo")) == "urn:uuid:abc"
    assert header.findtext(q(WSA, "MessageID")).startswith("urn:uuid:")
    payload = root.find(q(SOAP12, "Body"))[0]
    assert payload.tag == "{urn:q}Resp" and payload[0].text == "a & b"
    assert b'<q:Resp xmlns:q="urn:q" n="1"><q:X>a &amp; b</q:X></q:Resp>' in out


def test_build_envelope_with_element_and_escaping():
    element = etree.fromstring(b'<r:Res xmlns:r="urn:r"/>')
    out = build_envelope("urn:a?x=1&y=<2>", None, element)
    root = etree.fromstring(out)
    assert root.findtext("env:Header/wsa:Action", namespaces=NS) == "urn:a?x=1&y=<2>"
    assert root.find("env:Header/wsa:RelatesTo", namespaces=NS) is None
    assert root.find("env:Body", namespaces=NS)[0].tag == "{urn:r}Res"


def test_build_envelope_is_fast():
    body = b'<rs:RegistryResponse xmlns:rs="urn:rs" status="x">' + b"<rs:E/>" * 300 + b"</rs:RegistryResponse>"
    build_envelope("urn:a", "urn:uuid:1", body)
    n = 3000
    t0 = time.perf_counter()
    for _ in range(n):
        build_envelope("urn:ihe:iti:2007:RegistryStoredQueryResponse", "urn:uuid:1", body)
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 50e-6, "build_envelope took %.1f us" % (per_call * 1e6)


def test_new_message_ids_are_unique_urn_uuids():
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(i.startswith("urn:uuid:") and len(i) == 45 for i in ids)


# --- envelope parsing ---------------------------------------------------------------------------


def test_parse_envelope_extracts_wsa_properties():
    req = parse_envelope(parse_xml(envelope()))
    assert req.action == ECHO
    assert req.message_id == "urn:uuid:11111111-2222-3333-4444-555555555555"
    assert req.reply_to == WSA_ANONYMOUS
    assert req.to == "http://127.0.0.1/xds"
    assert req.body.tag == "{urn:test}Ping"
    assert len(req.headers) == 4
    assert req.attachments == {}
    assert req.raw_envelope.tag == q(SOAP12, "Envelope")


def test_parse_envelope_defaults_and_whitespace():
    data = envelope(action="\n  urn:test:Echo  \n", message_id=None, reply_to=None, to=None)
    req = parse_envelope(parse_xml(data))
    assert req.action == ECHO and req.message_id == "" and req.reply_to == WSA_ANONYMOUS and req.to == ""


def test_parse_envelope_is_fast_enough_for_the_registry_hot_path():
    data = envelope(body='<q:AdhocQueryRequest xmlns:q="urn:q">' + "<q:Slot/>" * 20 + "</q:AdhocQueryRequest>")
    n = 2000
    t0 = time.perf_counter()
    for _ in range(n):
        parse_envelope(parse_xml(data))
    per_call = (time.perf_counter() - t0) / n
    assert per_call < 300e-6, "parse took %.1f us" % (per_call * 1e6)


@pytest.mark.parametrize(
    "data, code, subcode, words",
    [
        (envelope(action=None), "Sender", "wsa:MessageAddressingHeaderRequired", "wsa:Action"),
        (envelope(action="  "), "Sender", "wsa:InvalidAddressingHeader", "Action"),
        (
            envelope(extra_headers="<wsa:Action>urn:other</wsa:Action>"),
            "Sender",
            "wsa:InvalidAddressingHeader",
            "more than once",
        ),
        (envelope(body=""), "Sender", None, "exactly one"),
        (envelope(body="<a/><b/>"), "Sender", None, "exactly one"),
        (
            b'<s:Envelope xmlns:s="%s"><s:Body><x/></s:Body></s:Envelope>' % SOAP11.encode(),
            "VersionMismatch",
            None,
            "SOAP 1.1",
        ),
        (b"<notsoap/>", "VersionMismatch", None, "notsoap"),
        (b'<env:Envelope xmlns:env="%s"><env:Header/></env:Envelope>' % SOAP12.encode(), "Sender", None, "no Body"),
        (
            b'<env:Envelope xmlns:env="%s"><env:Body><x/></env:Body><env:Header/></env:Envelope>' % SOAP12.encode(),
            "Sender",
            None,
            "unexpected element",
        ),
        (
            envelope(reply_to=None, extra_headers="<wsa:ReplyTo/>"),
            "Sender",
            "wsa:InvalidAddressingHeader",
            "ReplyTo",
        ),
    ],
)
def test_parse_envelope_faults(data, code, subcode, words):
    with pytest.raises(SoapFault) as info:
        parse_envelope(parse_xml(data))
    assert info.value.code == code
    assert info.value.subcode == subcode
    assert words in info.value.reason


def test_must_understand_rules():
    unknown = '<x:Ticket xmlns:x="urn:custom" env:mustUnderstand="true"/>'
    with pytest.raises(SoapFault) as info:
        parse_envelope(parse_xml(envelope(extra_headers=unknown)))
    assert info.value.code == "MustUnderstand"
    assert info.value.not_understood == ["{urn:custom}Ticket"]
    assert info.value.http_status == 500
    # Understood on request, optional ones, "1" spelling, and blocks for another role.
    parse_envelope(parse_xml(envelope(extra_headers=unknown)), understood={"{urn:custom}Ticket"})
    parse_envelope(parse_xml(envelope(extra_headers='<x:T xmlns:x="urn:custom"/>')))
    parse_envelope(
        parse_xml(envelope(extra_headers='<x:T xmlns:x="urn:c" env:mustUnderstand="true" env:role="%s/role/none"/>' % SOAP12))
    )
    with pytest.raises(SoapFault):
        parse_envelope(parse_xml(envelope(extra_headers='<x:T xmlns:x="urn:c" env:mustUnderstand="1"/>')))
    security = '<wsse:Security xmlns:wsse="%s" env:mustUnderstand="true"/>' % WSSE
    assert len(parse_envelope(parse_xml(envelope(extra_headers=security))).headers) == 5


def test_fault_serialization():
    fault = SoapFault.action_not_supported("urn:nope")
    info = fault_of(fault.to_bytes("urn:uuid:req"))
    assert (info["code"], info["subcode"]) == ("env:Sender", "wsa:ActionNotSupported")
    assert info["action"] == WSA_FAULT_ACTION and info["relates_to"] == "urn:uuid:req"
    assert info["fault"].findtext("env:Detail/wsa:ProblemAction/wsa:Action", namespaces=NS) == "urn:nope"
    assert fault.http_status == 400
    # Serializing twice must not move the detail element out of the fault.
    assert fault_of(fault.to_bytes())["fault"].find("env:Detail", namespaces=NS) is not None

    plain = SoapFault("Receiver", "bad \x00 char", detail="more")
    info = fault_of(plain.to_bytes())
    assert info["action"] == SOAP_FAULT_ACTION and info["relates_to"] is None
    assert info["code"] == "env:Receiver" and "\ufffd" in info["reason"]
    assert plain.http_status == 500

    custom = SoapFault("Sender", "x", "{urn:vendor}Quota", http_status=429)
    info = fault_of(custom.to_bytes())
    value = info["fault"].find("env:Code/env:Subcode/env:Value", namespaces=NS)
    prefix, local = value.text.split(":")
    assert value.nsmap[prefix] == "urn:vendor" and local == "Quota" and custom.http_status == 429

    with pytest.raises(ValueError):
        SoapFault("Client", "SOAP 1.1 code")
    with pytest.raises(ValueError):
        SoapFault("Sender", "x", "nope:Unknown")


def test_version_mismatch_fault_carries_upgrade():
    info = fault_of(SoapFault("VersionMismatch", "old").to_bytes())
    assert info["root"].find("env:Header/env:Upgrade/env:SupportedEnvelope", namespaces=NS).get("qname") == "env:Envelope"
    soap11 = etree.fromstring(SoapFault("VersionMismatch", "old").to_bytes(soap11=True))
    assert soap11.tag == q(SOAP11, "Envelope")
    assert soap11.findtext(".//faultcode").endswith(":VersionMismatch")


# --- endpoint over HTTP -----------------------------------------------------------------------------


def test_echo_round_trip_with_wsa_headers(base_url, client):
    response = soap_post(client, base_url + "/xds", envelope())
    assert response.status_code == 200
    ctype = response.headers["content-type"]
    assert ctype.startswith("application/soap+xml") and 'action="urn:test:EchoResponse"' in ctype
    root = etree.fromstring(response.content)
    header = root.find(q(SOAP12, "Header"))
    assert header.findtext(q(WSA, "Action")) == ECHO + "Response"
    assert header.find(q(WSA, "Action")).get(q(SOAP12, "mustUnderstand")) == "true"
    assert header.findtext(q(WSA, "RelatesTo")) == "urn:uuid:11111111-2222-3333-4444-555555555555"
    message_id = header.findtext(q(WSA, "MessageID"))
    assert message_id.startswith("urn:uuid:") and message_id != "urn:uuid:11111111-2222-3333-4444-555555555555"
    echoed = root.find(q(SOAP12, "Body"))[0]
    assert echoed.get("action") == ECHO and echoed.get("to") == "http://127.0.0.1/xds"
    assert echoed.get("replyTo") == WSA_ANONYMOUS and echoed.get("headers") == "4"
    assert echoed[0].tag == "{urn:test}Ping" and echoed[0].text == "hello"


def test_async_handler_and_bytes_body(base_url, client):
    response = soap_post(client, base_url + "/xds", envelope(action=ASYNC_ECHO), 'application/soap+xml;action="x"')
    assert response.status_code == 200
    root = etree.fromstring(response.content)
    assert root.find(q(SOAP12, "Body"))[0][0].tag == "{urn:test}Ping"


def test_unknown_action_fault_names_the_action(base_url, client):
    response = soap_post(client, base_url + "/xds", envelope(action="urn:ihe:iti:2007:NoSuchThing"))
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/soap+xml")
    info = fault_of(response.content)
    assert info["code"] == "env:Sender" and info["subcode"] == "wsa:ActionNotSupported"
    assert "urn:ihe:iti:2007:NoSuchThing" in info["reason"]
    assert info["relates_to"] == "urn:uuid:11111111-2222-3333-4444-555555555555"


def test_missing_action_fault(base_url, client):
    response = soap_post(client, base_url + "/xds", envelope(action=None))
    assert response.status_code == 400
    info = fault_of(response.content)
    assert info["subcode"] == "wsa:MessageAddressingHeaderRequired"


def test_soap11_text_xml_gets_soap11_version_mismatch(base_url, client):
    soap11 = b'<s:Envelope xmlns:s="%s"><s:Body><x/></s:Body></s:Envelope>' % SOAP11.encode()
    response = client.post(base_url + "/xds", content=soap11, headers={"content-type": "text/xml; charset=utf-8", "SOAPAction": '"x"'})
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/xml")
    root = etree.fromstring(response.content)
    assert root.tag == q(SOAP11, "Envelope")
    assert root.findtext(".//faultcode") == "soap:VersionMismatch"
    assert root.find(".//{%s}Upgrade" % SOAP12) is not None


def test_soap11_envelope_with_soap12_content_type(base_url, client):
    soap11 = b'<s:Envelope xmlns:s="%s"><s:Body><x/></s:Body></s:Envelope>' % SOAP11.encode()
    response = soap_post(client, base_url + "/xds", soap11)
    assert response.status_code == 500
    assert fault_of(response.content)["code"] == "env:VersionMismatch"


def test_must_understand_over_http(base_url, client):
    ticket = '<x:Ticket xmlns:x="urn:custom" env:mustUnderstand="true">t</x:Ticket>'
    response = soap_post(client, base_url + "/xds", envelope(extra_headers=ticket))
    assert response.status_code == 500
    info = fault_of(response.content)
    assert info["code"] == "env:MustUnderstand"
    nu = info["root"].find("env:Header/env:NotUnderstood", namespaces=NS)
    prefix, local = nu.get("qname").split(":")
    assert nu.nsmap[prefix] == "urn:custom" and local == "Ticket"
    # The same block is fine where the endpoint declares it understood.
    assert soap_post(client, base_url + "/security", envelope(extra_headers=ticket)).status_code == 200


def test_handler_exception_becomes_receiver_fault(base_url, client, caplog):
    with caplog.at_level("ERROR", logger="xdsi.soap"):
        response = soap_post(client, base_url + "/xds", envelope(action=BOOM))
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("application/soap+xml")
    info = fault_of(response.content)
    assert info["code"] == "env:Receiver"
    assert "secret" not in info["reason"] and "reference" in info["reason"]
    assert any("secret internal detail" in r.getMessage() or (r.exc_info and "secret" in str(r.exc_info[1])) for r in caplog.records)


def test_handler_soap_fault_and_wrong_return_type(base_url, client):
    response = soap_post(client, base_url + "/xds", envelope(action=FAULTY))
    assert response.status_code == 400
    info = fault_of(response.content)
    assert info["reason"] == "the request names no patient" and info["relates_to"].startswith("urn:uuid:1111")
    response = soap_post(client, base_url + "/xds", envelope(action=WRONG_TYPE))
    assert response.status_code == 500 and fault_of(response.content)["code"] == "env:Receiver"


def test_unsupported_content_type(base_url, client):
    response = client.post(base_url + "/xds", content=b"{}", headers={"content-type": "application/json"})
    assert response.status_code == 415
    assert "application/json" in fault_of(response.content)["reason"]
    response = client.post(base_url + "/xds", content=envelope())  # no Content-Type at all
    assert response.status_code == 415


def test_wsdl_and_other_methods(base_url, client, wsdl_file):
    response = client.get(base_url + "/xds?wsdl")
    assert response.status_code == 200 and response.content == wsdl_file.read_bytes()
    assert client.get(base_url + "/xds?WSDL").status_code == 200
    assert client.get(base_url + "/xds").status_code == 404
    assert client.put(base_url + "/xds", content=b"x").status_code == 405


def test_wsdl_absent_gives_404(client):
    app = Starlette(routes=[Route("/s", soap_endpoint({ECHO: echo}), methods=["GET", "POST"])])
    with serve(app) as url:
        assert client.get(url + "/s?wsdl").status_code == 404


def test_oversize_body_refused_from_content_length_without_reading(base_url):
    # Declare 10 GB and send nothing: the fault must come back at once.
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(
            b"POST /small HTTP/1.1\r\nHost: x\r\nContent-Type: application/soap+xml\r\n"
            b"Content-Length: 10000000000\r\n\r\n<env:Envelope"
        )
        t0 = time.perf_counter()
        reply = b""
        while b"</env:Envelope>" not in reply:
            piece = sock.recv(65536)
            if not piece:
                break
            reply += piece
    assert time.perf_counter() - t0 < 2
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"application/soap+xml" in head
    assert "limit" in fault_of(body)["reason"]


def test_oversize_chunked_body_refused(base_url, client):
    def chunks():
        for _ in range(40):  # 40 x 8 KiB > the 64 KiB cap of /small
            yield b"<!-- " + b"x" * 8180 + b" -->"

    try:
        response = client.post(base_url + "/small", content=chunks(), headers={"content-type": "application/soap+xml"})
    except httpx.TransportError as err:  # pragma: no cover - the server may close while we still send
        pytest.fail("server closed before answering: %r" % err)
    assert response.status_code == 413
    assert fault_of(response.content)["code"] == "env:Sender"


def test_many_concurrent_requests(base_url):
    async def run():
        async with httpx.AsyncClient(timeout=30) as ac:
            replies = await asyncio.gather(
                *[
                    ac.post(base_url + "/xds", content=envelope(message_id="urn:uuid:%d" % i), headers={"content-type": "application/soap+xml"})
                    for i in range(50)
                ]
            )
        return replies

    replies = asyncio.run(run())
    related = sorted(etree.fromstring(r.content).findtext("env:Header/wsa:RelatesTo", namespaces=NS) for r in replies)
    assert related == sorted("urn:uuid:%d" % i for i in range(50))


# --- conformance sample ------------------------------------------------------------------------------


def _require_shared() -> None:
    need(CONFORMANCE.is_dir(), "conformance data not found at %s" % CONFORMANCE)


@pytest.mark.shared
def test_conformance_soap12_wsa_envelope_parses():
    _require_shared()
    data = (CONFORMANCE / "messages/iti41/nist-wire_pnr-soap12-wsa-envelope.xml").read_bytes()
    req = parse_envelope(parse_xml(data, huge_text=True))
    assert req.action == "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
    assert req.message_id == "urn:uuid:AFBE87CB65FD88AC4B1220879854302"
    assert req.to == "http://localhost:5000/axis2/services/xdsrepositoryb"
    assert req.body.tag == "{urn:ihe:iti:xds-b:2007}ProvideAndRegisterDocumentSetRequest"
