"""The XDS-I.b imaging manifest of a study: a DICOM Key Object Selection (KOS) document and its metadata.

:func:`build_kos` writes the manifest (RAD TF-3 4.68.4.1.2.1: DICOM KOS, title (113030, DCM, "Manifest"),
TID 2010 content tree, every referenced instance in the Current Requested Procedure Evidence Sequence with
the Retrieve Location UID of this Imaging Document Source). :func:`document_entry_for` and
:func:`submission_for` give its RAD-68 metadata (RAD TF-3 4.68.4.1.2.3.2).

Time zone assumption: DICOM dates and times (StudyDate/StudyTime) carry no zone. They are read in the
PACS's configured zone (``PacsConfig.timezone``, default UTC) and converted to UTC for serviceStartTime,
keeping their precision. A study date without time stays a date: shifting a bare date by a zone offset
would invent a day. The manifest's own ContentDate/Time and InstanceCreationDate/Time are written in the
same zone, so every date of the KOS reads alike, and creationTime is derived from them (RAD TF-3
4.68.4.1.2.3.2: creationTime from Instance Creation Date/Time).
"""

from __future__ import annotations

import hashlib
import io
import re
import uuid
from datetime import UTC, datetime, tzinfo
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes as dicom_codes
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)

from imaging_source.config import ImagingSourceConfig, PacsConfig
from imaging_source.pacs.base import Study
from repository.kos import (
    DICOM_UID_REGISTRY,
    KOS_SOP_CLASS,
    MANIFEST_TITLE,
    MIME_DICOM,
    STUDY_UID_REFERENCE,
)
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import (
    Association,
    Author,
    Code,
    DocumentEntry,
    Submission,
    SubmissionSet,
)
from xdsi.validate.hl7 import check_uuid_urn

__all__ = [
    "ACCESSION_REFERENCE",
    "BODY_PART_REGIONS",
    "KOS_FORMAT_CODE",
    "MODALITY_SCHEME",
    "SNOMED_CT",
    "anatomic_region_codes",
    "build_kos",
    "content_value_type",
    "document_entry_for",
    "kos_bytes",
    "kos_for",
    "modality_codes",
    "service_start_time",
    "source_patient_id",
    "submission_for",
    "write_kos",
]

#: formatCode of an XDS-I.b manifest: the KOS SOP Class in the DICOM UID registry scheme.
KOS_FORMAT_CODE = Code(KOS_SOP_CLASS, DICOM_UID_REGISTRY, "Key Object Selection Document")
#: codingScheme of DICOM (DCM) codes in XDS metadata: acquisition modalities of CID 29.
MODALITY_SCHEME = "1.2.840.10008.2.16.4"
#: codingScheme of SNOMED CT: anatomic regions of CID 4.
SNOMED_CT = "2.16.840.1.113883.6.96"
#: referenceIdList identifier type of an accession number (ITI TF-3 Table 4.2.3.1.7-2).
ACCESSION_REFERENCE = "urn:ihe:iti:xds:2013:accession"

#: Acquisition modalities (DICOM CID 29) by Modality (0008,0060) value, with their code meanings. Only these
#: go into eventCodeList: KO, PR, SR, SEG... are not acquisition modalities (RAD TF-3 4.68.4.1.2.3.2).
ACQUISITION_MODALITIES: dict[str, str] = {
    c.value: c.meaning for c in (getattr(dicom_codes.cid29, name) for name in dicom_codes.cid29.dir())
}

