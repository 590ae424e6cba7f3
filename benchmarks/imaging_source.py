"""Imaging Document Source benchmarks: RAD-69 against fetching straight from the PACS, and publish latency.

Everything runs on loopback with real processes: one Orthanc (DIMSE + DICOMweb plugin, started with
``tests.orthanc``), ``xdsi registry`` (SQLite, ITI-8 listener to feed patients), ``xdsi repository``
(filesystem store) and ``xdsi imaging-source`` as subprocesses; the client side runs in this process.

1. **RAD-69** of a whole study (4 series x 50 instances of 512x512 16-bit CT, Explicit VR Little Endian;
   ``--quick``: 50 instances) through the imaging source, once with the PACS configured over DICOMweb and
   once over DIMSE (C-GET), against two baselines that fetch the same instances **straight from Orthanc**
   in the same run: WADO-RS of the study (``transfer-syntax=*``, httpx streaming the multipart body to a
   file) and a study-level C-GET with pynetdicom (each C-STORE written to a Part 10 file). The RAD-69
   client streams the MTOM response to a file the same way as the WADO-RS one. Repetitions alternate the
   four paths; medians are reported, every answer is checked afterwards (untimed: all instances there).
2. **Publish latency**: :meth:`Publisher.publish_study` of a 200-instance study (pixels do not matter here:
   64x64 images) to the repository subprocess, with its parts timed separately on the same study: the PACS
   ``study()`` tree query, building the KOS and its metadata, the RAD-68 HTTP exchange, and a direct ITI-42
   of the same metadata to the registry (the share of RAD-68 spent registering).
3. **Watcher delay**: ``xdsi imaging-source --watch --poll-interval 1 --stable-seconds 2``; a new study is
   stored in Orthanc and ITI-18 polled every 50 ms: the delay from the last instance stored to the manifest
   found in the registry.

``python -m benchmarks.imaging_source [--quick]`` (or ``python -m benchmarks imaging-source``) prints a
Markdown report; ``--json`` keeps the raw figures; ``--profile DIR`` also records a py-spy flame graph of the
imaging source serving one RAD-69 of each kind.
"""

from __future__ import annotations

import argparse
import array
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import httpx
from lxml import etree

from benchmarks import common
from benchmarks.common import log, stop_process

IDS_UID = "1.3.6.1.4.1.21367.13.80.110"
SOURCE_ID = "1.3.6.1.4.1.21367.13.80.1"
REPOSITORY_UID = "1.3.6.1.4.1.21367.13.80.120"
DOMAIN_OID = "1.3.6.1.4.1.21367.13.20.1000"
INSTITUTION = "Bench Imaging Network^^^^^^^^^1.3.6.1.4.1.21367.13.40.1"
RAD69 = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI42 = "urn:ihe:iti:2007:RegisterDocumentSet-b"
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"
TARGET_RATIO = 1.3
KINDS = ("dicomweb", "dimse")


# --- data ---------------------------------------------------------------------------------------------------


def make_ct_study(out_dir: Path, patient_id: str, *, series: int, per_series: int, size: int = 512,
                  study_date: date | str = "20240115") -> tuple[str, list[Path]]:
    """A CT study of ``series`` x ``per_series`` instances of ``size`` x ``size`` 16-bit pixels (written by
    :func:`imaging_source.pacs.samples.make_study`, then given full-size pixel data); (study uid, files)."""
    import pydicom

    from imaging_source.pacs.samples import make_study

    files = make_study(patient_id, DOMAIN_OID, out_dir=out_dir, modality="CT", series=series,
                       instances_per_series=per_series, pixel=False, study_date=study_date,
                       study_description="CT BENCH", body_part="CHEST")
    base = array.array("H", (v % 4096 for v in range(size * size + 4096)))
    if sys.byteorder != "little":
        base.byteswap()
    raw = base.tobytes()
    study_uid = ""
    for n, path in enumerate(files):
        ds = pydicom.dcmread(path)
        study_uid = str(ds.StudyInstanceUID)
        ds.Rows = ds.Columns = size
        shift = 2 * (n % 4096)  # every image different, so no two files are byte-identical
        ds.PixelData = raw[shift:shift + 2 * size * size]
        ds["PixelData"].VR = "OW"
        ds.save_as(path, enforce_file_format=True)
    return study_uid, files


