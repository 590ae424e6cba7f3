"""ITI-18 stored queries against a real registry database (SQLite, and PostgreSQL when reachable).

The registry below is built from model objects with ``row_for`` + ``insert_objects``; the stored XML is a
minimal element naming the object, which is all a LeafClass answer has to splice in.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Connection, Engine

from registry.storage.engine import make_engine
from registry.storage.objects import insert_objects, row_for
from registry.storedquery import queries, run_stored_query
from tests.conftest import SHARED, need, throwaway_pg_database
from xdsi.ebxml.namespaces import QUERY, RIM, RS
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import (
    Association,
    Author,
    Code,
    DocumentEntry,
    Folder,
    SubmissionSet,
)

P1 = "P1^^^&1.2.3&ISO"
P2 = "P2^^^&1.2.3&ISO"
A, D = v.STATUS_APPROVED, v.STATUS_DEPRECATED
HOME = "urn:oid:1.2.3.4"
REF_ID = "R1^^^&1.2&ISO^urn:ihe:iti:xds:2013:accession"
OFFLINE_SLOT = ('<rim:Slot name="urn:ihe:iti:2010:DocumentAvailability"><rim:ValueList><rim:Value>%s'
                "</rim:Value></rim:ValueList></rim:Slot>" % v.DOCUMENT_AVAILABILITY_OFFLINE)


def uid(name: str) -> str:
    return "urn:uuid:%s" % uuid.uuid5(uuid.NAMESPACE_URL, name)


NAMES: dict[str, str] = {}


def code(value: str) -> Code:
    c, _, scheme = value.partition("^^")
    return Code(c, scheme)


def _xml(tag: str, name: str, obj, extra: str = "") -> str:  # type: ignore[no-untyped-def]
    return '<rim:%s id="%s" status="%s">%s</rim:%s>' % (tag, obj.id, obj.status, extra, tag)


def doc(name: str, *, patient: str = P1, status: str = A, unique_id: str = "", extra: str = "", **kw) -> tuple:  # type: ignore[no-untyped-def]
    codes = {k: code(kw.pop(k)) for k in ("class_code", "type_code", "format_code", "practice_setting_code",
                                          "healthcare_facility_type_code") if k in kw}
    lists = {k: [code(x) for x in kw.pop(k)] for k in ("event_codes", "confidentiality_codes") if k in kw}
    authors = [Author(person=p) for p in kw.pop("authors", [])]
    d = DocumentEntry(id=kw.pop("id", uid(name)), status=status, patient_id=patient, unique_id=unique_id or name,
                      authors=authors, **codes, **lists, **kw)
    NAMES[d.id] = name
    return row_for(d, _xml("ExtrinsicObject", name, d, extra))


def sset(name: str, *, patient: str = P1, **kw) -> tuple:  # type: ignore[no-untyped-def]
    authors = [Author(person=p) for p in kw.pop("authors", [])]
    ct = kw.pop("content_type_code", None)
    s = SubmissionSet(id=uid(name), status=A, patient_id=patient, unique_id=name, authors=authors,
                      content_type_code=code(ct) if ct else None, **kw)
    NAMES[s.id] = name
    return row_for(s, _xml("RegistryPackage", name, s))


def folder(name: str, *, patient: str = P1, status: str = A, codes: tuple = (), **kw) -> tuple:  # type: ignore[no-untyped-def]
    f = Folder(id=kw.pop("id", uid(name)), status=status, patient_id=patient, unique_id=kw.pop("unique_id", name),
               codes=[code(c) for c in codes], **kw)
    NAMES[f.id] = name
    return row_for(f, _xml("RegistryPackage", name, f))


def assoc(name: str, source: str, target: str, kind: str = v.HAS_MEMBER, status: str = A) -> tuple:
    a = Association(id=uid(name), status=status, association_type=kind, source_object=uid(source),
                    target_object=uid(target))
    NAMES[a.id] = name
    return row_for(a, _xml("Association", name, a))


def registry_rows() -> list[tuple]:
    """Patient P1: documents DA..DV2, SubmissionSets SS1/SS2, Folders F1/F2(v1,v2); patient P2: DX, SS3, FX."""
    return [
        doc("DA", class_code="c1^^S", type_code="t1^^S", format_code="f1^^F", practice_setting_code="p1^^S",
            healthcare_facility_type_code="h1^^S", creation_time="20040101", service_start_time="200401011000",
            service_stop_time="200401021000", event_codes=["e1^^E", "e2^^E"], confidentiality_codes=["N^^C"],
            authors=["Smith^John^^^Dr"], reference_ids=[REF_ID]),
        doc("DB", class_code="c2^^S", format_code="f2^^F", practice_setting_code="p2^^S",
            creation_time="20050615120000", service_start_time="2005", event_codes=["e1^^E"],
            confidentiality_codes=["R^^C", "N^^C"], authors=["O'Brien^Pat"]),
        doc("DC", status=D, class_code="c1^^S", format_code="f1^^F", creation_time="2006", authors=["Smith^Jane"]),
        doc("DD", class_code="c1^^S", format_code="f1^^F", object_type=v.ON_DEMAND_DOCUMENT_ENTRY),
        doc("DH", class_code="c3^^S", home=HOME, authors=["Back\\Slash^Bo"]),
        doc("DOFF", class_code="c4^^S", extra=OFFLINE_SLOT, document_availability=v.DOCUMENT_AVAILABILITY_OFFLINE),
        doc("DV1", id=uid("DV1"), lid=uid("DV1"), version="1", status=D, unique_id="2.1", class_code="c5^^S"),
        doc("DV2", id=uid("DV2"), lid=uid("DV1"), version="2", unique_id="2.1", class_code="c5^^S"),
        doc("DX", patient=P2, class_code="c1^^S"),
        sset("SS1", source_id="S1", submission_time="20040101", content_type_code="ct1^^S", authors=["Smith^John"]),
        sset("SS2", source_id="S2", submission_time="20060101", content_type_code="ct2^^S", authors=["Lee^Ann"]),
        sset("SS3", patient=P2, source_id="S3", submission_time="20060101"),
        folder("F1", codes=("fc1^^S",), last_update_time="20040101"),
        folder("F2", id=uid("F2"), lid=uid("F2"), version="1", status=D, unique_id="f2", codes=("fc2^^S",),
               last_update_time="2005"),
        folder("F2b", id=uid("F2b"), lid=uid("F2"), version="2", unique_id="f2", codes=("fc2^^S",),
               last_update_time="2007"),
        folder("FX", patient=P2),
        assoc("a1", "SS1", "DA"),
        assoc("a2", "SS1", "DB"),
        assoc("a3", "SS1", "F1"),
        assoc("a4", "F1", "DA"),
        assoc("a5", "SS1", "a4"),
        assoc("a6", "SS2", "DC"),
        assoc("a7", "SS2", "DD"),
        assoc("a8", "DB", "DC", v.RPLC),
        assoc("a9", "DH", "DA", v.APND, status=D),
        assoc("a10", "SS3", "DX"),
        assoc("a11", "SS2", "DH"),
        assoc("a12", "F1", "DB"),
        assoc("a13", "SS2", "a12"),
        assoc("a14", "FX", "DX"),
        assoc("a15", "F2b", "DA"),
    ]


# --- database fixtures ----------------------------------------------------------------------------------


@contextlib.contextmanager
def _registry(kind: str, directory: Path) -> Iterator[Engine]:
    """A registry database (``sqlite``: a file in ``directory``; ``postgresql``: a throwaway database) holding
    the rows of :func:`registry_rows`."""
    with contextlib.ExitStack() as stack:
        url = "sqlite:///%s" % (directory / "registry.db") if kind == "sqlite" \
            else stack.enter_context(throwaway_pg_database())
        eng = make_engine(url)
        stack.callback(eng.dispose)
        with eng.begin() as conn:
            insert_objects(conn, registry_rows())
        yield eng


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The registry the query tests read (shared by the module: they do not write)."""
    with _registry(request.param, tmp_path_factory.mktemp("sq")) as eng:
        yield eng


