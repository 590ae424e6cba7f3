"""Rows of ``registry_object`` / ``object_value``: building them from model objects, reading stored XML."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import Connection, String, bindparam, delete, insert, or_, select, update

from registry.storage import schema as s
from xdsi.db import DriverStatement
from xdsi.metadata import vocabulary as v
from xdsi.metadata.dtm import sortable
from xdsi.metadata.model import Association, Code, DocumentEntry, Folder, RegistryObject, SubmissionSet

STATUS_CODE = {v.STATUS_APPROVED: "A", v.STATUS_DEPRECATED: "D", v.STATUS_SUBMITTED: "S"}
STATUS_URN = {c: urn for urn, c in STATUS_CODE.items()}


def code_key(code: Code | None) -> str | None:
    return code.key() if code is not None else None


def _authors_values(authors) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    # Only authorPerson is a stored-query parameter ($XDSDocumentEntryAuthorPerson,
    # $XDSSubmissionSetAuthorPerson); the rest of an author is in the stored XML.
    return [(s.AUTHOR_PERSON, a.person) for a in authors if a.person]


def row_for(obj: RegistryObject, xml: str) -> tuple[dict, list[tuple[str, str]]]:
    """The column values and multi-valued attributes of ``obj`` (ids already assigned, status set)."""
    row: dict = {
        "id": obj.id,
        "lid": obj.lid or obj.id,
        "version": int(obj.version) if obj.version.isdigit() else 1,
        "status": STATUS_CODE.get(obj.status, "A"),
        "home": obj.home or None,
        "xml": xml,
    }
    values: list[tuple[str, str]] = []
    if isinstance(obj, DocumentEntry):
        row.update(
            kind=s.DOCUMENT_ENTRY,
            patient_id=obj.patient_id,
            unique_id=obj.unique_id,
            object_type="O" if obj.on_demand else "S",
            class_code=code_key(obj.class_code),
            type_code=code_key(obj.type_code),
            format_code=code_key(obj.format_code),
            practice_setting_code=code_key(obj.practice_setting_code),
            facility_type_code=code_key(obj.healthcare_facility_type_code),
            creation_time=sortable(obj.creation_time),
            service_start_time=sortable(obj.service_start_time),
            service_stop_time=sortable(obj.service_stop_time),
            hash=obj.hash.lower() or None,
            size=int(obj.size) if obj.size.isdigit() else None,
            repository_unique_id=obj.repository_unique_id or None,
            offline=True if obj.document_availability == v.DOCUMENT_AVAILABILITY_OFFLINE else None,
        )
        values += [(s.EVENT_CODE, c.key()) for c in obj.event_codes]
        values += [(s.CONFIDENTIALITY_CODE, c.key()) for c in obj.confidentiality_codes]
        values += [(s.REFERENCE_ID, r) for r in obj.reference_ids]
        values += _authors_values(obj.authors)
    elif isinstance(obj, SubmissionSet):
        row.update(
            kind=s.SUBMISSION_SET,
            patient_id=obj.patient_id,
            unique_id=obj.unique_id,
            source_id=obj.source_id,
            submission_time=sortable(obj.submission_time),
            content_type_code=code_key(obj.content_type_code),
        )
        values += _authors_values(obj.authors)
    elif isinstance(obj, Folder):
        row.update(
            kind=s.FOLDER,
            patient_id=obj.patient_id,
            unique_id=obj.unique_id,
            last_update_time=sortable(obj.last_update_time),
        )
        values += [(s.FOLDER_CODE, c.key()) for c in obj.codes]
    elif isinstance(obj, Association):
        row.update(
            kind=s.ASSOCIATION,
            assoc_type=obj.association_type,
            source_object=obj.source_object,
            target_object=obj.target_object,
        )
    else:  # pragma: no cover - the model has no other kinds
        raise TypeError(type(obj))
    return row, values


_ALL_COLUMNS = [c.name for c in s.registry_object.columns if c.name != "pk"]


def insert_objects(conn: Connection, rows: Sequence[tuple[dict, list[tuple[str, str]]]]) -> None:
    """Insert objects and their multi-valued attributes (inside the caller's transaction).

    Two executemany statements whatever the number of objects: the attribute rows find their object's pk
    by entryUUID in the INSERT itself, so no pk has to come back to Python between the two."""
    if not rows:
        return
    _INSERT_OBJECT.executemany(conn, [{name: row.get(name) for name in _ALL_COLUMNS} for row, _values in rows])
    values = [{"object_id": row["id"], "attr": a, "value": val} for row, vals in rows for a, val in vals]
    if values:
        _INSERT_VALUE.executemany(conn, values)


# Compiled once and run on the driver: building and executing Core INSERTs per row was half the CPU time
# of a registration.
_INSERT_OBJECT = DriverStatement(insert(s.registry_object), _ALL_COLUMNS)
_INSERT_VALUE = DriverStatement(insert(s.object_value).from_select(
    ["object_pk", "attr", "value"],
    select(s.registry_object.c.pk, bindparam("attr", type_=String), bindparam("value", type_=String))
    .where(s.registry_object.c.id == bindparam("object_id"))))


def fetch_by_ids(conn: Connection, ids: Iterable[str], *, lock: str | None = None) -> list:
    """Rows (all columns) for the given entryUUIDs.

    ``lock`` (PostgreSQL only; SQLite's write transaction already excludes every other writer):
    ``"key share"`` keeps the rows from being removed until the transaction ends, without blocking status
    changes (a submission that links to them); ``"update"`` takes them for removal (ITI-62), waiting for
    those submissions. Rows are locked in id order, so two transactions locking the same set cannot deadlock.
    """
    ids = sorted(set(ids))
    if not ids:
        return []
    stmt = select(s.registry_object).where(s.registry_object.c.id.in_(ids))
    if lock == "key share":
        stmt = stmt.order_by(s.registry_object.c.id).with_for_update(read=True, key_share=True)
    elif lock == "update":
        stmt = stmt.order_by(s.registry_object.c.id).with_for_update()
    elif lock is not None:
        raise ValueError(f"unknown lock mode {lock!r}")
    return list(conn.execute(stmt))


def fetch_by_lids(conn: Connection, lids: Iterable[str]) -> list:
    """Every version (all columns) of the given logicalIds, oldest first."""
    lids = sorted(set(lids))
    if not lids:
        return []
    ro = s.registry_object
    return list(conn.execute(select(ro).where(ro.c.lid.in_(lids)).order_by(ro.c.lid, ro.c.version)))


def associations_of(conn: Connection, ids: Iterable[str]) -> list:
    """Associations (all columns) having one of ``ids`` as source or target."""
    ids = sorted(set(ids))
    if not ids:
        return []
    ro = s.registry_object
    return list(conn.execute(select(ro).where(ro.c.kind == s.ASSOCIATION,
                                              or_(ro.c.source_object.in_(ids), ro.c.target_object.in_(ids)))
                             .order_by(ro.c.pk)))


def delete_objects(conn: Connection, ids: Iterable[str]) -> int:
    """Remove objects by entryUUID; their multi-valued attributes go with them (ON DELETE CASCADE)."""
    ids = sorted(set(ids))
    if not ids:
        return 0
    ro = s.registry_object
    pks = [r[0] for r in conn.execute(select(ro.c.pk).where(ro.c.id.in_(ids)))]
    # Explicit child delete: the cascade needs PRAGMA foreign_keys on SQLite connections made elsewhere.
    conn.execute(delete(s.object_value).where(s.object_value.c.object_pk.in_(pks)))
    return conn.execute(delete(ro).where(ro.c.pk.in_(pks))).rowcount


def set_status(conn: Connection, object_id: str, old_xml: str, status_urn: str) -> None:
    """Change availabilityStatus: the column and the stored XML's ``status`` attribute."""
    xml = replace_status(old_xml, status_urn)
    conn.execute(
        update(s.registry_object)
        .where(s.registry_object.c.id == object_id)
        .values(status=STATUS_CODE[status_urn], xml=xml)
    )


def replace_status(xml: str, status_urn: str) -> str:
    """Rewrite the root element's ``status`` attribute. The registry always writes it on the root
    element, before any child, so the first occurrence is the root's."""
    start = xml.index(' status="') + 9
    end = xml.index('"', start)
    return xml[:start] + status_urn + xml[end:]