# --- processes ----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _process(name: str, cmd: list[str], health_url: str, *, timeout: float = 60) -> Iterator[subprocess.Popen]:
    """Start ``cmd``, wait for ``health_url`` to answer 200, SIGTERM it (and only it) on exit."""
    # Open for the process's lifetime, closed in the finally below.
    logf = tempfile.NamedTemporaryFile(prefix=f"xdsi-{name}-", suffix=".log", delete=False)  # noqa: SIM115
    proc = subprocess.Popen(cmd, cwd=common.REPO, stdout=logf, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}: {Path(logf.name).read_text()[-3000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health_url, timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start in {timeout} s: {Path(logf.name).read_text()[-3000:]}")
            time.sleep(0.1)
        yield proc
    finally:
        stop_process(proc, logf)


@dataclass
class Domain:
    registry_url: str
    repository_url: str
    mllp: tuple[str, int]

    def feed(self, patient_id: str) -> None:
        """Announce an affinity-domain patient (ITI-8 A04) so the registry accepts its manifests."""
        from registry.mllp import send_mllp
        from registry.patient_feed import build_adt

        ack = send_mllp(*self.mllp, build_adt("A04", patient_id))
        if b"MSA|AA" not in ack:
            raise RuntimeError(f"ITI-8 feed of {patient_id} refused: {ack!r}")


@contextlib.contextmanager
def affinity_domain(work: Path) -> Iterator[Domain]:
    """``xdsi registry`` (with an ITI-8 listener) and ``xdsi repository`` as subprocesses."""
    mllp = common.free_port()
    with common.registry_server(f"sqlite:///{work / 'registry.db'}", extra=["--mllp-port", str(mllp)]) as reg:
        port = common.free_port()
        cmd = [sys.executable, "-m", "xdsi.cli", "repository", "--port", str(port), "--registry", reg.url,
               "--repository-id", REPOSITORY_UID, "--store", str(work / "documents"),
               "--db", f"sqlite:///{work / 'ledger.db'}"]
        with _process("repository", cmd, f"http://127.0.0.1:{port}/health"):
            yield Domain(reg.url, f"http://127.0.0.1:{port}/repository", ("127.0.0.1", mllp))


def config_toml(orthanc: Any, kind: str, domain: Domain, scu_aet: str) -> str:
    """An imaging source configuration with one PACS: the Orthanc over ``kind`` (dicomweb or dimse)."""
    pacs = (f'protocol = "dicomweb"\ndicomweb_url = "{orthanc.dicomweb_url}"\nae_title = "{orthanc.aet}"\n'
            if kind == "dicomweb" else
            f'protocol = "dimse"\nae_title = "{orthanc.aet}"\nhost = "127.0.0.1"\nport = {orthanc.dicom_port}\n'
            f'calling_ae_title = "{scu_aet}"\nretrieve = "c-get"\ntimeout = 120\n')
    return (f'repository_unique_id = "{IDS_UID}"\nsource_id = "{SOURCE_ID}"\n'
            f'repository_url = "{domain.repository_url}"\nregistry_url = "{domain.registry_url}"\n'
            f'affinity_domain_oid = "{DOMAIN_OID}"\ninstitution = "{INSTITUTION}"\n\n'
            f'[[pacs]]\nname = "bench-{kind}"\n{pacs}patient_id_mapping = {{ domain_issuer = true }}\n')


@contextlib.contextmanager
def imaging_source(work: Path, config: Path, *, watch: bool = False) -> Iterator[tuple[str, subprocess.Popen]]:
    """``xdsi imaging-source`` as a subprocess; yields (RAD-69 URL, process)."""
    port = common.free_port()
    cmd = [sys.executable, "-m", "xdsi.cli", "imaging-source", "--pacs", str(config), "--port", str(port),
           "--db", f"sqlite:///{work / (config.stem + ('-watch' if watch else '') + '-state.db')}"]
    if watch:
        cmd += ["--watch", "--poll-interval", "1", "--stable-seconds", "2"]
    with _process("imaging-source", cmd, f"http://127.0.0.1:{port}/health") as proc:
        yield f"http://127.0.0.1:{port}/imaging-source", proc


# --- the four ways of fetching a study ----------------------------------------------------------------------


def rad69_body(tree: Any, syntaxes: tuple[str, ...] = (EXPLICIT_LE, IMPLICIT_LE)) -> str:
    """A RetrieveImagingDocumentSetRequest for every instance of a study tree."""
    out = [('<xdsiB:RetrieveImagingDocumentSetRequest xmlns:xdsiB="urn:ihe:rad:xdsi-b:2009" '
           'xmlns:xdsb="urn:ihe:iti:xds-b:2007">'
           f'<xdsiB:StudyRequest studyInstanceUID="{escape(tree.study_instance_uid)}">')]
    for s in tree.series:
        out.append(f'<xdsiB:SeriesRequest seriesInstanceUID="{escape(s.series_instance_uid)}">')
        for i in s.instances:
            out.append(f"<xdsb:DocumentRequest><xdsb:RepositoryUniqueId>{IDS_UID}</xdsb:RepositoryUniqueId>"
                       f"<xdsb:DocumentUniqueId>{escape(i.sop_instance_uid)}</xdsb:DocumentUniqueId>"
                       "</xdsb:DocumentRequest>")
        out.append("</xdsiB:SeriesRequest>")
    out.append("</xdsiB:StudyRequest><xdsiB:TransferSyntaxUIDList>")
    out += [f"<xdsiB:TransferSyntaxUID>{t}</xdsiB:TransferSyntaxUID>" for t in syntaxes]
    out.append("</xdsiB:TransferSyntaxUIDList></xdsiB:RetrieveImagingDocumentSetRequest>")
    return "".join(out)


def _stream_to(resp: httpx.Response, dest: Path) -> int:
    n = 0
    with open(dest, "wb") as f:
        for chunk in resp.iter_raw(1 << 20):
            f.write(chunk)
            n += len(chunk)
    return n


def fetch_rad69(client: httpx.Client, url: str, body: str, dest: Path,
                heads: list[float] | None = None) -> tuple[int, str]:
    """POST the RAD-69 request, stream the MTOM answer to ``dest``; (bytes, content type). The time until
    the response headers (the imaging source answers once every instance is in its spool) is appended
    to ``heads``."""
    data = common.soap_request(RAD69, body, url)
    t0 = time.perf_counter()
    with client.stream("POST", url, content=data, headers={"Content-Type": common.SOAP_CT % RAD69}) as r:
        if heads is not None:
            heads.append(time.perf_counter() - t0)
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"RAD-69 HTTP {r.status_code}: {r.text[:500]}")
        return _stream_to(r, dest), r.headers["content-type"]


def fetch_wado(client: httpx.Client, dicomweb_url: str, study_uid: str, dest: Path) -> tuple[int, str]:
    """WADO-RS of the whole study as stored (``transfer-syntax=*``), streamed to ``dest``."""
    from imaging_source.pacs.dicomweb import WADO_ACCEPT

    with client.stream("GET", f"{dicomweb_url}/studies/{study_uid}", headers={"Accept": WADO_ACCEPT}) as r:
        if r.status_code != 200:
            r.read()
            raise RuntimeError(f"WADO-RS HTTP {r.status_code}: {r.text[:500]}")
        return _stream_to(r, dest), r.headers["content-type"]


def fetch_cget(orthanc: Any, scu_aet: str, study_uid: str, sop_class: str, dest_dir: Path) -> int:
    """A study-level C-GET, each C-STORE written as received to ``dest_dir/<uid>.dcm``; returns the count."""
    from pynetdicom import AE, build_role, evt

    from imaging_source.pacs.dimse import GET_MODEL, write_part10

    dest_dir.mkdir(parents=True, exist_ok=True)
    count = 0

    def on_store(event: Any) -> int:
        nonlocal count
        write_part10(dest_dir, str(event.request.AffectedSOPInstanceUID), event.encoded_dataset(include_meta=True))
        count += 1
        return 0x0000

    ae = AE(ae_title=scu_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 120
    ae.add_requested_context(GET_MODEL, [EXPLICIT_LE])
    ae.add_requested_context(sop_class, [EXPLICIT_LE])
    assoc = ae.associate(orthanc.host, orthanc.dicom_port, ae_title=orthanc.aet,
                         ext_neg=[build_role(sop_class, scp_role=True)], evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise RuntimeError("C-GET: association refused")
    try:
        from pydicom.dataset import Dataset

        ident = Dataset()
        ident.QueryRetrieveLevel = "STUDY"
        ident.StudyInstanceUID = study_uid
        for status, _ in assoc.send_c_get(ident, GET_MODEL):
            if status is None or getattr(status, "Status", None) is None:
                raise RuntimeError("C-GET: no response")
            if status.Status not in (0xFF00, 0xFF01, 0x0000):
                raise RuntimeError(f"C-GET failed: 0x{status.Status:04X}")
    finally:
        assoc.release()
    return count


def _parts(path: Path, content_type: str) -> tuple[bytes, dict[str, bytes]]:
    from conformance.wire import split_multipart

    return split_multipart(path.read_bytes(), content_type)


def check_rad69(path: Path, content_type: str, n: int) -> None:
    root, parts = _parts(path, content_type)
    if b'status="urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success"' not in root:
        raise RuntimeError(f"RAD-69 not Success: {root[:3000]!r}")
    if len(parts) != n:
        raise RuntimeError(f"RAD-69 returned {len(parts)} documents, expected {n}")


def check_wado(path: Path, content_type: str, n: int) -> None:
    # WADO-RS parts have no Content-ID (split_multipart keys parts by it): count the delimiter lines.
    from imaging_source.pacs.dicomweb import _boundary

    count = path.read_bytes().count(b"--" + _boundary(content_type).encode() + b"\r\n")
    if count != n:
        raise RuntimeError(f"WADO-RS returned {count} parts, expected {n}")


def _clear(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)
    os.sync()  # write-back of this run's files must not land in the next one's time


def bench_rad69(orthanc: Any, scu_aet: str, urls: dict[str, str], study_uid: str, tree: Any, *, reps: int,
                work: Path, ids_pids: dict[str, int] | None = None) -> dict:
    """Median wall times of the four paths over ``reps`` alternating rounds (one untimed warm-up round), and
    the median CPU time each one cost Orthanc, the imaging source and the client (this process)."""
    n = sum(len(s.instances) for s in tree.series)
    sop_class = tree.series[0].instances[0].sop_class_uid
    body = rad69_body(tree)
    client = httpx.Client(timeout=600, trust_env=False)
    out_file, out_dir = work / "fetched.bin", work / "fetched"
    heads: dict[str, list[float]] = {k: [] for k in urls}  # RAD-69: time to the response headers
    paths = {
        "wado": lambda: fetch_wado(client, orthanc.dicomweb_url, study_uid, out_file),
        "cget": lambda: fetch_cget(orthanc, scu_aet, study_uid, sop_class, out_dir),
        **{f"ids_{k}": (lambda u=u, k=k: fetch_rad69(client, u, body, out_file, heads[k]))
           for k, u in urls.items()},
    }
    times: dict[str, list[float]] = {k: [] for k in paths}
    cpu: dict[str, list[tuple[float, float, float]]] = {k: [] for k in paths}
    sizes: dict[str, int] = {}
    try:
        for rnd in range(reps + 1):
            for name, fn in paths.items():
                ids_pid = (ids_pids or {}).get(name[4:]) if name.startswith("ids_") else None
                c0 = (common.cpu_seconds(orthanc.process.pid), common.cpu_seconds(ids_pid) if ids_pid else 0.0,
                      time.process_time())
                t0 = time.perf_counter()
                got = fn()
                dt = time.perf_counter() - t0
                c1 = (common.cpu_seconds(orthanc.process.pid), common.cpu_seconds(ids_pid) if ids_pid else 0.0,
                      time.process_time())
                if name == "cget":
                    if got != n:
                        raise RuntimeError(f"C-GET delivered {got} instances, expected {n}")
                    sizes[name] = sum(f.stat().st_size for f in out_dir.iterdir())
                    _clear(out_dir)
                else:
                    nbytes, ctype = got
                    sizes[name] = nbytes
                    (check_wado if name == "wado" else check_rad69)(out_file, ctype, n)
                    _clear(out_file)
                if rnd:  # round 0 warms Orthanc's and the servers' caches
                    times[name].append(dt)
                    cpu[name].append(tuple(b - a for a, b in zip(c0, c1)))  # type: ignore[arg-type]
                log(f"  {name:12} {dt * 1e3:8.0f} ms" + ("" if rnd else " (warm-up)"))
    finally:
        client.close()
    med = {k: statistics.median(v) for k, v in times.items()}
    head_med = {k: statistics.median(v[1:]) for k, v in heads.items()}  # v[0]: the warm-up round
    cpu_med = {k: {who: statistics.median(c[i] for c in v) for i, who in enumerate(("orthanc", "ids", "client"))}
               for k, v in cpu.items()}
    return {"instances": n, "bytes": sizes, "times_s": times, "median_s": med, "headers_median_s": head_med,
            "cpu_median_s": cpu_med,
            "ratios": {f"{ids} / {base}": med[ids] / med[base] for ids in med if ids.startswith("ids_")
                       for base in ("wado", "cget")}}


def publish_once(config_path: Path, db: Path, study_uid: str, work: Path) -> None:
    """Publish the study with the state database the imaging source process will use, so RAD-69 finds
    its PACS in the state table (as for any study whose manifest a consumer found)."""
    from imaging_source.app import ImagingSource
    from imaging_source.config import load_config

    ids = ImagingSource(load_config(config_path), db_url=f"sqlite:///{db}", spool_dir=str(work / "spool"))
    try:
        result = ids.publisher.publish_study(ids.config.pacs[0].name, study_uid)
        if not result.ok:
            raise RuntimeError(f"publishing the RAD-69 study: {result.outcome} {result.message}")
    finally:
        ids.close()


# --- publish latency ----------------------------------------------------------------------------------------


def bench_publish(config_path: Path, domain: Domain, study_uid: str, *, reps: int, work: Path) -> dict:
    """``publish_study`` wall time (the state row removed before each repetition, so each one is a first
    publication), then its parts timed one by one on the same study."""
    from sqlalchemy import delete

    from imaging_source import state
    from imaging_source.app import ImagingSource
    from imaging_source.config import load_config
    from imaging_source.manifest import kos_bytes, kos_for, submission_for
    from imaging_source.publish import ITI41, PUBLISHED
    from xdsi.soap.client import call, call_mtom
    from xdsi.transform.ebrim_write import write_provide_and_register, write_submission

    config = load_config(config_path)
    ids = ImagingSource(config, db_url=f"sqlite:///{work / (config_path.stem + '-publish.db')}",
                        spool_dir=str(work / "spool"))
    pacs = config.pacs[0].name
    adapter = ids.adapters[pacs]
    out: dict[str, list[float]] = {"publish_study": [], "study_query": [], "kos_and_metadata": [], "rad68_http": [],
                                   "iti42_direct": []}
    try:
        for rnd in range(reps + 1):
            with ids.engine.begin() as conn:
                conn.execute(delete(state.published_study))
            t0 = time.perf_counter()
            result = ids.publisher.publish_study(pacs, study_uid)
            t_pub = time.perf_counter() - t0
            if result.outcome != PUBLISHED:
                raise RuntimeError(f"publish_study: {result.outcome} {result.message}")
            # The same steps, one at a time.
            t0 = time.perf_counter()
            study = adapter.study(study_uid)
            t_study = time.perf_counter() - t0
            assert study is not None
            domain_pid = config.domain_patient_id(pacs, study.patient_id, study.issuer_of_patient_id)
            assert domain_pid is not None
            t0 = time.perf_counter()
            kos = kos_for(study, config)
            data = kos_bytes(kos)
            sub = submission_for(study, kos, data, config=config, domain_patient_id=domain_pid)
            de = sub.documents[0]
            cid = f"kos.{uuid.uuid4().hex}@bench"
            request = write_provide_and_register(sub, {de.id: cid})
            t_kos = time.perf_counter() - t0
            t0 = time.perf_counter()
            resp = call_mtom(config.repository_url, ITI41, request, [(cid, "application/dicom", data)],
                             client=ids.publisher.http)
            t_rad68 = time.perf_counter() - t0
            if "Success" not in resp.get("status", ""):
                raise RuntimeError(f"RAD-68: {etree.tostring(resp)[:2000]!r}")
            # What the repository sends on: the same metadata with repositoryUniqueId (new ids and uniqueIds).
            sub2 = submission_for(study, kos, data, config=config, domain_patient_id=domain_pid)
            sub2.documents[0].repository_unique_id = REPOSITORY_UID
            sub2.documents[0].unique_id = "2.25." + str(uuid.uuid4().int)
            t0 = time.perf_counter()
            resp = call(domain.registry_url, ITI42, write_submission(sub2), client=ids.publisher.http)
            t_42 = time.perf_counter() - t0
            if "Success" not in resp.get("status", ""):
                raise RuntimeError(f"ITI-42: {etree.tostring(resp)[:2000]!r}")
            if rnd:
                for k, val in (("publish_study", t_pub), ("study_query", t_study), ("kos_and_metadata", t_kos),
                               ("rad68_http", t_rad68), ("iti42_direct", t_42)):
                    out[k].append(val)
            log(f"  publish {t_pub * 1e3:.0f} ms: study() {t_study * 1e3:.0f}, KOS {t_kos * 1e3:.0f}, "
                f"RAD-68 {t_rad68 * 1e3:.0f} (ITI-42 alone {t_42 * 1e3:.0f})" + ("" if rnd else " (warm-up)"))
    finally:
        ids.close()
    return {"times_s": out, "median_s": {k: statistics.median(v) for k, v in out.items()},
            "kos_bytes": len(data), "instances": sum(1 for _ in study.instances())}


def study_uid_of(path: Path) -> str:
    import pydicom

    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def found_in_registry(client: httpx.Client, registry_url: str, patient_id: str) -> int:
    """How many Approved DocumentEntries ITI-18 FindDocuments returns for the patient."""
    from xdsi.ebxml.namespaces import RIM, q
    from xdsi.ebxml.query import find_documents
    from xdsi.soap.client import call

    result = call(registry_url, ITI18, find_documents(patient_id), client=client)
    return sum(1 for _ in result.iter(q(RIM, "ExtrinsicObject")))


def bench_watcher(orthanc: Any, config_path: Path, domain: Domain, work: Path, *, series: int, per_series: int,
                  runs: int) -> dict:
    """Delay from the last instance stored to the manifest visible in ITI-18, watcher polling every 1 s and
    publishing after 2 s without change. Each run stores a new study of a new patient."""
    from imaging_source.pacs.samples import make_study, store_files

    delays, store_times = [], []
    client = httpx.Client(timeout=30, trust_env=False)
    with imaging_source(work, config_path, watch=True):
        for run in range(runs):
            pid = f"W{uuid.uuid4().hex[:10].upper()}"
            domain.feed(f"{pid}^^^&{DOMAIN_OID}&ISO")
            files = make_study(pid, DOMAIN_OID, out_dir=work / f"watch-{pid}", series=series,
                               instances_per_series=per_series, study_date=date.today())
            uid = study_uid_of(files[0])
            t0 = time.perf_counter()
            store_files(files, http_url=orthanc.http_url)
            t_stored = time.perf_counter()
            while not found_in_registry(client, domain.registry_url, f"{pid}^^^&{DOMAIN_OID}&ISO"):
                if time.perf_counter() - t_stored > 60:
                    raise RuntimeError("the watcher did not publish within 60 s")
                time.sleep(0.05)
            delays.append(time.perf_counter() - t_stored)
            store_times.append(t_stored - t0)
            log(f"  watcher: stored {len(files)} instances in {store_times[-1]:.1f} s, manifest in ITI-18 "
                f"{delays[-1]:.2f} s after the last one")
            shutil.rmtree(work / f"watch-{pid}", ignore_errors=True)
            # Remove the study so the next watcher does not publish it too; let this one withdraw it first.
            for hit in orthanc.http.post("/tools/lookup", content=uid).json():
                if hit.get("Type") == "Study":
                    orthanc.http.delete(f"/studies/{hit['ID']}").raise_for_status()
            time.sleep(1.5)
    client.close()
    return {"delays_s": delays, "median_s": statistics.median(delays), "store_s": store_times,
            "poll_interval_s": 1, "stable_seconds": 2}


# --- profiling ----------------------------------------------------------------------------------------------


def profile_rad69(url: str, proc: subprocess.Popen, body: str, dest: Path, svg: Path,
                  spy_options: list[str]) -> str:
    """py-spy record (collapsed stacks, with ``spy_options``: rate and which samples) of the imaging source
    process serving RAD-69 (3 requests); returns the output path."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not os.access(spy, os.X_OK):
        return "py-spy not installed"
    rec = subprocess.Popen([spy, "record", "--pid", str(proc.pid), "--subprocesses", *spy_options, "--format", "raw",
                            "--output", str(svg), "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)
    with httpx.Client(timeout=600, trust_env=False) as client:
        for _ in range(3):
            fetch_rad69(client, url, body, dest)
            dest.unlink(missing_ok=True)
    rec.send_signal(2)  # SIGINT: py-spy writes the flame graph and exits
    rec.wait(60)
    return str(svg)


# --- report -------------------------------------------------------------------------------------------------


def markdown(results: dict) -> str:
    m = results["machine"]
    out = [(f"Run: {m['date']}; `{results['command']}`; {m['cpu']} ({m['nproc']} vCPU), {m['memory']}, "
           f"Python {m['python']}, Orthanc {results.get('orthanc', '?')}; load average {m['loadavg']} at start, "
           f"{results.get('loadavg_end', '?')} at end")]
    targets = []
    if "rad69" in results:
        r = results["rad69"]
        med = r["median_s"]
        mib = r["bytes"]["cget"] / 2**20
        out += ["", (f"**RAD-69 of a whole study**: {r['instances']} CT instances of {results['size']}x"
                f"{results['size']} 16-bit ({mib:.0f} MiB of DICOM), median of {len(r['times_s']['wado'])} "
                "alternating rounds"), "",
                "| Path | Median | MiB/s | vs WADO-RS direct | vs C-GET direct | CPU: Orthanc / imaging source / client |",
                "|---|---:|---:|---:|---:|---:|"]
        names = {"wado": "WADO-RS from Orthanc (direct)", "cget": "C-GET from Orthanc (direct, pynetdicom)",
                 "ids_dicomweb": "RAD-69 via imaging source, PACS over DICOMweb",
                 "ids_dimse": "RAD-69 via imaging source, PACS over DIMSE C-GET"}
        for k, label in names.items():
            c = r["cpu_median_s"][k]
            cpu = f"{c['orthanc'] * 1e3:,.0f} / {c['ids'] * 1e3:,.0f} / {c['client'] * 1e3:,.0f} ms" if k.startswith("ids_") \
                else f"{c['orthanc'] * 1e3:,.0f} / - / {c['client'] * 1e3:,.0f} ms"
            out.append(f"| {label} | {med[k] * 1e3:,.0f} ms | {mib / med[k]:,.0f} | {med[k] / med['wado']:.2f}x | "
                       f"{med[k] / med['cget']:.2f}x | {cpu} |")
        heads = r["headers_median_s"]
        out += ["", "RAD-69 time to the response headers, the rest is the answer's body: "
                + ", ".join(f"{k} {heads[k] * 1e3:,.0f} ms of {med['ids_' + k] * 1e3:,.0f} ms" for k in heads)]
        for kind, base, label in (("dicomweb", "wado", "WADO-RS"), ("dimse", "cget", "C-GET")):
            ratio = med[f"ids_{kind}"] / med[base]
            targets.append(f"| RAD-69 via IDS ({kind}) <= {TARGET_RATIO}x direct {label} | {ratio:.2f}x | "
                           f"{'yes' if ratio <= TARGET_RATIO else '**no**'} |")
    if "publish" in results:
        p = results["publish"]
        out += ["", (f"**Publish latency** (`Publisher.publish_study`, {p[KINDS[0]]['instances']}-instance study, "
                "registry and repository as subprocesses, median)"), "",
                "| PACS | publish_study | PACS `study()` query | KOS + metadata | RAD-68 HTTP | of which ITI-42 (direct) |",
                "|---|---:|---:|---:|---:|---:|"]
        for kind in KINDS:
            pm = p[kind]["median_s"]
            out.append(f"| {kind} | {pm['publish_study'] * 1e3:.0f} ms | {pm['study_query'] * 1e3:.0f} ms | "
                       f"{pm['kos_and_metadata'] * 1e3:.0f} ms | {pm['rad68_http'] * 1e3:.0f} ms | "
                       f"{pm['iti42_direct'] * 1e3:.0f} ms |")
    if "watcher" in results:
        w = results["watcher"]
        out += ["", ("**Watcher end to end** (`--poll-interval 1 --stable-seconds 2`): last instance stored -> "
                "manifest found by ITI-18"), "", "| PACS | Runs | Delays | Median |", "|---|---:|---|---:|"]
        for kind in KINDS:
            wk = w[kind]
            out.append(f"| {kind} | {len(wk['delays_s'])} | {', '.join(f'{d:.2f} s' for d in wk['delays_s'])} | "
                       f"{wk['median_s']:.2f} s |")
    if targets:
        out += ["", "| Target | Measured | Met |", "|---|---|---|", *targets]
    if results.get("profiles"):
        out += ["", "Flame graphs: " + ", ".join(f"{k}: `{v}`" for k, v in results["profiles"].items())]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.imaging_source", description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="a 50-instance study, fewer repetitions")
    ap.add_argument("--series", type=int, default=None, help="series of the RAD-69 study (4; quick 2)")
    ap.add_argument("--per-series", type=int, default=None, help="instances per series (50; quick 25)")
    ap.add_argument("--size", type=int, default=512, help="image rows = columns (512)")
    ap.add_argument("--reps", type=int, default=None, help="timed rounds (5; quick 3)")
    ap.add_argument("--watch-runs", type=int, default=None, help="watcher runs per PACS kind (3; quick 1)")
    ap.add_argument("--profile", default=None, metavar="DIR", help="also record py-spy flame graphs of RAD-69")
    ap.add_argument("--profile-options", default="--rate 200 --idle", metavar="OPTIONS",
                    help="py-spy record options for --profile ('--rate 200 --idle'; '--rate 1000' for CPU samples "
                         "only, '--gil' for the GIL holder's)")
    ap.add_argument("--only", choices=("rad69", "publish", "watcher"), action="append",
                    help="run only these parts (repeatable)")
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument("--markdown", default=None, help="write the Markdown report here too")
    args = ap.parse_args(argv)
    series = args.series or (2 if args.quick else 4)
    per_series = args.per_series or (25 if args.quick else 50)
    reps = args.reps or (3 if args.quick else 5)
    watch_runs = args.watch_runs or (1 if args.quick else 3)
    parts = set(args.only or ("rad69", "publish", "watcher"))

    from imaging_source.pacs.dicomweb import DicomWebAdapter
    from imaging_source.pacs.samples import make_study, store_files
    from tests.orthanc import SCU_AET, start_orthanc, stop_orthanc

    results: dict = {"command": "python -m " + " ".join(["benchmarks.imaging_source",
                                                          *(argv if argv is not None else sys.argv[1:])]),
                     "machine": common.machine(), "size": args.size, "series": series, "per_series": per_series}
    log(f"machine: {results['machine']}")
    work = Path(tempfile.mkdtemp(prefix="ids-bench-", dir=common.WORK_DIR if common.WORK_DIR.exists() else None))
    orthanc = start_orthanc("BENCH_PACS", modalities={
        SCU_AET: {"Host": "127.0.0.1", "Port": 104, "AllowGet": True, "AllowMove": True, "AllowFind": True}})
    try:
        results["orthanc"] = orthanc.get("/system").get("Version", "?")
        log(f"writing a study of {series}x{per_series} {args.size}x{args.size} CT instances")
        study_uid, files = make_ct_study(work / "study", "BENCH1", series=series, per_series=per_series,
                                         size=args.size)
        t0 = time.perf_counter()
        store_files(files, http_url=orthanc.http_url)
        log(f"stored in Orthanc in {time.perf_counter() - t0:.1f} s")
        shutil.rmtree(work / "study")
        with DicomWebAdapter("tree", orthanc.dicomweb_url) as a:
            tree = a.study(study_uid)
        assert tree is not None
        # The publish study: same shape, small pixels (publishing reads no pixel data).
        pub_files = make_study("BENCH2", DOMAIN_OID, out_dir=work / "pub", series=series,
                               instances_per_series=per_series, study_date="20240116")
        store_files(pub_files, http_url=orthanc.http_url)
        pub_uid = study_uid_of(pub_files[0])

        with affinity_domain(work) as domain:
            domain.feed(f"BENCH1^^^&{DOMAIN_OID}&ISO")
            domain.feed(f"BENCH2^^^&{DOMAIN_OID}&ISO")
            configs = {}
            for kind in KINDS:
                configs[kind] = work / f"ids-{kind}.toml"
                configs[kind].write_text(config_toml(orthanc, kind, domain, SCU_AET))
            if "rad69" in parts:
                for kind, c in configs.items():  # as in real use: consumers retrieve studies they found
                    publish_once(c, work / (c.stem + "-state.db"), study_uid, work)
                with contextlib.ExitStack() as stack:
                    servers = {k: stack.enter_context(imaging_source(work, c)) for k, c in configs.items()}
                    log("RAD-69 vs direct")
                    results["rad69"] = bench_rad69(orthanc, SCU_AET, {k: u for k, (u, _) in servers.items()},
                                                   study_uid, tree, reps=reps, work=work,
                                                   ids_pids={k: p.pid for k, (_, p) in servers.items()})
                    if args.profile:
                        prof = Path(args.profile)
                        prof.mkdir(parents=True, exist_ok=True)
                        results["profiles"] = {k: profile_rad69(u, p, rad69_body(tree), work / "prof.bin",
                                                                prof / f"rad69-{k}.txt", args.profile_options.split())
                                               for k, (u, p) in servers.items()}
            if "publish" in parts:
                results["publish"] = {}
                for kind in KINDS:
                    log(f"publish latency, {kind}")
                    results["publish"][kind] = bench_publish(configs[kind], domain, pub_uid, reps=reps, work=work)
            if "watcher" in parts:
                results["watcher"] = {}
                for kind in KINDS:
                    log(f"watcher, {kind}")
                    results["watcher"][kind] = bench_watcher(orthanc, configs[kind], domain, work, series=series,
                                                             per_series=per_series, runs=watch_runs)
    finally:
        stop_orthanc(orthanc)
        shutil.rmtree(work, ignore_errors=True)
    results["loadavg_end"] = common.machine()["loadavg"]
    common.publish_results(results, markdown(results), json_path=args.json, stem="ids-results",
                           markdown_path=args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