@pytest.fixture
def conn(engine) -> Iterator[Connection]:  # type: ignore[no-untyped-def]
    with engine.connect() as c:
        yield c


# --- asking -----------------------------------------------------------------------------------------------


@dataclass
class Answer:
    status: str
    names: list[str]  # returned objects by test name, in response order
    tags: list[str]
    errors: list[tuple[str, str]]
    root: etree._Element

    @property
    def codes(self) -> list[str]:
        return [c for c, _ in self.errors]

    def set(self) -> set[str]:
        return set(self.names)


def ask(conn: Connection, query_id: str, *slots: tuple[str, str | list[str]], rt: str = "LeafClass",
        max_results: int = 10000) -> Answer:
    option = '<query:ResponseOption returnComposedObjects="true" returnType="%s"/>' % rt
    body = "".join(
        '<rim:Slot name="%s"><rim:ValueList>%s</rim:ValueList></rim:Slot>'
        % (name, "".join("<rim:Value>%s</rim:Value>" % x for x in ([vals] if isinstance(vals, str) else vals)))
        for name, vals in slots
    )
    xml = ('<query:AdhocQueryRequest xmlns:query="%s" xmlns:rim="%s">%s<rim:AdhocQuery id="%s">%s'
           "</rim:AdhocQuery></query:AdhocQueryRequest>" % (QUERY, RIM, option, query_id, body))
    out = run_stored_query(conn, etree.fromstring(xml.replace("&", "&amp;")), max_results=max_results)
    assert not out.startswith(b"<?xml")
    root = etree.fromstring(out)
    assert root.tag == "{%s}AdhocQueryResponse" % QUERY
    objects = root.find("{%s}RegistryObjectList" % RIM)
    assert objects is not None
    children = list(objects)
    errors = [(x.get("errorCode"), x.get("codeContext")) for x in root.iter("{%s}RegistryError" % RS)]
    return Answer(root.get("status").rsplit(":", 1)[1], [NAMES.get(x.get("id"), x.get("id")) for x in children],
                  [etree.QName(x).localname for x in children], errors, root)


def ok(answer: Answer) -> set[str]:
    assert answer.status == "Success", answer.errors
    assert not answer.errors
    return answer.set()


def status(*urns: str) -> str:
    return "(%s)" % ", ".join("'%s'" % u for u in urns)


PID = ("$XDSDocumentEntryPatientId", "'%s'" % P1)
APPROVED = ("$XDSDocumentEntryStatus", status(A))


def find_docs(conn: Connection, *slots, **kw) -> Answer:  # type: ignore[no-untyped-def]
    return ask(conn, v.SQ_FIND_DOCUMENTS, PID, APPROVED, *slots, **kw)


# --- FindDocuments ------------------------------------------------------------------------------------------


def test_find_documents_basic(conn: Connection) -> None:
    # Not DC (Deprecated), DD (On-Demand), DOFF (Offline, hidden at level 1), DV1 (Deprecated), DX (P2).
    ans = find_docs(conn)
    assert ok(ans) == {"DA", "DB", "DH", "DV2"}
    assert ans.names == ["DA", "DB", "DH", "DV2"]  # pk order
    assert set(ans.tags) == {"ExtrinsicObject"}


