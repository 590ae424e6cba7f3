"""Small synthetic but valid DICOM studies, and loading them into a PACS (demo and tests).

A study is a few 64x64 16-bit images per series with the attributes an XDS-I.b manifest and its metadata
are built from (patient id and issuer, accession number, study date, body part, institution), written as
DICOM Part 10 files. :func:`store_files` loads files into a PACS over REST (Orthanc ``POST /instances``)
or C-STORE (pynetdicom), keeping each file's transfer syntax.
"""

from __future__ import annotations

import array
import sys
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filereader import dcmread
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

from imaging_source.pacs.base import PacsError

__all__ = ["SOP_CLASS_BY_MODALITY", "make_study", "new_uid", "store_files"]

SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"
#: The image storage SOP class written for a modality; other modalities get Secondary Capture.
SOP_CLASS_BY_MODALITY = {
    "CT": "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "MR": "1.2.840.10008.5.1.4.1.1.4",  # MR Image Storage
    "CR": "1.2.840.10008.5.1.4.1.1.1",  # Computed Radiography Image Storage
}
_SIZE = 64


def new_uid() -> str:
    """A fresh UID under 2.25 (UUID-derived, no registered root needed)."""
    return str(generate_uid(prefix=None))


def _pixels(seed: int) -> bytes:
    """A 64x64 16-bit gradient that differs per image, so instances are not byte-identical."""
    data = array.array("H", (((x * 37 + y * 11 + seed * 101) % 4096) for y in range(_SIZE) for x in range(_SIZE)))
    if sys.byteorder != "little":
        data.byteswap()
    return data.tobytes()


def make_study(patient_id: str, issuer: str, *, out_dir: Path, modality: str | Sequence[str] = "CT",
               series: int = 2, instances_per_series: int = 3, study_uid: str | None = None,
               pixel: bool = True, patient_name: str = "DOE^JANE", patient_birth_date: str = "19700101",
               patient_sex: str = "F", study_date: date | str = "20240115", study_time: str = "101500",
               accession_number: str | None = None, study_description: str = "CT CHEST",
               body_part: str = "CHEST", institution: str = "Saint Elsewhere Hospital",
               referring_physician: str = "HOUSE^GREGORY", transfer_syntax: str = ExplicitVRLittleEndian,
               ) -> list[Path]:
    """Write a study as Part 10 files ``out_dir/<SOPInstanceUID>.dcm`` and return their paths.

    ``modality`` is one value for all series or one per series; CT/MR/CR get their image storage SOP
    class, anything else Secondary Capture. ``transfer_syntax`` is Explicit or Implicit VR Little Endian.
    ``pixel=False`` leaves out Pixel Data (smaller files, for metadata-only tests).
    """
    if transfer_syntax not in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        raise ValueError("transfer_syntax must be Explicit or Implicit VR Little Endian")
    modalities = [modality] * series if isinstance(modality, str) else list(modality)
    if len(modalities) != series:
        raise ValueError(f"{series} series but {len(modalities)} modalities")
    out_dir.mkdir(parents=True, exist_ok=True)
    study_uid = study_uid or new_uid()
    if isinstance(study_date, date):
        study_date = study_date.strftime("%Y%m%d")
    accession_number = accession_number or ("A" + study_uid.rsplit(".", 1)[-1][-10:])
    frame_of_reference = new_uid()
    paths: list[Path] = []
    for s, mod in enumerate(modalities, start=1):
        series_uid = new_uid()
        sop_class = SOP_CLASS_BY_MODALITY.get(mod, SECONDARY_CAPTURE)
        for n in range(1, instances_per_series + 1):
            ds = Dataset()
            # Patient
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.IssuerOfPatientID = issuer
            ds.PatientBirthDate = patient_birth_date
            ds.PatientSex = patient_sex
            # General Study
            ds.StudyInstanceUID = study_uid
            ds.StudyDate = study_date
            ds.StudyTime = study_time
            ds.AccessionNumber = accession_number
            ds.ReferringPhysicianName = referring_physician
            ds.StudyID = "1"
            ds.StudyDescription = study_description
            # General Series / Equipment
            ds.Modality = mod
            ds.SeriesInstanceUID = series_uid
            ds.SeriesNumber = s
            ds.SeriesDescription = f"{mod} {body_part} series {s}"
            ds.BodyPartExamined = body_part
            ds.SeriesDate = study_date
            ds.Manufacturer = "xdsi synthetic"
            ds.InstitutionName = institution
            # General Image / SOP Common
            ds.SOPClassUID = sop_class
            ds.SOPInstanceUID = new_uid()
            ds.InstanceNumber = n
            ds.ContentDate = study_date
            ds.ContentTime = study_time
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SpecificCharacterSet = "ISO_IR 100"
            if sop_class != SECONDARY_CAPTURE:
                # Frame of Reference / Image Plane
                ds.FrameOfReferenceUID = frame_of_reference
                ds.PositionReferenceIndicator = ""
                ds.ImagePositionPatient = [0, 0, float(n * 5)]
                ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
                ds.PixelSpacing = [0.5, 0.5]
                ds.SliceThickness = 5
            else:
                ds.ConversionType = "WSD"
            if mod == "CT":
                ds.KVP = 120
                ds.RescaleIntercept = -1024
                ds.RescaleSlope = 1
            # Image Pixel
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows = _SIZE
            ds.Columns = _SIZE
            ds.BitsAllocated = 16
            ds.BitsStored = 12
            ds.HighBit = 11
            ds.PixelRepresentation = 0
            if pixel:
                ds.PixelData = _pixels(s * 1000 + n)
                ds["PixelData"].VR = "OW"

            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = UID(sop_class)
            meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            meta.TransferSyntaxUID = UID(transfer_syntax)
            ds.file_meta = meta
            path = out_dir / f"{ds.SOPInstanceUID}.dcm"
            ds.save_as(path, enforce_file_format=True, implicit_vr=transfer_syntax == ImplicitVRLittleEndian,
                       little_endian=True)
            paths.append(path)
    return paths


