"""Patient reconciliation: submissions whose patientId is a local id the registry does not know.

An imaging source or a submitter may present its local patient id (an id of its own assigning authority)
where the affinity domain's id belongs. ITI-42 (:func:`registry.register.register`) then asks
:meth:`Reconciliation.admit` what to do with a patientId the registry does not know:

1. a **link** (``patient_link``) exists for it: the submission is registered under the linked domain id
   (patientId of the SubmissionSet, DocumentEntries and Folders rewritten; sourcePatientId keeps the local
   id, which is what it is for);
2. a **national id** in the submission (the patientId or sourcePatientId itself, or a PID-3 repetition of a
   DocumentEntry's sourcePatientInfo, of an assigning authority listed in ``national_id_oids``) is an
   other id of exactly one fed patient (ITI-8 PID-3), with no conflicting birth date: the registry links
   the local id to that patient (method ``auto``) and registers the submission under it;
3. otherwise the submission is **held**: stored as received in ``reconciliation_item`` and answered
   Success with an XDSUnknownPatientId *warning* naming the item, so a repository keeps the documents.
   An operator links it (:func:`link`: ``xdsi reconcile link``, ``POST /reconciliation/{item}/link``),
   which registers it, or rejects it (:func:`reject`), which keeps it for audit, never registered.

Only *local* ids (of another assigning authority than ``domain_oid``) are held or linked automatically. An
unknown id of the affinity domain's own authority stays the Technical Framework's XDSUnknownPatientId
failure (ITI TF-2b 3.42): that id is the domain's, there is nothing to reconcile, the feed is
missing. Without ``domain_oid`` no id can be told to be local, so only links an operator made apply.

Linking also moves what is already registered under the local id (say a local id fed by mistake): each
latest DocumentEntry/Folder version gets a new version with the domain patient id through the ITI-57
machinery of :mod:`registry.update` (the old version Deprecated), the Folder memberships and document
relationships between the moved objects are carried over to the new versions, and the update's
SubmissionSet names the operator as author. A local id that was itself a fed patient is marked merged
into the domain id, as an A40 would, so later submissions with it follow the link.

All of a link happens in one write transaction: every held submission of the local id is registered and
every entry moved, or nothing is (the error names the item that could not be registered).
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from lxml import etree
from sqlalchemy import Connection, Engine, insert, select, text, update

from registry import update as upd
from registry.register import (
    _assign_uuids,
    _check_registry_state,
    _fold_top_level,
    _lock_unique_ids,
    _set_registry_attributes,
    reread,
    store_submission,
)
from registry.storage import objects as store
from registry.storage import schema as s
from registry.storage.engine import write_transaction
from registry.storage.patients import patient_is_known
from xdsi.ebxml.namespaces import RIM
from xdsi.ebxml.tags import T_CLASS, T_EXTID, T_LIST
from xdsi.ebxml.serialize import fragment
from xdsi.metadata import vocabulary as v
from xdsi.metadata.dtm import now as dtm_now
from xdsi.metadata.hl7 import CX
from xdsi.metadata.model import Association, Author, Submission, SubmissionSet
from xdsi.transform.ebrim_read import read_registry_object, read_submission
from xdsi.transform.ebrim_write import write_submission
from xdsi.validate import errors as E
from xdsi.validate.errors import RegistryError, XDSError
from xdsi.validate.update import ASSOCIATION_PROPAGATION, plan_update
from xdsi.xmlparse import parse_xml

__all__ = [
    "AUTO_LINKED_BY",
    "STATES",
    "LinkResult",
    "ReconcileError",
    "Reconciliation",
    "get_item",
    "link",
    "list_items",
    "list_links",
    "reject",
]

log = logging.getLogger(__name__)

OPEN, LINKED, REJECTED = "open", "linked", "rejected"
STATES = (OPEN, LINKED, REJECTED)
AUTO, MANUAL = "auto", "manual"
#: ``linked_by`` of the links the registry makes itself.
AUTO_LINKED_BY = "auto:national-id"
_PATIENT_SCHEMES = (v.DE_PATIENT_ID, v.SS_PATIENT_ID, v.FOL_PATIENT_ID)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class ReconcileError(Exception):
    """An operator request that cannot be carried out. ``status`` is the HTTP status the endpoint answers
    (404 unknown item, 409 conflicts with the queue's state, 422 bad input); ``errors`` are the XDS errors
    of a held submission that could not be registered."""

    def __init__(self, status: int, message: str, errors: Sequence[RegistryError] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = list(errors)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.message}
        if self.errors:
            out["registry_errors"] = [{"code": e.code, "message": e.message, "location": e.location}
                                      for e in self.errors]
        return out


# --- what a submission says about its patient ------------------------------------------------------------


def canonical(cx: CX) -> str:
    """XDS patient id form ``ID^^^&OID&ISO``."""
    return f"{cx.id}^^^&{cx.assigning_authority.universal_id}&ISO"


def authority(patient_id: str) -> str:
    """The assigning authority OID (CX.4.2) of an XDS patient id."""
    return CX.parse(patient_id).assigning_authority.universal_id


@dataclass
class Evidence:
    """Who a held submission is about, as far as the submission says."""

    source_patient_id: str = ""
    national_ids: list[str] = field(default_factory=list)
    demographics: dict[str, str] = field(default_factory=dict)  # name, birth_date, sex (sourcePatientInfo)


def evidence_of(sub: Submission, national_id_oids: Iterable[str]) -> Evidence:
    """National ids and demographics from the SubmissionSet patientId, the DocumentEntries' sourcePatientId
    and sourcePatientInfo (``PID-3|...``, repetitions separated by ``~``; PID-5, PID-7, PID-8)."""
    national = set(national_id_oids)
    ev = Evidence()
    candidates = [sub.submission_set.patient_id] if sub.submission_set else []
    for de in sub.documents:
        ev.source_patient_id = ev.source_patient_id or de.source_patient_id
        candidates.append(de.source_patient_id)
        for info in de.source_patient_info:
            name, _, value = info.partition("|")
            name = name.strip().upper()
            if name == "PID-3":
                candidates += value.split("~")
            elif name == "PID-5" and value:
                ev.demographics.setdefault("name", value.split("~")[0])
            elif name == "PID-7" and value:
                ev.demographics.setdefault("birth_date", value.strip())
            elif name == "PID-8" and value:
                ev.demographics.setdefault("sex", value.strip())
    for cand in candidates:
        cx = CX.parse(cand.strip())
        if cx.id and cx.assigning_authority.universal_id in national:
            nid = canonical(cx)
            if nid not in ev.national_ids:
                ev.national_ids.append(nid)
    return ev


def relabel(request: etree._Element, sub: Submission, local_id: str, patient_id: str) -> None:
    """Give the SubmissionSet, DocumentEntries and Folders with patientId ``local_id`` the patientId
    ``patient_id``: the model and the patientId ExternalIdentifiers of the request (inside their object or
    at the top level)."""
    for el in request.iter(T_EXTID):
        if el.get("identificationScheme") in _PATIENT_SCHEMES and el.get("value") == local_id:
            el.set("value", patient_id)
    for obj in [sub.submission_set, *sub.documents, *sub.folders]:
        if obj is not None and obj.patient_id == local_id:
            obj.patient_id = patient_id


# --- registry lookups -----------------------------------------------------------------------------------


def _lock_local(conn: Connection, local_id: str) -> None:
    """PostgreSQL: serialize what concerns one local id (holding, auto-linking, linking). SQLite's write
    transaction already excludes every other writer."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "reconcile:" + local_id})


def _current(conn: Connection, patient_id: str) -> str | None:
    """The id ``patient_id`` stands for now: itself, or the id it was merged into (A40 or a link);
    None when it was never fed."""
    seen = set()
    while patient_id not in seen:
        seen.add(patient_id)
        row = conn.execute(select(s.patient.c.merged_into).where(s.patient.c.patient_id == patient_id)).first()
        if row is None:
            return None
        if row[0] is None:
            return patient_id
        patient_id = row[0]
    return None  # a merge cycle: nobody to register under


def linked_patient(conn: Connection, local_id: str) -> str | None:
    """The domain patient a link sends ``local_id`` to (following later merges), or None."""
    pl = s.patient_link
    row = conn.execute(select(pl.c.patient_id).where(pl.c.local_patient_id == local_id)).first()
    return _current(conn, row[0]) if row is not None else None


def _match(conn: Connection, ev: Evidence) -> tuple[str | None, str]:
    """The one fed patient the national ids point to, or None and the reason for the operator."""
    if not ev.national_ids:
        return None, "no national id in the submission"
    poi, p = s.patient_other_id, s.patient
    rows = conn.execute(select(poi.c.patient_id, poi.c.other_id, p.c.demographics)
                        .join(p, p.c.patient_id == poi.c.patient_id)
                        .where(poi.c.other_id.in_(ev.national_ids), p.c.merged_into.is_(None))).all()
    found = {r.patient_id: r for r in rows}
    ids = ", ".join(ev.national_ids)
    if not found:
        return None, f"national id {ids} matches no patient of the affinity domain"
    if len(found) > 1:
        return None, f"national id {ids} matches {len(found)} patients: {', '.join(sorted(found))}"
    (pid, r), = found.items()
    theirs = str(json.loads(r.demographics or "{}").get("birth_date") or "")[:8]
    ours = ev.demographics.get("birth_date", "")[:8]
    if theirs and ours and theirs != ours:
        return None, (f"national id {r.other_id} is patient {pid}'s, but the birth dates differ "
                      f"({ours} in the submission, {theirs} fed)")
    return pid, f"national id {r.other_id}"


def _save_link(conn: Connection, local_id: str, patient_id: str, method: str, by: str, note: str | None) -> None:
    conn.execute(insert(s.patient_link).values(local_patient_id=local_id, patient_id=patient_id, method=method,
                                               linked_by=by, linked_at=_now(), note=note))


# --- ITI-42 side ----------------------------------------------------------------------------------------


@dataclass
class Reconciliation:
    """How ITI-42 treats a patientId the registry does not know (see the module docstring)."""

    #: Assigning authority OIDs whose ids identify a person nationally.
    national_id_oids: tuple[str, ...] = ()
    #: The affinity domain's assigning authority (None: any authority the feed used).
    domain_oid: str | None = None

    def is_local(self, patient_id: str) -> bool:
        """True if ``patient_id`` is an id of another assigning authority than the affinity domain's.
        Without ``domain_oid`` no id can be told to be local: nothing is held or linked automatically."""
        oid = authority(patient_id)
        return bool(self.domain_oid) and bool(oid) and oid != self.domain_oid

    def admit(self, conn: Connection, request: etree._Element, sub: Submission) -> RegistryError | None:
        """Inside ITI-42's write transaction, before the registry-state rules. None: go on registering
        (the patient is known, or the request now carries the linked domain id; an unknown domain id is
        left for the normal XDSUnknownPatientId failure). A warning: the submission is held (stored)."""
        ss = sub.submission_set
        assert ss is not None
        local = ss.patient_id
        if patient_is_known(conn, local):
            return None
        _lock_local(conn, local)
        target = linked_patient(conn, local)
        if target is not None:
            relabel(request, sub, local, target)
            return None
        if not self.is_local(local):
            return None
        received = etree.tostring(request, encoding="unicode")  # before anything is rewritten
        ev = evidence_of(sub, self.national_id_oids)
        if self.national_id_oids:
            match, reason = _match(conn, ev)
        else:
            match, reason = None, "no national id assigning authority is configured (--national-id-oid)"
        if match is not None:
            _save_link(conn, local, match, AUTO, AUTO_LINKED_BY, f"{reason} in the submission")
            log.info("reconciliation: %s linked to %s automatically (%s)", local, match, reason)
            _register_held(conn, local, match, resubmitted=ss.unique_id, strict=False)
            relabel(request, sub, local, match)
            return None
        return _hold(conn, sub, received, ev, reason)


def _hold(conn: Connection, sub: Submission, received: str, ev: Evidence, reason: str) -> RegistryError:
    """Store the submission in the queue (or find it there: a retry) and return the warning."""
    ss = sub.submission_set
    assert ss is not None
    ri = s.reconciliation_item
    unknown = RegistryError(E.XDSUnknownPatientId,
                            f"SubmissionSet {ss.id}: patientId {ss.patient_id} is not known to the registry", ss.id)
    if ss.unique_id:
        earlier = conn.execute(select(ri).where(ri.c.submission_set_uid == ss.unique_id).order_by(ri.c.id)).first()
        if earlier is not None and earlier.state == OPEN:
            return _held_warning(ss.id, ss.patient_id, earlier.id)  # a retry: already held
        if earlier is not None and earlier.state == REJECTED:
            raise XDSError(RegistryError(
                E.XDSUnknownPatientId,
                f"SubmissionSet {ss.id}: uniqueId {ss.unique_id} was held for reconciliation as item {earlier.id} "
                f"and rejected by {earlier.resolved_by} at {earlier.resolved_at}; it is not registered", ss.id))
    # Everything else must hold already, so linking only has the patient left to settle.
    state_errors, _ = _check_registry_state(conn, sub, check_patient=False)
    if state_errors:
        raise XDSError(unknown, *state_errors)
    unique_ids = [o.unique_id for o in [*sub.documents, *sub.folders] if o.unique_id]
    clash = _held_unique_ids(conn, unique_ids)
    if clash:
        raise XDSError(unknown, *[RegistryError(E.XDSDuplicateUniqueIdInRegistry,
                                                f"uniqueId {uid} is already held for reconciliation in item {item}",
                                                uid) for uid, item in clash])
    item_id = conn.execute(insert(ri).values(
        submitted_patient_id=ss.patient_id, source_patient_id=ev.source_patient_id or None,
        national_ids=json.dumps(ev.national_ids), demographics=json.dumps(ev.demographics),
        submission_set_uid=ss.unique_id or None, unique_ids=json.dumps(unique_ids), reason=reason,
        request_xml=received, received_at=_now(), state=OPEN)).inserted_primary_key[0]
    log.info("reconciliation: submission %s for unknown local id %s held as item %s (%s)",
             ss.unique_id, ss.patient_id, item_id, reason)
    return _held_warning(ss.id, ss.patient_id, item_id)


def _held_warning(location: str, patient_id: str, item_id: int) -> RegistryError:
    # The reason (which may name other patients' ids) is for the operator, not the submitter.
    return RegistryError.warning(
        E.XDSUnknownPatientId,
        f"SubmissionSet {location}: patientId {patient_id} is not linked to a patient of the affinity domain; "
        f"the submission is held for reconciliation as item {item_id} and is registered when an operator "
        "links it", location)


def _held_unique_ids(conn: Connection, unique_ids: list[str]) -> list[tuple[str, int]]:
    """(uniqueId, item) for each of ``unique_ids`` an open item already holds."""
    if not unique_ids:
        return []
    ri = s.reconciliation_item
    wanted, out = set(unique_ids), []
    for item_id, held in conn.execute(select(ri.c.id, ri.c.unique_ids).where(ri.c.state == OPEN)):
        out += [(uid, item_id) for uid in json.loads(held) if uid in wanted]
    return out


def _register_held(conn: Connection, local: str, patient_id: str, *, by: str = AUTO_LINKED_BY,
                   note: str | None = None, resubmitted: str = "", strict: bool = True) -> list[int]:
    """Register the open items of ``local`` under ``patient_id`` and mark them linked.

    ``strict``: an item that cannot be registered raises ReconcileError (the caller's transaction rolls
    back). Otherwise (an automatic link made by a new submission) the items are tried together in a
    savepoint and left open if one fails, so the new submission does not depend on them. An item holding
    the SubmissionSet ``resubmitted`` is the submission being registered now: it is only marked linked."""
    ri = s.reconciliation_item
    items = conn.execute(select(ri).where(ri.c.state == OPEN, ri.c.submitted_patient_id == local)
                         .order_by(ri.c.id)).all()
    if not items:
        return []

    def run() -> list[int]:
        done = []
        for item in items:
            if not (resubmitted and item.submission_set_uid == resubmitted):
                request = parse_xml(item.request_xml.encode(), huge_text=True)
                sub, _ = read_submission(request)
                relabel(request, sub, local, patient_id)
                try:
                    _lock_unique_ids(conn, sub)
                    store_submission(conn, request, sub)
                except XDSError as exc:
                    raise ReconcileError(
                        409, f"item {item.id} cannot be registered under {patient_id}: "
                             + "; ".join(f"{e.code}: {e.message}" for e in exc.errors)
                             + f". Nothing was changed; reject the item (xdsi reconcile reject {item.id}) and "
                               "link again", exc.errors) from exc
            conn.execute(update(ri).where(ri.c.id == item.id).values(
                state=LINKED, patient_id=patient_id, resolved_by=by, resolved_at=_now(), note=note))
            done.append(item.id)
        return done

    if strict:
        return run()
    try:
        with conn.begin_nested():
            return run()
    except ReconcileError as exc:
        log.warning("reconciliation: %s linked to %s automatically, held items stay open: %s",
                    local, patient_id, exc.message)
        return []


# --- operator side --------------------------------------------------------------------------------------


@dataclass
class LinkResult:
    """What :func:`link` did."""

    local_patient_id: str
    patient_id: str
    #: reconciliation items registered by this link
    registered_items: list[int] = field(default_factory=list)
    #: logicalIds of the DocumentEntries/Folders given a new version under ``patient_id``
    moved: list[str] = field(default_factory=list)
    #: objects left under the local id (a Deprecated Folder cannot get a new version), with why
    not_moved: list[str] = field(default_factory=list)
    #: True when the link existed and there was nothing left to do (a repeated request)
    already_linked: bool = False

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _clean(value: object, what: str) -> str:
    text_ = value.strip() if isinstance(value, str) else ""
    if not text_:
        raise ReconcileError(422, f"{what} is required")
    return text_


def _item(conn: Connection, item_id: int) -> Any:
    row = conn.execute(select(s.reconciliation_item).where(s.reconciliation_item.c.id == item_id)).first()
    if row is None:
        raise ReconcileError(404, f"reconciliation item {item_id} does not exist")
    return row


def link(engine: Engine, target: int | str, patient_id: str, *, operator: str, note: str | None = None) -> LinkResult:
    """Link a local patient id to domain patient ``patient_id`` and register/move everything of it.

    ``target`` is a reconciliation item id (int: its submitted patientId is linked) or the local id itself
    (also one with entries registered under it by mistake). Repeating a link does nothing more. Raises
    ReconcileError (nothing changed) for an unknown item or patient, a conflicting earlier decision, or a
    held submission that cannot be registered."""
    operator = _clean(operator, "operator (who links)")
    patient_id = _clean(patient_id, "domain_patient_id")
    note = note.strip() or None if isinstance(note, str) else None
    with write_transaction(engine) as conn:
        if isinstance(target, int):
            local = _item(conn, target).submitted_patient_id
        else:
            local = _clean(target, "local patient id")
        _lock_local(conn, local)
        if isinstance(target, int):
            item = _item(conn, target)  # again, under the lock
            if item.state == REJECTED:
                raise ReconcileError(409, f"item {item.id} was rejected by {item.resolved_by} at {item.resolved_at}; "
                                          "a rejected submission is never registered")
            if item.state == LINKED and item.patient_id != patient_id \
                    and _current(conn, item.patient_id or "") != patient_id:
                raise ReconcileError(409, f"item {item.id} was already linked to {item.patient_id} by "
                                          f"{item.resolved_by} at {item.resolved_at}")
        if local == patient_id:
            raise ReconcileError(422, f"{local} cannot be linked to itself")
        if not patient_is_known(conn, patient_id):
            now = _current(conn, patient_id)
            if now is not None:
                raise ReconcileError(422, f"patient {patient_id} was merged into {now}; link to {now}")
            raise ReconcileError(422, f"patient {patient_id} is not known to the registry (feed it over ITI-8 "
                                      "first)")
        pl = s.patient_link
        existing = conn.execute(select(pl).where(pl.c.local_patient_id == local)).first()
        if existing is not None and _current(conn, existing.patient_id) != patient_id:
            raise ReconcileError(409, f"{local} is already linked to {existing.patient_id} ({existing.method}, by "
                                      f"{existing.linked_by} at {existing.linked_at})")
        if existing is None:
            _save_link(conn, local, patient_id, MANUAL, operator, note)
        result = LinkResult(local, patient_id)
        result.registered_items = _register_held(conn, local, patient_id, by=operator, note=note)
        result.moved, result.not_moved = _move_registered(conn, local, patient_id, operator)
        if patient_is_known(conn, local):
            # A fed id that is this patient: like an A40, later submissions with it follow the link.
            conn.execute(update(s.patient).where(s.patient.c.patient_id == local)
                         .values(merged_into=patient_id, updated=_now()))
        result.already_linked = existing is not None and not result.registered_items and not result.moved
    log.info("reconciliation: %s linked to %s by %s: items %s registered, %d objects moved",
             local, patient_id, operator, result.registered_items, len(result.moved))
    return result


def reject(engine: Engine, item_id: int, *, operator: str, note: str | None = None) -> dict[str, Any]:
    """Close an open item without registering it (kept for audit). Repeating it does nothing more."""
    operator = _clean(operator, "operator (who rejects)")
    note = note.strip() or None if isinstance(note, str) else None
    ri = s.reconciliation_item
    with write_transaction(engine) as conn:
        item = _item(conn, item_id)
        _lock_local(conn, item.submitted_patient_id)
        item = _item(conn, item_id)
        if item.state == LINKED:
            raise ReconcileError(409, f"item {item_id} was linked to {item.patient_id} by {item.resolved_by} at "
                                      f"{item.resolved_at}; it is registered and cannot be rejected")
        if item.state == OPEN:
            conn.execute(update(ri).where(ri.c.id == item_id).values(
                state=REJECTED, resolved_by=operator, resolved_at=_now(), note=note))
            log.info("reconciliation: item %s rejected by %s", item_id, operator)
        return _item_json(_item(conn, item_id), with_xml=False)


def _item_json(row: Any, *, with_xml: bool) -> dict[str, Any]:
    out = {
        "id": row.id, "state": row.state, "submitted_patient_id": row.submitted_patient_id,
        "source_patient_id": row.source_patient_id, "national_ids": json.loads(row.national_ids),
        "demographics": json.loads(row.demographics), "submission_set_unique_id": row.submission_set_uid,
        "unique_ids": json.loads(row.unique_ids), "reason": row.reason, "received_at": row.received_at,
        "resolved_by": row.resolved_by, "resolved_at": row.resolved_at, "patient_id": row.patient_id,
        "note": row.note,
    }
    if with_xml:
        out["request_xml"] = row.request_xml
    return out


def list_items(engine: Engine, state: str | None = OPEN) -> list[dict[str, Any]]:
    """Items in ``state`` (None: all), oldest first, without their XML."""
    if state is not None and state not in STATES:
        raise ReconcileError(422, f"state {state!r} is not one of {', '.join(STATES)}")
    ri = s.reconciliation_item
    stmt = select(ri).order_by(ri.c.id)
    if state is not None:
        stmt = stmt.where(ri.c.state == state)
    with engine.connect() as conn:
        return [_item_json(r, with_xml=False) for r in conn.execute(stmt)]


def get_item(engine: Engine, item_id: int) -> dict[str, Any]:
    """One item with the SubmitObjectsRequest as received (``request_xml``)."""
    with engine.connect() as conn:
        return _item_json(_item(conn, item_id), with_xml=True)


def list_links(engine: Engine) -> list[dict[str, Any]]:
    """Every local id link, oldest first."""
    pl = s.patient_link
    with engine.connect() as conn:
        return [{"local_patient_id": r.local_patient_id, "patient_id": r.patient_id, "method": r.method,
                 "linked_by": r.linked_by, "linked_at": r.linked_at, "note": r.note}
                for r in conn.execute(select(pl).order_by(pl.c.pk))]


# --- moving registered entries (ITI-57 new versions) ----------------------------------------------------


def _hl7_text(value: str) -> str:
    """``value`` without the HL7 delimiters, fit for an XCN component."""
    return "".join(" " if ch in "^&~|\\" else ch for ch in value).strip()


def _rooted(xml: str) -> etree._Element:
    return etree.fromstring(f'<r xmlns:rim="{RIM}">{xml}</r>')[0]


def _new_uuid() -> str:
    return "urn:uuid:" + str(uuid.uuid4())


def _version_element(row: Any, patient_id: str) -> etree._Element:
    """The stored object as a new version: new entryUUID (same logicalId), the new patientId, new ids for
    its Classifications and ExternalIdentifiers. Status and VersionInfo are the registry's to set."""
    el = _rooted(row.xml)
    ident = _new_uuid()
    el.set("id", ident)
    el.attrib.pop("status", None)
    for c in el.iter(T_CLASS):
        c.set("id", _new_uuid())
        if c.get("classifiedObject") == row.id:
            c.set("classifiedObject", ident)
    for ei in el.iter(T_EXTID):
        ei.set("id", _new_uuid())
        if ei.get("registryObject") == row.id:
            ei.set("registryObject", ident)
        if ei.get("identificationScheme") in _PATIENT_SCHEMES:
            ei.set("value", patient_id)
    return el


def _submission_set_of(conn: Connection, object_ids: Iterable[str]) -> Any:
    """A SubmissionSet that registered one of ``object_ids`` (its sourceId and contentTypeCode are reused:
    they passed the affinity domain's checks)."""
    ro = s.registry_object
    ss = ro.alias("ss")
    return conn.execute(select(ss).join(ro, ro.c.source_object == ss.c.id)
                        .where(ro.c.kind == s.ASSOCIATION, ro.c.assoc_type == v.HAS_MEMBER,
                               ro.c.target_object.in_(sorted(object_ids)), ss.c.kind == s.SUBMISSION_SET)
                        .order_by(ss.c.pk).limit(1)).first()


def _move_registered(conn: Connection, local: str, patient_id: str, operator: str) -> tuple[list[str], list[str]]:
    """New versions, under ``patient_id``, of the latest DocumentEntry/Folder versions registered under
    ``local``, with their Folder memberships and document relationships carried over. Returns the
    logicalIds moved and descriptions of what could not be."""
    ro = s.registry_object
    lids = {r.lid for r in conn.execute(select(ro.c.lid).where(ro.c.patient_id == local,
                                                              ro.c.kind.in_([s.DOCUMENT_ENTRY, s.FOLDER])))}
    latest = [r for r in upd._latest(store.fetch_by_lids(conn, lids)).values() if r.patient_id == local]
    if not latest:
        return [], []
    not_moved = [f"Folder {r.lid} is Deprecated (only an Approved Folder gets a new version)"
                 for r in latest if r.kind == s.FOLDER and r.status != "A"]
    rows = sorted((r for r in latest if not (r.kind == s.FOLDER and r.status != "A")), key=lambda r: r.pk)
    if not rows:
        return [], not_moved
    row = _submission_set_of(conn, {r.id for r in store.fetch_by_lids(conn, {r.lid for r in rows})})
    origin = reread(row.xml) if row is not None else SubmissionSet()
    assert isinstance(origin, SubmissionSet)
    ss = SubmissionSet(
        id="SubmissionSet01", unique_id="2.25." + str(uuid.uuid4().int), patient_id=patient_id,
        source_id=origin.source_id, content_type_code=origin.content_type_code,
        submission_time=dtm_now(), title="Patient reconciliation",
        comments=f"{local} linked to {patient_id} by {operator}",
        authors=[Author(person=_hl7_text(operator))])
    members = []
    for i, r in enumerate(rows):
        members.append(Association(
            id=f"Reconcile{i}", association_type=v.HAS_MEMBER, source_object=ss.id, target_object="",
            previous_version=str(r.version),
            submission_set_status=v.SUBMISSION_SET_STATUS_ORIGINAL if r.kind == s.DOCUMENT_ENTRY else "",
            extra_slots={ASSOCIATION_PROPAGATION: ["no"]}))  # carried below, both ends moved together
    versions = [_version_element(r, patient_id) for r in rows]
    for a, el in zip(members, versions):
        a.target_object = el.get("id")
    request = write_submission(Submission(submission_set=ss, associations=members))
    rol = request.find(T_LIST)
    for el in reversed(versions):
        rol.insert(0, el)
    sub, errors = read_submission(request)
    ops, plan_errors = plan_update(sub, codes=None)
    errors += plan_errors
    if ops is None or any(e.is_error for e in errors):
        raise ReconcileError(409, f"the entries registered under {local} cannot be given new versions", errors)
    try:
        upd._lock(conn, ops)
        plan = upd._check(conn, ops)
    except XDSError as exc:
        raise ReconcileError(409, f"the entries registered under {local} cannot be given new versions",
                             exc.errors) from exc
    _assign_uuids(request, sub)
    _fold_top_level(request, sub)
    upd._apply(conn, ops, plan)
    mapping = {r.id: el.get("id") for r, el in zip(rows, versions)}
    _carry_between(conn, mapping)
    return [r.lid for r in rows], not_moved


def _carry_between(conn: Connection, mapping: dict[str, str]) -> None:
    """Copy the Approved Folder memberships and document relationships linking moved objects onto their new
    versions (ITI-57 AssociationPropagation, with both ends moved in one step)."""
    kinds = {r.id: r.kind for r in store.fetch_by_ids(conn, mapping)}
    rows = []
    for a in store.associations_of(conn, mapping):
        if a.status != "A" or a.source_object not in mapping or a.target_object not in mapping:
            continue
        if a.assoc_type == v.HAS_MEMBER and kinds.get(a.source_object) != s.FOLDER:
            continue
        if a.assoc_type != v.HAS_MEMBER and a.assoc_type not in v.RELATIONSHIP_TYPES:
            continue
        el = _rooted(a.xml)
        ident = _new_uuid()
        el.set("id", ident)
        el.set("lid", ident)
        el.set("sourceObject", mapping[a.source_object])
        el.set("targetObject", mapping[a.target_object])
        for c in el.iter(T_CLASS):
            c.set("id", _new_uuid())
            if c.get("classifiedObject") == a.id:
                c.set("classifiedObject", ident)
        copy = read_registry_object(el)
        _set_registry_attributes(copy)
        rows.append(store.row_for(copy, fragment(el)))
    store.insert_objects(conn, rows)
