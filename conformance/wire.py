"""SOAP 1.2 + WS-Addressing on the wire: wrap a Body child, send it (MTOM/XOP for documents), read the answer.

ITI TF-2x Appendix V: every request carries ``wsa:Action`` and ``wsa:To`` with ``mustUnderstand="true"``, a
``wsa:MessageID`` and an anonymous ``wsa:ReplyTo``. Documents of ITI-41/RAD-68 travel as XOP attachments.
"""

from __future__ import annotations

import base64
import copy
import re
import uuid
from dataclasses import dataclass, field

import httpx
from lxml import etree

from xdsi.ebxml.namespaces import SOAP12, XDSB, XOP, q
from xdsi.soap.client import request_envelope as envelope  # the one envelope builder

ACTIONS = {
    "ITI-42": "urn:ihe:iti:2007:RegisterDocumentSet-b",
    "ITI-18": "urn:ihe:iti:2007:RegistryStoredQuery",
    "ITI-57": "urn:ihe:iti:2010:UpdateDocumentSet",
    "ITI-62": "urn:ihe:iti:2010:DeleteDocumentSet",
    "ITI-41": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",
    "RAD-68": "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b",  # RAD-68 reuses the ITI-41 action
    "ITI-43": "urn:ihe:iti:2007:RetrieveDocumentSet",
    "RAD-69": "urn:ihe:rad:2009:RetrieveImagingDocumentSet",
}
#: Which actor URL each transaction goes to.
ACTOR_OF = {"ITI-42": "registry", "ITI-18": "registry", "ITI-57": "registry", "ITI-62": "registry",
            "ITI-41": "repository", "ITI-43": "repository", "RAD-68": "repository",
            "RAD-69": "imaging_source"}
#: Transactions whose requests carry documents (xdsb:Document), sent as MTOM/XOP unless asked otherwise.
DOCUMENT_TRANSACTIONS = {"ITI-41", "RAD-68"}

SOAP_CONTENT_TYPE = "application/soap+xml; charset=UTF-8"

# Hardened parser (no entities, no network). huge_tree because inline base64 documents exceed libxml2's
# 10 MB text-node limit; the runner only reads its own data and the actor under test's answers.
PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=True)


@dataclass
class SoapResponse:
    """What came back: HTTP status, the SOAP Body child (``None`` if the answer was not SOAP) and attachments."""

    http_status: int
    body: etree._Element | None
    content_type: str = ""
    raw: bytes = b""
    attachments: dict[str, bytes] = field(default_factory=dict)

    @property
    def is_fault(self) -> bool:
        return self.body is not None and etree.QName(self.body).localname == "Fault"


def load_message(path) -> etree._Element:
    """The Body child stored in a conformance message file."""
    return etree.parse(str(path), PARSER).getroot()


def to_xop(env: etree._Element) -> list[tuple[str, bytes]]:
    """Move every inline base64 ``xdsb:Document`` into an attachment (in place); return ``(cid, bytes)`` parts."""
    parts = []
    for n, doc in enumerate(env.iter(q(XDSB, "Document")), 1):
        if doc.find(q(XOP, "Include")) is not None:
            continue
        cid = f"doc{n}.{uuid.uuid4().hex}@xdsi.conformance"
        parts.append((cid, base64.b64decode("".join((doc.text or "").split()))))
        doc.text = None
        etree.SubElement(doc, q(XOP, "Include"), {"href": f"cid:{cid}"}, nsmap={"xop": XOP})
    return parts


