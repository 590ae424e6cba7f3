"""The whole XDS-I.b chain on real peers: two Orthanc PACS side by side (hospital A over DIMSE, hospital B
over DICOMweb), a registry, a repository and the imaging source, all over real HTTP/DICOM on loopback.

A study of one patient in each PACS (with different local ids) is published as a KOS manifest (RAD-68),
ITI-18 finds both under the affinity-domain id, ITI-43 returns the manifests, and RAD-69 returns every
referenced instance as the PACS holds it. A study that changes gets a replacing manifest (RPLC), a study
that leaves its PACS gets its manifest deprecated (ITI-57).
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import httpx
import pydicom
from lxml import etree

from conformance.wire import split_multipart
from imaging_source.app import ImagingSource, create_app
from imaging_source.config import parse_config
from imaging_source.pacs.samples import make_study, store_files
from imaging_source.publish import PUBLISHED, REPLACED, UNCHANGED, UNMAPPED_PATIENT, WITHDRAWN
from repository.kos import summarize
from tests.conftest import start_registry, start_repository
from tests.orthanc import SCU_AET, orthanc_pair  # noqa: F401 (fixture)
from tests.serving import serve
from xdsi.ebxml.namespaces import RIM, RS, XDSB, XDSI, q
from xdsi.ebxml.query import find_documents
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import call, request_envelope

DOMAIN_OID = "1.3.6.1.4.1.21367.13.20.1000"
DOMAIN_PID = f"DOM-777^^^&{DOMAIN_OID}&ISO"
IDS_UID = "1.3.6.1.4.1.21367.13.80.110"
RAD69 = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
EXPLICIT_LE, IMPLICIT_LE = "1.2.840.10008.1.2.1", "1.2.840.10008.1.2"


def ids_config(tmp_path: Path, pair, registry_url: str, repository_url: str):  # type: ignore[no-untyped-def]
    table = tmp_path / "hospital-a-ids.csv"
    table.write_text("local_id,domain_id\nA-777,DOM-777\n")
    return parse_config({
        "repository_unique_id": IDS_UID,
        "source_id": "1.3.6.1.4.1.21367.13.80.1",
        "repository_url": repository_url,
        "registry_url": registry_url,
        "affinity_domain_oid": DOMAIN_OID,
        "institution": "Test Imaging Network^^^^^^^^^1.3.6.1.4.1.21367.13.40.1",
        "timezone": "UTC",
        "pacs": [
            {"name": "hospital-a", "protocol": "dimse", "ae_title": pair.a.aet, "host": "127.0.0.1",
             "port": pair.a.dicom_port, "calling_ae_title": SCU_AET, "retrieve": "c-get",
             "default_issuer": "HOSP_A", "issuer_oid": "1.3.6.1.4.1.21367.13.30.1",
             "patient_id_mapping": {"table": str(table)}},
            {"name": "hospital-b", "protocol": "dicomweb", "ae_title": pair.b.aet,
             "dicomweb_url": pair.b.dicomweb_url, "default_issuer": "1.3.6.1.4.1.21367.13.31.1",
             "patient_id_mapping": {"strip_prefix": "B-", "prefix": "DOM-"}},
        ],
    }, base_dir=tmp_path)


def rad69_request(manifest, syntaxes=(EXPLICIT_LE, IMPLICIT_LE)) -> etree._Element:  # type: ignore[no-untyped-def]
    root = etree.Element(q(XDSI, "RetrieveImagingDocumentSetRequest"), nsmap={"xdsiB": XDSI, "xdsb": XDSB})
    for series_uid, ref in manifest.series.items():
        study = root.find(f"{q(XDSI, 'StudyRequest')}[@studyInstanceUID='{ref.study_instance_uid}']")
        if study is None:
            study = etree.SubElement(root, q(XDSI, "StudyRequest"), studyInstanceUID=ref.study_instance_uid)
        series = etree.SubElement(study, q(XDSI, "SeriesRequest"), seriesInstanceUID=series_uid)
        for sop in ref.instances:
            dr = etree.SubElement(series, q(XDSB, "DocumentRequest"))
            etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = ref.retrieve_location_uid
            etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = sop
    tsl = etree.SubElement(root, q(XDSI, "TransferSyntaxUIDList"))
    for ts in syntaxes:
        etree.SubElement(tsl, q(XDSI, "TransferSyntaxUID")).text = ts
    return root


def mtom_call(url: str, action: str, body: etree._Element) -> tuple[etree._Element, dict[str, bytes]]:
    """POST a request and split the MTOM answer with the conformance runner's independent splitter."""
    data = etree.tostring(request_envelope(body, action, url))
    resp = httpx.post(url, content=data, timeout=120,
                      headers={"Content-Type": f'application/soap+xml; charset=UTF-8; action="{action}"'})
    assert resp.status_code == 200, resp.text[:500]
    root, parts = split_multipart(resp.content, resp.headers["content-type"])
    return etree.fromstring(root).find("{*}Body")[0], parts


