"""RAD-68 imaging manifests: is the submitted document a valid XDS-I.b KOS, and does it match its metadata?

RAD-68 (RAD TF-3 4.68) is an ITI-41 whose document is a DICOM Key Object Selection (KOS) manifest, sent as
a DICOM Part 10 file with mimeType ``application/dicom`` (4.68.4.1.2.1). The Repository checks the file
itself (Part 10, SOP class, title, evidence with Retrieve Location UIDs, content tree) and its consistency
with the DocumentEntry (4.68.4.1.2.3.2: uniqueId, mimeType, formatCode, referenceIdList, patient).

Every message names the DocumentEntry, the DICOM attribute by keyword and tag, and the value found.

Severity choices (why some findings are only warnings):

* uniqueId != KOS SOP Instance UID is a *warning* unless ``require_unique_id_match``: RAD TF-3 4.68.4.1.2.3.2
  asks the Imaging Document Source for it, but ITI-41 leaves content to the source, and the NIST reference
  submissions ``nistids_4801``/``nistids_4802`` (expected Success) carry a different uniqueId.
* Patient mismatches (KOS PatientID/IssuerOfPatientID vs sourcePatientId) are *warnings*: the KOS carries
  the departmental id, sourcePatientId may be mapped by the source; a Repository has no patient registry
  to decide. The code stays the caller's ``error_code`` (XDSRepositoryMetadataError): XDSPatientIdDoesNotMatch
  is defined for SubmissionSet/DocumentEntry patientId conflicts and would mislead.
* File Meta Information MediaStorageSOPClass/InstanceUID differing from the data set is a *warning*: the NIST
  ``kos_modified`` manifests of those same positive cases changed the SOP Instance UID only in the data set.
* Evidence instances the content tree does not reference are a *warning* (harmless for retrieval); content
  references missing from the evidence are errors (DICOM Key Object Document module, TID 2010).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import pydicom
from pydicom.datadict import keyword_for_tag, tag_for_keyword
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

from xdsi.metadata.hl7 import CX
from xdsi.metadata.model import DocumentEntry
from xdsi.validate.errors import RegistryError, XDSRepositoryMetadataError

__all__ = [
    "KOS_SOP_CLASS",
    "MAX_MANIFEST_BYTES",
    "ManifestError",
    "ManifestSummary",
    "SeriesRef",
    "check_manifest",
    "is_imaging_manifest",
    "summarize",
]

KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"  # Key Object Selection Document Storage; also the formatCode
DICOM_UID_REGISTRY = "1.2.840.10008.2.6.1"  # formatCode codingScheme (RAD TF-3 4.68.4.1.2.3.2)
MIME_DICOM = "application/dicom"
MANIFEST_TITLE = ("113030", "DCM", "Manifest")  # the only document title of an XDS-I.b manifest
STUDY_UID_REFERENCE = "urn:ihe:iti:xds:2016:studyInstanceUID"  # referenceIdList CXi type (CX.5)
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
# KOS titles of IOCM rejection notes (DICOM CID 7011): valid KOS, but never a sharable manifest.
_REJECTION_TITLES = {
    "113001": "Rejected for Quality Reasons",
    "113037": "Rejected for Patient Safety Reasons",
    "113038": "Incorrect Modality Worklist Entry",
    "113039": "Data Retention Policy Expired",
}
_EVIDENCE = "CurrentRequestedProcedureEvidenceSequence"


class ManifestError(ValueError):
    """The file is not a complete, readable DICOM Part 10 file (the message says precisely why)."""


@dataclass
class SeriesRef:
    """One series of the evidence: where to retrieve it and which instances it holds."""

    study_instance_uid: str
    retrieve_location_uid: str  # repositoryUniqueId of the Imaging Document Source (RAD-69)
    retrieve_ae_title: str
    instances: dict[str, str] = field(default_factory=dict)  # SOP Instance UID -> SOP Class UID


@dataclass
class ManifestSummary:
    """What a KOS manifest says, for the repository, the imaging source and consumers."""

    sop_instance_uid: str
    patient_id: str
    issuer: str  # IssuerOfPatientID, else IssuerOfPatientIDQualifiersSequence > UniversalEntityID
    study_instance_uid: str  # of the KOS itself
    study_instance_uids: list[str]  # referenced studies, in evidence order
    series: dict[str, SeriesRef]  # Series Instance UID -> location and instances
    instance_count: int  # distinct referenced SOP instances
    accession_numbers: list[str]


def is_imaging_manifest(de: DocumentEntry) -> bool:
    """True when ``de`` declares a KOS: formatCode 1.2.840.10008.5.1.4.1.1.88.59 or mimeType application/dicom.

    The formatCode scheme is not looked at here so that a wrong scheme is reported by :func:`check_manifest`.
    """
    return (de.format_code is not None and de.format_code.code == KOS_SOP_CLASS) or (
        de.mime_type.strip().lower() == MIME_DICOM
    )


def summarize(path: Path) -> ManifestSummary:
    """Read a KOS manifest; raises :class:`ManifestError` when it is not a readable Part 10 file."""
    return _collect(_read(Path(path)), None)


def check_manifest(
    path: Path,
    de: DocumentEntry,
    *,
    error_code: str = XDSRepositoryMetadataError,
    require_unique_id_match: bool = False,
) -> list[RegistryError]:
    """Check the KOS manifest at ``path`` against RAD-68 and its DocumentEntry ``de``.

    Parameters
    ----------
    path : Path
        The document as stored (a DICOM Part 10 file; larger than 64 MiB is refused unread).
    de : DocumentEntry
        Its metadata; ``de.id`` is the location of every finding.
    error_code : str
        Code of every finding (a Repository uses XDSRepositoryMetadataError).
    require_unique_id_match : bool
        Make uniqueId != SOP Instance UID an error instead of a warning.

    Returns
    -------
    list of RegistryError
        Errors and warnings; empty when the manifest is valid and consistent.
    """
    out = _Findings(de.id, error_code)
    _check_entry_codes(de, out)
    try:
        ds = _read(Path(path))
    except ManifestError as exc:
        out.error(f"the document is not a valid KOS manifest: {exc}")
        return out.items
    if not _check_header(ds, out):
        return out.items
    summary = _collect(ds, out)
    if summary.series:  # without evidence every content item would be reported again
        _check_content_tree(ds, summary, out)
    _check_consistency(ds, summary, de, out, require_unique_id_match)
    return out.items


# --- findings --------------------------------------------------------------------------------------------


class _Findings:
    __slots__ = ("code", "items", "location", "prefix")

    def __init__(self, location: str, code: str) -> None:
        self.prefix = f"DocumentEntry {location or '(no id)'}: "
        self.location = location
        self.code = code
        self.items: list[RegistryError] = []

    def error(self, message: str) -> None:
        self.items.append(RegistryError(self.code, self.prefix + message, self.location))

    def warning(self, message: str) -> None:
        self.items.append(RegistryError.warning(self.code, self.prefix + message, self.location))


def _tag(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def _attr(keyword: str) -> str:
    """``SOPClassUID (0008,0016)``: how every message names a DICOM attribute."""
    tag = tag_for_keyword(keyword)
    return f"{keyword} {_tag(tag)}" if tag is not None else keyword


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _items(ds: Dataset, keyword: str) -> list[Dataset]:
    value = ds.get(keyword)  # a non-SQ encoding of a sequence attribute counts as absent
    return [item for item in value if isinstance(item, Dataset)] if isinstance(value, Sequence) else []


def _shown(value: str) -> str:
    return f"'{value}'" if value else "missing"


def _uid_name(uid: str) -> str:
    name = UID(uid).name if uid else ""
    return f" ({name})" if name and name != uid else ""


# --- reading ---------------------------------------------------------------------------------------------


def _read(path: Path) -> Dataset:
    """Read a complete DICOM Part 10 file (values decoded), or raise ManifestError saying what is wrong."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ManifestError(f"it cannot be read ({exc.strerror or exc})") from None
    if size > MAX_MANIFEST_BYTES:
        raise ManifestError(f"it is {size} bytes; manifests larger than {MAX_MANIFEST_BYTES} bytes are refused "
                            "unread")
    with path.open("rb") as fp:
        fp.seek(128)
        if fp.read(4) != b"DICM":
            raise ManifestError(
                f"it is not a DICOM Part 10 file: this file ({size} bytes) has no 'DICM' prefix after a 128-byte "
                "preamble (RAD TF-3 4.68.4.1.2.1 requires the Part 10 format with File Meta Information; a raw "
                "data set is not accepted)")
        try:
            _Structure(fp, size).walk()
        except _Broken as exc:
            raise ManifestError(str(exc)) from None
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        _decode_all(ds.file_meta)
        _decode_all(ds)
    except Exception as exc:  # noqa: BLE001 -- pydicom raises many types on malformed input: all "unreadable"
        raise ManifestError(f"pydicom cannot read it ({type(exc).__name__}: {exc})") from None
    return ds


