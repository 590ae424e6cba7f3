"""SQL predicates of the stored queries over ``registry_object`` (portable: SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, and_, exists, false, func, or_, true

from registry.storage import schema as s
from registry.storedquery.params import AndOr

ro = s.registry_object
ov = s.object_value

LIKE_ESCAPE = "\\"


def one_of(column: ColumnElement, values: list[str]) -> ColumnElement:
    """``column = x`` for one value (the common case; an expanding ``IN`` costs a re-render per
    execution), ``column IN (...)`` for several."""
    return column == values[0] if len(values) == 1 else column.in_(values)


def in_each(column: ColumnElement, and_or: AndOr | None) -> list[ColumnElement]:
    """A single-valued attribute: one ``IN`` per Slot (OR within a Slot, AND between Slots)."""
    return [one_of(column, values) for values in and_or or ()]


def has_values(t: Table, attr: str, and_or: AndOr | None) -> list[ColumnElement]:
    """A multi-valued attribute in ``object_value``: for each Slot, the object has one of its values."""
    return [
        exists().where(ov.c.object_pk == t.c.pk, ov.c.attr == attr, one_of(ov.c.value, values))
        for values in and_or or ()
    ]


def like_pattern(value: str) -> str:
    """A stored query wildcard value as a LIKE pattern: ``%`` and ``_`` stay wildcards, the escape
    character itself is escaped (ITI TF-2a 3.18.4.1.2.3.5 has no way to match a literal % or _)."""
    return value.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)


def matches_pattern(t: Table, attr: str, and_or: AndOr | None) -> list[ColumnElement]:
    """Author person with wildcards. Case-insensitive on both databases (SQLite's LIKE is, PostgreSQL's
    is not, so both sides are lowered)."""
    out = []
    for values in and_or or ():
        any_of = or_(*(func.lower(ov.c.value).like(func.lower(like_pattern(x)), escape=LIKE_ESCAPE)
                       for x in values)) if values else false()
        out.append(exists().where(ov.c.object_pk == t.c.pk, ov.c.attr == attr, any_of))
    return out


def time_range(column: ColumnElement, start: str | None, stop: str | None) -> list[ColumnElement]:
    """``From`` inclusive, ``To`` exclusive (ITI TF-2a 3.18.4.1.2.3.6); values already 14-digit padded.
    An object without the attribute never matches a range on it."""
    out = []
    if start is not None:
        out.append(column >= start)
    if stop is not None:
        out.append(column < stop)
    return out


def latest_version(t: Table) -> ColumnElement:
    """No newer version of the object exists (same logicalId, higher version): Metadata Level 1 hides
    older versions of DocumentEntries and Folders (ITI TF-2a 3.18.4.1.2.3.5.1.1)."""
    newer = ro.alias()
    return ~exists().where(newer.c.lid == t.c.lid, newer.c.version > t.c.version)


def not_offline(t: Table) -> ColumnElement:
    """documentAvailability is not Offline (hidden at Metadata Level 1): column ``offline`` is NULL
    (Online, or no documentAvailability) for all but Offline entries."""
    return t.c.offline.is_(None)


def level_filters(t: Table, kind: str, level: int, statuses: AndOr | None = None) -> list[ColumnElement]:
    """What Metadata Level 1 hides for objects of ``kind`` (DE or FD).

    ``statuses`` is the status parameter the query already applies, if any. Older versions are always
    Deprecated (a new version deprecates its predecessor, and ITI-57 refuses status changes on old
    versions), so with a status filter of Approved only the version test can be skipped: that keeps
    FindDocuments, the hot path, to one index range plus the row fetch.
    """
    if level != 1:
        return []
    out: list[ColumnElement] = []
    only_approved = statuses is not None and all(set(x) <= {"A"} for x in statuses)
    if not only_approved:
        out.append(latest_version(t))
    if kind == s.DOCUMENT_ENTRY:
        out.append(not_offline(t))
    elif kind == s.FOLDER:
        out.append(t.c.status != "D")
    return out


def association_statuses(level: int, requested: list[str] | None) -> list[str]:
    """Statuses of the Associations a query may return: the ``$XDSAssociationStatus`` values if given,
    else all but Submitted; Metadata Level 1 never returns Deprecated Associations."""
    allowed = set(requested) if requested is not None else {"A", "D"}
    if level == 1:
        allowed.discard("D")
    return sorted(allowed)


def all_of(conditions: list[ColumnElement]) -> ColumnElement:
    return and_(*conditions) if conditions else true()
