"""The ITI-18 benchmark at toy size: the raw baseline, the in-process path, the HTTP floor and ``xdsi registry``
under wrk, on a 2,000-entry registry. Proves the benchmark code works; no timing assertions."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from benchmarks import registry_query, synthetic
from registry.storage.engine import make_engine

ENTRIES, PATIENTS = 2000, 20


@pytest.mark.skipif(shutil.which("wrk") is None and os.environ.get("CI") != "true",
                    reason="wrk not installed (scripts/setup.sh installs it)")
def test_query_benchmark_toy_size(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    engine = make_engine(url)
    try:
        synthetic.load(engine, ENTRIES, PATIENTS, seed=3, progress=False)
    finally:
        engine.dispose()

    res = registry_query.run(url, patients=PATIENTS, seconds=1, worker_counts=(1,))

    assert res["raw"]["xml_bytes_per_query"] > 50 * 1000  # 50 stored entries of several KB each
    assert res["floor"]["requests"] > 0 and res["floor"]["errors"] == 0
    [http] = res["http"]
    assert [r["connections"] for r in http["runs"]] == [1, 8, 16]
    for r in http["runs"]:
        assert r["requests"] > 0 and r["errors"] == 0 and r["server_minor_faults_per_query"] >= 0
    assert res["ratio_p50_http_c1_vs_floor"] > 0 and res["ratio_p50_floor_vs_raw"] > 0

    from benchmarks import __main__ as report
    from benchmarks import common

    results = {"machine": common.machine(), "command": "test",
               "backends": {"SQLite": {"load": {"entries": ENTRIES, "patients": PATIENTS, "db_bytes": 1}, "query": res}}}
    text = report.markdown(results)
    assert "HTTP floor: bare ASGI app + raw SELECT" in text and "the HTTP floor; the floor itself is" in text
    assert "(context) HTTP floor / raw; end-to-end / HTTP floor (p50)" in text