def documents(body: etree._Element, parts: dict[str, bytes]) -> dict[str, bytes]:
    out = {}
    for dr in body.iter(q(XDSB, "DocumentResponse")):
        href = dr.find(f"{q(XDSB, 'Document')}/{{*}}Include").get("href")
        out[dr.findtext(q(XDSB, "DocumentUniqueId"))] = parts[href[4:]]
    return out


def approved_manifests(registry_url: str) -> dict[str, str]:
    """uniqueId -> entryUUID of the Approved DocumentEntries of the test patient."""
    result = call(registry_url, ITI18, find_documents(DOMAIN_PID))
    out = {}
    for eo in result.iter(q(RIM, "ExtrinsicObject")):
        uid = next(ei.get("value") for ei in eo.iter(q(RIM, "ExternalIdentifier"))
                   if ei.get("identificationScheme") == v.DE_UNIQUE_ID)
        assert eo.get("mimeType") == "application/dicom"
        out[uid] = eo.get("id")
    return out


def dataset_bytes(part10: bytes) -> bytes:
    """The data set of a Part 10 file without its file meta group (which a DIMSE transfer rebuilds)."""
    ds = pydicom.dcmread(io.BytesIO(part10), stop_before_pixels=False)
    meta_end = 132 + 12 + ds.file_meta.FileMetaInformationGroupLength
    return part10[meta_end:]


