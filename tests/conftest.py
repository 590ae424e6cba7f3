"""Shared fixtures: the ../shared conformance data, throwaway PostgreSQL databases, running actors.

Tests that need ../shared, PostgreSQL or Orthanc skip with a reason where these are absent, but fail when
CI=true: CI must run every one of them.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "conformance-data"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"


def need(condition: bool, reason: str) -> None:
    """Skip unless ``condition``; under CI=true a missing prerequisite is a failure, not a skip."""
    if condition:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    need(SHARED.is_dir(), f"conformance data not found at {SHARED}")
    return SHARED


def _pg_reachable() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, connect_timeout=2):
            return True
    except Exception:
        return False


@contextlib.contextmanager
def throwaway_pg_database() -> Iterator[str]:
    """Create a fresh PostgreSQL database, yield its SQLAlchemy URL, drop it afterwards."""
    import psycopg

    need(_pg_reachable(), "PostgreSQL is not reachable at 127.0.0.1:5432 (user postgres, database test)")
    name = "xdsi_test_" + uuid.uuid4().hex[:12]
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as c:
            c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test."""
    with throwaway_pg_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    return request.getfixturevalue("pg_url")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RunningRegistry:
    """A registry served over real HTTP (uvicorn) with its ITI-8 MLLP listener, for end-to-end tests."""

    def __init__(self, base_url: str, mllp_port: int, app) -> None:  # type: ignore[no-untyped-def]
        self.base_url = base_url
        self.url = base_url + "/registry"
        self.mllp = ("127.0.0.1", mllp_port)
        self.app = app
        self.engine = app.state.registry.engine

    def feed(self, *patient_ids: str) -> None:
        """Announce patients over ITI-8 (A04)."""
        from registry.mllp import send_mllp
        from registry.patient_feed import build_adt

        for pid in patient_ids:
            ack = send_mllp(*self.mllp, build_adt("A04", pid))
            assert b"MSA|AA" in ack, ack


def start_registry(db_url: str, **config):  # type: ignore[no-untyped-def]
    """Context manager yielding a :class:`RunningRegistry` on ``db_url``."""
    import contextlib

    from registry.app import RegistryConfig, create_app
    from tests.serving import serve

    @contextlib.contextmanager
    def run():  # type: ignore[no-untyped-def]
        mllp_port = free_port()
        app = create_app(RegistryConfig(db_url=db_url, mllp_port=mllp_port, **config))
        with serve(app) as base:
            yield RunningRegistry(base, mllp_port, app)

    return run()


@pytest.fixture
def registry_server(db_url: str) -> Iterator[RunningRegistry]:
    """A running registry on SQLite and on PostgreSQL (parametrized through ``db_url``)."""
    with start_registry(db_url) as reg:
        yield reg


REPOSITORY_UID = "1.19.6.24.109.42.1"  # the repositoryUniqueId the shared conformance data expects


class RunningRepository:
    """A repository served over real HTTP, registering with a running registry."""

    def __init__(self, base_url: str, app) -> None:  # type: ignore[no-untyped-def]
        self.base_url = base_url
        self.url = base_url + "/repository"
        self.app = app
        self.repo = app.state.repository


def start_repository(registry_url: str, home: Path, **config):  # type: ignore[no-untyped-def]
    """Context manager yielding a :class:`RunningRepository` keeping its files under ``home``."""

    from repository.app import RepositoryConfig, create_app
    from tests.serving import serve

    @contextlib.contextmanager
    def run():  # type: ignore[no-untyped-def]
        config.setdefault("repository_unique_id", REPOSITORY_UID)
        config.setdefault("store_url", str(home / "documents"))
        config.setdefault("db_url", f"sqlite:///{home / 'ledger.db'}")
        app = create_app(RepositoryConfig(registry_url=registry_url, **config))
        with serve(app) as base:
            yield RunningRepository(base, app)

    return run()


@pytest.fixture
def affinity_domain(tmp_path: Path) -> Iterator[tuple[RunningRegistry, RunningRepository]]:
    """A registry (SQLite) and a repository registering with it."""
    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}") as reg, \
            start_repository(reg.url, tmp_path / "repository") as repo:
        yield reg, repo
