"""The repository driven by zeep loaded from the official IHE Document Repository WSDL, as an independent client
would: zeep binds the operations, builds the SOAP 1.2 envelope and WS-Addressing headers from the WSDL, sends
the document (as MTOM, through the transport below) and parses the MTOM ITI-43 answer. The ebRIM metadata is
built with lxml (zeep cannot serialize ebRIM substitution groups, see the dependency probe).

Three patches make zeep usable for XDS (dependency probe section 2), written here for this test: an MTOM
transport (zeep sends base64 inline only), the IHE WS-Addressing fixes (imported from the registry's zeep test)
and exact binary MIME parts (zeep strips CR/LF from both ends of every binary part it receives).
"""

from __future__ import annotations

import base64
import hashlib
import os
import uuid
from collections.abc import Iterator

import pytest
from lxml import etree

from tests.conftest import REPOSITORY_UID, need
from tests.test_repository import submission
from tests.test_repository_crash import registered_unique_ids
from tests.test_zeep_registry import IheAddressing
from xdsi import samples
from xdsi.ebxml.namespaces import LCM, XDSB, XOP, q
from xdsi.metadata import vocabulary as v
from xdsi.transform.ebrim_write import write_submission

zeep = pytest.importorskip("zeep")
from zeep.plugins import Plugin
from zeep.transports import Transport
from zeep.wsdl.attachments import Attachment as ZeepAttachment

BINDING = "{urn:ihe:iti:xds-b:2007}DocumentRepository_Binding"


class MtomTransport(Transport):
    """Send every ``xdsb:Document`` zeep serialized as base64 text as a binary MIME part referenced by an
    ``xop:Include`` (XOP 1.0, ITI TF-2x V.3.6); messages without documents go out as plain SOAP."""

    #: How many binary parts the last request carried (0: it went as plain SOAP).
    last_parts = 0

    def post_xml(self, address, envelope, headers):  # type: ignore[no-untyped-def]
        parts = []
        for doc in envelope.iter(q(XDSB, "Document")):
            data = base64.b64decode("".join((doc.text or "").split()), validate=True)
            cid = f"{uuid.uuid4().hex}@zeep.test"
            doc.text = None
            etree.SubElement(doc, q(XOP, "Include"), nsmap={"xop": XOP}, href="cid:" + cid)
            parts.append((cid, data))
        self.last_parts = len(parts)
        if not parts:
            return super().post_xml(address, envelope, headers)
        boundary = "zeep-" + uuid.uuid4().hex
        start = "root@zeep.test"
        body = [
            f"--{boundary}\r\nContent-Type: application/xop+xml; charset=UTF-8; type=\"application/soap+xml\"\r\n"
            f"Content-Transfer-Encoding: binary\r\nContent-ID: <{start}>\r\n\r\n".encode(),
            etree.tostring(envelope, xml_declaration=True, encoding="UTF-8"),
        ]
        for cid, data in parts:
            body += [f"\r\n--{boundary}\r\nContent-Type: application/octet-stream\r\n"
                     f"Content-Transfer-Encoding: binary\r\nContent-ID: <{cid}>\r\n\r\n".encode(), data]
        body.append(f"\r\n--{boundary}--\r\n".encode())
        action = envelope.findtext(".//{http://www.w3.org/2005/08/addressing}Action")
        headers = dict(headers)
        headers["Content-Type"] = (f'multipart/related; type="application/xop+xml"; boundary="{boundary}"; '
                                   f'start="<{start}>"; start-info="application/soap+xml"; action="{action}"')
        return self.post(address, b"".join(body), headers)


class ReplaceSubmitObjectsRequest(Plugin):
    """Put an lxml-built ``lcm:SubmitObjectsRequest`` in place of the empty one zeep serialized, keeping
    zeep's ``xdsb:Document`` elements."""

    def __init__(self) -> None:
        self.request: etree._Element | None = None

    def egress(self, envelope, http_headers, operation, binding_options):  # type: ignore[no-untyped-def]
        if self.request is not None:
            for old in envelope.iter(q(LCM, "SubmitObjectsRequest")):
                old.getparent().replace(old, self.request)
                break
        return envelope, http_headers


def _exact_content(self):  # type: ignore[no-untyped-def]
    """A MIME part's bytes as sent. zeep's own ``Attachment.content`` strips CR and LF from both ends of
    binary parts (python-zeep#1249), corrupting any document that starts or ends with a line break."""
    encoding = (self.headers.get("Content-Transfer-Encoding") or "").strip().lower()
    content = self._part.content
    return base64.b64decode(content) if encoding == "base64" else content


@pytest.fixture
def exact_attachments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ZeepAttachment, "content", property(_exact_content))


@pytest.fixture
def wsdl(shared_data):  # type: ignore[no-untyped-def]
    path = shared_data / "schemas" / "ihe-dcm4chee" / "wsdl" / "XDS.b_DocumentRepository.wsdl"
    need(path.exists(), f"official repository WSDL not found at {path}")
    return str(path)


@pytest.fixture
def zeep_client(wsdl: str) -> Iterator[tuple[object, ReplaceSubmitObjectsRequest]]:
    transport = MtomTransport()
    transport.session.trust_env = False  # loopback: no proxy from the environment
    replace = ReplaceSubmitObjectsRequest()
    client = zeep.Client(wsdl, transport=transport, plugins=[IheAddressing(), replace],
                         settings=zeep.Settings(strict=False, xml_huge_tree=True))
    yield client, replace
    transport.session.close()


def test_zeep_mtom_provide_and_retrieve_byte_exact(affinity_domain, zeep_client, exact_attachments) -> None:  # type: ignore[no-untyped-def]
    reg, repo = affinity_domain
    client, replace = zeep_client
    pid = samples.patient_id("ZEEPREPO001")
    reg.feed(pid)
    # Line breaks at both ends (what zeep's MIME parsing strips), and a NUL and the boundary prefix inside.
    content = b"\r\n" + os.urandom(50_000) + b"\x00\r\n--zeep-\r\n" + os.urandom(1000) + b"\r\n"
    sub = submission(pid, content)
    uid = sub.documents[0].unique_id
    service = client.create_service(BINDING, repo.url)

    # ITI-41: zeep binds the operation, the document goes as a binary MIME part (MTOM/XOP).
    replace.request = write_submission(sub)
    response = service["DocumentRepository_ProvideAndRegisterDocumentSet-b"](
        SubmitObjectsRequest={"RegistryObjectList": {}},
        Document=[{"id": sub.documents[0].id, "_value_1": content}],
    )
    replace.request = None
    assert response.status == v.RESPONSE_SUCCESS, response
    assert client.transport.last_parts == 1  # it did go as MTOM
    assert registered_unique_ids(reg.url, pid) == [uid]
    assert repo.repo.store.exists(hashlib.sha1(content).hexdigest())  # the bytes as sent, not base64 or trimmed

    # ITI-43 built with zeep's typed objects; the MTOM answer parsed by zeep (with exact parts).
    result = service["DocumentRepository_RetrieveDocumentSet"](
        DocumentRequest=[{"RepositoryUniqueId": REPOSITORY_UID, "DocumentUniqueId": uid}])
    assert result.RegistryResponse.status == v.RESPONSE_SUCCESS
    [doc] = result.DocumentResponse
    assert (doc.RepositoryUniqueId, doc.DocumentUniqueId, doc.mimeType) == (REPOSITORY_UID, uid, "text/plain")
    assert doc.Document == content