#: Body Part Examined (0018,0015) defined terms -> anatomic region (DICOM CID 4, SNOMED CT), after DICOM
#: PS3.16 Annex L. Values not listed are skipped (no guessing of a region).
BODY_PART_REGIONS: dict[str, Code] = {
    term: Code(code, SNOMED_CT, meaning)
    for term, code, meaning in (
        ("ABDOMEN", "818981001", "Abdomen"),
        ("ABDOMENPELVIS", "818982008", "Abdomen and Pelvis"),
        ("ANKLE", "70258002", "Ankle joint"),
        ("BRAIN", "12738006", "Brain"),
        ("BREAST", "76752008", "Breast"),
        ("CHEST", "816094009", "Thorax"),
        ("THORAX", "816094009", "Thorax"),
        ("CHESTABDOMEN", "416550000", "Chest and Abdomen"),
        ("CHESTABDPELVIS", "416775004", "Chest, Abdomen and Pelvis"),
        ("CLAVICLE", "51299004", "Clavicle"),
        ("CSPINE", "122494005", "Cervical spine"),
        ("ELBOW", "16953009", "Elbow joint"),
        ("EXTREMITY", "66019005", "Extremity"),
        ("EYE", "81745001", "Eye"),
        ("FEMUR", "71341001", "Femur"),
        ("FOOT", "56459004", "Foot"),
        ("FOREARM", "14975008", "Forearm"),
        ("HAND", "85562004", "Hand"),
        ("HEAD", "69536005", "Head"),
        ("HEADNECK", "774007", "Head and Neck"),
        ("HIP", "29836001", "Hip"),
        ("HUMERUS", "85050009", "Humerus"),
        ("KNEE", "72696002", "Knee"),
        ("LSPINE", "122496007", "Lumbar spine"),
        ("LUNG", "39607008", "Lung"),
        ("NECK", "45048000", "Neck"),
        ("PELVIS", "816092008", "Pelvis"),
        ("SHOULDER", "16982005", "Shoulder"),
        ("SKULL", "89546000", "Skull"),
        ("SPINE", "421060004", "Spine"),
        ("TSPINE", "122495006", "Thoracic spine"),
        ("WHOLEBODY", "38266002", "Entire body"),
        ("WRIST", "74670003", "Wrist joint"),
    )
}

