"""Per-object metadata rules of ITI TF-3 4.2.3 for Register (ITI-42) and Provide and Register (ITI-41/RAD-68).

One function per object type; each returns every problem it finds as a RegistryError naming the object
id and the attribute, with code XDSRegistryMetadataError (or the code the caller passes, e.g. a
Repository's XDSRepositoryMetadataError). Wire-structure faults (a slot given twice...) are found by the
reader (:mod:`xdsi.transform.ebrim_read`); cross-object rules by :mod:`xdsi.validate.submission`.
"""

from __future__ import annotations

from collections.abc import Callable

from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Association, Author, Code, DocumentEntry, Folder, SubmissionSet
from xdsi.validate import hl7
from xdsi.validate.errors import RegistryError, XDSRegistryMetadataError

__all__ = [
    "validate_document_entry",
    "validate_submission_set",
    "validate_folder",
    "validate_association",
    "validate_author",
    "validate_code",
]

_Check = Callable[[str], "str | None"]
_AVAILABILITY = (v.DOCUMENT_AVAILABILITY_ONLINE, v.DOCUMENT_AVAILABILITY_OFFLINE)
_SS_STATUS = (v.SUBMISSION_SET_STATUS_ORIGINAL, v.SUBMISSION_SET_STATUS_REFERENCE)


class _Report:
    """Errors about one object: ``<kind> <id>: <field> <problem>``."""

    __slots__ = ("prefix", "oid", "code", "out")

    def __init__(self, kind: str, oid: str, code: str, out: list[RegistryError]) -> None:
        self.prefix = f"{kind} {oid}: " if oid else f"{kind} (no id): "
        self.oid = oid
        self.code = code
        self.out = out

    def add(self, message: str) -> None:
        self.out.append(RegistryError(self.code, self.prefix + message, self.oid))

    def required(self, name: str, value: object, what: str) -> bool:
        """Report *name* missing when *value* is empty; True if present."""
        if value:
            return True
        self.add(f"{name} is missing ({what} is required)")
        return False

    def check(self, name: str, value: str, check: _Check) -> None:
        """Run a format check on a present value."""
        if value:
            err = check(value)
            if err:
                self.add(f"{name} {err}")

    def check_required(self, name: str, value: str, check: _Check, what: str) -> None:
        if self.required(name, value, what):
            err = check(value)
            if err:
                self.add(f"{name} {err}")


def _code(r: _Report, name: str, code: Code) -> None:
    if not code.code:
        r.add(f"{name} Classification has an empty nodeRepresentation (the code value)")
    if not code.scheme:
        r.add(f"{name} Classification has no codingScheme slot")


def validate_code(code: Code, owner: str, name: str, *, error_code: str = XDSRegistryMetadataError
                  ) -> list[RegistryError]:
    """A coded value needs a non-empty code (nodeRepresentation) and a codingScheme.

    *owner* is ``"<kind> <id>"`` for the messages, *name* the TF attribute (``classCode``...).
    """
    out: list[RegistryError] = []
    kind, _, oid = owner.partition(" ")
    _code(_Report(kind, oid, error_code, out), name, code)
    return out


def _author(r: _Report, author: Author, index: int) -> None:
    name = f"author[{index}]" + (f" ({author.id})" if author.id else "")
    if not (author.person or author.institutions or author.roles or author.specialties
            or author.telecommunications):
        r.add(f"{name} has none of authorPerson, authorInstitution, authorRole, authorSpecialty, "
              "authorTelecommunication")
        return
    r.check(f"{name} authorPerson", author.person, hl7.check_xcn)
    for value in author.institutions:
        r.check(f"{name} authorInstitution", value, hl7.check_xon)
    for value in author.telecommunications:
        r.check(f"{name} authorTelecommunication", value, hl7.check_xtn)
    for value in author.roles:
        if not value:
            r.add(f"{name} authorRole has an empty value")
    for value in author.specialties:
        if not value:
            r.add(f"{name} authorSpecialty has an empty value")


def validate_author(author: Author, owner: str, index: int = 0, *,
                    error_code: str = XDSRegistryMetadataError) -> list[RegistryError]:
    """An author has at least one of person/institution/role/specialty/telecom, each well formed."""
    out: list[RegistryError] = []
    kind, _, oid = owner.partition(" ")
    _author(_Report(kind, oid, error_code, out), author, index)
    return out


def _limited(r: _Report, limited: bool, register: bool) -> None:
    if limited and register:
        # Limited metadata is for XDR/XDM (ITI TF-3 4.1.1.1); a Document Registry accepts only full metadata.
        r.add("is flagged limitedMetadata; a Register transaction needs complete metadata")


