"""Domain model -> ebRIM 3.0: build SubmitObjectsRequests and single registry objects.

The output is schema-valid ebRIM 3.0: each RegistryObject's children come in the order the schema
requires (Slot*, Name, Description, VersionInfo, Classification*, ExternalIdentifier*). Classification and
ExternalIdentifier ids are generated as ``urn:uuid:`` values (authors keep theirs when set). Empty
attributes are left out, so ``read(write(x)) == x`` (except ``source``, and author ids that were empty).
The inputs are never modified.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from urllib.parse import quote

from lxml import etree

from xdsi.ebxml.namespaces import LCM, RIM, XDSB, XOP, q
from xdsi.ebxml.tags import (
    T_PNR,
    T_SUBMIT,
    T_LIST,
    T_EO,
    T_RP,
    T_ASSOC,
    T_CLASS,
    T_EXTID,
    T_OBJREF,
    T_SLOT,
    T_VALUELIST,
    T_VALUE,
    T_NAME,
    T_DESC,
    T_LSTRING,
    T_VERSION,
)
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import (
    Association,
    Author,
    Code,
    DocumentEntry,
    Folder,
    RegistryObject,
    Submission,
    SubmissionSet,
)
from xdsi.transform.ebrim_read import SLOT_REFERENCE_ID_LIST

__all__ = [
    "write_submission",
    "write_document_entry",
    "write_submission_set",
    "write_folder",
    "write_association",
    "write_registry_object",
    "write_provide_and_register",
]

_Element = etree._Element
_SubElement = etree.SubElement


T_DOCUMENT = q(XDSB, "Document")

_RIM_NSMAP = {"rim": RIM}
_LCM_NSMAP = {"lcm": LCM, "rim": RIM}


def _new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _root(tag: str, attrib: dict[str, str], parent: _Element | None) -> _Element:
    if parent is None:
        return etree.Element(tag, attrib, nsmap=_RIM_NSMAP)
    return _SubElement(parent, tag, attrib)


def _attrs(obj: RegistryObject, **more: str) -> dict[str, str]:
    attrib = {"id": obj.id}
    if obj.lid:
        attrib["lid"] = obj.lid
    if obj.status:
        attrib["status"] = obj.status
    if obj.home:
        attrib["home"] = obj.home
    for key, value in more.items():
        if value:
            attrib[key] = value
    return attrib


def _slot(parent: _Element, name: str, values: list[str] | tuple[str, ...]) -> None:
    slot = _SubElement(parent, T_SLOT, {"name": name})
    vl = _SubElement(slot, T_VALUELIST)
    for value in values:
        _SubElement(vl, T_VALUE).text = value


def _slots(parent: _Element, obj: RegistryObject, pairs: list[tuple[str, str | list[str]]]) -> None:
    """XDS slots first (skipping empty ones), then the extra slots as submitted."""
    for name, value in pairs:
        if isinstance(value, str):
            if value:
                _slot(parent, name, (value,))
        elif value:
            _slot(parent, name, value)
    for name, values in obj.extra_slots.items():
        _slot(parent, name, values)


def _localized(parent: _Element, tag: str, text: str) -> None:
    if text:
        _SubElement(_SubElement(parent, tag), T_LSTRING, {"value": text})


def _name_desc_version(parent: _Element, title: str, comments: str, version: str) -> None:
    _localized(parent, T_NAME, title)
    _localized(parent, T_DESC, comments)
    if version:
        _SubElement(parent, T_VERSION, {"versionName": version})


def _code(parent: _Element, scheme: str, owner: str, code: Code) -> None:
    c = _SubElement(parent, T_CLASS, {
        "id": _new_id(),
        "classificationScheme": scheme,
        "classifiedObject": owner,
        "nodeRepresentation": code.code,
    })
    _slot(c, "codingScheme", (code.scheme,))
    _localized(c, T_NAME, code.display)


def _author(parent: _Element, scheme: str, owner: str, author: Author) -> None:
    c = _SubElement(parent, T_CLASS, {
        "id": author.id or _new_id(),
        "classificationScheme": scheme,
        "classifiedObject": owner,
        "nodeRepresentation": "",  # ITI TF-3 4.2.3.1.4: an author Classification has an empty node
    })
    if author.person:
        _slot(c, "authorPerson", (author.person,))
    for name, values in (
        ("authorInstitution", author.institutions),
        ("authorRole", author.roles),
        ("authorSpecialty", author.specialties),
        ("authorTelecommunication", author.telecommunications),
    ):
        if values:
            _slot(c, name, values)


def _node(parent: _Element, owner: str, node: str) -> None:
    _SubElement(parent, T_CLASS, {"id": _new_id(), "classifiedObject": owner, "classificationNode": node})


def _external_id(parent: _Element, scheme: str, owner: str, value: str, name: str) -> None:
    if not value:
        return
    e = _SubElement(parent, T_EXTID, {
        "id": _new_id(),
        "identificationScheme": scheme,
        "registryObject": owner,
        "value": value,
    })
    _localized(e, T_NAME, name)


def write_document_entry(de: DocumentEntry, parent: _Element | None = None) -> _Element:
    """Build a ``rim:ExtrinsicObject`` for *de* (appended to *parent* when given)."""
    el = _root(T_EO, _attrs(de, objectType=de.object_type, mimeType=de.mime_type), parent)
    _slots(el, de, [
        ("creationTime", de.creation_time),
        ("hash", de.hash),
        ("languageCode", de.language_code),
        ("legalAuthenticator", de.legal_authenticator),
        ("repositoryUniqueId", de.repository_unique_id),
        ("serviceStartTime", de.service_start_time),
        ("serviceStopTime", de.service_stop_time),
        ("size", de.size),
        ("sourcePatientId", de.source_patient_id),
        ("sourcePatientInfo", de.source_patient_info),
        ("URI", de.uri),
        ("documentAvailability", de.document_availability),
        (SLOT_REFERENCE_ID_LIST, de.reference_ids),
    ])
    _name_desc_version(el, de.title, de.comments, de.version)
    oid = de.id
    for author in de.authors:
        _author(el, v.DE_AUTHOR, oid, author)
    for scheme, code in (
        (v.DE_CLASS_CODE, de.class_code),
        (v.DE_FORMAT_CODE, de.format_code),
        (v.DE_HEALTHCARE_FACILITY_TYPE_CODE, de.healthcare_facility_type_code),
        (v.DE_PRACTICE_SETTING_CODE, de.practice_setting_code),
        (v.DE_TYPE_CODE, de.type_code),
    ):
        if code is not None:
            _code(el, scheme, oid, code)
    for code in de.confidentiality_codes:
        _code(el, v.DE_CONFIDENTIALITY_CODE, oid, code)
    for code in de.event_codes:
        _code(el, v.DE_EVENT_CODE, oid, code)
    if de.limited_metadata:
        _node(el, oid, v.DE_LIMITED_METADATA)
    _external_id(el, v.DE_PATIENT_ID, oid, de.patient_id, "XDSDocumentEntry.patientId")
    _external_id(el, v.DE_UNIQUE_ID, oid, de.unique_id, "XDSDocumentEntry.uniqueId")
    return el


def write_submission_set(ss: SubmissionSet, parent: _Element | None = None) -> _Element:
    """Build a ``rim:RegistryPackage`` classified as SubmissionSet (the Classification is a child)."""
    el = _root(T_RP, _attrs(ss, objectType=v.OT_REGISTRY_PACKAGE), parent)
    _slots(el, ss, [("submissionTime", ss.submission_time), ("intendedRecipient", ss.intended_recipients)])
    _name_desc_version(el, ss.title, ss.comments, ss.version)
    oid = ss.id
    for author in ss.authors:
        _author(el, v.SS_AUTHOR, oid, author)
    if ss.content_type_code is not None:
        _code(el, v.SS_CONTENT_TYPE_CODE, oid, ss.content_type_code)
    _node(el, oid, v.SUBMISSION_SET_CLASS_NODE)
    if ss.limited_metadata:
        _node(el, oid, v.SS_LIMITED_METADATA)
    _external_id(el, v.SS_UNIQUE_ID, oid, ss.unique_id, "XDSSubmissionSet.uniqueId")
    _external_id(el, v.SS_SOURCE_ID, oid, ss.source_id, "XDSSubmissionSet.sourceId")
    _external_id(el, v.SS_PATIENT_ID, oid, ss.patient_id, "XDSSubmissionSet.patientId")
    return el


def write_folder(fol: Folder, parent: _Element | None = None) -> _Element:
    """Build a ``rim:RegistryPackage`` classified as Folder (the Classification is a child)."""
    el = _root(T_RP, _attrs(fol, objectType=v.OT_REGISTRY_PACKAGE), parent)
    _slots(el, fol, [("lastUpdateTime", fol.last_update_time)])
    _name_desc_version(el, fol.title, fol.comments, fol.version)
    oid = fol.id
    for code in fol.codes:
        _code(el, v.FOL_CODE_LIST, oid, code)
    _node(el, oid, v.FOLDER_CLASS_NODE)
    if fol.limited_metadata:
        _node(el, oid, v.FOL_LIMITED_METADATA)
    _external_id(el, v.FOL_UNIQUE_ID, oid, fol.unique_id, "XDSFolder.uniqueId")
    _external_id(el, v.FOL_PATIENT_ID, oid, fol.patient_id, "XDSFolder.patientId")
    return el


def write_association(a: Association, parent: _Element | None = None) -> _Element:
    """Build a ``rim:Association`` with its XDS slots and documentation Classification."""
    el = _root(T_ASSOC, _attrs(
        a,
        objectType=v.OT_ASSOCIATION,
        associationType=a.association_type,
        sourceObject=a.source_object,
        targetObject=a.target_object,
    ), parent)
    _slots(el, a, [
        ("SubmissionSetStatus", a.submission_set_status),
        ("OriginalStatus", a.original_status),
        ("NewStatus", a.new_status),
        ("PreviousVersion", a.previous_version),
    ])
    if a.version:
        _SubElement(el, T_VERSION, {"versionName": a.version})
    if a.documentation is not None:
        _code(el, v.ASSOCIATION_DOCUMENTATION, a.id, a.documentation)
    return el


def write_registry_object(obj: RegistryObject, parent: _Element | None = None) -> _Element:
    """Dispatch on the object's type to the ``write_*`` function."""
    if isinstance(obj, DocumentEntry):
        return write_document_entry(obj, parent)
    if isinstance(obj, SubmissionSet):
        return write_submission_set(obj, parent)
    if isinstance(obj, Folder):
        return write_folder(obj, parent)
    if isinstance(obj, Association):
        return write_association(obj, parent)
    raise TypeError(f"not an XDS registry object: {type(obj).__name__}")


