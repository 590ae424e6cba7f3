"""Database engines for the actors (SQLAlchemy 2): SQLite by default, PostgreSQL in production.

Each actor keeps its own tables and Alembic migrations; this module only knows how to connect, how to
make SQLite durable and concurrent enough, and how to run an actor's migrations.
"""

from __future__ import annotations

import fcntl
import os
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Dialect, Engine, Executable, create_engine, event
from sqlalchemy.exc import DBAPIError


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL lets readers (stored queries, retrievals) run while a writer commits; synchronous=FULL makes
    # every commit durable (fsync): an accepted submission is never lost on power failure.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
    cur.execute("PRAGMA mmap_size=1073741824")
    # Checkpoint every ~40 MiB of WAL instead of SQLite's 4 MiB: the pages every write touches (index
    # roots and inner nodes, the tables' last leaves) are copied back once per checkpoint, so rarer
    # checkpoints copy far fewer pages in all. ITI-42 on SQLite, two workers: ~290/s -> 340-390/s.
    cur.execute("PRAGMA wal_autocheckpoint=10000")
    # Temporary files in memory: above all the savepoint sub-journal, which receives the original of every
    # page a grouped write (xdsi.db.GroupCommit) changes and spilled to a temp file past 64 KiB (opened,
    # written page by page, unlinked, per batch): a quarter of ITI-42's system CPU. Sorts that no index
    # serves also stay in memory; the stored queries cap their rows (XDSTooManyResults).
    cur.execute("PRAGMA temp_store=MEMORY")
    cur.close()
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would otherwise defer it to the first write).
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # A write transaction takes the write lock up front (BEGIN IMMEDIATE): its checks and inserts then see
    # no concurrent writer in between. Readers use a plain BEGIN and run concurrently (WAL).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("xdsi_write") else "BEGIN")


def create(url: str) -> Engine:
    """An engine for any SQLAlchemy URL (``postgresql://`` means psycopg 3)."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=8, max_overflow=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
        return engine
    return create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)


#: SQLite has one writer at a time. Writers queue on locks of ours rather than in SQLite's busy handler,
#: which polls with sleeps and gives multi-second tail latencies under load: threads of one process on a
#: threading.Lock, processes (``--workers N``) on an flock of ``<database>-writer.lock``.
_sqlite_writers: weakref.WeakKeyDictionary[Engine, tuple[threading.Lock, int | None]] = weakref.WeakKeyDictionary()
_sqlite_writers_guard = threading.Lock()


def _writer_locks(engine: Engine) -> tuple[threading.Lock, int | None]:
    with _sqlite_writers_guard:
        locks = _sqlite_writers.get(engine)
        if locks is None:
            path = engine.url.database
            fd = None
            if path and path != ":memory:":
                fd = os.open(f"{path}-writer.lock", os.O_RDWR | os.O_CREAT, 0o644)
                weakref.finalize(engine, os.close, fd)
            locks = _sqlite_writers[engine] = (threading.Lock(), fd)
        return locks


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A write transaction holding the database's write lock from its first statement."""
    if engine.dialect.name != "sqlite":
        with engine.connect().execution_options(xdsi_write=True) as conn, conn.begin():
            yield conn
        return
    lock, fd = _writer_locks(engine)
    # The pool's checkout and check-in (a reset ROLLBACK) happen outside the flock, while another worker
    # process may write; inside the threading lock, so waiting writers hold no pooled connection.
    with lock, engine.connect().execution_options(xdsi_write=True) as conn:
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)  # blocks without the GIL; released below, after COMMIT
        try:
            with conn.begin():
                yield conn
        finally:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_UN)


def _end_transaction(db: Any) -> None:
    """Roll back what a psycopg connection has open: its transaction settings can change only when idle."""
    import psycopg

    if db.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        db.rollback()


@contextmanager
def single_read(conn: Connection) -> Iterator[Any]:
    """The DBAPI connection under ``conn``, for a read made of one SELECT: outside any transaction.

    PostgreSQL: in autocommit mode, so psycopg sends no BEGIN before the SELECT and no ROLLBACK when the
    connection goes back to the pool, two of a FindDocuments' three round trips (~0.3 ms). SQLite
    connections run statements that way already (``isolation_level = None``).
    """
    db = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        yield db
        return
    _end_transaction(db)
    db.autocommit = True
    try:
        yield db
    finally:
        db.autocommit = False


