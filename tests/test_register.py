"""ITI-42 Register Document Set-b against the registry storage, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import pytest
from lxml import etree
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from registry.register import register, reread
from registry.storage import schema as s
from registry.storage.engine import make_engine, write_transaction
from registry.storage.objects import insert_objects
from registry.storage.patients import PatientStore
from xdsi import samples
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Association, DocumentEntry, Folder
from xdsi.transform.ebrim_write import write_submission
from xdsi.validate import errors as E

PID = samples.patient_id("REG001")
OTHER = samples.patient_id("REG002")


@pytest.fixture
def engine(db_url: str):
    eng = make_engine(db_url)
    store = PatientStore(eng)
    store.upsert_patient(PID, {})
    store.upsert_patient(OTHER, {})
    yield eng
    eng.dispose()


def count(engine, kind: str | None = None) -> int:
    ro = s.registry_object
    q = select(func.count()).select_from(ro)
    if kind:
        q = q.where(ro.c.kind == kind)
    with engine.connect() as c:
        return c.execute(q).scalar_one()


def stored(engine, object_id: str):
    with engine.connect() as c:
        return c.execute(select(s.registry_object).where(s.registry_object.c.id == object_id)).one()


def test_register_assigns_uuids_and_stores_each_object(engine):
    sub = samples.imaging_study_submission(PID)
    result = register(engine, write_submission(sub))
    assert result.ok, result.errors
    assert set(result.assigned) == {"Document01", "SubmissionSet01", "Association01"}
    assert all(u.startswith("urn:uuid:") for u in result.assigned.values())
    de_row = stored(engine, result.assigned["Document01"])
    assert de_row.kind == "DE" and de_row.status == "A" and de_row.patient_id == PID
    de = reread(de_row.xml)
    assert isinstance(de, DocumentEntry)
    assert de.id == result.assigned["Document01"] and de.status == v.STATUS_APPROVED and de.lid == de.id
    assert de.unique_id == sub.documents[0].unique_id
    # The HasMember association now points at the assigned ids.
    assoc = reread(stored(engine, result.assigned["Association01"]).xml)
    assert isinstance(assoc, Association)
    assert (assoc.source_object, assoc.target_object) == (result.assigned["SubmissionSet01"], de.id)


def test_unknown_patient_is_refused_and_nothing_stored(engine):
    sub = samples.imaging_study_submission(samples.patient_id("NOBODY"))
    result = register(engine, write_submission(sub))
    assert not result.ok
    assert [e.code for e in result.errors] == [E.XDSUnknownPatientId]
    assert "NOBODY" in result.errors[0].message
    assert count(engine) == 0


def test_duplicate_unique_id_in_registry(engine):
    sub = samples.imaging_study_submission(PID)
    assert register(engine, write_submission(sub)).ok
    again = samples.imaging_study_submission(PID)
    again.documents[0].unique_id = sub.documents[0].unique_id
    again.documents[0].hash, again.documents[0].size = sub.documents[0].hash, sub.documents[0].size
    res = register(engine, write_submission(again))
    assert [e.code for e in res.errors] == [E.XDSDuplicateUniqueIdInRegistry]
    # UUIDs are assigned before the write transaction; the error still names the id the submitter sent.
    assert res.errors[0].location == "Document01"
    assert res.errors[0].message.startswith("DocumentEntry Document01: uniqueId ")
    again.documents[0].hash = "0" * 40
    res = register(engine, write_submission(again))
    assert [e.code for e in res.errors] == [E.XDSNonIdenticalHash]
    assert count(engine, "DE") == 1


def test_insert_of_a_registered_entry_uuid_raises_integrity_error(engine):
    """insert_objects runs on the driver, but a refused row still raises SQLAlchemy's IntegrityError
    (what ITI-57 catches) and rolls the transaction back."""
    res = register(engine, write_submission(samples.imaging_study_submission(PID)))
    row = stored(engine, res.assigned["Document01"])
    before = count(engine)
    dup = {"id": row.id, "lid": "urn:uuid:" + "0" * 32, "version": 1, "kind": "DE", "status": "A", "xml": row.xml}
    with pytest.raises(IntegrityError), write_transaction(engine) as conn:
        insert_objects(conn, [({**dup, "id": "urn:uuid:" + "1" * 32}, [(s.EVENT_CODE, "X^^Y")]), (dup, [])])
    assert count(engine) == before


def test_all_or_nothing_when_one_document_is_bad(engine):
    sub = samples.imaging_study_submission(PID)
    second = samples.imaging_study_submission(PID).documents[0]
    second.id = "Document02"
    second.class_code = None  # required: the whole submission must fail
    sub.documents.append(second)
    sub.associations.append(Association(id="Association02", association_type=v.HAS_MEMBER,
                                        source_object="SubmissionSet01", target_object="Document02",
                                        submission_set_status="Original"))
    res = register(engine, write_submission(sub))
    assert not res.ok
    assert any(e.code == E.XDSRegistryMetadataError and "classCode" in e.message for e in res.errors)
    assert count(engine) == 0


def _replacement(pid: str, original_id: str):
    new = samples.imaging_study_submission(pid)
    new.associations.append(Association(id="Association02", association_type=v.RPLC,
                                        source_object="Document01", target_object=original_id))
    return new


def test_rplc_deprecates_original_and_joins_its_folders(engine):
    first = samples.imaging_study_submission(PID)
    first.folders.append(Folder(id="Folder01", unique_id=samples.uid(), patient_id=PID, title="Priors",
                                codes=[samples.MODALITIES["CT"]]))
    first.associations += [
        Association(id="Association02", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                    target_object="Folder01"),
        Association(id="Association03", association_type=v.HAS_MEMBER, source_object="Folder01",
                    target_object="Document01"),
        # ITI TF-3 4.1.6.1: the Folder membership is itself a member of the SubmissionSet.
        Association(id="Association04", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                    target_object="Association03"),
    ]
    r1 = register(engine, write_submission(first))
    assert r1.ok, r1.errors
    original, folder = r1.assigned["Document01"], r1.assigned["Folder01"]
    folder_time = stored(engine, folder).last_update_time

    r2 = register(engine, write_submission(_replacement(PID, original)))
    assert r2.ok, r2.errors
    old = stored(engine, original)
    assert old.status == "D" and reread(old.xml).status == v.STATUS_DEPRECATED
    with engine.connect() as c:
        members = c.execute(select(s.registry_object.c.target_object).where(
            s.registry_object.c.source_object == folder, s.registry_object.c.assoc_type == v.HAS_MEMBER)).scalars().all()
    assert set(members) == {original, r2.assigned["Document01"]}
    assert stored(engine, folder).last_update_time >= folder_time

    # A deprecated document cannot be replaced again.
    r3 = register(engine, write_submission(_replacement(PID, original)))
    assert [e.code for e in r3.errors] == [E.XDSRegistryDeprecatedDocumentError]


def test_rplc_of_other_patients_document_is_refused(engine):
    r1 = register(engine, write_submission(samples.imaging_study_submission(OTHER)))
    res = register(engine, write_submission(_replacement(PID, r1.assigned["Document01"])))
    assert [e.code for e in res.errors] == [E.XDSPatientIdDoesNotMatch]
    assert stored(engine, r1.assigned["Document01"]).status == "A"


def test_submission_set_classification_is_stored_inside_the_package(engine):
    res = register(engine, write_submission(samples.imaging_study_submission(PID)))
    xml = stored(engine, res.assigned["SubmissionSet01"]).xml
    el = etree.fromstring(f'<r xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">{xml}</r>')[0]
    nodes = [c.get("classificationNode") for c in el.iter("{*}Classification")]
    assert v.SUBMISSION_SET_CLASS_NODE in nodes


def test_merge_moves_entries_to_surviving_patient(engine):
    res = register(engine, write_submission(samples.imaging_study_submission(OTHER)))
    moved = PatientStore(engine).merge_patients(PID, OTHER)
    assert moved == 2  # the DocumentEntry and the SubmissionSet
    de = stored(engine, res.assigned["Document01"])
    assert de.patient_id == PID and reread(de.xml).patient_id == PID
    # The subsumed id is no longer accepted for new submissions.
    again = register(engine, write_submission(samples.imaging_study_submission(OTHER)))
    assert [e.code for e in again.errors] == [E.XDSUnknownPatientId]


def test_concurrent_registrations_of_the_same_unique_id_have_one_winner(engine):
    subs = [samples.imaging_study_submission(PID) for _ in range(6)]
    for sub in subs[1:]:
        sub.documents[0].unique_id = subs[0].documents[0].unique_id
        sub.documents[0].hash, sub.documents[0].size = subs[0].documents[0].hash, subs[0].documents[0].size
    results: list = [None] * len(subs)

    def go(i: int) -> None:
        results[i] = register(engine, write_submission(subs[i]))

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(subs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(r.ok for r in results) == 1
    assert all(e.code == E.XDSDuplicateUniqueIdInRegistry for r in results if not r.ok for e in r.errors)
    assert count(engine, "DE") == 1


def test_concurrent_submissions_share_a_commit_and_each_fails_alone(tmp_path):
    """On SQLite, submissions that arrive while another is being written form one batch: one transaction
    and one fsync (xdsi.db.GroupCommit), each in its own savepoint. Within the batch the second of two
    submissions with the same uniqueId is refused, as is an unknown patient, and only those are rolled back."""
    from sqlalchemy import event

    from xdsi import db

    eng = make_engine(f"sqlite:///{tmp_path / 'registry.db'}")
    PatientStore(eng).upsert_patient(PID, {})
    commits = []
    event.listen(eng, "commit", lambda _conn: commits.append(1))
    subs = [samples.imaging_study_submission(PID) for _ in range(5)]
    subs[3].documents[0].unique_id = subs[1].documents[0].unique_id  # a duplicate of an earlier member
    subs[3].documents[0].hash, subs[3].documents[0].size = subs[1].documents[0].hash, subs[1].documents[0].size
    subs[4] = samples.imaging_study_submission(samples.patient_id("NOBODY"))
    results: list = [None] * len(subs)
    leading, release = threading.Event(), threading.Event()

    def hold(_conn) -> None:  # a write that keeps the group busy while the submissions queue
        leading.set()
        release.wait(10)

    holder = threading.Thread(target=db.grouped_write, args=(eng, hold))
    holder.start()
    assert leading.wait(10)
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, register(eng, write_submission(subs[i]))))
               for i in range(len(subs))]
    for t in threads:
        t.start()
    while len(db._groups[eng]._queue) < len(subs):
        threading.Event().wait(0.01)
    release.set()
    for t in [holder, *threads]:
        t.join(10)
    try:
        # 1 and 3 share a uniqueId: whichever the batch holds first (queue order, i.e. which thread got
        # there first) is registered, the other refused.
        assert [results[i].ok for i in (0, 2, 4)] == [True, True, False]
        assert sorted(results[i].ok for i in (1, 3)) == [False, True]
        refused = results[3] if results[1].ok else results[1]
        assert [e.code for e in refused.errors] == [E.XDSDuplicateUniqueIdInRegistry]
        assert [e.code for e in results[4].errors] == [E.XDSUnknownPatientId]
        assert len(commits) == 2  # the holder's transaction, then the five submissions' together
        assert count(eng, "DE") == 3 and count(eng) == 9  # DocumentEntry, SubmissionSet, HasMember each
        for r in results:
            if r.ok:
                assert stored(eng, r.assigned["Document01"]).status == "A"
    finally:
        eng.dispose()
