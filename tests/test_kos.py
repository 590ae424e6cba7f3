"""RAD-68 KOS manifest checks (repository/kos.py) on the real shared manifests and RAD-68 messages, and on
manifests mutated with pydicom."""

from __future__ import annotations

import base64
import csv
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset

from repository import kos
from tests.conftest import SHARED, need
from xdsi.ebxml.namespaces import XDSB, q
from xdsi.metadata.model import Code, DocumentEntry
from xdsi.transform.ebrim_read import read_submission
from xdsi.xmlparse import parse_xml

KOS_DIR = SHARED / "kos"
RAD68_DIR = SHARED / "messages" / "rad68"
KOS_FORMAT = Code(kos.KOS_SOP_CLASS, "1.2.840.10008.2.6.1", "Key Object Selection Document")
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"


def _rows(index: Path) -> list[dict[str, str]]:
    need(index.is_file(), f"conformance data not found at {index}")
    with index.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def _entry(s: kos.ManifestSummary, **changes: object) -> DocumentEntry:
    """A DocumentEntry that matches the manifest, as an Imaging Document Source would send it."""
    de = DocumentEntry(
        id="Document01",
        mime_type="application/dicom",
        unique_id=s.sop_instance_uid,
        format_code=KOS_FORMAT,
        source_patient_id=f"{s.patient_id}^^^&1.3.6.1.4.1.21367.1800.13.20.1000&ISO",
        reference_ids=[f"{u}^^^^{kos.STUDY_UID_REFERENCE}" for u in s.study_instance_uids],
    )
    for k, v in changes.items():
        setattr(de, k, v)
    return de


def _errors(findings: list) -> list[str]:
    return [f.message for f in findings if f.is_error]


def _warnings(findings: list) -> list[str]:
    return [f.message for f in findings if not f.is_error]


# --- the shared data -------------------------------------------------------------------------------------


def test_every_shared_kos_is_a_valid_manifest() -> None:
    rows = [r for r in _rows(KOS_DIR / "index.tsv") if r["kind"] == "KOS"]
    on_disk = {p.relative_to(KOS_DIR).as_posix() for p in KOS_DIR.rglob("*.dcm") if p.parts[-4] != "instances"}
    assert {r["file"] for r in rows} == on_disk, "kos/index.tsv and the KOS files on disk differ"
    bad = {}
    for r in rows:
        path = KOS_DIR / r["file"]
        s = kos.summarize(path)
        assert (s.sop_instance_uid, s.patient_id) == (r["sop_instance_uid"], r["patient_id"]), r["file"]
        assert sorted(s.study_instance_uids) == sorted(r["referenced_studies"].split()), r["file"]
        assert len(s.series) == int(r["referenced_series"]), r["file"]
        assert {x.retrieve_location_uid for x in s.series.values()} == {r["retrieve_location_uid"]}, r["file"]
        findings = kos.check_manifest(path, _entry(s))
        # The two NIST "kos_modified" files changed the SOP Instance UID in the data set only: a warning.
        if _errors(findings) or (_warnings(findings) and "kos_modified" not in r["file"]):
            bad[r["file"]] = [f.message for f in findings]
    assert not bad, bad
    assert len(rows) >= 50


def test_an_image_is_not_a_manifest() -> None:
    row = next(r for r in _rows(KOS_DIR / "index.tsv") if r["kind"] == "image")
    image = KOS_DIR / row["file"]
    s = kos.summarize(image)  # readable, but no manifest
    (message,) = _errors(kos.check_manifest(image, _entry(s)))
    assert f"SOPClassUID (0008,0016) is '{row['sop_class']}' (MR Image Storage); a RAD-68 manifest must be " \
           f"{kos.KOS_SOP_CLASS}" in message


@pytest.mark.parametrize("name", sorted(p.name for p in RAD68_DIR.glob("*.xml")) or ["(no rad68 messages)"])
def test_rad68_message(name: str, tmp_path: Path) -> None:
    (row,) = [r for r in _rows(RAD68_DIR / "index.tsv") if r["file"] == name]
    root = parse_xml((RAD68_DIR / row["file"]).read_bytes(), huge_text=True)
    submission, errors = read_submission(root)
    assert not errors
    documents = {d.get("id"): d.text or "" for d in root.iter(q(XDSB, "Document"))}
    for de in submission.documents:
        assert kos.is_imaging_manifest(de)
        if de.id not in documents:  # the derived XDSMissingDocument case: nothing to check here
            assert row["expected_status"] == "Failure"
            continue
        path = tmp_path / "kos.dcm"
        path.write_bytes(base64.b64decode(documents[de.id]))
        findings = kos.check_manifest(path, de)
        assert row["expected_status"] == "Success"
        assert not _errors(findings), findings
        if de.unique_id == kos.summarize(path).sop_instance_uid:
            assert not findings, findings
        else:  # nistids_4801/4802: the toolkit gave the entry a fresh uniqueId (see repository/kos.py)
            assert any("uniqueId is" in w for w in _warnings(findings))


# --- mutated manifests -----------------------------------------------------------------------------------


