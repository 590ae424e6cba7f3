"""The repository's ledger: which documents it holds, where their content is, and whether the registry
has accepted them.

A document row is written ``pending``, with the ITI-42 request that will register it, before its content
is stored (so a crash at any later point leaves a row that recovery can settle), and the ITI-42 goes to the
registry only once the content is durable. The row becomes ``registered`` when the registry says Success,
and is deleted (with its content, unless other documents share it) when the registry refuses. Rows left
``pending`` by a crash are settled by :mod:`repository.recovery`, which asks the registry.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, Column, Connection, Float, Index, MetaData, String, Table, Text, delete, insert, select, text, update

from xdsi.db import DriverStatement

metadata = MetaData()

PENDING = "pending"
REGISTERED = "registered"

document = Table(
    "repository_document",
    metadata,
    Column("unique_id", String, primary_key=True),  # XDSDocumentEntry.uniqueId
    Column("content_key", String, nullable=False),  # store key (SHA-1 hex)
    Column("size", BigInteger, nullable=False),
    Column("mime_type", String, nullable=False),
    Column("state", String(10), nullable=False),
    Column("submission", String, nullable=False),  # id grouping the documents of one ITI-41
    Column("created", Float, nullable=False),  # epoch seconds
)
#: The ITI-42 request of each submission that still has pending documents (recovery re-sends it).
submission = Table(
    "repository_submission",
    metadata,
    Column("id", String, primary_key=True),
    Column("request", Text, nullable=False),  # the SubmitObjectsRequest as sent to the registry
    Column("created", Float, nullable=False),
)

Index("ix_repository_document_content", document.c.content_key)
Index("ix_repository_document_state", document.c.state, document.c.created)


@dataclass(frozen=True)
class Held:
    """A document the repository holds."""

    unique_id: str
    content_key: str
    size: int
    mime_type: str
    state: str
    submission: str = ""


def _held(row) -> Held:  # type: ignore[no-untyped-def]
    return Held(row.unique_id, row.content_key, row.size, row.mime_type, row.state, row.submission)


# The statements of every submission's path run on the driver (xdsi.db.DriverStatement): going through
# Connection.execute, the ledger's five statements were a third of the repository's CPU per small submission.
# One row per parameter set, so each compiles once (an expanding IN list cannot).
_LOOKUP_ONE = DriverStatement(
    select(document.c.unique_id, document.c.content_key, document.c.size, document.c.mime_type, document.c.state,
           document.c.submission).where(document.c.unique_id == bindparam("uid")))
_INSERT_SUBMISSION = DriverStatement(insert(submission), ["id", "request", "created"])
_DELETE_ONE = DriverStatement(delete(document).where(document.c.unique_id == bindparam("uid")))
_INSERT = DriverStatement(insert(document), [c.name for c in document.c])
_MARK_ONE = DriverStatement(update(document).where(document.c.unique_id == bindparam("uid")).values(state=REGISTERED))
_DROP_SUBMISSION = DriverStatement(delete(submission).where(submission.c.id == bindparam("sid")))
_DELETE = delete(document).where(document.c.unique_id.in_(bindparam("ids", expanding=True)))
_KEYS_OF = select(document.c.content_key).where(document.c.unique_id.in_(bindparam("ids", expanding=True)))
_STILL_USED = select(document.c.content_key).where(document.c.content_key.in_(bindparam("keys", expanding=True)))


def lookup(conn: Connection, unique_ids: Iterable[str]) -> dict[str, Held]:
    held = {}
    for uid in unique_ids:
        for row in _LOOKUP_ONE.execute(conn, {"uid": uid}):
            held[uid] = Held(*row)
    return held


def lock_content(conn: Connection, keys: Iterable[str]) -> None:
    """PostgreSQL: serialize, per content key, recording references with deleting unreferenced content
    (transaction-scoped advisory locks, sorted against deadlock). SQLite's write transaction already
    excludes every other writer."""
    if conn.dialect.name != "postgresql":
        return
    for key in sorted(set(keys)):
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": "content:" + key})


def record_pending(conn: Connection, submission_id: str, docs: Sequence[Held], request: str) -> None:
    """Insert (or replace, for a retried submission) the documents of one submission as pending, with the
    ITI-42 request that will register them. Run it in a write transaction (:func:`xdsi.db.grouped_write`)."""
    lock_content(conn, [d.content_key for d in docs])
    now = time.time()
    _INSERT_SUBMISSION.execute(conn, {"id": submission_id, "request": request, "created": now})
    _DELETE_ONE.executemany(conn, [{"uid": d.unique_id} for d in docs])
    _INSERT.executemany(conn, [
        {"unique_id": d.unique_id, "content_key": d.content_key, "size": d.size, "mime_type": d.mime_type,
         "state": PENDING, "submission": submission_id, "created": now} for d in docs])


def mark_registered(conn: Connection, unique_ids: Iterable[str]) -> None:
    _MARK_ONE.executemany(conn, [{"uid": uid} for uid in unique_ids])


def drop_submission(conn: Connection, submission_id: str) -> None:
    """Forget the kept request of a submission whose documents are all registered."""
    _DROP_SUBMISSION.execute(conn, {"sid": submission_id})


def forget(conn: Connection, unique_ids: Iterable[str]) -> set[str]:
    """Delete document rows; return the content keys no other document references (safe to delete)."""
    ids = list(unique_ids)
    keys = {r[0] for r in conn.execute(_KEYS_OF, {"ids": ids})}
    conn.execute(_DELETE, {"ids": ids})
    still = {r[0] for r in conn.execute(_STILL_USED, {"keys": list(keys)})} if keys else set()
    return keys - still


def submission_request(conn: Connection, submission_id: str) -> str | None:
    return conn.execute(select(submission.c.request).where(submission.c.id == submission_id)).scalar()


def drop_settled_submissions(conn: Connection) -> None:
    """Requests are kept only while some document of their submission is pending: this also drops the
    requests whose documents a retried submission took over (:func:`record_pending`)."""
    still = select(document.c.submission).where(document.c.state == PENDING)
    conn.execute(delete(submission).where(submission.c.id.not_in(still)))


def pending_older_than(conn: Connection, seconds: float) -> list[Held]:
    cutoff = time.time() - seconds
    rows = conn.execute(select(document).where(document.c.state == PENDING, document.c.created < cutoff))
    return [_held(r) for r in rows]


def is_referenced(conn: Connection, content_key: str) -> bool:
    return conn.execute(select(document.c.unique_id).where(document.c.content_key == content_key).limit(1)).first() \
        is not None
