"""ITI-8 against the real registry: patients fed over MLLP are accepted by ITI-42, an A40 merge moves the
subsumed patient's entries to the surviving id, where ITI-18 finds them, and the old id is refused."""

from __future__ import annotations

import httpx
from lxml import etree

from registry.mllp import send_mllp
from registry.patient_feed import build_adt
from xdsi import samples
from xdsi.ebxml.namespaces import RIM, RS, q
from xdsi.ebxml.query import find_documents
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import call
from xdsi.transform.ebrim_write import write_submission

ITI42 = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"


def entries(url: str, pid: str) -> list[etree._Element]:
    resp = call(url, ITI18, find_documents(pid))
    return resp.findall(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ExtrinsicObject')}")


def patient_ids(entry: etree._Element) -> list[str]:
    return [ei.get("value") for ei in entry.iter(q(RIM, "ExternalIdentifier"))
            if ei.get("identificationScheme") == v.DE_PATIENT_ID]


def test_feed_register_merge_query(registry_server) -> None:  # type: ignore[no-untyped-def]
    surviving, subsumed = samples.patient_id("MRG-KEEP"), samples.patient_id("MRG-OLD")
    for pid, name in ((surviving, "Keep^Kim"), (subsumed, "Old^Kim")):
        ack = send_mllp(*registry_server.mllp, build_adt("A01", pid, name=name, birth_date="19800101", sex="F"))
        assert b"MSA|AA" in ack
    with httpx.Client(timeout=30) as client:
        for pid in (surviving, subsumed, subsumed):
            resp = call(registry_server.url, ITI42, write_submission(samples.imaging_study_submission(pid)),
                        client=client)
            assert resp.get("status") == v.RESPONSE_SUCCESS
    assert len(entries(registry_server.url, subsumed)) == 2

    ack = send_mllp(*registry_server.mllp, build_adt("A40", surviving, prior_id=subsumed))
    assert b"MSA|AA" in ack

    merged = entries(registry_server.url, surviving)
    assert len(merged) == 3
    assert all(patient_ids(e) == [surviving] for e in merged)
    assert entries(registry_server.url, subsumed) == []
    refused = call(registry_server.url, ITI42, write_submission(samples.imaging_study_submission(subsumed)))
    assert [e.get("errorCode") for e in refused.iter(q(RS, "RegistryError"))] == ["XDSUnknownPatientId"]


def test_feed_rejects_garbage_with_an_hl7_error(registry_server) -> None:  # type: ignore[no-untyped-def]
    ack = send_mllp(*registry_server.mllp, b"MSH|^~\\&|A|B|C|D|20250101||ORU^R01|1|P|2.5\rOBX|1|TX|x\r")
    assert b"MSA|AR" in ack and b"ERR|" in ack
