"""ebRIM 3.0 -> domain model: read a SubmitObjectsRequest into a :class:`~xdsi.metadata.model.Submission`.

Every XDS attribute of ITI TF-3 4.2.3 is read: Slots, Classifications by scheme (codes, authors), limited
metadata flags (Classifications by node), ExternalIdentifiers by scheme, Name/Description, VersionInfo and
the ``lid``/``status``/``home`` attributes. Slots that are not XDS attributes go to ``extra_slots``.

The reader reports only what the domain model cannot carry (a slot given twice, a single-valued slot with
several values, two classCode Classifications, a RegistryPackage that is neither SubmissionSet nor
Folder, an unknown ExtrinsicObject objectType, a Classification pointing at another object...). Missing or
badly formatted attributes end up as empty or raw strings in the model and are judged by
:mod:`xdsi.validate`, so one fault yields one error. The reader never raises on bad input.

Children are walked once with tag comparisons (no XPath), which keeps a one-document submission well
under a millisecond.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from lxml import etree

from xdsi.ebxml.tags import (
    T_SUBMIT,
    T_PNR,
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
from xdsi.validate.errors import RegistryError, XDSRegistryMetadataError

__all__ = ["read_submission", "read_registry_object", "SLOT_REFERENCE_ID_LIST"]

_Element = etree._Element


SLOT_REFERENCE_ID_LIST = "urn:ihe:iti:xds:2013:referenceIdList"

# DocumentEntry slots: name -> (model field, multi-valued)
_DE_SLOTS: dict[str, tuple[str, bool]] = {
    "creationTime": ("creation_time", False),
    "hash": ("hash", False),
    "languageCode": ("language_code", False),
    "legalAuthenticator": ("legal_authenticator", False),
    "repositoryUniqueId": ("repository_unique_id", False),
    "serviceStartTime": ("service_start_time", False),
    "serviceStopTime": ("service_stop_time", False),
    "size": ("size", False),
    "sourcePatientId": ("source_patient_id", False),
    "sourcePatientInfo": ("source_patient_info", True),
    "documentAvailability": ("document_availability", False),
    SLOT_REFERENCE_ID_LIST: ("reference_ids", True),
    # URI is handled apart (XDS.a split form)
}
_SS_SLOTS: dict[str, tuple[str, bool]] = {
    "submissionTime": ("submission_time", False),
    "intendedRecipient": ("intended_recipients", True),
}
_FOL_SLOTS: dict[str, tuple[str, bool]] = {
    "lastUpdateTime": ("last_update_time", False),
}
_ASSOC_SLOTS: dict[str, tuple[str, bool]] = {
    "SubmissionSetStatus": ("submission_set_status", False),
    "OriginalStatus": ("original_status", False),
    "NewStatus": ("new_status", False),
    "PreviousVersion": ("previous_version", False),
}

# Classification scheme -> (TF attribute name, model field, multi-valued); "authors" marks author schemes.
_DE_CODES: dict[str, tuple[str, str, bool]] = {
    v.DE_CLASS_CODE: ("classCode", "class_code", False),
    v.DE_CONFIDENTIALITY_CODE: ("confidentialityCode", "confidentiality_codes", True),
    v.DE_EVENT_CODE: ("eventCodeList", "event_codes", True),
    v.DE_FORMAT_CODE: ("formatCode", "format_code", False),
    v.DE_HEALTHCARE_FACILITY_TYPE_CODE: ("healthcareFacilityTypeCode", "healthcare_facility_type_code", False),
    v.DE_PRACTICE_SETTING_CODE: ("practiceSettingCode", "practice_setting_code", False),
    v.DE_TYPE_CODE: ("typeCode", "type_code", False),
    v.DE_AUTHOR: ("author", "authors", True),
}
_SS_CODES: dict[str, tuple[str, str, bool]] = {
    v.SS_CONTENT_TYPE_CODE: ("contentTypeCode", "content_type_code", False),
    v.SS_AUTHOR: ("author", "authors", True),
}
_FOL_CODES: dict[str, tuple[str, str, bool]] = {
    v.FOL_CODE_LIST: ("codeList", "codes", True),
}
_ASSOC_CODES: dict[str, tuple[str, str, bool]] = {
    v.ASSOCIATION_DOCUMENTATION: ("associationDocumentation", "documentation", False),
}
_AUTHOR_SCHEMES = frozenset((v.DE_AUTHOR, v.SS_AUTHOR))

# ExternalIdentifier scheme -> (TF attribute name, model field)
_DE_IDS = {v.DE_PATIENT_ID: ("patientId", "patient_id"), v.DE_UNIQUE_ID: ("uniqueId", "unique_id")}
_SS_IDS = {
    v.SS_PATIENT_ID: ("patientId", "patient_id"),
    v.SS_SOURCE_ID: ("sourceId", "source_id"),
    v.SS_UNIQUE_ID: ("uniqueId", "unique_id"),
}
_FOL_IDS = {v.FOL_PATIENT_ID: ("patientId", "patient_id"), v.FOL_UNIQUE_ID: ("uniqueId", "unique_id")}

# Classification nodes that flag an object (not codes).
_LIMITED = {v.DE_LIMITED_METADATA, v.SS_LIMITED_METADATA, v.FOL_LIMITED_METADATA}
_PACKAGE_NODES = {v.SUBMISSION_SET_CLASS_NODE: "SubmissionSet", v.FOLDER_CLASS_NODE: "Folder"}

_AUTHOR_SLOTS = {
    "authorPerson": "person",
    "authorInstitution": "institutions",
    "authorRole": "roles",
    "authorSpecialty": "specialties",
    "authorTelecommunication": "telecommunications",
}


@dataclass(slots=True)
class _Parts:
    """The children of one RegistryObject, gathered in a single pass."""

    slots: dict[str, list[str]] = field(default_factory=dict)
    repeated_slots: list[str] = field(default_factory=list)
    name: str = ""
    description: str = ""
    version: str = ""
    classifications: list[_Element] = field(default_factory=list)
    external_ids: list[_Element] = field(default_factory=list)


class _Errors:
    """Collects RegistryErrors with one error code (the Registry's or the Repository's)."""

    __slots__ = ("code", "items")

    def __init__(self, code: str) -> None:
        self.code = code
        self.items: list[RegistryError] = []

    def add(self, location: str, message: str) -> None:
        self.items.append(RegistryError(self.code, message, location))


def _values(slot: _Element) -> list[str]:
    out: list[str] = []
    for vl in slot:
        if vl.tag == T_VALUELIST:
            for val in vl:
                if val.tag == T_VALUE:
                    out.append((val.text or "").strip())
    return out


def _localized(el: _Element) -> str:
    for ls in el:
        if ls.tag == T_LSTRING:
            return ls.get("value", "")
    return ""


def _gather(el: _Element) -> _Parts:
    parts = _Parts()
    slots = parts.slots
    for child in el:
        tag = child.tag
        if tag == T_SLOT:
            name = child.get("name", "")
            if name in slots:
                parts.repeated_slots.append(name)
                slots[name].extend(_values(child))
            else:
                slots[name] = _values(child)
        elif tag == T_CLASS:
            parts.classifications.append(child)
        elif tag == T_EXTID:
            parts.external_ids.append(child)
        elif tag == T_NAME:
            parts.name = _localized(child)
        elif tag == T_DESC:
            parts.description = _localized(child)
        elif tag == T_VERSION:
            parts.version = child.get("versionName", "")
    return parts


def _base(obj: RegistryObject, el: _Element, parts: _Parts) -> None:
    obj.id = el.get("id", "")
    obj.lid = el.get("lid", "")
    obj.status = el.get("status", "")
    obj.home = el.get("home", "")
    obj.version = parts.version
    obj.source = el


def _read_slots(
    obj: RegistryObject,
    kind: str,
    parts: _Parts,
    known: dict[str, tuple[str, bool]],
    errs: _Errors,
) -> None:
    for name in parts.repeated_slots:
        errs.add(obj.id, f"{kind} {obj.id}: Slot {name} is given more than once")
    for name, values in parts.slots.items():
        spec = known.get(name)
        if spec is None:
            obj.extra_slots[name] = values
            continue
        attr, multi = spec
        if multi:
            setattr(obj, attr, values)
        else:
            if len(values) > 1:
                errs.add(obj.id, f"{kind} {obj.id}: Slot {name} has {len(values)} values; it takes exactly one")
            setattr(obj, attr, values[0] if values else "")


def _code(c: _Element, kind: str, oid: str, attr: str, errs: _Errors) -> Code:
    scheme = ""
    display = ""
    for child in c:
        tag = child.tag
        if tag == T_SLOT:
            if child.get("name") == "codingScheme":
                values = _values(child)
                if len(values) > 1:
                    errs.add(oid, f"{kind} {oid}: {attr} Classification codingScheme slot has {len(values)} "
                                  "values; it takes exactly one")
                scheme = values[0] if values else ""
        elif tag == T_NAME:
            display = _localized(child)
    # An absent codingScheme slot becomes scheme "": the validator reports it (one error per fault).
    return Code(c.get("nodeRepresentation", ""), scheme, display)


def _author(c: _Element, kind: str, oid: str, errs: _Errors) -> Author:
    author = Author(id=c.get("id", ""))
    for child in c:
        if child.tag != T_SLOT:
            continue
        name = child.get("name", "")
        attr = _AUTHOR_SLOTS.get(name)
        if attr is None:
            continue
        values = _values(child)
        if attr == "person":
            if len(values) > 1:
                errs.add(oid, f"{kind} {oid}: author Classification slot authorPerson has {len(values)} values; "
                              "it takes exactly one")
            author.person = values[0] if values else ""
        else:
            getattr(author, attr).extend(values)
    return author


def _read_classifications(
    obj: RegistryObject,
    kind: str,
    classifications: list[_Element],
    schemes: dict[str, tuple[str, str, bool]],
    errs: _Errors,
) -> None:
    oid = obj.id
    seen_single: set[str] = set()
    for c in classifications:
        target = c.get("classifiedObject")
        if target is not None and target != oid:
            errs.add(oid, f"{kind} {oid}: Classification {c.get('id', '')} names classifiedObject {target!r}, "
                          f"not {oid!r}")
            continue
        scheme = c.get("classificationScheme")
        if scheme is None:
            node = c.get("classificationNode")
            if node in _LIMITED and hasattr(obj, "limited_metadata"):
                obj.limited_metadata = True  # type: ignore[attr-defined]
            elif node is None:
                errs.add(oid, f"{kind} {oid}: Classification {c.get('id', '')} has neither classificationScheme "
                              "nor classificationNode")
            # SubmissionSet / Folder nodes were used to pick the kind; other nodes are not XDS attributes.
            continue
        spec = schemes.get(scheme)
        if spec is None:
            continue  # not an XDS attribute of this object type; kept in the stored XML
        attr, fld, multi = spec
        if scheme in _AUTHOR_SCHEMES:
            obj.authors.append(_author(c, kind, oid, errs))  # type: ignore[attr-defined]
            continue
        code = _code(c, kind, oid, attr, errs)
        if multi:
            getattr(obj, fld).append(code)
        elif fld in seen_single:
            errs.add(oid, f"{kind} {oid}: {attr} is given by more than one Classification; it takes exactly one")
        else:
            seen_single.add(fld)
            setattr(obj, fld, code)


def _read_external_ids(
    obj: RegistryObject,
    kind: str,
    ext_ids: list[_Element],
    schemes: dict[str, tuple[str, str]],
    errs: _Errors,
) -> None:
    oid = obj.id
    seen: set[str] = set()
    for e in ext_ids:
        spec = schemes.get(e.get("identificationScheme", ""))
        if spec is None:
            continue
        attr, fld = spec
        target = e.get("registryObject")
        if target is not None and target != oid:
            errs.add(oid, f"{kind} {oid}: ExternalIdentifier {attr} names registryObject {target!r}, not {oid!r}")
            continue
        if fld in seen:
            errs.add(oid, f"{kind} {oid}: ExternalIdentifier {attr} is given more than once")
            continue
        seen.add(fld)
        setattr(obj, fld, e.get("value", "").strip())


def _uri(values: list[str]) -> str:
    """URI slot: one value, or the XDS.a split form ``1|part``, ``2|part``... joined in order."""
    if len(values) <= 1:
        return values[0] if values else ""
    pieces: list[tuple[int, str]] = []
    for val in values:
        num, sep, rest = val.partition("|")
        if not sep or not num.isdigit():
            return ""
        pieces.append((int(num), rest))
    return "".join(p for _, p in sorted(pieces))


def _document_entry(el: _Element, extra: list[_Element], errs: _Errors) -> DocumentEntry:
    parts = _gather(el)
    de = DocumentEntry()
    _base(de, el, parts)
    de.object_type = el.get("objectType", "")
    de.mime_type = el.get("mimeType", "")
    de.title = parts.name
    de.comments = parts.description
    if de.object_type not in v.DOCUMENT_ENTRY_TYPES:
        errs.add(de.id, f"DocumentEntry {de.id}: objectType {de.object_type!r} is neither stable "
                        f"({v.STABLE_DOCUMENT_ENTRY}) nor on-demand ({v.ON_DEMAND_DOCUMENT_ENTRY})")
    uri = parts.slots.pop("URI", None)
    if uri is not None:
        de.uri = _uri(uri)
        if len(uri) > 1 and not de.uri:
            errs.add(de.id, f"DocumentEntry {de.id}: Slot URI has {len(uri)} values that are not the "
                            "'n|part' split form")
    _read_slots(de, "DocumentEntry", parts, _DE_SLOTS, errs)
    _read_classifications(de, "DocumentEntry", parts.classifications + extra, _DE_CODES, errs)
    _read_external_ids(de, "DocumentEntry", parts.external_ids, _DE_IDS, errs)
    return de


def _submission_set(el: _Element, parts: _Parts, extra: list[_Element], errs: _Errors) -> SubmissionSet:
    ss = SubmissionSet()
    _base(ss, el, parts)
    ss.title = parts.name
    ss.comments = parts.description
    _read_slots(ss, "SubmissionSet", parts, _SS_SLOTS, errs)
    _read_classifications(ss, "SubmissionSet", parts.classifications + extra, _SS_CODES, errs)
    _read_external_ids(ss, "SubmissionSet", parts.external_ids, _SS_IDS, errs)
    return ss


def _folder(el: _Element, parts: _Parts, extra: list[_Element], errs: _Errors) -> Folder:
    fol = Folder()
    _base(fol, el, parts)
    fol.title = parts.name
    fol.comments = parts.description
    _read_slots(fol, "Folder", parts, _FOL_SLOTS, errs)
    _read_classifications(fol, "Folder", parts.classifications + extra, _FOL_CODES, errs)
    _read_external_ids(fol, "Folder", parts.external_ids, _FOL_IDS, errs)
    return fol


def _association(el: _Element, extra: list[_Element], errs: _Errors) -> Association:
    parts = _gather(el)
    a = Association()
    _base(a, el, parts)
    a.association_type = el.get("associationType", "")
    a.source_object = el.get("sourceObject", "")
    a.target_object = el.get("targetObject", "")
    _read_slots(a, "Association", parts, _ASSOC_SLOTS, errs)
    _read_classifications(a, "Association", parts.classifications + extra, _ASSOC_CODES, errs)
    return a


def _package_kind(parts: _Parts, outside: str | None) -> set[str]:
    kinds: set[str] = set()
    if outside:
        kinds.add(outside)
    for c in parts.classifications:
        kind = _PACKAGE_NODES.get(c.get("classificationNode", ""))
        if kind:
            kinds.add(kind)
    return kinds


def _registry_object_list(request: _Element) -> _Element | None:
    tag = request.tag
    if tag == T_PNR:
        for child in request:
            if child.tag == T_SUBMIT:
                request = child
                break
        else:
            return None
    elif tag != T_SUBMIT:
        return None
    for child in request:
        if child.tag == T_LIST:
            return child
    return None


def read_submission(
    request: _Element, *, metadata_error: str = XDSRegistryMetadataError
) -> tuple[Submission, list[RegistryError]]:
    """Read an ``lcm:SubmitObjectsRequest`` (ITI-42, ITI-57, or the one inside ITI-41/RAD-68).

    Parameters
    ----------
    request : lxml element
        The ``lcm:SubmitObjectsRequest``; an ``xdsb:ProvideAndRegisterDocumentSetRequest`` is accepted too
        (its SubmitObjectsRequest child is read).
    metadata_error : str
        Error code of the structural errors (a Repository passes ``XDSRepositoryMetadataError``).

    Returns
    -------
    (Submission, list of RegistryError)
        The objects read (each keeps ``source`` = its element) and the structural problems found. The
        submission is as complete as the input allows even when errors are returned.
    """
    errs = _Errors(metadata_error)
    sub = Submission()
    rol = _registry_object_list(request)
    if rol is None:
        errs.add("", f"{etree.QName(request).localname if isinstance(request.tag, str) else 'request'}: "
                     "expected an lcm:SubmitObjectsRequest with a rim:RegistryObjectList")
        return sub, errs.items

    # Pass 1: sort the children, and index top-level Classifications by the object they classify (both the
    # nested and the top-level form occur for SubmissionSet/Folder nodes and, rarely, for codes).
    extrinsic: list[_Element] = []
    packages: list[_Element] = []
    associations: list[_Element] = []
    outside: dict[str, list[_Element]] = {}
    package_kind: dict[str, str] = {}
    for child in rol:
        tag = child.tag
        if tag == T_EO:
            extrinsic.append(child)
        elif tag == T_ASSOC:
            associations.append(child)
        elif tag == T_RP:
            packages.append(child)
        elif tag == T_OBJREF:
            sub.object_refs.append(child.get("id", ""))
        elif tag == T_CLASS:
            sub.classifications.append(child)
            target = child.get("classifiedObject", "")
            kind = _PACKAGE_NODES.get(child.get("classificationNode", ""))
            if kind:
                previous = package_kind.get(target)
                if previous and previous != kind:
                    errs.add(target, f"RegistryPackage {target}: classified as both SubmissionSet and Folder")
                package_kind[target] = kind
            else:
                outside.setdefault(target, []).append(child)

    no_extra: list[_Element] = []
    for el in extrinsic:
        sub.documents.append(_document_entry(el, outside.get(el.get("id", ""), no_extra), errs))
    for el in packages:
        pid = el.get("id", "")
        parts = _gather(el)
        kinds = _package_kind(parts, package_kind.get(pid))
        extra = outside.get(pid, no_extra)
        if len(kinds) != 1:
            what = "both SubmissionSet and Folder" if kinds else "neither SubmissionSet nor Folder"
            errs.add(pid, f"RegistryPackage {pid}: classified as {what} (classificationNode "
                          f"{v.SUBMISSION_SET_CLASS_NODE} or {v.FOLDER_CLASS_NODE})")
            continue
        if "SubmissionSet" in kinds:
            ss = _submission_set(el, parts, extra, errs)
            if sub.submission_set is not None:
                errs.add(pid, f"SubmissionSet {pid}: a second SubmissionSet in the submission (the first is "
                              f"{sub.submission_set.id}); exactly one is allowed")
                continue
            sub.submission_set = ss
        else:
            sub.folders.append(_folder(el, parts, extra, errs))
    for el in associations:
        sub.associations.append(_association(el, outside.get(el.get("id", ""), no_extra), errs))
    return sub, errs.items


def read_registry_object(el: _Element, *, kind: str | None = None) -> RegistryObject:
    """Read one stored ebRIM object (ExtrinsicObject, RegistryPackage or Association).

    Parameters
    ----------
    el : lxml element
        The stored element. A RegistryPackage must carry its SubmissionSet/Folder Classification as a child
        unless ``kind`` says which it is.
    kind : {"SubmissionSet", "Folder"}, optional
        Kind of a RegistryPackage, when the caller knows it.

    Raises
    ------
    ValueError
        If the element is not a registry object the XDS model knows. Stored data is the registry's own, so
        this is an internal error, not a client one; problems inside the object are ignored here.
    """
    errs = _Errors(XDSRegistryMetadataError)
    tag = el.tag
    if tag == T_EO:
        return _document_entry(el, [], errs)
    if tag == T_ASSOC:
        return _association(el, [], errs)
    if tag == T_RP:
        parts = _gather(el)
        kinds = {kind} if kind else _package_kind(parts, None)
        if kinds == {"SubmissionSet"}:
            return _submission_set(el, parts, [], errs)
        if kinds == {"Folder"}:
            return _folder(el, parts, [], errs)
        raise ValueError(f"RegistryPackage {el.get('id')}: cannot tell SubmissionSet from Folder")
    raise ValueError(f"not an XDS registry object: {tag}")
