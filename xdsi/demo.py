"""``xdsi demo``: a whole XDS-I.b affinity domain on one machine, with sample data, in one command.

It runs the Document Registry (with its ITI-8 feed), the Document Repository and the Imaging Document
Source, each on its own port, with SQLite and files under ``--dir``. The imaging source's PACS is an
embedded DICOM store: a folder of real DICOM images (pydicom's CT and MR samples, given demo patients and
studies). The demo announces its patients over ITI-8 and publishes every study as a KOS manifest (RAD-68),
then prints ready-made ITI-18, ITI-43 and RAD-69 requests to try. The data persists across runs.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import httpx
import pydicom
import uvicorn
from lxml import etree
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid

from xdsi import samples
from xdsi.ebxml.namespaces import RIM, RS, XDSB, XDSI, q
from xdsi.ebxml.tags import T_EXTID, T_SLOT, T_VALUE
from xdsi.ebxml.query import find_documents
from xdsi.soap.client import call, request_envelope

ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
RAD69 = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
REPOSITORY_UID = "1.3.6.1.4.1.21367.13.80.100"
IDS_UID = samples.DEMO_REPOSITORY_UID  # the imaging source's own repositoryUniqueId (RAD-69)
EXPLICIT_LE = "1.2.840.10008.1.2.1"

#: Demo patients: local id, name, birth date, sex, and their studies (sample file, body part, date, images).
PATIENTS = [
    ("DEMO001", "Doe^Jane", "19700101", "F", [("CT_small.dcm", "CHEST", "20240312", 3),
                                               ("MR_small.dcm", "HEAD", "20250120", 4)]),
    ("DEMO002", "Roe^Richard", "19651111", "M", [("CT_small.dcm", "ABDOMEN", "20231005", 2)]),
    ("DEMO003", "Moe^Maria", "19880523", "F", [("MR_small.dcm", "KNEE", "20250602", 3),
                                               ("CT_small.dcm", "HEAD", "20250910", 3)]),
]


def make_sample_studies(pacs_dir: Path) -> None:
    """Write the demo studies into the embedded store: copies of real sample images, each given the demo
    patient and new study/series/instance UIDs (once; later runs reuse them)."""
    if any(pacs_dir.rglob("*.dcm")):
        return
    for n_patient, (local, name, birth, sex, studies) in enumerate(PATIENTS, 1):
        for n_study, (sample, body_part, study_date, images) in enumerate(studies, 1):
            study_uid, series_uid = generate_uid(), generate_uid()
            folder = pacs_dir / local / study_uid
            folder.mkdir(parents=True, exist_ok=True)
            for n in range(1, images + 1):
                ds = pydicom.dcmread(get_testdata_file(sample))
                ds.PatientID, ds.PatientName = local, name
                ds.IssuerOfPatientID = samples.DEMO_DOMAIN_OID
                ds.PatientBirthDate, ds.PatientSex = birth, sex
                ds.StudyInstanceUID, ds.SeriesInstanceUID = study_uid, series_uid
                ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
                ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_date
                ds.StudyTime = "101500"
                ds.AccessionNumber = f"A{n_patient:02d}{n_study:02d}"
                ds.StudyDescription = f"{ds.Modality} {body_part.title()}"
                ds.BodyPartExamined = body_part
                ds.SeriesNumber, ds.InstanceNumber = 1, n
                ds.InstitutionName = "Demo Hospital"
                ds.save_as(folder / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)


def ids_config(home: Path, registry_url: str, repository_url: str):  # type: ignore[no-untyped-def]
    from imaging_source.config import parse_config

    return parse_config({
        "repository_unique_id": IDS_UID,
        "source_id": samples.DEMO_SOURCE_ID,
        "repository_url": repository_url,
        "registry_url": registry_url,
        "affinity_domain_oid": samples.DEMO_DOMAIN_OID,
        "institution": "Demo Imaging Network^^^^^^^^^1.3.6.1.4.1.21367.13.40.1",
        "pacs": [{"name": "demo-pacs", "protocol": "folder", "path": str(home / "pacs"), "ae_title": "DEMO_PACS",
                  "patient_id_mapping": {"domain_issuer": True}}],
    })


def _serve(app, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:  # type: ignore[no-untyped-def]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name=f"xdsi-demo-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the demo could not start a server on {host}:{port} (port in use?)")
        time.sleep(0.05)
    return server, thread


def _entries(registry_url: str, pid: str, client: httpx.Client) -> list[etree._Element]:
    resp = call(registry_url, ITI18, find_documents(pid), client=client)
    return resp.findall(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ExtrinsicObject')}")


def _unique_id(entry: etree._Element) -> str:
    from xdsi.metadata import vocabulary as v

    return next(ei.get("value") for ei in entry.iter(T_EXTID)
                if ei.get("identificationScheme") == v.DE_UNIQUE_ID)


def retrieve_document_request(unique_id: str) -> etree._Element:
    root = etree.Element(q(XDSB, "RetrieveDocumentSetRequest"), nsmap={"xdsb": XDSB})
    dr = etree.SubElement(root, q(XDSB, "DocumentRequest"))
    etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = REPOSITORY_UID
    etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = unique_id
    return root


def retrieve_images_request(pacs_dir: Path, study_uid: str) -> etree._Element:
    """RAD-69 for every image of a demo study (what a viewer does after reading the manifest)."""
    root = etree.Element(q(XDSI, "RetrieveImagingDocumentSetRequest"), nsmap={"xdsiB": XDSI, "xdsb": XDSB})
    study = etree.SubElement(root, q(XDSI, "StudyRequest"), studyInstanceUID=study_uid)
    by_series: dict[str, etree._Element] = {}
    for path in sorted(pacs_dir.rglob("*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        if ds.StudyInstanceUID != study_uid:
            continue
        series = by_series.get(ds.SeriesInstanceUID)
        if series is None:
            series = by_series[ds.SeriesInstanceUID] = etree.SubElement(
                study, q(XDSI, "SeriesRequest"), seriesInstanceUID=ds.SeriesInstanceUID)
        dr = etree.SubElement(series, q(XDSB, "DocumentRequest"))
        etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = IDS_UID
        etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = ds.SOPInstanceUID
    tsl = etree.SubElement(root, q(XDSI, "TransferSyntaxUIDList"))
    etree.SubElement(tsl, q(XDSI, "TransferSyntaxUID")).text = EXPLICIT_LE
    return root


def _save_request(path: Path, body: etree._Element, action: str, url: str) -> None:
    path.write_bytes(etree.tostring(request_envelope(body, action, url), xml_declaration=True, encoding="UTF-8",
                                    pretty_print=True))


def _status(url: str, action: str, body: etree._Element, client: httpx.Client) -> tuple[str, int]:
    """Status and number of returned documents of an ITI-43/RAD-69 call (MTOM answer)."""
    resp = call(url, action, body, client=client)
    return resp.find(q(RS, "RegistryResponse")).get("status", ""), len(resp.findall(q(XDSB, "DocumentResponse")))


def run_demo(args: argparse.Namespace) -> int:
    from imaging_source.app import ImagingSource
    from imaging_source.app import create_app as ids_app
    from registry.app import RegistryConfig
    from registry.app import create_app as registry_app
    from registry.mllp import send_mllp
    from registry.patient_feed import build_adt
    from repository.app import RepositoryConfig
    from repository.app import create_app as repository_app

    home = Path(args.dir).resolve()
    (home / "pacs").mkdir(parents=True, exist_ok=True)
    make_sample_studies(home / "pacs")
    host, port = args.host, args.port
    registry_url = f"http://{host}:{port}/registry"
    repository_url = f"http://{host}:{port + 1}/repository"
    ids_url = f"http://{host}:{port + 2}/imaging-source"

    servers = [_serve(registry_app(RegistryConfig(db_url=f"sqlite:///{home / 'registry.db'}", mllp_host=host,
                                                  mllp_port=args.mllp_port, domain_oid=samples.DEMO_DOMAIN_OID)),
                      host, port)]
    servers.append(_serve(repository_app(RepositoryConfig(
        registry_url=registry_url, repository_unique_id=REPOSITORY_UID, store_url=str(home / "repository" / "documents"),
        db_url=f"sqlite:///{home / 'repository' / 'ledger.db'}")), host, port + 1))
    ids = ImagingSource(ids_config(home, registry_url, repository_url), db_url=f"sqlite:///{home / 'ids.db'}",
                        spool_dir=str(home / "ids-spool"))
    servers.append(_serve(ids_app(ids), host, port + 2))

    # ITI-8: the affinity domain learns its patients; RAD-68: every study in the PACS is published.
    for local, name, birth, sex, _studies in PATIENTS:
        send_mllp(host, args.mllp_port, build_adt("A04", samples.patient_id(local), name=name, birth_date=birth,
                                                   sex=sex))
    failed = [r for s in ids.adapters["demo-pacs"].find_studies()
              for r in [ids.publisher.publish_study("demo-pacs", s.study_instance_uid)] if not r.ok]
    for r in failed:
        print(f"publishing {r.study_instance_uid} failed: {r.message}")

    with httpx.Client(timeout=60) as client:
        counts = {local: len(_entries(registry_url, samples.patient_id(local), client)) for local, *_ in PATIENTS}
        first_pid = samples.patient_id(PATIENTS[0][0])
        first = _entries(registry_url, first_pid, client)[0]
        study_uid = next(ref.split("^", 1)[0] for ref in _slot_values(first, "urn:ihe:iti:xds:2013:referenceIdList")
                         if ref.endswith("studyInstanceUID"))
        requests = home / "requests"
        requests.mkdir(exist_ok=True)
        _save_request(requests / "iti18-find-documents.xml", find_documents(first_pid), ITI18, registry_url)
        _save_request(requests / "iti43-retrieve-manifest.xml", retrieve_document_request(_unique_id(first)), ITI43,
                      repository_url)
        _save_request(requests / "rad69-retrieve-images.xml", retrieve_images_request(home / "pacs", study_uid), RAD69,
                      ids_url)
        kos = _status(repository_url, ITI43, retrieve_document_request(_unique_id(first)), client)
        images = _status(ids_url, RAD69, retrieve_images_request(home / "pacs", study_uid), client)

    print(f"""