@pytest.fixture
def base() -> Path:
    path = KOS_DIR / "nist-ids-dataset" / "IDS-DEPT002-a_kos.dcm"  # 1 study, 2 series, 36 CT instances
    need(path.is_file(), f"conformance data not found at {path}")
    return path


def _mutated(base: Path, tmp_path: Path, change) -> tuple[Path, DocumentEntry]:  # type: ignore[no-untyped-def]
    ds = pydicom.dcmread(base)
    de = _entry(kos.summarize(base))
    change(ds)
    path = tmp_path / "mutated.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path, de


def test_summary(base: Path) -> None:
    s = kos.summarize(base)
    assert s.patient_id == "IDS-DEPT002-a" and s.issuer == ""
    assert s.study_instance_uids == ["1.3.6.1.4.1.21367.201599.1.201604020954059"]
    assert s.instance_count == 36 and sum(len(x.instances) for x in s.series.values()) == 36
    assert {(x.retrieve_location_uid, x.retrieve_ae_title) for x in s.series.values()} == {
        ("1.3.6.1.4.1.21367.13.80.110", "DCM4CHEE")}
    assert s.accession_numbers == ["IDC002-a"]


def test_wrong_sop_class(base: Path, tmp_path: Path) -> None:
    def change(ds: Dataset) -> None:
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = CT_IMAGE

    path, de = _mutated(base, tmp_path, change)
    findings = kos.check_manifest(path, de)
    assert [f.message for f in findings] == [
        (f"DocumentEntry {de.id}: SOPClassUID (0008,0016) is '{CT_IMAGE}' (CT Image Storage); a RAD-68 manifest "
         f"must be {kos.KOS_SOP_CLASS} (Key Object Selection Document Storage)")]
    assert findings[0].code == "XDSRepositoryMetadataError" and findings[0].location == de.id


def test_no_evidence_sequence(base: Path, tmp_path: Path) -> None:
    path, de = _mutated(base, tmp_path, lambda ds: delattr(ds, "CurrentRequestedProcedureEvidenceSequence"))
    (message,) = [f.message for f in kos.check_manifest(path, de)]
    assert message.startswith(f"DocumentEntry {de.id}: CurrentRequestedProcedureEvidenceSequence (0040,A375) is "
                              "missing or empty")


def test_series_without_retrieve_location_uid(base: Path, tmp_path: Path) -> None:
    def change(ds: Dataset) -> None:
        del ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[1].RetrieveLocationUID

    path, de = _mutated(base, tmp_path, change)
    (message,) = [f.message for f in kos.check_manifest(path, de)]
    assert message.startswith(
        f"DocumentEntry {de.id}: CurrentRequestedProcedureEvidenceSequence (0040,A375) item 1 > "
        "ReferencedSeriesSequence (0008,1115) item 2 > RetrieveLocationUID (0040,E011) is missing or empty "
        "(XDS-I.b requires it")


def test_content_item_missing_from_evidence(base: Path, tmp_path: Path) -> None:
    removed: list[str] = []

    def change(ds: Dataset) -> None:
        sops = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence
        removed.append(sops.pop(0).ReferencedSOPInstanceUID)

    path, de = _mutated(base, tmp_path, change)
    (message,) = [f.message for f in kos.check_manifest(path, de)]
    assert f"references SOP Instance '{removed[0]}', which CurrentRequestedProcedureEvidenceSequence (0040,A375) " \
           "does not list" in message
    assert message.startswith(f"DocumentEntry {de.id}: ContentSequence (0040,A730) item ")


def test_unique_id_mismatch(base: Path) -> None:
    de = _entry(kos.summarize(base), unique_id="1.2.3.4")
    expected = (f"DocumentEntry {de.id}: uniqueId is '1.2.3.4' but the KOS SOPInstanceUID (0008,0018) is "
                "'2.25.52342449726056264552113473327672641971' (RAD TF-3 4.68.4.1.2.3.2: uniqueId is the KOS SOP "
                "Instance UID)")
    lenient = kos.check_manifest(base, de)
    assert _warnings(lenient) == [expected] and not _errors(lenient)
    assert _errors(kos.check_manifest(base, de, require_unique_id_match=True)) == [expected]