_UID = re.compile(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*")
_HL7_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def _check_uid(value: str, what: str) -> str:
    if not value or len(value) > 64 or not _UID.fullmatch(value):
        raise ValueError(f"{what} {value!r} is not a DICOM UID (dotted decimal numbers, at most 64 characters)")
    return value


def _item(**attributes: object) -> Dataset:
    """A sequence item. (pydicom's ``Dataset(**kw)`` ignores keyword arguments: set them one by one.)"""
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def _code_item(value: str, scheme: str, meaning: str) -> Dataset:
    return _item(CodeValue=value, CodingSchemeDesignator=scheme, CodeMeaning=meaning)


def content_value_type(sop_class_uid: str) -> str:
    """TID 2010 value type of a reference: IMAGE for image storage SOP classes, WAVEFORM for waveforms,
    COMPOSITE for any other (and unknown/private) SOP class."""
    name = UID(sop_class_uid).name
    if "Waveform Storage" in name:
        return "WAVEFORM"
    if "Image Storage" in name:
        return "IMAGE"
    return "COMPOSITE"


# --- the KOS ---------------------------------------------------------------------------------------------


def build_kos(
    study: Study,
    *,
    retrieve_location_uid: str,
    retrieve_ae_title: str = "",
    institution: str = "",
    sop_instance_uid: str | None = None,
    series_instance_uid: str | None = None,
    issuer_oid: str = "",
    tz: tzinfo | None = None,
    now: datetime | None = None,
) -> Dataset:
    """The KOS manifest of ``study``, referencing every instance of its series tree.

    Parameters
    ----------
    study : Study
        With its full series/instance tree (:meth:`PacsAdapter.study`).
    retrieve_location_uid : str
        repositoryUniqueId of this Imaging Document Source (RAD-69): RetrieveLocationUID of every series.
    retrieve_ae_title : str
        RetrieveAETitle of every series (the PACS's AE title); omitted when empty.
    institution : str
        InstitutionName of the manifest (default: the study's institution).
    sop_instance_uid, series_instance_uid : str, optional
        UIDs of the manifest and of its KO series; new 2.25 UIDs by default.
    issuer_oid : str
        OID of the issuer of the study's PatientID, written as IssuerOfPatientIDQualifiersSequence >
        UniversalEntityID (ISO) when the IssuerOfPatientID itself is not that OID.
    tz : tzinfo, optional
        Zone of the PACS's dates and times; the manifest's content and creation date/time use it (UTC
        by default).
    now : datetime, optional
        Creation time of the manifest (default: the current time; a naive value is taken as UTC).

    Raises
    ------
    ValueError
        The study has no instance, or a UID is missing or malformed (the message names it).
    """
    _check_uid(study.study_instance_uid, "StudyInstanceUID of the study")
    _check_uid(retrieve_location_uid, "retrieve_location_uid (RetrieveLocationUID)")
    tz = tz or UTC
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    local_now = now.astimezone(tz)
    sop_uid = _check_uid(sop_instance_uid or generate_uid(prefix=None), "sop_instance_uid")
    series_uid = _check_uid(series_instance_uid or generate_uid(prefix=None), "series_instance_uid")

    # One evidence series per PACS series that has instances; a SOP instance is referenced once.
    seen: set[str] = set()
    evidence_series: list[Dataset] = []
    content: list[Dataset] = []
    for series in study.series:
        refs: list[Dataset] = []
        for inst in series.instances:
            _check_uid(inst.sop_class_uid, f"SOPClassUID of instance {inst.sop_instance_uid!r}")
            _check_uid(inst.sop_instance_uid, f"SOPInstanceUID of an instance of series "
                                              f"{series.series_instance_uid!r}")
            if inst.sop_instance_uid in seen:
                continue
            seen.add(inst.sop_instance_uid)
            refs.append(_item(ReferencedSOPClassUID=inst.sop_class_uid,
                              ReferencedSOPInstanceUID=inst.sop_instance_uid))
            content.append(_item(
                RelationshipType="CONTAINS",
                ValueType=content_value_type(inst.sop_class_uid),
                ReferencedSOPSequence=Sequence([_item(ReferencedSOPClassUID=inst.sop_class_uid,
                                                      ReferencedSOPInstanceUID=inst.sop_instance_uid)]),
            ))
        if not refs:
            continue
        _check_uid(series.series_instance_uid, "SeriesInstanceUID")
        s = _item(SeriesInstanceUID=series.series_instance_uid)
        if retrieve_ae_title:
            s.RetrieveAETitle = retrieve_ae_title
        s.RetrieveLocationUID = retrieve_location_uid  # XDS-I.b: where RAD-69 retrieves the instances
        s.ReferencedSOPSequence = Sequence(refs)
        evidence_series.append(s)
    if not content:
        raise ValueError(f"study {study.study_instance_uid} of PACS {study.pacs!r} has no instance: a manifest "
                         "references at least one (was the series tree loaded with PacsAdapter.study?)")

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8: patient names come from many hospitals
    # SOP Common
    ds.SOPClassUID = KOS_SOP_CLASS
    ds.SOPInstanceUID = sop_uid
    ds.InstanceCreationDate = local_now.strftime("%Y%m%d")
    ds.InstanceCreationTime = local_now.strftime("%H%M%S")
    # Patient: the PACS's own identity of the patient (the domain id is in the XDS metadata only).
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    if study.issuer_of_patient_id:
        ds.IssuerOfPatientID = study.issuer_of_patient_id
    if issuer_oid and issuer_oid != study.issuer_of_patient_id:
        ds.IssuerOfPatientIDQualifiersSequence = Sequence([_item(UniversalEntityID=issuer_oid,
                                                                 UniversalEntityIDType="ISO")])
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    # General Study
    ds.StudyInstanceUID = study.study_instance_uid
    ds.StudyDate = study.study_date
    ds.StudyTime = study.study_time
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyID = ""
    ds.AccessionNumber = study.accession_number
    if study.study_description:
        ds.StudyDescription = study.study_description
    # Key Object Document Series: its own series in the study
    used = {s.series_number for s in study.series if s.series_number is not None}
    ds.Modality = "KO"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = next(n for n in range(999, 999 + len(used) + 2) if n not in used)
    ds.SeriesDescription = "XDS-I.b imaging manifest"
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    # General Equipment
    ds.Manufacturer = "xdsi"
    if institution or study.institution_name:
        ds.InstitutionName = institution or study.institution_name
    # Key Object Document
    ds.InstanceNumber = 1
    ds.ContentDate = ds.InstanceCreationDate
    ds.ContentTime = ds.InstanceCreationTime
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([
        _item(StudyInstanceUID=study.study_instance_uid, ReferencedSeriesSequence=Sequence(evidence_series))])
    # SR Document Content: TID 2010 Key Object Selection, title (113030, DCM, "Manifest")
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code_item(*MANIFEST_TITLE)])
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentTemplateSequence = Sequence([_item(MappingResource="DCMR", TemplateIdentifier="2010")])
    ds.ContentSequence = Sequence(content)

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = KOS_SOP_CLASS
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "XDSI_KOS_1"
    ds.file_meta = meta
    return ds


