"""What the benchmarks share: machine facts, percentiles, databases, the registry server, wrk."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import make_url

REPO = Path(__file__).resolve().parents[1]
WORK_DIR = Path(os.environ.get("XDSI_BENCH_DIR", "/tmp/xdsi-bench"))
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SOAP_CT = 'application/soap+xml; charset=UTF-8; action="%s"'


def log(msg: str) -> None:
    """Progress on stderr, time-stamped."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- machine ------------------------------------------------------------------------------------------------


def machine() -> dict:
    """CPU model, cores, memory, OS, Python, load average: the context every figure needs."""
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "nproc": os.cpu_count(),
        "memory": mem,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


# --- statistics ---------------------------------------------------------------------------------------------


def percentile(sorted_values: list[float], p: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, int(round(p / 100 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


def summarize_ms(seconds: list[float]) -> dict:
    """p50 / p90 / p99 / max / mean of a list of durations, in milliseconds."""
    v = sorted(seconds)
    return {"n": len(v), "p50_ms": percentile(v, 50) * 1e3, "p90_ms": percentile(v, 90) * 1e3,
            "p99_ms": percentile(v, 99) * 1e3, "max_ms": (v[-1] if v else float("nan")) * 1e3,
            "mean_ms": (sum(v) / len(v) if v else float("nan")) * 1e3}


# --- databases ----------------------------------------------------------------------------------------------


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sqlite_path(url: str) -> Path:
    return Path(make_url(url).database or "")


def remove_sqlite(url: str) -> None:
    path = sqlite_path(url)
    for suffix in ("", "-wal", "-shm", ".json"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def create_pg_database(admin_url: str = PG_ADMIN, prefix: str = "xdsi_bench") -> str:
    """A fresh PostgreSQL database; returns its URL (drop it with :func:`drop_pg_database`)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(_libpq(admin_url), autocommit=True) as c:
        c.execute(f"CREATE DATABASE {name}")
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_pg_database(url: str, admin_url: str = PG_ADMIN) -> None:
    import psycopg

    name = make_url(url).database
    with psycopg.connect(_libpq(admin_url), autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def _libpq(url: str) -> str:
    u = make_url(url)
    return f"host={u.host or '127.0.0.1'} port={u.port or 5432} user={u.username or 'postgres'} dbname={u.database}"


def pg_reachable(admin_url: str = PG_ADMIN) -> bool:
    try:
        import psycopg

        with psycopg.connect(_libpq(admin_url), connect_timeout=2):
            return True
    except Exception:
        return False


def ensure_loaded(url: str, entries: int, patients: int, *, seed: int = 1) -> dict:
    """A registry at ``url`` holding exactly the synthetic data set (entries, patients, seed).

    SQLite files are reused when their sidecar ``<db>.json`` records the same data set (a 1M load takes
    minutes); otherwise the file is recreated. PostgreSQL URLs must name a fresh database.
    Returns the load record (``LoadResult`` as a dict, ``reused`` set when nothing was loaded).
    """
    from benchmarks.synthetic import load
    from registry.storage.engine import make_engine

    want = {"entries": entries, "patients": patients, "seed": seed}
    meta = Path(str(sqlite_path(url)) + ".json") if is_sqlite(url) else None
    if meta is not None and meta.exists() and sqlite_path(url).exists():
        rec = json.loads(meta.read_text())
        if all(rec.get(k) == val for k, val in want.items()):
            log(f"reusing {url} ({entries:,} entries, loaded in {rec['total_seconds']:.0f} s)")
            return rec | {"reused": True}
    if meta is not None:
        remove_sqlite(url)
        sqlite_path(url).parent.mkdir(parents=True, exist_ok=True)
    log(f"loading {entries:,} entries / {patients:,} patients into {url}")
    engine = make_engine(url)
    try:
        res = load(engine, entries, patients, seed=seed)
    finally:
        engine.dispose()
    log(res.summary())
    rec = asdict(res)
    if meta is not None:
        meta.write_text(json.dumps(rec))
    return rec | {"reused": False}


# --- the registry server ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """A running server subprocess (``xdsi registry``, or the floor of :mod:`benchmarks.floor_app`)."""

    proc: subprocess.Popen
    port: int
    workers: int
    cpus: str | None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/registry"

    def pids(self) -> list[int]:
        """The server process and its uvicorn worker children."""
        out = [self.proc.pid]
        with contextlib.suppress(OSError):
            for child in Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text().split():
                out.append(int(child))
        return out


@contextlib.contextmanager
def registry_server(db_url: str, *, workers: int = 1, cpus: str | None = None,
                    extra: list[str] | None = None, env: dict[str, str] | None = None,
                    timeout: float = 60.0) -> Iterator[Server]:
    """Start ``xdsi registry --db URL --port P [--workers N]`` (optionally ``taskset -c cpus``), wait until
    ``/health`` answers, stop it (SIGTERM to the process we started) afterwards. ``env`` adds environment
    variables (e.g. glibc malloc tunables) to the server's."""
    port = free_port()
    cmd = [sys.executable, "-m", "xdsi.cli", "registry", "--db", db_url, "--port", str(port),
           "--workers", str(workers), *(extra or [])]
    with _serve(cmd, port, workers=workers, cpus=cpus, env=env, timeout=timeout) as server:
        yield server


@contextlib.contextmanager
def floor_server(db_url: str, *, cpus: str | None = None, timeout: float = 60.0) -> Iterator[Server]:
    """Start the ITI-18 HTTP floor (:mod:`benchmarks.floor_app`) on ``db_url``, like :func:`registry_server`."""
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "benchmarks.floor_app:app", "--port", str(port),
           "--log-level", "warning", "--no-access-log"]
    with _serve(cmd, port, workers=1, cpus=cpus, env={"XDSI_FLOOR_DB": db_url}, timeout=timeout) as server:
        yield server


@contextlib.contextmanager
def _serve(cmd: list[str], port: int, *, workers: int, cpus: str | None, env: dict[str, str] | None,
           timeout: float) -> Iterator[Server]:
    import httpx

    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    logf = tempfile.NamedTemporaryFile(prefix="xdsi-server-", suffix=".log", delete=False)
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=logf, stderr=subprocess.STDOUT,
                            env={**os.environ, **env} if env else None)
    server = Server(proc, port, workers, cpus)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{' '.join(cmd)} exited with {proc.returncode}: {Path(logf.name).read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server did not start in {timeout} s: {Path(logf.name).read_text()[-3000:]}")
            time.sleep(0.2)
        if workers > 1:
            time.sleep(1.0)  # let every worker finish its start-up before load arrives
        yield server
    finally:
        stop_process(proc, logf)


def proc_stat(pid: int | str) -> list[str]:
    """The fields of ``/proc/<pid>/stat`` after the command name: index 0 is field 3 (state) of proc(5)."""
    return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()


def cpu_seconds(pid: int | str) -> float:
    """User + system CPU time of the whole process (all threads) so far."""
    fields = proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def minor_faults(pids: list[int]) -> int:
    """Minor page faults so far of these processes (all their threads); processes gone count 0."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(proc_stat(pid)[7])  # field 10, minflt
    return total


# --- SOAP requests ------------------------------------------------------------------------------------------


def soap_request(action: str, body: str, to: str) -> bytes:
    """A SOAP 1.2 request envelope with the WS-Addressing headers IHE requires."""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<soap:Envelope xmlns:soap="http://www.w3.org/2003/05/soap-envelope" '
        'xmlns:wsa="http://www.w3.org/2005/08/addressing"><soap:Header>'
        f'<wsa:Action soap:mustUnderstand="true">{action}</wsa:Action>'
        f'<wsa:MessageID>urn:uuid:{uuid.uuid4()}</wsa:MessageID>'
        '<wsa:ReplyTo><wsa:Address>http://www.w3.org/2005/08/addressing/anonymous</wsa:Address></wsa:ReplyTo>'
        f'<wsa:To soap:mustUnderstand="true">{to}</wsa:To>'
        f'</soap:Header><soap:Body>{body}</soap:Body></soap:Envelope>'
    ).encode()


# --- wrk ----------------------------------------------------------------------------------------------------

#: Lua appended to every wrk script: print the latency distribution and counts as one JSON line.
_WRK_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests": %d, "duration_us": %d, "bytes": %d, "p50_us": %d, "p90_us": %d, "p99_us": %d, ' ..
    '"max_us": %d, "mean_us": %.1f, "connect_errors": %d, "read_errors": %d, "write_errors": %d, ' ..
    '"status_errors": %d, "timeouts": %d}\n',
    summary.requests, summary.duration, summary.bytes, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run_wrk(url: str, script: str, *, connections: int, threads: int, duration: float,
            cpus: str | None = None, timeout_s: int = 10) -> dict:
    """Run wrk with a Lua ``script`` (the JSON ``done`` hook is appended); returns the figures, with
    ``rps`` = completed requests per second and latencies in ms."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script + _WRK_DONE)
        path = f.name
    cmd = ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration:.0f}s", "--timeout",
           f"{timeout_s}s", "-s", path, url]
    if cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", cpus, *cmd]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    finally:
        os.unlink(path)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    r = json.loads(line[8:])
    secs = r["duration_us"] / 1e6
    errors = sum(r[k] for k in ("connect_errors", "read_errors", "write_errors", "status_errors", "timeouts"))
    return {"connections": connections, "threads": threads, "seconds": round(secs, 1), "requests": r["requests"],
            "rps": r["requests"] / secs, "p50_ms": r["p50_us"] / 1e3, "p90_ms": r["p90_us"] / 1e3,
            "p99_ms": r["p99_us"] / 1e3, "max_ms": r["max_us"] / 1e3, "mean_ms": r["mean_us"] / 1e3,
            "errors": errors, "status_errors": r["status_errors"]}


def lua_string(data: bytes | str) -> str:
    """A Lua long-bracket literal holding ``data`` verbatim."""
    text = data.decode() if isinstance(data, bytes) else data
    level = "=" * 3
    while f"]{level}]" in text:
        level += "="
    return f"[{level}[{text}]{level}]"


def stop_process(proc: subprocess.Popen, logf) -> None:  # type: ignore[no-untyped-def, type-arg]
    """Stop a server started by a benchmark (SIGTERM, then SIGKILL after 15 s) and remove its log file."""
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    logf.close()
    os.unlink(logf.name)


def publish_results(results: dict, report: str, *, json_path: str | None, stem: str,
                    markdown_path: str | None) -> None:
    """Write the raw results (``json_path``, or ``WORK_DIR/<stem>-<time>.json``), the Markdown report when
    asked, and print the report: what every benchmark suite does when it ends."""
    path = Path(json_path or WORK_DIR / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))
    log(f"raw results: {path}")
    if markdown_path:
        Path(markdown_path).write_text(report + "\n")
    print(report)
