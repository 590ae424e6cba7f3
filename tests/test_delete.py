"""ITI-62 Delete Document Set against the registry storage, on SQLite and PostgreSQL: whole submissions,
Folder memberships, the reference rules (UnresolvedReferenceException, ReferencesExistException,
XDSUnreferencedObjectException), atomicity, request-level errors, racing deletes, and the SOAP action."""

from __future__ import annotations

import threading

import httpx
import pytest
from lxml import etree
from sqlalchemy import func, select

from registry.delete import DELETE_ALL, delete
from registry.register import register
from registry.storage import schema as s
from registry.storage.engine import make_engine
from registry.storage.patients import PatientStore
from tests.conftest import start_registry
from xdsi import samples
from xdsi.ebxml.namespaces import LCM, RIM, RS, SOAP12, q
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Association, Folder
from xdsi.soap.client import request_envelope
from xdsi.transform.ebrim_write import write_submission
from xdsi.validate import errors as E

PID = samples.patient_id("DEL001")
ITI62 = "urn:ihe:iti:2010:DeleteDocumentSet"
ro = s.registry_object


@pytest.fixture
def engine(db_url: str):
    eng = make_engine(db_url)
    PatientStore(eng).upsert_patient(PID, {})
    yield eng
    eng.dispose()


def remove_request(*ids: str, scope: str | None = None, query: bool = False) -> etree._Element:
    root = etree.Element(q(LCM, "RemoveObjectsRequest"), nsmap={"lcm": LCM, "rim": RIM})
    if scope:
        root.set("deletionScope", scope)
    if query:
        etree.SubElement(root, q(RIM, "AdhocQuery"), id=v.SQ_GET_DOCUMENTS)
    refs = etree.SubElement(root, q(RIM, "ObjectRefList"))
    for ident in ids:
        etree.SubElement(refs, q(RIM, "ObjectRef"), id=ident)
    return root


def ids_present(engine, *ids: str) -> set[str]:
    with engine.connect() as c:
        return set(c.execute(select(ro.c.id).where(ro.c.id.in_(ids))).scalars())


def count(engine, table=ro) -> int:
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(table)).scalar_one()


def with_folder():
    """Document01 in Folder01, both in SubmissionSet01 (ids: SS, doc, folder, SS-doc, SS-folder, folder-doc,
    SS-(folder-doc))."""
    sub = samples.imaging_study_submission(PID)
    sub.folders.append(Folder(id="Folder01", unique_id=samples.uid(), patient_id=PID, codes=[samples.MODALITIES["CT"]]))
    sub.associations += [
        Association(id="SsFol", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                    target_object="Folder01"),
        Association(id="FolDoc", association_type=v.HAS_MEMBER, source_object="Folder01", target_object="Document01"),
        Association(id="SsFolDoc", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                    target_object="FolDoc"),
    ]
    return sub


def codes(errors) -> list[str]:
    return [e.code for e in errors]


def test_remove_a_whole_submission(engine):
    res = register(engine, write_submission(samples.imaging_study_submission(PID)))
    everything = list(res.assigned.values())
    assert count(engine, s.object_value) > 0
    assert delete(engine, remove_request(*everything)) == []
    assert ids_present(engine, *everything) == set()
    assert count(engine) == 0 and count(engine, s.object_value) == 0  # multi-valued attributes went too


def test_reference_rules_name_the_objects(engine):
    res = register(engine, write_submission(with_folder()))
    ids = res.assigned
    ss, doc, folder = ids["SubmissionSet01"], ids["Document01"], ids["Folder01"]

    errors = delete(engine, remove_request(doc, "urn:uuid:11111111-2222-3333-4444-999999999999"))
    assert codes(errors) == [E.UnresolvedReferenceException] and "11111111" in errors[0].message

    errors = delete(engine, remove_request(ss))
    assert set(codes(errors)) == {E.ReferencesExistException}
    assert len(errors) == 3 and all(ss in e.message for e in errors)  # its three HasMembers

    errors = delete(engine, remove_request(folder, ids["SsFol"], ids["FolDoc"], ids["SsFolDoc"], doc,
                                           ids["Association01"]))
    assert codes(errors) == [E.XDSUnreferencedObjectException] and f"SubmissionSet {ss}" in errors[0].message

    errors = delete(engine, remove_request(ids["FolDoc"]))
    assert codes(errors) == [E.ReferencesExistException] and ids["SsFolDoc"] in errors[0].message
    assert ids_present(engine, *ids.values()) == set(ids.values())  # all or nothing

    # Taking the document out of the Folder: the membership and its SubmissionSet link go together.
    with engine.connect() as c:
        before = c.execute(select(ro.c.last_update_time).where(ro.c.id == folder)).scalar_one()
    assert delete(engine, remove_request(ids["FolDoc"], ids["SsFolDoc"])) == []
    with engine.connect() as c:
        after = c.execute(select(ro.c.last_update_time).where(ro.c.id == folder)).scalar_one()
    assert after >= before
    assert ids_present(engine, *ids.values()) == set(ids.values()) - {ids["FolDoc"], ids["SsFolDoc"]}