def kos_for(study: Study, config: ImagingSourceConfig, *, now: datetime | None = None) -> Dataset:
    """:func:`build_kos` with the settings of ``config`` for the study's PACS (``study.pacs``)."""
    pacs = config.pacs_named(study.pacs)
    return build_kos(
        study,
        retrieve_location_uid=config.repository_unique_id,
        retrieve_ae_title=pacs.retrieve_ae_title,
        institution=config.institution_name,
        issuer_oid=pacs.local_authority_oid(study.issuer_of_patient_id) or "",
        tz=pacs.tzinfo,
        now=now,
    )


def kos_bytes(ds: Dataset) -> bytes:
    """The manifest as a DICOM Part 10 file (preamble, File Meta Information, Explicit VR Little Endian)."""
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def write_kos(ds: Dataset, path: Path | str) -> Path:
    """Write the manifest as a Part 10 file at ``path`` (complete or not at all); returns the path."""
    path = Path(path)
    data = kos_bytes(ds)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


# --- XDS-I.b metadata ------------------------------------------------------------------------------------


def _dtm(da: str, tm: str, tz: tzinfo) -> str:
    """DICOM DA + TM read in zone ``tz`` -> UTC DTM at the same precision ("" if the date is unusable)."""
    da = da.strip().replace(".", "")  # ACR-NEMA style YYYY.MM.DD
    if not re.fullmatch(r"[0-9]{8}", da):
        return ""
    tm = tm.strip().replace(":", "").split(".", 1)[0]
    if not re.fullmatch(r"[0-9]{2}(?:[0-9]{2}(?:[0-9]{2})?)?", tm):
        try:
            datetime.strptime(da, "%Y%m%d")
        except ValueError:
            return ""
        return da  # a date alone stays a date (see the module docstring)
    hh, mm, ss = int(tm[0:2]), int(tm[2:4] or 0), int(tm[4:6] or 0)
    try:
        local = datetime(int(da[0:4]), int(da[4:6]), int(da[6:8]), hh, mm, min(ss, 59), tzinfo=tz)
    except ValueError:
        return ""
    return local.astimezone(UTC).strftime("%Y%m%d%H%M%S")[: 8 + len(tm)]


def service_start_time(study: Study, tz: tzinfo | None = None) -> str:
    """serviceStartTime: StudyDate + StudyTime in the PACS zone ``tz`` (UTC by default) as a UTC DTM."""
    return _dtm(study.study_date, study.study_time, tz or UTC)


