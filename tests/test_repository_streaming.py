"""A large document through the repository in constant memory: ITI-41 (MTOM, streamed from disk) and ITI-43
(MTOM, spooled to disk with the SHA-1 computed on the way), byte-exact, with the repository server's peak RSS
growth (a real ``xdsi repository`` process, /proc VmHWM) and the client's bounded.

Size: 300 MB, or ``XDSI_BIG_MB`` megabytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from pathlib import Path

import httpx
import pytest
from lxml import etree

from tests.conftest import start_registry
from tests.test_repository import ITI41, ITI43, retrieve_request, submission
from tests.test_repository_crash import (
    MiB,
    ledger_state,
    object_files,
    registered_unique_ids,
    repository_process,
    spool_files,
    write_random_file,
)
from xdsi import samples
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import call_mtom, call_streaming
from xdsi.transform.ebrim_write import write_provide_and_register

BIG_MB = int(os.environ.get("XDSI_BIG_MB", "300"))
#: Allowed growth of the peak resident set while the document goes in and out.
MAX_GROWTH = 64 * MiB


def _status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise LookupError(f"no {field} in /proc/{pid}/status")


class PeakRss:
    """Peak resident set growth of a process, from /proc: ``clear_refs`` 5 resets VmHWM to the current RSS
    (Linux >= 4.0); where that is refused, growth is counted from the RSS at the start (an over-estimate only
    if the earlier peak was higher, never an under-estimate of the new peak)."""

    def __init__(self, pid: int | str = "self") -> None:
        self.pid = pid
        with contextlib.suppress(OSError):
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        self.start = _status_kib(pid, "VmRSS") * 1024

    def growth(self) -> int:
        return _status_kib(self.pid, "VmHWM") * 1024 - self.start


@pytest.mark.slow
def test_large_document_in_and_out_in_bounded_memory(tmp_path: Path) -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("needs Linux /proc to measure peak RSS")
    size = BIG_MB * MiB
    big = tmp_path / "big.bin"
    sha1 = write_random_file(big, size, seed=BIG_MB)
    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}") as registry, \
            repository_process(registry.url, tmp_path / "repository") as rp:
        pid = samples.patient_id("BIGDOC")
        registry.feed(pid)
        rp.start()
        sub = submission(pid, b"")
        uid = sub.documents[0].unique_id
        request = write_provide_and_register(sub, {sub.documents[0].id: "big@stream"})
        server, client = PeakRss(rp.pid), PeakRss()

        with httpx.Client(timeout=120, trust_env=False) as http:
            resp = call_mtom(rp.url, ITI41, request, [("big@stream", "application/octet-stream", big)], client=http)
        assert resp.get("status") == v.RESPONSE_SUCCESS, etree.tostring(resp)
        assert registered_unique_ids(registry.url, pid) == [uid]
        [held] = ledger_state(rp)
        assert (held.content_key, held.size) == (sha1, size)
        assert [p.name for p in object_files(rp)] == [sha1] and spool_files(rp) == []

        body, parts = asyncio.run(call_streaming(rp.url, ITI43, retrieve_request(uid), spool_dir=str(tmp_path)))
        try:
            assert body.find("{*}RegistryResponse").get("status") == v.RESPONSE_SUCCESS
            [part] = parts.values()
            assert (part.sha1, part.size) == (sha1, size)
        finally:
            for part in parts.values():
                part.delete()

        server_growth, client_growth = server.growth(), client.growth()
        print(f"peak RSS growth for {BIG_MB} MB: repository {server_growth / MiB:.1f} MB, client {client_growth / MiB:.1f} MB")
        assert server_growth <= MAX_GROWTH, f"repository peak RSS grew {server_growth / MiB:.0f} MB for {BIG_MB} MB"
        assert client_growth <= MAX_GROWTH, f"client peak RSS grew {client_growth / MiB:.0f} MB for {BIG_MB} MB"