def test_find_documents_leafclass_is_the_stored_xml(conn: Connection) -> None:
    ans = find_docs(conn, ("$XDSDocumentEntryClassCode", "('c1^^S')"))
    (el,) = ans.root.find("{%s}RegistryObjectList" % RIM)
    assert el.get("id") == uid("DA") and el.get("status") == A
    assert el.tag == "{%s}ExtrinsicObject" % RIM


def test_find_documents_object_refs_with_home(conn: Connection) -> None:
    ans = find_docs(conn, rt="ObjectRef")
    assert ok(ans) == {"DA", "DB", "DH", "DV2"}
    assert set(ans.tags) == {"ObjectRef"}
    homes = {NAMES[x.get("id")]: x.get("home") for x in ans.root.iter("{%s}ObjectRef" % RIM)}
    assert homes == {"DA": None, "DB": None, "DH": HOME, "DV2": None}


def test_find_documents_statuses(conn: Connection) -> None:
    both = ("$XDSDocumentEntryStatus", status(A, D))
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS, PID, both)) == {"DA", "DB", "DC", "DH", "DV2"}
    # Level 2 shows the older version and the Offline entry.
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS, PID, both, ("$MetadataLevel", "2"))) == {
        "DA", "DB", "DC", "DH", "DOFF", "DV1", "DV2"}
    dep = ("$XDSDocumentEntryStatus", status(D))
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS, PID, dep)) == {"DC"}
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS, PID, ("$XDSDocumentEntryStatus", "('urn:x:Unknown')"))) == set()


def test_find_documents_entry_type(conn: Connection) -> None:
    on_demand = ("$XDSDocumentEntryType", "('%s')" % v.ON_DEMAND_DOCUMENT_ENTRY)
    assert ok(find_docs(conn, on_demand)) == {"DD"}
    both = ("$XDSDocumentEntryType", "('%s', '%s')" % v.DOCUMENT_ENTRY_TYPES)
    assert ok(find_docs(conn, both)) == {"DA", "DB", "DD", "DH", "DV2"}


def test_find_documents_other_patient(conn: Connection) -> None:
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS, ("$XDSDocumentEntryPatientId", "'%s'" % P2), APPROVED)) == {"DX"}
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS, ("$XDSDocumentEntryPatientId", "'nobody'"), APPROVED)) == set()


@pytest.mark.parametrize(
    ("slots", "expected"),
    [
        # OR within a Slot, as a list or as several Value elements; AND between Slots.
        ([("$XDSDocumentEntryClassCode", "('c1^^S', 'c2^^S')")], {"DA", "DB"}),
        ([("$XDSDocumentEntryClassCode", ["('c1^^S')", "('c2^^S')"])], {"DA", "DB"}),
        ([("$XDSDocumentEntryClassCode", "('c1^^S')"), ("$XDSDocumentEntryClassCode", "('c2^^S')")], set()),
        ([("$XDSDocumentEntryClassCode", "('c1^^OTHER')")], set()),  # the scheme is part of the code
        ([("$XDSDocumentEntryTypeCode", "('t1^^S')")], {"DA"}),
        ([("$XDSDocumentEntryFormatCode", "('f1^^F', 'f2^^F')")], {"DA", "DB"}),
        ([("$XDSDocumentEntryPracticeSettingCode", "('p2^^S')")], {"DB"}),
        ([("$XDSDocumentEntryHealthcareFacilityTypeCode", "('h1^^S')")], {"DA"}),
        ([("$XDSDocumentEntryPracticeSettingCode", "('p1^^S','p2^^S')"),
          ("$XDSDocumentEntryFormatCode", "('f2^^F')")], {"DB"}),
        # Multi-valued attributes: eventCodeList, confidentialityCode
        ([("$XDSDocumentEntryEventCodeList", "('e1^^E')")], {"DA", "DB"}),
        ([("$XDSDocumentEntryEventCodeList", "('e2^^E')")], {"DA"}),
        ([("$XDSDocumentEntryEventCodeList", "('e1^^E', 'e2^^E')")], {"DA", "DB"}),
        ([("$XDSDocumentEntryEventCodeList", ["('e1^^E')", "('e2^^E')"])], {"DA", "DB"}),
        ([("$XDSDocumentEntryEventCodeList", "('e1^^E')"), ("$XDSDocumentEntryEventCodeList", "('e2^^E')")],
         {"DA"}),
        ([("$XDSDocumentEntryEventCodeList", "('e2^^E', 'x^^E')"), ("$XDSDocumentEntryEventCodeList", "('e1^^E')")],
         {"DA"}),
        ([("$XDSDocumentEntryConfidentialityCode", "('N^^C')")], {"DA", "DB"}),
        ([("$XDSDocumentEntryConfidentialityCode", "('R^^C')")], {"DB"}),
        ([("$XDSDocumentEntryConfidentialityCode", "('N^^C')"), ("$XDSDocumentEntryConfidentialityCode", "('R^^C')")],
         {"DB"}),
        # Old separate scheme parameter with as many values: ignored
        ([("$XDSDocumentEntryClassCode", "('c2^^S')"), ("$XDSDocumentEntryClassCodeScheme", "('whatever')")],
         {"DB"}),
    ],
)
def test_find_documents_codes(conn: Connection, slots, expected) -> None:  # type: ignore[no-untyped-def]
    assert ok(find_docs(conn, *slots)) == expected


