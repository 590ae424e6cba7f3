"""The repository ledger's group commit (repository.ledger.GroupCommit) on a real SQLite file."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from repository import ledger
from repository.app import MIGRATIONS
from xdsi import db


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = db.create(f"sqlite:///{tmp_path / 'ledger.db'}")
    db.upgrade(engine, MIGRATIONS)
    yield engine
    engine.dispose()


def _pending(uid: str) -> ledger.Held:
    return ledger.Held(uid, "a" * 40, 3, "text/plain", ledger.PENDING)


def _rows(engine) -> set[str]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return {r.unique_id for r in conn.execute(select(ledger.document))}


def test_concurrent_writes_share_one_commit_and_are_durable_on_return(engine) -> None:  # type: ignore[no-untyped-def]
    writes = ledger.GroupCommit(engine)
    commits = []
    event.listen(engine, "commit", lambda _conn: commits.append(1))
    leading = threading.Event()
    release = threading.Event()
    seen: dict[str, bool] = {}

    def first(conn) -> None:  # type: ignore[no-untyped-def]
        leading.set()
        release.wait(10)  # the other writes queue meanwhile
        ledger.record_pending(conn, "s0", [_pending("1.0")], "<r/>")

    def write(i: int) -> None:
        writes.run(lambda conn: ledger.record_pending(conn, f"s{i}", [_pending(f"1.{i}")], "<r/>"))
        seen[f"1.{i}"] = f"1.{i}" in _rows(engine)  # committed when run returns

    t0 = threading.Thread(target=writes.run, args=(first,))
    t0.start()
    assert leading.wait(10)
    threads = [threading.Thread(target=write, args=(i,)) for i in range(1, 9)]
    for t in threads:
        t.start()
    while len(writes._queue) < 8:  # all eight queued behind the first batch
        threading.Event().wait(0.01)
    release.set()
    for t in [t0, *threads]:
        t.join(10)
    assert _rows(engine) == {f"1.{i}" for i in range(9)}
    assert seen == {f"1.{i}": True for i in range(1, 9)}
    assert len(commits) == 2  # the first write alone, then the eight queued behind it together
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(ledger.submission)).scalar_one() == 9


def test_a_failing_write_fails_alone(engine) -> None:  # type: ignore[no-untyped-def]
    writes = ledger.GroupCommit(engine)
    release = threading.Event()
    leading = threading.Event()
    errors: dict[int, BaseException] = {}

    def first(conn) -> None:  # type: ignore[no-untyped-def]
        leading.set()
        release.wait(10)

    def bad(conn) -> None:  # type: ignore[no-untyped-def]
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

    t0 = threading.Thread(target=writes.run, args=(first,))
    t0.start()
    assert leading.wait(10)
    threads = [threading.Thread(target=write, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    while len(writes._queue) < 4:
        threading.Event().wait(0.01)
    release.set()
    for t in [t0, *threads]:
        t.join(10)
    assert list(errors) == [2] and str(errors[2]) == "broken write"
    assert _rows(engine) == {"1.1", "1.3", "1.4"}  # the failing write's row was rolled back, the others kept