def _decode_all(ds: Dataset) -> None:
    """Convert every raw element now, so a bad value is a read error, not a crash in a later check."""
    for elem in ds:
        if elem.VR == "SQ":
            for item in elem.value:
                _decode_all(item)


class _Broken(Exception):
    pass


_UNDEFINED = 0xFFFFFFFF
_ITEM, _ITEM_END, _SEQUENCE_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
_IMPLICIT_LE, _EXPLICIT_BE, _DEFLATED = "1.2.840.10008.1.2", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"


class _Structure:
    """Walk the element headers (never the values) to prove the file is complete.

    pydicom stops silently at end of file inside an undefined-length sequence or an element header, so a
    cut-off manifest would read as a shorter, plausible data set. Each defined length must fit in the file
    and each undefined-length sequence and item must end with its delimiter.
    """

    def __init__(self, fp: BinaryIO, size: int) -> None:
        self.fp, self.size = fp, size
        self.explicit, self.endian = True, "<"
        self.open: list[int] = []  # tags of the enclosing undefined-length sequences

    def walk(self) -> None:
        self.fp.seek(132)
        ts = ""
        while True:  # File Meta Information: group 0002, always explicit VR little endian
            pos = self.fp.tell()
            head = self.fp.read(2)
            if len(head) < 2 or struct.unpack("<H", head)[0] != 0x0002:
                self.fp.seek(pos)
                break
            self.fp.seek(pos)
            tag, _vr, length = self._header()
            if tag == 0x00020010 and length != _UNDEFINED:
                ts = self._read(length).rstrip(b"\0 ").decode("ascii", "replace")
            else:
                self._skip(tag, length)
        if not ts:
            raise _Broken("its File Meta Information has no TransferSyntaxUID (0002,0010) (DICOM PS3.10 7.1)")
        if ts == _DEFLATED:
            return  # the data set is zlib-compressed: pydicom judges it
        self.explicit, self.endian = ts != _IMPLICIT_LE, ">" if ts == _EXPLICIT_BE else "<"
        self._dataset(stop=None)

    def _where(self, tag: int | None = None) -> str:
        tags = [*self.open, *([tag] if tag is not None else [])]
        return " > ".join(f"{keyword_for_tag(t) or 'element'} {_tag(t)}" for t in tags) or "the data set"

    def _read(self, n: int) -> bytes:
        data = self.fp.read(n)
        if len(data) < n:
            raise _Broken(f"it is truncated: the file ({self.size} bytes) ends inside an element header in "
                          f"{self._where()}")
        return data

    def _header(self) -> tuple[int, bytes, int]:
        group, elem = struct.unpack(self.endian + "HH", self._read(4))
        tag = group << 16 | elem
        if group == 0xFFFE or not self.explicit:  # items and delimiters never carry a VR
            return tag, b"", struct.unpack(self.endian + "L", self._read(4))[0]
        vr = self._read(2)
        if vr in _LONG_VRS:
            self._read(2)
            return tag, vr, struct.unpack(self.endian + "L", self._read(4))[0]
        return tag, vr, struct.unpack(self.endian + "H", self._read(2))[0]

    def _skip(self, tag: int, length: int) -> None:
        pos = self.fp.tell()
        if pos + length > self.size:
            raise _Broken(f"it is truncated: {self._where(tag)} declares {length} bytes at byte {pos} but the file "
                          f"({self.size} bytes) has only {self.size - pos} left")
        self.fp.seek(pos + length)

    def _dataset(self, stop: int | None) -> None:
        while True:
            if self.fp.tell() >= self.size:
                if stop is None:
                    return
                raise _Broken(f"it is truncated: the file ({self.size} bytes) ends inside {self._where()} before "
                              "its Item Delimitation Item (FFFE,E00D)")
            tag, vr, length = self._header()
            if tag == stop:
                return
            if length != _UNDEFINED:
                self._skip(tag, length)
                continue
            # Undefined length: a sequence (or encapsulated pixel data); UN content is implicit VR LE.
            saved = (self.explicit, self.endian)
            if vr == b"UN":
                self.explicit, self.endian = False, "<"
            self.open.append(tag)
            self._items()
            self.open.pop()
            self.explicit, self.endian = saved

    def _items(self) -> None:
        while True:
            if self.fp.tell() >= self.size:
                raise _Broken(f"it is truncated: the file ({self.size} bytes) ends inside {self._where()} before "
                              "its Sequence Delimitation Item (FFFE,E0DD)")
            tag, _vr, length = self._header()
            if tag == _SEQUENCE_END:
                return
            if tag != _ITEM:
                raise _Broken(f"{self._where()} holds element {_tag(tag)} where an Item (FFFE,E000) or the Sequence "
                              f"Delimitation Item (FFFE,E0DD) must be (byte {self.fp.tell()})")
            if length == _UNDEFINED:
                self._dataset(stop=_ITEM_END)
            else:
                self._skip(tag, length)