def test_full_chain_two_pacs_one_patient(orthanc_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pair = orthanc_pair
    files_a = make_study("A-777", "HOSP_A", out_dir=tmp_path / "a", modality="CT", series=2, instances_per_series=3,
                         study_description="CT CHEST", body_part="CHEST", accession_number="ACC-A1")
    files_b = make_study("B-777", "1.3.6.1.4.1.21367.13.31.1", out_dir=tmp_path / "b", modality="MR", series=1,
                         instances_per_series=4, study_description="MR KNEE", body_part="KNEE")
    store_files(files_a, http_url=pair.a.http_url)
    store_files(files_b, dicom=pair.b.dicom)
    study_a = pydicom.dcmread(files_a[0]).StudyInstanceUID
    study_b = pydicom.dcmread(files_b[0]).StudyInstanceUID

    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}") as reg, \
            start_repository(reg.url, tmp_path / "repository") as repo:
        reg.feed(DOMAIN_PID)
        ids = ImagingSource(ids_config(tmp_path, pair, reg.url, repo.url), db_url=f"sqlite:///{tmp_path / 'ids.db'}",
                            spool_dir=str(tmp_path / "ids-spool"))
        with serve(create_app(ids)) as base:
            ids_url = base + "/imaging-source"
            # RAD-68: each study published under the affinity-domain id.
            results = [ids.publisher.publish_study("hospital-a", study_a),
                       ids.publisher.publish_study("hospital-b", study_b)]
            assert [r.outcome for r in results] == [PUBLISHED, PUBLISHED], [r.message for r in results]
            assert ids.publisher.publish_study("hospital-b", study_b).outcome == UNCHANGED

            # ITI-18 finds both manifests for the one patient.
            manifests = approved_manifests(reg.url)
            assert set(manifests) == {r.document_unique_id for r in results}

            # ITI-43 returns the KOS documents.
            req = etree.Element(q(XDSB, "RetrieveDocumentSetRequest"), nsmap={"xdsb": XDSB})
            for uid in manifests:
                dr = etree.SubElement(req, q(XDSB, "DocumentRequest"))
                etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = repo.repo.config.repository_unique_id
                etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = uid
            body, parts = mtom_call(repo.url, ITI43, req)
            kos_docs = documents(body, parts)
            assert set(kos_docs) == set(manifests)

            # RAD-69 returns every referenced instance as the PACS holds it.
            for uid, kos in kos_docs.items():
                path = tmp_path / f"{uid}.dcm"
                path.write_bytes(kos)
                manifest = summarize(path)
                body, parts = mtom_call(ids_url, RAD69, rad69_request(manifest))
                assert body.find(q(RS, "RegistryResponse")).get("status") == v.RESPONSE_SUCCESS, etree.tostring(body)
                got = documents(body, parts)
                wanted = {sop for ref in manifest.series.values() for sop in ref.instances}
                assert set(got) == wanted
                pacs = pair.a if manifest.study_instance_uids == [study_a] else pair.b
                for sop, data in got.items():
                    stored = pacs.instance_file(sop)
                    if pacs is pair.b:  # DICOMweb (WADO-RS, transfer-syntax=*): the stored file itself
                        assert data == stored
                    else:  # DIMSE C-GET: the stored data set, under a file meta header of the transfer
                        assert dataset_bytes(data) == dataset_bytes(stored)

            # RAD-69 errors: an instance not in the study, a syntax nobody can produce.
            manifest_a = summarize(next(p for p in tmp_path.glob("*.dcm") if summarize(p).study_instance_uids
                                        == [study_a]))
            bad = rad69_request(manifest_a)
            extra = etree.SubElement(bad.find(f".//{q(XDSI, 'SeriesRequest')}"), q(XDSB, "DocumentRequest"))
            etree.SubElement(extra, q(XDSB, "RepositoryUniqueId")).text = IDS_UID
            etree.SubElement(extra, q(XDSB, "DocumentUniqueId")).text = "2.25.12345"
            body, _ = mtom_call(ids_url, RAD69, bad)
            assert body.find(q(RS, "RegistryResponse")).get("status") == v.RESPONSE_PARTIAL_SUCCESS
            assert [e.get("errorCode") for e in body.iter(q(RS, "RegistryError"))] == ["XDSDocumentUniqueIdError"]
            body, _ = mtom_call(ids_url, RAD69, rad69_request(manifest_a, syntaxes=("1.2.840.10008.1.2.4.50",)))
            assert body.find(q(RS, "RegistryResponse")).get("status") == v.RESPONSE_FAILURE
            assert {e.get("errorCode") for e in body.iter(q(RS, "RegistryError"))} == {"XDSRepositoryError"}

            # The study grows in PACS A: a new manifest replaces the old one (RPLC).
            more = make_study("A-777", "HOSP_A", out_dir=tmp_path / "a2", modality="CT", series=1,
                              instances_per_series=2, study_uid=study_a)
            store_files(more, http_url=pair.a.http_url)
            replaced = ids.publisher.publish_study("hospital-a", study_a)
            assert replaced.outcome == REPLACED, replaced.message
            now = approved_manifests(reg.url)
            assert set(now) == {replaced.document_unique_id, results[1].document_unique_id}

            # The study leaves PACS B: its manifest is deprecated (ITI-57).
            pair.b.clear()
            withdrawn = ids.publisher.withdraw(study_b)
            assert withdrawn.outcome == WITHDRAWN, withdrawn.message
            assert set(approved_manifests(reg.url)) == {replaced.document_unique_id}

            # A study whose patient cannot be mapped is reported, not published.
            stray = make_study("A-999", "HOSP_A", out_dir=tmp_path / "stray", series=1, instances_per_series=1)
            store_files(stray, http_url=pair.a.http_url)
            unmapped = ids.publisher.publish_study("hospital-a", pydicom.dcmread(stray[0]).StudyInstanceUID)
            assert unmapped.outcome == UNMAPPED_PATIENT and "A-999" in unmapped.message


