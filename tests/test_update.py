"""ITI-57 Update Document Set against the registry storage, on SQLite and PostgreSQL: new versions of
DocumentEntries and Folders, status changes, submitted associations, association propagation, patient id
rules, the error codes, ITI-18 visibility of versions, and racing updates (threads, and over HTTP)."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace

import httpx
import pytest
from lxml import etree
from sqlalchemy import select

from registry.register import register, reread
from registry.storage import schema as s
from registry.storage.engine import make_engine
from registry.storage.patients import PatientStore
from registry.storedquery import run_stored_query
from registry.update import update
from tests.conftest import start_registry
from xdsi import samples
from xdsi.ebxml.namespaces import RIM, RS, SOAP12, q
from xdsi.ebxml.query import adhoc_query, find_documents, quote
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import (
    Association,
    DocumentEntry,
    Folder,
    Submission,
    SubmissionSet,
)
from xdsi.soap.client import request_envelope
from xdsi.transform.ebrim_read import read_submission
from xdsi.transform.ebrim_write import write_submission
from xdsi.validate import errors as E
from xdsi.validate.update import plan_update

PID = samples.patient_id("UPD001")
OTHER = samples.patient_id("UPD002")
A, D = v.STATUS_APPROVED, v.STATUS_DEPRECATED
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"


def new_uuid() -> str:
    return "urn:uuid:" + str(uuid.uuid4())


@pytest.fixture
def engine(db_url: str):
    eng = make_engine(db_url)
    store = PatientStore(eng)
    store.upsert_patient(PID, {})
    store.upsert_patient(OTHER, {})
    yield eng
    eng.dispose()


def row(engine, object_id: str):
    with engine.connect() as c:
        return c.execute(select(s.registry_object).where(s.registry_object.c.id == object_id)).one()


def rows_where(engine, *where):
    with engine.connect() as c:
        return c.execute(select(s.registry_object).where(*where).order_by(s.registry_object.c.pk)).all()


def codes(result) -> list[str]:
    return [e.code for e in result.errors if e.is_error]


def registered(engine, *, pid: str = PID, folder: bool = False):
    """Register one document (and a Folder holding it); returns (the submission as sent, assigned ids)."""
    sub = samples.imaging_study_submission(pid)
    if folder:
        sub.folders.append(Folder(id="Folder01", unique_id=samples.uid(), patient_id=pid, title="Priors",
                                  codes=[samples.MODALITIES["CT"]]))
        sub.associations += [
            Association(id="Association02", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                        target_object="Folder01"),
            Association(id="Association03", association_type=v.HAS_MEMBER, source_object="Folder01",
                        target_object="Document01"),
            Association(id="Association04", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                        target_object="Association03"),
        ]
    res = register(engine, write_submission(sub))
    assert res.ok, res.errors
    return sub, res.assigned


def submission_set(pid: str = PID) -> SubmissionSet:
    return SubmissionSet(id="SubmissionSet01", unique_id=samples.uid(), source_id=samples.DEMO_SOURCE_ID,
                         patient_id=pid, submission_time="20250102120000",
                         content_type_code=samples.MODALITIES["CT"])


def new_version(obj, lid: str, previous: str = "1", *, propagate: str | None = None, **changes) -> Submission:
    """An ITI-57 request with a new version of ``obj`` (DocumentEntry or Folder) replacing ``previous``."""
    version = replace(obj, id=new_uuid(), lid=lid, status="", version="", **changes)
    member = Association(id="hm", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                         target_object=version.id, previous_version=previous,
                         submission_set_status="Original" if isinstance(obj, DocumentEntry) else "")
    if propagate is not None:
        member.extra_slots["AssociationPropagation"] = [propagate]
    sub = Submission(submission_set=submission_set(version.patient_id), associations=[member])
    (sub.documents if isinstance(obj, DocumentEntry) else sub.folders).append(version)
    return sub


def status_change(target: str, original: str, new: str, pid: str = PID, sub: Submission | None = None) -> Submission:
    sub = sub or Submission(submission_set=submission_set(pid))
    sub.associations.append(Association(id=f"uas{len(sub.associations)}",
                                        association_type=v.UPDATE_AVAILABILITY_STATUS,
                                        source_object="SubmissionSet01", target_object=target,
                                        original_status=original, new_status=new))
    return sub


def submitted(kind: str, source: str, target: str, pid: str = PID) -> Submission:
    sub = Submission(submission_set=submission_set(pid))
    sub.associations += [
        Association(id="sa", association_type=v.SUBMIT_ASSOCIATION, source_object="SubmissionSet01",
                    target_object="new"),
        Association(id="new", association_type=kind, source_object=source, target_object=target),
    ]
    return sub


def query(engine, query_id: str, **params: str) -> etree._Element:
    req = adhoc_query(query_id, {"$" + k: val for k, val in params.items()})
    with engine.connect() as c:
        return etree.fromstring(run_stored_query(c, req))


def found(answer: etree._Element, tag: str = "ExtrinsicObject") -> dict[str, tuple[str, str, str]]:
    """id -> (lid, versionName, status suffix) of the objects of one kind in a query answer."""
    assert answer.get("status").endswith("Success"), etree.tostring(answer)
    out = {}
    for el in answer.iter(q(RIM, tag)):
        vi = el.find(q(RIM, "VersionInfo"))
        out[el.get("id")] = (el.get("lid"), vi.get("versionName") if vi is not None else "",
                             el.get("status").rsplit(":", 1)[-1])
    return out


# --- new versions ---------------------------------------------------------------------------------------


def test_new_version_of_document_entry_deprecates_the_old_one_and_shows_in_queries(engine):
    sub, ids = registered(engine)
    original = ids["Document01"]
    req = new_version(sub.documents[0], original, title="Corrected title", comments="typo fixed")
    result = update(engine, write_submission(req))
    assert result.ok, result.errors
    new_id = req.documents[0].id
    old, new = row(engine, original), row(engine, new_id)
    assert (old.lid, old.version, old.status) == (original, 1, "D")
    assert (new.lid, new.version, new.status) == (original, 2, "A")
    de = reread(new.xml)
    assert de.title == "Corrected title" and de.version == "2" and de.lid == original and de.status == A
    assert reread(old.xml).status == D
    # The SubmissionSet and its HasMember (with PreviousVersion) are stored; the update SubmissionSet has it.
    ss_id = result.assigned["SubmissionSet01"]
    [member] = rows_where(engine, s.registry_object.c.source_object == ss_id)
    assert member.target_object == new_id and reread(member.xml).previous_version == "1"

    uid = quote(sub.documents[0].unique_id)
    everything = found(query(engine, v.SQ_GET_DOCUMENTS, XDSDocumentEntryUniqueId=f"({uid})", MetadataLevel="2"))
    assert everything == {original: (original, "1", "Deprecated"), new_id: (original, "2", "Approved")}
    latest = found(query(engine, v.SQ_GET_DOCUMENTS, XDSDocumentEntryUniqueId=f"({uid})"))
    assert latest == {new_id: (original, "2", "Approved")}
    by_lid = found(query(engine, v.SQ_GET_DOCUMENTS, XDSDocumentEntryLogicalID=f"({quote(original)})",
                         MetadataLevel="2"))
    assert set(by_lid) == {original, new_id}
    with engine.connect() as c:
        answer = etree.fromstring(run_stored_query(c, find_documents(PID, statuses=(A, D))))
    assert set(found(answer)) == {new_id}  # level 1: only the latest version


def test_second_update_of_the_same_version_gets_a_version_error(engine):
    sub, ids = registered(engine)
    first = update(engine, write_submission(new_version(sub.documents[0], ids["Document01"], title="v2")))
    assert first.ok, first.errors
    stale = update(engine, write_submission(new_version(sub.documents[0], ids["Document01"], title="v2 again")))
    assert codes(stale) == [E.XDSMetadataVersionError]
    assert "PreviousVersion 1" in stale.errors[0].message and "version 2" in stale.errors[0].message
    third = update(engine, write_submission(new_version(sub.documents[0], ids["Document01"], "2", title="v3")))
    assert third.ok, third.errors
    versions = rows_where(engine, s.registry_object.c.lid == ids["Document01"])
    assert [(r.version, r.status) for r in versions] == [(1, "D"), (2, "D"), (3, "A")]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_update_errors_name_the_object_and_field(engine):
    sub, ids = registered(engine)
    de = sub.documents[0]
    unknown = update(engine, write_submission(new_version(de, new_uuid())))
    assert codes(unknown) == [E.XDSMetadataVersionError] and "no object with logicalId" in unknown.errors[0].message

    initial = new_version(de, ids["Document01"])
    initial.documents[0].lid = ""
    res = update(engine, write_submission(initial))
    assert codes(res) == [E.XDSMetadataUpdateError] and "initial version" in res.errors[0].message

    res = update(engine, write_submission(new_version(de, ids["Document01"], unique_id=samples.uid())))
    assert codes(res) == [E.XDSMetadataIdentifierError] and "uniqueId" in res.errors[0].message

    res = update(engine, write_submission(new_version(de, ids["Document01"], object_type=v.ON_DEMAND_DOCUMENT_ENTRY,
                                                      hash="", size="")))
    assert E.XDSMetadataUpdateError in codes(res) and "objectType" in res.errors[-1].message

    incomplete = new_version(de, ids["Document01"], class_code=None)
    res = update(engine, write_submission(incomplete))
    assert codes(res) == [E.XDSRegistryMetadataError] and "classCode" in res.errors[0].message

    no_previous = new_version(de, ids["Document01"])
    no_previous.associations[0].previous_version = ""
    res = update(engine, write_submission(no_previous))
    assert codes(res) == [E.XDSMetadataUpdateError] and "PreviousVersion" in res.errors[0].message

    twice = new_version(de, ids["Document01"])
    again = replace(twice.documents[0], id=new_uuid())
    twice.documents.append(again)
    twice.associations.append(replace(twice.associations[0], id="hm2", target_object=again.id))
    res = update(engine, write_submission(twice))
    assert codes(res) == [E.XDSMetadataUpdateOperationError]

    entry_uuid_reused = new_version(de, ids["Document01"])
    entry_uuid_reused.documents[0].id = ids["Document01"]
    entry_uuid_reused.documents[0].lid = new_uuid()
    entry_uuid_reused.associations[0].target_object = ids["Document01"]
    res = update(engine, write_submission(entry_uuid_reused))
    assert E.XDSMetadataIdentifierError in codes(res)

    unknown_patient = samples.patient_id("NOBODY")
    res = update(engine, write_submission(new_version(de, ids["Document01"], patient_id=unknown_patient)))
    assert E.XDSUnknownPatientId in codes(res)

    register_style = Submission(submission_set=submission_set(), associations=[Association(
        id="hm", association_type=v.HAS_MEMBER, source_object="SubmissionSet01", target_object=ids["Document01"],
        submission_set_status="Reference")])
    res = update(engine, write_submission(register_style))
    assert codes(res) == [E.XDSMetadataUpdateOperationError] and "not part of an Update" in res.errors[0].message
    # Nothing of all that changed the registry.
    assert [(r.version, r.status) for r in rows_where(engine, s.registry_object.c.lid == ids["Document01"])] == [
        (1, "A")]


def test_new_version_of_a_deprecated_document_entry_stays_deprecated(engine):
    sub, ids = registered(engine)
    assert update(engine, write_submission(status_change(ids["Document01"], A, D))).ok
    res = update(engine, write_submission(new_version(sub.documents[0], ids["Document01"], title="fixed")))
    assert res.ok, res.errors
    assert [r.status for r in rows_where(engine, s.registry_object.c.lid == ids["Document01"])] == ["D", "D"]


# --- status changes --------------------------------------------------------------------------------------


def test_status_changes_of_a_document_entry(engine):
    sub, ids = registered(engine)
    doc = ids["Document01"]
    res = update(engine, write_submission(status_change(doc, A, D)))
    assert res.ok, res.errors
    assert row(engine, doc).status == "D" and reread(row(engine, doc).xml).status == D
    # The trigger association is applied, not stored.
    assert not rows_where(engine, s.registry_object.c.assoc_type == v.UPDATE_AVAILABILITY_STATUS)

    wrong = update(engine, write_submission(status_change(doc, A, D)))
    assert codes(wrong) == [E.XDSMetadataUpdateError] and "OriginalStatus is Approved" in wrong.errors[0].message
    assert update(engine, write_submission(status_change(doc, D, A))).ok
    assert row(engine, doc).status == "A"

    # Once a newer version exists, the old version's status is frozen.
    assert update(engine, write_submission(new_version(sub.documents[0], doc, title="v2"))).ok
    old = update(engine, write_submission(status_change(doc, D, A)))
    assert codes(old) == [E.XDSMetadataVersionError] and "not the latest version" in old.errors[0].message

    other = update(engine, write_submission(status_change(doc, D, A, pid=OTHER)))
    assert E.XDSMetadataVersionError in codes(other) or E.XDSPatientIdDoesNotMatch in codes(other)
    ss = update(engine, write_submission(status_change(ids["SubmissionSet01"], A, D)))
    assert codes(ss) == [E.XDSMetadataUpdateError] and "SubmissionSet" in ss.errors[0].message
    gone = update(engine, write_submission(status_change(new_uuid(), A, D)))
    assert codes(gone) == [E.XDSMetadataUpdateError]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("original, new, previous, problem", [
    ("", D, "", "OriginalStatus slot is missing"),
    (A, "", "", "NewStatus slot is missing"),
    (A, "urn:oasis:names:tc:ebxml-regrep:StatusType:Withdrawn", "", "NewStatus"),
    ("Approved", D, "", "OriginalStatus 'Approved'"),
    (A, A, "", "nothing would change"),
    (A, D, "1", "PreviousVersion"),
])
def test_status_change_syntax(engine, original, new, previous, problem):
    _, ids = registered(engine)
    req = status_change(ids["Document01"], original, new)
    req.associations[0].previous_version = previous
    res = update(engine, write_submission(req))
    assert E.XDSMetadataUpdateOperationError in codes(res)
    assert any(problem in e.message for e in res.errors), res.errors
    assert row(engine, ids["Document01"]).status == "A"


def test_new_version_and_its_status_in_one_request(engine):
    """ITI57-015: the status change applies to the new version; the previous one is Deprecated as usual."""
    sub, ids = registered(engine, folder=True)
    req = new_version(sub.folders[0], ids["Folder01"], title="Renamed")
    new_folder = req.folders[0].id
    status_change(new_folder, A, D, sub=req)
    res = update(engine, write_submission(req))
    assert res.ok, res.errors
    assert [(r.version, r.status) for r in rows_where(engine, s.registry_object.c.lid == ids["Folder01"])] == [
        (1, "D"), (2, "D")]
    # OriginalStatus must be the new version's status (Approved): NIST 20004 step 3.
    sub2, ids2 = registered(engine)
    req = new_version(sub2.documents[0], ids2["Document01"])
    status_change(req.documents[0].id, D, A, sub=req)
    assert codes(update(engine, write_submission(req))) == [E.XDSMetadataUpdateError]


# --- folders and association propagation -----------------------------------------------------------------


def test_folder_update_carries_its_members_over_unless_told_not_to(engine):
    sub, ids = registered(engine, folder=True)
    folder, doc = ids["Folder01"], ids["Document01"]
    req = new_version(sub.folders[0], folder, title="Priors (2)")
    res = update(engine, write_submission(req))
    assert res.ok, res.errors
    v2 = req.folders[0].id
    members = rows_where(engine, s.registry_object.c.source_object == v2, s.registry_object.c.assoc_type == v.HAS_MEMBER)
    assert [m.target_object for m in members] == [doc] and members[0].status == "A"
    assert row(engine, v2).last_update_time >= row(engine, folder).last_update_time
    contents = query(engine, v.SQ_GET_FOLDER_AND_CONTENTS, XDSFolderEntryUUID=quote(v2))
    assert set(found(contents)) == {doc} and set(found(contents, "RegistryPackage")) == {v2}
    both = query(engine, v.SQ_GET_FOLDERS, XDSFolderLogicalID=f"({quote(folder)})", MetadataLevel="2")
    assert found(both, "RegistryPackage") == {folder: (folder, "1", "Deprecated"), v2: (folder, "2", "Approved")}
    assert set(found(query(engine, v.SQ_GET_FOLDERS, XDSFolderLogicalID=f"({quote(folder)})"),
                     "RegistryPackage")) == {v2}

    req = new_version(sub.folders[0], folder, "2", propagate="no", title="Empty now")
    assert update(engine, write_submission(req)).ok
    contents = query(engine, v.SQ_GET_FOLDER_AND_CONTENTS, XDSFolderEntryUUID=quote(req.folders[0].id))
    assert found(contents) == {}

    bad = update(engine, write_submission(new_version(sub.folders[0], folder, "3", propagate="maybe")))
    assert codes(bad) == [E.XDSMetadataUpdateOperationError] and "AssociationPropagation" in bad.errors[0].message


def test_document_update_joins_the_folders_and_relationships_of_the_old_version(engine):
    sub, ids = registered(engine, folder=True)
    doc, folder = ids["Document01"], ids["Folder01"]
    addendum = samples.imaging_study_submission(PID)
    addendum.associations.append(Association(id="apnd", association_type=v.APND, source_object="Document01",
                                             target_object=doc))
    r2 = register(engine, write_submission(addendum))
    assert r2.ok, r2.errors
    before = row(engine, folder).last_update_time
    req = new_version(sub.documents[0], doc, title="v2")
    assert update(engine, write_submission(req)).ok
    v2 = req.documents[0].id
    links = {(r.assoc_type, r.source_object, r.target_object)
             for r in rows_where(engine, s.registry_object.c.target_object == v2)}
    assert links == {(v.HAS_MEMBER, result_ss(engine, v2), v2), (v.HAS_MEMBER, folder, v2),
                     (v.APND, r2.assigned["Document01"], v2)}
    assert row(engine, folder).last_update_time >= before
    related = query(engine, v.SQ_GET_RELATED_DOCUMENTS, XDSDocumentEntryEntryUUID=quote(v2),
                    AssociationTypes=f"({quote(v.APND)})")
    assert set(found(related)) == {v2, r2.assigned["Document01"]}

    # CP-ITI-1029: propagation plus a relationship to the new version in the same request is refused.
    req = new_version(sub.documents[0], doc, "2", title="v3")
    req.associations += [
        Association(id="sa", association_type=v.SUBMIT_ASSOCIATION, source_object="SubmissionSet01",
                    target_object="x"),
        Association(id="x", association_type=v.SIGNS, source_object=req.documents[0].id,
                    target_object=r2.assigned["Document01"]),
    ]
    assert codes(update(engine, write_submission(req))) == [E.XDSMetadataUpdateOperationError]
    req.associations[0].extra_slots["AssociationPropagation"] = ["no"]
    res = update(engine, write_submission(req))
    assert res.ok, res.errors


def result_ss(engine, target: str) -> str:
    [member] = rows_where(engine, s.registry_object.c.target_object == target,
                          s.registry_object.c.assoc_type == v.HAS_MEMBER,
                          s.registry_object.c.source_object.notin_(
                              select(s.registry_object.c.id).where(s.registry_object.c.kind == s.FOLDER)))
    return member.source_object


def test_patient_id_changes(engine):
    sub, ids = registered(engine, folder=True)
    doc, folder = ids["Document01"], ids["Folder01"]
    # The document is in a Folder of PID: carrying that membership over to OTHER is refused...
    moved = new_version(sub.documents[0], doc, patient_id=OTHER, source_patient_id=OTHER)
    res = update(engine, write_submission(moved))
    assert codes(res) == [E.XDSPatientIdDoesNotMatch] and folder in res.errors[0].message
    # ...without propagation the new version simply belongs to OTHER.
    moved = new_version(sub.documents[0], doc, propagate="no", patient_id=OTHER, source_patient_id=OTHER)
    assert update(engine, write_submission(moved)).ok
    assert row(engine, moved.documents[0].id).patient_id == OTHER
    # An empty Folder changes patient (NIST 21003); patients of the message must agree.
    empty_sub = samples.imaging_study_submission(PID)
    empty_sub.folders.append(Folder(id="F", unique_id=samples.uid(), patient_id=PID, codes=[samples.MODALITIES["MR"]]))
    empty_sub.associations.append(Association(id="h", association_type=v.HAS_MEMBER,
                                              source_object="SubmissionSet01", target_object="F"))
    r = register(engine, write_submission(empty_sub))
    assert r.ok, r.errors
    req = new_version(empty_sub.folders[0], r.assigned["F"], patient_id=OTHER)
    assert update(engine, write_submission(req)).ok
    mismatch = new_version(empty_sub.folders[0], r.assigned["F"], "2", patient_id=PID)
    mismatch.submission_set.patient_id = OTHER
    assert codes(update(engine, write_submission(mismatch))) == [E.XDSPatientIdDoesNotMatch]


# --- submitted associations -------------------------------------------------------------------------------


def test_submit_association_adds_a_document_to_a_folder_and_relationships(engine):
    _sub, ids = registered(engine, folder=True)
    _, other_ids = registered(engine)
    folder, second = ids["Folder01"], other_ids["Document01"]
    before = row(engine, folder).last_update_time
    res = update(engine, write_submission(submitted(v.HAS_MEMBER, folder, second)))
    assert res.ok, res.errors
    added = row(engine, res.assigned["new"])
    assert (added.assoc_type, added.source_object, added.target_object, added.status) == (
        v.HAS_MEMBER, folder, second, "A")
    assert not rows_where(engine, s.registry_object.c.assoc_type == v.SUBMIT_ASSOCIATION)
    assert row(engine, folder).last_update_time >= before
    contents = query(engine, v.SQ_GET_FOLDER_AND_CONTENTS, XDSFolderEntryUUID=quote(folder))
    assert set(found(contents)) == {ids["Document01"], second}

    again = update(engine, write_submission(submitted(v.HAS_MEMBER, folder, second)))
    assert codes(again) == [E.XDSMetadataUpdateError] and "already exists" in again.errors[0].message
    _, theirs = registered(engine, pid=OTHER)
    cross = update(engine, write_submission(submitted(v.APND, theirs["Document01"], second)))
    assert codes(cross) == [E.XDSPatientIdDoesNotMatch]
    shape = update(engine, write_submission(submitted(v.HAS_MEMBER, second, folder)))
    assert codes(shape) == [E.XDSMetadataUpdateError] and "Folder HasMember" in shape.errors[0].message
    replace_ = update(engine, write_submission(submitted(v.RPLC, second, ids["Document01"])))
    assert codes(replace_) == [E.XDSMetadataUpdateOperationError]
    unknown_type = update(engine, write_submission(submitted("urn:example:Frob", second, ids["Document01"])))
    assert codes(unknown_type) == [E.XDSRegistryMetadataError]

    # Submit a relationship and deprecate it in one request (NIST 20005), then approve it again.
    req = submitted(v.APND, second, ids["Document01"])
    status_change("new", A, D, sub=req)
    res = update(engine, write_submission(req))
    assert res.ok, res.errors
    apnd = res.assigned["new"]
    assert row(engine, apnd).status == "D"
    related = query(engine, v.SQ_GET_RELATED_DOCUMENTS, XDSDocumentEntryEntryUUID=quote(second),
                    AssociationTypes=f"({quote(v.APND)})")
    assert found(related) == {}  # level 1 hides Deprecated associations
    assert update(engine, write_submission(status_change(apnd, D, A))).ok
    related = query(engine, v.SQ_GET_RELATED_DOCUMENTS, XDSDocumentEntryEntryUUID=quote(second),
                    AssociationTypes=f"({quote(v.APND)})")
    assert set(found(related)) == {second, ids["Document01"]}
    # A SubmissionSet's HasMember keeps its status.
    ss_member = rows_where(engine, s.registry_object.c.source_object == ids["SubmissionSet01"])[0].id
    res = update(engine, write_submission(status_change(ss_member, A, D)))
    assert codes(res) == [E.XDSMetadataUpdateError] and "SubmissionSet HasMember" in res.errors[0].message


def test_all_or_nothing(engine):
    sub, ids = registered(engine)
    _, ids2 = registered(engine)
    req = new_version(sub.documents[0], ids["Document01"], title="v2")
    status_change(ids2["Document01"], D, A, sub=req)  # wrong OriginalStatus
    res = update(engine, write_submission(req))
    assert codes(res) == [E.XDSMetadataUpdateError]
    assert [(r.version, r.status) for r in rows_where(engine, s.registry_object.c.lid == ids["Document01"])] == [
        (1, "A")]
    assert not rows_where(engine, s.registry_object.c.id == req.documents[0].id)


# --- ITI-42 keeps to initial versions --------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_register_refuses_a_new_version(engine):
    _, ids = registered(engine)
    sub = samples.imaging_study_submission(PID)
    sub.documents[0].lid = ids["Document01"]
    res = register(engine, write_submission(sub))
    assert [e.code for e in res.errors] == [E.XDSRegistryMetadataError] and "ITI-57" in res.errors[0].message


# --- concurrency -------------------------------------------------------------------------------------------


def test_racing_updates_of_the_same_entry_have_one_winner(engine):
    sub, ids = registered(engine)
    requests = [write_submission(new_version(sub.documents[0], ids["Document01"], title=f"edit {i}"))
                for i in range(6)]
    results: list = [None] * len(requests)
    barrier = threading.Barrier(len(requests))

    def go(i: int) -> None:
        barrier.wait()
        results[i] = update(engine, requests[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.ok for r in results) == 1, [r.errors for r in results]
    assert all(codes(r) == [E.XDSMetadataVersionError] for r in results if not r.ok)
    assert [(r.version, r.status) for r in rows_where(engine, s.registry_object.c.lid == ids["Document01"])] == [
        (1, "D"), (2, "A")]


def test_racing_updates_over_http_have_one_winner(db_url):
    with start_registry(db_url) as reg:
        reg.feed(PID)
        sub = samples.imaging_study_submission(PID)
        res = register(reg.engine, write_submission(sub))
        assert res.ok, res.errors
        bodies = [etree.tostring(request_envelope(write_submission(new_version(
            sub.documents[0], res.assigned["Document01"], title=f"edit {i}")), ITI57, reg.url)) for i in range(4)]
        answers: list = [None] * len(bodies)
        barrier = threading.Barrier(len(bodies))

        def go(i: int) -> None:
            barrier.wait()
            answers[i] = httpx.post(reg.url, content=bodies[i], timeout=30, headers={
                "Content-Type": f'application/soap+xml; charset=UTF-8; action="{ITI57}"'})

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    outcomes = []
    for a in answers:
        assert a.status_code == 200, a.text
        env = etree.fromstring(a.content)
        assert env.find(f"{q(SOAP12, 'Header')}/{{http://www.w3.org/2005/08/addressing}}Action").text == \
            ITI57 + "Response"
        resp = env.find(q(SOAP12, "Body"))[0]
        outcomes.append((resp.get("status").rsplit(":", 1)[-1],
                         tuple(e.get("errorCode") for e in resp.iter(q(RS, "RegistryError")))))
    assert sorted(outcomes) == [("Failure", (E.XDSMetadataVersionError,))] * 3 + [("Success", ())]


# --- message-only rules on the shared IPF samples ----------------------------------------------------------


def test_ipf_update_samples(shared_data):
    folder = shared_data / "messages" / "iti57"

    def plan(name: str):
        sub, errors = read_submission(etree.parse(str(folder / name)).getroot())
        ops, more = plan_update(sub)
        return ops, [e for e in errors + more if e.is_error]

    ops, errors = plan("ipf_update_valid-docentry-and-folder-updates.xml")
    assert errors == []
    assert len(ops.versions) == 1 and ops.versions[0].previous_version == 1 and ops.versions[0].propagate
    assert [st.new for st in ops.statuses] == [D]
    _, errors = plan("ipf_update_reject_same-lid-twice.xml")
    assert E.XDSMetadataUpdateOperationError in [e.code for e in errors]
    assert any("also updated by" in e.message for e in errors)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_request_that_is_not_an_update_gets_an_answer(engine):
    res = update(engine, etree.Element(q(RIM, "ObjectRefList")))
    assert codes(res) and all(c == E.XDSRegistryMetadataError for c in codes(res))
    empty = update(engine, write_submission(Submission(submission_set=submission_set())))
    assert codes(empty) == [E.XDSMetadataUpdateOperationError] and "asks for no update" in empty.errors[0].message
