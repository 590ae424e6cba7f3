"""Hostile and malformed input: the parser refuses it, the endpoint answers with a SOAP fault, fast."""

from __future__ import annotations

import time

import httpx
import pytest
from lxml import etree
from starlette.applications import Starlette
from starlette.routing import Route

from tests.serving import serve
from xdsi.ebxml.namespaces import SOAP12, WSA, XOP
from xdsi.soap import SoapRequest, SoapResponse, soap_endpoint
from xdsi.xmlparse import MAX_DEPTH, MalformedXML, parse_xml

ACTION = "urn:test:Echo"
NS = {"env": SOAP12, "wsa": WSA}

XXE = b"""<?xml version="1.0"?>
<!DOCTYPE env:Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope"><env:Body><x>&xxe;</x></env:Body></env:Envelope>"""

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]><lolz>&lol9;</lolz>"
)

PARAMETER_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]><r/>"""


def envelope(body: bytes, *, action: str = ACTION, headers: bytes = b"") -> bytes:
    return (
        b'<?xml version="1.0" encoding="UTF-8"?><env:Envelope xmlns:env="%s" xmlns:wsa="%s"><env:Header>'
        b"<wsa:Action>%s</wsa:Action><wsa:MessageID>urn:uuid:42</wsa:MessageID>%s</env:Header>"
        b"<env:Body>%s</env:Body></env:Envelope>" % (SOAP12.encode(), WSA.encode(), action.encode(), headers, body)
    )


def deep(levels: int) -> bytes:
    return b"<a>" * levels + b"</a>" * levels


# --- parse_xml --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data, words",
    [
        (b"", "empty"),
        (b"<a><b></a>", "not well-formed"),
        (b"<a>", "not well-formed"),
        (b"not xml at all", "not well-formed"),
        (b"<a>&undefined;</a>", "not well-formed"),
        (XXE, "DOCTYPE"),
        (BILLION_LAUGHS, "entity"),
        (PARAMETER_ENTITY, "DOCTYPE"),
        (b'<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd"><a/>', "DOCTYPE"),
        (deep(10_000), "nesting"),
        (b"<a>" + b"x" * (11 << 20) + b"</a>", "10 MB"),
        (b'<?xml version="1.0"?><?xml-stylesheet href="x"?><a/>', "processing instruction"),
        (b"<a><b><?php evil() ?></b></a>", "processing instruction"),
        (b"<a/><?trailing pi?>", "processing instruction"),
        (b"<a/><b/>", "not well-formed"),
        ("<?xml version='1.0' encoding='UTF-16'?><a><?pi x?></a>".encode("utf-16"), "processing instruction"),
    ],
)
def test_parse_xml_refuses(data, words):
    t0 = time.perf_counter()
    with pytest.raises(MalformedXML) as info:
        parse_xml(data)
    assert time.perf_counter() - t0 < 1.0
    assert words in str(info.value)
    assert isinstance(info.value, ValueError)


def test_parse_xml_accepts_ordinary_documents():
    assert parse_xml(b'<?xml version="1.0" encoding="UTF-8"?><a x="1"><!-- c --><b>&amp;&#65;</b></a>').find("b").text == "&A"
    assert parse_xml(b"\xef\xbb\xbf<a/>").tag == "a"
    assert parse_xml("<a>é</a>".encode("utf-16")).text == "é"
    assert parse_xml(b"<a>&lt;?not-a-pi?&gt;</a>").text == "<?not-a-pi?>"
    assert parse_xml(b"<a><![CDATA[<?also not?>]]></a>").text == "<?also not?>"
    assert parse_xml(deep(MAX_DEPTH - 2)) is not None
    # huge_text lifts the 10 MB text-node limit (inline base64 documents).
    assert len(parse_xml(b"<a>" + b"QUFB" * (3 << 20) + b"</a>", huge_text=True).text) == 12 << 20


def test_parse_xml_never_reads_files_or_network():
    with pytest.raises(MalformedXML):
        parse_xml(b'<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/hostname">]><r>&x;</r>')
    # Even the huge-text parser refuses DTDs.
    with pytest.raises(MalformedXML):
        parse_xml(XXE, huge_text=True)


# --- over HTTP --------------------------------------------------------------------------------------


def echo(request: SoapRequest) -> SoapResponse:
    return SoapResponse(action=ACTION + "Response", body=b"<ok/>")


@pytest.fixture(scope="module")
def spool(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def base_url(spool):
    endpoint = soap_endpoint({ACTION: echo}, max_body_bytes=20 << 20, spool_dir=str(spool))
    inline = soap_endpoint({ACTION: echo}, max_body_bytes=20 << 20, allow_inline_documents=True)
    app = Starlette(routes=[Route("/s", endpoint, methods=["POST"]), Route("/inline", inline, methods=["POST"])])
    with serve(app) as url:
        yield url


@pytest.fixture(scope="module")
def client():
    with httpx.Client(timeout=30) as c:
        yield c


def assert_fault(response: httpx.Response, status: int, words: str, code: str = "env:Sender") -> None:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith("application/soap+xml")
    root = etree.fromstring(response.content)
    fault = root.find("env:Body/env:Fault", NS)
    assert fault is not None
    assert fault.findtext("env:Code/env:Value", namespaces=NS) == code
    assert words in fault.findtext("env:Reason/env:Text", namespaces=NS)


HOSTILE = {
    "malformed": (envelope(b"<unclosed>"), "not well-formed"),
    "garbage": (b"\x00\xff\xfe garbage", "not well-formed"),
    "empty": (b"", "empty"),
    "xxe": (XXE, "DOCTYPE"),
    "billion-laughs": (BILLION_LAUGHS, "entity"),
    "parameter-entity": (PARAMETER_ENTITY, "DOCTYPE"),
    "deep-10k": (envelope(deep(10_000)), "nesting"),
    "huge-text": (envelope(b"<a>" + b"A" * (12 << 20) + b"</a>"), "10 MB"),
    "processing-instruction": (envelope(b"<a><?x y?></a>"), "processing instruction"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_hostile_xml_gets_sender_fault_fast(base_url, client, name):
    data, words = HOSTILE[name]
    t0 = time.perf_counter()
    response = client.post(base_url + "/s", content=data, headers={"content-type": "application/soap+xml"})
    elapsed = time.perf_counter() - t0
    assert_fault(response, 400, words)
    assert elapsed < 2.0, "%s took %.2f s" % (name, elapsed)


def test_huge_text_is_accepted_only_where_inline_documents_are(base_url, client):
    data = envelope(b"<a>" + b"QUFB" * (3 << 20) + b"</a>")
    assert client.post(base_url + "/inline", content=data, headers={"content-type": "application/soap+xml"}).status_code == 200
    # ... still capped by the body limit.
    big = envelope(b"<a>" + b"QUFB" * (6 << 20) + b"</a>")
    assert_fault(client.post(base_url + "/inline", content=big, headers={"content-type": "application/soap+xml"}), 413, "limit")
    # ... and DTDs stay forbidden there.
    assert_fault(client.post(base_url + "/inline", content=XXE, headers={"content-type": "application/soap+xml"}), 400, "DOCTYPE")


BOUNDARY = "MIMEBoundary_test"
MTOM_TYPE = 'multipart/related; boundary="%s"; type="application/xop+xml"; start="<root@t>"; start-info="application/soap+xml"' % BOUNDARY


def package(root_xml: bytes, parts: list[tuple[str, bytes]], *, root_cid: str = "root@t", close: bool = True) -> bytes:
    out = [
        b"--%s\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
        b"Content-Transfer-Encoding: binary\r\nContent-ID: <%s>\r\n\r\n" % (BOUNDARY.encode(), root_cid.encode()),
        root_xml,
    ]
    for cid, data in parts:
        out.append(
            b"\r\n--%s\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: binary\r\n"
            b"Content-ID: <%s>\r\n\r\n" % (BOUNDARY.encode(), cid.encode())
        )
        out.append(data)
    if close:
        out.append(b"\r\n--%s--\r\n" % BOUNDARY.encode())
    return b"".join(out)


def include(cid: str) -> bytes:
    return b'<d:Document xmlns:d="urn:d"><xop:Include xmlns:xop="%s" href="cid:%s"/></d:Document>' % (XOP.encode(), cid.encode())


MTOM_HOSTILE = {
    "truncated": (package(envelope(include("doc@t")), [("doc@t", b"x" * 5000)], close=False), "truncated"),
    "truncated-in-root": (package(envelope(include("doc@t")), [])[:150], "truncated"),
    "missing-start-part": (package(envelope(include("doc@t")), [("doc@t", b"x")], root_cid="other@t"), "start part"),
    "unknown-cid": (package(envelope(include("nope@t")), [("doc@t", b"x")]), "nope@t"),
    "no-boundary-line": (b"just some bytes, no MIME here", "boundary"),
    "xxe-in-root": (package(XXE, []), "DOCTYPE"),
    "deep-root": (package(envelope(deep(5000)), []), "nesting"),
    "bad-header": (b"--%s\r\nno colon here\r\n\r\n<a/>\r\n--%s--\r\n" % (BOUNDARY.encode(), BOUNDARY.encode()), "header"),
    "duplicate-cid": (package(envelope(include("doc@t")), [("doc@t", b"x"), ("doc@t", b"y")]), "two MIME parts"),
}


@pytest.mark.parametrize("name", sorted(MTOM_HOSTILE))
def test_broken_mtom_gets_sender_fault_fast(base_url, client, spool, name):
    data, words = MTOM_HOSTILE[name]
    t0 = time.perf_counter()
    response = client.post(base_url + "/s", content=data, headers={"content-type": MTOM_TYPE})
    assert_fault(response, 400, words)
    assert time.perf_counter() - t0 < 2.0
    assert list(spool.iterdir()) == []  # spooled parts are removed on the error path too


def test_multipart_without_boundary_parameter(base_url, client):
    response = client.post(base_url + "/s", content=b"x", headers={"content-type": "multipart/related; type=\"application/xop+xml\""})
    assert_fault(response, 400, "boundary")


def test_oversize_root_part(base_url, client):
    data = package(envelope(b"<a>" + b"x" * (21 << 20) + b"</a>"), [])
    assert_fault(client.post(base_url + "/s", content=data, headers={"content-type": MTOM_TYPE}), 413, "exceeds")