def modality_codes(study: Study) -> list[Code]:
    """One eventCodeList code per distinct acquisition modality of the study (CID 29), in series order."""
    seen = [s.modality.strip().upper() for s in study.series] + [m.strip().upper()
                                                                   for m in study.modalities_in_study]
    return [Code(m, MODALITY_SCHEME, ACQUISITION_MODALITIES[m]) for m in dict.fromkeys(seen)
            if m in ACQUISITION_MODALITIES]


def anatomic_region_codes(study: Study) -> list[Code]:
    """One eventCodeList code per distinct anatomic region of the series' Body Part Examined (CID 4)."""
    terms = (re.sub(r"[\s_-]", "", s.body_part_examined).upper() for s in study.series)
    regions = [BODY_PART_REGIONS[t] for t in terms if t in BODY_PART_REGIONS]
    return list(dict.fromkeys(regions))


def _hl7_escape(value: str) -> str:
    for raw, escaped in _HL7_ESCAPES:
        value = value.replace(raw, escaped)
    return value


def _xpn(pn: str) -> str:
    """DICOM PN (family^given^middle^prefix^suffix) -> HL7 XPN (family^given^middle^suffix^prefix)."""
    alphabetic = pn.split("=", 1)[0]
    parts = [_hl7_escape(p) for p in alphabetic.split("^")] + [""] * 5
    family, given, middle, prefix, suffix = parts[:5]
    return f"{family}^{given}^{middle}^{suffix}^{prefix}".rstrip("^")


def source_patient_id(study: Study, pacs: PacsConfig) -> str:
    """The PACS's local id as a CX ``id^^^&<OID>&ISO``: the issuer itself when it is an OID, else the
    PACS's configured ``issuer_oid``. Raises ValueError when no OID is known for the study's issuer."""
    oid = pacs.local_authority_oid(study.issuer_of_patient_id)
    if not study.patient_id:
        raise ValueError(f"study {study.study_instance_uid} of PACS {pacs.name!r} has no PatientID")
    if not oid:
        raise ValueError(f"study {study.study_instance_uid} of PACS {pacs.name!r}: IssuerOfPatientID "
                         f"{study.issuer_of_patient_id!r} is neither an OID nor the PACS's issuer "
                         f"({pacs.default_issuer or pacs.issuer_oid or 'none configured'}); no assigning "
                         "authority OID is known for sourcePatientId")
    return f"{_hl7_escape(study.patient_id)}^^^&{oid}&ISO"


def _source_patient_info(study: Study, spid: str) -> list[str]:
    info = [f"PID-3|{spid}"]
    if study.patient_name:
        info.append(f"PID-5|{_xpn(study.patient_name)}")
    if re.fullmatch(r"[0-9]{8}", study.patient_birth_date.strip()):
        info.append(f"PID-7|{study.patient_birth_date.strip()}")
    if study.patient_sex.strip().upper() in ("M", "F", "O"):
        info.append(f"PID-8|{study.patient_sex.strip().upper()}")
    return info


def _domain_cx(domain_patient_id: str, config: ImagingSourceConfig) -> str:
    if "^" in domain_patient_id:
        return domain_patient_id
    return f"{domain_patient_id}^^^&{config.affinity_domain_oid}&ISO"