def test_not_dicom_at_all(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(b"%PDF-1.4\n" + b"x" * 400)
    de = DocumentEntry(id="Doc1", mime_type="application/dicom", format_code=KOS_FORMAT)
    (message,) = [f.message for f in kos.check_manifest(path, de)]
    assert message == (
        "DocumentEntry Doc1: the document is not a valid KOS manifest: it is not a DICOM Part 10 file: this file "
        "(409 bytes) has no 'DICM' prefix after a 128-byte preamble (RAD TF-3 4.68.4.1.2.1 requires the Part 10 "
        "format with File Meta Information; a raw data set is not accepted)")


def test_raw_data_set_without_file_meta_is_refused(base: Path, tmp_path: Path) -> None:
    raw = base.read_bytes()
    path = tmp_path / "raw.dcm"
    path.write_bytes(raw[132 + 12 + pydicom.dcmread(base).file_meta.FileMetaInformationGroupLength:])
    (message,) = _errors(kos.check_manifest(path, _entry(kos.summarize(base))))
    assert "it is not a DICOM Part 10 file" in message
    with pytest.raises(kos.ManifestError, match="no 'DICM' prefix"):
        kos.summarize(path)


def test_truncated_file(base: Path, tmp_path: Path) -> None:
    raw = base.read_bytes()
    de = _entry(kos.summarize(base))
    path = tmp_path / "cut.dcm"
    path.write_bytes(raw[: len(raw) // 2])
    (message,) = [f.message for f in kos.check_manifest(path, de)]
    assert message.startswith(f"DocumentEntry {de.id}: the document is not a valid KOS manifest: it is truncated: ")
    assert message.endswith("the file (5587 bytes) ends inside an element header in ContentSequence (0040,A730)")
    # pydicom alone reads a file cut at the end of an item silently: every cut must still be caught.
    for n in [*range(0, len(raw), 97), *range(len(raw) - 40, len(raw))]:
        path.write_bytes(raw[:n])
        assert _errors(kos.check_manifest(path, de)), n


def test_rejection_note_title(base: Path, tmp_path: Path) -> None:
    def change(ds: Dataset) -> None:
        title = ds.ConceptNameCodeSequence[0]
        title.CodeValue, title.CodeMeaning = "113001", "Rejected for Quality Reasons"

    path, de = _mutated(base, tmp_path, change)
    (message,) = [f.message for f in kos.check_manifest(path, de)]
    assert ("ConceptNameCodeSequence (0040,A043) (the document title) is (113001, DCM, \"Rejected for Quality "
            "Reasons\"), which is an IOCM rejection note") in message


def test_entry_codes_and_reference_ids(base: Path) -> None:
    s = kos.summarize(base)
    de = _entry(s, mime_type="application/octet-stream", format_code=Code(kos.KOS_SOP_CLASS, "2.16.840.1.113883.3"),
                reference_ids=[f"1.2.3^^^^{kos.STUDY_UID_REFERENCE}", "ACC1^^^&1.2.3&ISO^urn:ihe:iti:xds:2013:accession"])
    assert kos.is_imaging_manifest(de)
    assert _errors(kos.check_manifest(base, de)) == [
        (f"DocumentEntry {de.id}: mimeType is 'application/octet-stream'; a KOS manifest (RAD-68) must have mimeType "
         "application/dicom"),
        (f"DocumentEntry {de.id}: formatCode is '{kos.KOS_SOP_CLASS}' (codingScheme '2.16.840.1.113883.3'); a KOS "
         f"manifest (RAD-68) must have formatCode {kos.KOS_SOP_CLASS} with codingScheme 1.2.840.10008.2.6.1"),
        (f"DocumentEntry {de.id}: referenceIdList value '1.2.3^^^^{kos.STUDY_UID_REFERENCE}' names study '1.2.3', "
         "which the manifest does not reference (CurrentRequestedProcedureEvidenceSequence (0040,A375) lists "
         f"{s.study_instance_uids[0]})"),
    ]


def test_patient_mismatch_is_only_a_warning(base: Path) -> None:
    de = _entry(kos.summarize(base), source_patient_id="OTHER-1^^^&1.2.3&ISO")
    findings = kos.check_manifest(base, de)
    assert not _errors(findings)
    assert _warnings(findings) == [(f"DocumentEntry {de.id}: the KOS PatientID (0010,0020) is 'IDS-DEPT002-a' but "
                                    "sourcePatientId is 'OTHER-1^^^&1.2.3&ISO' (id 'OTHER-1')")]


def test_issuer_mismatch_is_only_a_warning(base: Path, tmp_path: Path) -> None:
    path, de = _mutated(base, tmp_path, lambda ds: setattr(ds, "IssuerOfPatientID", "OTHER-HOSPITAL"))
    assert [f.message for f in kos.check_manifest(path, de) if not f.is_error] == [
        (f"DocumentEntry {de.id}: the KOS IssuerOfPatientID (0010,0021) is 'OTHER-HOSPITAL' but the assigning "
         f"authority of sourcePatientId '{de.source_patient_id}' is '&1.3.6.1.4.1.21367.1800.13.20.1000&ISO'")]


def test_oversized_file_is_refused_unread(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    de = _entry(kos.summarize(base))
    monkeypatch.setattr(kos, "MAX_MANIFEST_BYTES", 1000)
    (message,) = [f.message for f in kos.check_manifest(base, de)]
    assert message.endswith(f"it is {base.stat().st_size} bytes; manifests larger than 1000 bytes are refused unread")


def test_is_imaging_manifest() -> None:
    assert kos.is_imaging_manifest(DocumentEntry(format_code=KOS_FORMAT, mime_type="text/xml"))
    assert kos.is_imaging_manifest(DocumentEntry(mime_type="Application/DICOM"))
    assert not kos.is_imaging_manifest(DocumentEntry(mime_type="text/xml",
                                                     format_code=Code("urn:ihe:rad:TEXT", "1.3.6.1.4.1.19376.1.2.3")))
