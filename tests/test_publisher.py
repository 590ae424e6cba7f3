"""Publishing end to end on real peers: one Orthanc PACS (DICOMweb), a registry and a repository served
over HTTP in this process, and the imaging source's watcher and command line.

* :class:`Watcher` with a fake clock: a new study is left alone until stable, then published (RAD-68); an
  instance added makes it unstable again, then a replacing manifest (RPLC) deprecates the first; the study
  deleted from the PACS gets its manifest deprecated (ITI-57) -- each outcome checked with ITI-18.
* ``xdsi publish --study`` / ``--since`` and ``xdsi imaging-source`` as real subprocesses with a TOML
  configuration written here: output lines and exit codes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import httpx
import pydicom
import pytest

from imaging_source.app import ImagingSource
from imaging_source.config import load_config
from imaging_source.pacs.samples import make_study, store_files
from imaging_source.publish import PUBLISHED, REPLACED, WITHDRAWN, Watcher
from tests.conftest import REPO, free_port, start_registry, start_repository
from tests.orthanc import OrthancInstance, run_orthanc
from tests.test_imaging_source import DOMAIN_OID, IDS_UID, ITI18
from xdsi.ebxml.namespaces import RIM, q
from xdsi.ebxml.query import find_documents
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import call

PACS = "hospital-c"
ISSUER = "1.3.6.1.4.1.21367.13.32.1"  # the PACS's own assigning authority


@pytest.fixture(scope="module")
def pacs() -> Iterator[OrthancInstance]:
    with run_orthanc("ORTHANC_C") as inst:
        yield inst


@pytest.fixture
def domain(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A registry and a repository over real HTTP (in this process), and the imaging source's TOML file."""
    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}") as reg, \
            start_repository(reg.url, tmp_path / "repository") as repo:
        yield reg, repo


def write_config(path: Path, pacs: OrthancInstance, registry_url: str, repository_url: str) -> Path:
    """An imaging source configuration (TOML) with the Orthanc as a DICOMweb PACS whose local ids
    ``C-<n>`` are the affinity-domain ids ``DOM-<n>``."""
    path.write_text(f"""\
repository_unique_id = "{IDS_UID}"
source_id = "1.3.6.1.4.1.21367.13.80.1"
repository_url = "{repository_url}"
registry_url = "{registry_url}"
affinity_domain_oid = "{DOMAIN_OID}"
institution = "Test Imaging Network^^^^^^^^^1.3.6.1.4.1.21367.13.40.1"

[[pacs]]
name = "{PACS}"
protocol = "dicomweb"
dicomweb_url = "{pacs.dicomweb_url}"
ae_title = "{pacs.aet}"
default_issuer = "{ISSUER}"
patient_id_mapping = {{ strip_prefix = "C-", prefix = "DOM-" }}
""")
    return path


def domain_pid(local: str) -> str:
    return f"DOM-{local.removeprefix('C-')}^^^&{DOMAIN_OID}&ISO"


def entries(registry_url: str, patient_id: str, status: str = v.STATUS_APPROVED) -> set[str]:
    """uniqueIds of the patient's DocumentEntries with ``status`` (ITI-18 FindDocuments)."""
    result = call(registry_url, ITI18, find_documents(patient_id, statuses=(status,)))
    return {ei.get("value") for eo in result.iter(q(RIM, "ExtrinsicObject"))
            for ei in eo.iter(q(RIM, "ExternalIdentifier")) if ei.get("identificationScheme") == v.DE_UNIQUE_ID}


def new_study(pacs: OrthancInstance, out: Path, local_pid: str, *, study_date: date | str,
              study_uid: str | None = None, series: int = 1, instances: int = 2) -> str:
    files = make_study(local_pid, ISSUER, out_dir=out, series=series, instances_per_series=instances,
                       study_date=study_date, study_uid=study_uid)
    store_files(files, http_url=pacs.http_url)
    return str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)


def delete_study(pacs: OrthancInstance, study_uid: str) -> None:
    hits = [h["ID"] for h in pacs.http.post("/tools/lookup", content=study_uid).json() if h["Type"] == "Study"]
    assert hits, study_uid
    pacs.http.delete(f"/studies/{hits[0]}").raise_for_status()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_watcher_publishes_when_stable_replaces_on_change_withdraws_on_delete(pacs, domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reg, repo = domain
    pid = domain_pid("C-101")
    reg.feed(pid)
    ids = ImagingSource(load_config(write_config(tmp_path / "ids.toml", pacs, reg.url, repo.url)),
                        db_url=f"sqlite:///{tmp_path / 'ids.db'}", spool_dir=str(tmp_path / "spool"))
    clock = FakeClock()
    watcher = Watcher(ids.publisher, stable_seconds=60, clock=clock)
    try:
        uid = new_study(pacs, tmp_path / "s1", "C-101", study_date=date.today())

        # Seen for the first time, then unchanged for less than stable_seconds: not published.
        assert watcher.poll() == []
        clock.now += 59
        assert watcher.poll() == []
        assert entries(reg.url, pid) == set()

        # Unchanged for stable_seconds: published.
        clock.now += 1
        [first] = watcher.poll()
        assert (first.outcome, first.study_instance_uid, first.pacs) == (PUBLISHED, uid, PACS), first.message
        assert entries(reg.url, pid) == {first.document_unique_id}
        clock.now += 60
        assert watcher.poll() == []  # nothing changed: nothing sent

        # An instance arrives: the study is unstable again, then its new manifest replaces the first.
        new_study(pacs, tmp_path / "s2", "C-101", study_date=date.today(), study_uid=uid, instances=1)
        assert watcher.poll() == []
        clock.now += 30
        assert watcher.poll() == []
        assert entries(reg.url, pid) == {first.document_unique_id}
        clock.now += 30
        [second] = watcher.poll()
        assert second.outcome == REPLACED, second.message
        assert second.document_unique_id != first.document_unique_id
        assert entries(reg.url, pid) == {second.document_unique_id}
        assert entries(reg.url, pid, v.STATUS_DEPRECATED) == {first.document_unique_id}

        # The study leaves the PACS: its manifest is deprecated at the next poll, without waiting.
        delete_study(pacs, uid)
        [gone] = watcher.poll()
        assert (gone.outcome, gone.study_instance_uid) == (WITHDRAWN, uid), gone.message
        assert entries(reg.url, pid) == set()
        assert entries(reg.url, pid, v.STATUS_DEPRECATED) == {first.document_unique_id, second.document_unique_id}
        assert watcher.poll() == []
    finally:
        ids.close()


# --- the command line -----------------------------------------------------------------------------------


def xdsi(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "xdsi.cli", *args], check=False, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "NO_COLOR": "1"})