# --- the manifest ----------------------------------------------------------------------------------------


def _check_entry_codes(de: DocumentEntry, out: _Findings) -> None:
    """mimeType and formatCode a manifest must carry (RAD TF-3 4.68.4.1.2.1 and 4.68.4.1.2.3.2)."""
    if de.mime_type.strip().lower() != MIME_DICOM:
        out.error(f"mimeType is {_shown(de.mime_type)}; a KOS manifest (RAD-68) must have mimeType {MIME_DICOM}")
    fc = de.format_code
    if fc is None or fc.code != KOS_SOP_CLASS or fc.scheme != DICOM_UID_REGISTRY:
        found = f"'{fc.code}' (codingScheme '{fc.scheme}')" if fc else "missing"
        out.error(f"formatCode is {found}; a KOS manifest (RAD-68) must have formatCode {KOS_SOP_CLASS} "
                  f"with codingScheme {DICOM_UID_REGISTRY}")


def _check_header(ds: Dataset, out: _Findings) -> bool:
    """SOP class, Part 10 meta, Modality, title. False when the file is no KOS at all (stop there)."""
    sop_class = _text(ds, "SOPClassUID")
    if sop_class != KOS_SOP_CLASS:
        out.error(f"{_attr('SOPClassUID')} is {_shown(sop_class)}{_uid_name(sop_class)}; a RAD-68 manifest must be "
                  f"{KOS_SOP_CLASS} (Key Object Selection Document Storage)")
        return False
    sop_instance = _text(ds, "SOPInstanceUID")
    if not sop_instance:
        out.error(f"{_attr('SOPInstanceUID')} is missing or empty")
    meta = getattr(ds, "file_meta", Dataset())
    for meta_kw, value in (("MediaStorageSOPClassUID", sop_class), ("MediaStorageSOPInstanceUID", sop_instance)):
        found = _text(meta, meta_kw)
        if found != value:  # a warning: the NIST "kos_modified" manifests of positive RAD-68 cases do this
            out.warning(f"File Meta Information {_attr(meta_kw)} is {_shown(found)} but the data set says '{value}' "
                        "(DICOM PS3.10 7.1: they must be equal)")
    modality = _text(ds, "Modality")
    if modality != "KO":
        out.error(f"{_attr('Modality')} is {_shown(modality)}; a Key Object Selection Document has Modality KO")
    titles = _items(ds, "ConceptNameCodeSequence")
    if not titles:
        out.error(f"{_attr('ConceptNameCodeSequence')} (the document title) is missing or empty; an XDS-I.b "
                  "manifest has the title (113030, DCM, \"Manifest\")")
    else:
        t = titles[0]
        code = (_text(t, "CodeValue"), _text(t, "CodingSchemeDesignator"))
        if code != MANIFEST_TITLE[:2]:
            why = (f", which is an IOCM rejection note ({_REJECTION_TITLES[code[0]]}), not a manifest"
                   if code[1] == "DCM" and code[0] in _REJECTION_TITLES else "")
            out.error(f"{_attr('ConceptNameCodeSequence')} (the document title) is ({code[0]}, {code[1]}, "
                      f"\"{_text(t, 'CodeMeaning')}\"){why}; RAD TF-3 4.68.4.1.2 requires (113030, DCM, \"Manifest\")")
    return True


