"""ITI-18 FindDocuments benchmark: the real registry server over HTTP vs the raw database lookup.

Query: FindDocuments for a target patient (exactly 50 DocumentEntries), status Approved, LeafClass. The
client rotates over all target patients (1 % of the patients), so the figures are not those of one hot
patient.

Measured in one run, on the same database:

* ``raw``: in-process DBAPI ``SELECT pk, id, xml FROM registry_object WHERE patient_id=? AND kind='DE'
  AND status='A'`` (the ix_ro_patient_kind index), all rows fetched, timed per query: the floor.
* ``in_process``: parse the AdhocQueryRequest + :func:`registry.storedquery.run_stored_query` on a
  SQLAlchemy connection (what the handler does, without SOAP/HTTP).
* ``floor``: :mod:`benchmarks.floor_app`, a bare ASGI app on the same uvicorn that runs only the raw SELECT
  and joins the rows, over HTTP at concurrency 1: the least any HTTP service can take (the ratio target's
  context: ``floor / raw`` is paid before a service does anything of its own).
* ``http``: ``xdsi registry`` (uvicorn subprocess) driven by wrk (or, without wrk, a multi-process httpx
  client): latency at concurrency 1, throughput and latency at 8 and 16 connections; ``--workers 1``
  pinned to CPU 0 with the client on CPU 1, and ``--workers 2`` unpinned.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from xml.sax.saxutils import escape

from lxml import etree

from benchmarks import common
from benchmarks.common import log
from benchmarks.synthetic import TARGET_ENTRIES, target_patient_ids
from xdsi.metadata import vocabulary as v

ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
RAW_SQL = "SELECT pk, id, xml FROM registry_object WHERE patient_id = {p} AND kind = 'DE' AND status = 'A'"


def find_documents(patient: str) -> str:
    """The AdhocQueryRequest of the benchmark (FindDocuments, Approved, LeafClass)."""
    return (
        '<query:AdhocQueryRequest xmlns:query="urn:oasis:names:tc:ebxml-regrep:xsd:query:3.0" '
        'xmlns:rim="urn:oasis:names:tc:ebxml-regrep:xsd:rim:3.0">'
        '<query:ResponseOption returnComposedObjects="true" returnType="LeafClass"/>'
        f'<rim:AdhocQuery id="{v.SQ_FIND_DOCUMENTS}">'
        f'<rim:Slot name="$XDSDocumentEntryPatientId"><rim:ValueList><rim:Value>\'{escape(patient)}\'</rim:Value>'
        '</rim:ValueList></rim:Slot>'
        f'<rim:Slot name="$XDSDocumentEntryStatus"><rim:ValueList><rim:Value>(\'{v.STATUS_APPROVED}\')</rim:Value>'
        '</rim:ValueList></rim:Slot></rim:AdhocQuery></query:AdhocQueryRequest>'
    )


# --- baselines ----------------------------------------------------------------------------------------------


def raw_baseline(url: str, patients: list[str], *, seconds: float) -> dict:
    """Time the raw indexed SELECT of the patient's 50 xml rows, per query, in-process."""
    from registry.storage.engine import make_engine

    engine = make_engine(url, migrate=False)
    raw = engine.raw_connection()
    try:
        dbapi = raw.driver_connection
        sqlite = engine.dialect.name == "sqlite"
        sql = RAW_SQL.format(p="?" if sqlite else "%s")
        cur = dbapi.cursor()
        times: list[float] = []
        nbytes = 0
        rng = random.Random(3)
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 200:
            pid = rng.choice(patients)
            t = time.perf_counter()
            rows = cur.execute(sql, (pid,)).fetchall()
            times.append(time.perf_counter() - t)
            if len(rows) != TARGET_ENTRIES:
                raise AssertionError(f"{pid}: {len(rows)} rows, expected {TARGET_ENTRIES}")
            nbytes += sum(len(r[2]) for r in rows)
            if not sqlite:
                dbapi.rollback()  # no long-running read transaction
        cur.close()
    finally:
        raw.close()
        engine.dispose()
    return common.summarize_ms(times) | {"qps_1_thread": len(times) / sum(times),
                                         "xml_bytes_per_query": nbytes // len(times)}


def in_process(url: str, patients: list[str], *, seconds: float) -> dict:
    """Time parse + run_stored_query in-process (the handler's work without SOAP and HTTP)."""
    from registry.storage.engine import make_engine
    from registry.storedquery import run_stored_query

    engine = make_engine(url, migrate=False)
    bodies = {p: find_documents(p).encode() for p in patients}
    times: list[float] = []
    rng = random.Random(4)
    try:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times) < 100:
            body = bodies[rng.choice(patients)]
            t = time.perf_counter()
            req = etree.fromstring(body)
            with engine.connect() as conn:
                out = run_stored_query(conn, req, max_results=10000)
            times.append(time.perf_counter() - t)
        if out.count(b"<rim:ExtrinsicObject ") != TARGET_ENTRIES:
            raise AssertionError(f"run_stored_query returned {out.count(b'<rim:ExtrinsicObject ')} entries")
    finally:
        engine.dispose()
    return common.summarize_ms(times) | {"response_bytes": len(out)}


