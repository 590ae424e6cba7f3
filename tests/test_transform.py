"""ebRIM 3.0 <-> domain model: round trips, schema validity, both classification forms, structural errors,
and every SubmitObjectsRequest of the conformance data read, written, schema-checked and read back."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
from lxml import etree

from xdsi.ebxml.namespaces import LCM, RIM, XDSB, q
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import (
    Association,
    Author,
    Code,
    DocumentEntry,
    Folder,
    Submission,
    SubmissionSet,
)
from xdsi.transform import (
    read_registry_object,
    read_submission,
    write_association,
    write_document_entry,
    write_folder,
    write_submission,
    write_submission_set,
)
from xdsi.validate.errors import XDSRegistryMetadataError, XDSRepositoryMetadataError

from tests.conftest import SHARED, need

SCHEMA_FILE = SHARED / "schemas" / "nist-toolkit-v3" / "lcm.xsd"
UUID_RE = re.compile(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
PID = "P1^^^&1.2.3.4&ISO"


def _need_shared() -> None:
    need(SCHEMA_FILE.exists(), f"conformance data not found at {SHARED}")


@pytest.fixture(scope="module")
def schema() -> etree.XMLSchema:
    _need_shared()
    return etree.XMLSchema(file=str(SCHEMA_FILE))


def _assert_valid(schema: etree.XMLSchema, el: etree._Element) -> None:
    assert schema.validate(el), schema.error_log


def full_submission() -> Submission:
    """A submission that sets every attribute the model has."""
    de = DocumentEntry(
        id="Document01",
        lid="urn:uuid:0b7bb0f1-6c64-4b4e-9d2b-1b2c3d4e5f60",
        version="1",
        home="urn:oid:1.2.3.99",
        extra_slots={"urn:example:extra": ["a", "b"]},
        mime_type="application/dicom",
        unique_id="1.2.3.4.5.6",
        patient_id=PID,
        title="KOS",
        comments="key images",
        hash="da39a3ee5e6b4b0d3255bfef95601890afd80709",
        size="1024",
        creation_time="20240102030405",
        service_start_time="202401020304",
        service_stop_time="202401020305",
        language_code="en-US",
        repository_unique_id="1.3.6.1.4.1.21367.13.80.110",
        uri="http://example.org/doc",
        source_patient_id="L1^^^&1.2.3.5&ISO",
        source_patient_info=["PID-3|L1^^^&1.2.3.5&ISO", "PID-5|Doe^John^^^", "PID-8|M"],
        legal_authenticator="^Welby^Marcus^^^Dr^MD",
        document_availability=v.DOCUMENT_AVAILABILITY_ONLINE,
        class_code=Code("IMAGES", "1.3.6.1.4.1.19376.1.2.6.1", "Images"),
        format_code=Code("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1", "KOS"),
        healthcare_facility_type_code=Code("22232009", "2.16.840.1.113883.6.96", "Hospital"),
        practice_setting_code=Code("394914008", "2.16.840.1.113883.6.96", "Radiology"),
        type_code=Code("18748-4", "2.16.840.1.113883.6.1"),
        confidentiality_codes=[Code("N", "2.16.840.1.113883.5.25", "normal"), Code("R", "2.16.840.1.113883.5.25")],
        event_codes=[Code("CT", "1.2.840.10008.2.16.4", "CT"), Code("T-D4000", "SRT")],
        authors=[
            Author(person="^Smitty^Gerald^^^", institutions=["Clinic^^^^^&1.2.3&ISO^^^^CC"], roles=["Attending"],
                   specialties=["Radiology"], telecommunications=["^^Internet^g@example.org"],
                   id="urn:uuid:11111111-2222-4333-8444-555555555555"),
            Author(institutions=["Other Clinic"], id="author-2"),
        ],
        reference_ids=["A1^^^&1.2.3&ISO^urn:ihe:iti:xds:2013:accession"],
        limited_metadata=True,
    )
    od = DocumentEntry(id="Document02", object_type=v.ON_DEMAND_DOCUMENT_ENTRY, mime_type="text/xml",
                       unique_id="1.2.3.4.5.7", patient_id=PID)
    ss = SubmissionSet(
        id="SubmissionSet01",
        extra_slots={"urn:nist:extraSSSlot": ["importantvalue"]},
        unique_id="1.2.3.4.9",
        source_id="1.2.3.4",
        patient_id=PID,
        title="Set",
        comments="comment",
        submission_time="20240102030405",
        content_type_code=Code("Imaging", "1.3.6.1.4.1.21367.2017.3", "Imaging"),
        authors=[Author(person="1234^Doe^Jane^^^^^^&1.2.3&ISO", id="author-ss")],
        intended_recipients=["Hospital^^^^^^^^^1.2.3.9|12345^Doe^Jane^^^^^^&1.2.3.9&ISO"],
        limited_metadata=True,
    )
    fol = Folder(id="Folder01", unique_id="1.2.3.4.10", patient_id=PID, title="F", comments="c",
                 last_update_time="20240102", codes=[Code("Referrals", "1.3.6.1.4.1.21367.2017.3", "Referrals")],
                 limited_metadata=True)
    assocs = [
        Association(id="a1", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                    target_object="Document01", submission_set_status="Original",
                    extra_slots={"urn:nist:extraAssocSlot": ["importantvalue"]}),
        Association(id="a2", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                    target_object="Folder01"),
        Association(id="a3", association_type=v.RPLC, source_object="Document01",
                    target_object="urn:uuid:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
                    documentation=Code("Corrected_Information", "1.3.6.1.4.1.21367.2017.3", "Corrected")),
        Association(id="a4", association_type=v.UPDATE_AVAILABILITY_STATUS, source_object="SubmissionSet01",
                    target_object="urn:uuid:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee",
                    original_status=v.STATUS_APPROVED, new_status=v.STATUS_DEPRECATED),
        Association(id="a5", association_type=v.HAS_MEMBER, source_object="SubmissionSet01",
                    target_object="urn:uuid:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee", previous_version="2",
                    status=v.STATUS_APPROVED, lid="a5", version="2"),
    ]
    return Submission(submission_set=ss, documents=[de, od], folders=[fol], associations=assocs,
                      object_refs=["urn:uuid:aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee"])


def _same(a: Submission, b: Submission) -> None:
    assert b.documents == a.documents
    assert b.folders == a.folders
    assert b.submission_set == a.submission_set
    assert b.associations == a.associations
    assert b.object_refs == a.object_refs


# --- write / round trip -----------------------------------------------------------------------------


def test_round_trip_every_attribute(schema: etree.XMLSchema) -> None:
    sub = full_submission()
    el = write_submission(sub)
    _assert_valid(schema, el)
    back, errors = read_submission(el)
    assert errors == []
    _same(sub, back)
    assert back == Submission(back.submission_set, back.documents, back.folders, back.associations,
                              back.object_refs, back.classifications)
    # source is the element each object was read from
    assert back.documents[0].source.get("id") == "Document01"
    assert back.documents[0].source.getparent().tag == q(RIM, "RegistryObjectList")


def test_round_trip_survives_serialization(schema: etree.XMLSchema) -> None:
    sub = full_submission()
    data = etree.tostring(write_submission(sub))
    back, errors = read_submission(etree.fromstring(data))
    assert errors == []
    _same(sub, back)


def test_write_does_not_modify_input_and_generates_uuid_ids() -> None:
    sub = full_submission()
    sub.documents[0].authors[1].id = ""
    before = copy.deepcopy(sub)
    el = write_submission(sub)
    _same(before, sub)
    for tag in ("Classification", "ExternalIdentifier"):
        ids = [c.get("id") for c in el.iter(q(RIM, tag))]
        assert ids
        for i in ids:
            assert UUID_RE.fullmatch(i) or i in ("author-2", "author-ss") or i.startswith("urn:uuid:1111")
    ids = [c.get("id") for c in el.iter(q(RIM, "Classification"))]
    assert len(ids) == len(set(ids))
    # the empty author id became a generated urn:uuid on the wire
    back, _ = read_submission(el)
    assert UUID_RE.fullmatch(back.documents[0].authors[1].id)


def test_child_order_is_schema_order() -> None:
    el = write_document_entry(full_submission().documents[0])
    order = [etree.QName(c).localname for c in el]
    rank = {"Slot": 0, "Name": 1, "Description": 2, "VersionInfo": 3, "Classification": 4, "ExternalIdentifier": 5}
    assert [rank[t] for t in order] == sorted(rank[t] for t in order)
    assert order.count("Name") == 1 and order.count("VersionInfo") == 1


def test_single_object_writers_are_schema_valid(schema: etree.XMLSchema) -> None:
    sub = full_submission()
    for el in (
        write_document_entry(sub.documents[0]),
        write_document_entry(sub.documents[1]),
        write_submission_set(sub.submission_set),
        write_folder(sub.folders[0]),
        *(write_association(a) for a in sub.associations),
    ):
        _assert_valid(schema, el)


def test_read_registry_object_each_type() -> None:
    sub = full_submission()
    de = read_registry_object(write_document_entry(sub.documents[0]))
    assert de == sub.documents[0]
    ss = read_registry_object(write_submission_set(sub.submission_set))
    assert ss == sub.submission_set
    fol = read_registry_object(write_folder(sub.folders[0]))
    assert fol == sub.folders[0]
    a = read_registry_object(write_association(sub.associations[2]))
    assert a == sub.associations[2]
    # stored form without the classification child: the caller says which kind
    el = write_folder(sub.folders[0])
    for c in list(el):
        if c.get("classificationNode") == v.FOLDER_CLASS_NODE:
            el.remove(c)
    assert isinstance(read_registry_object(el, kind="Folder"), Folder)
    with pytest.raises(ValueError):
        read_registry_object(el)
    with pytest.raises(ValueError):
        read_registry_object(etree.Element(q(RIM, "ObjectRef")))


# --- read: forms and structural errors --------------------------------------------------------------------


def _written() -> etree._Element:
    return write_submission(full_submission())


def _rol(root: etree._Element) -> etree._Element:
    return root[0]


def _obj(root: etree._Element, oid: str) -> etree._Element:
    for el in _rol(root):
        if el.get("id") == oid:
            return el
    raise KeyError(oid)


def test_top_level_classification_form_for_packages() -> None:
    root = _written()
    rol = _rol(root)
    for pid, node in (("SubmissionSet01", v.SUBMISSION_SET_CLASS_NODE), ("Folder01", v.FOLDER_CLASS_NODE)):
        pkg = _obj(root, pid)
        child = next(c for c in pkg if c.get("classificationNode") == node)
        pkg.remove(child)
        rol.append(child)  # now a top-level Classification, as many toolkit messages have it
    sub, errors = read_submission(root)
    assert errors == []
    assert sub.submission_set is not None and sub.submission_set.id == "SubmissionSet01"
    assert [f.id for f in sub.folders] == ["Folder01"]
    assert len(sub.classifications) == 2
    _same(full_submission(), sub)


def test_top_level_code_classification_is_folded_in() -> None:
    root = _written()
    de = _obj(root, "Document01")
    cls = next(c for c in de if c.get("classificationScheme") == v.DE_CLASS_CODE)
    de.remove(cls)
    _rol(root).append(cls)
    sub, errors = read_submission(root)
    assert errors == []
    assert sub.documents[0].class_code == full_submission().documents[0].class_code


def test_provide_and_register_wrapper_is_read() -> None:
    pnr = etree.Element(q(XDSB, "ProvideAndRegisterDocumentSetRequest"))
    pnr.append(_written())
    etree.SubElement(pnr, q(XDSB, "Document"), id="Document01").text = "AAAA"
    sub, errors = read_submission(pnr)
    assert errors == []
    assert len(sub.documents) == 2


def test_not_a_submit_objects_request() -> None:
    sub, errors = read_submission(etree.Element(q(LCM, "RemoveObjectsRequest")))
    assert sub.documents == [] and len(errors) == 1
    assert errors[0].code == XDSRegistryMetadataError
    assert "SubmitObjectsRequest" in errors[0].message


def _slot(name: str, *values: str) -> etree._Element:
    s = etree.Element(q(RIM, "Slot"), name=name)
    vl = etree.SubElement(s, q(RIM, "ValueList"))
    for val in values:
        etree.SubElement(vl, q(RIM, "Value")).text = val
    return s


def test_structural_errors_name_object_and_field() -> None:
    root = _written()
    de = _obj(root, "Document01")
    de.insert(0, _slot("creationTime", "20240101"))  # given twice
    de.insert(0, _slot("languageCode", "en", "de"))  # language code already present: twice and 3 values
    for c in de:
        if c.get("classificationScheme") == v.DE_CONFIDENTIALITY_CODE:
            c.set("classificationScheme", v.DE_TYPE_CODE)  # a second typeCode
            break
    for c in de:
        if c.get("classificationScheme") == v.DE_FORMAT_CODE:
            c.set("classifiedObject", "Document02")
    sub, errors = read_submission(root, metadata_error=XDSRepositoryMetadataError)
    messages = [e.message for e in errors]
    assert all(e.code == XDSRepositoryMetadataError for e in errors)
    assert all(e.location == "Document01" for e in errors)
    assert "DocumentEntry Document01: Slot creationTime is given more than once" in messages
    assert "DocumentEntry Document01: Slot languageCode is given more than once" in messages
    assert any("Slot creationTime has 2 values" in m for m in messages)
    assert any("typeCode is given by more than one Classification" in m for m in messages)
    assert any("names classifiedObject 'Document02'" in m for m in messages)
    assert sub.documents[0].format_code is None  # the misdirected classification is not taken


def test_unknown_object_type_and_unclassified_package() -> None:
    root = _written()
    _obj(root, "Document02").set("objectType", "urn:uuid:00000000-0000-0000-0000-000000000000")
    fol = _obj(root, "Folder01")
    for c in list(fol):
        if c.get("classificationNode") == v.FOLDER_CLASS_NODE:
            fol.remove(c)
    sub, errors = read_submission(root)
    by_loc = {e.location: e.message for e in errors}
    assert "urn:uuid:00000000-0000-0000-0000-000000000000" in by_loc["Document02"]
    assert "neither SubmissionSet nor Folder" in by_loc["Folder01"]
    assert len(sub.documents) == 2 and sub.documents[1].object_type.endswith("0000")
    assert sub.folders == []


def test_second_submission_set_is_an_error() -> None:
    root = _written()
    ss2 = copy.deepcopy(_obj(root, "SubmissionSet01"))
    ss2.set("id", "SubmissionSet02")
    for c in ss2:
        if c.get("classifiedObject") == "SubmissionSet01":
            c.set("classifiedObject", "SubmissionSet02")
        if c.get("registryObject") == "SubmissionSet01":
            c.set("registryObject", "SubmissionSet02")
    _rol(root).append(ss2)
    sub, errors = read_submission(root)
    assert sub.submission_set.id == "SubmissionSet01"
    assert [e.location for e in errors] == ["SubmissionSet02"]
    assert "exactly one" in errors[0].message


def test_uri_split_form_and_missing_coding_scheme_is_empty_scheme() -> None:
    root = _written()
    de = _obj(root, "Document01")
    for s in list(de):
        if s.get("name") == "URI":
            de.remove(s)
    de.insert(0, _slot("URI", "2|/doc", "1|http://example.org"))
    for c in de:
        if c.get("classificationScheme") == v.DE_CLASS_CODE:
            for s in list(c):
                if s.get("name") == "codingScheme":
                    c.remove(s)
    sub, errors = read_submission(root)
    assert errors == []  # a missing codingScheme is the validator's finding, not the reader's
    assert sub.documents[0].uri == "http://example.org/doc"
    assert sub.documents[0].class_code == Code("IMAGES", "", "Images")


def test_extra_slots_and_source_kept() -> None:
    root = _written()
    sub, _ = read_submission(root)
    assert sub.documents[0].extra_slots == {"urn:example:extra": ["a", "b"]}
    assert sub.submission_set.extra_slots == {"urn:nist:extraSSSlot": ["importantvalue"]}
    assert sub.associations[0].extra_slots == {"urn:nist:extraAssocSlot": ["importantvalue"]}
    assert sub.submission_set.source is _obj(root, "SubmissionSet01")


# --- the conformance messages --------------------------------------------------------------------------


def _request_files() -> list[Path]:
    return sorted(p for folder in ("iti41", "iti42", "iti57", "rad68")
                  for p in (SHARED / "messages" / folder).glob("*.xml"))


def _submit_request(path: Path) -> etree._Element | None:
    root = etree.parse(str(path)).getroot()
    if root.tag in (q(LCM, "SubmitObjectsRequest"), q(XDSB, "ProvideAndRegisterDocumentSetRequest")):
        return root
    return None


def test_conformance_messages_round_trip(schema: etree.XMLSchema) -> None:
    files = _request_files()
    assert len(files) > 150
    checked = 0
    for path in files:
        root = _submit_request(path)
        if root is None:
            continue
        sub, errors = read_submission(root)
        if errors:
            # only the one message with a bad objectType is structurally broken
            assert path.name == "dcm4chee-derived_reject_docentry-unknown-objecttype.xml", (path, errors)
            continue
        out = write_submission(sub)
        assert schema.validate(out), (path.name, schema.error_log)
        back, errors = read_submission(etree.fromstring(etree.tostring(out)))
        assert errors == [], path.name
        _same(sub, back)
        checked += 1
    assert checked > 200


def test_conformance_extra_metadata_is_kept() -> None:
    _need_shared()
    root = _submit_request(SHARED / "messages" / "iti42" / "nist12379_extra-metadata_01_support.xml")
    sub, errors = read_submission(root)
    assert errors == []
    assert sub.documents[0].extra_slots == {"urn:nist:extraDESlot": ["importantvalue"]}
    assert sub.submission_set.extra_slots == {"urn:nist:extraSSSlot": ["importantvalue"]}
    assert any(a.extra_slots == {"urn:nist:extraAssocSlot": ["importantvalue"]} for a in sub.associations)