def _collect(ds: Dataset, out: _Findings | None) -> ManifestSummary:
    """Summarize the evidence; with ``out``, report what XDS-I.b requires of it and is missing."""

    def missing(where: str, keyword: str, why: str = "") -> None:
        if out is not None:
            out.error(f"{where}{_attr(keyword)} is missing or empty{why}")

    studies: list[str] = []
    series: dict[str, SeriesRef] = {}
    instances: set[str] = set()
    evidence = _items(ds, _EVIDENCE)
    if not evidence:
        missing("", _EVIDENCE, "; RAD TF-3 4.68.4.1.2 requires every referenced instance to be listed there")
    for i, study in enumerate(evidence, 1):
        at = f"{_attr(_EVIDENCE)} item {i} > "
        study_uid = _text(study, "StudyInstanceUID")
        if not study_uid:
            missing(at, "StudyInstanceUID")
        elif study_uid not in studies:
            studies.append(study_uid)
        series_items = _items(study, "ReferencedSeriesSequence")
        if not series_items:
            missing(at, "ReferencedSeriesSequence")
        for j, s in enumerate(series_items, 1):
            s_at = f"{at}{_attr('ReferencedSeriesSequence')} item {j} > "
            series_uid = _text(s, "SeriesInstanceUID")
            if not series_uid:
                missing(s_at, "SeriesInstanceUID")
            location = _text(s, "RetrieveLocationUID")
            if not location:
                missing(s_at, "RetrieveLocationUID", " (XDS-I.b requires it: the repositoryUniqueId of the Imaging "
                                                    "Document Source that serves RAD-69)")
            ref = series.setdefault(series_uid, SeriesRef(study_uid, location, _text(s, "RetrieveAETitle")))
            sops = _items(s, "ReferencedSOPSequence")
            if not sops:
                missing(s_at, "ReferencedSOPSequence")
            for k, sop in enumerate(sops, 1):
                sop_at = f"{s_at}{_attr('ReferencedSOPSequence')} item {k} > "
                sop_class, sop_uid = _text(sop, "ReferencedSOPClassUID"), _text(sop, "ReferencedSOPInstanceUID")
                if not sop_class:
                    missing(sop_at, "ReferencedSOPClassUID")
                if not sop_uid:
                    missing(sop_at, "ReferencedSOPInstanceUID")
                else:
                    ref.instances[sop_uid] = sop_class
                    instances.add(sop_uid)

    accessions = [a for a in [_text(ds, "AccessionNumber"),
                              *(_text(r, "AccessionNumber") for r in _items(ds, "ReferencedRequestSequence"))] if a]
    qualifiers = _items(ds, "IssuerOfPatientIDQualifiersSequence")
    issuer = _text(ds, "IssuerOfPatientID") or (_text(qualifiers[0], "UniversalEntityID") if qualifiers else "")
    return ManifestSummary(
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        issuer=issuer,
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        study_instance_uids=studies,
        series=series,
        instance_count=len(instances),
        accession_numbers=list(dict.fromkeys(accessions)),
    )


