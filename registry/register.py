"""ITI-42 Register Document Set-b (ITI TF-2b 3.42): validate, check against the registry, store atomically.

Order of work:

1. read the SubmitObjectsRequest into the model and run the message-only rules
   (:func:`xdsi.validate.submission.validate_register`);
2. :func:`prepare` what needs no database: symbolic ids -> UUIDs, registry-set attributes (status, lid,
   version, lastUpdateTime), the stored XML and the rows. This runs before the write transaction, so
   concurrent requests (threads, ``--workers`` processes) do it in parallel and SQLite's single writer
   holds its lock only for the database work;
3. in one write transaction (grouped with concurrent submissions, each in a savepoint:
   :class:`xdsi.db.GroupCommit`): registry-state rules (known patient, duplicates, referenced objects, document
   lifecycle targets), lifecycle effects (deprecation by RPLC/XFRM_RPLC, folder membership of replacements)
   and the inserts. Any error rolls the whole submission back: it is all or nothing.
"""

from __future__ import annotations

import copy
import functools
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lxml import etree
from sqlalchemy import Connection, Engine, bindparam, select, text

from registry.storage import objects as store
from registry.storage import schema as s
from registry.storage.patients import patient_is_known
from xdsi.codes import CodeList
from xdsi.db import DriverStatement, grouped_write
from xdsi.ebxml.namespaces import RIM
from xdsi.ebxml.tags import (
    T_ASSOC, T_CLASS, T_DESC, T_EO, T_EXTID, T_LIST, T_NAME, T_OBJREF, T_RP, T_SLOT, T_VALUE, T_VALUELIST, T_VERSION,
)
from xdsi.ebxml.serialize import fragment
from xdsi.metadata import vocabulary as v
from xdsi.metadata.dtm import now as dtm_now
from xdsi.metadata.model import Association, DocumentEntry, Folder, RegistryObject, Submission
from xdsi.transform.ebrim_read import read_registry_object, read_submission
from xdsi.validate import errors as E
from xdsi.validate.errors import RegistryError, XDSError
from xdsi.validate.submission import validate_register

if TYPE_CHECKING:
    from registry.reconcile import Reconciliation

_REF_ATTRS = ("id", "lid", "classifiedObject", "registryObject", "sourceObject", "targetObject")
_RIM_OBJECTS = {T_EO, T_RP, T_ASSOC, T_CLASS, T_EXTID, T_OBJREF}
_KIND_NAME = {s.DOCUMENT_ENTRY: "DocumentEntry", s.SUBMISSION_SET: "SubmissionSet", s.FOLDER: "Folder",
              s.ASSOCIATION: "Association"}


@dataclass
class RegisterResult:
    """Outcome of one registration: errors (empty on success) and the ids assigned to symbolic ids."""

    errors: list[RegistryError]
    assigned: dict[str, str]

    @property
    def ok(self) -> bool:
        return not any(e.is_error for e in self.errors)


def register(engine: Engine, request: etree._Element, *, codes: CodeList | None = None,
             reconciliation: Reconciliation | None = None) -> RegisterResult:
    """Register the contents of an ``lcm:SubmitObjectsRequest``.

    With ``reconciliation`` (:mod:`registry.reconcile`), a patientId the registry does not know may be
    a linked local id (registered under the domain id), or the submission is held for an operator: the
    answer is then Success with a warning."""
    sub, errors = read_submission(request)
    errors += validate_register(sub, codes=codes)
    errors += _initial_versions_only(sub)
    if any(e.is_error for e in errors):
        return RegisterResult(errors, {})
    assert sub.submission_set is not None  # validate_register guarantees exactly one
    patient_id = sub.submission_set.patient_id
    # Reconciliation holds the request as received, or relabels its patient: keep it as it is before prepare().
    received = copy.deepcopy(request) if reconciliation is not None else None
    ready = prepare(request, sub)

    def work(conn: Connection) -> tuple[list[RegistryError], dict[str, str]]:
        _lock_unique_ids(conn, sub)
        if received is not None and not patient_is_known(conn, patient_id):
            # A copy each time: GroupCommit may run this again, and admit() and prepare() rewrite the request.
            again = copy.deepcopy(received)
            again_sub, _ = read_submission(again)
            held = reconciliation.admit(conn, again, again_sub)
            if held is not None:  # kept in the reconciliation queue (committed), nothing registered yet
                return [held], {}
            return [], store_prepared(conn, prepare(again, again_sub))
        return [], store_prepared(conn, ready)

    try:
        # Concurrent submissions share a transaction and its fsync on SQLite, each in its own savepoint.
        notes, assigned = grouped_write(engine, work)
    except XDSError as exc:
        return RegisterResult(exc.errors, {})
    return RegisterResult(errors + notes, assigned)