@pytest.mark.parametrize(
    ("slots", "expected"),
    [
        ([("$XDSDocumentEntryCreationTimeFrom", "20040101")], {"DA", "DB"}),  # From inclusive
        ([("$XDSDocumentEntryCreationTimeFrom", "20040101000001")], {"DB"}),
        ([("$XDSDocumentEntryCreationTimeTo", "20050615120000")], {"DA"}),  # To exclusive
        ([("$XDSDocumentEntryCreationTimeTo", "20050615120001")], {"DA", "DB"}),
        ([("$XDSDocumentEntryCreationTimeFrom", "2004"), ("$XDSDocumentEntryCreationTimeTo", "2005")], {"DA"}),
        ([("$XDSDocumentEntryCreationTimeFrom", "'2005'")], {"DB"}),  # quoted time accepted
        ([("$XDSDocumentEntryCreationTimeFrom", "2007")], set()),
        ([("$XDSDocumentEntryServiceStartTimeFrom", "2005")], {"DB"}),
        ([("$XDSDocumentEntryServiceStartTimeTo", "20040101100001")], {"DA"}),
        ([("$XDSDocumentEntryServiceStopTimeTo", "20040103")], {"DA"}),
        ([("$XDSDocumentEntryServiceStopTimeFrom", "20040102100001")], set()),
    ],
)
def test_find_documents_times(conn: Connection, slots, expected) -> None:  # type: ignore[no-untyped-def]
    assert ok(find_docs(conn, *slots)) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("'Smith%'", {"DA"}),
        ("'smith^john%'", {"DA"}),  # case-insensitive
        ("'Smith'", set()),  # no wildcard: the whole value must match
        ("'Smith^John^^^Dr'", {"DA"}),
        ("'_mith^John%'", {"DA"}),
        ("'%o%'", {"DA", "DB", "DH"}),
        ("'O''Brien%'", {"DB"}),  # escaped quote
        ("'Back\\Slash%'", {"DH"}),  # backslash is literal
        ("'Back\\%'", {"DH"}),
        ("('Smith%', 'O''Brien^Pat')", {"DA", "DB"}),
        ("'%Jane%'", set()),  # DC is Deprecated
    ],
)
def test_find_documents_author(conn: Connection, pattern: str, expected: set[str]) -> None:
    assert ok(find_docs(conn, ("$XDSDocumentEntryAuthorPerson", pattern))) == expected


def test_find_documents_extra_params_ignored(conn: Connection) -> None:
    assert ok(find_docs(conn, ("$SomethingElse", "('x')"), ("$homeCommunityId", "'urn:oid:9'"))) == {
        "DA", "DB", "DH", "DV2"}


def test_find_documents_by_reference_id(conn: Connection) -> None:
    ref = ("$XDSDocumentEntryReferenceIdList", "('%s')" % REF_ID)
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID, PID, APPROVED, ref)) == {"DA"}
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID, PID, APPROVED, ref,
                  ("$XDSDocumentEntryClassCode", "('c2^^S')"))) == set()
    assert ok(ask(conn, v.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID, PID, APPROVED,
                  ("$XDSDocumentEntryReferenceIdList", "('other')"))) == set()


# --- FindSubmissionSets / FindFolders -------------------------------------------------------------------------

SS_PID = ("$XDSSubmissionSetPatientId", "'%s'" % P1)
SS_APPROVED = ("$XDSSubmissionSetStatus", status(A))


@pytest.mark.parametrize(
    ("slots", "expected"),
    [
        ([], {"SS1", "SS2"}),
        ([("$XDSSubmissionSetSourceId", "('S2')")], {"SS2"}),
        ([("$XDSSubmissionSetSourceId", "('S1', 'S2')")], {"SS1", "SS2"}),
        ([("$XDSSubmissionSetSourceId", "('nope')")], set()),
        ([("$XDSSubmissionSetSubmissionTimeFrom", "2005")], {"SS2"}),
        ([("$XDSSubmissionSetSubmissionTimeTo", "20060101")], {"SS1"}),
        ([("$XDSSubmissionSetAuthorPerson", "'Lee%'")], {"SS2"}),
        ([("$XDSSubmissionSetAuthorPerson", "'%'")], {"SS1", "SS2"}),
        ([("$XDSSubmissionSetContentType", "('ct1^^S')")], {"SS1"}),
    ],
)
def test_find_submission_sets(conn: Connection, slots, expected) -> None:  # type: ignore[no-untyped-def]
    ans = ask(conn, v.SQ_FIND_SUBMISSION_SETS, SS_PID, SS_APPROVED, *slots)
    assert ok(ans) == expected
    assert set(ans.tags) <= {"RegistryPackage"}


FD_PID = ("$XDSFolderPatientId", "'%s'" % P1)


@pytest.mark.parametrize(
    ("slots", "expected"),
    [
        ([("$XDSFolderStatus", status(A))], {"F1", "F2b"}),
        ([("$XDSFolderStatus", status(A, D))], {"F1", "F2b"}),  # level 1 hides F2 (Deprecated, old version)
        ([("$XDSFolderStatus", status(A, D)), ("$MetadataLevel", "2")], {"F1", "F2", "F2b"}),
        ([("$XDSFolderStatus", status(A)), ("$XDSFolderCodeList", "('fc2^^S')")], {"F2b"}),
        ([("$XDSFolderStatus", status(A)), ("$XDSFolderCodeList", "('fc1^^S', 'fc2^^S')")], {"F1", "F2b"}),
        ([("$XDSFolderStatus", status(A)), ("$XDSFolderCodeList", "('fc1^^S')"),
          ("$XDSFolderCodeList", "('fc2^^S')")], set()),
        ([("$XDSFolderStatus", status(A)), ("$XDSFolderLastUpdateTimeFrom", "2005")], {"F2b"}),
        ([("$XDSFolderStatus", status(A)), ("$XDSFolderLastUpdateTimeTo", "2005")], {"F1"}),
    ],
)
def test_find_folders(conn: Connection, slots, expected) -> None:  # type: ignore[no-untyped-def]
    assert ok(ask(conn, v.SQ_FIND_FOLDERS, FD_PID, *slots)) == expected