def test_publish_command_study_and_since(pacs, domain, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    reg, repo = domain
    config = write_config(tmp_path / "ids.toml", pacs, reg.url, repo.url)
    db = f"sqlite:///{tmp_path / 'ids.db'}"
    reg.feed(domain_pid("C-201"), domain_pid("C-202"))
    one = new_study(pacs, tmp_path / "a", "C-201", study_date="20190301")

    done = xdsi("publish", "--config", str(config), "--pacs", PACS, "--study", one, "--db", db)
    assert done.returncode == 0, done.stdout + done.stderr
    [line] = [ln for ln in done.stdout.splitlines() if one in ln]
    assert line.split()[:3] == [PUBLISHED, PACS, one]
    assert entries(reg.url, domain_pid("C-201")) == {line.split()[3]}
    assert "1 published or current, 0 failed" in done.stdout

    again = xdsi("publish", "--config", str(config), "--pacs", PACS, "--study", one, "--db", db)
    assert again.returncode == 0 and f"unchanged        {PACS} {one}" in again.stdout, again.stdout + again.stderr

    # The state keeps the manifest's tree digest (RAD-69 streams requests that match it); a row kept from
    # before the column existed gets it at the next check, without a new manifest.
    from sqlalchemy import create_engine, update

    from imaging_source import state
    from imaging_source.pacs.dicomweb import DicomWebAdapter

    with DicomWebAdapter(PACS, pacs.dicomweb_url) as adapter:
        tree = adapter.study(one)
    assert tree is not None
    expected = state.tree_digest((s.series_instance_uid, i.sop_instance_uid) for s, i in tree.instances())
    engine = create_engine(db)
    try:
        with engine.begin() as conn:
            assert state.get(conn, one).tree_digest == expected
            conn.execute(update(state.published_study).values(tree_digest=None))
        third = xdsi("publish", "--config", str(config), "--pacs", PACS, "--study", one, "--db", db)
        assert f"unchanged        {PACS} {one}" in third.stdout, third.stdout + third.stderr
        with engine.connect() as conn:
            assert state.get(conn, one).tree_digest == expected
    finally:
        engine.dispose()

    # --since: a new study of a mapped patient is published, one whose patient has no domain id is
    # reported on its own line and makes the command fail; the study published before stays as it is.
    two = new_study(pacs, tmp_path / "b", "C-202", study_date="20190302")
    stray = new_study(pacs, tmp_path / "c", "X-999", study_date="20190302")
    new_study(pacs, tmp_path / "d", "C-203", study_date="20190310")  # after --until: not touched
    since = xdsi("publish", "--config", str(config), "--pacs", PACS, "--since", "2019-03-01", "--until",
                 "2019-03-05", "--db", db)
    assert since.returncode == 1, since.stdout + since.stderr
    [bad] = [ln for ln in since.stdout.splitlines() if stray in ln]
    assert bad.startswith("unmapped-patient") and "'X-999'" in bad and "no affinity-domain id" in bad
    assert "2 published or current, 1 failed" in since.stdout
    assert len(entries(reg.url, domain_pid("C-202"))) == 1
    assert entries(reg.url, domain_pid("C-203")) == set()
    assert two not in since.stdout  # successes are counted, not listed

    # --study of the unmapped patient: non-zero exit and the reason on one line.
    unmapped = xdsi("publish", "--config", str(config), "--pacs", PACS, "--study", stray, "--db", db)
    assert unmapped.returncode == 1
    assert any(ln.startswith("unmapped-patient") and stray in ln and "X-999" in ln
               for ln in unmapped.stdout.splitlines()), unmapped.stdout

    unknown = xdsi("publish", "--config", str(config), "--pacs", "nowhere", "--study", one, "--db", db)
    assert unknown.returncode == 2 and "unknown PACS 'nowhere'" in unknown.stderr


@contextlib.contextmanager
def running(args: list[str], health: str, timeout: float = 30) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "xdsi.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def test_imaging_source_command_serves_wsdl(pacs, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    config = write_config(tmp_path / "ids.toml", pacs, "http://127.0.0.1:9/registry", "http://127.0.0.1:9/repository")
    port = free_port()
    with running(["imaging-source", "--pacs", str(config), "--port", str(port), "--db",
                  f"sqlite:///{tmp_path / 'ids.db'}"], f"http://127.0.0.1:{port}/health") as proc:
        wsdl = httpx.get(f"http://127.0.0.1:{port}/imaging-source?wsdl", timeout=10)
        assert wsdl.status_code == 200
        assert b"RetrieveImagingDocumentSet" in wsdl.content and b"definitions" in wsdl.content
        proc.terminate()
        out = proc.communicate(timeout=10)[0]
    assert f"RAD-69 http://127.0.0.1:{port}/imaging-source" in out and PACS in out