def test_relationships_hold_their_documents(engine):
    original = register(engine, write_submission(samples.imaging_study_submission(PID))).assigned
    replacement = samples.imaging_study_submission(PID)
    replacement.associations.append(Association(id="rplc", association_type=v.RPLC, source_object="Document01",
                                                target_object=original["Document01"]))
    new = register(engine, write_submission(replacement)).assigned
    first_set = [original["Document01"], original["Association01"], original["SubmissionSet01"]]
    errors = delete(engine, remove_request(*first_set))
    assert codes(errors) == [E.ReferencesExistException] and new["rplc"] in errors[0].message
    errors = delete(engine, remove_request(new["Document01"], new["Association01"], new["SubmissionSet01"]))
    assert codes(errors) == [E.ReferencesExistException]
    assert delete(engine, remove_request(*first_set, new["rplc"])) == []
    assert ids_present(engine, *new.values()) == {new["Document01"], new["Association01"], new["SubmissionSet01"]}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("request_, problem", [
    (lambda doc: remove_request(doc, scope="urn:oasis:names:tc:ebxml-regrep:DeletionScopeType:DeleteRepositoryItemOnly"),
     "deletionScope"),
    (lambda doc: remove_request(doc, query=True), "AdhocQuery"),
    (lambda doc: remove_request(), "names no object"),
    (lambda doc: etree.Element(q(LCM, "SubmitObjectsRequest")), "RemoveObjectsRequest"),
])
def test_bad_requests(engine, request_, problem):
    res = register(engine, write_submission(samples.imaging_study_submission(PID)))
    errors = delete(engine, request_(res.assigned["Document01"]))
    assert codes(errors) == [E.InvalidRequestException] and problem in errors[0].message
    assert count(engine) == 3
    assert delete(engine, remove_request(*res.assigned.values(), scope=DELETE_ALL)) == []


def test_racing_deletes_of_the_same_objects_have_one_winner(engine):
    ids = list(register(engine, write_submission(samples.imaging_study_submission(PID))).assigned.values())
    results: list = [None] * 4
    barrier = threading.Barrier(len(results))

    def go(i: int) -> None:
        barrier.wait()
        results[i] = delete(engine, remove_request(*ids))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(results))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(len(r) for r in results) == [0, 3, 3, 3]
    assert all(codes(r) == [E.UnresolvedReferenceException] * 3 for r in results if r)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_delete_document_set_over_soap(db_url):
    with start_registry(db_url) as reg:
        reg.feed(PID)
        res = register(reg.engine, write_submission(samples.imaging_study_submission(PID)))

        def post(body: etree._Element) -> etree._Element:
            resp = httpx.post(reg.url, content=etree.tostring(request_envelope(body, ITI62, reg.url)), timeout=30,
                              headers={"Content-Type": f'application/soap+xml; charset=UTF-8; action="{ITI62}"'})
            assert resp.status_code == 200, resp.text
            env = etree.fromstring(resp.content)
            action = env.find(f"{q(SOAP12, 'Header')}/{{http://www.w3.org/2005/08/addressing}}Action").text
            assert action == ITI62 + "Response"
            return env.find(q(SOAP12, "Body"))[0]

        answer = post(remove_request(res.assigned["SubmissionSet01"]))
        assert answer.tag == q(RS, "RegistryResponse") and answer.get("status") == v.RESPONSE_FAILURE
        assert [e.get("errorCode") for e in answer.iter(q(RS, "RegistryError"))] == [E.ReferencesExistException]
        assert post(remove_request(*res.assigned.values())).get("status") == v.RESPONSE_SUCCESS
        wsdl = etree.fromstring(httpx.get(reg.url + "?wsdl").content)
        actions = {el.get("{http://www.w3.org/2007/05/addressing/metadata}Action") for el in wsdl.iter()}
        assert {ITI62, ITI62 + "Response", "urn:ihe:iti:2010:UpdateDocumentSet",
                "urn:ihe:iti:2010:UpdateDocumentSetResponse"} <= actions