def write_submission(sub: Submission) -> _Element:
    """Build an ``lcm:SubmitObjectsRequest`` holding every object of *sub*.

    Order: DocumentEntries, Folders, the SubmissionSet, Associations, ObjectRefs. SubmissionSet and Folder
    Classifications are written as children of their RegistryPackage; ``sub.classifications`` (top-level
    elements as read) are not written again, because the reader folds what they say into the objects.
    """
    root = etree.Element(T_SUBMIT, nsmap=_LCM_NSMAP)
    rol = _SubElement(root, T_LIST)
    for de in sub.documents:
        write_document_entry(de, rol)
    for fol in sub.folders:
        write_folder(fol, rol)
    if sub.submission_set is not None:
        write_submission_set(sub.submission_set, rol)
    for a in sub.associations:
        write_association(a, rol)
    for ref in sub.object_refs:
        _SubElement(rol, T_OBJREF, {"id": ref})
    return root


def write_provide_and_register(sub: Submission, documents: Mapping[str, str | bytes]) -> _Element:
    """An ``xdsb:ProvideAndRegisterDocumentSetRequest`` (ITI-41 / RAD-68): the SubmitObjectsRequest of
    ``sub`` plus one ``xdsb:Document`` per DocumentEntry id in ``documents``, whose value is either a
    Content-ID (``str``: the bytes travel as an MTOM/XOP part) or the bytes themselves (inline base64)."""
    root = etree.Element(T_PNR, nsmap={"xdsb": XDSB})
    root.append(write_submission(sub))
    for doc_id, content in documents.items():
        doc = _SubElement(root, T_DOCUMENT, {"id": doc_id})
        if isinstance(content, str):
            _SubElement(doc, q(XOP, "Include"), {"href": "cid:" + quote(content, safe="@.-_")}, nsmap={"xop": XOP})
        else:
            doc.text = base64.b64encode(content).decode("ascii")
    return root