def _new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def document_entry_for(
    study: Study,
    kos: Dataset,
    *,
    config: ImagingSourceConfig,
    domain_patient_id: str,
    size: int | str,
    sha1: str,
    entry_id: str | None = None,
) -> DocumentEntry:
    """The XDS-I.b DocumentEntry of the manifest ``kos`` of ``study`` (RAD TF-3 4.68.4.1.2.3.2).

    ``domain_patient_id`` is the affinity-domain patient id, as a CX ``id^^^&OID&ISO`` or as the bare id
    (the affinity domain's OID is then added). ``entry_id`` defaults to a new ``urn:uuid:``, so the
    caller knows the entryUUID a later replacement (RPLC) will target. repositoryUniqueId is left empty:
    the Repository sets it.
    """
    pacs = config.pacs_named(study.pacs)
    tz = pacs.tzinfo
    spid = source_patient_id(study, pacs)
    created = _dtm(str(kos.get("InstanceCreationDate", "") or kos.get("ContentDate", "")),
                   str(kos.get("InstanceCreationTime", "") or kos.get("ContentTime", "")), tz)
    reference_ids = [f"{study.study_instance_uid}^^^^{STUDY_UID_REFERENCE}"]
    accession = study.accession_number.strip()
    if accession and pacs.accession_issuer_oid:
        # ITI TF-3 4.2.3.2.28: an accession reference names its assigning authority; without one, none.
        reference_ids.append(f"{_hl7_escape(accession)}^^^&{pacs.accession_issuer_oid}&ISO^{ACCESSION_REFERENCE}")
    modalities = modality_codes(study)
    title = study.study_description.strip() or (
        f"{'/'.join(c.code for c in modalities)} imaging study" if modalities else "Imaging study")
    c = config.codes
    return DocumentEntry(
        id=entry_id or _new_id(),
        mime_type=MIME_DICOM,
        unique_id=str(kos.SOPInstanceUID),
        patient_id=_domain_cx(domain_patient_id, config),
        title=title,
        hash=sha1,
        size=str(size),
        creation_time=created or datetime.now(UTC).strftime("%Y%m%d%H%M%S"),
        service_start_time=service_start_time(study, tz),
        language_code=c.language_code,
        repository_unique_id="",
        source_patient_id=spid,
        source_patient_info=_source_patient_info(study, spid),
        class_code=c.class_code,
        format_code=KOS_FORMAT_CODE,
        healthcare_facility_type_code=c.healthcare_facility_type_code,
        practice_setting_code=c.practice_setting_code,
        type_code=c.type_code,
        confidentiality_codes=list(c.confidentiality_codes),
        event_codes=modalities + anatomic_region_codes(study),
        authors=[Author(institutions=[config.institution])],
        reference_ids=reference_ids,
    )


def submission_for(
    study: Study,
    kos: Dataset,
    kos_bytes: bytes,
    *,
    config: ImagingSourceConfig,
    domain_patient_id: str,
    replaces: str | None = None,
    now: datetime | None = None,
) -> Submission:
    """The RAD-68 metadata of one manifest: a SubmissionSet, its DocumentEntry and their HasMember; with
    ``replaces`` (the entryUUID of the manifest published before) an RPLC association too.

    The DocumentEntry's hash and size are those of ``kos_bytes`` (the document sent). All ids are new
    ``urn:uuid:`` values. Raises ValueError when ``replaces`` is not a ``urn:uuid:``.
    """
    if replaces is not None and check_uuid_urn(replaces):
        raise ValueError(f"replaces {replaces!r} must be the entryUUID (urn:uuid:...) of the manifest to replace")
    de = document_entry_for(study, kos, config=config, domain_patient_id=domain_patient_id,
                            size=len(kos_bytes), sha1=hashlib.sha1(kos_bytes).hexdigest())
    now = now or datetime.now(UTC)
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    ss = SubmissionSet(
        id=_new_id(),
        unique_id=generate_uid(prefix=None),
        source_id=config.source_id,
        patient_id=de.patient_id,
        title="XDS-I.b imaging manifest",
        submission_time=now.astimezone(UTC).strftime("%Y%m%d%H%M%S"),
        content_type_code=config.codes.content_type_code,
        authors=[Author(institutions=[config.institution])],
    )
    associations = [Association(id=_new_id(), association_type=v.HAS_MEMBER, source_object=ss.id,
                                target_object=de.id, submission_set_status=v.SUBMISSION_SET_STATUS_ORIGINAL)]
    if replaces is not None:
        associations.append(Association(id=_new_id(), association_type=v.RPLC, source_object=de.id,
                                        target_object=replaces))
    return Submission(submission_set=ss, documents=[de], associations=associations)

