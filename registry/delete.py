"""ITI-62 Delete Document Set (ITI TF-2b 3.62, Remove Metadata): an ebRS ``lcm:RemoveObjectsRequest``.

The request names registry objects by entryUUID in an ``rim:ObjectRefList``. The registry removes them all
or nothing, and refuses a removal that would leave the registry inconsistent:

* an id that names no registry object: UnresolvedReferenceException;
* an object that an Association outside the request still references (a DocumentEntry still in its
  SubmissionSet or Folder, or the target of an RPLC/APND/XFRM...): ReferencesExistException;
* an Association removed while an object it links stays with no Association at all (a SubmissionSet left
  without content, a DocumentEntry left in no SubmissionSet): XDSUnreferencedObjectException.

Concurrency (PostgreSQL): the request takes the advisory locks of the logicalIds involved (those ITI-57
takes), then locks the rows FOR UPDATE, which waits for registrations that link to them (they hold KEY SHARE
locks); the reference checks then see every committed link. SQLite's write transaction excludes all other
writers.
"""

from __future__ import annotations

from collections.abc import Iterable

from lxml import etree
from sqlalchemy import Connection, Engine, text

from registry.register import _touch_folder
from registry.storage import objects as store
from registry.storage import schema as s
from registry.storage.engine import write_transaction
from xdsi.ebxml.namespaces import LCM, RIM, q
from xdsi.ebxml.tags import T_OBJREF
from xdsi.metadata import vocabulary as v
from xdsi.metadata.dtm import now as dtm_now
from xdsi.validate import errors as E
from xdsi.validate.errors import RegistryError, XDSError

__all__ = ["DELETE_ALL", "delete", "read_remove_request"]

#: ebRS 3.0 deletionScope: remove the metadata (the only scope ITI-62 uses; the default).
DELETE_ALL = "urn:oasis:names:tc:ebxml-regrep:DeletionScopeType:DeleteAll"

_KIND_NAME = {s.DOCUMENT_ENTRY: "DocumentEntry", s.SUBMISSION_SET: "SubmissionSet", s.FOLDER: "Folder",
              s.ASSOCIATION: "Association"}


def read_remove_request(request: etree._Element) -> tuple[list[str], list[RegistryError]]:
    """The entryUUIDs named by an ``lcm:RemoveObjectsRequest`` (in request order, without repeats), and the
    problems with the request itself (ITI TF-2b 3.62.4.1.2: objects are named by an ObjectRefList only)."""
    errors: list[RegistryError] = []
    if request.tag != q(LCM, "RemoveObjectsRequest"):
        name = etree.QName(request).localname if isinstance(request.tag, str) else "request"
        return [], [RegistryError(E.InvalidRequestException,
                                  f"{name}: Delete Document Set expects an lcm:RemoveObjectsRequest")]
    scope = request.get("deletionScope")
    if scope is not None and scope != DELETE_ALL:
        errors.append(RegistryError(E.InvalidRequestException,
                                    f"RemoveObjectsRequest: deletionScope {scope!r} is not supported; Delete Document "
                                    f"Set removes metadata ({DELETE_ALL})"))
    if request.find(q(RIM, "AdhocQuery")) is not None:
        errors.append(RegistryError(E.InvalidRequestException,
                                    "RemoveObjectsRequest: objects are named by an ObjectRefList, not selected by an "
                                    "AdhocQuery"))
    ids: list[str] = []
    ref_list = request.find(q(RIM, "ObjectRefList"))
    for ref in ref_list.iter(T_OBJREF) if ref_list is not None else ():
        ident = (ref.get("id") or "").strip()
        if not ident:
            errors.append(RegistryError(E.InvalidRequestException, "RemoveObjectsRequest: an ObjectRef has no id"))
        elif ident not in ids:
            ids.append(ident)
    if not ids and not errors:
        errors.append(RegistryError(E.InvalidRequestException,
                                    "RemoveObjectsRequest: the ObjectRefList names no object to remove"))
    return ids, errors