# --- HTTP ---------------------------------------------------------------------------------------------------


def envelopes(server_url: str, patients: list[str]) -> list[bytes]:
    return [common.soap_request(ITI18, find_documents(p), server_url) for p in patients]


def check_responses(server_url: str, patients: list[str]) -> int:
    """Every target patient's query answers Success with exactly 50 ExtrinsicObjects; returns the size."""
    import httpx

    size = 0
    with httpx.Client(timeout=30) as client:
        for env in envelopes(server_url, patients):
            r = client.post(server_url, content=env, headers={"content-type": common.SOAP_CT % ITI18})
            body = r.content
            if r.status_code != 200 or body.count(b"<rim:ExtrinsicObject ") != TARGET_ENTRIES \
                    or v.RESPONSE_SUCCESS.encode() not in body:
                raise AssertionError(f"bad ITI-18 response {r.status_code}: {body[:1500]!r}")
            size = len(body)
    return size


def wrk_script(server_url: str, patients: list[str]) -> str:
    bodies = ",\n".join(common.lua_string(e) for e in envelopes(server_url, patients))
    return f"""
local bodies = {{
{bodies}
}}
local i = 0
wrk.method = "POST"
wrk.headers["Content-Type"] = '{common.SOAP_CT % ITI18}'
setup = function(thread) thread:set("offset", math.random(#bodies)) end
request = function()
  i = i + 1
  return wrk.format(nil, nil, nil, bodies[(i + (offset or 0)) % #bodies + 1])
end
"""


def _httpx_worker(args: tuple) -> list[float]:  # pragma: no cover - runs in a child process
    import httpx

    url, bodies, seconds, conns = args
    times: list[float] = []
    import concurrent.futures as cf

    def loop(k: int) -> list[float]:
        out: list[float] = []
        with httpx.Client(timeout=30) as c:
            end = time.perf_counter() + seconds
            i = k
            while time.perf_counter() < end:
                t = time.perf_counter()
                r = c.post(url, content=bodies[i % len(bodies)], headers={"content-type": common.SOAP_CT % ITI18})
                r.raise_for_status()
                out.append(time.perf_counter() - t)
                i += 1
        return out

    with cf.ThreadPoolExecutor(conns) as ex:
        for part in ex.map(loop, range(conns)):
            times += part
    return times