# --- GetAll -------------------------------------------------------------------------------------------------------

ALL_APPROVED = (("$patientId", "'%s'" % P1), ("$XDSDocumentEntryStatus", status(A)),
                ("$XDSSubmissionSetStatus", status(A)), ("$XDSFolderStatus", status(A)))


def test_get_all(conn: Connection) -> None:
    ans = ask(conn, v.SQ_GET_ALL, *ALL_APPROVED)
    # Associations with both ends returned: not a6/a8 (DC Deprecated), a7 (DD On-Demand), a9 (Deprecated).
    assert ok(ans) == {"DA", "DB", "DH", "DV2", "SS1", "SS2", "F1", "F2b",
                       "a1", "a2", "a3", "a4", "a5", "a11", "a12", "a13", "a15"}


def test_get_all_filters(conn: Connection) -> None:
    got = ok(ask(conn, v.SQ_GET_ALL, *ALL_APPROVED, ("$XDSDocumentEntryConfidentialityCode", "('R^^C')")))
    assert got == {"DB", "SS1", "SS2", "F1", "F2b", "a2", "a3", "a12", "a13"}
    got = ok(ask(conn, v.SQ_GET_ALL, *ALL_APPROVED[:1], ("$XDSDocumentEntryStatus", status(A, D)),
                 ("$XDSSubmissionSetStatus", status(A)), ("$XDSFolderStatus", status(D)),
                 ("$XDSDocumentEntryFormatCode", "('f1^^F')")))
    assert got == {"DA", "DC", "SS1", "SS2", "a1", "a6"}
    # Level 2: the Offline DocumentEntry, and Deprecated Associations unless an association status says not
    got = ok(ask(conn, v.SQ_GET_ALL, *ALL_APPROVED, ("$MetadataLevel", "2")))
    assert {"a9", "DOFF"} <= got
    got = ok(ask(conn, v.SQ_GET_ALL, *ALL_APPROVED, ("$MetadataLevel", "2"), ("$XDSAssociationStatus", status(A))))
    assert "a9" not in got and "DOFF" in got


@pytest.fixture(params=["sqlite", "postgresql"])
def fresh_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    """A registry of its own (the test writes to it), with the rows of :func:`registry_rows`."""
    with _registry(request.param, tmp_path) as eng:
        yield eng


def test_the_selects_of_one_query_see_one_snapshot(fresh_engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """An Association committed between the SELECTs of GetDocumentsAndAssociations (documents, then their
    Associations) is not in the answer: the answer is the registry as of one instant, as a consumer reads
    it (each SELECT on its own would see the commit; for an RPLC it would return the replaced entry as
    Approved next to the Association that deprecated it)."""
    query = (v.SQ_GET_DOCUMENTS_AND_ASSOCIATIONS, ("$XDSDocumentEntryEntryUUID", ids("DA")))
    with fresh_engine.connect() as conn:
        before = ok(ask(conn, *query))
    assert before == {"DA", "a1", "a4", "a15"}  # not a9: Deprecated (Metadata Level 1)

    fetch = queries.Ctx.fetch
    fetches: list[int] = []

    def fetch_then_commit(self, *where, **kw):  # type: ignore[no-untyped-def]
        rows = fetch(self, *where, **kw)
        if not fetches:  # after the first SELECT, another connection registers an Association to DA
            with fresh_engine.begin() as other:
                insert_objects(other, [assoc("aNEW", "DB", "DA", v.XFRM)])
        fetches.append(len(rows))
        return rows

    monkeypatch.setattr(queries.Ctx, "fetch", fetch_then_commit)
    with fresh_engine.connect() as conn:
        during = ok(ask(conn, *query))
    assert len(fetches) == 2
    assert during == before
    monkeypatch.undo()
    with fresh_engine.connect() as conn:
        assert ok(ask(conn, *query)) == before | {"aNEW"}


def test_queries_leave_no_transaction_open_and_the_connection_as_it_was(conn: Connection) -> None:
    """A one-SELECT query runs outside any transaction (on PostgreSQL: no BEGIN and ROLLBACK round trips);
    a several-SELECT query ends its snapshot transaction itself. Either way the pooled connection keeps its
    default settings."""
    db = conn.connection.driver_connection
    for query in ((v.SQ_FIND_DOCUMENTS, ("$XDSDocumentEntryPatientId", "'%s'" % P1),
                   ("$XDSDocumentEntryStatus", status(A))),
                  (v.SQ_GET_ALL, *ALL_APPROVED)):
        assert ok(ask(conn, *query))
        if conn.dialect.name == "sqlite":
            assert not db.in_transaction
        else:
            import psycopg

            assert db.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert (db.autocommit, db.isolation_level, db.read_only) == (False, None, None)


# --- Get by id ---------------------------------------------------------------------------------------------------


def ids(*names: str) -> str:
    return "(%s)" % ", ".join("'%s'" % uid(n) for n in names)


def test_get_documents(conn: Connection) -> None:
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryEntryUUID", ids("DA", "DB")))) == {"DA", "DB"}
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryEntryUUID", ids("DC")))) == {"DC"}  # any status
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "('DA', 'DD')"))) == {"DA", "DD"}
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "('nope')"))) == set()
    # Versions: level 1 only the latest, level 2 all
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "'2.1'"))) == {"DV2"}
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "'2.1'"), ("$MetadataLevel", "2"))) == {
        "DV1", "DV2"}
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryLogicalID", ids("DV1")))) == {"DV2"}
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryLogicalID", ids("DV1")), ("$MetadataLevel", "2"))) == {
        "DV1", "DV2"}
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryEntryUUID", ids("DV1")))) == set()
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryEntryUUID", ids("DOFF")))) == set()
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryEntryUUID", ids("DOFF")), ("$MetadataLevel", "2"))) == {
        "DOFF"}