def _content_references(items: list[Dataset], at: str) -> list[tuple[str, str, str]]:
    """(where, SOP Class UID, SOP Instance UID) of every IMAGE/COMPOSITE/WAVEFORM item, depth first."""
    refs: list[tuple[str, str, str]] = []
    for i, item in enumerate(items, 1):
        item_at = f"{at}{_attr('ContentSequence')} item {i}"
        for k, sop in enumerate(_items(item, "ReferencedSOPSequence"), 1):
            refs.append((f"{item_at} > {_attr('ReferencedSOPSequence')} item {k}",
                         _text(sop, "ReferencedSOPClassUID"), _text(sop, "ReferencedSOPInstanceUID")))
        refs += _content_references(_items(item, "ContentSequence"), f"{item_at} > ")
    return refs


def _check_content_tree(ds: Dataset, summary: ManifestSummary, out: _Findings) -> None:
    """TID 2010: the content tree references instances, each of which the evidence lists."""
    evidence = {uid: cls for s in summary.series.values() for uid, cls in s.instances.items()}
    refs = _content_references(_items(ds, "ContentSequence"), "")
    if not refs:
        out.error(f"{_attr('ContentSequence')} references no instance; a KOS content tree (DICOM TID 2010) has at "
                  "least one IMAGE, COMPOSITE or WAVEFORM item")
        return
    for where, sop_class, sop_uid in refs:
        if sop_uid not in evidence:
            out.error(f"{where} references SOP Instance '{sop_uid}', which {_attr(_EVIDENCE)} does not list (DICOM "
                      "Key Object Document module: the evidence lists every instance of the content tree)")
        elif sop_class != evidence[sop_uid]:
            out.error(f"{where} gives {_attr('ReferencedSOPClassUID')} '{sop_class}' for instance '{sop_uid}' but "
                      f"{_attr(_EVIDENCE)} gives '{evidence[sop_uid]}'")
    unreferenced = sorted(evidence.keys() - {uid for _, _, uid in refs})
    if unreferenced:
        out.warning(f"{len(unreferenced)} instance(s) listed in {_attr(_EVIDENCE)} are not referenced by the content "
                    f"tree ({_attr('ContentSequence')}), e.g. '{unreferenced[0]}'")