def test_rad69_request_errors(tmp_path: Path, orthanc_pair) -> None:  # type: ignore[no-untyped-def]
    """Malformed RAD-69 requests get XDS-I.b errors, not faults."""
    ids = ImagingSource(ids_config(tmp_path, orthanc_pair, "http://127.0.0.1:9/registry",
                                   "http://127.0.0.1:9/repository"), db_url=f"sqlite:///{tmp_path / 'ids.db'}")
    with serve(create_app(ids)) as base:
        url = base + "/imaging-source"
        empty_study = etree.fromstring(
            f'<xdsiB:RetrieveImagingDocumentSetRequest xmlns:xdsiB="{XDSI}" xmlns:xdsb="{XDSB}">'
            '<xdsiB:StudyRequest studyInstanceUID=""><xdsiB:SeriesRequest seriesInstanceUID="1.2.3">'
            f"<xdsb:DocumentRequest><xdsb:RepositoryUniqueId>{IDS_UID}</xdsb:RepositoryUniqueId>"
            "<xdsb:DocumentUniqueId>1.2.3.4</xdsb:DocumentUniqueId></xdsb:DocumentRequest></xdsiB:SeriesRequest>"
            "</xdsiB:StudyRequest><xdsiB:TransferSyntaxUIDList><xdsiB:TransferSyntaxUID>1.2.840.10008.1.2.1"
            "</xdsiB:TransferSyntaxUID></xdsiB:TransferSyntaxUIDList></xdsiB:RetrieveImagingDocumentSetRequest>")
        body, _ = mtom_call(url, RAD69, empty_study)
        codes = [e.get("errorCode") for e in body.iter(q(RS, "RegistryError"))]
        assert body.find(q(RS, "RegistryResponse")).get("status") == v.RESPONSE_FAILURE and codes == ["XDSIRequestError"]
        resp = httpx.get(url + "?wsdl")
        assert resp.status_code == 200 and b"RetrieveImagingDocumentSet" in resp.content