@dataclass
class Prepared:
    """A submission made ready to store (:func:`prepare`)."""

    #: The model as submitted (the submitter's ids): input and error locations of the registry-state rules.
    submitted: Submission
    #: The model with UUIDs and registry-set attributes; ``rows`` are its objects' rows, in its order.
    sub: Submission
    rows: list[tuple[dict, list[tuple[str, str]]]]
    #: UUIDs given to symbolic ids.
    assigned: dict[str, str]
    #: lastUpdateTime given to the submission's Folders.
    now: str


def prepare(request: etree._Element, sub: Submission) -> Prepared:
    """Everything that needs no database: ids, registry-set attributes, stored XML and rows. Rewrites
    ``request`` and ``sub``; nothing is stored until :func:`store_prepared`."""
    submitted = Submission(copy.copy(sub.submission_set), [copy.copy(o) for o in sub.documents],
                           [copy.copy(o) for o in sub.folders], [copy.copy(o) for o in sub.associations])
    assigned = _assign_uuids(request, sub)
    _fold_top_level(request, sub)
    now = dtm_now()
    for folder in sub.folders:
        # lastUpdateTime is the registry's to set (ITI TF-3 4.2.3.4.5), whatever the submitter sent.
        folder.last_update_time = now
        _set_slot(folder.source, "lastUpdateTime", [now])
    rows = []
    for obj in sub.objects():
        _set_registry_attributes(obj)
        rows.append(store.row_for(obj, fragment(obj.source)))
    return Prepared(submitted, sub, rows, assigned, now)


def store_submission(conn: Connection, request: etree._Element, sub: Submission) -> dict[str, str]:
    """:func:`prepare` and :func:`store_prepared` inside the caller's write transaction. Raises XDSError;
    returns the UUIDs given to symbolic ids."""
    return store_prepared(conn, prepare(request, sub))


def store_prepared(conn: Connection, ready: Prepared) -> dict[str, str]:
    """Registry-state rules, lifecycle effects and inserts, inside the caller's write transaction. Raises
    XDSError; returns the UUIDs given to symbolic ids."""
    state_errors, existing = _check_registry_state(conn, ready.submitted)
    if state_errors:
        raise XDSError(*state_errors)
    _store(conn, ready, existing)
    return ready.assigned


def _initial_versions_only(sub: Submission) -> list[RegistryError]:
    """A Register creates version 1 of each object: its logicalId, if given, is its own entryUUID. An object
    whose ``lid`` names another object is a new version, which only ITI-57 Update Document Set may submit
    (ITI TF-3 4.2.3.2, DocumentEntry.logicalID)."""
    return [RegistryError(E.XDSRegistryMetadataError,
                          f"{type(o).__name__} {o.id}: lid {o.lid} differs from its id; a new version of a registered "
                          "object is submitted with Update Document Set (ITI-57)", o.id)
            for o in sub.objects() if o.lid and o.lid != o.id]


def _lock_unique_ids(conn: Connection, sub: Submission) -> None:
    """PostgreSQL: serialize registrations that carry the same uniqueIds (advisory locks, sorted against
    deadlock). SQLite needs nothing: BEGIN IMMEDIATE already serializes writers."""
    if conn.dialect.name != "postgresql":
        return
    keys = sorted({o.unique_id for o in (*sub.documents, *sub.folders) if o.unique_id}
                  | ({sub.submission_set.unique_id} if sub.submission_set else set()))
    if keys:  # one driver call, run in key order (psycopg pipelines it into one round trip)
        _ADVISORY_LOCK.executemany(conn, [{"k": key} for key in keys])


_ADVISORY_LOCK = DriverStatement(text("SELECT pg_advisory_xact_lock(hashtext(:k))"))


# --- registry-state rules -------------------------------------------------------------------------------