xdsi demo affinity domain is running (data in {home})

  Document Registry        {registry_url}   (ITI-18, ITI-42, ITI-57, ITI-62; WSDL: ?wsdl)
  ITI-8 feed (MLLP)        {host}:{args.mllp_port}
  Document Repository      {repository_url}   (ITI-41/RAD-68, ITI-43)
  Imaging Document Source  {ids_url}   (RAD-69), PACS = {home / 'pacs'}
  patients                 {", ".join(f"{samples.patient_id(p)} ({n} studies)" for p, n in counts.items())}

Try it (ready-made requests in {requests}):
  curl -s -H 'Content-Type: application/soap+xml' --data-binary @{requests / 'iti18-find-documents.xml'} {registry_url}
  curl -s -H 'Content-Type: application/soap+xml' --data-binary @{requests / 'iti43-retrieve-manifest.xml'} -o manifest.mime {repository_url}
  curl -s -H 'Content-Type: application/soap+xml' --data-binary @{requests / 'rad69-retrieve-images.xml'} -o images.mime {ids_url}
""", flush=True)
    expected = {local: len(studies) for local, *_, studies in PATIENTS}
    ok = not failed and counts == expected and kos == (
        "urn:oasis:names:tc:ebxml-regrep:ResponseStatusType:Success", 1) and images[0].endswith(":Success")
    print(f"self-check: manifests per patient {counts}, ITI-43 {kos}, RAD-69 {images}: {'OK' if ok else 'FAILED'}",
          flush=True)
    if args.smoke:
        for server, thread in servers:
            server.should_exit = True
            thread.join(10)
        return 0 if ok else 1
    try:
        while all(thread.is_alive() for _s, thread in servers):
            servers[0][1].join(0.5)
    except KeyboardInterrupt:
        pass
    for server, thread in servers:
        server.should_exit = True
        thread.join(10)
    return 0


def _slot_values(entry: etree._Element, name: str) -> list[str]:
    for slot in entry.iter(T_SLOT):
        if slot.get("name") == name:
            return [v.text or "" for v in slot.iter(T_VALUE)]
    return []
