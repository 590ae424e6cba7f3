"""Whole-message rules of an Update Document Set (ITI-57, ITI TF-2b 3.57.4.1.3) and the operations it asks for.

An ITI-57 SubmitObjectsRequest is a SubmissionSet plus any number of these operations:

* **new version** of a DocumentEntry or Folder: the object, with ``lid`` = the logicalId of the registered
  object and a new entryUUID, and a SubmissionSet-to-object HasMember whose ``PreviousVersion`` slot names the
  version it replaces; an ``AssociationPropagation`` slot (``yes``, the default, or ``no``) says whether the
  Folder memberships and document relationships of the replaced version carry over to the new one;
* **status change** (UpdateAvailabilityStatus): an Association from the SubmissionSet to the object whose
  availabilityStatus changes, with ``OriginalStatus`` and ``NewStatus`` slots (Approved or Deprecated);
* **new association** (SubmitAssociation): an Association from the SubmissionSet to an Association in the
  message, which links registered objects (a document to a Folder, a relationship between documents).

Only what the message shows is judged here; rules that need the registry (latest version, current status,
patients of registered objects...) are :mod:`registry.update`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from xdsi.codes import CodeList
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import (
    Association,
    DocumentEntry,
    Folder,
    Submission,
    SubmissionSet,
)
from xdsi.validate import errors as E
from xdsi.validate import hl7, objects
from xdsi.validate.errors import RegistryError
from xdsi.validate.submission import validate_codes

__all__ = [
    "ASSOCIATION_PROPAGATION",
    "STATUSES",
    "NewAssociation",
    "StatusUpdate",
    "UpdateOperations",
    "VersionUpdate",
    "plan_update",
]

#: Slot of the SubmissionSet HasMember of a new version: carry the old version's associations over?
ASSOCIATION_PROPAGATION = "AssociationPropagation"
#: The availabilityStatus values a status change may go from and to.
STATUSES = (v.STATUS_APPROVED, v.STATUS_DEPRECATED)
#: Associations a SubmitAssociation may add: Folder membership and the relationships that do not need a new
#: document (a replacement is registered with its new document through ITI-42/ITI-41).
SUBMITTABLE_TYPES = (v.HAS_MEMBER, v.APND, v.XFRM, v.SIGNS, v.IS_SNAPSHOT_OF)


@dataclass
class VersionUpdate:
    """A new version of a DocumentEntry or Folder."""

    obj: DocumentEntry | Folder
    member: Association  # SubmissionSet HasMember carrying PreviousVersion
    previous_version: int
    propagate: bool = True


@dataclass
class StatusUpdate:
    """An UpdateAvailabilityStatus Association."""

    trigger: Association
    original: str
    new: str

    @property
    def target(self) -> str:
        return self.trigger.target_object


@dataclass
class NewAssociation:
    """A SubmitAssociation and the Association it submits."""

    trigger: Association
    association: Association


@dataclass
class UpdateOperations:
    """Everything one ITI-57 request asks for, in the order the registry applies it."""

    submission_set: SubmissionSet
    versions: list[VersionUpdate] = field(default_factory=list)
    statuses: list[StatusUpdate] = field(default_factory=list)
    associations: list[NewAssociation] = field(default_factory=list)


def _name(obj: object) -> str:
    return type(obj).__name__


def _short(urn: str) -> str:
    return urn.rsplit(":", 1)[-1] or "(none)"


def _version_updates(sub: Submission, ss: SubmissionSet, out: list[RegistryError]) -> tuple[list[VersionUpdate],
                                                                                               set[str]]:
    """New versions and the ids of their HasMember Associations."""
    members = {a.target_object: a for a in sub.associations
               if a.association_type == v.HAS_MEMBER and a.source_object == ss.id}
    found: list[VersionUpdate] = []
    used: set[str] = set()
    lids: dict[str, str] = {}
    for obj in [*sub.documents, *sub.folders]:
        kind = _name(obj)
        member = members.get(obj.id)
        if member is not None:
            used.add(member.id)
        if not obj.lid or obj.lid == obj.id:
            # ITI TF-2b 3.57.4.1.3.1: an initial version (no lid, or lid = id) is registered with ITI-42.
            out.append(RegistryError(
                E.XDSMetadataUpdateError,
                f"{kind} {obj.id}: {'lid is missing' if not obj.lid else 'lid equals its id'}, so this is an initial "
                "version; Update Document Set only submits new versions (lid = the logicalId of the registered "
                f"{kind}, id = a new entryUUID); register initial versions with ITI-42", obj.id))
            continue
        if not obj.lid.startswith("urn:uuid:"):
            out.append(RegistryError(E.XDSMetadataUpdateError,
                                     f"{kind} {obj.id}: lid {obj.lid!r} is not a UUID (urn:uuid:...); a logicalId is "
                                     "always the entryUUID of the first version", obj.id))
            continue
        if obj.lid in lids:
            out.append(RegistryError(
                E.XDSMetadataUpdateOperationError,
                f"{kind} {obj.id}: logicalId {obj.lid} is also updated by {lids[obj.lid]} in this request; one "
                "request may submit only one new version of an object", obj.id))
            continue
        lids[obj.lid] = obj.id
        if member is None:
            out.append(RegistryError(E.XDSMetadataUpdateError,
                                     f"{kind} {obj.id}: no HasMember Association links it to SubmissionSet {ss.id}",
                                     obj.id))
            continue
        if not member.previous_version:
            out.append(RegistryError(
                E.XDSMetadataUpdateError,
                f"Association {member.id}: the HasMember of new version {kind} {obj.id} has no PreviousVersion slot "
                "(the version this one replaces)", member.id))
            continue
        if not member.previous_version.isdigit():
            continue  # reported by validate_association
        propagation = member.extra_slots.get(ASSOCIATION_PROPAGATION)
        propagate = True
        if propagation is not None:
            value = propagation[0].strip().lower() if len(propagation) == 1 else ""
            if value not in ("yes", "no"):
                out.append(RegistryError(E.XDSMetadataUpdateOperationError,
                                         f"Association {member.id}: AssociationPropagation {propagation!r} is neither "
                                         "'yes' nor 'no'", member.id))
                continue
            propagate = value == "yes"
        found.append(VersionUpdate(obj, member, int(member.previous_version), propagate))
    return found, used


def _status_updates(sub: Submission, ss: SubmissionSet, out: list[RegistryError]) -> list[StatusUpdate]:
    found: list[StatusUpdate] = []
    targets: dict[str, str] = {}
    for a in sub.associations:
        if a.association_type != v.UPDATE_AVAILABILITY_STATUS:
            continue
        where = f"Association {a.id} (UpdateAvailabilityStatus)"
        problems = []
        if a.source_object != ss.id:
            problems.append(f"sourceObject {a.source_object!r} is not the SubmissionSet {ss.id}")
        for slot, value in (("OriginalStatus", a.original_status), ("NewStatus", a.new_status)):
            if not value:
                problems.append(f"the {slot} slot is missing")
            elif value not in STATUSES:
                problems.append(f"{slot} {value!r} is neither {v.STATUS_APPROVED} nor {v.STATUS_DEPRECATED}")
        if a.original_status and a.original_status == a.new_status:
            problems.append(f"OriginalStatus and NewStatus are both {_short(a.new_status)}; nothing would change")
        if a.previous_version:
            problems.append("the PreviousVersion slot belongs to a new version's HasMember, not to a status change")
        if a.submission_set_status:
            problems.append("the SubmissionSetStatus slot belongs to a SubmissionSet HasMember")
        if a.target_object in targets:
            problems.append(f"{a.target_object} also has its status changed by {targets[a.target_object]}")
        for problem in problems:
            out.append(RegistryError(E.XDSMetadataUpdateOperationError, f"{where}: {problem}", a.id))
        if not problems and a.target_object:
            targets[a.target_object] = a.id
            found.append(StatusUpdate(a, a.original_status, a.new_status))
    return found


def _new_associations(sub: Submission, ss: SubmissionSet, versions: list[VersionUpdate],
                      out: list[RegistryError]) -> list[NewAssociation]:
    by_id = {a.id: a for a in sub.associations}
    in_message = {o.id for o in sub.objects() if not isinstance(o, Association)}
    new_versions = {u.obj.id: u for u in versions}
    found: list[NewAssociation] = []
    submitted: dict[str, str] = {}
    for a in sub.associations:
        if a.association_type != v.SUBMIT_ASSOCIATION:
            continue
        where = f"Association {a.id} (SubmitAssociation)"
        if a.source_object != ss.id:
            out.append(RegistryError(E.XDSMetadataUpdateOperationError,
                                     f"{where}: sourceObject {a.source_object!r} is not the SubmissionSet {ss.id}", a.id))
            continue
        new = by_id.get(a.target_object)
        if new is None:
            out.append(RegistryError(E.XDSMetadataUpdateError,
                                     f"{where}: targetObject {a.target_object!r} is not an Association in this request",
                                     a.id))
            continue
        if new.id in submitted:
            out.append(RegistryError(E.XDSMetadataUpdateOperationError,
                                     f"{where}: Association {new.id} is already submitted by {submitted[new.id]}", a.id))
            continue
        submitted[new.id] = a.id
        kind = new.association_type
        if kind not in v.ASSOCIATION_TYPES:
            continue  # unknown type: reported by validate_association (XDSRegistryMetadataError)
        if kind not in SUBMITTABLE_TYPES:
            out.append(RegistryError(
                E.XDSMetadataUpdateOperationError,
                f"Association {new.id}: a SubmitAssociation adds a Folder HasMember or a relationship "
                f"({', '.join(_short(t) for t in SUBMITTABLE_TYPES[1:])}), not {_short(kind)}"
                + ("; a replacement is registered with its new document (ITI-42/ITI-41)"
                   if kind in v.REPLACING_TYPES else ""), new.id))
            continue
        bad = False
        for end, ref in (("sourceObject", new.source_object), ("targetObject", new.target_object)):
            if ref == ss.id:
                out.append(RegistryError(E.XDSMetadataUpdateError,
                                         f"Association {new.id}: {end} is the SubmissionSet; a submitted association "
                                         "links registered objects", new.id))
                bad = True
            elif ref not in in_message and not ref.startswith("urn:uuid:"):
                out.append(RegistryError(E.XDSMetadataUpdateError,
                                         f"Association {new.id}: {end} {ref!r} is neither a UUID of a registered "
                                         "object nor an object of this request", new.id))
                bad = True
        if bad:
            continue
        # CP-ITI-1029: propagating the old version's associations and adding a relationship to the new version
        # in the same request would give the new version two conflicting sets of relationships.
        if kind in v.RELATIONSHIP_TYPES:
            for ref in (new.source_object, new.target_object):
                u = new_versions.get(ref)
                if u is not None and u.propagate:
                    out.append(RegistryError(
                        E.XDSMetadataUpdateOperationError,
                        f"Association {new.id}: adds a {_short(kind)} relationship to new version {_name(u.obj)} "
                        f"{ref}, whose HasMember {u.member.id} asks for AssociationPropagation; set "
                        f"AssociationPropagation to 'no' on {u.member.id} or submit the association separately",
                        new.id))
                    bad = True
        if not bad:
            found.append(NewAssociation(a, new))
    return found


def _ids_unique(sub: Submission, out: list[RegistryError]) -> None:
    seen: dict[str, str] = {}
    for obj in sub.objects():
        if obj.id and obj.id in seen:
            out.append(RegistryError(E.XDSRegistryMetadataError,
                                     f"{_name(obj)} {obj.id}: the id is also used by a {seen[obj.id]} in this request",
                                     obj.id))
        seen.setdefault(obj.id, _name(obj))


def _submission_set_rules(ss: SubmissionSet) -> list[RegistryError]:
    """The Register rules for the SubmissionSet, except that a uniqueId that is not an OID is only warned
    about: the SubmissionSet of an update records who changed what, and the NIST reference registry (whose
    test 20004 sends ``SubmissionSet01_uniqueid``) accepts it."""
    problem = hl7.check_oid(ss.unique_id) if ss.unique_id else None
    if problem is None:
        return objects.validate_submission_set(ss)
    out = objects.validate_submission_set(replace(ss, unique_id="2.25.0"))
    out.append(RegistryError.warning(E.XDSRegistryMetadataError,
                                     f"SubmissionSet {ss.id}: uniqueId {problem}; accepted for an update", ss.id))
    return out


def plan_update(sub: Submission, *, codes: CodeList | None = None) -> tuple[UpdateOperations | None,
                                                                              list[RegistryError]]:
    """Check an ITI-57 request on its own and sort it into operations.

    Parameters
    ----------
    sub : Submission
        As read by :func:`xdsi.transform.ebrim_read.read_submission`.
    codes : CodeList, optional
        The affinity domain's code list; every coded value must be in it.

    Returns
    -------
    (UpdateOperations or None, list of RegistryError)
        The operations (None when the request has no SubmissionSet) and every problem found; the registry
        acts only on a request without errors.
    """
    out: list[RegistryError] = []
    ss = sub.submission_set
    if ss is None:
        out.append(RegistryError(E.XDSRegistryMetadataError,
                                 "the request has no SubmissionSet (a RegistryPackage classified "
                                 f"{v.SUBMISSION_SET_CLASS_NODE}); an Update Document Set carries exactly one"))
        return None, out
    out += _submission_set_rules(ss)
    for de in sub.documents:
        out += objects.validate_document_entry(de)  # a new version carries complete metadata
    for fol in sub.folders:
        out += objects.validate_folder(fol)
    for a in sub.associations:
        out += objects.validate_association(a)
    _ids_unique(sub, out)
    for obj in [ss, *sub.associations]:
        if obj.lid and obj.lid != obj.id:
            # Only DocumentEntries and Folders have versions (ITI TF-2b 3.57.4.1.3.1).
            out.append(RegistryError(E.XDSMetadataUpdateError,
                                     f"{_name(obj)} {obj.id}: lid {obj.lid} differs from its id, but a {_name(obj)} "
                                     "has no versions", obj.id))
    for obj in [*sub.documents, *sub.folders]:
        if obj.patient_id and ss.patient_id and obj.patient_id != ss.patient_id:
            out.append(RegistryError(E.XDSPatientIdDoesNotMatch,
                                     f"{_name(obj)} {obj.id}: patientId {obj.patient_id} does not match the "
                                     f"SubmissionSet patientId {ss.patient_id}", obj.id))

    ops = UpdateOperations(ss)
    ops.versions, members = _version_updates(sub, ss, out)
    ops.statuses = _status_updates(sub, ss, out)
    ops.associations = _new_associations(sub, ss, ops.versions, out)

    # Every Association must belong to an operation: anything else (a Register-style HasMember without
    # PreviousVersion, a bare relationship...) is a request the registry cannot decode as an update.
    triggers = members | {s.trigger.id for s in ops.statuses} | {
        a.id for a in sub.associations if a.association_type in (v.UPDATE_AVAILABILITY_STATUS, v.SUBMIT_ASSOCIATION)}
    submitted = {a.target_object for a in sub.associations if a.association_type == v.SUBMIT_ASSOCIATION}
    for a in sub.associations:
        if a.id in triggers or a.id in submitted:
            continue
        what = (f"HasMember from the SubmissionSet to {a.target_object}, which is not a new version in this request"
                if a.association_type == v.HAS_MEMBER and a.source_object == ss.id
                else f"{_short(a.association_type)} {a.source_object} -> {a.target_object}")
        out.append(RegistryError(
            E.XDSMetadataUpdateOperationError,
            f"Association {a.id}: {what} is not part of an Update Document Set operation (new version, "
            "UpdateAvailabilityStatus, or an association submitted by a SubmitAssociation)", a.id))
    if not (ops.versions or ops.statuses or ops.associations) and not out:
        out.append(RegistryError(E.XDSMetadataUpdateOperationError,
                                 "the request asks for no update: no new version, status change or submitted "
                                 "association", ss.id))
    if codes is not None:
        out += validate_codes(sub, codes)
    return ops, out
