"""Engine creation and schema set-up for any SQLAlchemy URL (SQLite default, PostgreSQL in production)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///xdsi-registry.db"


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    cur = dbapi_conn.cursor()
    # WAL lets readers (stored queries) run while a registration commits; synchronous=FULL makes every
    # commit durable (fsync) - an accepted submission is never lost on power failure.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=FULL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.execute("PRAGMA cache_size=-65536")  # 64 MiB page cache per connection
    cur.execute("PRAGMA mmap_size=1073741824")
    cur.close()
    # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite would otherwise defer it to the first write).
    dbapi_conn.isolation_level = None


def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    # A registration takes the write lock up front (BEGIN IMMEDIATE): its duplicate checks and inserts then
    # see no concurrent registration in between. Readers use a plain BEGIN and run concurrently (WAL).
    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("xdsi_write") else "BEGIN")


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for a registry write, holding the write lock from its first statement."""
    with engine.connect().execution_options(xdsi_write=True) as conn, conn.begin():
        yield conn


def make_engine(url: str = DEFAULT_URL, *, migrate: bool = True) -> Engine:
    """Create an engine for ``url`` and bring the schema to the newest migration."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False}, pool_size=8, max_overflow=8)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _sqlite_begin)
    else:
        engine = create_engine(url, pool_size=8, max_overflow=8, pool_pre_ping=True)
    if migrate:
        upgrade(engine)
    return engine


def upgrade(engine: Engine) -> None:
    """Run the Alembic migrations up to head on ``engine``."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).resolve().parent.parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
