"""`xdsi demo --smoke`: the README's demo command starts the whole affinity domain (registry, repository,
imaging source with its embedded DICOM store), publishes the sample studies and passes its own round trip
(ITI-18, ITI-43, RAD-69), twice on the same directory (the data persists)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

from tests.conftest import free_port


def three_free_ports() -> int:
    """A port p with p, p+1 and p+2 free (the demo's registry, repository and imaging source)."""
    for _ in range(50):
        base = free_port()
        socks = []
        try:
            for p in (base, base + 1, base + 2):
                s = socket.socket()
                s.bind(("127.0.0.1", p))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no three consecutive free ports")


def test_demo_smoke(tmp_path: Path) -> None:
    for attempt in range(2):  # the second run finds its data and must not publish twice
        port, mllp = three_free_ports(), free_port()
        proc = subprocess.run([sys.executable, "-m", "xdsi.cli", "demo", "--smoke", "--dir", str(tmp_path / "demo"),
                               "--port", str(port), "--mllp-port", str(mllp)],
                              capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "self-check" in proc.stdout and ": OK" in proc.stdout, proc.stdout
        assert "{'DEMO001': 2, 'DEMO002': 1, 'DEMO003': 2}" in proc.stdout
    assert (tmp_path / "demo" / "requests" / "rad69-retrieve-images.xml").exists()
