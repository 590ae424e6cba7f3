"""SQL conditions as text with positional parameters: the stored queries' WHERE clauses.

Why not SQLAlchemy Core here: an ITI-18 FindDocuments answer is 50 stored XML rows that the database reads in
~0.2 ms, while building the Core expression, its cache key and running it through the execution context cost
~0.7 ms more (profiled at 1M entries). The stored queries are a fixed, small set of predicates over one table
and its side table, so they are written as SQL text here and run on the DBAPI cursor directly. (The static
statements of other hot paths, such as ITI-42's inserts, are Core statements compiled once:
:class:`xdsi.db.DriverStatement`. A stored query's shape changes with every request's parameters, so it has
nothing to compile once.)

Placeholders are ``?`` (sqlite3's qmark style); :func:`for_driver` turns them into ``%s`` for psycopg. No SQL
text built here contains a literal ``?`` or ``%``: every value, patterns included, is a parameter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Sql:
    """A condition: SQL text with ``?`` placeholders and the values they take, in order."""

    text: str
    params: tuple = ()


#: Conditions that are always true / false (an empty AND / OR; an IN over no value).
TRUE = Sql("1 = 1")
FALSE = Sql("1 = 0")


def eq(column: str, value: object) -> Sql:
    """``column = ?`` (``IS NULL`` for None, as a missing attribute is stored)."""
    if value is None:
        return Sql(column + " IS NULL")
    return Sql(column + " = ?", (value,))


def one_of(column: str, values: Sequence[object]) -> Sql:
    """``column = ?`` for one value, ``column IN (?, ...)`` for several, false for none."""
    if not values:
        return FALSE
    if len(values) == 1:
        return Sql(column + " = ?", (values[0],))
    return Sql("%s IN (%s)" % (column, ", ".join("?" * len(values))), tuple(values))


def _joined(conditions: Sequence[Sql], operator: str, empty: Sql) -> Sql:
    if not conditions:
        return empty
    if len(conditions) == 1:
        return conditions[0]
    return Sql(operator.join("(%s)" % c.text for c in conditions), sum((c.params for c in conditions), ()))


def all_of(conditions: Sequence[Sql]) -> Sql:
    """AND of ``conditions`` (true when there is none)."""
    return _joined(conditions, " AND ", TRUE)


def any_of(conditions: Sequence[Sql]) -> Sql:
    """OR of ``conditions`` (false when there is none)."""
    return _joined(conditions, " OR ", FALSE)


def for_driver(text: str, dialect: str) -> str:
    """The statement in the DBAPI's placeholder style: ``?`` for sqlite3, ``%s`` for psycopg."""
    return text if dialect == "sqlite" else text.replace("?", "%s")