def store_files(files: Iterable[Path], *, http_url: str | None = None,
                dicom: tuple[str, int, str] | None = None, calling_aet: str = "XDSI_IDS",
                timeout: float = 30) -> None:
    """Load Part 10 files into a PACS: over REST (``POST {http_url}/instances``, Orthanc) when
    ``http_url`` is given, else by C-STORE to ``dicom = (host, port, called_aet)``.

    Raises :class:`PacsError` naming the file the PACS did not accept.
    """
    files = [Path(f) for f in files]
    if http_url:
        _store_rest(files, http_url.rstrip("/"), timeout)
    elif dicom:
        _store_dimse(files, dicom, calling_aet, timeout)
    else:
        raise ValueError("give http_url or dicom=(host, port, aet)")


def _store_rest(files: list[Path], http_url: str, timeout: float) -> None:
    import httpx

    with httpx.Client(timeout=timeout) as client:
        for f in files:
            try:
                r = client.post(http_url + "/instances", content=f.read_bytes(),
                                headers={"Content-Type": "application/dicom"})
            except httpx.HTTPError as err:
                raise PacsError(f"cannot POST {f.name} to {http_url}/instances: {err}") from err
            if r.status_code != 200:
                raise PacsError(f"{http_url}/instances refused {f.name}: HTTP {r.status_code} {r.text[:200]}")


def _store_dimse(files: list[Path], dicom: tuple[str, int, str], calling_aet: str, timeout: float) -> None:
    from pynetdicom import AE

    host, port, called = dicom
    # One presentation context per (SOP class, transfer syntax) found, so every file goes as stored.
    heads = []
    for f in files:
        ds = dcmread(f, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        heads.append((f, str(ds.file_meta.MediaStorageSOPClassUID), str(ds.file_meta.TransferSyntaxUID)))
    pairs = sorted({(c, t) for _, c, t in heads})
    if len(pairs) > 128:
        raise PacsError(f"{len(pairs)} (SOP class, transfer syntax) pairs: more than one association allows")
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for c, t in pairs:
        ae.add_requested_context(c, t)
    assoc = ae.associate(host, port, ae_title=called)
    if not assoc.is_established:
        raise PacsError(f"C-STORE: no association with {called} at {host}:{port}")
    try:
        for f, _, _ in heads:
            # A path makes pynetdicom send the file's encoded dataset as is (no decode/re-encode).
            status = assoc.send_c_store(f)
            code = getattr(status, "Status", None)
            if code is None or code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise PacsError(f"C-STORE of {f.name} to {called}: status "
                                f"{'none (timeout/abort)' if code is None else hex(code)}")
    finally:
        assoc.release()
