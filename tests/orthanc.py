"""Real Orthanc PACS instances for tests: started on free loopback ports, stopped afterwards.

    with run_orthanc("ORTHANC_A", modalities={"XDSI_MOVE": ("127.0.0.1", 11113)}) as pacs:
        httpx.get(pacs.http_url + "/system")

Each instance gets a throwaway storage directory and a generated configuration with the DICOMweb plugin
enabled (dependency-probe §5). The ports are picked right before the process starts; if the process dies
on a port clash (another process took the port in between) it is retried once on new ports.

Orthanc 1.10 has no bind-address option: its ports listen on 0.0.0.0. ``RemoteAccessAllowed: false``
keeps the HTTP side to local clients; that is acceptable on a test machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port, need

ORTHANC_BIN = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"

#: AE title our DIMSE adapter calls from (C-FIND/C-GET/C-MOVE SCU).
SCU_AET = "XDSI_IDS"
#: AE title of the temporary Storage SCP a C-MOVE targets.
MOVE_AET = "XDSI_MOVE"

_READY_TIMEOUT = 15.0
_STOP_TIMEOUT = 10.0

Modality = tuple[str, int] | Mapping[str, Any]


def orthanc_available() -> bool:
    return os.access(ORTHANC_BIN, os.X_OK) and os.path.exists(DICOMWEB_PLUGIN)


def need_orthanc() -> None:
    """Skip (fail under CI=true) unless Orthanc and its DICOMweb plugin are installed."""
    need(orthanc_available(),
         f"Orthanc not installed ({ORTHANC_BIN} and {DICOMWEB_PLUGIN}; apt-get install orthanc orthanc-dicomweb)")


@dataclass
class OrthancInstance:
    """A running Orthanc. ``aet`` is its DICOM AE title; DIMSE at ``host:dicom_port``."""

    name: str
    aet: str
    http_url: str
    http_port: int
    dicom_port: int
    dicomweb_url: str
    home: Path
    log_path: Path
    process: subprocess.Popen[bytes] = field(repr=False)
    host: str = "127.0.0.1"
    _http: httpx.Client | None = field(default=None, repr=False)

    @property
    def http(self) -> httpx.Client:
        """A keep-alive client on :attr:`http_url` (creating one per call costs ~50 ms: TLS setup)."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.http_url, timeout=60)
        return self._http

    @property
    def dicom(self) -> tuple[str, int, str]:
        """``(host, port, aet)`` for DIMSE clients."""
        return self.host, self.dicom_port, self.aet

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    # --- REST helpers -----------------------------------------------------------------------------

    def get(self, path: str, **params: Any) -> Any:
        r = self.http.get(path, params=params or None)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: Any) -> Any:
        r = self.http.post(path, json=body)
        r.raise_for_status()
        return r.json()

    def add_modality(self, aet: str, host: str, port: int, **options: Any) -> None:
        """Declare a DICOM modality at run time (``PUT /modalities/{aet}``), e.g. a C-MOVE destination."""
        body = {"AET": aet, "Host": host, "Port": port, **options}
        r = self.http.put(f"/modalities/{aet}", json=body)
        r.raise_for_status()

    def instance_id(self, sop_instance_uid: str) -> str | None:
        """Orthanc's resource id of the instance, or None."""
        # /tools/lookup takes the UID as a raw body, not JSON
        r = self.http.post("/tools/lookup", content=sop_instance_uid)
        r.raise_for_status()
        for hit in r.json():
            if hit.get("Type") == "Instance":
                return hit["ID"]
        return None

    def instance_file(self, sop_instance_uid: str) -> bytes:
        """The stored Part 10 bytes of the instance (``GET /instances/{id}/file``)."""
        iid = self.instance_id(sop_instance_uid)
        if iid is None:
            raise KeyError(sop_instance_uid)
        r = self.http.get(f"/instances/{iid}/file")
        r.raise_for_status()
        return r.content

    def statistics(self) -> dict[str, Any]:
        return self.get("/statistics")

    def clear(self) -> None:
        """Delete every patient (and so every study) stored."""
        for pid in self.get("/patients"):
            self.http.delete(f"/patients/{pid}").raise_for_status()


def _modality_entry(aet: str, spec: Modality) -> dict[str, Any]:
    if isinstance(spec, Mapping):
        entry = dict(spec)
        entry.setdefault("AET", aet)
        return entry
    host, port = spec
    return {"AET": aet, "Host": host, "Port": int(port)}


