"""The registry's database: engine plus its Alembic migrations (:mod:`registry.migrations`)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine

from xdsi.db import create, upgrade, write_transaction

__all__ = ["DEFAULT_URL", "make_engine", "write_transaction"]

DEFAULT_URL = "sqlite:///xdsi-registry.db"
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make_engine(url: str = DEFAULT_URL, *, migrate: bool = True) -> Engine:
    """Create an engine for ``url`` and bring the registry schema to the newest migration."""
    engine = create(url)
    if migrate:
        upgrade(engine, MIGRATIONS)
    return engine
