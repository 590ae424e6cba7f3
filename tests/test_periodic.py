"""Periodic server jobs (xdsi.periodic): the repository's recovery sweep and the imaging source's watcher."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import types
from pathlib import Path

import pytest

from imaging_source import app as ids_app
from repository import app as repo_app
from tests.serving import serve
from xdsi.periodic import periodic

log = logging.getLogger("test.periodic")


def _wait_for(condition, timeout: float = 10) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_runs_in_a_thread_survives_failures_and_stops(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[str] = []

    def job() -> None:
        runs.append(threading.current_thread().name)
        if len(runs) == 2:
            raise RuntimeError("PACS unreachable")

    async def main() -> int:
        async with periodic(job, interval=0.02, first_after=0.05, what="test job", logger=log):
            await asyncio.sleep(0.03)
            assert runs == []  # not before first_after
            deadline = time.monotonic() + 10
            while len(runs) < 4 and time.monotonic() < deadline:  # the failed second run does not end the job
                await asyncio.sleep(0.01)
        done = len(runs)
        await asyncio.sleep(0.1)
        assert len(runs) == done  # stopped with the block
        return done

    with caplog.at_level(logging.ERROR, logger="test.periodic"):
        assert asyncio.run(main()) >= 4
    assert threading.main_thread().name not in runs  # blocking jobs stay off the event loop
    [failure] = [r for r in caplog.records if r.name == "test.periodic"]
    assert failure.getMessage() == "test job failed" and "PACS unreachable" in str(failure.exc_info[1])


def test_repository_recovers_at_start_and_every_sweep_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[float] = []
    monkeypatch.setattr(repo_app, "recover", lambda repo, grace_seconds: calls.append(grace_seconds))
    config = repo_app.RepositoryConfig(registry_url="http://127.0.0.1:9/registry", repository_unique_id="1.2.3",
                                       store_url=str(tmp_path / "docs"), db_url=f"sqlite:///{tmp_path / 'l.db'}",
                                       grace_seconds=7, sweep_interval=0.05)
    with serve(repo_app.create_app(config)):
        assert calls == [7]  # at start-up, before serving
        _wait_for(lambda: len(calls) >= 3)

    calls.clear()
    config.sweep_interval = 0  # only at start-up
    with serve(repo_app.create_app(config)):
        time.sleep(0.1)
    assert calls == [7]


def test_imaging_source_watcher_polls_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    polls: list[int] = []

    class FakeWatcher:
        def __init__(self, publisher, stable_seconds):  # type: ignore[no-untyped-def]
            assert publisher == "publisher" and stable_seconds == 30

        def poll(self) -> list:
            polls.append(1)
            return [types.SimpleNamespace(pacs="PACS1", study_instance_uid="1.2", outcome="published", message="")]

    monkeypatch.setattr(ids_app, "Watcher", FakeWatcher)
    closed: list[bool] = []
    ids = types.SimpleNamespace(retrieve=lambda req: None, publisher="publisher", close=lambda: closed.append(True))
    with serve(ids_app.create_app(ids, watch=True, poll_interval=0.05, stable_seconds=30)):  # type: ignore[arg-type]
        _wait_for(lambda: len(polls) >= 3)
    assert closed == [True]

    polls.clear()
    with serve(ids_app.create_app(ids, watch=False, stable_seconds=30)):  # type: ignore[arg-type]
        time.sleep(0.1)
    assert polls == [] and closed == [True, True]
