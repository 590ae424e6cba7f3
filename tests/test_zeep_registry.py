"""The registry driven by zeep loaded from the official IHE Document Registry WSDL, as an independent
client would: zeep does the WSDL binding, SOAP 1.2 envelope, WS-Addressing and HTTP; the ebRIM payload of
ITI-42 is built with lxml (zeep cannot serialize ebRIM substitution groups, see the dependency probe)."""

from __future__ import annotations

import pytest
from lxml import etree

from tests.conftest import need
from xdsi import samples
from xdsi.ebxml.namespaces import RIM, SOAP12, WSA, q
from xdsi.metadata import vocabulary as v
from xdsi.transform.ebrim_write import write_submission

zeep = pytest.importorskip("zeep")
from zeep.plugins import Plugin  # noqa: E402


class IheAddressing(Plugin):
    """IHE wants mustUnderstand on wsa:Action and wsa:To and an anonymous wsa:ReplyTo; zeep sends
    ``action="None"`` in the Content-Type for WSDLs without a SOAP 1.1 soapAction."""

    def egress(self, envelope, http_headers, operation, binding_options):  # type: ignore[no-untyped-def]
        header = envelope.find(q(SOAP12, "Header"))
        for name in ("Action", "To"):
            el = header.find(q(WSA, name))
            if el is not None:
                el.set(q(SOAP12, "mustUnderstand"), "true")
        reply_to = etree.SubElement(header, q(WSA, "ReplyTo"))
        etree.SubElement(reply_to, q(WSA, "Address")).text = WSA + "/anonymous"
        action = header.findtext(q(WSA, "Action"))
        http_headers["Content-Type"] = f'application/soap+xml; charset=utf-8; action="{action}"'
        http_headers.pop("SOAPAction", None)
        return envelope, http_headers


class ReplaceBody(Plugin):
    """Put an lxml-built Body child in place of the (empty) one zeep serialized."""

    def __init__(self) -> None:
        self.body: etree._Element | None = None

    def egress(self, envelope, http_headers, operation, binding_options):  # type: ignore[no-untyped-def]
        if self.body is not None:
            body = envelope.find(q(SOAP12, "Body"))
            body[:] = [self.body]
        return envelope, http_headers


@pytest.fixture
def wsdl(shared_data):  # type: ignore[no-untyped-def]
    path = shared_data / "schemas" / "ihe-dcm4chee" / "wsdl" / "XDS.b_DocumentRegistry.wsdl"
    need(path.exists(), f"official registry WSDL not found at {path}")
    return str(path)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_zeep_register_and_stored_query(wsdl: str, registry_server) -> None:  # type: ignore[no-untyped-def]
    pid = samples.patient_id("ZEEP001")
    registry_server.feed(pid)
    replace = ReplaceBody()
    client = zeep.Client(wsdl, plugins=[IheAddressing(), replace],
                         settings=zeep.Settings(strict=False, xml_huge_tree=True))
    service = client.create_service("{urn:ihe:iti:xds-b:2007}DocumentRegistry_Binding_Soap12", registry_server.url)

    # ITI-42: zeep binds the operation and the WS-Addressing Action from the WSDL.
    sub = samples.imaging_study_submission(pid, modality="MR", region="HEAD")
    replace.body = write_submission(sub)
    response = service["DocumentRegistry_RegisterDocumentSet-b"](RegistryObjectList={})
    assert response.status == v.RESPONSE_SUCCESS
    replace.body = None

    # ITI-18 built entirely with zeep's typed objects.
    slots = [
        {"name": "$XDSDocumentEntryPatientId", "ValueList": {"_value_1": [{"Value": f"'{pid}'"}]}},
        {"name": "$XDSDocumentEntryStatus", "ValueList": {"_value_1": [{"Value": f"('{v.STATUS_APPROVED}')"}]}},
    ]
    result = service["DocumentRegistry_RegistryStoredQuery"](
        ResponseOption={"returnType": "LeafClass", "returnComposedObjects": True},
        AdhocQuery={"id": v.SQ_FIND_DOCUMENTS, "Slot": slots},
    )
    assert result.status == v.RESPONSE_SUCCESS
    # zeep cannot type ebRIM substitution groups; with strict=False they arrive as raw lxml elements.
    raw = result.RegistryObjectList._raw_elements
    entries = [el for el in raw if el.tag == q(RIM, "ExtrinsicObject")]
    assert len(entries) == 1
    unique_ids = [ei.get("value") for ei in entries[0].iter(q(RIM, "ExternalIdentifier"))
                  if ei.get("identificationScheme") == v.DE_UNIQUE_ID]
    assert unique_ids == [sub.documents[0].unique_id]