def _check_registry_state(conn: Connection, sub: Submission, *,
                          check_patient: bool = True) -> tuple[list[RegistryError], dict[str, object]]:
    """Rules that need the registry's contents. Returns errors and the referenced existing rows by id.
    ``check_patient`` False: all but the known-patient rule (a submission held for reconciliation)."""
    errors: list[RegistryError] = []
    ss = sub.submission_set
    assert ss is not None  # validate_register guarantees exactly one
    if check_patient and not patient_is_known(conn, ss.patient_id):
        errors.append(RegistryError(E.XDSUnknownPatientId,
                                    f"SubmissionSet {ss.id}: patientId {ss.patient_id} is not known to the registry "
                                    "(not fed over ITI-8, or merged into another id)", ss.id))

    in_message = sub.by_id()
    # entryUUIDs the submitter chose must be new (resubmission of the same objects is refused).
    uuid_ids = [o.id for o in sub.objects() if o.is_uuid]
    for row in store.fetch_by_ids(conn, uuid_ids):
        errors.append(RegistryError(E.XDSDuplicateUniqueIdInRegistry,
                                    f"{_KIND_NAME[row.kind]} {row.id}: entryUUID is already in the registry", row.id))

    errors += _check_unique_ids(conn, sub)

    # Objects referenced by associations but not in the message must exist in the registry.
    referenced = {ref for a in sub.associations for ref in (a.source_object, a.target_object)} - set(in_message)
    # KEY SHARE (PostgreSQL): a concurrent Delete Document Set (ITI-62) cannot remove them under us.
    existing = {row.id: row for row in store.fetch_by_ids(conn, referenced, lock="key share")}
    for ref in sorted(referenced - set(existing)):
        errors.append(RegistryError(E.XDSRegistryMetadataError,
                                    f"Association references {ref}, which is neither in the submission nor in the registry",
                                    ref))
    if errors:
        return errors, existing
    for a in sub.associations:
        errors += _check_association(a, in_message, existing, ss.patient_id)
    return errors, existing


@functools.lru_cache(maxsize=32)
def _by_unique_ids(count: int) -> DriverStatement:
    """Objects (not Associations) having one of ``count`` uniqueIds ``u0``...: compiled once per count
    (statement construction is a visible share of a registration's CPU)."""
    ro = s.registry_object
    return DriverStatement(select(ro.c.unique_id, ro.c.kind, ro.c.hash, ro.c.id)
                           .where(ro.c.unique_id.in_([bindparam(f"u{i}") for i in range(count)]),
                                  ro.c.kind != s.ASSOCIATION))


def _check_unique_ids(conn: Connection, sub: Submission) -> list[RegistryError]:
    errors: list[RegistryError] = []
    wanted = {o.unique_id: o for o in [sub.submission_set, *sub.documents, *sub.folders] if o and o.unique_id}
    if not wanted:
        return errors
    rows = _by_unique_ids(len(wanted)).execute(conn, {f"u{i}": uid for i, uid in enumerate(wanted)})
    for uid, kind, hash_, rid in rows:
        obj = wanted[uid]
        name = type(obj).__name__
        if isinstance(obj, DocumentEntry) and kind == s.DOCUMENT_ENTRY and hash_ and obj.hash \
                and hash_.lower() != obj.hash.lower():
            errors.append(RegistryError(E.XDSNonIdenticalHash,
                                        f"DocumentEntry {obj.id}: uniqueId {uid} is already registered ({rid}) with "
                                        f"hash {hash_}, this submission has hash {obj.hash}", obj.id))
        else:
            errors.append(RegistryError(E.XDSDuplicateUniqueIdInRegistry,
                                        f"{name} {obj.id}: uniqueId {uid} is already registered ({rid})", obj.id))
    return errors


def _patient_of(ref: str, in_message: dict[str, RegistryObject], existing: dict) -> str | None:
    obj = in_message.get(ref)
    if obj is not None:
        return getattr(obj, "patient_id", None)
    row = existing.get(ref)
    return row.patient_id if row is not None else None


def _kind_of(ref: str, in_message: dict[str, RegistryObject], existing: dict) -> str | None:
    obj = in_message.get(ref)
    if obj is not None:
        return {DocumentEntry: s.DOCUMENT_ENTRY, Folder: s.FOLDER, Association: s.ASSOCIATION}.get(
            type(obj), s.SUBMISSION_SET)
    row = existing.get(ref)
    return row.kind if row is not None else None