def test_get_documents_not_single_patient(conn: Connection) -> None:
    both = ("$XDSDocumentEntryEntryUUID", ids("DA", "DX"))
    leaf = ask(conn, v.SQ_GET_DOCUMENTS, both)
    assert leaf.status == "Failure" and leaf.codes == ["XDSResultNotSinglePatient"] and leaf.names == []
    assert P1 not in leaf.errors[0][1]  # other patients' ids are not disclosed
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS, both, rt="ObjectRef")) == {"DA", "DX"}


def test_get_folders(conn: Connection) -> None:
    assert ok(ask(conn, v.SQ_GET_FOLDERS, ("$XDSFolderEntryUUID", ids("F1")))) == {"F1"}
    assert ok(ask(conn, v.SQ_GET_FOLDERS, ("$XDSFolderUniqueId", "('f2')"))) == {"F2b"}
    assert ok(ask(conn, v.SQ_GET_FOLDERS, ("$XDSFolderUniqueId", "('f2')"), ("$MetadataLevel", "2"))) == {"F2", "F2b"}
    assert ok(ask(conn, v.SQ_GET_FOLDERS, ("$XDSFolderLogicalID", ids("F2")), ("$MetadataLevel", "2"))) == {
        "F2", "F2b"}
    leaf = ask(conn, v.SQ_GET_FOLDERS, ("$XDSFolderEntryUUID", ids("F1", "FX")))
    assert leaf.codes == ["XDSResultNotSinglePatient"]
    assert ok(ask(conn, v.SQ_GET_FOLDERS, ("$XDSFolderEntryUUID", ids("F1", "FX")), rt="ObjectRef")) == {"F1", "FX"}


def test_get_associations(conn: Connection) -> None:
    assert ok(ask(conn, v.SQ_GET_ASSOCIATIONS, ("$uuid", ids("SS1")))) == {"a1", "a2", "a3", "a5"}
    assert ok(ask(conn, v.SQ_GET_ASSOCIATIONS, ("$uuid", ids("DA")))) == {"a1", "a4", "a15"}
    assert ok(ask(conn, v.SQ_GET_ASSOCIATIONS, ("$uuid", ids("DA")), ("$MetadataLevel", "2"))) == {
        "a1", "a4", "a9", "a15"}
    assert ok(ask(conn, v.SQ_GET_ASSOCIATIONS, ("$uuid", ids("DA")), ("$MetadataLevel", "2"),
                  ("$XDSAssociationStatus", status(D)))) == {"a9"}
    assert ok(ask(conn, v.SQ_GET_ASSOCIATIONS, ("$uuid", ids("DA")), ("$MetadataLevel", "2"),
                  ("$AssociationStatus", status(D)))) == {"a9"}
    ans = ask(conn, v.SQ_GET_ASSOCIATIONS, ("$uuid", ids("DA", "DX")))
    assert ok(ans) == {"a1", "a4", "a10", "a14", "a15"}  # Associations have no patient
    assert set(ans.tags) == {"Association"}


def test_get_documents_and_associations(conn: Connection) -> None:
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS_AND_ASSOCIATIONS, ("$XDSDocumentEntryEntryUUID", ids("DA")))) == {
        "DA", "a1", "a4", "a15"}
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS_AND_ASSOCIATIONS, ("$XDSDocumentEntryUniqueId", "('DB')"))) == {
        "DB", "a2", "a8", "a12"}
    assert ok(ask(conn, v.SQ_GET_DOCUMENTS_AND_ASSOCIATIONS, ("$XDSDocumentEntryUniqueId", "('none')"))) == set()


def test_get_submission_sets(conn: Connection) -> None:
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SETS, ("$uuid", ids("DA", "DC")))) == {"SS1", "SS2", "a1", "a6"}
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SETS, ("$uuid", ids("DA", "DB")))) == {"SS1", "a1", "a2"}
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SETS, ("$uuid", ids("F1")))) == {"SS1", "a3"}
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SETS, ("$uuid", ids("a12")))) == {"SS2", "a13"}
    # F1 -> DA (a4) is HasMember too, but F1 is no SubmissionSet
    assert "F1" not in ok(ask(conn, v.SQ_GET_SUBMISSION_SETS, ("$uuid", ids("DA"))))
    leaf = ask(conn, v.SQ_GET_SUBMISSION_SETS, ("$uuid", ids("DA", "DX")))
    assert leaf.codes == ["XDSResultNotSinglePatient"] and leaf.status == "Failure"
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SETS, ("$uuid", ids("DA", "DX")), rt="ObjectRef")) == {
        "SS1", "SS3", "a1", "a10"}


