"""The repository killed mid-submission: after a restart nothing is half-done and the submitter's retry works.

The repository runs as a real ``xdsi repository`` process (the registry in-process, over HTTP). For each
point of a submission (``XDSI_CRASH_AT``: content stored / ledger row pending / registry answered) and for a
SIGKILL at a random moment of a large streamed upload, the test sends an ITI-41, sees the connection drop,
restarts the repository (start-up recovery, grace 0) and checks:

* every document the registry knows (ITI-18 FindDocuments) is retrievable (ITI-43) byte-exact;
* every file in the store has a ledger row, no row is pending, the spool is empty;
* the same ITI-41 sent again answers Success and the registry then holds the document exactly once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from lxml import etree
from sqlalchemy import create_engine, select

from repository import ledger
from tests.conftest import REPOSITORY_UID, free_port, start_registry
from tests.test_repository import (
    ITI18,
    ITI41,
    ITI43,
    retrieve,
    retrieve_request,
    submission,
)
from xdsi import samples
from xdsi.ebxml.namespaces import RIM, q
from xdsi.ebxml.query import find_documents
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import call, call_mtom, call_streaming, request_envelope
from xdsi.soap.mtom import mtom_request
from xdsi.transform.ebrim_write import write_provide_and_register

#: The ``xdsi`` command of this virtualenv (``python -m xdsi.cli`` is the same program).
XDSI = [sys.executable, "-m", "xdsi.cli"]
MiB = 1 << 20


# --- the repository as a process ------------------------------------------------------------------------


@dataclass
class RepositoryProcess:
    """``xdsi repository`` on a fixed port, keeping its store and ledger under ``home``."""

    registry_url: str
    home: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/repository"

    @property
    def store(self) -> Path:
        return self.home / "documents"

    @property
    def db_url(self) -> str:
        return f"sqlite:///{self.home / 'ledger.db'}"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, *, crash_at: str | None = None, timeout: float = 20) -> None:
        """Start and wait until it answers /health, i.e. until start-up recovery has run (it runs in the
        ASGI lifespan, before uvicorn accepts connections)."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        env = {k: val for k, val in os.environ.items() if k != "XDSI_CRASH_AT"}
        if crash_at:
            env["XDSI_CRASH_AT"] = crash_at
        self.starts += 1
        log = open(self.home / f"repository-{self.starts}.log", "wb")  # noqa: SIM115 -- the child owns it
        self.home.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [*XDSI, "repository", "--registry", self.registry_url, "--repository-id", REPOSITORY_UID,
             "--store", str(self.store), "--db", self.db_url, "--port", str(self.port), "--grace", "0"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, cwd=self.home,
        )
        log.close()
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=1, trust_env=False) as client:
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"the repository exited with {self.proc.returncode}:\n{self.log()}")
                with contextlib.suppress(httpx.TransportError):
                    if client.get(f"http://127.0.0.1:{self.port}/health").status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the repository did not start within {timeout} s:\n{self.log()}")
                time.sleep(0.05)

    def wait_dead(self, timeout: float = 10) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        path = self.home / f"repository-{self.starts}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def repository_process(registry_url: str, home: Path) -> Iterator[RepositoryProcess]:
    """A :class:`RepositoryProcess` (not started) that is killed at the end whatever happens."""
    home.mkdir(parents=True, exist_ok=True)
    rp = RepositoryProcess(registry_url, home)
    try:
        yield rp
    finally:
        rp.kill()


# --- what the registry and the repository's files say -----------------------------------------------------


def registered_unique_ids(registry_url: str, pid: str) -> list[str]:
    """uniqueIds of the patient's DocumentEntries in the registry (ITI-18 FindDocuments), duplicates kept."""
    resp = call(registry_url, ITI18, find_documents(pid))
    assert resp.get("status") == v.RESPONSE_SUCCESS, etree.tostring(resp)
    return [ei.get("value") for eo in resp.iter(q(RIM, "ExtrinsicObject"))
            for ei in eo.iter(q(RIM, "ExternalIdentifier")) if ei.get("identificationScheme") == v.DE_UNIQUE_ID]


def ledger_state(rp: RepositoryProcess) -> list[ledger.Held]:
    engine = create_engine(rp.db_url)
    try:
        with engine.connect() as conn:
            return [ledger._held(r) for r in conn.execute(select(ledger.document))]
    finally:
        engine.dispose()


