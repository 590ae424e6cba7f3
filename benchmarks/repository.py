"""Document Repository benchmarks: large ITI-41 / ITI-43 transfers against plain HTTP, memory, small-submission load.

Everything runs on loopback with real processes: ``xdsi registry`` (SQLite, ITI-8 listener to feed patients)
and ``xdsi repository`` (filesystem store, SQLite ledger) as subprocesses, the client in this process.

1. **ITI-41** of a large document (random bytes streamed to a file) with :func:`xdsi.soap.client.call_mtom`,
   against the baseline *upload of the same file to a plain HTTP server*: :mod:`http.server` in another process
   whose POST handler copies the body to a file (``fsync`` before answering, the repository's durability
   contract; the same without ``fsync`` is reported too). Same client library (httpx, 1 MiB chunks).
2. **ITI-43** of that document with :func:`xdsi.soap.client.call_streaming` (MTOM parts spooled to disk, SHA-1
   on the way) against the baseline *download of the same file from* ``python -m http.server`` (httpx streaming
   to a file).
3. **Peak memory** of the repository process during each transfer: ``VmHWM`` from ``/proc/<pid>/status``, reset
   by writing ``5`` to ``/proc/<pid>/clear_refs`` before the step; growth = VmHWM after - VmRSS before.
4. **Small submissions**: N client threads posting ITI-41 packages of a few KB (MTOM; new uniqueIds, entry ids
   and content for every request), as fast as they can (capacity) and paced at a target rate (latency measured
   from the *intended* send time, so a server that falls behind shows it). Every response must be Success and
   every document ``registered`` in the ledger.

``python -m benchmarks.repository [--quick]`` prints a Markdown report; ``--json`` keeps the raw figures.
Repetitions of a transfer alternate baseline and xdsi, and every file written is synced (untimed) before the
next step, so neither side pays for the other's write-back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import http.server
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
from lxml import etree

from benchmarks import common
from benchmarks.common import cpu_seconds, log, stop_process
from xdsi import malloc, samples
from xdsi.ebxml.namespaces import RS, XDSB, q
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import call_mtom, call_streaming, request_envelope
from xdsi.soap.mtom import mtom_request
from xdsi.transform.ebrim_write import write_provide_and_register

MiB = 1 << 20
ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
REPOSITORY_ID = samples.DEMO_REPOSITORY_UID
_UID_ROOT = "1.2.826.0.1.3680043.10.9999.41"  # benchmark document / submission set uniqueIds
_SUCCESS = f'status="{v.RESPONSE_SUCCESS}"'.encode()
_TEXT_FORMAT = samples.Code("urn:ihe:rad:TEXT", "1.3.6.1.4.1.19376.1.2.3")
TARGETS = {"transfer_ratio": 0.5, "memory_growth_mib": 64.0, "submissions_per_s": 100.0}


# --- files ----------------------------------------------------------------------------------------------------


def write_random_file(path: Path, size: int, chunk: int = 4 * MiB) -> None:
    """``size`` random bytes streamed to ``path`` (never more than ``chunk`` in memory)."""
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(chunk, left)
            out.write(os.urandom(n))
            left -= n


def make_unique(path: Path) -> str:
    """Overwrite the first 16 bytes of ``path`` with random ones, so each repetition submits new content (the
    store deduplicates identical bytes, which would skip its fsync and rename); returns the new SHA-1."""
    with open(path, "r+b") as f:
        f.write(os.urandom(16))
    return file_sha1(path)


def file_sha1(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while piece := f.read(4 * MiB):
            h.update(piece)
    return h.hexdigest()


def sync_quietly() -> None:
    """Flush every dirty page (untimed, between steps) so no step pays for the previous one's write-back."""
    os.sync()


# --- memory and CPU --------------------------------------------------------------------------------------------


