"""The Document Repository benchmark at toy size: real ``xdsi registry`` / ``xdsi repository`` subprocesses,
a 1 MiB document, 2 s of small submissions. Proves the benchmark code works; no timing assertions."""

from __future__ import annotations

from pathlib import Path

from benchmarks import common
from benchmarks import repository as rb


def test_repository_benchmark_toy_size(tmp_path: Path) -> None:
    with rb.affinity_domain(tmp_path / "domain", patients=3) as domain:
        large = rb.run_large(domain, rb.MiB, reps=1)
        closed = rb.run_load(domain, seconds=2, workers=2, warmup=0.2)
        paced = rb.run_load(domain, seconds=2, workers=2, rate=5, warmup=0.2)

    for op in rb.LARGE_OPS:
        assert large[op]["median_s"] > 0 and large[op]["mib_per_s"] > 0, op
        [step] = large[op]["steps"]
        assert step["server"]["cpu_s"] >= 0 and step["server"]["hwm_after_mib"] > 0
    assert large["iti41"]["ratio"] > 0 and large["iti43"]["ratio"] > 0

    for r in (closed, paced):
        # Every submission accepted, and every accepted one registered in the repository's ledger.
        assert r["sent"] > 0 and r["errors"] == 0, r["error_samples"]
        assert r["registered"] == r["ok"] == r["sent"]
    assert paced["sent"] == 10  # 5/s for 2 s, on schedule

    results = {"machine": common.machine(), "targets": rb.TARGETS, "large": [large], "load": [closed, paced],
               "pinning": {"large": "none", "load": "none"}, "malloc_env": {}}
    report = rb.markdown(results)
    assert "**ITI-41** MTOM" in report and "submissions/s" in report.lower()


def test_small_template_is_unique_per_request() -> None:
    tpl = rb.small_template("http://127.0.0.1:1/repository", [rb.samples.patient_id("A"), rb.samples.patient_id("B")])
    a, b = tpl.render(0, 0), tpl.render(0, 1)
    assert a != b and b"zz" not in a.replace(b"zzz", b"")  # every token substituted
    assert tpl.content_type.startswith("multipart/related") and 8_000 < len(a) < 64_000


def test_summarize_profile(tmp_path: Path) -> None:
    raw = tmp_path / "raw.txt"
    raw.write_text(
        "Thread._bootstrap (threading.py:1);WorkerThread.run (anyio/x.py:1);provide_and_register (repository/provide.py:60);"
        "RegistryClient.register (repository/registry_client.py:50) 30\n"
        "Thread._bootstrap (threading.py:1);WorkerThread.run (anyio/x.py:1);provide_and_register (repository/provide.py:60);"
        "put_file (repository/store/filesystem.py:52) 10\n"
        "<module> (xdsi/cli.py:1);Runner.run (asyncio/runners.py:1) 75\n"
        "<module> (xdsi/cli.py:1);Runner.run (asyncio/runners.py:1);read_multipart_related (xdsi/soap/mtom.py:1) 25\n")
    root, cats = rb.PROFILE_CATEGORIES["repository"]
    s = rb.summarize_profile(raw, root, cats)
    assert s["handler_samples"] == 40 and s["loop_busy_pct"] == 25.0
    assert s["shares"]["ITI-42 to the registry (waiting for its answer)"] == 75.0