@contextmanager
def read_snapshot(conn: Connection) -> Iterator[Any]:
    """The DBAPI connection under ``conn``, inside one read-only transaction that sees a single snapshot.

    For reads made of several SELECTs (the Get stored queries): each SELECT alone would see the commits
    made since the one before, so a replacement (RPLC) committed in between could show the replaced entry
    as Approved beside the Association that deprecated it. SQLite (WAL) takes the snapshot at the first
    read after BEGIN; PostgreSQL needs REPEATABLE READ, READ COMMITTED taking a new one per statement
    (psycopg puts it in its BEGIN, no extra round trip). The transaction ends here, and the connection
    leaves with its default settings.
    """
    db = conn.connection.driver_connection
    if conn.dialect.name == "sqlite":
        if db.in_transaction:
            db.rollback()
        db.execute("BEGIN")
        try:
            yield db
        finally:
            db.rollback()
        return
    import psycopg

    _end_transaction(db)
    db.isolation_level, db.read_only = psycopg.IsolationLevel.REPEATABLE_READ, True
    try:
        yield db
    finally:
        try:
            db.rollback()
        finally:
            db.isolation_level = db.read_only = None


T = TypeVar("T")


@dataclass
class _Job:
    work: Callable[[Connection], Any]
    done: bool = False
    result: Any = None
    error: BaseException | None = None