def _status_kib(pid: int | str, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


@dataclass
class Meter:
    """Peak resident memory and CPU time of one process over a step (Linux): ``with Meter(pid) as m: ...``.
    ``growth_mib`` = VmHWM at the end - VmRSS at the start (VmHWM reset at the start)."""

    pid: int | str
    rss_before_kib: int = 0
    hwm_after_kib: int = 0
    cpu_s: float = 0.0
    reset_ok: bool = False

    def __enter__(self) -> Meter:
        try:  # "5" resets the peak RSS (VmHWM) to the current RSS (proc(5), clear_refs)
            Path(f"/proc/{self.pid}/clear_refs").write_text("5")
            self.reset_ok = True
        except OSError:
            self.reset_ok = False
        self.rss_before_kib = _status_kib(self.pid, "VmRSS")
        self.cpu_s = -cpu_seconds(self.pid)
        return self

    def __exit__(self, *exc: object) -> None:
        self.cpu_s += cpu_seconds(self.pid)
        self.hwm_after_kib = _status_kib(self.pid, "VmHWM")

    @property
    def growth_mib(self) -> float:
        return (self.hwm_after_kib - self.rss_before_kib) / 1024

    def as_dict(self) -> dict:
        return {"rss_before_mib": round(self.rss_before_kib / 1024, 1), "hwm_after_mib": round(self.hwm_after_kib / 1024, 1),
                "growth_mib": round(self.growth_mib, 1), "cpu_s": round(self.cpu_s, 3), "reset_ok": self.reset_ok}


# --- servers --------------------------------------------------------------------------------------------------


@dataclass
class Process:
    """A server subprocess we started (stopped with SIGTERM to its own pid only)."""

    proc: subprocess.Popen
    port: int
    name: str
    log_path: str
    health: str = "/"

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> None:
        """Return once ``health`` answers 200; RuntimeError (with the log's tail) if it exits or times out."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}: "
                                   f"{Path(self.log_path).read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}{self.health}", timeout=1, trust_env=False).status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start in {timeout} s: {Path(self.log_path).read_text()[-3000:]}")
            time.sleep(0.1)


@contextlib.contextmanager
def _server(name: str, cmd: list[str], port: int, health: str, *, cpus: str | None,
            env: dict[str, str] | None = None, wait: bool = True) -> Iterator[Process]:
    """Start ``cmd`` (pinned with ``taskset -c cpus`` when given, ``env`` added to the environment); with
    ``wait``, return once ``health`` answers 200 (else call :meth:`Process.wait_ready`, to start several at once)."""
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]  # taskset execs the command: proc.pid is the server itself
    logf = tempfile.NamedTemporaryFile(prefix=f"xdsi-bench-{name}-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=common.REPO, stdout=logf, stderr=subprocess.STDOUT,
                            env={**os.environ, **env} if env else None)
    server = Process(proc, port, name, logf.name, health)
    try:
        if wait:
            server.wait_ready()
        yield server
    finally:
        stop_process(proc, logf)


def repository_server(registry_url: str, home: Path, *, cpus: str | None = None,  # type: ignore[no-untyped-def]
                      env: dict[str, str] | None = None):
    """``xdsi repository`` on a free port, store and ledger under ``home``."""
    port = common.free_port()
    cmd = [sys.executable, "-m", "xdsi.cli", "repository", "--port", str(port), "--registry", registry_url,
           "--repository-id", REPOSITORY_ID, "--store", str(home / "store"),
           "--db", f"sqlite:///{home / 'ledger.db'}"]
    return _server("repository", cmd, port, "/health", cpus=cpus, env=env)


def upload_server(directory: Path, *, fsync: bool, asgi: bool = False, cpus: str | None = None,  # type: ignore[no-untyped-def]
                  env: dict[str, str] | None = None, wait: bool = True):
    """An upload baseline in another process: :func:`serve_upload` (``http.server``), or with ``asgi`` a bare
    Starlette app under uvicorn (:func:`serve_asgi_upload`, the server stack ``xdsi repository`` runs on)."""
    port = common.free_port()
    cmd = [sys.executable, "-m", "benchmarks.repository", "--asgi-upload-server" if asgi else "--upload-server",
           str(port), str(directory)]
    if fsync:
        cmd.append("--fsync")
    return _server("asgi-upload" if asgi else "upload", cmd, port, "/", cpus=cpus, env=env, wait=wait)


def static_server(directory: Path, *, cpus: str | None = None, wait: bool = True):  # type: ignore[no-untyped-def]
    """The download baseline: ``python -m http.server`` serving ``directory``."""
    port = common.free_port()
    cmd = [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(directory)]
    return _server("static", cmd, port, "/", cpus=cpus, wait=wait)


def serve_upload(port: int, directory: Path, fsync: bool) -> None:
    """A plain HTTP server whose POST handler writes the body (Content-Length or chunked) to a file in
    ``directory`` in 1 MiB pieces, optionally fsyncs it, answers 200 and deletes the file."""

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:  # quiet
            pass

        def do_GET(self) -> None:  # health check
            self._answer(b"ok")

        def do_POST(self) -> None:
            fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
            size = 0
            with os.fdopen(fd, "wb") as out:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    while True:
                        n = int(self.rfile.readline().split(b";")[0], 16)
                        if n == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):  # trailers
                                pass
                            break
                        size += self._copy(n, out)
                        self.rfile.readline()  # CRLF after the chunk
                else:
                    size = self._copy(int(self.headers.get("Content-Length", "0")), out)
                out.flush()
                if fsync:
                    os.fsync(out.fileno())
            self._answer(str(size).encode())
            os.unlink(name)

        def _copy(self, n: int, out) -> int:  # type: ignore[no-untyped-def]
            left = n
            while left:
                piece = self.rfile.read(min(left, MiB))
                if not piece:
                    raise ConnectionError("body ended early")
                out.write(piece)
                left -= len(piece)
            return n

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    directory.mkdir(parents=True, exist_ok=True)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def serve_asgi_upload(port: int, directory: Path, fsync: bool) -> None:
    """A bare Starlette endpoint under uvicorn (same options as ``xdsi repository``): ``request.stream()``
    written to a file, optionally fsynced, 200, file deleted. What the framework alone costs."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    malloc.tune()  # as the xdsi servers do (XDSI_MALLOC_TUNING=off: not)

    async def receive(request):  # type: ignore[no-untyped-def]
        fd, name = tempfile.mkstemp(dir=directory, prefix="upload-")
        size = 0
        with os.fdopen(fd, "wb") as out:
            async for chunk in request.stream():
                out.write(chunk)
                size += len(chunk)
            out.flush()
            if fsync:
                os.fsync(out.fileno())
        os.unlink(name)
        return PlainTextResponse(str(size))

    async def health(_request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    directory.mkdir(parents=True, exist_ok=True)
    app = Starlette(routes=[Route("/", receive, methods=["POST"]), Route("/", health, methods=["GET"])])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


@dataclass
class Domain:
    """A registry and a repository registering with it, and patients fed to the registry."""

    registry: common.Server
    repository: Process
    patients: list[str]
    home: Path

    @property
    def url(self) -> str:
        return self.repository.base + "/repository"


@contextlib.contextmanager
def affinity_domain(home: Path, *, cpus: str | None = None, patients: int = 20,
                    env: dict[str, str] | None = None) -> Iterator[Domain]:
    """``xdsi registry`` (fresh SQLite, ITI-8 on a free port) + ``xdsi repository``, ``patients`` fed; ``env``
    is added to both servers' environment."""
    from registry.mllp import send_mllp
    from registry.patient_feed import build_adt

    home.mkdir(parents=True, exist_ok=True)
    db = f"sqlite:///{home / 'registry.db'}"
    common.remove_sqlite(db)
    mllp = common.free_port()
    with common.registry_server(db, cpus=cpus, extra=["--mllp-port", str(mllp)], env=env) as reg:
        pids = [samples.patient_id(f"BENCH{i:04d}") for i in range(patients)]
        for pid in pids:
            ack = send_mllp("127.0.0.1", mllp, build_adt("A04", pid))
            if b"MSA|AA" not in ack:
                raise RuntimeError(f"ITI-8 feed of {pid} refused: {ack!r}")
        with repository_server(reg.url, home / "repository", cpus=cpus, env=env) as repo:
            yield Domain(reg, repo, pids, home)


# --- one transfer ---------------------------------------------------------------------------------------------


def document_submission(pid: str, unique_id: str | None = None):  # type: ignore[no-untyped-def]
    """One-document ITI-41 metadata (text/plain, not a KOS: the manifest check is not what is measured here);
    hash, size and repositoryUniqueId are left for the repository to fill in."""
    sub = samples.imaging_study_submission(pid)
    de = sub.documents[0]
    de.mime_type, de.format_code = "text/plain", _TEXT_FORMAT
    de.hash = de.size = de.repository_unique_id = ""
    if unique_id:
        de.unique_id = unique_id
    return sub


def provide(url: str, path: Path, pid: str, *, timeout: float = 600) -> tuple[str, float]:
    """ITI-41 of the file at ``path`` (MTOM, streamed from disk); returns (document uniqueId, seconds)."""
    sub = document_submission(pid)
    body = write_provide_and_register(sub, {sub.documents[0].id: "document@xdsi.bench"})
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        t = time.perf_counter()
        resp = call_mtom(url, ITI41, body, [("document@xdsi.bench", "text/plain", path)], client=client)
        secs = time.perf_counter() - t
    if resp.get("status") != v.RESPONSE_SUCCESS:
        raise AssertionError(f"ITI-41 failed: {etree.tostring(resp)[:2000]!r}")
    return sub.documents[0].unique_id, secs


def retrieve_request(unique_id: str) -> etree._Element:
    root = etree.Element(q(XDSB, "RetrieveDocumentSetRequest"), nsmap={"xdsb": XDSB})
    dr = etree.SubElement(root, q(XDSB, "DocumentRequest"))
    etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = REPOSITORY_ID
    etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = unique_id
    return root


def retrieve(url: str, unique_id: str, spool_dir: Path, *, expect_sha1: str | None = None) -> float:
    """ITI-43 with the streaming client (the document lands in ``spool_dir``, then is deleted); seconds."""
    t = time.perf_counter()
    body, attachments = asyncio.run(call_streaming(url, ITI43, retrieve_request(unique_id), spool_dir=str(spool_dir)))
    secs = time.perf_counter() - t
    try:
        status = body.find(q(RS, "RegistryResponse")).get("status")
        if status != v.RESPONSE_SUCCESS or len(attachments) != 1:
            raise AssertionError(f"ITI-43 failed: {etree.tostring(body)[:2000]!r}")
        [att] = attachments.values()
        if expect_sha1 and att.sha1 != expect_sha1:
            raise AssertionError(f"ITI-43 returned SHA-1 {att.sha1}, expected {expect_sha1}")
    finally:
        for att in attachments.values():
            att.delete()
    return secs


def upload(url: str, path: Path, *, timeout: float = 600) -> float:
    """Baseline: POST the file's bytes (1 MiB pieces from disk, chunked, like ``call_mtom``); seconds."""

    def pieces() -> Iterator[bytes]:
        with open(path, "rb") as f:
            while piece := f.read(MiB):
                yield piece

    with httpx.Client(timeout=timeout, trust_env=False) as client:
        t = time.perf_counter()
        r = client.post(url, content=pieces(), headers={"Content-Type": "application/octet-stream"})
        secs = time.perf_counter() - t
    if r.status_code != 200 or int(r.text) != path.stat().st_size:
        raise AssertionError(f"upload baseline: {r.status_code} {r.text[:200]}")
    return secs


def download(url: str, dest: Path, *, timeout: float = 600) -> float:
    """Baseline: GET the file and stream it to ``dest`` (httpx AsyncClient, as ``call_streaming``); seconds."""

    async def get() -> int:
        n = 0
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            async with client.stream("GET", url) as resp:
                resp.raise_for_status()
                with open(dest, "wb") as out:
                    async for piece in resp.aiter_bytes():
                        out.write(piece)
                        n += len(piece)
        return n

    t = time.perf_counter()
    n = asyncio.run(get())
    secs = time.perf_counter() - t
    dest.unlink()
    return secs if n else float("nan")


# --- large documents ------------------------------------------------------------------------------------------


def _summary(size: int, steps: list[dict]) -> dict:
    """Median wall time, MiB/s and CPU of the repetitions of one operation."""
    med = statistics.median(x["seconds"] for x in steps)
    return {"median_s": med, "mib_per_s": size / MiB / med,
            "server_cpu_s": statistics.median(x["server"]["cpu_s"] for x in steps),
            "client_cpu_s": statistics.median(x["client"]["cpu_s"] for x in steps),
            "server_growth_mib": max(x["server"]["growth_mib"] for x in steps),
            "client_growth_mib": max(x["client"]["growth_mib"] for x in steps), "steps": steps}


#: The operations of :func:`run_large`, in the order they alternate, and their baselines.
LARGE_OPS = ("upload_fsync", "upload_plain", "upload_asgi", "iti41", "download", "iti43")
BASELINE_OF = {"iti41": "upload_fsync", "iti43": "download"}


def run_large(domain: Domain, size: int, *, reps: int = 3, server_cpus: str | None = None,
              env: dict[str, str] | None = None) -> dict:
    """ITI-41 and ITI-43 of a ``size``-byte document and their baselines, ``reps`` times each, alternating;
    wall time, CPU time of server and client, peak memory growth of server and client for every step."""
    work = domain.home / "transfer"
    shutil.rmtree(work, ignore_errors=True)
    (work / "static").mkdir(parents=True)
    (work / "client").mkdir()
    doc = work / "static" / "document.bin"
    log(f"  writing a {size / MiB:.0f} MiB random document")
    write_random_file(doc, size)
    sync_quietly()
    steps: dict[str, list[dict]] = {op: [] for op in LARGE_OPS}
    pid = domain.patients[0]
    with upload_server(work / "upload-fsync", fsync=True, cpus=server_cpus, wait=False) as upf, \
            upload_server(work / "upload-plain", fsync=False, cpus=server_cpus, wait=False) as upp, \
            upload_server(work / "upload-asgi", fsync=True, asgi=True, cpus=server_cpus, env=env, wait=False) as upa, \
            static_server(work / "static", cpus=server_cpus, wait=False) as static:
        for server in (upf, upp, upa, static):  # started together, so their start-up times overlap
            server.wait_ready()

        def measure(op: str, server: Process, fn) -> None:  # type: ignore[no-untyped-def]
            with Meter(server.pid) as ms, Meter("self") as mc:
                secs = fn()
            steps[op].append({"seconds": secs, "server": ms.as_dict(), "client": mc.as_dict()})
            sync_quietly()

        for rep in range(reps):
            measure("upload_fsync", upf, lambda: upload(upf.base + "/", doc))
            measure("upload_plain", upp, lambda: upload(upp.base + "/", doc))
            measure("upload_asgi", upa, lambda: upload(upa.base + "/", doc))
            sha1 = make_unique(doc)
            sync_quietly()
            submitted: list[str] = []  # the uniqueId ITI-41 assigned, for the ITI-43 that follows

            def iti41(out: list[str] = submitted) -> float:
                u, secs = provide(domain.url, doc, pid)
                out.append(u)
                return secs

            def iti43(uid: list[str] = submitted, sha1: str = sha1) -> float:
                return retrieve(domain.url, uid[0], work / "client", expect_sha1=sha1)

            measure("iti41", domain.repository, iti41)
            measure("download", static, lambda: download(f"{static.base}/document.bin", work / "client" / "dl.bin"))
            measure("iti43", domain.repository, iti43)
            log(f"  {size / MiB:.0f} MiB rep {rep + 1}: " + ", ".join(
                f"{op} {steps[op][-1]['seconds']:.2f} s" for op in LARGE_OPS)
                + f"; repository +{steps['iti41'][-1]['server']['growth_mib']:.1f} / "
                  f"+{steps['iti43'][-1]['server']['growth_mib']:.1f} MiB")
    shutil.rmtree(work, ignore_errors=True)
    res: dict = {"bytes": size, "reps": reps}
    for op in LARGE_OPS:
        res[op] = _summary(size, steps[op])
    for op, base in BASELINE_OF.items():
        res[op]["ratio"] = res[op]["mib_per_s"] / res[base]["mib_per_s"]
    res["iti41"]["ratio_plain"] = res["iti41"]["mib_per_s"] / res["upload_plain"]["mib_per_s"]
    res["iti41"]["ratio_asgi"] = res["iti41"]["mib_per_s"] / res["upload_asgi"]["mib_per_s"]
    return res


# --- small submissions under load -----------------------------------------------------------------------------

_TOKEN = re.compile(r"zz(n|u|pid)zz")
_ID_ATTR = re.compile(r' id="urn:uuid:[0-9a-f-]{36}"')  # entry ids only (not schemes / object types)


@dataclass
class SmallTemplate:
    """A complete small ITI-41 MTOM package as literal pieces around per-request tokens: ``n`` (12 hex digits,
    unique per request: entry UUIDs, MessageID and the document content), ``u`` (``<worker>.<count>``, in the
    uniqueIds) and ``pid`` (the patient, XML-escaped)."""

    content_type: str
    pieces: list[str]
    tokens: list[str]
    patients: list[str]
    run: int

    def render(self, worker: int, count: int) -> bytes:
        values = {"n": "%04x%08x" % (worker & 0xFFFF, count), "u": f"{worker}.{count}",
                  "pid": self.patients[(worker * 7919 + count) % len(self.patients)]}
        out = [self.pieces[0]]
        for tok, lit in zip(self.tokens, self.pieces[1:]):
            out.append(values[tok])
            out.append(lit)
        return "".join(out).encode()

    def unique_id_pattern(self) -> str:
        """SQL LIKE pattern of this run's document uniqueIds."""
        return f"{_UID_ROOT}.2.{self.run}.%"


def small_template(url: str, patients: list[str], *, content_bytes: int = 4096) -> SmallTemplate:
    """The small ITI-41 package of :class:`SmallTemplate` (text/plain document of ``content_bytes``)."""
    run = int.from_bytes(os.urandom(4), "big")
    sub = document_submission(patients[0], unique_id=f"{_UID_ROOT}.2.{run}.zzuzz")
    sub.submission_set.unique_id = f"{_UID_ROOT}.3.{run}.zzuzz"
    sub.documents[0].reference_ids = [f"{_UID_ROOT}.1.{run}.zzuzz^^^^urn:ihe:iti:xds:2016:studyInstanceUID"]
    body = write_provide_and_register(sub, {sub.documents[0].id: "doc@xdsi.bench"})
    env = etree.tostring(request_envelope(body, ITI41, url, message_id="urn:uuid:00000000-0000-4000-8000-zznzz"),
                         xml_declaration=True, encoding="UTF-8").decode()
    env = env.replace(escape(patients[0]), "zzpidzz")
    counter = iter(range(0x100, 0x1000))
    env = _ID_ATTR.sub(lambda _m: ' id="urn:uuid:%08x-%04x-4%03x-8000-zznzz"' % (run, 0xB41, next(counter)), env)
    # The document: hex text ending with the per-request token, so every request stores new content.
    content = (os.urandom(content_bytes // 2).hex()[: content_bytes - 12] + "zznzz").encode()
    content_type, stream = mtom_request(env.encode(), [("doc@xdsi.bench", "text/plain", content)], action=ITI41)
    package = b"".join(stream).decode()
    parts = _TOKEN.split(package)
    return SmallTemplate(content_type, parts[0::2], parts[1::2], [escape(p) for p in patients], run)


def count_registered(ledger_url: str, pattern: str) -> int:
    """Ledger rows ``registered`` whose uniqueId matches ``pattern`` (read-only, while the server runs)."""
    from sqlalchemy import create_engine, func, select

    from repository import ledger

    engine = create_engine(ledger_url)
    try:
        with engine.connect() as conn:
            d = ledger.document
            return conn.execute(select(func.count()).where(d.c.unique_id.like(pattern),
                                                           d.c.state == ledger.REGISTERED)).scalar_one()
    finally:
        engine.dispose()


@dataclass
class _Worker:
    latencies: list[float] = field(default_factory=list)
    sent: int = 0
    ok: int = 0
    errors: list[str] = field(default_factory=list)


def run_load(domain: Domain, *, seconds: float, workers: int, rate: float | None = None,
             content_bytes: int = 4096, warmup: float = 1.0, profile: bool = False) -> dict:
    """``workers`` threads sending small ITI-41 packages for ``seconds``: closed loop (``rate`` None: each
    sends its next request when the previous answer is in) or paced (the k-th request of worker i is due at
    ``(k * workers + i) / rate``; latency counts from that due time, so queueing behind a slow server shows)."""
    tpl = small_template(domain.url, domain.patients, content_bytes=content_bytes)
    stats = [_Worker() for _ in range(workers)]
    start = time.perf_counter() + warmup  # the threads and their connections are up before the clock starts
    end = start + seconds

    def work(i: int) -> None:
        st = stats[i]
        headers = {"Content-Type": tpl.content_type}
        with httpx.Client(timeout=60, trust_env=False) as client:
            with contextlib.suppress(httpx.HTTPError):
                client.get(domain.repository.base + "/health")  # open the keep-alive connection
            k = 0
            while True:
                if rate:
                    due = start + (k * workers + i) / rate
                    now = time.perf_counter()
                    if due >= end:
                        return
                    if due > now:
                        time.sleep(due - now)
                else:
                    now = time.perf_counter()
                    if now < start:
                        time.sleep(start - now)
                    due = time.perf_counter()
                    if due >= end:
                        return
                body = tpl.render(i, k)
                k += 1
                st.sent += 1
                try:
                    r = client.post(domain.url, content=body, headers=headers)
                    ok = r.status_code == 200 and _SUCCESS in r.content
                    if not ok and len(st.errors) < 3:
                        st.errors.append(f"HTTP {r.status_code}: {r.content[:1500]!r}")
                except httpx.HTTPError as exc:
                    ok = False
                    if len(st.errors) < 3:
                        st.errors.append(f"{type(exc).__name__}: {exc}")
                st.latencies.append(time.perf_counter() - due)
                st.ok += ok

    threads = [threading.Thread(target=work, args=(i,), name=f"iti41-load-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start - time.perf_counter()))
    meters = {"repository": Meter(domain.repository.pid), "registry": Meter(domain.registry.proc.pid),
              "client": Meter("self")}
    for m in meters.values():
        m.__enter__()
    profilers = {}
    if profile:
        time.sleep(min(1.0, seconds / 10))  # steady state
        for name, pid in (("repository", domain.repository.pid), ("registry", domain.registry.proc.pid)):
            p = profile_start(name, pid, seconds * 0.8, domain.home / f"profile-{name}.txt")
            if p is not None:
                profilers[name] = p
    for t in threads:
        t.join(seconds + warmup + 120)
    for m in meters.values():
        m.__exit__()
    elapsed = max(time.perf_counter(), end) - start  # requests in flight at ``end`` finish after it
    lat = [x for s in stats for x in s.latencies]
    sent = sum(s.sent for s in stats)
    ok = sum(s.ok for s in stats)
    registered = count_registered(f"sqlite:///{domain.home / 'repository' / 'ledger.db'}", tpl.unique_id_pattern())
    res = {"workers": workers, "rate": rate, "seconds": round(elapsed, 2), "content_bytes": content_bytes,
           "package_bytes": len(tpl.render(0, 0)), "sent": sent, "ok": ok, "errors": sent - ok,
           "registered": registered, "per_second": ok / elapsed,
           "error_samples": [e for s in stats for e in s.errors][:5],
           "cpu_s": {k: round(m.cpu_s, 2) for k, m in meters.items()}} | common.summarize_ms(lat)
    if profilers:
        res["profile"] = {}
        for name, p in profilers.items():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
                continue
            root, cats = PROFILE_CATEGORIES[name]
            path = domain.home / f"profile-{name}.txt"
            if path.exists():
                res["profile"][name] = summarize_profile(path, root, cats)
    return res


# --- profiling under load ------------------------------------------------------------------------------------

#: Where a request thread of each server spends its wall time: category -> frame substrings (py-spy names).
PROFILE_CATEGORIES = {
    "repository": ("provide_and_register (repository/provide.py", {
        "ITI-42 to the registry (waiting for its answer)": ("RegistryClient.register",),
        "waiting for the SQLite writer lock (xdsi.db.write_transaction, or the ledger's group commit)": (
            "leaf:write_transaction (xdsi/db.py", "_sqlite_begin", "leaf:GroupCommit.run (repository/ledger.py"),
        "metadata: read + validate": ("read_submission", "validate_register"),
        "store: put_file (fsync file + directories, rename)": ("FileStore.put_file",),
        "ledger: SQLite transactions (pending, registered)": (
            "lookup (repository/ledger.py", "record_pending (repository/ledger.py", "mark_registered (repository/ledger.py",
            "drop_submission (repository/ledger.py", "TransactionalContext.__exit__"),
        "set hash/size/repositoryUniqueId slots": ("_set_slot",),
    }),
    "registry": ("register (registry/register.py", {
        "waiting for the SQLite writer lock (queue in write_transaction, BEGIN IMMEDIATE)": (
            "leaf:write_transaction (xdsi/db.py", "_sqlite_begin"),
        "COMMIT (WAL fsync)": ("do_commit",),
        "metadata: read + validate": ("read_submission", "validate_register"),
        "registry-state checks (patient, uniqueIds)": ("_check_registry_state",),
        "store rows (serialize + INSERT)": ("_store (registry/register.py",),
    }),
}


def profile_start(name: str, pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen | None:
    """``py-spy record --idle`` (wall clock: waiting counts) of ``pid`` for ``seconds``; None without py-spy."""
    exe = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.path.exists(exe):
        log("  py-spy not found (pip install py-spy): no profile")
        return None
    # --nonblocking: never pause the server to sample it (the default pauses it, which costs throughput).
    return subprocess.Popen([exe, "record", "--idle", "--nonblocking", "-r", str(rate), "-d", str(max(1, int(seconds))), "-f", "raw",
                             "-o", str(out), "-p", str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_profile(path: Path, root: str, categories: dict[str, tuple[str, ...]], *, rate: int = 250,
                      top: int = 12) -> dict:
    """Shares of the request-handling samples (stacks through ``root``) per category, the average number of
    requests in the handler (samples / (duration * rate)), the busy share of the event-loop thread, and the
    heaviest project frames (inclusive)."""
    handler = 0
    per_cat = dict.fromkeys(categories, 0)
    frames: dict[str, int] = {}
    loop_total = loop_busy = 0
    for line in path.read_text().splitlines():
        stack, _, n_s = line.rpartition(" ")
        n = int(n_s)
        parts = stack.split(";")
        if parts and "WorkerThread" not in stack and "Thread._bootstrap" not in parts[0]:
            loop_total += n  # the main thread: the event loop (uvloop's run_forever is C: Runner.run is the leaf)
            if not parts[-1].startswith("Runner.run"):
                loop_busy += n
        if root not in stack:
            continue
        handler += n
        for cat, subs in categories.items():
            # "leaf:<frame>" matches only the innermost frame (e.g. a thread blocked on a lock in that function)
            if any(parts[-1].startswith(sub[5:]) if sub.startswith("leaf:") else sub in stack for sub in subs):
                per_cat[cat] += n
        seen = set()
        for f in parts:
            key = re.sub(r":\d+\)$", ")", f)
            if key not in seen and re.search(r"\((repository|registry|xdsi)/", key):
                seen.add(key)
                frames[key] = frames.get(key, 0) + n
    return {"handler_samples": handler,
            "shares": {c: round(100 * k / handler, 1) if handler else 0.0 for c, k in per_cat.items()},
            "loop_busy_pct": round(100 * loop_busy / loop_total, 1) if loop_total else None,
            "top_frames": [(f, round(100 * k / handler, 1)) for f, k in
                           sorted(frames.items(), key=lambda kv: -kv[1])[:top]] if handler else []}


# --- the whole benchmark --------------------------------------------------------------------------------------


@contextlib.contextmanager
def _client_cpus(cpus: str | None) -> Iterator[None]:
    """Pin this process (the client) to ``cpus`` for the block; servers started inside use ``taskset``."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {int(c) for c in cpus.split(",")})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


#: ``--malloc-defaults``: the servers keep glibc's malloc defaults instead of the settings of :mod:`xdsi.malloc`
#: (for A/B runs; see docs/performance.md).
MALLOC_ENV = {malloc.OFF_ENV: "off"}


def run(*, sizes_mib: tuple[float, ...] = (44, 600), reps: int = 3, load_seconds: float = 30,
        load_workers: int = 16, paced_rate: float = 100, paced_workers: int = 32, pin: bool = True,
        load_pin: bool = False, home: Path | None = None, content_bytes: int = 4096, profile: bool = True,
        malloc_defaults: bool = False) -> dict:
    """Every repository benchmark, in one run. ``pin``: servers on CPU 0 and the client on CPU 1 for the large
    transfers; ``load_pin`` the same for the small-submission load; ``profile``: py-spy on both servers during
    the closed-loop load; ``malloc_defaults``: servers (not the baselines but the bare-uvicorn reference) run
    with :data:`MALLOC_ENV`."""
    home = home or common.WORK_DIR / "repository"
    shutil.rmtree(home, ignore_errors=True)
    env = MALLOC_ENV if malloc_defaults else None
    res: dict = {"machine": common.machine(), "targets": TARGETS, "large": [], "load": [], "load_profile": [],
                 "malloc_env": env or {},
                 "pinning": {"large": "servers CPU 0, client CPU 1" if pin else "none",
                             "load": "servers CPU 0, client CPU 1" if load_pin else "none"}}
    server_cpus, client_cpus = ("0", "1") if pin else (None, None)
    try:
        if sizes_mib:
            with affinity_domain(home / "large", cpus=server_cpus, env=env) as domain, _client_cpus(client_cpus):
                provide(domain.url, _tiny_file(home), domain.patients[0])  # warm-up (imports, first connections)
                for mib in sizes_mib:
                    log(f"repository: ITI-41 / ITI-43 of {mib:g} MiB, {reps} repetitions")
                    res["large"].append(run_large(domain, int(mib * MiB), reps=reps, server_cpus=server_cpus, env=env))
        if load_seconds > 0:
            server_cpus, client_cpus = ("0", "1") if load_pin else (None, None)
            with affinity_domain(home / "load", cpus=server_cpus, env=env) as domain, _client_cpus(client_cpus):
                run_load(domain, seconds=min(3.0, load_seconds), workers=4, content_bytes=content_bytes)  # warm-up
                runs = [(load_workers, None, False), (paced_workers, paced_rate, False)]
                if profile:  # a separate run: its figures are not reported as measurements
                    runs.append((load_workers, None, True))
                for workers, rate, profiled in runs:
                    what = (f"paced at {rate:g}/s" if rate else "closed loop") + (", profiled" if profiled else "")
                    secs = min(load_seconds, 15) if profiled else load_seconds
                    log(f"repository: small ITI-41 load, {workers} client threads, {what}, {secs:g} s")
                    r = run_load(domain, seconds=secs, workers=workers, rate=rate, content_bytes=content_bytes,
                                 profile=profiled)
                    log(f"  {r['per_second']:.1f} submissions/s, p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
                        f"errors {r['errors']}, registered {r['registered']}/{r['ok']}, CPU {r['cpu_s']}")
                    res["load_profile" if profiled else "load"].append(r)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    res["loadavg_end"] = common.machine()["loadavg"]
    return res


def _tiny_file(home: Path) -> Path:
    path = home / "warmup.bin"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_random_file(path, 64 * 1024)
    return path


# --- report ---------------------------------------------------------------------------------------------------


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def markdown(results: dict) -> str:
    m = results["machine"]
    out = [f"Run: {m['date']}; `{results.get('command', 'python -m benchmarks.repository')}`", "",
           f"Machine: {m['cpu']}, {m['nproc']} vCPU, {m['memory']} RAM, Linux {m['kernel']}, Python {m['python']}; "
           f"load average {m['loadavg']} at start, {results.get('loadavg_end', '?')} at end. "
           f"Pinning: large transfers {results['pinning']['large']}; load {results['pinning']['load']}. "
           + (f"Servers run with {' '.join(f'{k}={v}' for k, v in results['malloc_env'].items())} (glibc malloc "
              "defaults)." if results.get("malloc_env") else "Servers run with the malloc settings of xdsi/malloc.py."),
           ""]
    names = {"upload_fsync": "baseline: POST to `http.server`, write + fsync",
             "upload_plain": "baseline: POST to `http.server`, write (no fsync)",
             "upload_asgi": "reference: POST to bare Starlette/uvicorn, write + fsync",
             "iti41": "**ITI-41** MTOM (`call_mtom`) -> `xdsi repository`",
             "download": "baseline: GET from `python -m http.server`",
             "iti43": "**ITI-43** MTOM (`call_streaming`) <- `xdsi repository`"}
    if results["large"]:
        out += [("**Large documents** (median of the repetitions; MiB/s = document bytes / wall time; CPU = user + "
                 "system seconds of the server process and of the client process during the operation; memory = "
                 "peak RSS growth, largest of the repetitions)"), "",
                ("| Document | Operation | Wall time | MiB/s | Ratio to baseline | Server CPU | Client CPU | "
                 "Server memory growth | Client memory growth |"),
                "|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["large"]:
            mib = f"{r['bytes'] / MiB:.0f} MiB"
            for op in LARGE_OPS:
                x = r[op]
                base = BASELINE_OF.get(op, "upload_fsync" if op.startswith("upload") else "download")
                ratio = x["mib_per_s"] / r[base]["mib_per_s"]
                ratio_s = f"**{ratio:.2f}**" if op in BASELINE_OF else f"{ratio:.2f}"
                if op == "iti41":
                    ratio_s += f" ({x['ratio_plain']:.2f} vs no fsync, {x['ratio_asgi']:.2f} vs bare uvicorn)"
                out.append(f"| {mib} | {names[op]} | {x['median_s']:.2f} s | {x['mib_per_s']:.0f} | {ratio_s} | "
                           f"{x['server_cpu_s']:.2f} s | {x['client_cpu_s']:.2f} s | {x['server_growth_mib']:.1f} MiB | "
                           f"{x['client_growth_mib']:.1f} MiB |")
        out.append("")
    if results["load"]:
        out += [("**Small ITI-41 submissions** (one text/plain document per submission, MTOM; every request new "
                 "uniqueIds, entry ids and content)"), "",
                ("| Client | Package | Duration | Sent | Submissions/s | p50 ms | p90 ms | p99 ms | max ms | Errors | "
                 "Registered in ledger |"), "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in results["load"]:
            client = f"{r['workers']} threads, " + (f"paced at {r['rate']:g}/s" if r["rate"] else "closed loop")
            out.append(f"| {client} | {r['package_bytes'] / 1024:.1f} KiB | {r['seconds']:.0f} s | {r['sent']:,} | "
                       f"{r['per_second']:.1f} | {r['p50_ms']:.1f} | {r['p90_ms']:.1f} | {r['p99_ms']:.1f} | "
                       f"{r['max_ms']:.0f} | {r['errors']} | {r['registered']:,} |")
        out += ["", "CPU per accepted submission (user + system, whole process): " + "; ".join(
            f"{r['workers']} threads {'paced' if r['rate'] else 'closed loop'}: " + ", ".join(
                f"{k} {1000 * v / max(1, r['ok']):.1f} ms" for k, v in r["cpu_s"].items()) for r in results["load"]), ""]
        for r in results.get("load_profile", []):
            out.append(f"Profiled closed-loop run ({r['workers']} threads, {r['seconds']:.0f} s, py-spy sampling both "
                       f"servers; not a measurement): {r['per_second']:.1f} submissions/s, p50 {r['p50_ms']:.1f} ms, "
                       f"{r['errors']} errors.")
            out.append("")
            for name, prof in r.get("profile", {}).items():
                out += [(f"Where a {name} request thread spends its wall time (py-spy --idle; "
                         f"{prof['handler_samples']:,} samples in the handler; event-loop thread busy "
                         f"{prof['loop_busy_pct']}%):"), "", "| Share of handler time | Category |", "|---:|---|"]
                out += [f"| {pct:.1f}% | {cat} |" for cat, pct in prof["shares"].items()]
                out.append("")
    out += ["**Targets**", "", "| Target | Measured | Met |", "|---|---|---|"]
    for r in results["large"]:
        mib = f"{r['bytes'] / MiB:.0f} MiB"
        for op in ("iti41", "iti43"):
            ratio = r[op]["ratio"]
            out.append(f"| {'ITI-41' if op == 'iti41' else 'ITI-43'} {mib}: throughput >= 0.5 x baseline | "
                       f"{ratio:.2f} x | {_yes(ratio >= 0.5)} |")
        if r["bytes"] >= 500 * MiB:
            g = max(r[op]["server_growth_mib"] for op in ("iti41", "iti43"))
            out.append(f"| Repository memory growth <= 64 MiB, {mib} | {g:.1f} MiB | {_yes(g <= 64)} |")
    if results["load"]:
        best = max(results["load"], key=lambda x: x["per_second"])
        errs = sum(r["errors"] for r in results["load"])
        out.append(f"| >= 100 small ITI-41/s sustained | {best['per_second']:.1f}/s ({best['workers']} threads, "
                   f"{'paced' if best['rate'] else 'closed loop'}) | {_yes(best['per_second'] >= 100)} |")
        out.append(f"| 0 errors under load | {errs} | {_yes(errs == 0)} |")
    return "\n".join(out + [""])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.repository", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="44 MiB only, 2 repetitions, 10 s load runs")
    ap.add_argument("--sizes", default=None, help="document sizes in MiB, comma-separated (44,600; quick 44)")
    ap.add_argument("--reps", type=int, default=None, help="repetitions of each transfer (3; quick 2)")
    ap.add_argument("--load-seconds", type=float, default=None, help="each small-submission run (30 s; quick 10 s)")
    ap.add_argument("--workers", type=int, default=16, help="client threads of the closed-loop run")
    ap.add_argument("--rate", type=float, default=100, help="target submissions/s of the paced run")
    ap.add_argument("--paced-workers", type=int, default=32, help="client threads of the paced run")
    ap.add_argument("--no-pin", action="store_true", help="do not pin servers / client for the large transfers")
    ap.add_argument("--pin-load", action="store_true", help="pin servers to CPU 0, client to CPU 1 for the load")
    ap.add_argument("--no-profile", action="store_true", help="no py-spy profile of the closed-loop load run")
    ap.add_argument("--malloc-defaults", action="store_true",
                    help="run the servers with glibc's malloc defaults (XDSI_MALLOC_TUNING=off), not xdsi/malloc.py's")
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument("--markdown", default=None, help="write the Markdown report here too")
    ap.add_argument("--upload-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--asgi-upload-server", nargs=2, metavar=("PORT", "DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--fsync", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.upload_server:
        serve_upload(int(args.upload_server[0]), Path(args.upload_server[1]), args.fsync)
        return 0
    if args.asgi_upload_server:
        serve_asgi_upload(int(args.asgi_upload_server[0]), Path(args.asgi_upload_server[1]), args.fsync)
        return 0
    sizes = tuple(float(s) for s in args.sizes.split(",") if s) if args.sizes is not None else \
        ((44,) if args.quick else (44, 600))
    results = run(sizes_mib=sizes, reps=args.reps or (2 if args.quick else 3),
                  load_seconds=args.load_seconds if args.load_seconds is not None else (10 if args.quick else 30),
                  load_workers=args.workers, paced_rate=args.rate, paced_workers=args.paced_workers,
                  pin=not args.no_pin, load_pin=args.pin_load, profile=not args.no_profile,
                  malloc_defaults=args.malloc_defaults)
    results["command"] = "python -m benchmarks.repository " + " ".join(argv if argv is not None else sys.argv[1:])
    common.publish_results(results, markdown(results), json_path=args.json, stem="repository",
                           markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
