"""The stored queries' predicates over ``registry_object`` (alias ``ro``) and its side table ``object_value``,
as portable SQL (SQLite and PostgreSQL)."""

from __future__ import annotations

from registry.storage import schema as s
from registry.storedquery.params import AndOr
from registry.storedquery.sql import Sql, any_of, one_of

LIKE_ESCAPE = "\\"


def in_each(column: str, and_or: AndOr | None) -> list[Sql]:
    """A single-valued attribute: one ``IN`` per Slot (OR within a Slot, AND between Slots)."""
    return [one_of(column, values) for values in and_or or ()]


def _has_value(attr: str, condition: Sql) -> Sql:
    return Sql(
        "EXISTS (SELECT 1 FROM object_value ov WHERE ov.object_pk = ro.pk AND ov.attr = ? AND (%s))" % condition.text,
        (attr, *condition.params),
    )


def has_values(attr: str, and_or: AndOr | None) -> list[Sql]:
    """A multi-valued attribute in ``object_value``: for each Slot, the object has one of its values."""
    return [_has_value(attr, one_of("ov.value", values)) for values in and_or or ()]


def like_pattern(value: str) -> str:
    """A stored query wildcard value as a LIKE pattern: ``%`` and ``_`` stay wildcards, the escape
    character itself is escaped (ITI TF-2a 3.18.4.1.2.3.5 has no way to match a literal % or _)."""
    return value.replace(LIKE_ESCAPE, LIKE_ESCAPE * 2)


def matches_pattern(attr: str, and_or: AndOr | None) -> list[Sql]:
    """Author person with wildcards. Case-insensitive on both databases (SQLite's LIKE is, PostgreSQL's
    is not, so both sides are lowered)."""
    like = "lower(ov.value) LIKE lower(?) ESCAPE '%s'" % LIKE_ESCAPE
    return [_has_value(attr, any_of([Sql(like, (like_pattern(x),)) for x in values])) for values in and_or or ()]


def time_range(column: str, start: str | None, stop: str | None) -> list[Sql]:
    """``From`` inclusive, ``To`` exclusive (ITI TF-2a 3.18.4.1.2.3.6); values already 14-digit padded.
    An object without the attribute never matches a range on it."""
    out = []
    if start is not None:
        out.append(Sql(column + " >= ?", (start,)))
    if stop is not None:
        out.append(Sql(column + " < ?", (stop,)))
    return out


#: No newer version of the object exists (same logicalId, higher version): Metadata Level 1 hides older
#: versions of DocumentEntries and Folders (ITI TF-2a 3.18.4.1.2.3.5.1.1).
LATEST_VERSION = Sql(
    "NOT EXISTS (SELECT 1 FROM registry_object newer WHERE newer.lid = ro.lid AND newer.version > ro.version)"
)
#: documentAvailability is not Offline (hidden at Metadata Level 1): column ``offline`` is NULL (Online, or no
#: documentAvailability) for all but Offline entries.
NOT_OFFLINE = Sql("ro.offline IS NULL")
NOT_DEPRECATED = Sql("ro.status <> 'D'")


def level_filters(kind: str, level: int, statuses: AndOr | None = None) -> list[Sql]:
    """What Metadata Level 1 hides for objects of ``kind`` (DE or FD).

    ``statuses`` is the status parameter the query already applies, if any. Older versions are always
    Deprecated (a new version deprecates its predecessor, and ITI-57 refuses status changes on old
    versions), so with a status filter of Approved only the version test can be skipped: that keeps
    FindDocuments, the hot path, to one index range plus the row fetch.
    """
    if level != 1:
        return []
    out: list[Sql] = []
    only_approved = statuses is not None and all(set(x) <= {"A"} for x in statuses)
    if not only_approved:
        out.append(LATEST_VERSION)
    if kind == s.DOCUMENT_ENTRY:
        out.append(NOT_OFFLINE)
    elif kind == s.FOLDER:
        out.append(NOT_DEPRECATED)
    return out


def association_statuses(level: int, requested: list[str] | None) -> list[str]:
    """Statuses of the Associations a query may return: the ``$XDSAssociationStatus`` values if given,
    else all but Submitted; Metadata Level 1 never returns Deprecated Associations."""
    allowed = set(requested) if requested is not None else {"A", "D"}
    if level == 1:
        allowed.discard("D")
    return sorted(allowed)