def test_get_submission_set_and_contents(conn: Connection) -> None:
    full = {"SS1", "DA", "DB", "F1", "a1", "a2", "a3", "a4", "a5"}
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetEntryUUID", "'%s'" % uid("SS1")))) == full
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetUniqueId", "'SS1'"))) == full
    # Filtered DocumentEntries take their Associations with them (a5 goes with a4).
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetUniqueId", "'SS1'"),
                  ("$XDSDocumentEntryFormatCode", "('f1^^F')"))) == {"SS1", "DA", "F1", "a1", "a3", "a4", "a5"}
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetUniqueId", "'SS1'"),
                  ("$XDSDocumentEntryConfidentialityCode", "('R^^C')"))) == {"SS1", "DB", "F1", "a2", "a3"}
    # SS2: DC (Deprecated, still its content), DH; DD is On-Demand (not asked for); a12/a13 link F1/DB which
    # are not in SS2.
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetUniqueId", "'SS2'"))) == {
        "SS2", "DC", "DH", "a6", "a11"}
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetUniqueId", "'SS2'"),
                  ("$XDSDocumentEntryType", "('%s', '%s')" % v.DOCUMENT_ENTRY_TYPES))) == {
        "SS2", "DC", "DD", "DH", "a6", "a7", "a11"}
    assert ok(ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetUniqueId", "'none'"))) == set()


def test_get_submission_set_and_contents_object_refs(conn: Connection) -> None:
    ans = ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetUniqueId", "'SS1'"), rt="ObjectRef")
    assert ok(ans) == {"SS1", "DA", "DB", "F1", "a1", "a2", "a3", "a4", "a5"}
    assert set(ans.tags) == {"ObjectRef"}


def test_get_folder_and_contents(conn: Connection) -> None:
    f1 = ("$XDSFolderEntryUUID", "'%s'" % uid("F1"))
    assert ok(ask(conn, v.SQ_GET_FOLDER_AND_CONTENTS, f1)) == {"F1", "DA", "DB", "a4", "a12"}
    assert ok(ask(conn, v.SQ_GET_FOLDER_AND_CONTENTS, ("$XDSFolderUniqueId", "'F1'"))) == {"F1", "DA", "DB", "a4", "a12"}
    assert ok(ask(conn, v.SQ_GET_FOLDER_AND_CONTENTS, f1, ("$XDSDocumentEntryConfidentialityCode", "('R^^C')"))) == {
        "F1", "DB", "a12"}
    assert ok(ask(conn, v.SQ_GET_FOLDER_AND_CONTENTS, f1, ("$XDSDocumentEntryFormatCode", "('f1^^F')"))) == {
        "F1", "DA", "a4"}
    # Folder versions
    assert ok(ask(conn, v.SQ_GET_FOLDER_AND_CONTENTS, ("$XDSFolderUniqueId", "'f2'"))) == {"F2b", "DA", "a15"}
    assert ok(ask(conn, v.SQ_GET_FOLDER_AND_CONTENTS, ("$XDSFolderEntryUUID", "'%s'" % uid("F2")))) == set()
    assert ok(ask(conn, v.SQ_GET_FOLDER_AND_CONTENTS, ("$XDSFolderUniqueId", "'f2'"), ("$MetadataLevel", "2"))) == {
        "F2", "F2b", "DA", "a15"}


def test_get_folders_for_document(conn: Connection) -> None:
    assert ok(ask(conn, v.SQ_GET_FOLDERS_FOR_DOCUMENT, ("$XDSDocumentEntryEntryUUID", "'%s'" % uid("DA")))) == {
        "F1", "F2b"}
    assert ok(ask(conn, v.SQ_GET_FOLDERS_FOR_DOCUMENT, ("$XDSDocumentEntryUniqueId", "'DB'"))) == {"F1"}
    assert ok(ask(conn, v.SQ_GET_FOLDERS_FOR_DOCUMENT, ("$XDSDocumentEntryUniqueId", "'DH'"))) == set()


def test_get_related_documents(conn: Connection) -> None:
    rplc = ("$AssociationTypes", "('%s')" % v.RPLC)
    assert ok(ask(conn, v.SQ_GET_RELATED_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "'DB'"), rplc)) == {
        "DB", "DC", "a8"}
    # both directions
    assert ok(ask(conn, v.SQ_GET_RELATED_DOCUMENTS, ("$XDSDocumentEntryEntryUUID", "'%s'" % uid("DC")), rplc)) == {
        "DB", "DC", "a8"}
    # HasMember links to SubmissionSets/Folders are no document relations: nothing, not even the document
    hm = ("$AssociationTypes", "('%s', '%s')" % (v.HAS_MEMBER, v.RPLC))
    assert ok(ask(conn, v.SQ_GET_RELATED_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "'DA'"), hm)) == set()
    apnd = ("$AssociationTypes", "('%s')" % v.APND)
    # a9 (DH APND DA) is Deprecated: hidden at level 1, shown at level 2
    assert ok(ask(conn, v.SQ_GET_RELATED_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "'DA'"), apnd)) == set()
    assert ok(ask(conn, v.SQ_GET_RELATED_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "'DA'"), apnd,
                  ("$MetadataLevel", "2"), ("$XDSAssociationStatus", status(A, D)))) == {"DA", "DH", "a9"}
    assert ok(ask(conn, v.SQ_GET_RELATED_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "'none'"), rplc)) == set()


# --- errors --------------------------------------------------------------------------------------------------


def test_unknown_query(conn: Connection) -> None:
    ans = ask(conn, "urn:uuid:00000000-1111-2222-3333-444444444444")
    assert ans.status == "Failure" and ans.codes == ["XDSUnknownStoredQuery"] and ans.names == []


def test_missing_and_number_errors(conn: Connection) -> None:
    ans = ask(conn, v.SQ_FIND_DOCUMENTS, PID)
    assert ans.status == "Failure" and ans.codes == ["XDSStoredQueryMissingParam"]
    assert "$XDSDocumentEntryStatus" in ans.errors[0][1]
    ans = ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryEntryUUID", ids("DA")), ("$XDSDocumentEntryUniqueId", "'DA'"))
    assert ans.codes == ["XDSStoredQueryParamNumber"]
    ans = ask(conn, v.SQ_FIND_DOCUMENTS, ("$XDSDocumentEntryPatientId", ["'%s'" % P1, "'%s'" % P2]), APPROVED)
    assert ans.codes == ["XDSStoredQueryParamNumber"]


def test_malformed_value(conn: Connection) -> None:
    ans = find_docs(conn, ("$XDSDocumentEntryClassCode", "('c1^^S'"))
    assert ans.status == "Failure" and ans.codes == ["XDSRegistryError"]
    assert "$XDSDocumentEntryClassCode" in ans.errors[0][1]
    assert ask(conn, v.SQ_FIND_DOCUMENTS, PID, ("$XDSDocumentEntryStatus", "Approved")).codes == ["XDSRegistryError"]


