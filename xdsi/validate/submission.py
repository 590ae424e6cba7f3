"""Whole-message rules of a Register Document Set-b (ITI-42) submission, also used for the metadata of
Provide and Register (ITI-41, RAD-68).

Only what the message itself shows is judged here: exactly one SubmissionSet, membership of every
DocumentEntry and Folder, association ends, patient ids within the message, uniqueIds and ids unique in
the message, codes of the affinity domain. Rules that need the registry's state (unknown patient,
uniqueId already registered, replaced document deprecated, hash mismatch, folder of another patient...)
belong to the Registry.
"""

from __future__ import annotations

from xdsi.codes import CodeList
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Association, Code, DocumentEntry, Folder, RegistryObject, Submission
from xdsi.validate import objects
from xdsi.validate.errors import (
    RegistryError,
    XDSPatientIdDoesNotMatch,
    XDSRegistryDuplicateUniqueIdInMessage,
    XDSRegistryMetadataError,
)

__all__ = ["validate_register", "validate_codes"]

#: Association types that belong to ITI-57 Update Document Set, not to a Register.
_UPDATE_ONLY = (v.UPDATE_AVAILABILITY_STATUS, v.SUBMIT_ASSOCIATION)


def _kind(obj: RegistryObject) -> str:
    return type(obj).__name__


def validate_codes(sub: Submission, codes: CodeList, *, error_code: str = XDSRegistryMetadataError
                   ) -> list[RegistryError]:
    """Every coded value (and DocumentEntry.mimeType) must be in the affinity domain's code list."""
    out: list[RegistryError] = []

    def check(obj: RegistryObject, name: str, attribute: str, code: Code | None) -> None:
        # An empty code or codingScheme is reported by the object rules already: one error per fault.
        if code is None or not code.code or not code.scheme or codes.contains(attribute, code):
            return
        out.append(RegistryError(
            error_code,
            f"{_kind(obj)} {obj.id}: {name} {code.code!r} (codingScheme {code.scheme!r}) is not in the "
            "affinity domain's code list",
            obj.id,
        ))

    for de in sub.documents:
        check(de, "classCode", "class_code", de.class_code)
        check(de, "formatCode", "format_code", de.format_code)
        check(de, "healthcareFacilityTypeCode", "healthcare_facility_type_code", de.healthcare_facility_type_code)
        check(de, "practiceSettingCode", "practice_setting_code", de.practice_setting_code)
        check(de, "typeCode", "type_code", de.type_code)
        for c in de.confidentiality_codes:
            check(de, "confidentialityCode", "confidentiality_codes", c)
        for c in de.event_codes:
            check(de, "eventCodeList", "event_codes", c)
        if de.mime_type and not codes.contains("mime_type", de.mime_type):
            out.append(RegistryError(
                error_code,
                f"DocumentEntry {de.id}: mimeType {de.mime_type!r} is not in the affinity domain's code list",
                de.id,
            ))
    if sub.submission_set is not None:
        check(sub.submission_set, "contentTypeCode", "content_type_code", sub.submission_set.content_type_code)
    for fol in sub.folders:
        for c in fol.codes:
            check(fol, "codeList", "codes", c)
    for a in sub.associations:
        check(a, "associationDocumentation", "documentation", a.documentation)
    return out


def _unique_ids(sub: Submission, out: list[RegistryError]) -> None:
    seen: dict[str, RegistryObject] = {}
    items: list[RegistryObject] = list(sub.documents) + list(sub.folders)
    if sub.submission_set is not None:
        items.append(sub.submission_set)
    for obj in items:
        uid = obj.unique_id  # type: ignore[attr-defined]
        if not uid:
            continue
        first = seen.get(uid)
        if first is None:
            seen[uid] = obj
            continue
        out.append(RegistryError(
            XDSRegistryDuplicateUniqueIdInMessage,
            f"{_kind(obj)} {obj.id}: uniqueId {uid} is also the uniqueId of {_kind(first)} {first.id} in "
            "this submission",
            obj.id,
        ))


def _ids(sub: Submission, out: list[RegistryError], error_code: str) -> None:
    seen: dict[str, RegistryObject] = {}
    for obj in sub.objects():
        if not obj.id:
            continue
        first = seen.get(obj.id)
        if first is None:
            seen[obj.id] = obj
        else:
            out.append(RegistryError(
                error_code, f"{_kind(obj)} {obj.id}: the id is also used by a {_kind(first)} in this submission",
                obj.id))


def _patient_ids(sub: Submission, out: list[RegistryError]) -> None:
    ss = sub.submission_set
    if ss is None or not ss.patient_id:
        return
    owners: list[DocumentEntry | Folder] = list(sub.documents) + list(sub.folders)
    for obj in owners:
        if obj.patient_id and obj.patient_id != ss.patient_id:
            out.append(RegistryError(
                XDSPatientIdDoesNotMatch,
                f"{_kind(obj)} {obj.id}: patientId {obj.patient_id} does not match the SubmissionSet "
                f"patientId {ss.patient_id}",
                obj.id,
            ))