class GroupCommit:
    """Concurrent write transactions of one process, run together in one transaction (group commit).

    On SQLite every write transaction holds the single writer lock through its COMMIT, whose WAL fsync
    (``synchronous=FULL``) takes 2-8 ms: one transaction per write caps the writes at one fsync each,
    whatever the CPU (ITI-42 at ~300/s, the repository's ledger at ~60 submissions/s on a busy disk).
    Here the first caller to find the group free takes the write lock, then runs every write queued by
    then in one transaction, one fsync, while the next batch queues. Each write runs in a SAVEPOINT: one
    that raises (an ITI-42 refused for a duplicate uniqueId, say) is rolled back alone and its exception
    raised to its caller; the others go on. :meth:`run` returns once the transaction holding its write
    has committed, so each write is exactly as durable as in a transaction of its own. If the transaction
    itself fails (COMMIT, or an error that ends SQLite's transaction), every write of the batch is run
    again in a transaction of its own, so each one fails or succeeds alone.

    PostgreSQL commits concurrently (and groups WAL flushes itself): there each write is its own
    transaction. ``work`` must be safe to run again after a rollback (it only touches the database).
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._grouped = engine.dialect.name == "sqlite"
        self._queue: list[_Job] = []
        self._queue_lock = threading.Lock()
        self._leader = threading.Lock()

    def run(self, work: Callable[[Connection], T]) -> T:
        """``work(conn)`` inside a committed write transaction; its result, or its exception raised."""
        if not self._grouped:
            with write_transaction(self.engine) as conn:
                return work(conn)
        job = _Job(work)
        with self._queue_lock:
            self._queue.append(job)
        with self._leader:
            if not job.done:  # no leader took it: lead the next batch
                self._lead()
        if job.error is not None:
            raise job.error
        return job.result

    def _take_queue(self) -> list[_Job]:
        with self._queue_lock:
            batch, self._queue = self._queue, []
        return batch

    def _lead(self) -> None:
        # The batch is taken once the write lock is ours, not before: writes that queue while this process
        # waits for another one's transaction (``--workers N``) join it instead of waiting for the next one.
        batch: list[_Job] = []
        try:
            with write_transaction(self.engine) as conn:
                batch = self._take_queue()
                outcomes = self._run_batch(conn, batch)
        except Exception as exc:
            if not batch:  # the transaction could not start: the queued writes fail alone, in the next leader
                batch = self._take_queue()
            if len(batch) > 1:
                for job in batch:
                    self._alone(job)
                return
            outcomes = [(None, exc)]
        except BaseException as exc:  # the leader is interrupted: no caller may wait for its batch
            batch = batch or self._take_queue()
            for job in batch:
                job.error, job.done = exc, True
            raise
        for job, (result, error) in zip(batch, outcomes):
            job.result, job.error, job.done = result, error, True

    @staticmethod
    def _run_batch(conn: Connection, batch: list[_Job]) -> list[tuple[Any, BaseException | None]]:
        if len(batch) == 1:  # no savepoint needed: the transaction is the write's own
            return [(batch[0].work(conn), None)]
        driver = conn.connection.driver_connection
        return [_in_savepoint(driver, conn, job.work) for job in batch]

    def _alone(self, job: _Job) -> None:
        """Run one write of a failed batch again, in a transaction of its own."""
        try:
            with write_transaction(self.engine) as conn:
                job.result = job.work(conn)
        except Exception as exc:
            job.error = exc
        finally:
            job.done = True


def _in_savepoint(driver: Any, conn: Connection, work: Callable[[Connection], Any]) -> tuple[Any, BaseException | None]:
    """``work(conn)`` in a SAVEPOINT (on the driver: SQLAlchemy's nested transaction costs ~0.1 ms); an
    exception it raises is returned after rolling back to the savepoint. If that rollback fails, the
    transaction is gone (SQLite ends it on I/O errors, full disk...): raised for the batch to be re-run."""
    driver.execute("SAVEPOINT xdsi_write")
    try:
        result = work(conn)
    except Exception as exc:
        driver.execute("ROLLBACK TO xdsi_write")
        driver.execute("RELEASE xdsi_write")
        return None, exc
    driver.execute("RELEASE xdsi_write")
    return result, None


_groups: weakref.WeakKeyDictionary[Engine, GroupCommit] = weakref.WeakKeyDictionary()


def grouped_write(engine: Engine, work: Callable[[Connection], T]) -> T:
    """``work(conn)`` in a committed write transaction, grouped with concurrent ones (:class:`GroupCommit`,
    one per engine). For writes that arrive concurrently and often (ITI-42, the repository's ledger);
    :func:`write_transaction` for the rest."""
    with _sqlite_writers_guard:
        group = _groups.get(engine)
        if group is None:
            group = _groups[engine] = GroupCommit(engine)
    return group.run(work)


class DriverStatement:
    """A Core statement compiled once per dialect and run on the connection's DBAPI cursor.

    For the few statements of a hot path (ITI-42's checks and inserts, inside SQLite's single-writer
    lock): ``Connection.execute`` spends ~50-250 us per statement on its execution context, parameter
    processing and result wrapping; the driver call itself takes ~5 us on SQLite. Parameters are passed
    as the driver takes them: the columns' types must need no bind processing (strings, integers,
    booleans). Driver errors are raised as SQLAlchemy's (``IntegrityError``...), as ``execute`` would.
    """

    def __init__(self, stmt: Executable, column_keys: Sequence[str] | None = None) -> None:
        self.stmt = stmt
        self.column_keys = list(column_keys) if column_keys is not None else None
        self._compiled: dict[tuple[str, str], tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def _for(self, dialect: Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """SQL text; for positional paramstyles, the parameter names in order; the values of the
        statement's literal parameters (``kind != 'AS'``)."""
        key = (dialect.name, dialect.driver)  # the paramstyle is the driver's
        got = self._compiled.get(key)
        if got is None:
            # for_executemany: no RETURNING of the primary key, which nobody reads here.
            compiled = self.stmt.compile(dialect=dialect, column_keys=self.column_keys, for_executemany=True)
            literals = {k: val for k, val in compiled.params.items() if not compiled.binds[k].required}
            got = self._compiled[key] = (
                compiled.string, tuple(compiled.positiontup or ()) if compiled.positional else None, literals)
        return got

    @staticmethod
    def _args(order: tuple[str, ...] | None, literals: dict[str, Any], params: Mapping[str, Any]) -> Any:
        if literals:
            params = {**literals, **params}
        return tuple(params[k] for k in order) if order is not None else params

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple]:
        """Run once; the result rows (empty for a statement without any)."""
        sql, order, literals = self._for(conn.dialect)
        args = self._args(order, literals, params)
        cur = conn.connection.cursor()
        try:
            cur.execute(sql, args)
            return cur.fetchall() if cur.description is not None else []
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(sql, args, exc, conn.dialect.loaded_dbapi.Error) from exc
        finally:
            cur.close()

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run once per parameter set, in one driver call (psycopg pipelines it into one round trip)."""
        sql, order, literals = self._for(conn.dialect)
        args = [self._args(order, literals, r) for r in rows]
        cur = conn.connection.cursor()
        try:
            cur.executemany(sql, args)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise DBAPIError.instance(sql, args, exc, conn.dialect.loaded_dbapi.Error) from exc
        finally:
            cur.close()


def upgrade(engine: Engine, script_location: Path, revision: str = "head") -> None:
    """Run the Alembic migrations in ``script_location`` up to ``revision`` (head) on ``engine``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(script_location))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
