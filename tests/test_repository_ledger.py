"""The repository ledger on SQLite and PostgreSQL, and the group commit its writes go through
(xdsi.db.GroupCommit) on a real SQLite file."""

from __future__ import annotations

import fcntl
import functools
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, event, func, select

from repository import ledger
from repository.app import MIGRATIONS
from tests.conftest import throwaway_pg_database
from xdsi import db


@contextmanager
def _ledger(url: str) -> Iterator[Engine]:
    engine = db.create(url)
    db.upgrade(engine, MIGRATIONS)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with _ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as engine:
        yield engine


def _pending(uid: str) -> ledger.Held:
    return ledger.Held(uid, "a" * 40, 3, "text/plain", ledger.PENDING)


def _rows(engine) -> set[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {r.unique_id for r in conn.execute(select(ledger.document))}


def _queued_behind_a_busy_leader(writes: db.GroupCommit, writers: list[Callable[[], None]],
                                 first_write: Callable[[Connection], None] | None = None) -> None:
    """Start a write that holds the ledger, then ``writers`` in threads; release the first write only once
    all of them are queued behind it, so they form one batch; wait for everything."""
    leading, release = threading.Event(), threading.Event()

    def first(conn: Connection) -> None:
        leading.set()
        release.wait(10)  # the other writes queue meanwhile
        if first_write is not None:
            first_write(conn)

    t0 = threading.Thread(target=writes.run, args=(first,))
    t0.start()
    assert leading.wait(10)
    threads = [threading.Thread(target=w) for w in writers]
    for t in threads:
        t.start()
    while len(writes._queue) < len(writers):
        threading.Event().wait(0.01)
    release.set()
    for t in [t0, *threads]:
        t.join(10)


def test_concurrent_writes_share_one_commit_and_are_durable_on_return(engine) -> None:  # type: ignore[no-untyped-def]
    writes = db.GroupCommit(engine)
    commits = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    seen: dict[str, bool] = {}

    def write(i: int) -> None:
        writes.run(lambda conn: ledger.record_pending(conn, f"s{i}", [_pending(f"1.{i}")], "<r/>"))
        seen[f"1.{i}"] = f"1.{i}" in _rows(engine)  # committed when run returns

    _queued_behind_a_busy_leader(writes, [functools.partial(write, i) for i in range(1, 9)],
                                 lambda conn: ledger.record_pending(conn, "s0", [_pending("1.0")], "<r/>"))
    assert _rows(engine) == {f"1.{i}" for i in range(9)}
    assert seen == {f"1.{i}": True for i in range(1, 9)}
    assert len(commits) == 2  # the first write alone, then the eight queued behind it together
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger.submission)).scalar_one() == 9


def test_a_failing_write_fails_alone(engine) -> None:  # type: ignore[no-untyped-def]
    writes = db.GroupCommit(engine)
    errors: dict[int, BaseException] = {}
    commits = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))

    def bad(conn: Connection) -> None:
        ledger.record_pending(conn, "bad", [_pending("1.bad")], "<r/>")
        raise RuntimeError("broken write")

    def write(i: int) -> None:
        try:
            if i == 2:
                writes.run(bad)
            else:
                writes.run(lambda conn: ledger.record_pending(conn, f"s{i}", [_pending(f"1.{i}")], "<r/>"))
        except RuntimeError as exc:
            errors[i] = exc

    _queued_behind_a_busy_leader(writes, [functools.partial(write, i) for i in range(1, 5)])
    assert list(errors) == [2] and str(errors[2]) == "broken write"
    assert _rows(engine) == {"1.1", "1.3", "1.4"}  # the failing write's row was rolled back, the others kept
    assert len(commits) == 2  # rolled back to its savepoint: the batch still committed once