def _associations(sub: Submission, out: list[RegistryError], error_code: str) -> None:
    ss = sub.submission_set
    ss_id = ss.id if ss is not None else None
    docs = {d.id: d for d in sub.documents}
    folders = {f.id: f for f in sub.folders}
    assocs = {a.id: a for a in sub.associations}
    refs = set(sub.object_refs)
    in_message = docs.keys() | folders.keys() | assocs.keys() | ({ss_id} if ss_id else set())

    def err(a: Association, message: str) -> None:
        out.append(RegistryError(error_code, f"Association {a.id}: {message}", a.id))

    def resolves(ref: str) -> bool:
        # Not in the message: it must name an object already in the registry, and those have UUIDs; the
        # registry then checks that the object exists.
        return ref in in_message or ref in refs or ref.startswith("urn:uuid:")

    ss_members: set[str] = set()
    folder_links: list[Association] = []
    for a in sub.associations:
        errs = objects.validate_association(a, error_code=error_code)
        out.extend(errs)
        t, src, tgt = a.association_type, a.source_object, a.target_object
        if src and not resolves(src):
            err(a, f"sourceObject {src!r} is neither an object in the submission nor a UUID of a registry object")
        if tgt and not resolves(tgt):
            err(a, f"targetObject {tgt!r} is neither an object in the submission nor a UUID of a registry object")
        if t == v.HAS_MEMBER:
            if ss_id is not None and src == ss_id:
                ss_members.add(tgt)
                if tgt in docs:
                    if not a.submission_set_status:
                        err(a, "HasMember from the SubmissionSet to DocumentEntry "
                               f"{tgt} needs a SubmissionSetStatus slot (Original or Reference)")
                elif a.submission_set_status == v.SUBMISSION_SET_STATUS_ORIGINAL and tgt not in docs:
                    err(a, f"SubmissionSetStatus Original, but target {tgt} is not a DocumentEntry in this "
                           "submission (use Reference for a registered document)")
            elif src in folders or (src not in in_message and src):
                # Folder -> DocumentEntry (the Folder may be registered already: a UUID).
                folder_links.append(a)
                if tgt in folders or tgt == ss_id or tgt in assocs:
                    err(a, f"HasMember from Folder {src} must target a DocumentEntry, not {tgt}")
            elif src in docs or src in assocs:
                err(a, f"HasMember source {src} must be the SubmissionSet or a Folder, not a "
                       f"{'DocumentEntry' if src in docs else 'Association'}")
        elif t in v.RELATIONSHIP_TYPES:
            # ITI TF-3 4.2.2.2: the new document of a relationship is submitted with it, as its source.
            if src not in docs:
                err(a, f"{t.rsplit(':', 1)[-1]} sourceObject {src!r} must be a DocumentEntry in this submission")
            if tgt in in_message and tgt not in docs:
                err(a, f"{t.rsplit(':', 1)[-1]} targetObject {tgt!r} must be a DocumentEntry")
            if tgt and tgt == src:
                err(a, f"{t.rsplit(':', 1)[-1]} relates DocumentEntry {src} to itself")
        elif t in _UPDATE_ONLY:
            err(a, f"associationType {t} belongs to Update Document Set (ITI-57), not to a Register")

    if ss_id is None:
        return
    for de in sub.documents:
        if de.id and de.id not in ss_members:
            out.append(RegistryError(
                error_code,
                f"DocumentEntry {de.id}: no HasMember Association links it to SubmissionSet {ss_id}",
                de.id,
            ))
    for a in folder_links:
        # ITI TF-3 4.2.2.1: a Folder-to-DocumentEntry HasMember is itself a member of the SubmissionSet, which
        # records who added the document to the folder and when.
        if a.id and a.id not in ss_members:
            err(a, f"Folder HasMember {a.source_object} -> {a.target_object} is not linked to SubmissionSet "
                   f"{ss_id} by a HasMember Association")
    for fol in sub.folders:
        if fol.id and fol.id not in ss_members:
            out.append(RegistryError(
                error_code, f"Folder {fol.id}: no HasMember Association links it to SubmissionSet {ss_id}",
                fol.id,
            ))


def validate_register(
    sub: Submission,
    *,
    codes: CodeList | None = None,
    provide: bool = False,
    error_code: str = XDSRegistryMetadataError,
) -> list[RegistryError]:
    """All message-only rules of ITI-42 (or of ITI-41/RAD-68 metadata with ``provide=True``).

    Parameters
    ----------
    sub : Submission
        As read by :func:`xdsi.transform.read_submission` (or built in code).
    codes : CodeList, optional
        The affinity domain's code list; when given, every coded value and mimeType must be in it.
    provide : bool
        Provide and Register metadata: hash, size and repositoryUniqueId may be absent.
    error_code : str
        Code for metadata errors (a Repository passes XDSRepositoryMetadataError). Patient id mismatch and
        duplicate uniqueIds keep their own codes.

    Returns
    -------
    list of RegistryError
        Every problem found (empty when the message is acceptable).
    """
    out: list[RegistryError] = []
    ss = sub.submission_set
    if ss is None:
        out.append(RegistryError(error_code, "the submission has no SubmissionSet (a RegistryPackage classified "
                                             f"{v.SUBMISSION_SET_CLASS_NODE}); exactly one is required"))
    else:
        out.extend(objects.validate_submission_set(ss, error_code=error_code))
    for de in sub.documents:
        out.extend(objects.validate_document_entry(de, provide=provide, error_code=error_code))
    for fol in sub.folders:
        out.extend(objects.validate_folder(fol, error_code=error_code))
    _ids(sub, out, error_code)
    _unique_ids(sub, out)
    _patient_ids(sub, out)
    _associations(sub, out, error_code)
    if codes is not None:
        out.extend(validate_codes(sub, codes, error_code=error_code))
    return out