def encode(env: etree._Element, action: str, *, mtom: bool) -> tuple[bytes, str]:
    """Serialise the envelope: plain SOAP 1.2, or an MTOM/XOP ``multipart/related`` package. Returns body and
    Content-Type."""
    if not mtom:
        return etree.tostring(env, xml_declaration=True, encoding="UTF-8"), f'{SOAP_CONTENT_TYPE}; action="{action}"'
    env = copy.deepcopy(env)
    parts = to_xop(env)
    boundary = f"MIMEBoundary_{uuid.uuid4().hex}"
    root_id = f"root.{uuid.uuid4().hex}@xdsi.conformance"
    chunks = [f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; "
              f'type="application/soap+xml"\r\nContent-Transfer-Encoding: binary\r\n'
              f"Content-ID: <{root_id}>\r\n\r\n".encode(),
              etree.tostring(env, xml_declaration=True, encoding="UTF-8")]
    for cid, data in parts:
        chunks += [f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                   f"Content-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n".encode(), data]
    chunks.append(f"\r\n--{boundary}--\r\n".encode())
    content_type = (f'multipart/related; boundary="{boundary}"; type="application/xop+xml"; start="<{root_id}>"; '
                    f'start-info="application/soap+xml"; action="{action}"')
    return b"".join(chunks), content_type


def _param(content_type: str, name: str) -> str | None:
    m = re.search(rf'(?:^|;)\s*{name}\s*=\s*(?:"([^"]*)"|([^;\s]+))', content_type, re.I)
    return (m.group(1) if m.group(1) is not None else m.group(2)) if m else None


def split_multipart(content: bytes, content_type: str) -> tuple[bytes, dict[str, bytes]]:
    """Root part and attachments (by Content-ID without ``<>``) of a ``multipart/related`` body, in memory."""
    boundary = _param(content_type, "boundary")
    if not boundary:
        raise ValueError("multipart response without a boundary parameter")
    start = (_param(content_type, "start") or "").strip("<>")
    parts: dict[str, bytes] = {}
    # A delimiter line is CRLF "--" boundary ["--"] [blanks] CRLF (RFC 2046 5.1.1); its CRLF is not part data.
    delimiter = re.compile(rb"\r\n--" + re.escape(boundary.encode()) + rb"(--)?[ \t]*(?:\r\n|$)")
    content = b"\r\n" + content
    marks = list(delimiter.finditer(content))
    ends = [m.start() for m in marks[1:]] + [len(content)]  # tolerate a missing closing delimiter
    for n, (mark, end) in enumerate(zip(marks, ends)):
        if mark.group(1):  # closing delimiter
            break
        chunk = content[mark.end():end]
        head, _, data = (b"", b"", chunk[2:]) if chunk.startswith(b"\r\n") else chunk.partition(b"\r\n\r\n")
        cid = re.search(rb"(?im)^content-id:\s*<?([^>\r\n]*)>?", head)
        parts[cid.group(1).decode().strip() if cid else f"part{n}"] = data
    if not parts:
        raise ValueError("multipart response without parts")
    root_id = start if start in parts else next(iter(parts))
    return parts.pop(root_id), parts


def parse_response(http_status: int, content: bytes, content_type: str) -> SoapResponse:
    """Body child of a SOAP 1.2 answer (plain or MTOM); ``body=None`` when the answer is not a SOAP envelope."""
    attachments: dict[str, bytes] = {}
    xml = content
    if content_type.lower().startswith("multipart/"):
        try:
            xml, attachments = split_multipart(content, content_type)
        except ValueError:
            return SoapResponse(http_status, None, content_type, content)
    try:
        root = etree.fromstring(xml, PARSER)
    except etree.XMLSyntaxError:
        return SoapResponse(http_status, None, content_type, content, attachments)
    body = root.find(q(SOAP12, "Body")) if etree.QName(root).localname == "Envelope" else None
    child = body[0] if body is not None and len(body) else None
    return SoapResponse(http_status, child, content_type, content, attachments)


def send(client: httpx.Client, url: str, body: etree._Element, transaction: str, *, inline: bool = False
         ) -> SoapResponse:
    """POST one transaction to ``url`` and return the parsed answer."""
    action = ACTIONS[transaction]
    mtom = transaction in DOCUMENT_TRANSACTIONS and not inline
    data, content_type = encode(envelope(body, action, url), action, mtom=mtom)
    resp = client.post(url, content=data, headers={"Content-Type": content_type})
    return parse_response(resp.status_code, resp.content, resp.headers.get("content-type", ""))