def test_a_write_that_ends_the_transaction_sends_the_batch_back_one_by_one(engine) -> None:  # type: ignore[no-untyped-def]
    """A write whose error ends SQLite's transaction (as an I/O error or a full disk does) leaves no
    savepoint to roll back to: every write of the batch is run again in a transaction of its own."""
    writes = db.GroupCommit(engine)
    errors: dict[int, BaseException] = {}

    def fatal(conn: Connection) -> None:
        ledger.record_pending(conn, "bad", [_pending("1.bad")], "<r/>")
        conn.connection.driver_connection.execute("ROLLBACK")  # the transaction is gone, savepoints with it
        raise RuntimeError("disk I/O error")

    def write(i: int) -> None:
        try:
            writes.run(fatal if i == 2 else
                       lambda conn: ledger.record_pending(conn, f"s{i}", [_pending(f"1.{i}")], "<r/>"))
        except RuntimeError as exc:
            errors[i] = exc

    _queued_behind_a_busy_leader(writes, [functools.partial(write, i) for i in range(1, 5)])
    assert list(errors) == [2] and str(errors[2]) == "disk I/O error"
    assert _rows(engine) == {"1.1", "1.3", "1.4"}


@pytest.fixture(params=["sqlite", "postgresql"])
def any_engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        with _ledger(f"sqlite:///{tmp_path / 'ledger.db'}") as engine:
            yield engine
        return
    with throwaway_pg_database() as url, _ledger(url) as engine:
        yield engine


def test_ledger_round_trip_on_both_databases(any_engine) -> None:  # type: ignore[no-untyped-def]
    """The ledger's driver-level statements (pending, lookup, registered, retry, forget) on SQLite and
    PostgreSQL, through GroupCommit (one transaction per write on PostgreSQL)."""
    writes = db.GroupCommit(any_engine)
    docs = [_pending("1.1"), _pending("1.2")]
    writes.run(lambda conn: ledger.record_pending(conn, "s1", docs, "<r1/>"))
    with any_engine.connect() as conn:
        held = ledger.lookup(conn, ["1.1", "1.2", "1.9"])
        assert set(held) == {"1.1", "1.2"} and held["1.1"].state == ledger.PENDING
        assert held["1.1"].submission == "s1" and ledger.submission_request(conn, "s1") == "<r1/>"
    # A retry of 1.2 under a new submission takes the row over.
    writes.run(lambda conn: ledger.record_pending(conn, "s2", [_pending("1.2")], "<r2/>"))
    writes.run(lambda conn: ledger.mark_registered(conn, ["1.1", "1.2"]))
    writes.run(lambda conn: ledger.drop_submission(conn, "s2"))
    with any_engine.connect() as conn:
        held = ledger.lookup(conn, ["1.1", "1.2"])
        assert {h.state for h in held.values()} == {ledger.REGISTERED} and held["1.2"].submission == "s2"
        assert ledger.submission_request(conn, "s2") is None
    with db.write_transaction(any_engine) as conn:
        ledger.drop_settled_submissions(conn)  # s1's documents are registered (one taken over): its request goes
        assert ledger.forget(conn, ["1.1"]) == set()  # the content is still used by 1.2
    with any_engine.connect() as conn:
        assert ledger.submission_request(conn, "s1") is None
        assert set(ledger.lookup(conn, ["1.1", "1.2"])) == {"1.2"}


def test_writes_queued_while_another_process_writes_join_the_next_batch(engine) -> None:  # type: ignore[no-untyped-def]
    """A leader waiting for another worker process's transaction (its flock on ``<db>-writer.lock``) takes
    its batch only once the lock is its own: the writes queued meanwhile commit together with its own."""
    writes = db.GroupCommit(engine)
    commits = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    other = os.open(f"{engine.url.database}-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)  # as another process
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        threads = [threading.Thread(target=writes.run,
                                    args=(functools.partial(lambda i, conn: ledger.record_pending(
                                        conn, f"s{i}", [_pending(f"1.{i}")], "<r/>"), i),))
                   for i in range(9)]
        for t in threads:
            t.start()
        # The first caller leads but waits on the lock; all nine writes are queued meanwhile.
        deadline = time.monotonic() + 5
        while len(writes._queue) < 9 and time.monotonic() < deadline:
            threading.Event().wait(0.01)
    finally:
        fcntl.flock(other, fcntl.LOCK_UN)
        os.close(other)
    for t in threads:
        t.join(10)
    assert _rows(engine) == {f"1.{i}" for i in range(9)}
    assert len(commits) == 1