def _config(name: str, aet: str, home: Path, http_port: int, dicom_port: int,
            modalities: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    db = str(home / "db")
    return {
        "Name": name,
        "StorageDirectory": db,
        "IndexDirectory": db,
        "StorageCompression": False,
        "HttpServerEnabled": True,
        "HttpPort": http_port,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomServerEnabled": True,
        "DicomAet": aet,
        "DicomPort": dicom_port,
        # The adapters must call the right AE title: a wrong one is rejected, as by a real PACS.
        "DicomCheckCalledAet": True,
        "DicomCheckModalityHost": False,
        "DicomAlwaysAllowEcho": True,
        "DicomAlwaysAllowStore": True,
        "DicomAlwaysAllowFind": True,
        "DicomAlwaysAllowGet": True,
        "DicomAlwaysAllowMove": True,
        "UnknownSopClassAccepted": True,
        "DicomModalities": dict(modalities),
        "Plugins": [DICOMWEB_PLUGIN],
        "DicomWeb": {
            "Enable": True,
            "Root": "/dicom-web/",
            "EnableWado": True,
            "WadoRoot": "/wado",
            "Host": f"127.0.0.1:{http_port}",
            "Ssl": False,
            "StudiesMetadata": "Full",
            "SeriesMetadata": "Full",
        },
        "ConcurrentJobs": 2,
        "SaveJobs": False,
        "HttpTimeout": 30,
        "DicomScuTimeout": 15,
    }


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
        return True
    return False


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _start(name: str, aet: str, home: Path, modalities: Mapping[str, dict[str, Any]],
           http_port: int, dicom_port: int) -> OrthancInstance | str:
    """Start one Orthanc; the instance once ready, or the reason it failed (its log)."""
    (home / "db").mkdir(parents=True, exist_ok=True)
    cfg = home / "orthanc.json"
    cfg.write_text(json.dumps(_config(name, aet, home, http_port, dicom_port, modalities), indent=2))
    log_path = home / "orthanc.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([ORTHANC_BIN, str(cfg)], stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=home, start_new_session=True)
    url = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return f"Orthanc {name} exited with {proc.returncode}:\n" + log_path.read_text(errors="replace")
        try:
            r = httpx.get(url + "/system", timeout=1)
            if r.status_code == 200 and _port_open(dicom_port):
                return OrthancInstance(name=name, aet=aet, http_url=url, http_port=http_port,
                                       dicom_port=dicom_port, dicomweb_url=url + "/dicom-web", home=home,
                                       log_path=log_path, process=proc)
        except httpx.HTTPError:
            pass
        time.sleep(0.03)
    _stop(proc)
    return f"Orthanc {name} not ready after {_READY_TIMEOUT}s:\n" + log_path.read_text(errors="replace")


def start_orthanc(name: str, *, peers: Mapping[str, Modality] | None = None,
                  modalities: Mapping[str, Modality] | None = None, aet: str | None = None,
                  home: Path | None = None) -> OrthancInstance:
    """Start an Orthanc named ``name`` (AE title ``aet``, default ``name``) and return it once
    ``GET /system`` answers and its DICOM port accepts connections. Stop it with :func:`stop_orthanc`.

    ``peers`` (other PACS) and ``modalities`` (our SCU/SCP) map an AE title to ``(host, port)`` or to a
    full Orthanc ``DicomModalities`` entry; both end up in ``DicomModalities`` so Orthanc can C-MOVE or
    C-STORE to them. More can be added at run time with :meth:`OrthancInstance.add_modality`.
    """
    need_orthanc()
    aet = aet or name
    entries = {k: _modality_entry(k, v) for k, v in {**(peers or {}), **(modalities or {})}.items()}
    if home is None:
        home = Path(tempfile.mkdtemp(prefix=f"orthanc-{name.lower()}-"))
    result: OrthancInstance | str = ""
    for attempt in range(2):
        result = _start(name, aet, home / f"run{attempt}", entries, free_port(), free_port())
        if isinstance(result, OrthancInstance):
            return result
        # Retry once: the usual cause is a port taken between free_port() and Orthanc's bind().
    shutil.rmtree(home, ignore_errors=True)
    pytest.fail(str(result))


def stop_orthanc(*instances: OrthancInstance, remove: bool = True) -> None:
    """SIGTERM all of them at once (an Orthanc takes ~2 s to stop), wait, remove their storage."""
    for inst in instances:
        if inst.process.poll() is None:
            inst.process.send_signal(signal.SIGTERM)
    for inst in instances:
        _stop(inst.process)
        if inst._http is not None:
            inst._http.close()
        if remove:
            shutil.rmtree(inst.home.parent, ignore_errors=True)


@contextlib.contextmanager
def run_orthanc(name: str, *, peers: Mapping[str, Modality] | None = None,
                modalities: Mapping[str, Modality] | None = None, aet: str | None = None) -> Iterator[OrthancInstance]:
    """Context manager around :func:`start_orthanc` / :func:`stop_orthanc`."""
    inst = start_orthanc(name, peers=peers, modalities=modalities, aet=aet)
    try:
        yield inst
    finally:
        stop_orthanc(inst)


@dataclass
class OrthancPair:
    """Two PACS side by side, each declared to the other, plus the C-MOVE destination both know."""

    a: OrthancInstance
    b: OrthancInstance
    move_destination: tuple[str, int]  # (MOVE_AET, port) — declared in both instances' DicomModalities


@contextlib.contextmanager
def run_orthanc_pair() -> Iterator[OrthancPair]:
    """Start ORTHANC_A and ORTHANC_B. Both list :data:`SCU_AET` and :data:`MOVE_AET` (on a free port)
    as modalities and each other as peers."""
    move = (MOVE_AET, free_port())
    ours: dict[str, Modality] = {
        MOVE_AET: ("127.0.0.1", move[1]),
        SCU_AET: {"Host": "127.0.0.1", "Port": move[1], "AllowGet": True, "AllowMove": True, "AllowFind": True},
    }
    a = start_orthanc("ORTHANC_A", modalities=ours)
    running = [a]
    try:
        b = start_orthanc("ORTHANC_B", modalities=ours, peers={a.aet: (a.host, a.dicom_port)})
        running.append(b)
        # A's ports are only known once it runs: declare B to A at run time.
        a.add_modality(b.aet, b.host, b.dicom_port)
        yield OrthancPair(a, b, move)
    finally:
        stop_orthanc(*running)


@pytest.fixture(scope="module")
def orthanc_pair() -> Iterator[OrthancPair]:
    """Two real Orthanc instances (ORTHANC_A, ORTHANC_B) for the tests of one module."""
    with run_orthanc_pair() as pair:
        yield pair
