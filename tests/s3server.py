"""A real S3-compatible server for tests: s3rver (npm ``s3rver@3.7.1``, run by Node) on a free loopback port
with a throwaway data directory. Objects are kept on disk, so large-object tests measure our memory, not the
server's. Installed by ``scripts/setup.sh`` into ``.tools/s3rver``; where Node or s3rver is absent, tests using
it skip with the reason (and fail under CI=true, through :func:`tests.conftest.need`).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import REPO, need

#: Where setup.sh installs it (``npm install --prefix .tools/s3rver s3rver@3.7.1``); XDSI_S3RVER overrides.
S3RVER = Path(os.environ.get("XDSI_S3RVER", REPO / ".tools" / "s3rver" / "node_modules" / ".bin" / "s3rver"))
#: s3rver's credentials are not checked; any pair works, these are its documented ones.
ACCESS_KEY = SECRET_KEY = "S3RVER"
_LISTENING = re.compile(rb"listening on 127\.0\.0\.1:(\d+)")


@contextlib.contextmanager
def run_s3rver(*buckets: str, timeout: float = 20.0) -> Iterator[str]:
    """Start s3rver (creating ``buckets``), yield its endpoint URL ``http://127.0.0.1:PORT``, stop it."""
    node = shutil.which("node")
    need(node is not None, "Node.js (node) is not installed: needed to run s3rver")
    need(S3RVER.exists(), f"s3rver is not installed at {S3RVER} (scripts/setup.sh installs it with npm)")
    workdir = Path(tempfile.mkdtemp(prefix="xdsi-s3rver-"))
    data = workdir / "data"
    data.mkdir()
    log_path = workdir / "s3rver.log"
    configure: list[str] = []
    for bucket in buckets:
        configure += ["--configure-bucket", bucket]
    # Port 0: the kernel picks a free port and s3rver prints it, so there is no race with other tests.
    # The output goes to a file, not a pipe nobody drains (s3rver logs each request).
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(node), str(S3RVER), "-d", str(data), "-a", "127.0.0.1", "-p", "0", *configure],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        port = _wait_for_port(proc, log_path, timeout)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        shutil.rmtree(workdir, ignore_errors=True)


def store_url(endpoint: str, bucket: str, prefix: str = "") -> str:
    """An ``s3://`` store URL for :func:`repository.store.open_store` pointing at this s3rver."""
    return (
        f"s3://{bucket}/{prefix}?endpoint_url={endpoint}&region=us-east-1"
        f"&aws_access_key_id={ACCESS_KEY}&aws_secret_access_key={SECRET_KEY}"
    )


def _wait_for_port(proc: subprocess.Popen[bytes], log_path: Path, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        output = log_path.read_bytes()
        found = _LISTENING.search(output)
        if found:
            return int(found.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"s3rver exited with {proc.returncode}:\n{output.decode(errors='replace')}")
        time.sleep(0.05)
    raise RuntimeError(f"s3rver did not report its port within {timeout} s:\n{log_path.read_text(errors='replace')}")
