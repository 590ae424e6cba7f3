"""Streaming MTOM/XOP: the reader against real wire samples and fuzzed input, the writer, and a 100 MB
round trip through the real endpoint with flat memory."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from lxml import etree
from starlette.applications import Starlette
from starlette.routing import Route

from tests.serving import serve
from xdsi.ebxml.namespaces import SOAP12, WSA, XDSB, XOP, q
from xdsi.soap import (
    Attachment,
    MultipartError,
    PackageTooLarge,
    SoapFault,
    SoapRequest,
    SoapResponse,
    build_envelope,
    mtom_response,
    new_content_id,
    parse_envelope,
    read_multipart_related,
    resolve_xop,
    soap_endpoint,
    xop_include,
    xop_include_xml,
)
from xdsi.soap.mtom import parse_content_type
from xdsi.xmlparse import parse_xml

from tests.conftest import SHARED, need

ITI41 = SHARED / "messages" / "iti41"
SAMPLES = sorted(p.name for p in ITI41.glob("*.mime.txt")) if ITI41.is_dir() else []
PNR = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ECHO = "urn:test:EchoDocuments"
NS = {"env": SOAP12, "wsa": WSA}


def need_shared() -> None:
    need(ITI41.is_dir() and bool(SAMPLES), "ITI-41 wire samples not found at %s" % ITI41)


async def chunked(data: bytes, size: int):
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read(content_type: str, data: bytes, chunk: int = 65536, **kw):
    kw.setdefault("spool_dir", None)
    kw.setdefault("max_root_bytes", 1 << 20)
    kw.setdefault("max_total_bytes", None)
    return asyncio.run(read_multipart_related(content_type, chunked(data, chunk), **kw))


def soap(body: bytes, action: str = ECHO) -> bytes:
    return (
        b'<env:Envelope xmlns:env="%s" xmlns:wsa="%s"><env:Header><wsa:Action>%s</wsa:Action>'
        b"<wsa:MessageID>urn:uuid:7</wsa:MessageID></env:Header><env:Body>%s</env:Body></env:Envelope>"
        % (SOAP12.encode(), WSA.encode(), action.encode(), body)
    )


def build_package(
    boundary: str,
    root: bytes,
    parts: list[tuple[str, bytes]],
    *,
    nl: bytes = b"\r\n",
    root_cid: str = "<root@x>",
    part_cid=lambda cid: "<%s>" % cid,
    base64_parts: bool = False,
    preamble: bytes = b"",
    epilogue: bytes = b"",
) -> bytes:
    b = boundary.encode()
    out = [preamble, b"--" + b + nl]
    out.append(b"Content-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"" + nl)
    out.append(b"Content-ID: " + root_cid.encode() + nl + nl + root)
    for cid, data in parts:
        out.append(nl + b"--" + b + nl + b"Content-Type: application/octet-stream" + nl)
        if base64_parts:
            out.append(b"Content-Transfer-Encoding: base64" + nl)
            data = base64.encodebytes(data).replace(b"\n", nl)
        else:
            out.append(b"Content-Transfer-Encoding: binary" + nl)
        out.append(b"Content-ID: " + part_cid(cid).encode() + nl + nl + data)
    out.append(nl + b"--" + b + b"--" + nl + epilogue)
    return b"".join(out)


@pytest.fixture()
def spool(tmp_path: Path) -> Path:
    path = tmp_path / "spool"
    path.mkdir()
    return path


# --- content type parsing -------------------------------------------------------------------------


def test_parse_content_type_variants():
    mime, params = parse_content_type(
        'Multipart/Related; boundary="uuid:37+id=17"; type="application/xop+xml";start="<0.x@apache.org>";'
        ' start-info="application/soap+xml"; action="urn:a;b"'
    )
    assert mime == "multipart/related"
    assert params == {
        "boundary": "uuid:37+id=17",
        "type": "application/xop+xml",
        "start": "<0.x@apache.org>",
        "start-info": "application/soap+xml",
        "action": "urn:a;b",
    }
    assert parse_content_type("multipart/related;boundary=MIME_b;type=application/xop+xml")[1]["boundary"] == "MIME_b"
    assert parse_content_type(r'a/b; x="q\"uote"')[1]["x"] == 'q"uote'
    assert parse_content_type("") == ("", {})


# --- reader -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("nl", [b"\r\n", b"\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("chunk", [1, 3, 17, 4096, 1 << 20])
def test_reader_basic(nl, chunk, spool):
    doc1 = os.urandom(10_000) + b"\r\n--MIME" + nl + b"--MIMEBoundar"  # near-misses of the delimiter
    doc2 = b""
    data = build_package("MIMEBoundary_1", soap(b"<a/>"), [("d1@x", doc1), ("d2@x", doc2)], nl=nl)
    ctype = 'multipart/related; boundary="MIMEBoundary_1"; type="application/xop+xml"; start="<root@x>"'
    root, atts = read(ctype, data, chunk, spool_dir=str(spool))
    assert root == soap(b"<a/>")
    assert set(atts) == {"d1@x", "d2@x"}
    assert atts["d1@x"].read_bytes() == doc1
    assert atts["d1@x"].size == len(doc1) and atts["d1@x"].sha1 == hashlib.sha1(doc1).hexdigest()
    assert atts["d1@x"].content_type == "application/octet-stream"
    assert atts["d2@x"].size == 0 and atts["d2@x"].sha1 == hashlib.sha1(b"").hexdigest()
    assert b"".join(atts["d1@x"].iter_chunks(999)) == doc1
    assert all(Path(a.path).parent == spool for a in atts.values())
    for a in atts.values():
        a.delete()
        a.delete()  # idempotent
    assert list(spool.iterdir()) == []


def test_reader_start_and_cid_spellings(spool):
    data = build_package("b", soap(b"<a/>"), [("doc@x", b"DATA")], root_cid="root@x", part_cid=lambda c: c)
    for start in ("root@x", "<root@x>", "cid:root@x", " <root@x> "):
        root, atts = read('multipart/related; boundary=b; start="%s"' % start, data, spool_dir=str(spool))
        assert root.startswith(b"<env:Envelope") and atts["doc@x"].read_bytes() == b"DATA"
        atts["doc@x"].delete()
    # Without start the first part is the root, wherever the Content-ID points.
    root, atts = read("multipart/related; boundary=b", data, spool_dir=str(spool))
    assert root.startswith(b"<env:Envelope")
    atts["doc@x"].delete()


def test_wcf_style_package_with_url_encoded_cid(spool, tmp_path):
    # .NET/WCF: uuid boundary with "+id=", Content-IDs that are URLs, hrefs that URL-encode them.
    boundary = "uuid:376733a6-6a2d-4583-a687-04c08acf6a49+id=17"
    doc = os.urandom(2048)
    href = b"cid:http%3A%2F%2Ftempuri.org%2F1%2F636092163620000000"
    root_xml = soap(b'<x:D xmlns:x="urn:x"><xop:Include xmlns:xop="%s" href="%s"/></x:D>' % (XOP.encode(), href))
    data = b"\r\n" + build_package(
        boundary, root_xml, [("http://tempuri.org/1/636092163620000000", doc)], root_cid="<http://tempuri.org/0>"
    )
    ctype = (
        'multipart/related; type="application/xop+xml";start="<http://tempuri.org/0>";'
        'boundary="%s";start-info="application/soap+xml"' % boundary
    )
    root, atts = read(ctype, data, 100, spool_dir=str(spool))
    req = parse_envelope(parse_xml(root), atts)
    (element, att), = resolve_xop(req.body, atts).items()
    assert element.tag == "{urn:x}D" and att.read_bytes() == doc
    moved = att.move_to(tmp_path / "kept.bin")
    assert moved.read_bytes() == doc and att.path == moved and list(spool.iterdir()) == []


def test_reader_root_not_first(spool):
    b = b"--b\r\nContent-ID: <doc@x>\r\n\r\nDOC\r\n--b\r\nContent-ID: <root@x>\r\n\r\n<r/>\r\n--b--"
    root, atts = read('multipart/related; boundary=b; start="<root@x>"', b, spool_dir=str(spool))
    assert root == b"<r/>" and atts["doc@x"].read_bytes() == b"DOC"
    atts["doc@x"].delete()


@pytest.mark.parametrize("chunk", [1, 5, 64, 100_000])
def test_reader_base64_parts_preamble_padding_folding(chunk, spool):
    payload = os.urandom(5000)
    data = build_package(
        "=_Part_0+id=1:x",
        soap(b"<a/>"),
        [("p@x", payload)],
        base64_parts=True,
        preamble=b"This is a MIME preamble.\r\n\r\n",
        epilogue=b"epilogue junk --=_Part_0+id=1:x--\r\n",
    )
    data = data.replace(b"--=_Part_0+id=1:x\r\nContent-Type: application/octet", b"--=_Part_0+id=1:x  \t\r\nContent-Type:\r\n application/octet")
    root, atts = read('multipart/related; boundary="=_Part_0+id=1:x"', data, chunk, spool_dir=str(spool))
    assert atts["p@x"].read_bytes() == payload
    assert atts["p@x"].sha1 == hashlib.sha1(payload).hexdigest()
    assert atts["p@x"].content_type == "application/octet-stream"
    atts["p@x"].delete()


def test_reader_errors_clean_up_spool(spool):
    good = build_package("b", soap(b"<a/>"), [("d1@x", b"x" * 100_000), ("d2@x", b"y" * 100_000)])
    cases = {
        "truncated": (good[:-300], MultipartError, "truncated"),
        "missing start": (good, MultipartError, "start part"),
        "total too large": (good, PackageTooLarge, "exceeds"),
        "root too large": (good, PackageTooLarge, "root MIME part"),
        "bad base64": (good.replace(b"binary", b"base64", 1).replace(b"xxxx", b"x!x*", 1), MultipartError, "base64"),
        "base64 short": (good.replace(b"binary", b"base64", 1).replace(b"xxxx", b"xxx", 1), MultipartError, "base64"),
        "unknown encoding": (good.replace(b"binary", b"quoted-printable", 2), MultipartError, "quoted-printable"),
        "no parts": (b"--b--\r\n", MultipartError, "no parts"),
        "no cid": (good.replace(b"Content-ID: <d2@x>", b"X-Other: 1"), MultipartError, "no Content-ID"),
    }
    for name, (data, error, words) in cases.items():
        ctype = 'multipart/related; boundary="b"' + ('; start="<nope>"' if name == "missing start" else "")
        limits = {"max_total_bytes": 150_000} if name == "total too large" else {}
        if name == "root too large":
            limits["max_root_bytes"] = 100
        with pytest.raises(error) as info:
            read(ctype, data, 4096, spool_dir=str(spool), **limits)
        assert words in str(info.value), name
        assert list(spool.iterdir()) == [], name
    with pytest.raises(MultipartError):
        read("application/soap+xml", good)
    with pytest.raises(MultipartError):
        read('multipart/related; boundary=""', good)


def test_reader_large_parts(spool):
    """Parts of several MiB fed in network-sized chunks: same bytes, hash and size, for plain and base64
    parts, and nothing left behind when the package fails half way."""
    big = os.urandom(1 << 20) * 3 + b"tail"
    other = os.urandom(1_500_000)
    for base64_parts in (False, True):
        data = build_package("b", soap(b"<a/>"), [("big@x", big), ("other@x", other)], base64_parts=base64_parts)
        root, atts = read('multipart/related; boundary="b"', data, 65536, spool_dir=str(spool))
        for cid, content in (("big@x", big), ("other@x", other)):
            att = atts[cid]
            assert att.size == len(content) and att.sha1 == hashlib.sha1(content).hexdigest()
            assert att.read_bytes() == content
            att.delete()
        assert list(spool.iterdir()) == []
    data = build_package("b", soap(b"<a/>"), [("big@x", big)])
    with pytest.raises(PackageTooLarge):
        read('multipart/related; boundary="b"', data, 65536, spool_dir=str(spool), max_attachment_bytes=2 << 20)
    with pytest.raises(MultipartError, match="truncated"):
        read('multipart/related; boundary="b"', data[: 2 << 20], 65536, spool_dir=str(spool))
    assert list(spool.iterdir()) == []


# --- XOP --------------------------------------------------------------------------------------------


def _attachment(cid: str) -> Attachment:
    return Attachment(cid, "text/plain", Path("/nonexistent"), 0, hashlib.sha1(b"").hexdigest())


def test_resolve_xop_maps_parents_and_removes_includes():
    body = etree.fromstring(
        b'<x:R xmlns:x="urn:x" xmlns:xop="%s"><x:D id="1"><xop:Include href="cid:a%%40b"/></x:D>'
        b'<x:D id="2">\n  <xop:Include href="CID:c@d"/>\n</x:D><x:D id="3">inline</x:D></x:R>' % XOP.encode()
    )
    a, c = _attachment("a@b"), _attachment("c@d")
    mapping = resolve_xop(body, {"a@b": a, "c@d": c})
    assert {el.get("id"): att for el, att in mapping.items()} == {"1": a, "2": c}
    assert body.find(".//{%s}Include" % XOP) is None
    assert all(len(el) == 0 for el in mapping)


@pytest.mark.parametrize(
    "href, words",
    [("cid:missing@x", "missing@x"), ("http://evil/x", "not a cid"), ("", "not a cid")],
)
def test_resolve_xop_faults(href, words):
    body = etree.fromstring(b'<x:D xmlns:x="urn:x"><xop:Include xmlns:xop="%s" href="%s"/></x:D>' % (XOP.encode(), href.encode()))
    with pytest.raises(SoapFault) as info:
        resolve_xop(body, {"a@b": _attachment("a@b")})
    assert info.value.code == "Sender" and words in info.value.reason


def test_xop_include_helpers_round_trip():
    cid = new_content_id()
    assert "@" in cid and not cid.startswith("<")
    weird = "doc 1/é@urn:ihe:iti:xds-b:2007"
    for element in (xop_include(weird), etree.fromstring(xop_include_xml(weird))):
        parent = etree.Element("p")
        parent.append(element)
        assert element.tag == q(XOP, "Include")
        assert resolve_xop(parent, {weird: _attachment(weird)})[parent].content_id == weird


# --- writer -----------------------------------------------------------------------------------------


def test_writer_round_trip_all_source_kinds(tmp_path, spool):
    blobs = {name: os.urandom(n) for name, n in [("bytes", 1000), ("path", 3 << 20), ("aiter", 70_000), ("iter", 10), ("att", 0)]}
    file_path = tmp_path / "doc.bin"
    file_path.write_bytes(blobs["path"])
    att_path = tmp_path / "att.bin"
    att_path.write_bytes(blobs["att"])

    async def agen():
        yield blobs["aiter"][:5]
        yield b""
        yield blobs["aiter"][5:]

    parts = [
        ("bytes@x", "application/dicom", blobs["bytes"]),
        ("path@x", "application/octet-stream", file_path),
        ("aiter@x", "text/plain", agen()),
        ("iter@x", "text/plain", iter([blobs["iter"]])),
        ("att@x", "text/plain", Attachment("att@x", "text/plain", att_path, 0, "")),
    ]
    envelope = build_envelope("urn:r", "urn:uuid:1", b"<r>" + b"".join(b"<d>" + xop_include_xml(p[0]) + b"</d>" for p in parts) + b"</r>")

    async def run():
        header, body = mtom_response(envelope, parts, action="urn:r")
        mime, params = parse_content_type(header)
        assert mime == "multipart/related" and params["type"] == "application/xop+xml"
        assert params["start-info"] == "application/soap+xml" and params["action"] == "urn:r"
        return await read_multipart_related(header, body, spool_dir=str(spool), max_root_bytes=1 << 20, max_total_bytes=None)

    root, atts = asyncio.run(run())
    assert root == envelope
    assert {cid: a.read_bytes() for cid, a in atts.items()} == {p[0]: blobs[p[0].split("@")[0]] for p in parts}
    assert atts["bytes@x"].content_type == "application/dicom"
    req = parse_envelope(parse_xml(root))
    mapping = resolve_xop(req.body, atts)
    assert sorted(att.content_id for att in mapping.values()) == sorted(p[0] for p in parts)
    for a in atts.values():
        a.delete()


def test_writer_rejects_header_injection():
    with pytest.raises(ValueError):
        mtom_response(b"<e/>", [("a@x\r\nX-Evil: 1", "text/plain", b"")])


# --- the conformance wire samples -----------------------------------------------------------------


def sample(name: str) -> tuple[str, bytes]:
    data = (ITI41 / name).read_bytes()
    headers = ITI41 / name.replace(".mime.txt", ".http-headers.txt")
    if headers.exists():
        line = headers.read_text().strip()
        assert line.lower().startswith("content-type:")
        return line.split(":", 1)[1].strip(), data
    # nist-wire_pnr-mtom-multipart: "boundary is the first line"
    boundary = data.lstrip().split(b"\n", 1)[0].strip()[2:].decode()
    return 'multipart/related; boundary="%s"; type="application/xop+xml"; start-info="application/soap+xml"' % boundary, data


def expected_parts(content_type: str, data: bytes) -> list[tuple[str, bytes]]:
    """An independent, naive split of the sample (fine for these small text samples)."""
    boundary = parse_content_type(content_type)[1]["boundary"].encode()
    pieces = (b"\n" + data.replace(b"\r\n", b"\n")).split(b"\n--" + boundary)
    out = []
    for piece in pieces[1:]:
        if piece.startswith(b"--"):
            break
        head, _, body = piece.partition(b"\n\n")
        cid = [h.split(b":", 1)[1].strip().strip(b"<>").decode() for h in head.split(b"\n") if h.lower().startswith(b"content-id")]
        out.append((cid[0] if cid else "", body))
    return out


@pytest.mark.shared
@pytest.mark.parametrize("name", SAMPLES or ["(none)"])
@pytest.mark.parametrize("chunk", [1, 13, 1 << 16])
def test_conformance_wire_samples_parse(name, chunk, spool):
    need_shared()
    content_type, data = sample(name)
    root, atts = read(content_type, data, chunk, spool_dir=str(spool))
    expected = expected_parts(content_type, data)
    assert root.strip() == expected[0][1].strip()
    assert {cid: body for cid, body in expected[1:]} == {cid: a.read_bytes() for cid, a in atts.items()}
    for cid, body in expected[1:]:
        assert atts[cid].sha1 == hashlib.sha1(body).hexdigest() and atts[cid].size == len(body)
    req = parse_envelope(parse_xml(root, huge_text=True), atts)
    assert req.action == PNR
    assert req.body.tag == q(XDSB, "ProvideAndRegisterDocumentSetRequest")
    includes = req.body.findall(".//" + q(XOP, "Include"))
    if name == "nist-wire_pnr-mtom-multipart.mime.txt":
        # This toolkit sample's href (cid:1.6948...@apache.org) names no part of the package (the part is
        # <2.6948...>): a real client sending it must get a Sender fault naming the cid.
        with pytest.raises(SoapFault) as info:
            resolve_xop(req.body, atts)
        assert "1.694859fac46e21a68c012f8f4fe208a370fc32b6e07ae79f@apache.org" in info.value.reason
    else:
        mapping = resolve_xop(req.body, atts)
        assert len(mapping) == len(includes) == len(atts)
        for element, att in mapping.items():
            assert element.tag == q(XDSB, "Document") and att.sha1 == hashlib.sha1(att.read_bytes()).hexdigest()
    for a in atts.values():
        a.delete()
    assert list(spool.iterdir()) == []


# --- the endpoint, over real HTTP -----------------------------------------------------------------


async def echo_documents(request: SoapRequest) -> SoapResponse:
    """Send every XOP document back as an attachment, reporting the sha1/size computed on the way in."""
    docs, parts = [], []
    for element, att in request.xop.items():
        cid = new_content_id()
        docs.append(
            b'<t:Doc id="%s" sha1="%s" size="%d" cid="%s">' % (element.get("id", "").encode(), att.sha1.encode(), att.size, att.content_id.encode())
            + xop_include_xml(cid)
            + b"</t:Doc>"
        )
        parts.append((cid, att.content_type, att))
    inline = request.body.findall(".//" + q(XDSB, "Document"))
    body = b'<t:Echo xmlns:t="urn:test" includes="%d" inline="%d">%s</t:Echo>' % (len(request.xop), len(inline), b"".join(docs))
    return SoapResponse(action=ECHO + "Response", body=body, attachments=parts)


def plain_reply(request: SoapRequest) -> SoapResponse:
    return SoapResponse(action=PNR + "Response", body=b'<t:Ok xmlns:t="urn:test" n="%d"/>' % len(request.xop))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    spool = tmp_path_factory.mktemp("server-spool")
    handlers = {ECHO: echo_documents, PNR: plain_reply}
    app = Starlette(
        routes=[
            Route("/repo", soap_endpoint(handlers, spool_dir=str(spool), allow_inline_documents=True), methods=["POST"]),
            Route(
                "/registry",
                soap_endpoint(handlers, spool_dir=str(spool), mirror_mtom=False, max_attachment_bytes=1 << 20),
                methods=["POST"],
            ),
        ]
    )
    with serve(app) as url:
        yield url, spool


def wait_empty(path: Path, timeout: float = 5.0) -> list[Path]:
    deadline = time.monotonic() + timeout
    while list(path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.02)
    return list(path.iterdir())


@pytest.mark.shared
@pytest.mark.parametrize("name", SAMPLES or ["(none)"])
def test_conformance_wire_samples_over_http(server, name):
    need_shared()
    url, spool = server
    content_type, data = sample(name)
    response = httpx.post(url + "/repo", content=data, headers={"content-type": content_type}, timeout=30)
    if name == "nist-wire_pnr-mtom-multipart.mime.txt":
        assert response.status_code == 400 and b"no MIME part with Content-ID" in response.content
    else:
        assert response.status_code == 200, response.text[:1000]
        # ITI TF-2x V.3.6: an MTOM request gets an MTOM response.
        assert response.headers["content-type"].startswith("multipart/related")
        root, atts = read(response.headers["content-type"], response.content)
        reply = etree.fromstring(root)
        assert reply.findtext("env:Header/wsa:Action", namespaces=NS) == PNR + "Response"
        n = int(reply.find("env:Body", NS)[0].get("n"))
        assert n == len(expected_parts(content_type, data)) - 1 and atts == {}
    assert wait_empty(spool) == []


def test_registry_style_endpoint_answers_plain_soap(server):
    url, spool = server
    doc = b"hello"
    data = build_package("b", soap(b'<x:P xmlns:x="urn:ihe:iti:xds-b:2007"><x:Document id="D1">%s</x:Document></x:P>' % xop_include_xml("d@x"), PNR), [("d@x", doc)])
    response = httpx.post(url + "/registry", content=data, headers={"content-type": 'multipart/related; boundary="b"'})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/soap+xml")
    assert etree.fromstring(response.content).find("env:Body", NS)[0].get("n") == "1"
    # The attachment cap applies to the whole package.
    big = build_package("b", soap(b"<a/>", PNR), [("d@x", b"x" * (3 << 20))])
    response = httpx.post(url + "/registry", content=big, headers={"content-type": 'multipart/related; boundary="b"'})
    assert response.status_code == 413
    assert wait_empty(spool) == []


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


class PeakRss:
    """Peak RSS growth of this process (server thread included): VmHWM after a reset, plus sampling."""

    def __enter__(self):
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # reset VmHWM to the current RSS
            self.hwm_reset = True
        except OSError:
            self.hwm_reset = False
        self.base = _status_kb("VmRSS")
        self.peak = self.base
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)
        self.thread.start()
        return self

    def _sample(self):
        while not self.stop.wait(0.005):
            self.peak = max(self.peak, _status_kb("VmRSS"))

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        if self.hwm_reset:
            self.peak = max(self.peak, _status_kb("VmHWM"))
        self.growth_mb = (self.peak - self.base) / 1024


def test_mtom_round_trip_100mb_streams_with_flat_memory(server, tmp_path):
    url, spool = server
    size = 100 << 20
    block = os.urandom(1 << 20)
    expected = hashlib.sha1()
    for i in range(size >> 20):
        expected.update(i.to_bytes(8, "big") + block[8:])
    expected_sha1 = expected.hexdigest()
    boundary = "MIMEBoundary_%s" % os.urandom(8).hex()
    body_xml = soap(
        b'<xdsb:ProvideAndRegisterDocumentSetRequest xmlns:xdsb="%s"><xdsb:Document id="Doc1">%s</xdsb:Document>'
        b"</xdsb:ProvideAndRegisterDocumentSetRequest>" % (XDSB.encode(), xop_include_xml("big@x"))
    )

    async def upload():
        yield (
            b'--%s\r\nContent-Type: application/xop+xml; charset=UTF-8; type="application/soap+xml"\r\n'
            b"Content-ID: <root@x>\r\n\r\n" % boundary.encode()
        ) + body_xml
        yield b"\r\n--%s\r\nContent-Type: application/dicom\r\nContent-ID: <big@x>\r\n\r\n" % boundary.encode()
        for i in range(size >> 20):
            yield i.to_bytes(8, "big") + block[8:]
        yield b"\r\n--%s--\r\n" % boundary.encode()

    client_spool = tmp_path / "client"
    client_spool.mkdir()

    async def run():
        async with httpx.AsyncClient(timeout=120) as client:
            ctype = 'multipart/related; boundary="%s"; type="application/xop+xml"; start="<root@x>"' % boundary
            async with client.stream("POST", url + "/repo", content=upload(), headers={"content-type": ctype}) as response:
                assert response.status_code == 200
                return await read_multipart_related(
                    response.headers["content-type"], response.aiter_raw(), spool_dir=str(client_spool), max_root_bytes=1 << 20, max_total_bytes=None
                )

    t0 = time.perf_counter()
    with PeakRss() as rss:
        root, atts = asyncio.run(run())
    elapsed = time.perf_counter() - t0
    doc = etree.fromstring(root).find("env:Body", NS)[0][0]
    # The server computed sha1/size while streaming the upload to disk ...
    assert doc.get("sha1") == expected_sha1 and int(doc.get("size")) == size and doc.get("id") == "Doc1"
    # ... and streamed the same bytes back.
    (att,) = atts.values()
    assert att.sha1 == expected_sha1 and att.size == size and att.content_type == "application/dicom"
    att.delete()
    print("100 MB MTOM round trip: %.2f s, peak RSS growth %.1f MB (hwm reset %s)" % (elapsed, rss.growth_mb, rss.hwm_reset))
    assert rss.growth_mb < 64, "RSS grew by %.1f MB during a 100 MB MTOM round trip" % rss.growth_mb
    assert elapsed < 60
    assert wait_empty(spool) == []  # the request's spool file is gone once the reply is sent


# --- fuzzing -----------------------------------------------------------------------------------------

FUZZ_SPOOL = tempfile.mkdtemp(prefix="xdsi-fuzz-")


@pytest.fixture(scope="module", autouse=True)
def _remove_fuzz_spool():
    yield
    shutil.rmtree(FUZZ_SPOOL, ignore_errors=True)

TOKENS = [b"--", b"\r\n", b"\n", b"--B", b"--B--", b"\r\n--B\r\n", b"\n--B\n", b"Content-ID: <a>", b"Content-ID: <r>",
          b"\r\n\r\n", b"Content-Transfer-Encoding: base64\r\n", b"QUJD", b"=", b":", b" "]


def _assert_spool_empty():
    assert os.listdir(FUZZ_SPOOL) == []


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.lists(st.one_of(st.binary(max_size=40), st.sampled_from(TOKENS)), max_size=40).map(b"".join),
    boundary=st.one_of(st.just("B"), st.text(min_size=0, max_size=80)),
    start=st.one_of(st.none(), st.sampled_from(["<r>", "a", "<missing>"])),
    chunk=st.integers(1, 64),
    limits=st.sampled_from([(1 << 20, None), (10, 200)]),
)
def test_fuzz_reader_only_raises_documented_errors(data, boundary, start, chunk, limits):
    ctype = 'multipart/related; boundary="%s"' % boundary.replace('"', "")
    if start is not None:
        ctype += '; start="%s"' % start
    try:
        root, atts = read(ctype, data, chunk, spool_dir=FUZZ_SPOOL, max_root_bytes=limits[0], max_total_bytes=limits[1])
    except MultipartError:
        _assert_spool_empty()
        return
    assert isinstance(root, bytes)
    for att in atts.values():
        assert att.size == os.path.getsize(att.path)
        att.delete()
    _assert_spool_empty()


NEAR_MISSES = st.sampled_from([b"\r\n--", b"\n--", b"--", b"\r", b"\n", b"\r\n", b"--=_b", b"\r\n--=_b+id=1", b"\n--=_b+id=1x"])


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.lists(st.one_of(st.binary(max_size=300), NEAR_MISSES), max_size=12).map(b"".join), max_size=4),
    nl=st.sampled_from([b"\r\n", b"\n"]),
    chunk=st.integers(1, 700),
    b64=st.booleans(),
)
def test_fuzz_valid_packages_round_trip(payloads, nl, chunk, b64):
    boundary = "=_b+id=1"
    delimiter = nl + b"--" + boundary.encode()
    assume(all(delimiter not in p for p in payloads))
    parts = [("p%d@x" % i, p) for i, p in enumerate(payloads)]
    data = build_package(boundary, b"<root/>", parts, nl=nl, base64_parts=b64)
    root, atts = read('multipart/related; boundary="%s"; start="<root@x>"' % boundary, data, chunk, spool_dir=FUZZ_SPOOL)
    assert root == b"<root/>"
    assert {cid: a.read_bytes() for cid, a in atts.items()} == dict(parts)
    assert all(a.sha1 == hashlib.sha1(a.read_bytes()).hexdigest() for a in atts.values())
    for a in atts.values():
        a.delete()
    _assert_spool_empty()