def object_files(rp: RepositoryProcess) -> list[Path]:
    return sorted(p for p in (rp.store / "objects").rglob("*") if p.is_file())


def spool_files(rp: RepositoryProcess) -> list[Path]:
    return sorted(p for p in (rp.store / "spool").rglob("*") if p.is_file())


def sha1_of_file(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while chunk := fh.read(MiB):
            h.update(chunk)
    return h.hexdigest()


def retrieve_sha1(url: str, unique_id: str, spool: Path) -> tuple[str, int]:
    """(SHA-1, size) of one document fetched with the streaming ITI-43 client (spooled, never in memory)."""
    body, parts = asyncio.run(call_streaming(url, ITI43, retrieve_request(unique_id), spool_dir=str(spool)))
    try:
        assert body.find("{*}RegistryResponse").get("status") == v.RESPONSE_SUCCESS, etree.tostring(body)
        [part] = parts.values()
        return part.sha1, part.size
    finally:
        for part in parts.values():
            part.delete()


def assert_consistent(rp: RepositoryProcess, registry_url: str, pid: str, sha1_by_uid: dict[str, str],
                      spool: Path) -> list[str]:
    """The crash invariants; returns the uniqueIds the registry knows."""
    known = registered_unique_ids(registry_url, pid)
    for uid in known:  # registered => retrievable, byte-exact
        assert retrieve_sha1(rp.url, uid, spool)[0] == sha1_by_uid[uid], f"{uid} is registered but not served intact"
    rows = ledger_state(rp)
    assert [r for r in rows if r.state != ledger.REGISTERED] == [], "pending rows survived start-up recovery"
    assert {r.unique_id for r in rows} == set(known), "ledger and registry disagree"
    keys = {r.content_key for r in rows}
    orphans = [p for p in object_files(rp) if p.name not in keys]
    assert orphans == [], f"content without a ledger row: {orphans}"
    for r in rows:
        assert sha1_of_file(rp.store / "objects" / r.content_key[:2] / r.content_key[2:4] / r.content_key) \
            == r.content_key
    assert spool_files(rp) == [], "spool leftovers after start-up recovery"
    return known


# --- the tests --------------------------------------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path):  # type: ignore[no-untyped-def]
    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}") as reg:
        yield reg


@pytest.mark.parametrize("crash_at", ["after_store", "after_pending", "after_register"])
def test_crash_then_restart_then_retry(registry, tmp_path: Path, crash_at: str) -> None:  # type: ignore[no-untyped-def]
    pid = samples.patient_id("CRASH" + crash_at.upper().replace("_", ""))
    registry.feed(pid)
    content = b"\r\n" + os.urandom(200_000) + b"\r\n"
    sub = submission(pid, content)
    uid = sub.documents[0].unique_id
    request = write_provide_and_register(sub, {sub.documents[0].id: "doc1@crash"})
    parts = [("doc1@crash", "application/octet-stream", content)]

    with repository_process(registry.url, tmp_path / "repository") as rp, httpx.Client(timeout=30) as client:
        rp.start(crash_at=crash_at)
        with pytest.raises(httpx.TransportError):  # the process died mid-request: no answer at all
            call_mtom(rp.url, ITI41, request, parts, client=client)
        assert rp.wait_dead() == 137
        # What the crash left: the registry learnt of the document only in the last case.
        assert registered_unique_ids(registry.url, pid) == ([uid] if crash_at == "after_register" else [])
        # The pending row is written before the content, so only "after_pending" finds no content yet.
        assert len(object_files(rp)) == (0 if crash_at == "after_pending" else 1)

        rp.start()  # start-up recovery settles the leftovers (grace 0)
        known = assert_consistent(rp, registry.url, pid, {uid: hashlib.sha1(content).hexdigest()}, tmp_path)
        # Recovery finishes a submission whose content was stored (it re-sends the kept ITI-42 request);
        # without content ("after_pending") it forgets it.
        assert known == ([] if crash_at == "after_pending" else [uid])

        # The submitter never got an answer, so it sends the same ITI-41 again.
        with httpx.Client(timeout=30) as retry_client:
            resp = call_mtom(rp.url, ITI41, request, parts, client=retry_client)
        assert resp.get("status") == v.RESPONSE_SUCCESS, etree.tostring(resp)
        assert registered_unique_ids(registry.url, pid) == [uid]  # exactly once
        status, docs, errors = retrieve(rp, uid)
        assert (status, errors) == (v.RESPONSE_SUCCESS, []) and docs == {uid: content}
        assert [(r.unique_id, r.state) for r in ledger_state(rp)] == [(uid, ledger.REGISTERED)]
        assert len(object_files(rp)) == 1 and spool_files(rp) == []