def test_rad69_reconciles_what_the_pacs_delivered(orthanc_pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """RAD-69 fetches what the request lists without reading the study tree first; every listed instance
    that the PACS does not deliver in the study and series it is listed under gets XDSDocumentUniqueIdError
    (over DIMSE C-GET from hospital A and over DICOMweb from hospital B)."""
    pair = orthanc_pair
    ids = ImagingSource(ids_config(tmp_path, pair, "http://127.0.0.1:9/registry", "http://127.0.0.1:9/repository"),
                        db_url=f"sqlite:///{tmp_path / 'ids.db'}", spool_dir=str(tmp_path / "ids-spool"))
    with serve(create_app(ids)) as base:
        for name, pacs in (("dimse", pair.a), ("dicomweb", pair.b)):
            files = make_study(f"R-{name}", "HOSP_A", out_dir=tmp_path / name, series=2, instances_per_series=3)
            store_files(files, http_url=pacs.http_url)
            headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
            study = str(headers[0].StudyInstanceUID)
            by_series: dict[str, list[str]] = {}
            for ds in headers:
                by_series.setdefault(str(ds.SeriesInstanceUID), []).append(str(ds.SOPInstanceUID))
            (s1, m1), (s2, m2) = sorted((k, sorted(v)) for k, v in by_series.items())
            unknown = "2.25.424242"

            def request(series: dict[str, list[str]], study_uid: str = study) -> etree._Element:
                root = etree.Element(q(XDSI, "RetrieveImagingDocumentSetRequest"), nsmap={"xdsiB": XDSI, "xdsb": XDSB})
                st = etree.SubElement(root, q(XDSI, "StudyRequest"), studyInstanceUID=study_uid)
                for suid, sops in series.items():
                    se = etree.SubElement(st, q(XDSI, "SeriesRequest"), seriesInstanceUID=suid)
                    for sop in sops:
                        dr = etree.SubElement(se, q(XDSB, "DocumentRequest"))
                        etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = IDS_UID
                        etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = sop
                tsl = etree.SubElement(root, q(XDSI, "TransferSyntaxUIDList"))
                etree.SubElement(tsl, q(XDSI, "TransferSyntaxUID")).text = EXPLICIT_LE
                return root

            def answer(req: etree._Element) -> tuple[str, dict[str, bytes], list[str]]:
                body, parts = mtom_call(base + "/imaging-source", RAD69, req)
                errors = body.iter(q(RS, "RegistryError"))
                return (body.find(q(RS, "RegistryResponse")).get("status"), documents(body, parts),
                        sorted(e.get("location") for e in errors if e.get("errorCode") == "XDSDocumentUniqueIdError"))

            # All of series 1 plus an instance the PACS does not have and one of series 2 listed under series
            # 1; one instance of series 2 (instance-level fetch); an instance under a series not in the study.
            status, got, missing = answer(request({s1: [*m1, unknown, m2[0]], s2: [m2[1]], "2.25.4343": [m2[2]]}))
            assert status == v.RESPONSE_PARTIAL_SUCCESS, name
            assert set(got) == {*m1, m2[1]}, name
            assert missing == sorted([unknown, m2[0], m2[2]]), name
            for sop, data in got.items():
                assert dataset_bytes(data) == dataset_bytes(pacs.instance_file(sop)), name
            # Most of a series (fetched whole, the unlisted instance not returned): Success.
            status, got, missing = answer(request({s2: m2[:2]}))
            assert (status, set(got), missing) == (v.RESPONSE_SUCCESS, set(m2[:2]), []), name
            # Nothing the PACS has: Failure, one error per instance.
            status, got, missing = answer(request({s1: [unknown], s2: [m1[0]]}))
            assert (status, got, missing) == (v.RESPONSE_FAILURE, {}, sorted([unknown, m1[0]])), name
            status, got, missing = answer(request({s1: m1}, study_uid="2.25.4444"))
            assert (status, got, missing) == (v.RESPONSE_FAILURE, {}, m1), name
            # Not UIDs (they would end up in a C-FIND key or a DICOMweb URL): errors, not faults.
            status, got, missing = answer(request({s1: ["../x", m1[0]], "1.2.*": [m2[0]]}))
            assert (status, set(got), missing) == (v.RESPONSE_PARTIAL_SUCCESS, {m1[0]}, sorted(["../x", m2[0]])), name
            status, got, missing = answer(request({s1: m1[:1]}, study_uid="1.2.3*"))
            assert (status, got, missing) == (v.RESPONSE_FAILURE, {}, m1[:1]), name


def test_rad69_streams_a_published_study_and_cuts_off_when_the_pacs_fails_it(orthanc_pair,  # type: ignore[no-untyped-def]
                                                                             tmp_path: Path) -> None:
    """A request for exactly the instances of a study's published manifest is answered Success up front,
    each instance sent as it arrives. If the PACS then fails to deliver one (deleted since publication),
    the HTTP transfer is cut off before the package ends, so the consumer cannot take it for a complete
    answer; the retry is answered after fetching everything, with a true PartialSuccess. Over DIMSE C-GET
    (hospital A) and DICOMweb (hospital B)."""
    import time as _time

    from imaging_source import state

    pair = orthanc_pair
    spool = tmp_path / "ids-spool"
    ids = ImagingSource(ids_config(tmp_path, pair, "http://127.0.0.1:9/registry", "http://127.0.0.1:9/repository"),
                        db_url=f"sqlite:///{tmp_path / 'ids.db'}", spool_dir=str(spool))
    uvicorn_log = _Records()
    try:
        with serve(create_app(ids)) as base:
            # Once uvicorn has configured its loggers (which drops their handlers, not their filters).
            logging.getLogger("uvicorn.error").addHandler(uvicorn_log)
            url = base + "/imaging-source"
            for pacs_name, pacs in (("hospital-a", pair.a), ("hospital-b", pair.b)):
                files = make_study(f"S-{pacs_name}", "HOSP_A", out_dir=tmp_path / pacs_name, series=2,
                                   instances_per_series=3)
                store_files(files, http_url=pacs.http_url)
                headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
                study = str(headers[0].StudyInstanceUID)
                sops = [str(ds.SOPInstanceUID) for ds in headers]
                # What publishing the study's manifest records (RAD-68 not needed here):
                tree = state.tree_digest((str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)) for ds in headers)
                with ids.engine.begin() as conn:
                    state.put(conn, state.Published(
                        study, pacs_name, "urn:uuid:" + "0" * 32, "1.2.3", DOMAIN_PID, state.digest(sops), len(sops),
                        state.PUBLISHED, state.now(), tree))
                root = etree.Element(q(XDSI, "RetrieveImagingDocumentSetRequest"), nsmap={"xdsiB": XDSI, "xdsb": XDSB})
                st = etree.SubElement(root, q(XDSI, "StudyRequest"), studyInstanceUID=study)
                for ds in headers:
                    se = st.find(f"{q(XDSI, 'SeriesRequest')}[@seriesInstanceUID='{ds.SeriesInstanceUID}']")
                    if se is None:
                        se = etree.SubElement(st, q(XDSI, "SeriesRequest"), seriesInstanceUID=str(ds.SeriesInstanceUID))
                    dr = etree.SubElement(se, q(XDSB, "DocumentRequest"))
                    etree.SubElement(dr, q(XDSB, "RepositoryUniqueId")).text = IDS_UID
                    etree.SubElement(dr, q(XDSB, "DocumentUniqueId")).text = str(ds.SOPInstanceUID)
                etree.SubElement(etree.SubElement(root, q(XDSI, "TransferSyntaxUIDList")),
                                 q(XDSI, "TransferSyntaxUID")).text = EXPLICIT_LE

                body, parts = mtom_call(url, RAD69, root)
                assert body.find(q(RS, "RegistryResponse")).get("status") == v.RESPONSE_SUCCESS, pacs_name
                got = documents(body, parts)
                assert set(got) == set(sops), pacs_name
                for sop, data in got.items():
                    assert dataset_bytes(data) == dataset_bytes(pacs.instance_file(sop)), pacs_name

                # The same instances with one listed under the other series: not the manifest, so fetched and
                # checked first (the PACS does not deliver it there).
                first, second = root.iter(q(XDSI, "SeriesRequest"))
                moved = next(first.iter(q(XDSB, "DocumentRequest")))
                second.append(moved)
                body, parts = mtom_call(url, RAD69, root)
                assert body.find(q(RS, "RegistryResponse")).get("status") == v.RESPONSE_PARTIAL_SUCCESS, pacs_name
                assert [e.get("location") for e in body.iter(q(RS, "RegistryError"))] == \
                    [moved.findtext(q(XDSB, "DocumentUniqueId"))], pacs_name
                first.insert(0, moved)

                # A consumer that takes only Implicit VR LE: each instance transcoded on its way through.
                root.find(f"{q(XDSI, 'TransferSyntaxUIDList')}/{q(XDSI, 'TransferSyntaxUID')}").text = IMPLICIT_LE
                body, parts = mtom_call(url, RAD69, root)
                assert body.find(q(RS, "RegistryResponse")).get("status") == v.RESPONSE_SUCCESS, pacs_name
                for sop, data in documents(body, parts).items():
                    ds, held = pydicom.dcmread(io.BytesIO(data)), pydicom.dcmread(io.BytesIO(pacs.instance_file(sop)))
                    assert ds.file_meta.TransferSyntaxUID == IMPLICIT_LE != held.file_meta.TransferSyntaxUID, pacs_name
                    assert ds.SOPInstanceUID == sop and ds.PixelData == held.PixelData, pacs_name
                root.find(f"{q(XDSI, 'TransferSyntaxUIDList')}/{q(XDSI, 'TransferSyntaxUID')}").text = EXPLICIT_LE

                gone = sops[4]
                pacs.http.delete(f"/instances/{pacs.instance_id(gone)}").raise_for_status()
                data = etree.tostring(request_envelope(root, RAD69, url))
                ctype = {"Content-Type": f'application/soap+xml; charset=UTF-8; action="{RAD69}"'}
                try:
                    resp = httpx.post(url, content=data, timeout=60, headers=ctype)
                except httpx.RemoteProtocolError as exc:  # the transfer was cut off
                    assert "incomplete" in str(exc) or "closed" in str(exc), (pacs_name, exc)
                else:
                    raise AssertionError(f"{pacs_name}: a streamed answer missing {gone} completed: {resp.status_code}")
                # Recorded in the state database: retrievals of the study are fetched whole first from now
                # on, after a restart too (a new ImagingSource on the same database).
                assert ids.locate(study)[1] is None, pacs_name
                with ids.engine.connect() as conn:
                    assert state.get(conn, study).cut_off_at is not None, pacs_name
                # The cut-off is logged once, by us, as a WARNING; not as an ASGI crash with a traceback.
                assert not [r for r in uvicorn_log.records if r.exc_info], [r.getMessage() for r in uvicorn_log.records]

                body, parts = mtom_call(url, RAD69, root)
                assert body.find(q(RS, "RegistryResponse")).get("status") == v.RESPONSE_PARTIAL_SUCCESS, pacs_name
                assert set(documents(body, parts)) == set(sops) - {gone}, pacs_name
                assert [(e.get("errorCode"), e.get("location")) for e in body.iter(q(RS, "RegistryError"))] == \
                    [("XDSDocumentUniqueIdError", gone)], pacs_name
            deadline = _time.monotonic() + 10
            while any(spool.iterdir()) and _time.monotonic() < deadline:  # the fetch thread ends on its own
                _time.sleep(0.05)
            assert not any(spool.iterdir()), list(spool.iterdir())
    finally:
        logging.getLogger("uvicorn.error").removeHandler(uvicorn_log)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_streamed_answer_holds_a_bounded_number_of_bytes() -> None:
    """The fetch of a streamed RAD-69 waits while the bytes fetched but not yet sent exceed the budget (one
    instance larger than the budget still goes, alone), and gives up when the consumer has gone."""
    import threading
    import time as _time

    from imaging_source.retrieve import _Budget

    budget, stop = _Budget(100), threading.Event()
    assert budget.take(300, stop) and budget.used == 300  # nothing in flight: granted whatever its size
    taken: list[bool] = []
    waiter = threading.Thread(target=lambda: taken.append(budget.take(50, stop)))
    waiter.start()
    _time.sleep(0.3)
    assert taken == [] and budget.used == 300  # still waiting for room
    budget.give(300)
    waiter.join(5)
    assert taken == [True] and budget.used == 50
    assert budget.take(50, stop) and budget.used == 100
    late = threading.Thread(target=lambda: taken.append(budget.take(10, stop)))
    late.start()
    stop.set()
    late.join(5)
    assert taken == [True, False]
