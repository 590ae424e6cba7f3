"""The SQLite settings every actor's engine applies (xdsi.db.create): durable, concurrent, checkpointed,
temporary files in memory."""

from __future__ import annotations

from xdsi.db import create


def test_sqlite_connections_are_durable_wal_with_rare_checkpoints(tmp_path) -> None:  # type: ignore[no-untyped-def]
    engine = create(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        with engine.connect() as conn:
            cur = conn.connection.driver_connection.cursor()

            def pragma(name: str) -> object:
                return cur.execute(f"PRAGMA {name}").fetchone()[0]

            # WAL (readers beside the writer), synchronous=FULL (2: every commit fsynced), foreign keys on,
            # a checkpoint every 10,000 WAL pages, and temporary files (savepoint sub-journals) in memory (2).
            assert (pragma("journal_mode"), pragma("synchronous"), pragma("foreign_keys")) == ("wal", 2, 1)
            assert (pragma("wal_autocheckpoint"), pragma("temp_store")) == (10000, 2)
    finally:
        engine.dispose()
