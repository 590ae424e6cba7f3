"""Sample XDS-I.b submissions (one imaging study manifest each) for the demo, tests and benchmarks.

The codes are the ones an XDS-I.b Imaging Document Source uses for a KOS manifest (RAD TF-3 4.68.4.1.2),
so the samples look like what a PACS publishes.
"""

from __future__ import annotations

import hashlib
import uuid

from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Association, Author, Code, DocumentEntry, Submission, SubmissionSet

DEMO_DOMAIN_OID = "1.3.6.1.4.1.21367.13.20.1000"
DEMO_REPOSITORY_UID = "1.3.6.1.4.1.21367.13.80.110"
DEMO_SOURCE_ID = "1.3.6.1.4.1.21367.13.80.1"

KOS_FORMAT = Code("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1", "Key Object Selection Document")
MODALITIES = {
    "CT": Code("CT", "1.2.840.10008.2.16.4", "Computed Tomography"),
    "MR": Code("MR", "1.2.840.10008.2.16.4", "Magnetic Resonance"),
    "CR": Code("CR", "1.2.840.10008.2.16.4", "Computed Radiography"),
}
REGIONS = {
    "CHEST": Code("T-D3000", "SRT", "Chest"),
    "HEAD": Code("T-D1100", "SRT", "Head"),
    "KNEE": Code("T-15710", "SRT", "Knee joint"),
}


def patient_id(local: str, oid: str = DEMO_DOMAIN_OID) -> str:
    """Affinity-domain patient id in XDS CX form."""
    return f"{local}^^^&{oid}&ISO"


def uid() -> str:
    """A fresh DICOM/OID-style unique id (2.25 + UUID as an integer)."""
    return "2.25." + str(uuid.uuid4().int)


def imaging_study_submission(
    pid: str,
    *,
    modality: str = "CT",
    region: str = "CHEST",
    study_date: str = "20250101",
    accession: str = "ACC0001",
    study_uid: str | None = None,
    institution: str = "Demo Hospital^^^^^^^^^1.3.6.1.4.1.21367.13.40.1",
    manifest: bytes | None = None,
) -> Submission:
    """One SubmissionSet with one KOS DocumentEntry for a study (ids symbolic, as a source sends them)."""
    study_uid = study_uid or uid()
    manifest = manifest if manifest is not None else f"KOS manifest of study {study_uid}".encode()
    author = Author(institutions=[institution], roles=["Radiologist"], person="^Curie^Marie^^^")
    de = DocumentEntry(
        id="Document01",
        mime_type="application/dicom",
        unique_id=uid(),
        patient_id=pid,
        title=f"{modality} {region.title()} study",
        hash=hashlib.sha1(manifest).hexdigest(),
        size=str(len(manifest)),
        creation_time=study_date + "120000",
        service_start_time=study_date + "1000",
        language_code="en-US",
        repository_unique_id=DEMO_REPOSITORY_UID,
        source_patient_id=pid,
        source_patient_info=[f"PID-3|{pid}", "PID-5|Doe^Jane^^^", "PID-7|19700101", "PID-8|F"],
        class_code=Code("IMAGES", "1.3.6.1.4.1.19376.1.2.6.1", "Images"),
        type_code=Code("18748-4", "2.16.840.1.113883.6.1", "Diagnostic imaging study"),
        format_code=KOS_FORMAT,
        healthcare_facility_type_code=Code("22232009", "2.16.840.1.113883.6.96", "Hospital"),
        practice_setting_code=Code("394914008", "2.16.840.1.113883.6.96", "Radiology"),
        confidentiality_codes=[Code("N", "2.16.840.1.113883.5.25", "normal")],
        event_codes=[MODALITIES[modality], REGIONS[region]],
        authors=[author],
        reference_ids=[f"{study_uid}^^^^urn:ihe:iti:xds:2016:studyInstanceUID",
                       f"{accession}^^^&1.3.6.1.4.1.21367.13.50.1&ISO^urn:ihe:iti:xds:2013:accession"],
    )
    ss = SubmissionSet(
        id="SubmissionSet01",
        unique_id=uid(),
        source_id=DEMO_SOURCE_ID,
        patient_id=pid,
        title="Imaging study manifest",
        submission_time=study_date + "130000",
        content_type_code=Code("18748-4", "2.16.840.1.113883.6.1", "Diagnostic imaging study"),
        authors=[Author(institutions=[institution])],
    )
    hm = Association(id="Association01", association_type=v.HAS_MEMBER, source_object=ss.id, target_object=de.id,
                     submission_set_status="Original")
    return Submission(submission_set=ss, documents=[de], associations=[hm])
