"""KOS manifests and their XDS-I.b metadata (imaging_source/manifest.py), built from in-memory studies and
checked with the Repository's RAD-68 checks (repository/kos.py), the submission validator and dcmtk."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pydicom
import pytest

from imaging_source.config import ImagingSourceConfig, PacsConfig, PatientIdMapping
from imaging_source.manifest import (
    ACCESSION_REFERENCE,
    BODY_PART_REGIONS,
    KOS_FORMAT_CODE,
    MODALITY_SCHEME,
    SNOMED_CT,
    anatomic_region_codes,
    build_kos,
    content_value_type,
    document_entry_for,
    kos_bytes,
    kos_for,
    modality_codes,
    service_start_time,
    source_patient_id,
    submission_for,
    write_kos,
)
from imaging_source.pacs.base import Instance, Series, Study
from repository import kos as rkos
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Code
from xdsi.samples import uid
from xdsi.validate.submission import validate_register

DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"
REPO_UID = "1.3.6.1.4.1.21367.13.80.110"
HOSP_A_OID = "1.3.6.1.4.1.21367.13.30.1"
ACC_OID = "1.3.6.1.4.1.21367.13.30.2"
CT_IMAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE = "1.2.840.10008.5.1.4.1.1.4"
CR_IMAGE = "1.2.840.10008.5.1.4.1.1.1"
GSPS = "1.2.840.10008.5.1.4.1.1.11.1"
ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"
NOW = datetime(2025, 3, 4, 9, 30, 15, tzinfo=UTC)


def _config(*, timezone_name: str = "UTC", issuer: str = "HOSP_A", issuer_oid: str = HOSP_A_OID,
            accession_oid: str = ACC_OID, ae_title: str = "ORTHANC_A") -> ImagingSourceConfig:
    mapping = PatientIdMapping("table", DOMAIN, frozenset({issuer, issuer_oid} - {""}), table={"A0001": "DOM-1"})
    pacs = PacsConfig(name="hospital-a", protocol="dimse", patient_id_mapping=mapping, ae_title=ae_title,
                      host="127.0.0.1", port=14242, default_issuer=issuer, issuer_oid=issuer_oid,
                      accession_issuer_oid=accession_oid, timezone=timezone_name)
    return ImagingSourceConfig(
        repository_unique_id=REPO_UID, source_id="1.3.6.1.4.1.21367.13.80.1",
        repository_url="http://127.0.0.1:8020/repository", registry_url="http://127.0.0.1:8010/registry",
        affinity_domain_oid=DOMAIN, institution="Demo Imaging Network^^^^^^^^^1.3.6.1.4.1.21367.13.40.1",
        pacs=(pacs,))


def _series(modality: str, body_part: str, sop_class: str, n: int, number: int) -> Series:
    return Series(series_instance_uid=uid(), modality=modality, body_part_examined=body_part, series_number=number,
                  instances=[Instance(sop_class, uid(), i + 1) for i in range(n)])


def _study(**changes: object) -> Study:
    """A CT + MR + presentation-state study of hospital A's patient A0001."""
    study = Study(
        pacs="hospital-a", study_instance_uid=uid(), patient_id="A0001", issuer_of_patient_id="HOSP_A",
        patient_name="Doe^Jane^Q^Dr^III", patient_birth_date="19700101", patient_sex="F",
        accession_number="ACC42", study_date="20250102", study_time="101530.250", study_description="CT chest MR head",
        referring_physician_name="House^Gregory", institution_name="Hospital A",
        modalities_in_study=["CT", "MR", "PR"],
        series=[_series("CT", "CHEST", CT_IMAGE, 3, 1), _series("MR", "HEAD", MR_IMAGE, 2, 2),
                _series("PR", "", GSPS, 1, 3)],
    )
    for k, val in changes.items():
        setattr(study, k, val)
    return study