def test_error_list_precedes_object_list(conn: Connection) -> None:
    ans = ask(conn, v.SQ_FIND_DOCUMENTS, PID)
    assert [etree.QName(x).localname for x in ans.root] == ["RegistryErrorList", "RegistryObjectList"]
    error_list = ans.root[0]
    assert error_list.get("highestSeverity") == v.SEVERITY_ERROR
    assert error_list[0].get("severity") == v.SEVERITY_ERROR


def test_too_many_results(conn: Connection) -> None:
    assert ok(find_docs(conn, max_results=4)) == {"DA", "DB", "DH", "DV2"}
    ans = find_docs(conn, max_results=3)
    assert ans.status == "Failure" and ans.codes == ["XDSTooManyResults"] and ans.names == []
    ans = ask(conn, v.SQ_GET_SUBMISSION_SET_AND_CONTENTS, ("$XDSSubmissionSetUniqueId", "'SS1'"), max_results=5)
    assert ans.codes == ["XDSTooManyResults"]
    ans = ask(conn, v.SQ_GET_ALL, *ALL_APPROVED, max_results=16, rt="ObjectRef")
    assert ans.codes == ["XDSTooManyResults"]
    assert len(ok(ask(conn, v.SQ_GET_ALL, *ALL_APPROVED, max_results=17, rt="ObjectRef"))) == 17


def test_return_type_default_and_bad(conn: Connection) -> None:
    body = ('<query:AdhocQueryRequest xmlns:query="%s" xmlns:rim="%s"><rim:AdhocQuery id="%s">'
            '<rim:Slot name="$XDSDocumentEntryUniqueId"><rim:ValueList><rim:Value>\'DA\'</rim:Value></rim:ValueList>'
            "</rim:Slot></rim:AdhocQuery></query:AdhocQueryRequest>" % (QUERY, RIM, v.SQ_GET_DOCUMENTS))
    root = etree.fromstring(run_stored_query(conn, etree.fromstring(body)))
    assert [etree.QName(x).localname for x in root.find("{%s}RegistryObjectList" % RIM)] == ["ObjectRef"]
    assert ask(conn, v.SQ_GET_DOCUMENTS, ("$XDSDocumentEntryUniqueId", "'DA'"), rt="Bogus").codes == [
        "XDSRegistryError"]


# --- the NIST conformance requests run (parameters accepted) ------------------------------------------------

ITI18 = SHARED / "messages" / "iti18"


def test_conformance_requests_parse(conn: Connection) -> None:
    """Every shared ITI-18 request is answered with a well-formed response; on this registry (without
    their data) those expected to fail on parameters fail with the expected code."""
    need(ITI18.is_dir(), "conformance data not found at %s" % ITI18)
    rows = [line.rstrip("\n").split("\t") for line in (ITI18 / "index.tsv").read_text().splitlines()[1:]]
    for name, _tx, expected, codes, *_ in rows:
        out = run_stored_query(conn, etree.parse(str(ITI18 / name)).getroot())
        root = etree.fromstring(out)
        got = root.get("status").rsplit(":", 1)[1]
        got_codes = [x.get("errorCode") for x in root.iter("{%s}RegistryError" % RS)]
        if "NotSinglePatient" in codes:  # needs two patients' data
            assert got == "Success", (name, got_codes)
        else:
            assert got == expected, (name, got_codes)
            if codes:
                assert got_codes == codes.split(","), name


def test_responses_are_schema_valid(conn: Connection) -> None:
    """Success (LeafClass and ObjectRef) and Failure responses validate against ebRS 3.0 query.xsd."""
    xsd = SHARED / "schemas" / "nist-toolkit-v3" / "query.xsd"
    need(xsd.is_file(), "schemas not found at %s" % xsd)
    schema = etree.XMLSchema(etree.parse(str(xsd)))
    for ans in (find_docs(conn), find_docs(conn, rt="ObjectRef"), ask(conn, v.SQ_FIND_DOCUMENTS, PID),
                ask(conn, v.SQ_GET_ALL, *ALL_APPROVED, rt="ObjectRef"), find_docs(conn, max_results=1)):
        assert schema.validate(ans.root), schema.error_log.last_error


def test_database_failure_is_a_registry_error_not_a_crash(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A database that cannot answer (here: no registry tables) gives Failure + XDSRegistryError."""
    broken = make_engine("sqlite:///%s" % (tmp_path / "empty.db"), migrate=False)
    try:
        with broken.connect() as c:
            answer = find_docs(c)
    finally:
        broken.dispose()
    assert answer.status == "Failure" and answer.names == []
    assert answer.codes == ["XDSRegistryError"]
    assert b"registry database error" in etree.tostring(answer.root)


def test_postgresql_stores_xml_with_lz4(pg_url: str) -> None:
    """Migration 0005: new stored XML is lz4-compressed on PostgreSQL (pglz made LeafClass answers slow)."""
    from sqlalchemy import text

    eng = make_engine(pg_url)
    try:
        with eng.begin() as c:
            insert_objects(c, [doc("LZ", extra="<rim:Slot name='x'>%s</rim:Slot>" % ("padding " * 2000))])
            method = c.execute(text("SELECT pg_column_compression(xml) FROM registry_object")).scalar_one()
            compression = c.execute(text("SELECT attcompression FROM pg_attribute WHERE attname = 'xml' "
                                         "AND attrelid = 'registry_object'::regclass")).scalar_one()
    finally:
        eng.dispose()
    assert compression == "l" and method == "lz4"