def validate_document_entry(
    de: DocumentEntry,
    *,
    provide: bool = False,
    register: bool = True,
    error_code: str = XDSRegistryMetadataError,
) -> list[RegistryError]:
    """Rules for one DocumentEntry (ITI TF-3 4.2.3.2, Table 4.3.1-3 column XDS DS).

    Parameters
    ----------
    provide : bool
        ITI-41/RAD-68 Provide and Register: hash, size and repositoryUniqueId may be absent (the
        Repository fills them in). In ITI-42 (default) a stable entry needs all three.
    register : bool
        Apply XDS Register rules (required attributes, no limitedMetadata). With ``False`` only formats
        of present values and code structure are checked (e.g. an ITI-57 partial view).
    error_code : str
        Code of every error (XDSRegistryMetadataError by default).
    """
    out: list[RegistryError] = []
    r = _Report("DocumentEntry", de.id, error_code, out)
    if not de.id:
        r.add("has no id (entryUUID or symbolic id)")
    stable = de.object_type != v.ON_DEMAND_DOCUMENT_ENTRY
    if register:
        _limited(r, de.limited_metadata, register)
        r.required("classCode", de.class_code, "one classCode Classification")
        r.required("confidentialityCode", de.confidentiality_codes, "at least one confidentialityCode")
        r.required("formatCode", de.format_code, "one formatCode Classification")
        r.required("healthcareFacilityTypeCode", de.healthcare_facility_type_code,
                   "one healthcareFacilityTypeCode Classification")
        r.required("practiceSettingCode", de.practice_setting_code, "one practiceSettingCode Classification")
        r.required("typeCode", de.type_code, "one typeCode Classification")
        r.required("mimeType", de.mime_type, "the ExtrinsicObject mimeType attribute")
        r.required("languageCode", de.language_code, "Slot languageCode")
        r.required("sourcePatientId", de.source_patient_id, "Slot sourcePatientId")
        r.required("patientId", de.patient_id, "ExternalIdentifier XDSDocumentEntry.patientId")
        r.required("uniqueId", de.unique_id, "ExternalIdentifier XDSDocumentEntry.uniqueId")
        if stable:
            r.required("creationTime", de.creation_time, "Slot creationTime")
            if not provide:
                r.required("hash", de.hash, "Slot hash")
                r.required("size", de.size, "Slot size")
        if not provide:
            r.required("repositoryUniqueId", de.repository_unique_id, "Slot repositoryUniqueId")
    # Formats of what is present.
    r.check("mimeType", de.mime_type, hl7.check_mime_type)
    r.check("patientId", de.patient_id, hl7.check_cx)
    r.check("sourcePatientId", de.source_patient_id, hl7.check_cx)
    r.check("uniqueId", de.unique_id, hl7.check_document_unique_id)
    r.check("creationTime", de.creation_time, hl7.check_dtm)
    r.check("serviceStartTime", de.service_start_time, hl7.check_dtm)
    r.check("serviceStopTime", de.service_stop_time, hl7.check_dtm)
    r.check("hash", de.hash, hl7.check_sha1)
    r.check("size", de.size, hl7.check_size)
    r.check("languageCode", de.language_code, hl7.check_language_code)
    r.check("legalAuthenticator", de.legal_authenticator, hl7.check_xcn)
    r.check("repositoryUniqueId", de.repository_unique_id, hl7.check_oid)
    for value in de.source_patient_info:
        r.check("sourcePatientInfo", value, hl7.check_source_patient_info)
    for value in de.reference_ids:
        r.check("referenceIdList", value, hl7.check_cxi)
    if de.document_availability and de.document_availability not in _AVAILABILITY:
        r.add(f"documentAvailability {de.document_availability!r} is neither {_AVAILABILITY[0]} "
              f"nor {_AVAILABILITY[1]}")
    if (de.service_start_time and de.service_stop_time and not hl7.check_dtm(de.service_start_time)
            and not hl7.check_dtm(de.service_stop_time)):
        # Compare at the shorter precision: 2004 is not after 200412230800.
        n = min(len(de.service_start_time), len(de.service_stop_time))
        if de.service_start_time[:n] > de.service_stop_time[:n]:
            r.add(f"serviceStartTime {de.service_start_time} is after serviceStopTime {de.service_stop_time}")
    # Codes.
    for name, code in (
        ("classCode", de.class_code),
        ("formatCode", de.format_code),
        ("healthcareFacilityTypeCode", de.healthcare_facility_type_code),
        ("practiceSettingCode", de.practice_setting_code),
        ("typeCode", de.type_code),
    ):
        if code is not None:
            _code(r, name, code)
    for code in de.confidentiality_codes:
        _code(r, "confidentialityCode", code)
    for code in de.event_codes:
        _code(r, "eventCodeList", code)
    for i, author in enumerate(de.authors):
        _author(r, author, i)
    return out


