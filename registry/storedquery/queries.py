"""The 14 stored queries of ITI TF-2a 3.18.4.1.2.3.7 over the registry tables.

Each query selects rows on the indexes in a fixed, small number of SELECTs (one for the Find queries),
each returning the stored XML directly when LeafClass was asked for. The SELECTs are SQL text run on the
DBAPI cursor (see :mod:`registry.storedquery.sql` for why); rows are :class:`Row` tuples.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from registry.storage import schema as s
from registry.storedquery import filters as f
from registry.storedquery import specs as sp
from registry.storedquery.params import Params
from registry.storedquery.sql import Sql, all_of, any_of, eq, for_driver, one_of
from xdsi.metadata import vocabulary as v
from xdsi.validate import errors as e
from xdsi.validate.errors import XDSError


class Row(NamedTuple):
    """One selected registry object; ``xml`` (the stored ebRIM) only for LeafClass."""

    pk: int
    id: str
    home: str | None
    kind: str
    patient_id: str | None
    source_object: str | None
    target_object: str | None
    xml: str | None


#: Positions in a row (index access is cheaper than attribute access on the hot path).
KIND, PATIENT = 3, 4
_COLUMNS = "ro.pk, ro.id, ro.home, ro.kind, ro.patient_id, ro.source_object, ro.target_object"


@dataclass
class Ctx:
    """One stored query execution: DBAPI connection, checked parameters, return type and limits."""

    db: Any  # DBAPI connection (sqlite3 or psycopg)
    dialect: str  # SQLAlchemy dialect name: "sqlite" or "postgresql"
    params: Params
    leaf: bool
    level: int
    max_results: int
    assoc_statuses: list[str] = field(default_factory=list)

    def fetch(self, *where: Sql, join: str = "") -> list[Row]:
        """Rows of ``registry_object ro`` (plus ``join``) matching ``where``, in pk order;
        XDSTooManyResults beyond ``max_results``."""
        cond = all_of(where)
        text = "SELECT %s, %s FROM registry_object ro%s WHERE %s ORDER BY ro.pk LIMIT %d" % (
            _COLUMNS, "ro.xml" if self.leaf else "NULL", join, cond.text, self.max_results + 1)
        cursor = self.db.cursor()
        try:
            cursor.execute(for_driver(text, self.dialect), cond.params)
            rows = cursor.fetchall()
        finally:
            cursor.close()
        if len(rows) > self.max_results:
            raise too_many(self.max_results)
        return list(map(Row._make, rows))

    def associations(self, *where: Sql, join: str = "") -> list[Row]:
        """Associations matching ``where`` whose status the query may return."""
        return self.fetch(_kind(s.ASSOCIATION), one_of("ro.status", self.assoc_statuses), *where, join=join)


def too_many(limit: int) -> XDSError:
    return XDSError.of(
        e.XDSTooManyResults,
        "the query matches more than %d objects; narrow it (e.g. by time range or codes)" % limit,
    )


def _kind(kind: str) -> Sql:
    # Inlined, not bound: one of four constants, and the planner then sees it (partial use of the indexes).
    return Sql("ro.kind = '%s'" % kind)


# --- shared predicates --------------------------------------------------------------------------------


def _doc_types(p: Params) -> list[Sql]:
    """``$XDSDocumentEntryType``; stable DocumentEntries only when absent (On-Demand Documents option)."""
    return f.in_each("ro.object_type", p.and_or(sp.DE_TYPE) or [["S"]])


def _doc_content_filters(p: Params) -> list[Sql]:
    """FormatCode, ConfidentialityCode and Type: the DocumentEntry filters of GetAll and *AndContents."""
    return [
        *f.in_each("ro.format_code", p.and_or(sp.DE_FORMAT_CODE)),
        *f.has_values(s.CONFIDENTIALITY_CODE, p.and_or(sp.DE_CONFIDENTIALITY_CODE)),
        *_doc_types(p),
    ]


def _identified(p: Params, uuid: str, unique_id: str, logical_id: str | None = None) -> Sql:
    """The object(s) named by whichever alternative was given (``check`` made sure exactly one was)."""
    if p.has(uuid):
        return one_of("ro.id", p.flat(uuid) or [])
    if p.has(unique_id):
        return one_of("ro.unique_id", p.flat(unique_id) or [])
    assert logical_id is not None
    return one_of("ro.lid", p.flat(logical_id) or [])


def _documents(c: Ctx, *where: Sql) -> list[Row]:
    return c.fetch(_kind(s.DOCUMENT_ENTRY), *f.level_filters(s.DOCUMENT_ENTRY, c.level), *where)


def _folders(c: Ctx, *where: Sql) -> list[Row]:
    return c.fetch(_kind(s.FOLDER), *f.level_filters(s.FOLDER, c.level), *where)


# --- Find queries ---------------------------------------------------------------------------------------


def find_documents(c: Ctx, *, by_reference_id: bool = False) -> list[Row]:
    """FindDocuments (3.18.4.1.2.3.7.1) and FindDocumentsByReferenceId (3.18.4.1.2.3.7.14)."""
    p = c.params
    statuses = p.and_or(sp.DE_STATUS)
    where = [
        eq("ro.patient_id", p.single(sp.DE_PATIENT_ID)),
        _kind(s.DOCUMENT_ENTRY),
        *f.in_each("ro.status", statuses),
        *_doc_types(p),
    ]
    for name, column in sp.DE_CODE_COLUMNS.items():
        where += f.in_each("ro." + column, p.and_or(name))
    for start, stop, column in sp.DE_TIME_RANGES:
        where += f.time_range("ro." + column, p.single(start), p.single(stop))
    where += f.has_values(s.EVENT_CODE, p.and_or(sp.DE_EVENT_CODE))
    where += f.has_values(s.CONFIDENTIALITY_CODE, p.and_or(sp.DE_CONFIDENTIALITY_CODE))
    where += f.matches_pattern(s.AUTHOR_PERSON, p.and_or(sp.DE_AUTHOR_PERSON))
    if by_reference_id:
        where += f.has_values(s.REFERENCE_ID, p.and_or(sp.DE_REFERENCE_ID))
    where += f.level_filters(s.DOCUMENT_ENTRY, c.level, statuses)
    return c.fetch(*where)


def find_documents_by_reference_id(c: Ctx) -> list[Row]:
    return find_documents(c, by_reference_id=True)


def find_submission_sets(c: Ctx) -> list[Row]:
    """FindSubmissionSets (3.18.4.1.2.3.7.2)."""
    p = c.params
    return c.fetch(
        eq("ro.patient_id", p.single(sp.SS_PATIENT_ID)),
        _kind(s.SUBMISSION_SET),
        *f.in_each("ro.status", p.and_or(sp.SS_STATUS)),
        *f.in_each("ro.source_id", p.and_or("$XDSSubmissionSetSourceId")),
        *f.time_range("ro.submission_time", p.single("$XDSSubmissionSetSubmissionTimeFrom"),
                      p.single("$XDSSubmissionSetSubmissionTimeTo")),
        *f.matches_pattern(s.AUTHOR_PERSON, p.and_or(sp.SS_AUTHOR_PERSON)),
        *f.in_each("ro.content_type_code", p.and_or("$XDSSubmissionSetContentType")),
    )


def find_folders(c: Ctx) -> list[Row]:
    """FindFolders (3.18.4.1.2.3.7.3)."""
    p = c.params
    statuses = p.and_or(sp.FOL_STATUS)
    return c.fetch(
        eq("ro.patient_id", p.single(sp.FOL_PATIENT_ID)),
        _kind(s.FOLDER),
        *f.in_each("ro.status", statuses),
        *f.time_range("ro.last_update_time", p.single("$XDSFolderLastUpdateTimeFrom"),
                      p.single("$XDSFolderLastUpdateTimeTo")),
        *f.has_values(s.FOLDER_CODE, p.and_or(sp.FOL_CODE_LIST)),
        *f.level_filters(s.FOLDER, c.level, statuses),
    )


# --- GetAll ---------------------------------------------------------------------------------------------


def get_all(c: Ctx) -> list[Row]:
    """GetAll (3.18.4.1.2.3.7.4): the patient's SubmissionSets, DocumentEntries and Folders that pass the
    status (and DocumentEntry) filters, and the Associations among them."""
    p = c.params
    patient = p.single(sp.PATIENT_ID)
    de_status, fd_status = p.and_or(sp.DE_STATUS), p.and_or(sp.FOL_STATUS)
    objects = c.fetch(
        eq("ro.patient_id", patient),
        any_of([
            all_of([_kind(s.SUBMISSION_SET), *f.in_each("ro.status", p.and_or(sp.SS_STATUS))]),
            all_of([_kind(s.FOLDER), *f.in_each("ro.status", fd_status),
                    *f.level_filters(s.FOLDER, c.level, fd_status)]),
            all_of([_kind(s.DOCUMENT_ENTRY), *f.in_each("ro.status", de_status),
                    *_doc_content_filters(p), *f.level_filters(s.DOCUMENT_ENTRY, c.level, de_status)]),
        ]),
    )
    # Associations have no patient column: join on their source object (index ix_ro_source), which
    # avoids binding every object id as a parameter.
    assocs = c.associations(eq("src.patient_id", patient), join=" JOIN registry_object src ON ro.source_object = src.id")
    return objects + _linking(assocs, {r.id for r in objects})


def _linking(assocs: list[Row], ids: set[str]) -> list[Row]:
    """The Associations with both ends in ``ids``, counting as an end an Association kept here (the
    SubmissionSet-to-(Folder-to-DocumentEntry) HasMember)."""
    kept = [a for a in assocs if a.source_object in ids and a.target_object in ids]
    kept_ids = {a.id for a in kept}
    kept += [a for a in assocs if a.source_object in ids and a.target_object in kept_ids]
    return kept


_HAS_MEMBER = Sql("ro.assoc_type = ?", (v.HAS_MEMBER,))


def _source_or_target(ids: list[str]) -> Sql:
    """Associations with one of ``ids`` as source or target (each side on its own index)."""
    return any_of([one_of("ro.source_object", ids), one_of("ro.target_object", ids)])


# --- Get by id ------------------------------------------------------------------------------------------


def get_documents(c: Ctx) -> list[Row]:
    """GetDocuments (3.18.4.1.2.3.7.5): by entryUUID, uniqueId or logicalID."""
    return _documents(c, _identified(c.params, sp.DE_ENTRY_UUID, sp.DE_UNIQUE_ID, sp.DE_LOGICAL_ID))


def get_folders(c: Ctx) -> list[Row]:
    """GetFolders (3.18.4.1.2.3.7.6): by entryUUID, uniqueId or logicalID."""
    return _folders(c, _identified(c.params, sp.FOL_ENTRY_UUID, sp.FOL_UNIQUE_ID, sp.FOL_LOGICAL_ID))


def get_associations(c: Ctx) -> list[Row]:
    """GetAssociations (3.18.4.1.2.3.7.7): Associations with source or target among ``$uuid``."""
    uuids = c.params.flat(sp.UUID) or []
    return c.associations(_source_or_target(uuids))


def get_documents_and_associations(c: Ctx) -> list[Row]:
    """GetDocumentsAndAssociations (3.18.4.1.2.3.7.8): the DocumentEntries and the Associations that
    have one of them as source or target."""
    docs = _documents(c, _identified(c.params, sp.DE_ENTRY_UUID, sp.DE_UNIQUE_ID))
    if not docs:
        return []
    return docs + c.associations(_source_or_target([d.id for d in docs]))


def get_submission_sets(c: Ctx) -> list[Row]:
    """GetSubmissionSets (3.18.4.1.2.3.7.9): the SubmissionSets holding the objects in ``$uuid`` and their
    HasMember Associations to those objects."""
    members = c.associations(_HAS_MEMBER, one_of("ro.target_object", c.params.flat(sp.UUID) or []))
    if not members:
        return []
    sets = c.fetch(_kind(s.SUBMISSION_SET), one_of("ro.id", sorted({a.source_object for a in members})))
    ss_ids = {r.id for r in sets}
    return sets + [a for a in members if a.source_object in ss_ids]


def get_submission_set_and_contents(c: Ctx) -> list[Row]:
    """GetSubmissionSetAndContents (3.18.4.1.2.3.7.10): the SubmissionSet, its DocumentEntries (after
    the format/confidentiality/type filters) and Folders, the HasMember Associations from it to those, and
    the Folder-to-DocumentEntry Associations it submitted (with its HasMember to them)."""
    p = c.params
    sets = c.fetch(_kind(s.SUBMISSION_SET), _identified(p, sp.SS_ENTRY_UUID, sp.SS_UNIQUE_ID))
    if not sets:
        return []
    members = c.associations(_HAS_MEMBER, one_of("ro.source_object", [r.id for r in sets]))
    contents = _contents(c, {a.target_object for a in members}, with_folders=True)
    ids = {r.id for r in sets} | {r.id for r in contents if r.kind != s.ASSOCIATION}
    inner = _linking([r for r in contents if r.kind == s.ASSOCIATION], ids)
    ids |= {a.id for a in inner}
    return sets + [r for r in contents if r.kind != s.ASSOCIATION] + inner + [
        a for a in members if a.target_object in ids
    ]


def _contents(c: Ctx, ids: Iterable[str], *, with_folders: bool) -> list[Row]:
    """Members among ``ids``: DocumentEntries passing the content filters, Folders (if asked) and
    Associations the query may return, in one SELECT."""
    ids = sorted(ids)
    if not ids:
        return []
    p = c.params
    kinds = [all_of([_kind(s.DOCUMENT_ENTRY), *_doc_content_filters(p), *f.level_filters(s.DOCUMENT_ENTRY, c.level)])]
    if with_folders:
        kinds.append(all_of([_kind(s.FOLDER), *f.level_filters(s.FOLDER, c.level)]))
        kinds.append(all_of([_kind(s.ASSOCIATION), one_of("ro.status", c.assoc_statuses)]))
    return c.fetch(one_of("ro.id", ids), any_of(kinds))


def get_folder_and_contents(c: Ctx) -> list[Row]:
    """GetFolderAndContents (3.18.4.1.2.3.7.11): the Folder, its DocumentEntries (after the filters) and
    the HasMember Associations from the Folder to them."""
    p = c.params
    folders = _folders(c, _identified(p, sp.FOL_ENTRY_UUID, sp.FOL_UNIQUE_ID))
    if not folders:
        return []
    members = c.associations(_HAS_MEMBER, one_of("ro.source_object", [r.id for r in folders]))
    docs = _contents(c, {a.target_object for a in members}, with_folders=False)
    doc_ids = {d.id for d in docs}
    return folders + docs + [a for a in members if a.target_object in doc_ids]


def get_folders_for_document(c: Ctx) -> list[Row]:
    """GetFoldersForDocument (3.18.4.1.2.3.7.12): the Folders holding the DocumentEntry."""
    docs = _documents(c, _identified(c.params, sp.DE_ENTRY_UUID, sp.DE_UNIQUE_ID))
    if not docs:
        return []
    links = c.associations(_HAS_MEMBER, one_of("ro.target_object", [d.id for d in docs]))
    if not links:
        return []
    return _folders(c, one_of("ro.id", sorted({a.source_object for a in links})))


def get_related_documents(c: Ctx) -> list[Row]:
    """GetRelatedDocuments (3.18.4.1.2.3.7.13): the DocumentEntry, the DocumentEntries linked to it (in
    either direction) by an Association of one of ``$AssociationTypes``, and those Associations. Nothing
    at all when it has no related DocumentEntry."""
    p = c.params
    docs = _documents(c, _identified(p, sp.DE_ENTRY_UUID, sp.DE_UNIQUE_ID))
    if not docs:
        return []
    ids = {d.id for d in docs}
    assocs = c.associations(one_of("ro.assoc_type", p.flat(sp.ASSOCIATION_TYPES) or []),
                            _source_or_target(sorted(ids)))
    others = {a.target_object if a.source_object in ids else a.source_object for a in assocs} - ids
    related = _documents(c, one_of("ro.id", sorted(others)), *_doc_types(p)) if others else []
    ends = ids | {d.id for d in related}
    kept = [a for a in assocs if a.source_object in ends and a.target_object in ends]
    if not kept:
        return []
    return docs + related + kept


#: Queries answered by one SELECT: their rows are already unique and in pk order.
SINGLE_SELECT = frozenset({v.SQ_FIND_DOCUMENTS, v.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID, v.SQ_FIND_SUBMISSION_SETS,
                           v.SQ_FIND_FOLDERS, v.SQ_GET_DOCUMENTS, v.SQ_GET_FOLDERS, v.SQ_GET_ASSOCIATIONS})

#: Stored query id -> implementation.
QUERIES: dict[str, Callable[[Ctx], list[Row]]] = {
    v.SQ_FIND_DOCUMENTS: find_documents,
    v.SQ_FIND_DOCUMENTS_BY_REFERENCE_ID: find_documents_by_reference_id,
    v.SQ_FIND_SUBMISSION_SETS: find_submission_sets,
    v.SQ_FIND_FOLDERS: find_folders,
    v.SQ_GET_ALL: get_all,
    v.SQ_GET_DOCUMENTS: get_documents,
    v.SQ_GET_FOLDERS: get_folders,
    v.SQ_GET_ASSOCIATIONS: get_associations,
    v.SQ_GET_DOCUMENTS_AND_ASSOCIATIONS: get_documents_and_associations,
    v.SQ_GET_SUBMISSION_SETS: get_submission_sets,
    v.SQ_GET_SUBMISSION_SET_AND_CONTENTS: get_submission_set_and_contents,
    v.SQ_GET_FOLDER_AND_CONTENTS: get_folder_and_contents,
    v.SQ_GET_FOLDERS_FOR_DOCUMENT: get_folders_for_document,
    v.SQ_GET_RELATED_DOCUMENTS: get_related_documents,
}