def _check_consistency(ds: Dataset, summary: ManifestSummary, de: DocumentEntry, out: _Findings,
                       require_unique_id_match: bool) -> None:
    """DocumentEntry vs manifest: uniqueId, referenceIdList study UIDs, patient."""
    if summary.sop_instance_uid and de.unique_id != summary.sop_instance_uid:
        message = (f"uniqueId is {_shown(de.unique_id)} but the KOS {_attr('SOPInstanceUID')} is "
                   f"'{summary.sop_instance_uid}' (RAD TF-3 4.68.4.1.2.3.2: uniqueId is the KOS SOP Instance UID)")
        (out.error if require_unique_id_match else out.warning)(message)

    studies = [*summary.study_instance_uids, summary.study_instance_uid]
    for value in de.reference_ids:
        cx = CX.parse(value)
        if cx.identifier_type_code == STUDY_UID_REFERENCE and cx.id not in studies:
            out.error(f"referenceIdList value '{value}' names study '{cx.id}', which the manifest does not "
                      f"reference ({_attr(_EVIDENCE)} lists {', '.join(summary.study_instance_uids) or 'none'})")

    if not de.source_patient_id:
        return
    cx = CX.parse(de.source_patient_id)
    authority = {cx.assigning_authority.namespace_id, cx.assigning_authority.universal_id} - {""}
    if summary.patient_id != cx.id:
        out.warning(f"the KOS {_attr('PatientID')} is {_shown(summary.patient_id)} but sourcePatientId is "
                    f"'{de.source_patient_id}' (id '{cx.id}')")
    # IssuerOfPatientID is often a local namespace ("HOSP_A") whose OID is in the qualifiers' UniversalEntityID:
    # either name matching the CX assigning authority is consistent.
    elif summary.issuer and authority and not ({summary.issuer, *(
            _text(q, "UniversalEntityID") for q in _items(ds, "IssuerOfPatientIDQualifiersSequence"))} & authority):
        keyword = "IssuerOfPatientID" if _text(ds, "IssuerOfPatientID") else "IssuerOfPatientIDQualifiersSequence"
        out.warning(f"the KOS {_attr(keyword)} is '{summary.issuer}' but the assigning authority of sourcePatientId "
                    f"'{de.source_patient_id}' is '{cx.assigning_authority}'")
