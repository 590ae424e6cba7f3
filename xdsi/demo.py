"""``xdsi demo``: a working affinity domain on one machine, with sample data, in one command.

Starts the Document Registry (SQLite and files under ``--dir``) with its ITI-8 feed, announces the demo
patients over ITI-8, publishes a sample imaging-study manifest entry for each over ITI-42 (once; the data
persists across runs), and prints how to query it over ITI-18.
"""

from __future__ import annotations

import argparse
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from lxml import etree

from xdsi import samples
from xdsi.ebxml.namespaces import RIM, q
from xdsi.ebxml.query import find_documents
from xdsi.soap.client import call, request_envelope
from xdsi.transform.ebrim_write import write_submission

ITI42 = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"

#: Demo patients: local id, name, birth date, sex, and the studies each has.
PATIENTS = [
    ("DEMO001", "Doe^Jane", "19700101", "F", [("CT", "CHEST", "20240312"), ("MR", "HEAD", "20250120")]),
    ("DEMO002", "Roe^Richard", "19651111", "M", [("CR", "KNEE", "20231005")]),
    ("DEMO003", "Moe^Maria", "19880523", "F", [("CT", "HEAD", "20250602"), ("CR", "CHEST", "20250603"),
                                               ("MR", "KNEE", "20250910")]),
]


def _start_server(app, host: str, port: int) -> tuple[uvicorn.Server, threading.Thread]:  # type: ignore[no-untyped-def]
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="xdsi-demo", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the demo registry did not start on {host}:{port} (port in use?)")
        time.sleep(0.05)
    return server, thread


def count_documents(url: str, pid: str, client: httpx.Client) -> int:
    resp = call(url, ITI18, find_documents(pid), client=client)
    return len(resp.findall(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ExtrinsicObject')}"))


def seed(url: str, mllp: tuple[str, int], client: httpx.Client) -> None:
    """Feed the demo patients (ITI-8) and register their studies (ITI-42) unless already there."""
    from registry.mllp import send_mllp
    from registry.patient_feed import build_adt

    for local, name, birth, sex, studies in PATIENTS:
        pid = samples.patient_id(local)
        send_mllp(*mllp, build_adt("A04", pid, name=name, birth_date=birth, sex=sex))
        if count_documents(url, pid, client) >= len(studies):
            continue
        for n, (modality, region, date) in enumerate(studies, 1):
            sub = samples.imaging_study_submission(pid, modality=modality, region=region, study_date=date,
                                                   accession=f"{local}-{n}")
            resp = call(url, ITI42, write_submission(sub), client=client)
            if not resp.get("status", "").endswith(":Success"):
                raise RuntimeError("demo registration failed: " + etree.tostring(resp, encoding="unicode"))


def run_demo(args: argparse.Namespace) -> int:
    from registry.app import RegistryConfig, create_app

    home = Path(args.dir).resolve()
    home.mkdir(parents=True, exist_ok=True)
    config = RegistryConfig(db_url=f"sqlite:///{home / 'registry.db'}", mllp_host=args.host,
                            mllp_port=args.mllp_port, domain_oid=samples.DEMO_DOMAIN_OID)
    server, thread = _start_server(create_app(config), args.host, args.port)
    url = f"http://{args.host}:{args.port}/registry"
    with httpx.Client(timeout=30) as client:
        seed(url, (args.host, args.mllp_port), client)
        query_file = home / "find-documents.soap.xml"
        pid = samples.patient_id(PATIENTS[0][0])
        query_file.write_bytes(etree.tostring(request_envelope(find_documents(pid), ITI18, url),
                                              xml_declaration=True, encoding="UTF-8", pretty_print=True))
        counts = {local: count_documents(url, samples.patient_id(local), client) for local, *_ in PATIENTS}
    print(f"""
xdsi demo affinity domain is running (data in {home})

  Document Registry   {url}   (WSDL: {url}?wsdl)
  ITI-8 feed (MLLP)   {args.host}:{args.mllp_port}
  patients            {", ".join(f"{samples.patient_id(p)} ({n} studies)" for p, n in counts.items())}

Query the studies of {pid} (ITI-18 FindDocuments):
  curl -s -H 'Content-Type: application/soap+xml' --data-binary @{query_file} {url}
""", flush=True)
    expected = {local: len(studies) for local, *_, studies in PATIENTS}
    if args.smoke:
        server.should_exit = True
        thread.join(10)
        return 0 if all(counts[p] >= n for p, n in expected.items()) else 1
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(10)
    return 0