def _publish(tmp_path: Path, study: Study, config: ImagingSourceConfig, domain: str = "DOM-1"):
    ds = kos_for(study, config, now=NOW)
    path = write_kos(ds, tmp_path / "kos.dcm")
    data = path.read_bytes()
    sub = submission_for(study, ds, data, config=config, domain_patient_id=domain, now=NOW)
    return ds, path, data, sub


# --- the KOS ---------------------------------------------------------------------------------------------


def test_kos_passes_the_repository_checks_with_no_finding(tmp_path: Path) -> None:
    study = _study()
    _, path, _, sub = _publish(tmp_path, study, _config())
    de = sub.documents[0]
    assert rkos.check_manifest(path, de) == []
    assert rkos.check_manifest(path, de, require_unique_id_match=True) == []


def test_kos_summary_matches_the_study(tmp_path: Path) -> None:
    study = _study()
    ds, path, _, _ = _publish(tmp_path, study, _config())
    s = rkos.summarize(path)
    assert s.sop_instance_uid == ds.SOPInstanceUID
    assert s.patient_id == "A0001" and s.issuer == "HOSP_A"
    assert s.study_instance_uid == study.study_instance_uid
    assert s.study_instance_uids == [study.study_instance_uid]
    assert s.instance_count == 6
    assert s.accession_numbers == ["ACC42"]
    assert list(s.series) == [se.series_instance_uid for se in study.series]
    for se in study.series:
        ref = s.series[se.series_instance_uid]
        assert ref.retrieve_location_uid == REPO_UID
        assert ref.retrieve_ae_title == "ORTHANC_A"
        assert ref.instances == {i.sop_instance_uid: i.sop_class_uid for i in se.instances}