def _check_association(a: Association, in_message: dict, existing: dict, ss_patient: str) -> list[RegistryError]:
    errors: list[RegistryError] = []
    src_kind, tgt_kind = _kind_of(a.source_object, in_message, existing), _kind_of(a.target_object, in_message, existing)
    if a.association_type == v.HAS_MEMBER:
        # Members must belong to the submission's patient (ITI TF-3 4.1.4); associations have no patient.
        if tgt_kind in (s.DOCUMENT_ENTRY, s.FOLDER):
            tp = _patient_of(a.target_object, in_message, existing)
            if tp != ss_patient:
                errors.append(RegistryError(E.XDSPatientIdDoesNotMatch,
                                            f"Association {a.id}: HasMember target {a.target_object} has patientId {tp}, "
                                            f"the SubmissionSet has {ss_patient}", a.id))
        if src_kind == s.FOLDER:
            sp = _patient_of(a.source_object, in_message, existing)
            if sp != ss_patient:
                errors.append(RegistryError(E.XDSPatientIdDoesNotMatch,
                                            f"Association {a.id}: Folder {a.source_object} has patientId {sp}, "
                                            f"the SubmissionSet has {ss_patient}", a.id))
            row = existing.get(a.source_object)
            if row is not None and row.status != "A":
                errors.append(RegistryError(E.XDSRegistryMetadataError,
                                            f"Association {a.id}: Folder {a.source_object} is not Approved", a.id))
        return errors
    if a.association_type in v.RELATIONSHIP_TYPES:
        row = existing.get(a.target_object)
        if row is None:
            if a.target_object not in in_message:
                errors.append(RegistryError(E.XDSRegistryMetadataError,
                                            f"Association {a.id}: target document {a.target_object} not found", a.id))
            return errors
        if row.kind != s.DOCUMENT_ENTRY:
            errors.append(RegistryError(E.XDSRegistryMetadataError,
                                        f"Association {a.id} ({a.association_type.rsplit(':', 1)[-1]}): target "
                                        f"{a.target_object} is a {_KIND_NAME[row.kind]}, not a DocumentEntry", a.id))
        elif row.status != "A":
            errors.append(RegistryError(E.XDSRegistryDeprecatedDocumentError,
                                        f"Association {a.id} ({a.association_type.rsplit(':', 1)[-1]}): target "
                                        f"DocumentEntry {a.target_object} is Deprecated", a.id))
        elif row.patient_id != _patient_of(a.source_object, in_message, existing):
            errors.append(RegistryError(E.XDSPatientIdDoesNotMatch,
                                        f"Association {a.id}: target DocumentEntry {a.target_object} has patientId "
                                        f"{row.patient_id}, the new document has "
                                        f"{_patient_of(a.source_object, in_message, existing)}", a.id))
    return errors


# --- ids and registry-set attributes ------------------------------------------------------------------


def _assign_uuids(request: etree._Element, sub: Submission) -> dict[str, str]:
    """Replace every symbolic id (not ``urn:uuid:``) in the request by a new UUID, everywhere it is referenced,
    and give id-less Classifications/ExternalIdentifiers one. Updates the model objects too."""
    mapping: dict[str, str] = {}
    elements = list(request.iter(*_RIM_OBJECTS))
    for el in elements:
        ident = el.get("id")
        if ident is None or ident == "":
            if el.tag != T_OBJREF:
                el.set("id", "urn:uuid:" + str(uuid.uuid4()))
        elif not ident.startswith("urn:uuid:") and ident not in mapping:
            mapping[ident] = "urn:uuid:" + str(uuid.uuid4())
    if mapping:
        for el in elements:
            for attr in _REF_ATTRS:
                val = el.get(attr)
                if val is not None and val in mapping:
                    el.set(attr, mapping[val])
        for obj in sub.objects():
            obj.id = mapping.get(obj.id, obj.id)
            obj.lid = mapping.get(obj.lid, obj.lid)
            if isinstance(obj, Association):
                obj.source_object = mapping.get(obj.source_object, obj.source_object)
                obj.target_object = mapping.get(obj.target_object, obj.target_object)
    return mapping


def _fold_top_level(request: etree._Element, sub: Submission) -> None:
    """Move top-level Classifications/ExternalIdentifiers into the object they describe.

    Submitters usually classify the SubmissionSet with a Classification beside it in the RegistryObjectList;
    the registry stores each object on its own, so the classification must travel inside it - otherwise a
    query could not tell a SubmissionSet from a Folder."""
    by_id = {o.id: o.source for o in sub.objects() if o.source is not None}
    rol = request.find(T_LIST)
    if rol is None:
        return
    for child in list(rol):
        if child.tag == T_CLASS:
            target = by_id.get(child.get("classifiedObject", ""))
        elif child.tag == T_EXTID:
            target = by_id.get(child.get("registryObject", ""))
        else:
            continue
        if target is None:
            continue
        # Schema order: ... Classification*, ExternalIdentifier*: classifications go before the first
        # ExternalIdentifier, external identifiers at the end.
        first_ext = target.find(T_EXTID)
        if child.tag == T_CLASS and first_ext is not None:
            first_ext.addprevious(child)
        else:
            target.append(child)