def httpx_load(server_url: str, bodies: list[bytes], *, connections: int, seconds: float) -> dict:
    """Fallback client when wrk is missing: 2 processes x N/2 threads of httpx."""
    import multiprocessing as mp

    procs = min(2, connections)
    with mp.get_context("spawn").Pool(procs) as pool:
        t = time.perf_counter()
        parts = pool.map(_httpx_worker, [(server_url, bodies, seconds, max(1, connections // procs))] * procs)
        elapsed = time.perf_counter() - t
    times = [x for p in parts for x in p]
    return common.summarize_ms(times) | {"connections": connections, "rps": len(times) / min(elapsed, seconds + 1),
                                         "requests": len(times), "errors": 0, "client": "httpx"}


def http_runs(db_url: str, patients: list[str], *, workers: int, seconds: float,
              concurrency: tuple[int, ...] = (1, 8, 16)) -> dict:
    """Start the server and measure latency/throughput at each concurrency."""
    pinned = workers == 1
    server_cpus, client_cpus = ("0", "1") if pinned else (None, None)
    out: dict = {"workers": workers, "pinning": "server CPU 0, client CPU 1" if pinned else "none (2 workers)",
                 "runs": []}
    with common.registry_server(db_url, workers=workers, cpus=server_cpus) as srv:
        out["response_bytes"] = check_responses(srv.url, patients)
        script = wrk_script(srv.url, patients) if common.have_wrk() else None
        bodies = envelopes(srv.url, patients)
        # Warm-up: page cache, SQLite page cache of every worker connection, lxml/Python code paths.
        if script:
            common.run_wrk(srv.url, script, connections=max(concurrency), threads=1, duration=3, cpus=client_cpus)
        for conns in concurrency:
            log(f"  ITI-18 over HTTP: workers={workers}, {conns} connection(s), {seconds:.0f} s")
            faults = common.minor_faults(srv.pids())
            if script:
                r = common.run_wrk(srv.url, script, connections=conns, threads=1 if conns < 4 else 2,
                                   duration=seconds, cpus=client_cpus) | {"client": "wrk"}
            else:
                r = httpx_load(srv.url, bodies, connections=conns, seconds=seconds)
            r["server_minor_faults_per_query"] = (common.minor_faults(srv.pids()) - faults) / max(1, r["requests"])
            log(f"    {r['rps']:.0f} q/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, errors {r['errors']}, "
                f"{r['server_minor_faults_per_query']:.0f} page faults/query")
            out["runs"].append(r)
    return out


def floor_run(db_url: str, patients: list[str], *, seconds: float) -> dict | None:
    """The HTTP floor (:mod:`benchmarks.floor_app`) at 1 connection, pinned like ``--workers 1``: the
    latency of answering the same query over HTTP with nothing but the raw SELECT. None without wrk."""
    if not common.have_wrk():
        return None
    import httpx

    with common.floor_server(db_url, cpus="0") as srv:
        for env in envelopes(srv.url, patients[:3]):  # it answers the same rows as the registry
            body = httpx.post(srv.url, content=env, timeout=30).content
            if body.count(b"<rim:ExtrinsicObject ") != TARGET_ENTRIES:
                raise AssertionError(f"the floor server answered {body[:300]!r}")
        script = wrk_script(srv.url, patients)
        common.run_wrk(srv.url, script, connections=1, threads=1, duration=3, cpus="1")
        log(f"  HTTP floor (bare ASGI app + raw SELECT): 1 connection, {seconds:.0f} s")
        r = common.run_wrk(srv.url, script, connections=1, threads=1, duration=seconds, cpus="1")
    if r["errors"]:
        raise AssertionError(f"the floor server answered with errors: {r}")
    log(f"    {r['rps']:.0f} q/s, p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms")
    return r | {"client": "wrk", "pinning": "server CPU 0, client CPU 1"}


def run(db_url: str, *, patients: int, seconds: float, worker_counts: tuple[int, ...] = (1, 2)) -> dict:
    """The whole ITI-18 benchmark on a loaded registry (see :func:`benchmarks.common.ensure_loaded`)."""
    targets = target_patient_ids(patients)
    log(f"ITI-18 FindDocuments: {len(targets)} target patients x {TARGET_ENTRIES} entries; raw baseline")
    res: dict = {"targets": len(targets)}
    res["raw"] = raw_baseline(db_url, targets, seconds=min(seconds, 10))
    log(f"  raw SELECT: p50 {res['raw']['p50_ms']:.3f} ms, p99 {res['raw']['p99_ms']:.3f} ms")
    res["in_process"] = in_process(db_url, targets, seconds=min(seconds, 10))
    log(f"  parse + run_stored_query in-process: p50 {res['in_process']['p50_ms']:.3f} ms, "
        f"p99 {res['in_process']['p99_ms']:.3f} ms")
    res["floor"] = floor_run(db_url, targets, seconds=seconds)
    res["http"] = [http_runs(db_url, targets, workers=w, seconds=seconds) for w in worker_counts]
    lat = res["http"][0]["runs"][0]
    res["ratio_p50_http_c1_vs_raw"] = lat["p50_ms"] / res["raw"]["p50_ms"]
    if res["floor"]:
        res["ratio_p50_floor_vs_raw"] = res["floor"]["p50_ms"] / res["raw"]["p50_ms"]
        res["ratio_p50_http_c1_vs_floor"] = lat["p50_ms"] / res["floor"]["p50_ms"]
    res["ratio_p50_in_process_vs_raw"] = res["in_process"]["p50_ms"] / res["raw"]["p50_ms"]
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.registry_query")
    ap.add_argument("--db", required=True, help="registry URL loaded by benchmarks.synthetic")
    ap.add_argument("--patients", type=int, required=True, help="--patients the database was loaded with")
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args(argv)
    res = run(args.db, patients=args.patients, seconds=args.seconds,
              worker_counts=tuple(int(w) for w in args.workers.split(",")))
    json.dump(res, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
