"""``python -m benchmarks``: load the synthetic registry, run the ITI-18 and ITI-42 benchmarks, print tables.

Examples::

    python -m benchmarks --quick                      # 50k entries, short runs, SQLite only (~5 min)
    python -m benchmarks                              # 1M entries on SQLite (load reused when present)
    python -m benchmarks --pg                         # ... and on a fresh PostgreSQL database (dropped after)
    python -m benchmarks --only query --db sqlite:////tmp/x.db --entries 200000 --patients 2000

Results: a Markdown report on stdout (``--markdown FILE`` writes it too) and the raw figures as JSON
(``--json FILE``, default ``$XDSI_BENCH_DIR/results-<time>.json``).
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import common, registry_query, registry_register
from benchmarks.common import log

TARGETS = {"query_p50_ms": 5.0, "query_p99_ms": 20.0, "query_qps": 400.0, "query_ratio": 3.0, "register_per_s": 300.0}


def _backend(url: str) -> str:
    return "SQLite" if common.is_sqlite(url) else "PostgreSQL"


def _pg_ensure_loaded(url: str, entries: int, patients: int) -> dict:
    """PostgreSQL: reuse a database already holding this data set (same counts), else load it."""
    from sqlalchemy import func, select

    from registry.storage import schema as s
    from registry.storage.engine import make_engine

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            n_de = conn.execute(select(func.count()).where(s.registry_object.c.kind == "DE")).scalar_one()
            n_p = conn.execute(select(func.count()).select_from(s.patient)).scalar_one()
            if n_de == entries and n_p == patients:
                n_ro = conn.execute(select(func.count()).select_from(s.registry_object)).scalar_one()
                n_ov = conn.execute(select(func.count()).select_from(s.object_value)).scalar_one()
    finally:
        engine.dispose()
    if n_de == entries and n_p == patients:
        log(f"reusing {url} ({entries:,} entries)")
        return {"entries": entries, "patients": patients, "reused": True, "registry_object_rows": n_ro,
                "object_value_rows": n_ov}
    return common.ensure_loaded(url, entries, patients)


def _load(url: str, entries: int, patients: int) -> dict:
    rec = common.ensure_loaded(url, entries, patients) if common.is_sqlite(url) else _pg_ensure_loaded(url, entries, patients)
    from benchmarks.synthetic import db_size
    from registry.storage.engine import make_engine

    engine = make_engine(url, migrate=False)
    try:
        rec["db_bytes"] = db_size(engine)
    finally:
        engine.dispose()
    return rec


def _fmt(x: float, digits: int = 2) -> str:
    return f"{x:,.{digits}f}"


def markdown(results: dict) -> str:
    m = results["machine"]
    out = [f"Run: {m['date']}; `{results['command']}`", "",
           "| Machine | |", "|---|---|",
           f"| CPU | {m['cpu']} ({m['nproc']} vCPU) |", f"| Memory | {m['memory']} |",
           f"| Kernel / Python | {m['kernel']} / {m['python']} |",
           f"| Load average at start / end | {m['loadavg']} / {results.get('loadavg_end', '?')} |", ""]
    loads = [(b, r["load"]) for b, r in results["backends"].items() if r.get("load")]
    if loads:
        out += ["**Synthetic load** (entries = KOS DocumentEntry + SubmissionSet + HasMember)", "",
                "| Backend | Entries | Patients | registry_object rows | object_value rows | Load time | Entries/s | DB size |",
                "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for b, r in loads:
            secs = r.get("total_seconds")
            out.append(f"| {b} | {r['entries']:,} | {r['patients']:,} | {r.get('registry_object_rows', 0):,} | "
                       f"{r.get('object_value_rows', 0):,} | {_fmt(secs, 0) + ' s' if secs else 'reused'} | "
                       f"{_fmt(r['entries'] / secs, 0) if secs else '-'} | {r['db_bytes'] / 2**30:.1f} GiB |")
        out.append("")
    for b, r in results["backends"].items():
        q = r.get("query")
        if not q:
            continue
        out += [f"**ITI-18 FindDocuments, {b}, {r['load']['entries']:,} entries** (50 Approved entries per query, "
                f"LeafClass, {q['targets']} target patients rotated; response {q['http'][0]['response_bytes'] / 1024:.0f} KiB)", "",
                "| Path | Server | Client connections | q/s | p50 ms | p99 ms | p50 vs raw |",
                "|---|---|---:|---:|---:|---:|---:|"]
        raw = q["raw"]["p50_ms"]
        out.append(f"| raw indexed SELECT (in-process, DBAPI) | - | 1 | {_fmt(q['raw']['qps_1_thread'], 0)} | "
                   f"{_fmt(raw, 3)} | {_fmt(q['raw']['p99_ms'], 3)} | 1.0x |")
        ip = q["in_process"]
        out.append(f"| parse + run_stored_query (in-process) | - | 1 | {_fmt(1000 / ip['mean_ms'], 0)} | "
                   f"{_fmt(ip['p50_ms'], 3)} | {_fmt(ip['p99_ms'], 3)} | {ip['p50_ms'] / raw:.1f}x |")
        fl = q.get("floor")
        if fl:
            out.append(f"| HTTP floor: bare ASGI app + raw SELECT (wrk) | 1 process, {fl['pinning']} | 1 | "
                       f"{_fmt(fl['rps'], 0)} | {_fmt(fl['p50_ms'], 3)} | {_fmt(fl['p99_ms'], 3)} | "
                       f"{fl['p50_ms'] / raw:.1f}x |")
        for h in q["http"]:
            for run in h["runs"]:
                out.append(f"| HTTP (wrk) | {h['workers']} worker(s), {h['pinning']} | {run['connections']} | "
                           f"{_fmt(run['rps'], 0)} | {_fmt(run['p50_ms'])} | {_fmt(run['p99_ms'])} | "
                           f"{run['p50_ms'] / raw:.1f}x |")
        out.append("")
        if fl:
            out += [f"xdsi at 1 connection (1 worker, pinned) is {q['http'][0]['runs'][0]['p50_ms'] / fl['p50_ms']:.1f}x "
                    f"the HTTP floor; the floor itself is {fl['p50_ms'] / raw:.1f}x the raw SELECT.", ""]
    for b, r in results["backends"].items():
        g = r.get("register")
        if not g:
            continue
        out += [f"**ITI-42 single-document submissions, {b}** ({g['durability']}; base {g['base_entries']:,} entries)", "",
                "| Path | Server | Client connections | Submissions/s | p50 ms | p99 ms | Accepted |",
                "|---|---|---:|---:|---:|---:|---:|"]
        raw = g["raw"]
        out.append(f"| raw insert_objects + commit (in-process) | - | 1 | {_fmt(raw['per_second_1_thread'], 0)} | "
                   f"{_fmt(raw['p50_ms'])} | {_fmt(raw['p99_ms'])} | {raw['n']:,} |")
        for h in g["http"]:
            for run in h["runs"]:
                out.append(f"| HTTP (wrk) | {h['workers']} worker(s), {h['pinning']} | {run['connections']} | "
                           f"{_fmt(run['accepted_per_second'], 0)} | {_fmt(run['p50_ms'])} | {_fmt(run['p99_ms'])} | "
                           f"{run['accepted']:,} |")
        out.append("")
    out += _verdicts(results)
    return "\n".join(out)


def _verdicts(results: dict) -> list[str]:
    lines = ["**Targets**", "", "| Backend | Target | Best measured | Met |", "|---|---|---|---|"]
    for b, r in results["backends"].items():
        q = r.get("query")
        if q:
            c1 = [h["runs"][0] for h in q["http"]]
            best_c1 = min(c1, key=lambda x: x["p50_ms"])
            best_tp = max((run for h in q["http"] for run in h["runs"]), key=lambda x: x["rps"])
            p99_c1 = min(x["p99_ms"] for x in c1)
            ratio = best_c1["p50_ms"] / q["raw"]["p50_ms"]
            for name, val, ok in (
                ("ITI-18 p50 <= 5 ms (1 connection)", f"{best_c1['p50_ms']:.2f} ms", best_c1["p50_ms"] <= 5),
                ("ITI-18 p99 <= 20 ms (1 connection)", f"{p99_c1:.2f} ms", p99_c1 <= 20),
                ("ITI-18 >= 400 q/s", f"{best_tp['rps']:.0f} q/s ({best_tp['connections']} conns)", best_tp["rps"] >= 400),
                ("ITI-18 end-to-end / raw <= 3x (p50)", f"{ratio:.1f}x", ratio <= 3),
            ):
                lines.append(f"| {b} | {name} | {val} | {'yes' if ok else '**no**'} |")
            if q.get("floor"):  # context for the ratio: what a bare HTTP app doing only the raw SELECT takes
                floor = q["floor"]["p50_ms"]
                lines.append(f"| {b} | (context) HTTP floor / raw; end-to-end / HTTP floor (p50) | "
                             f"{floor / q['raw']['p50_ms']:.1f}x; {best_c1['p50_ms'] / floor:.1f}x | recorded |")
        g = r.get("register")
        if g and g["http"]:
            best = max((run for h in g["http"] for run in h["runs"]), key=lambda x: x["accepted_per_second"])
            ok = best["accepted_per_second"] >= 300
            lines.append(f"| {b} | ITI-42 >= 300 submissions/s | {best['accepted_per_second']:.0f}/s "
                         f"({best['connections']} conns) | {'yes' if ok else '**no**'} |")
    return lines + [""]


#: Other suites, run as ``python -m benchmarks <name> [their options]``.
SUITES = {"imaging-source": "benchmarks.imaging_source", "repository": "benchmarks.repository"}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in SUITES:
        import importlib

        return importlib.import_module(SUITES[argv[0]]).main(argv[1:])
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="50k entries, 5 s runs")
    ap.add_argument("--db", action="append", default=[], help="registry URL(s) to benchmark (default: SQLite in "
                    f"{common.WORK_DIR}); a PostgreSQL URL must name a fresh or already loaded database")
    ap.add_argument("--pg", action="store_true", help=f"also run on a fresh PostgreSQL database ({common.PG_ADMIN})")
    ap.add_argument("--pg-entries", type=int, default=None, help="entries on PostgreSQL (default: --entries)")
    ap.add_argument("--keep-pg", action="store_true", help="do not drop the PostgreSQL databases created here")
    ap.add_argument("--only", choices=("load", "query", "register"), action="append",
                    help="run only these steps (repeatable)")
    ap.add_argument("--entries", type=int, default=None, help="entries of the query database (1,000,000; quick 50,000)")
    ap.add_argument("--patients", type=int, default=None, help="patients (entries / 100)")
    ap.add_argument("--seconds", type=float, default=None, help="duration of each HTTP run (15 s; quick 5 s)")
    ap.add_argument("--register-seconds", type=float, default=None, help="each ITI-42 run (30 s; quick 5 s)")
    ap.add_argument("--register-entries", type=int, default=None,
                    help="base entries of the ITI-42 database (100,000; quick 10,000)")
    ap.add_argument("--workers", default="1,2", help="server worker counts to try")
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument("--markdown", default=None, help="write the Markdown report here too")
    args = ap.parse_args(argv)

    entries = args.entries or (50_000 if args.quick else 1_000_000)
    patients = args.patients or max(100, entries // 100)
    seconds = args.seconds or (5 if args.quick else 15)
    reg_seconds = args.register_seconds or (5 if args.quick else 30)
    reg_entries = args.register_entries or (10_000 if args.quick else 100_000)
    reg_patients = max(100, reg_entries // 100)
    steps = set(args.only or ("load", "query", "register"))
    workers = tuple(int(w) for w in args.workers.split(","))

    urls = list(args.db) or [f"sqlite:///{common.WORK_DIR / f'registry-{entries}.db'}"]
    created: list[str] = []
    if args.pg:
        if not common.pg_reachable():
            log(f"PostgreSQL not reachable at {common.PG_ADMIN}: skipped")
        else:
            urls.append(common.create_pg_database())
            created.append(urls[-1])
    results: dict = {"command": "python -m " + " ".join(["benchmarks", *(argv if argv is not None else sys.argv[1:])]),
                     "machine": common.machine(), "targets": TARGETS, "backends": {}}
    log(f"machine: {results['machine']}")
    try:
        for url in urls:
            b = _backend(url)
            n = args.pg_entries if (args.pg_entries and not common.is_sqlite(url)) else entries
            p = max(100, n // 100) if n != entries else patients
            r: dict = {"url": url}
            results["backends"][b] = r
            if steps & {"load", "query"}:
                r["load"] = _load(url, n, p)
            if "query" in steps:
                r["query"] = registry_query.run(url, patients=p, seconds=seconds, worker_counts=workers)
            if "register" in steps:
                if common.is_sqlite(url):
                    reg_url = f"sqlite:///{common.WORK_DIR / f'register-{reg_entries}.db'}"
                    common.remove_sqlite(reg_url)  # fresh each run: earlier runs' submissions would pile up
                else:
                    reg_url = common.create_pg_database(prefix="xdsi_bench_reg")
                    created.append(reg_url)
                common.ensure_loaded(reg_url, reg_entries, reg_patients)
                r["register"] = registry_register.run(reg_url, patients=reg_patients, seconds=reg_seconds,
                                                      worker_counts=workers) | {"base_entries": reg_entries}
    finally:
        for url in created:
            if args.keep_pg:
                log(f"kept {url}")
            else:
                common.drop_pg_database(url)
                log(f"dropped {url}")
    results["loadavg_end"] = common.machine()["loadavg"]
    common.publish_results(results, markdown(results), json_path=args.json, stem="results",
                           markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