def validate_submission_set(
    ss: SubmissionSet, *, register: bool = True, error_code: str = XDSRegistryMetadataError
) -> list[RegistryError]:
    """Rules for the SubmissionSet (ITI TF-3 4.2.3.3): contentTypeCode, patientId, sourceId,
    submissionTime and uniqueId required; authors well formed."""
    out: list[RegistryError] = []
    r = _Report("SubmissionSet", ss.id, error_code, out)
    if not ss.id:
        r.add("has no id (entryUUID or symbolic id)")
    if register:
        _limited(r, ss.limited_metadata, register)
        r.required("contentTypeCode", ss.content_type_code, "one contentTypeCode Classification")
        r.required("patientId", ss.patient_id, "ExternalIdentifier XDSSubmissionSet.patientId")
        r.required("sourceId", ss.source_id, "ExternalIdentifier XDSSubmissionSet.sourceId")
        r.required("submissionTime", ss.submission_time, "Slot submissionTime")
        r.required("uniqueId", ss.unique_id, "ExternalIdentifier XDSSubmissionSet.uniqueId")
    r.check("patientId", ss.patient_id, hl7.check_cx)
    r.check("sourceId", ss.source_id, hl7.check_oid)
    r.check("uniqueId", ss.unique_id, hl7.check_oid)
    r.check("submissionTime", ss.submission_time, hl7.check_dtm)
    for value in ss.intended_recipients:
        if not value.strip("|^"):
            r.add(f"intendedRecipient {value!r} names neither an organization nor a person")
    if ss.content_type_code is not None:
        _code(r, "contentTypeCode", ss.content_type_code)
    for i, author in enumerate(ss.authors):
        _author(r, author, i)
    return out


def validate_folder(
    fol: Folder, *, register: bool = True, error_code: str = XDSRegistryMetadataError
) -> list[RegistryError]:
    """Rules for a Folder (ITI TF-3 4.2.3.4): codeList, patientId and uniqueId required."""
    out: list[RegistryError] = []
    r = _Report("Folder", fol.id, error_code, out)
    if not fol.id:
        r.add("has no id (entryUUID or symbolic id)")
    if register:
        _limited(r, fol.limited_metadata, register)
        r.required("codeList", fol.codes, "at least one codeList Classification")
        r.required("patientId", fol.patient_id, "ExternalIdentifier XDSFolder.patientId")
        r.required("uniqueId", fol.unique_id, "ExternalIdentifier XDSFolder.uniqueId")
    r.check("patientId", fol.patient_id, hl7.check_cx)
    r.check("uniqueId", fol.unique_id, hl7.check_oid)
    r.check("lastUpdateTime", fol.last_update_time, hl7.check_dtm)
    for code in fol.codes:
        _code(r, "codeList", code)
    return out


def validate_association(a: Association, *, error_code: str = XDSRegistryMetadataError) -> list[RegistryError]:
    """Rules for one Association on its own (ITI TF-3 4.2.2): type known, ends given, slot values valid,
    documentation only on relationship associations."""
    out: list[RegistryError] = []
    r = _Report("Association", a.id, error_code, out)
    if not a.id:
        r.add("has no id")
    if not a.association_type:
        r.add("associationType is missing")
    elif a.association_type not in v.ASSOCIATION_TYPES:
        r.add(f"associationType {a.association_type!r} is not an XDS association type")
    r.required("sourceObject", a.source_object, "the sourceObject attribute")
    r.required("targetObject", a.target_object, "the targetObject attribute")
    if a.submission_set_status:
        if a.association_type != v.HAS_MEMBER:
            r.add("SubmissionSetStatus slot is only allowed on HasMember")
        elif a.submission_set_status not in _SS_STATUS:
            r.add(f"SubmissionSetStatus {a.submission_set_status!r} is neither Original nor Reference")
    if a.documentation is not None:
        if not a.is_relationship:
            # nist12370: documentation labels the reason of a lifecycle change, so only relationships carry it.
            r.add("associationDocumentation Classification is only allowed on a document relationship "
                  "(RPLC, APND, XFRM, XFRM_RPLC, signs, IsSnapshotOf), not on "
                  f"{a.association_type.rsplit(':', 1)[-1] or 'this association'}")
        _code(r, "associationDocumentation", a.documentation)
    for name, value in (("OriginalStatus", a.original_status), ("NewStatus", a.new_status)):
        if value and a.association_type != v.UPDATE_AVAILABILITY_STATUS:
            r.add(f"{name} slot is only allowed on UpdateAvailabilityStatus")
    if a.previous_version and not a.previous_version.isdigit():
        r.add(f"PreviousVersion {a.previous_version!r} is not a version number")
    return out