def write_random_file(path: Path, size: int, seed: int) -> str:
    """``size`` pseudo-random bytes written in 1 MiB chunks (never all in memory); returns their SHA-1."""
    rng = random.Random(seed)
    h = hashlib.sha1()
    with open(path, "wb") as fh:
        left = size
        while left:
            chunk = rng.randbytes(min(MiB, left))
            h.update(chunk)
            fh.write(chunk)
            left -= len(chunk)
    return h.hexdigest()


def test_sigkill_during_large_upload(registry, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGKILL once a random number of bytes of a 32 MB MTOM upload has gone out. The sender pauses at that
    byte until the kill (so the moment is the one drawn, whatever the machine's speed), then sees the
    connection fail; the server leaves a partial spool file, which start-up recovery removes."""
    size = 32 * MiB
    seed = random.randrange(1 << 30)
    kill_at = random.Random(seed).randrange(MiB, size - MiB)  # request bytes sent when the server is killed
    pid = samples.patient_id("CRASHUPLOAD")
    registry.feed(pid)
    big = tmp_path / "big.bin"
    sha1 = write_random_file(big, size, seed)
    sub = submission(pid, b"")
    uid = sub.documents[0].unique_id
    request = write_provide_and_register(sub, {sub.documents[0].id: "big@crash"})
    parts = [("big@crash", "application/octet-stream", big)]

    with repository_process(registry.url, tmp_path / "repository") as rp:
        rp.start()
        reached, killed = threading.Event(), threading.Event()
        envelope = etree.tostring(request_envelope(request, ITI41, rp.url), xml_declaration=True, encoding="UTF-8")
        content_type, package = mtom_request(envelope, parts, action=ITI41)

        def paused_at_kill_point() -> Iterator[bytes]:
            sent = 0
            for piece in package:
                start, sent = sent, sent + len(piece)
                if start <= kill_at < sent:
                    yield piece[: kill_at - start]
                    reached.set()
                    killed.wait(30)
                    piece = piece[kill_at - start :]
                yield piece

        outcome: list[BaseException | httpx.Response] = []

        def upload() -> None:
            try:
                with httpx.Client(timeout=60, trust_env=False) as client:
                    outcome.append(client.post(rp.url, content=paused_at_kill_point(),
                                               headers={"Content-Type": content_type}))
            except BaseException as exc:  # noqa: BLE001 -- examined by the test thread
                outcome.append(exc)

        sender = threading.Thread(target=upload, daemon=True)
        sender.start()
        assert reached.wait(30), f"the upload never reached byte {kill_at} (seed {seed}): {outcome}"
        # The server has spooled (nearly) all that was sent: the envelope and MIME headers are < 64 KiB.
        deadline = time.monotonic() + 15
        while largest_spool_file(rp) < kill_at - 64 * 1024:
            assert time.monotonic() < deadline, f"the server never spooled {kill_at} bytes (seed {seed})"
            time.sleep(0.005)
        rp.kill()
        killed.set()
        sender.join(30)
        assert len(outcome) == 1 and isinstance(outcome[0], httpx.TransportError), (seed, kill_at, outcome)
        assert 0 < largest_spool_file(rp) < size, "a kill during the upload leaves a partial spool file"
        assert object_files(rp) == [] and ledger_state(rp) == []

        rp.start()
        assert assert_consistent(rp, registry.url, pid, {uid: sha1}, tmp_path) == []

        with httpx.Client(timeout=60) as client:  # the submitter's retry
            resp = call_mtom(rp.url, ITI41, request, parts, client=client)
        assert resp.get("status") == v.RESPONSE_SUCCESS, etree.tostring(resp)
        assert registered_unique_ids(registry.url, pid) == [uid]
        assert retrieve_sha1(rp.url, uid, tmp_path) == (sha1, size)
        assert [r.unique_id for r in ledger_state(rp)] == [uid] and spool_files(rp) == []


def largest_spool_file(rp: RepositoryProcess) -> int:
    sizes = [0]
    for p in spool_files(rp):
        with contextlib.suppress(FileNotFoundError):  # a spool file may vanish between listing and stat
            sizes.append(p.stat().st_size)
    return max(sizes)