def test_kos_header_and_content_tree(tmp_path: Path) -> None:
    study = _study()
    _, path, _, _ = _publish(tmp_path, study, _config())
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert ds.SOPClassUID == rkos.KOS_SOP_CLASS and ds.Modality == "KO"
    title = ds.ConceptNameCodeSequence[0]
    assert (title.CodeValue, title.CodingSchemeDesignator, title.CodeMeaning) == ("113030", "DCM", "Manifest")
    assert ds.ContentTemplateSequence[0].TemplateIdentifier == "2010"
    # Its own series and instance, in the study.
    assert ds.StudyInstanceUID == study.study_instance_uid
    assert ds.SeriesInstanceUID not in {s.series_instance_uid for s in study.series}
    assert ds.SeriesNumber == 999
    # The patient as the PACS knows it, with the issuer's OID as qualifier.
    assert (ds.PatientID, ds.IssuerOfPatientID) == ("A0001", "HOSP_A")
    assert ds.IssuerOfPatientIDQualifiersSequence[0].UniversalEntityID == HOSP_A_OID
    assert str(ds.PatientName) == "Doe^Jane^Q^Dr^III"
    assert ds.InstitutionName == "Demo Imaging Network"
    assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == ("20250304", "093015")
    # One content item per instance, value type per SOP class.
    kinds = [(item.ValueType, item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for item in ds.ContentSequence]
    expected = [("IMAGE" if se.modality != "PR" else "COMPOSITE", i.sop_instance_uid)
                for se in study.series for i in se.instances]
    assert kinds == expected


def test_dsrdump_reads_the_kos(tmp_path: Path) -> None:
    from tests.conftest import need

    dsrdump = shutil.which("dsrdump")
    need(dsrdump is not None, "dcmtk dsrdump is not installed (apt-get install dcmtk)")
    assert dsrdump is not None
    _, path, _, _ = _publish(tmp_path, _study(patient_name="Müller^Zoë"), _config())
    out = subprocess.run([dsrdump, str(path)], capture_output=True, text=True, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert "Key Object Selection Document" in out.stdout
    assert "Manifest" in out.stdout
    assert out.stdout.count("IMAGE") == 5


def test_kos_without_issuer_uses_the_qualifier(tmp_path: Path) -> None:
    study = _study(issuer_of_patient_id="")
    ds, path, _, sub = _publish(tmp_path, study, _config())
    assert "IssuerOfPatientID" not in ds
    assert rkos.summarize(path).issuer == HOSP_A_OID
    assert sub.documents[0].source_patient_id == f"A0001^^^&{HOSP_A_OID}&ISO"
    assert rkos.check_manifest(path, sub.documents[0]) == []


def test_kos_with_oid_issuer_has_no_qualifier(tmp_path: Path) -> None:
    study = _study(issuer_of_patient_id=HOSP_A_OID)
    ds, path, _, sub = _publish(tmp_path, study, _config())
    assert ds.IssuerOfPatientID == HOSP_A_OID and "IssuerOfPatientIDQualifiersSequence" not in ds
    assert rkos.check_manifest(path, sub.documents[0]) == []


def test_dicomweb_pacs_without_ae_title_omits_retrieve_ae_title(tmp_path: Path) -> None:
    study = _study()
    _, path, _, sub = _publish(tmp_path, study, _config(ae_title=""))
    assert all(s.retrieve_ae_title == "" for s in rkos.summarize(path).series.values())
    assert rkos.check_manifest(path, sub.documents[0]) == []


def test_given_uids_duplicates_and_empty_series() -> None:
    study = _study()
    dup = study.series[0].instances[0]
    study.series[1].instances.append(dup)  # the PACS lists an instance twice
    study.series.append(Series(series_instance_uid=uid(), modality="CT"))  # a series with no instance
    sop, series = uid(), uid()
    ds = build_kos(study, retrieve_location_uid=REPO_UID, sop_instance_uid=sop, series_instance_uid=series,
                   now=NOW)
    assert (ds.SOPInstanceUID, ds.SeriesInstanceUID) == (sop, series)
    assert len(ds.ContentSequence) == 6
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence
    assert len(evidence) == 3
    assert "RetrieveAETitle" not in evidence[0]


def test_build_kos_refuses_what_cannot_be_a_manifest() -> None:
    with pytest.raises(ValueError, match="has no instance"):
        build_kos(_study(series=[]), retrieve_location_uid=REPO_UID)
    with pytest.raises(ValueError, match="RetrieveLocationUID"):
        build_kos(_study(), retrieve_location_uid="")
    bad = _study()
    bad.series[0].instances[0].sop_instance_uid = "1.2.abc"
    with pytest.raises(ValueError, match="SOPInstanceUID of an instance of series .*'1.2.abc'"):
        build_kos(bad, retrieve_location_uid=REPO_UID)


def test_kos_times_are_in_the_pacs_zone(tmp_path: Path) -> None:
    study = _study()
    config = _config(timezone_name="Europe/Paris")
    ds, _, _, sub = _publish(tmp_path, study, config)
    assert (ds.InstanceCreationDate, ds.InstanceCreationTime) == ("20250304", "103015")  # CET = UTC+1
    de = sub.documents[0]
    assert de.creation_time == "20250304093015"
    assert de.service_start_time == "20250102091530"  # 10:15:30 CET


def test_content_value_type() -> None:
    assert content_value_type(CT_IMAGE) == "IMAGE"
    assert content_value_type("1.2.840.10008.5.1.4.1.1.1.1") == "IMAGE"  # DX for presentation
    assert content_value_type(ECG) == "WAVEFORM"
    assert content_value_type(GSPS) == "COMPOSITE"
    assert content_value_type("1.2.840.10008.5.1.4.1.1.88.22") == "COMPOSITE"  # Enhanced SR
    assert content_value_type("1.2.3.4.5") == "COMPOSITE"  # private SOP class


# --- the metadata ----------------------------------------------------------------------------------------


def test_submission_is_valid_rad68_metadata(tmp_path: Path) -> None:
    study = _study()
    ds, _, data, sub = _publish(tmp_path, study, _config())
    assert validate_register(sub, provide=True) == []
    de = sub.documents[0]
    assert de.unique_id == ds.SOPInstanceUID
    assert de.mime_type == "application/dicom"
    assert de.format_code == KOS_FORMAT_CODE
    assert (de.format_code.code, de.format_code.scheme) == ("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1")
    assert de.hash == hashlib.sha1(data).hexdigest() and de.size == str(len(data))
    assert de.repository_unique_id == ""
    assert de.patient_id == f"DOM-1^^^&{DOMAIN}&ISO" == sub.submission_set.patient_id
    assert de.source_patient_id == f"A0001^^^&{HOSP_A_OID}&ISO"
    assert de.source_patient_info == [f"PID-3|A0001^^^&{HOSP_A_OID}&ISO", "PID-5|Doe^Jane^Q^III^Dr",
                                      "PID-7|19700101", "PID-8|F"]
    assert de.title == "CT chest MR head"
    assert de.service_start_time == "20250102101530"
    assert de.creation_time == "20250304093015"
    assert de.reference_ids == [
        f"{study.study_instance_uid}^^^^urn:ihe:iti:xds:2016:studyInstanceUID",
        f"ACC42^^^&{ACC_OID}&ISO^urn:ihe:iti:xds:2013:accession",
    ]
    assert de.event_codes == [
        Code("CT", MODALITY_SCHEME, "Computed Tomography"),
        Code("MR", MODALITY_SCHEME, "Magnetic Resonance"),
        Code("816094009", SNOMED_CT, "Thorax"),
        Code("69536005", SNOMED_CT, "Head"),
    ]
    assert de.authors[0].institutions == ["Demo Imaging Network^^^^^^^^^1.3.6.1.4.1.21367.13.40.1"]
    config = _config()
    assert de.class_code == config.codes.class_code and de.type_code == config.codes.type_code
    assert de.confidentiality_codes == list(config.codes.confidentiality_codes)
    assert de.language_code == "en-US"
    ss = sub.submission_set
    assert ss.source_id == config.source_id and ss.submission_time == "20250304093015"
    assert ss.content_type_code == config.codes.content_type_code
    [hm] = sub.associations
    assert (hm.association_type, hm.source_object, hm.target_object, hm.submission_set_status) == (
        v.HAS_MEMBER, ss.id, de.id, "Original")
    assert all(o.id.startswith("urn:uuid:") for o in sub.objects())


def test_replacement_adds_rplc(tmp_path: Path) -> None:
    study = _study()
    ds = kos_for(study, _config(), now=NOW)
    data = kos_bytes(ds)
    previous = "urn:uuid:2b0f1a0e-5a7c-4a41-9d5b-3f0e8a6c1d22"
    sub = submission_for(study, ds, data, config=_config(), domain_patient_id="DOM-1", replaces=previous)
    assert validate_register(sub, provide=True) == []
    rplc = [a for a in sub.associations if a.association_type == v.RPLC]
    assert len(rplc) == 1
    assert (rplc[0].source_object, rplc[0].target_object) == (sub.documents[0].id, previous)
    with pytest.raises(ValueError, match="replaces 'Document01' must be the entryUUID"):
        submission_for(study, ds, data, config=_config(), domain_patient_id="DOM-1", replaces="Document01")


def test_domain_patient_id_as_cx_is_kept(tmp_path: Path) -> None:
    study = _study()
    ds = kos_for(study, _config(), now=NOW)
    de = document_entry_for(study, ds, config=_config(), domain_patient_id=f"DOM-1^^^&{DOMAIN}&ISO", size=10,
                            sha1="0" * 40)
    assert de.patient_id == f"DOM-1^^^&{DOMAIN}&ISO" and de.size == "10"


def test_without_accession_issuer_no_accession_reference() -> None:
    study = _study()
    config = _config(accession_oid="")
    de = document_entry_for(study, kos_for(study, config, now=NOW), config=config, domain_patient_id="DOM-1",
                            size=1, sha1="0" * 40)
    assert de.reference_ids == [f"{study.study_instance_uid}^^^^urn:ihe:iti:xds:2016:studyInstanceUID"]
    assert not any(ACCESSION_REFERENCE in r for r in de.reference_ids)


def test_minimal_study_metadata(tmp_path: Path) -> None:
    """No description, date, demographics or body part: the metadata is still complete and valid."""
    study = Study(pacs="hospital-a", study_instance_uid=uid(), patient_id="A0001",
                  series=[_series("CR", "", CR_IMAGE, 1, 1)])
    _, path, _, sub = _publish(tmp_path, study, _config())
    de = sub.documents[0]
    assert validate_register(sub, provide=True) == []
    assert rkos.check_manifest(path, de) == []
    assert de.title == "CR imaging study"
    assert de.service_start_time == ""
    assert de.event_codes == [Code("CR", MODALITY_SCHEME, "Computed Radiography")]
    assert de.source_patient_info == [f"PID-3|A0001^^^&{HOSP_A_OID}&ISO"]
    assert de.reference_ids[1:] == []  # no accession number


def test_source_patient_id_needs_a_known_authority() -> None:
    config = _config()
    pacs = config.pacs_named("hospital-a")
    assert source_patient_id(_study(issuer_of_patient_id="1.2.3.4"), pacs) == "A0001^^^&1.2.3.4&ISO"
    assert source_patient_id(_study(issuer_of_patient_id="OTHER&1.2.3.5&ISO"), pacs) == "A0001^^^&1.2.3.5&ISO"
    with pytest.raises(ValueError, match="IssuerOfPatientID 'OTHER_HOSPITAL' is neither an OID nor the PACS's"):
        source_patient_id(_study(issuer_of_patient_id="OTHER_HOSPITAL"), pacs)


def test_service_start_time_precision_and_zone() -> None:
    from zoneinfo import ZoneInfo

    paris = ZoneInfo("Europe/Paris")
    assert service_start_time(_study(study_date="20250102", study_time="")) == "20250102"
    assert service_start_time(_study(study_date="20250102", study_time=""), paris) == "20250102"
    assert service_start_time(_study(study_date="20250701", study_time="0130"), paris) == "202506302330"
    assert service_start_time(_study(study_date="20250102", study_time="10"), paris) == "2025010209"
    assert service_start_time(_study(study_date="2025.01.02", study_time="10:15:30")) == "20250102101530"
    assert service_start_time(_study(study_date="20250231", study_time="101530")) == ""
    assert service_start_time(_study(study_date="", study_time="101530")) == ""


def test_event_codes_skip_unknown_and_non_acquisition_values() -> None:
    study = _study(modalities_in_study=["CT", "SR", "KO", "US"])
    study.series.append(_series("CT", "left knee", CT_IMAGE, 1, 4))  # not a defined term
    study.series.append(_series("CT", "Knee", CT_IMAGE, 1, 5))
    study.series.append(_series("OT", "C-SPINE", CT_IMAGE, 1, 6))
    assert [c.code for c in modality_codes(study)] == ["CT", "MR", "US"]
    assert [c.display for c in anatomic_region_codes(study)] == ["Thorax", "Head", "Knee", "Cervical spine"]


def test_body_part_table_uses_dicom_cid4_codes() -> None:
    """Every region code is a DICOM CID 4 (Anatomic Region) code with its CID 4 meaning."""
    from pydicom.sr.codedict import codes

    cid4 = {c.value: c.meaning for c in (getattr(codes.cid4, n) for n in codes.cid4.dir())}
    for term, code in BODY_PART_REGIONS.items():
        assert code.scheme == SNOMED_CT
        assert cid4.get(code.code) == code.display, term


def test_another_issuer_oid_is_still_reported(tmp_path: Path) -> None:
    """The qualifier OID is accepted as the issuer only when it is the sourcePatientId authority."""
    _, path, _, sub = _publish(tmp_path, _study(), _config())
    de = sub.documents[0]
    de.source_patient_id = "A0001^^^&1.2.3.999&ISO"
    findings = rkos.check_manifest(path, de)
    assert len(findings) == 1 and not findings[0].is_error
    assert "IssuerOfPatientID" in findings[0].message


# --- a real study ----------------------------------------------------------------------------------------


def _study_from_files(directory: Path) -> Study:
    """A Study as a PACS adapter reports it, read from the headers of the instance files."""
    series: dict[str, Series] = {}
    study: Study | None = None
    for f in sorted(directory.rglob("*.dcm")):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        if study is None:
            study = Study(pacs="hospital-a", study_instance_uid=ds.StudyInstanceUID, patient_id=ds.PatientID,
                          issuer_of_patient_id=str(ds.get("IssuerOfPatientID", "")),
                          patient_name=str(ds.get("PatientName", "")),
                          patient_birth_date=str(ds.get("PatientBirthDate", "")),
                          patient_sex=str(ds.get("PatientSex", "")),
                          accession_number=str(ds.get("AccessionNumber", "")),
                          study_date=str(ds.get("StudyDate", "")), study_time=str(ds.get("StudyTime", "")),
                          study_description=str(ds.get("StudyDescription", "")))
        s = series.setdefault(ds.SeriesInstanceUID, Series(ds.SeriesInstanceUID, modality=ds.Modality,
                                                           body_part_examined=str(ds.get("BodyPartExamined", ""))))
        s.instances.append(Instance(ds.SOPClassUID, ds.SOPInstanceUID, int(ds.get("InstanceNumber", 0) or 0)))
    assert study is not None
    study.series = list(series.values())
    return study


def test_manifest_of_the_nist_ids_study_references_what_the_nist_manifest_does(tmp_path: Path) -> None:
    from tests.conftest import SHARED, need

    instances = SHARED / "kos" / "instances" / "1.3.6.1.4.1.21367.201599.1.201604020954059"
    nist_kos = SHARED / "kos" / "nist-ids-dataset" / "IDS-DEPT002-a_kos.dcm"
    need(instances.is_dir() and nist_kos.is_file(), f"conformance data not found at {instances}")
    study = _study_from_files(instances)
    config = _config(issuer="", issuer_oid="1.3.6.1.4.1.21367.13.20.1000")
    _, path, _, sub = _publish(tmp_path, study, config, domain="IDS-DEPT002-a")
    assert validate_register(sub, provide=True) == []
    assert rkos.check_manifest(path, sub.documents[0]) == []
    ours, nist = rkos.summarize(path), rkos.summarize(nist_kos)
    assert ours.instance_count == nist.instance_count == 36
    assert {k: s.instances for k, s in ours.series.items()} == {k: s.instances for k, s in nist.series.items()}
    assert ours.patient_id == nist.patient_id


def test_rad68_request_round_trips_and_is_schema_valid(tmp_path: Path) -> None:
    """The metadata as sent on the wire (ebRIM in a ProvideAndRegisterDocumentSetRequest) reads back unchanged
    and valid; the SubmitObjectsRequest is valid against the ebRIM lcm schema."""
    from lxml import etree

    from tests.conftest import SHARED, need
    from xdsi.transform import read_submission
    from xdsi.transform.ebrim_write import write_provide_and_register

    study = _study()
    _, _, data, sub = _publish(tmp_path, study, _config())
    de = sub.documents[0]
    request = etree.fromstring(etree.tostring(write_provide_and_register(sub, {de.id: data})))
    back, errors = read_submission(request)
    assert errors == []
    assert validate_register(back, provide=True) == []
    for name in ("unique_id", "patient_id", "source_patient_id", "source_patient_info", "event_codes",
                 "reference_ids", "hash", "size", "creation_time", "service_start_time", "format_code", "title"):
        assert getattr(back.documents[0], name) == getattr(de, name), name
    assert [a.association_type for a in back.associations] == [v.HAS_MEMBER]
    schema_file = SHARED / "schemas" / "nist-toolkit-v3" / "lcm.xsd"
    need(schema_file.is_file(), f"conformance data not found at {schema_file}")
    schema = etree.XMLSchema(file=str(schema_file))
    assert schema.validate(request[0]), schema.error_log