def _set_registry_attributes(obj: RegistryObject, status: str = v.STATUS_APPROVED, version: int = 1) -> None:
    """status, lid and VersionInfo are set by the registry (ITI TF-3 4.1.3, 4.2.3.x); ``version`` > 1 for a
    new version of a logical object (ITI-57)."""
    el = obj.source
    obj.status = status
    obj.lid = obj.lid if obj.lid.startswith("urn:uuid:") else obj.id
    obj.version = str(version)
    el.set("status", status)
    el.set("lid", obj.lid)
    set_version_info(el, version)


def set_version_info(el: etree._Element, version: int) -> None:
    """Set ``VersionInfo/@versionName``, adding the element after the Slots, Name and Description (schema order)."""
    vi = el.find(T_VERSION)
    if vi is None:
        vi = etree.Element(T_VERSION)
        anchor = None
        for child in el:
            if child.tag in (T_SLOT, T_NAME, T_DESC):
                anchor = child
        if anchor is None:
            el.insert(0, vi)
        else:
            anchor.addnext(vi)
    vi.set("versionName", str(version))


def _set_slot(el: etree._Element, name: str, values: Iterable[str]) -> None:
    """Set (replace) a Slot, keeping schema order: Slots come first."""
    for slot in el.findall(T_SLOT):
        if slot.get("name") == name:
            el.remove(slot)
    slot = etree.Element(T_SLOT, name=name)
    vl = etree.SubElement(slot, T_VALUELIST)
    for val in values:
        etree.SubElement(vl, T_VALUE).text = val
    el.insert(0, slot)


# --- storing --------------------------------------------------------------------------------------------


def _store(conn: Connection, ready: Prepared, existing: dict) -> None:
    sub = ready.sub
    folders_touched: set[str] = set()
    generated: list[Association] = []
    in_message = sub.by_id()
    for a in sub.associations:
        if a.association_type == v.HAS_MEMBER and a.source_object in existing \
                and existing[a.source_object].kind == s.FOLDER:
            folders_touched.add(a.source_object)
        if a.association_type in v.REPLACING_TYPES and a.target_object in existing:
            row = existing[a.target_object]
            store.set_status(conn, row.id, row.xml, v.STATUS_DEPRECATED)
            # A replacement joins every folder the replaced document was in (ITI TF-3 4.2.2.2.3).
            for folder_id in _folders_of(conn, row.id):
                generated.append(_has_member(folder_id, a.source_object))
                if folder_id not in in_message:
                    folders_touched.add(folder_id)
    rows = ready.rows + [store.row_for(assoc, fragment(assoc.source)) for assoc in generated]
    store.insert_objects(conn, rows)
    for folder_id in folders_touched:
        _touch_folder(conn, folder_id, ready.now)


def _folders_of(conn: Connection, doc_id: str) -> list[str]:
    ro = s.registry_object
    folder = ro.alias("folder")
    q_ = (select(ro.c.source_object)
          .join(folder, folder.c.id == ro.c.source_object)
          .where(ro.c.target_object == doc_id, ro.c.assoc_type == v.HAS_MEMBER, ro.c.status == "A",
                 folder.c.kind == s.FOLDER))
    return [r[0] for r in conn.execute(q_)]


def _has_member(source: str, target: str) -> Association:
    el = etree.Element(T_ASSOC, nsmap={"rim": RIM})
    ident = "urn:uuid:" + str(uuid.uuid4())
    el.set("id", ident)
    el.set("associationType", v.HAS_MEMBER)
    el.set("sourceObject", source)
    el.set("targetObject", target)
    el.set("objectType", v.OT_ASSOCIATION)
    a = Association(id=ident, association_type=v.HAS_MEMBER, source_object=source, target_object=target, source=el)
    _set_registry_attributes(a)
    return a


def _touch_folder(conn: Connection, folder_id: str, now: str) -> None:
    """A document was added to an existing folder: its lastUpdateTime becomes now."""
    ro = s.registry_object
    xml = conn.execute(select(ro.c.xml).where(ro.c.id == folder_id)).scalar_one()
    el = etree.fromstring('<r xmlns:rim="%s">%s</r>' % (RIM, xml))[0]
    _set_slot(el, "lastUpdateTime", [now])
    conn.execute(ro.update().where(ro.c.id == folder_id).values(xml=fragment(el), last_update_time=now))


def reread(xml: str) -> RegistryObject:
    """Parse a stored fragment back into the model (used by lifecycle code and tests)."""
    return read_registry_object(etree.fromstring('<r xmlns:rim="%s">%s</r>' % (RIM, xml))[0])
