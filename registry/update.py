"""ITI-57 Update Document Set (ITI TF-2b 3.57, Metadata Update): new versions, status changes, new associations.

Order of work:

1. read the SubmitObjectsRequest and sort it into operations with the message-only rules
   (:func:`xdsi.validate.update.plan_update`);
2. in one write transaction: lock the logical objects the request touches, check every operation against
   the registry (latest version, current status, kinds and patients of the objects linked), then assign
   UUIDs to symbolic ids and apply everything: a new version gets version = latest + 1 and the status of the
   version it replaces, which becomes Deprecated; associations of the replaced version are carried over
   (AssociationPropagation); status changes and submitted associations follow. Any error rolls the whole
   request back.

Concurrency: two updates of the same version race for the same logicalId. SQLite's write transaction
(BEGIN IMMEDIATE) runs them one after the other; on PostgreSQL each request takes a transaction-scoped
advisory lock per logicalId (sorted, so requests cannot deadlock) before reading the latest version. Either
way the second request sees the first one's version and fails with XDSMetadataVersionError. The unique
(lid, version) index is the last line of defence.

The UpdateAvailabilityStatus and SubmitAssociation associations only carry the request: like the NIST
reference registry, the registry applies them and does not store them. The SubmissionSet is stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from lxml import etree
from sqlalchemy import Connection, Engine, select, text
from sqlalchemy.exc import IntegrityError

from registry.register import (
    _assign_uuids,
    _fold_top_level,
    _set_registry_attributes,
    _set_slot,
    _touch_folder,
    reread,
)
from registry.storage import objects as store
from registry.storage import schema as s
from registry.storage.engine import write_transaction
from registry.storage.patients import patient_is_known
from xdsi.codes import CodeList
from xdsi.ebxml.namespaces import RIM
from xdsi.ebxml.tags import T_CLASS
from xdsi.ebxml.serialize import fragment
from xdsi.metadata import vocabulary as v
from xdsi.metadata.dtm import now as dtm_now
from xdsi.metadata.model import Association, DocumentEntry, Folder, RegistryObject
from xdsi.transform.ebrim_read import read_submission
from xdsi.validate import errors as E
from xdsi.validate.errors import RegistryError, XDSError
from xdsi.validate.update import (
    StatusUpdate,
    UpdateOperations,
    VersionUpdate,
    plan_update,
)

__all__ = ["UpdateResult", "update"]

_KIND_NAME = {s.DOCUMENT_ENTRY: "DocumentEntry", s.SUBMISSION_SET: "SubmissionSet", s.FOLDER: "Folder",
              s.ASSOCIATION: "Association"}
_STATUS_NAME = {"A": "Approved", "D": "Deprecated", "S": "Submitted"}


@dataclass
class UpdateResult:
    """Outcome of one ITI-57 request: errors (empty on success) and the UUIDs given to symbolic ids."""

    errors: list[RegistryError]
    assigned: dict[str, str]

    @property
    def ok(self) -> bool:
        return not any(e.is_error for e in self.errors)


def update(engine: Engine, request: etree._Element, *, codes: CodeList | None = None) -> UpdateResult:
    """Apply the contents of an ITI-57 ``lcm:SubmitObjectsRequest``, all or nothing."""
    sub, errors = read_submission(request)
    ops, plan_errors = plan_update(sub, codes=codes)
    errors += plan_errors
    if ops is None or any(e.is_error for e in errors):
        return UpdateResult(errors, {})
    try:
        with write_transaction(engine) as conn:
            _lock(conn, ops)
            plan = _check(conn, ops)
            assigned = _assign_uuids(request, sub)
            _fold_top_level(request, sub)
            _apply(conn, ops, plan)
    except XDSError as exc:
        return UpdateResult(exc.errors, {})
    except IntegrityError:
        # Only reachable if the locks were bypassed (another writer outside this code): the (lid, version)
        # or id index refused a second insert.
        return UpdateResult([RegistryError(
            E.XDSMetadataVersionError,
            "another update of the same objects committed first; query the latest version and submit again")], {})
    return UpdateResult(errors, assigned)


# --- locking ----------------------------------------------------------------------------------------------


def _referenced(ops: UpdateOperations) -> set[str]:
    """Ids of objects the request links to or changes (other than the new versions' logicalIds)."""
    refs = {st.target for st in ops.statuses}
    for na in ops.associations:
        refs |= {na.association.source_object, na.association.target_object}
    return refs


def _lock(conn: Connection, ops: UpdateOperations) -> None:
    """PostgreSQL: one advisory lock per logicalId touched (the logicalId of an object never changes, so it
    can be read before locking), plus the SubmissionSet uniqueId as ITI-42 locks it. SQLite: nothing, the
    write transaction already holds the database's write lock."""
    if conn.dialect.name != "postgresql":
        return
    keys = {u.obj.lid for u in ops.versions}
    keys |= {row.lid for row in store.fetch_by_ids(conn, _referenced(ops))}
    if ops.submission_set.unique_id:
        keys.add(ops.submission_set.unique_id)
    for key in sorted(keys):
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


# --- checks against the registry -----------------------------------------------------------------------


@dataclass
class _NewVersion:
    """A checked version update: what it replaces and what it becomes."""

    update: VersionUpdate
    latest: Any  # the registry row of the version replaced
    version: int
    status: str  # status URN of the new version
    carried: list[Any] = field(default_factory=list)  # association rows to carry over to the new version


@dataclass
class _Plan:
    versions: list[_NewVersion] = field(default_factory=list)
    #: status URN set by an UpdateAvailabilityStatus on an object of the request, by ``id(object)`` (the
    #: object's own id may still be symbolic: UUIDs are assigned after the checks)
    obj_status: dict[int, str] = field(default_factory=dict)
    #: status changes of registry rows: (row, status URN)
    row_status: list[tuple[Any, str]] = field(default_factory=list)
    #: registry Folders whose content changes (lastUpdateTime)
    touched: set[str] = field(default_factory=set)


@dataclass
class _Ref:
    """An object a status change or a new association refers to: a registry row or an object of the request."""

    id: str
    kind: str
    patient_id: str | None
    status: str  # status URN
    row: Any = None
    obj: RegistryObject | None = None
    superseded_by: str | None = None  # id of the newer version that this request creates


def _kind_of(obj: RegistryObject) -> str:
    return {DocumentEntry: s.DOCUMENT_ENTRY, Folder: s.FOLDER, Association: s.ASSOCIATION}.get(
        type(obj), s.SUBMISSION_SET)


def _describe(ref: _Ref) -> str:
    return f"{_KIND_NAME[ref.kind]} {ref.id}"


def _check(conn: Connection, ops: UpdateOperations) -> _Plan:
    """Every registry-state rule; raises XDSError with all problems found, else returns what to apply."""
    errors: list[RegistryError] = []
    plan = _Plan()
    ss = ops.submission_set
    if not patient_is_known(conn, ss.patient_id):
        errors.append(RegistryError(E.XDSUnknownPatientId,
                                    f"SubmissionSet {ss.id}: patientId {ss.patient_id} is not known to the registry "
                                    "(not fed over ITI-8, or merged into another id)", ss.id))
    errors += _check_new_ids(conn, ops)
    errors += _check_versions(conn, ops, plan)
    refs = _resolve(conn, ops, plan)
    errors += _check_statuses(conn, ops, plan, refs)
    errors += _check_associations(conn, ops, plan, refs)
    if errors:
        raise XDSError(*errors)
    return plan


def _check_new_ids(conn: Connection, ops: UpdateOperations) -> list[RegistryError]:
    """The SubmissionSet is new (entryUUID, uniqueId); so are the entryUUIDs of the objects stored."""
    errors: list[RegistryError] = []
    ss = ops.submission_set
    stored: list[RegistryObject] = [ss]
    for u in ops.versions:
        stored += [u.obj, u.member]
    stored += [na.association for na in ops.associations]
    by_id = {o.id: o for o in stored if o.is_uuid}
    for row in store.fetch_by_ids(conn, by_id):
        obj = by_id[row.id]
        code = E.XDSMetadataIdentifierError if isinstance(obj, (DocumentEntry, Folder)) \
            else E.XDSDuplicateUniqueIdInRegistry
        errors.append(RegistryError(code, f"{type(obj).__name__} {obj.id}: entryUUID is already in the registry "
                                          f"(a {_KIND_NAME[row.kind]}); a new object needs a new entryUUID", obj.id))
    if ss.unique_id:
        ro = s.registry_object
        found = conn.execute(select(ro.c.id).where(ro.c.unique_id == ss.unique_id,
                                                   ro.c.kind != s.ASSOCIATION).limit(1)).first()
        if found is not None:
            errors.append(RegistryError(E.XDSDuplicateUniqueIdInRegistry,
                                        f"SubmissionSet {ss.id}: uniqueId {ss.unique_id} is already registered "
                                        f"({found[0]})", ss.id))
    return errors


def _latest(rows: Iterable[Any]) -> dict[str, Any]:
    """The highest version per logicalId."""
    latest: dict[str, Any] = {}
    for row in rows:
        if row.lid not in latest or row.version > latest[row.lid].version:
            latest[row.lid] = row
    return latest


def _check_versions(conn: Connection, ops: UpdateOperations, plan: _Plan) -> list[RegistryError]:
    """ITI TF-2b 3.57.4.1.3.3.1 (DocumentEntry) and 3.57.4.1.3.3.3 (Folder): PreviousVersion is the latest
    version, the uniqueId (and a DocumentEntry's objectType) stay, a Folder must be Approved."""
    errors: list[RegistryError] = []
    latest_by_lid = _latest(store.fetch_by_lids(conn, (u.obj.lid for u in ops.versions)))
    for u in ops.versions:
        obj, kind = u.obj, _kind_of(u.obj)
        name = _KIND_NAME[kind]
        where = f"{name} {obj.id}"
        latest = latest_by_lid.get(obj.lid)
        if latest is None:
            errors.append(RegistryError(
                E.XDSMetadataVersionError,
                f"{where}: no object with logicalId {obj.lid} is registered, so PreviousVersion "
                f"{u.previous_version} names no version (register the first version with ITI-42)", obj.id))
            continue
        if latest.kind != kind:
            errors.append(RegistryError(E.XDSMetadataUpdateError,
                                        f"{where}: logicalId {obj.lid} is a {_KIND_NAME[latest.kind]}, not a {name}",
                                        obj.id))
            continue
        if latest.version != u.previous_version:
            errors.append(RegistryError(
                E.XDSMetadataVersionError,
                f"{where}: PreviousVersion {u.previous_version} is not the latest version of logicalId {obj.lid}; "
                f"the registry holds version {latest.version} ({latest.id})", obj.id))
            continue
        if (obj.unique_id or None) != latest.unique_id:
            errors.append(RegistryError(
                E.XDSMetadataIdentifierError,
                f"{where}: uniqueId {obj.unique_id or '(none)'} differs from {latest.unique_id}, the uniqueId of "
                f"version {latest.version}; a new version keeps the uniqueId", obj.id))
        if isinstance(obj, DocumentEntry) and latest.object_type != ("O" if obj.on_demand else "S"):
            errors.append(RegistryError(
                E.XDSMetadataUpdateError,
                f"{where}: objectType {obj.object_type} differs from version {latest.version}'s; a stable entry "
                "cannot become on-demand or the reverse", obj.id))
        if isinstance(obj, Folder) and latest.status != "A":
            errors.append(RegistryError(
                E.XDSMetadataUpdateError,
                f"{where}: version {latest.version} of Folder {obj.lid} is {_STATUS_NAME[latest.status]}; only an "
                "Approved Folder gets a new version (approve it first)", obj.id))
        # A DocumentEntry keeps its availabilityStatus across versions (a Deprecated one stays Deprecated).
        status = store.STATUS_URN[latest.status] if isinstance(obj, DocumentEntry) else v.STATUS_APPROVED
        nv = _NewVersion(u, latest, latest.version + 1, status)
        if u.propagate:
            nv.carried, carried_errors = _carried(conn, nv)
            errors += carried_errors
        plan.versions.append(nv)
    return errors


def _carried(conn: Connection, nv: _NewVersion) -> tuple[list[Any], list[RegistryError]]:
    """Association propagation (ITI TF-2b 3.57.4.1.3.3): the Approved Folder memberships and document
    relationships of the replaced DocumentEntry, or the Approved memberships of the replaced Folder, are
    copied onto the new version. They must not link the new version to another patient's objects."""
    obj, old = nv.update.obj, nv.latest
    assocs = [a for a in store.associations_of(conn, [old.id]) if a.status == "A"]
    others = {row.id: row for row in store.fetch_by_ids(
        conn, {a.target_object if a.source_object == old.id else a.source_object for a in assocs})}
    carried, errors = [], []
    for a in assocs:
        other = others.get(a.target_object if a.source_object == old.id else a.source_object)
        if other is None:
            continue
        if isinstance(obj, Folder):
            keep = a.assoc_type == v.HAS_MEMBER and a.source_object == old.id and other.kind == s.DOCUMENT_ENTRY
        elif a.assoc_type == v.HAS_MEMBER:
            keep = a.target_object == old.id and other.kind == s.FOLDER and other.status == "A"
        else:
            keep = a.assoc_type in v.RELATIONSHIP_TYPES and other.kind == s.DOCUMENT_ENTRY
        if not keep:
            continue
        if other.patient_id != obj.patient_id:
            errors.append(RegistryError(
                E.XDSPatientIdDoesNotMatch,
                f"{type(obj).__name__} {obj.id}: AssociationPropagation would carry {a.assoc_type.rsplit(':', 1)[-1]} "
                f"{a.id} over to the new version, linking patientId {obj.patient_id} to {_KIND_NAME[other.kind]} "
                f"{other.id} of patientId {other.patient_id}; set AssociationPropagation to 'no' on "
                f"{nv.update.member.id}", obj.id))
            continue
        carried.append(a)
    return carried, errors


def _resolve(conn: Connection, ops: UpdateOperations, plan: _Plan) -> dict[str, _Ref]:
    """The objects status changes and new associations refer to, by id: new versions and submitted
    associations of the request first, then registry rows."""
    refs: dict[str, _Ref] = {}
    for nv in plan.versions:
        obj = nv.update.obj
        refs[obj.id] = _Ref(obj.id, _kind_of(obj), obj.patient_id, nv.status, obj=obj)
    for na in ops.associations:
        a = na.association
        refs[a.id] = _Ref(a.id, s.ASSOCIATION, None, v.STATUS_APPROVED, obj=a)
    wanted = _referenced(ops) - set(refs)
    rows = store.fetch_by_ids(conn, wanted)
    replaced = {nv.latest.lid: nv.update.obj.id for nv in plan.versions}
    latest = _latest(store.fetch_by_lids(conn, {r.lid for r in rows if r.kind in (s.DOCUMENT_ENTRY, s.FOLDER)}))
    for row in rows:
        ref = _Ref(row.id, row.kind, row.patient_id, store.STATUS_URN[row.status], row=row)
        if row.kind in (s.DOCUMENT_ENTRY, s.FOLDER):
            newest = latest.get(row.lid)
            if row.lid in replaced:
                ref.superseded_by = replaced[row.lid]
            elif newest is not None and newest.version > row.version:
                ref.superseded_by = newest.id
        refs[row.id] = ref
    return refs


def _check_statuses(conn: Connection, ops: UpdateOperations, plan: _Plan,
                    refs: dict[str, _Ref]) -> list[RegistryError]:
    """UpdateAvailabilityStatus (ITI TF-2b 3.57.4.1.3.3): the latest version of a
    DocumentEntry or Folder, or a Folder membership / document relationship; OriginalStatus is its status."""
    errors: list[RegistryError] = []
    ss = ops.submission_set
    sources = {row.id: row for row in store.fetch_by_ids(
        conn, {r.row.source_object for r in refs.values() if r.row is not None and r.kind == s.ASSOCIATION})}
    for st in ops.statuses:
        a = st.trigger
        where = f"Association {a.id} (UpdateAvailabilityStatus)"
        ref = refs.get(st.target)
        if ref is None:
            errors.append(RegistryError(E.XDSMetadataUpdateError,
                                        f"{where}: targetObject {st.target} is neither in the registry nor in this "
                                        "request", a.id))
            continue
        problem = None
        code = E.XDSMetadataUpdateError
        if ref.kind == s.SUBMISSION_SET:
            problem = "the availabilityStatus of a SubmissionSet cannot change"
        elif ref.kind == s.ASSOCIATION:
            problem = _association_status_problem(ref, sources)
        elif ref.superseded_by is not None:
            code = E.XDSMetadataVersionError
            problem = (f"{_describe(ref)} is not the latest version of its logicalId ({ref.superseded_by} is); only "
                       "the latest version's status can change")
        elif ref.patient_id != ss.patient_id:
            code = E.XDSPatientIdDoesNotMatch
            problem = f"{_describe(ref)} has patientId {ref.patient_id}, the SubmissionSet has {ss.patient_id}"
        if problem is None and ref.status != st.original:
            problem = (f"OriginalStatus is {st.original.rsplit(':', 1)[-1]}, but {_describe(ref)} is "
                       f"{ref.status.rsplit(':', 1)[-1]}")
        if problem is not None:
            errors.append(RegistryError(code, f"{where}: {problem}", a.id))
            continue
        _set_status(plan, ref, st, sources)
    return errors


def _association_status_problem(ref: _Ref, sources: dict[str, Any]) -> str | None:
    """Only Folder memberships and document relationships change status."""
    if ref.obj is not None:  # submitted by this request: a Folder HasMember or a relationship
        return None
    row = ref.row
    if row.assoc_type in v.RELATIONSHIP_TYPES:
        return None
    source = sources.get(row.source_object)
    if row.assoc_type == v.HAS_MEMBER and source is not None and source.kind == s.FOLDER:
        return None
    what = ("a SubmissionSet HasMember" if row.assoc_type == v.HAS_MEMBER
            else f"a {row.assoc_type.rsplit(':', 1)[-1]} Association")
    return (f"{_describe(ref)} is {what}; only Folder memberships and document relationships change "
            "availabilityStatus")


def _set_status(plan: _Plan, ref: _Ref, st: StatusUpdate, sources: dict[str, Any]) -> None:
    if ref.obj is not None:
        plan.obj_status[id(ref.obj)] = st.new
        return
    plan.row_status.append((ref.row, st.new))
    source = sources.get(ref.row.source_object) if ref.kind == s.ASSOCIATION else None
    if source is not None and source.kind == s.FOLDER and ref.row.assoc_type == v.HAS_MEMBER:
        plan.touched.add(source.id)  # the Folder's content changed


def _check_associations(conn: Connection, ops: UpdateOperations, plan: _Plan,
                        refs: dict[str, _Ref]) -> list[RegistryError]:
    """SubmitAssociation (ITI TF-2b 3.57.4.1.3.3): a Folder HasMember links a Folder to a DocumentEntry,
    a relationship two DocumentEntries, all Approved, latest versions, of the SubmissionSet's patient, and
    not already linked so."""
    errors: list[RegistryError] = []
    ss = ops.submission_set
    existing = {(r.assoc_type, r.source_object, r.target_object)
                for r in store.associations_of(conn, _referenced(ops)) if r.status == "A"}
    for na in ops.associations:
        a = na.association
        kind_name = a.association_type.rsplit(":", 1)[-1]
        where = f"Association {a.id} ({kind_name})"
        ends = []
        for role, ref_id in (("sourceObject", a.source_object), ("targetObject", a.target_object)):
            ref = refs.get(ref_id)
            if ref is None:
                errors.append(RegistryError(E.XDSMetadataUpdateError,
                                            f"{where}: {role} {ref_id} is neither in the registry nor in this request",
                                            a.id))
            ends.append(ref)
        src, tgt = ends
        if src is None or tgt is None:
            continue
        if a.association_type == v.HAS_MEMBER:
            wanted = (s.FOLDER, s.DOCUMENT_ENTRY)
            shape = "a Folder HasMember goes from a Folder to a DocumentEntry"
        else:
            wanted = (s.DOCUMENT_ENTRY, s.DOCUMENT_ENTRY)
            shape = f"{kind_name} links two DocumentEntries"
        if (src.kind, tgt.kind) != wanted:
            errors.append(RegistryError(E.XDSMetadataUpdateError,
                                        f"{where}: {shape}, not {_describe(src)} to {_describe(tgt)}", a.id))
            continue
        bad = False
        for ref in (src, tgt):
            if ref.superseded_by is not None:
                errors.append(RegistryError(E.XDSMetadataUpdateError,
                                            f"{where}: {_describe(ref)} is not the latest version of its logicalId "
                                            f"({ref.superseded_by} is); link the latest version", a.id))
                bad = True
            elif ref.status != v.STATUS_APPROVED:
                errors.append(RegistryError(E.XDSMetadataUpdateError,
                                            f"{where}: {_describe(ref)} is Deprecated; a new association links "
                                            "Approved objects", a.id))
                bad = True
        if bad:
            continue
        if src.patient_id != tgt.patient_id:
            errors.append(RegistryError(E.XDSPatientIdDoesNotMatch,
                                        f"{where}: {_describe(src)} has patientId {src.patient_id}, {_describe(tgt)} "
                                        f"has {tgt.patient_id}; an association links objects of one patient", a.id))
            continue
        if src.patient_id != ss.patient_id:
            errors.append(RegistryError(E.XDSPatientIdDoesNotMatch,
                                        f"{where}: links objects of patientId {src.patient_id}, the SubmissionSet "
                                        f"has {ss.patient_id}", a.id))
            continue
        key = (a.association_type, src.id, tgt.id)
        if key in existing:
            errors.append(RegistryError(E.XDSMetadataUpdateError,
                                        f"{where}: an Approved {kind_name} from {src.id} to {tgt.id} already exists",
                                        a.id))
            continue
        existing.add(key)
        if a.association_type == v.HAS_MEMBER and src.row is not None:
            plan.touched.add(src.id)
    return errors


# --- applying -----------------------------------------------------------------------------------------


def _apply(conn: Connection, ops: UpdateOperations, plan: _Plan) -> None:
    """Store the request's effects (ids already assigned)."""
    now = dtm_now()
    rows = []
    ss = ops.submission_set
    _set_registry_attributes(ss)
    rows.append(store.row_for(ss, fragment(ss.source)))
    deprecated: set[str] = set()
    for nv in plan.versions:
        obj, member = nv.update.obj, nv.update.member
        _set_registry_attributes(obj, plan.obj_status.get(id(obj), nv.status), nv.version)
        if isinstance(obj, Folder):
            obj.last_update_time = now  # the registry's to set (ITI TF-3 4.2.3.4.5)
            _set_slot(obj.source, "lastUpdateTime", [now])
        _set_registry_attributes(member)
        rows.append(store.row_for(obj, fragment(obj.source)))
        rows.append(store.row_for(member, fragment(member.source)))
        if nv.latest.status != "D":
            store.set_status(conn, nv.latest.id, nv.latest.xml, v.STATUS_DEPRECATED)
        deprecated.add(nv.latest.id)
        for a in nv.carried:
            copy = _carry_over(a, nv.latest.id, obj.id)
            rows.append(store.row_for(copy, fragment(copy.source)))
            if a.assoc_type == v.HAS_MEMBER and isinstance(obj, DocumentEntry):
                plan.touched.add(a.source_object)  # the Folder now holds the new version
    for na in ops.associations:
        a = na.association
        _set_registry_attributes(a, plan.obj_status.get(id(a), v.STATUS_APPROVED))
        rows.append(store.row_for(a, fragment(a.source)))
    store.insert_objects(conn, rows)
    for row, status in plan.row_status:
        store.set_status(conn, row.id, row.xml, status)
    for folder_id in sorted(plan.touched - deprecated):
        _touch_folder(conn, folder_id, now)


def _carry_over(row: Any, old_id: str, new_id: str) -> Association:
    """A copy of association ``row`` with ``old_id`` replaced by ``new_id``: new entryUUID, Approved, version 1;
    its Classifications (associationDocumentation) get new ids too."""
    el = etree.fromstring(f'<r xmlns:rim="{RIM}">{row.xml}</r>')[0]
    ident = "urn:uuid:" + str(uuid.uuid4())
    el.set("id", ident)
    el.set("lid", ident)
    for attr in ("sourceObject", "targetObject"):
        if el.get(attr) == old_id:
            el.set(attr, new_id)
    for c in el.iter(T_CLASS):
        c.set("id", "urn:uuid:" + str(uuid.uuid4()))
        if c.get("classifiedObject") == row.id:
            c.set("classifiedObject", ident)
    copy = reread(fragment(el))
    assert isinstance(copy, Association)
    _set_registry_attributes(copy)
    return copy