def delete(engine: Engine, request: etree._Element) -> list[RegistryError]:
    """Remove the objects named by an ITI-62 request, all or nothing. Returns the errors (empty: removed)."""
    ids, errors = read_remove_request(request)
    if errors:
        return errors
    try:
        with write_transaction(engine) as conn:
            _lock(conn, ids)
            rows = {row.id: row for row in store.fetch_by_ids(conn, ids, lock="update")}
            problems = [RegistryError(E.UnresolvedReferenceException,
                                      f"ObjectRef {ident}: no object with this entryUUID is in the registry", ident)
                        for ident in ids if ident not in rows]
            if problems:
                raise XDSError(*problems)
            problems = _check_references(conn, rows)
            if problems:
                raise XDSError(*problems)
            folders = _folders_losing_members(conn, rows)
            store.delete_objects(conn, rows)
            now = dtm_now()
            for folder_id in sorted(folders):
                _touch_folder(conn, folder_id, now)  # its content changed (ITI TF-3 4.2.3.4.5)
    except XDSError as exc:
        return exc.errors
    return []


def _lock(conn: Connection, ids: Iterable[str]) -> None:
    """PostgreSQL: the advisory locks ITI-57 takes, on the logicalIds of the objects removed and of the ends of
    the Associations removed, so a concurrent update cannot link to (or version) what is being removed."""
    if conn.dialect.name != "postgresql":
        return
    rows = store.fetch_by_ids(conn, ids)
    ends = {e for r in rows if r.kind == s.ASSOCIATION for e in (r.source_object, r.target_object)}
    keys = {r.lid for r in rows} | {r.lid for r in store.fetch_by_ids(conn, ends)}
    for key in sorted(keys):
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": key})


def _name(row) -> str:  # type: ignore[no-untyped-def]
    return f"{_KIND_NAME[row.kind]} {row.id}"


def _check_references(conn: Connection, rows: dict) -> list[RegistryError]:
    """ReferencesExistException for objects still linked from outside the request, then
    XDSUnreferencedObjectException for objects the request would leave unlinked (ITI TF-2b 3.62.4.1.3)."""
    errors: list[RegistryError] = []
    removing = set(rows)
    links = store.associations_of(conn, removing)
    for a in links:
        if a.id in removing:
            continue
        for end in (a.source_object, a.target_object):
            if end in removing:
                errors.append(RegistryError(
                    E.ReferencesExistException,
                    f"{_name(rows[end])} is still referenced by {a.assoc_type.rsplit(':', 1)[-1]} Association {a.id} "
                    f"({a.source_object} -> {a.target_object}), which the request does not remove", end))
    if errors:
        return errors
    # Objects that keep existing but lose an Association: each must keep at least one.
    ends = {e for r in rows.values() if r.kind == s.ASSOCIATION for e in (r.source_object, r.target_object)}
    survivors = ends - removing
    remaining: dict[str, int] = {e: 0 for e in survivors}
    for a in store.associations_of(conn, survivors):
        if a.id in removing:
            continue
        for end in (a.source_object, a.target_object):
            if end in remaining:
                remaining[end] += 1
    kinds = {r.id: r for r in store.fetch_by_ids(conn, survivors)}
    for end in sorted(survivors):
        if remaining[end] == 0 and end in kinds:
            errors.append(RegistryError(
                E.XDSUnreferencedObjectException,
                f"{_name(kinds[end])} would be left without any Association (the request removes its last one); "
                "remove it too, or keep one of its Associations", end))
    return errors


def _folders_losing_members(conn: Connection, rows: dict) -> set[str]:
    """Folders that stay but lose a member (a Folder HasMember removed)."""
    sources = {r.source_object for r in rows.values()
               if r.kind == s.ASSOCIATION and r.assoc_type == v.HAS_MEMBER} - set(rows)
    return {r.id for r in store.fetch_by_ids(conn, sources) if r.kind == s.FOLDER}
