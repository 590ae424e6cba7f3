"""RAD-69 Retrieve Imaging Document Set (RAD TF-3 4.69): DICOM instances of a study, fetched from the
PACS that holds it and streamed back as MTOM/XOP parts.

The request names instances by study / series / SOP Instance UID with a list of acceptable transfer
syntaxes. The listed instances of each study are fetched from its PACS series by series
(:meth:`PacsAdapter.retrieve_listed`, no query of the study's tree first) to a spool directory one file at
a time (never a study in memory). A listed instance the PACS did not deliver in the study and series it is
listed under (unknown, or misplaced) gets XDSDocumentUniqueIdError. A delivered one is sent in its stored
transfer syntax when the consumer accepts it, transcoded between the uncompressed syntaxes otherwise, or
refused (XDSRepositoryError) when neither works. The status is Success, PartialSuccess or Failure
accordingly; the answer starts only once every instance is in the spool, so the status is true.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import pydicom
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID

from imaging_source.pacs.base import PART10_HEAD, PacsAdapter, PacsError, is_uid, part10_uids
from xdsi.ebxml.namespaces import XDSB, XDSI
from xdsi.ebxml.response import error_list, response_status
from xdsi.soap.endpoint import SoapResponse
from xdsi.soap.envelope import SoapRequest
from xdsi.soap.mtom import new_content_id, xop_include_xml
from xdsi.validate import errors as E
from xdsi.validate.errors import RegistryError

log = logging.getLogger(__name__)

RAD69_RESPONSE = "urn:ihe:rad:2009:RetrieveImagingDocumentSetResponse"
_XDSI, _XDSB = "{%s}" % XDSI, "{%s}" % XDSB

IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE = "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2"
#: Transfer syntaxes between which the imaging source converts itself (no pixel codec needed).
UNCOMPRESSED = {IMPLICIT_LE, EXPLICIT_LE, EXPLICIT_BE}


@dataclass
class InstanceRequest:
    study: str
    series: str
    sop: str
    home: str = ""


@dataclass
class ParsedRequest:
    instances: list[InstanceRequest] = field(default_factory=list)
    transfer_syntaxes: list[str] = field(default_factory=list)
    errors: list[RegistryError] = field(default_factory=list)


def parse_request(body, repository_unique_id: str) -> ParsedRequest:  # type: ignore[no-untyped-def]
    """Read a RetrieveImagingDocumentSetRequest; malformed parts become XDSIRequestError, foreign
    repository ids XDSUnknownRepositoryId."""
    out = ParsedRequest()
    if body.tag != _XDSI + "RetrieveImagingDocumentSetRequest":
        out.errors.append(RegistryError(E.XDSIRequestError, "expected xdsiB:RetrieveImagingDocumentSetRequest in "
                                        f"the SOAP Body, got {body.tag}"))
        return out
    for s_no, study in enumerate(body.iter(_XDSI + "StudyRequest"), 1):
        study_uid = (study.get("studyInstanceUID") or "").strip()
        if not study_uid:
            out.errors.append(RegistryError(E.XDSIRequestError, f"StudyRequest {s_no}: studyInstanceUID attribute "
                                            "is missing or empty", f"StudyRequest[{s_no}]"))
        for r_no, series in enumerate(study.iter(_XDSI + "SeriesRequest"), 1):
            series_uid = (series.get("seriesInstanceUID") or "").strip()
            if not series_uid:
                out.errors.append(RegistryError(E.XDSIRequestError, f"StudyRequest {s_no} SeriesRequest {r_no}: "
                                                "seriesInstanceUID attribute is missing or empty",
                                                f"StudyRequest[{s_no}]/SeriesRequest[{r_no}]"))
            for dr in series.iter(_XDSB + "DocumentRequest"):
                sop = (dr.findtext(_XDSB + "DocumentUniqueId") or "").strip()
                repo = (dr.findtext(_XDSB + "RepositoryUniqueId") or "").strip()
                home = (dr.findtext(_XDSB + "HomeCommunityId") or "").strip()
                if not sop:
                    out.errors.append(RegistryError(E.XDSIRequestError, "DocumentRequest without DocumentUniqueId "
                                                    f"in series {series_uid or r_no}", series_uid))
                elif repo != repository_unique_id:
                    out.errors.append(RegistryError(E.XDSUnknownRepositoryId, f"DocumentRequest {sop}: "
                                                    f"RepositoryUniqueId {repo!r} is not this imaging source "
                                                    f"({repository_unique_id})", sop))
                elif study_uid and series_uid:
                    out.instances.append(InstanceRequest(study_uid, series_uid, sop, home))
    if not out.instances and not out.errors:
        out.errors.append(RegistryError(E.XDSIRequestError, "the request names no instance (StudyRequest/"
                                        "SeriesRequest/DocumentRequest)"))
    ts_list = body.find(_XDSI + "TransferSyntaxUIDList")
    out.transfer_syntaxes = [t.strip() for t in (ts_list.itertext() if ts_list is not None else []) if t.strip()]
    return out


def _usable_syntaxes(requested: list[str]) -> tuple[list[str], RegistryError | None]:
    """The requested transfer syntaxes that are valid DICOM transfer syntax UIDs."""
    valid = [t for t in requested if UID(t).is_transfer_syntax]
    if not requested:
        return [], RegistryError(E.XDSRepositoryError, "TransferSyntaxUIDList is missing or empty: the imaging "
                                 "source cannot choose an encoding")
    if not valid:
        return [], RegistryError(E.XDSRepositoryError, f"none of the requested transfer syntaxes {requested} is a "
                                 "known DICOM transfer syntax; the imaging source cannot encode the pixel data in any")
    return valid, None


def retrieve_imaging_document_set(ids, req: SoapRequest) -> SoapResponse:  # type: ignore[no-untyped-def]
    """Handle one RAD-69 request. ``ids`` provides ``config.repository_unique_id``, ``locate(study_uid)``
    (the PACS adapter holding the study) and ``spool_dir``."""
    parsed = parse_request(req.body, ids.config.repository_unique_id)
    errors = list(parsed.errors)
    syntaxes, problem = _usable_syntaxes(parsed.transfer_syntaxes)
    spool = Path(tempfile.mkdtemp(prefix="rad69-", dir=ids.spool_dir))
    served: list[tuple[InstanceRequest, Path]] = []
    try:
        if problem is not None:
            errors.append(problem)
        elif parsed.instances:
            served, fetch_errors = _fetch(ids, parsed.instances, syntaxes, spool)
            errors += fetch_errors
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise
    parts, responses = [], []
    for inst, path in served:
        cid = new_content_id()
        parts.append((cid, "application/dicom", _stream_then_delete(path)))
        responses.append(
            "<xdsb:DocumentResponse>%s<xdsb:RepositoryUniqueId>%s</xdsb:RepositoryUniqueId>"
            "<xdsb:DocumentUniqueId>%s</xdsb:DocumentUniqueId><xdsb:mimeType>application/dicom</xdsb:mimeType>"
            "<xdsb:Document>%s</xdsb:Document></xdsb:DocumentResponse>"
            % (f"<xdsb:HomeCommunityId>{escape(inst.home)}</xdsb:HomeCommunityId>" if inst.home else "",
               escape(ids.config.repository_unique_id), escape(inst.sop), xop_include_xml(cid).decode()))
    if not parts:
        shutil.rmtree(spool, ignore_errors=True)
    else:
        parts[-1] = (parts[-1][0], parts[-1][1], _then_remove(parts[-1][2], spool))
    status = response_status(errors, partial=bool(responses))
    body = ('<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="urn:ihe:iti:xds-b:2007" '
            'xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"><rs:RegistryResponse status="%s">%s'
            "</rs:RegistryResponse>%s</xdsb:RetrieveDocumentSetResponse>"
            % (status, error_list(errors), "".join(responses)))
    return SoapResponse(RAD69_RESPONSE, body.encode(), attachments=parts, mtom=True)


def _fetch(ids, wanted: list[InstanceRequest], syntaxes: list[str],  # type: ignore[no-untyped-def]
           spool: Path) -> tuple[list[tuple[InstanceRequest, Path]], list[RegistryError]]:
    """Fetch the listed instances of each study from its PACS, fix their encoding; an error for each
    listed instance that did not come."""
    errors: list[RegistryError] = []
    served: list[tuple[InstanceRequest, Path]] = []
    by_study: dict[str, dict[str, InstanceRequest]] = {}
    for inst in wanted:
        bad = next((f"{what} {uid!r}" for what, uid in (("study", inst.study), ("series", inst.series),
                                                          ("instance", inst.sop)) if not is_uid(uid)), None)
        if bad:  # no PACS holds it; and it must not reach a C-FIND key or a DICOMweb URL
            errors.append(RegistryError(E.XDSDocumentUniqueIdError, f"DocumentRequest {inst.sop!r}: {bad} is not "
                                        "a DICOM UID", inst.sop))
            continue
        listed = by_study.setdefault(inst.study, {})
        first = listed.setdefault(inst.sop, inst)
        if first.series != inst.series:
            errors.append(RegistryError(E.XDSDocumentUniqueIdError, f"instance {inst.sop} is listed under series "
                                        f"{first.series} and {inst.series} of study {inst.study}", inst.sop))
    for study_uid, by_sop in by_study.items():
        adapter: PacsAdapter | None = ids.locate(study_uid)
        if adapter is None:
            errors += [RegistryError(E.XDSDocumentUniqueIdError, f"instance {i.sop}: study {study_uid} is not held "
                                     "by any PACS of this imaging source", i.sop) for i in by_sop.values()]
            continue
        by_series: dict[str, list[str]] = {}
        for i in by_sop.values():
            by_series.setdefault(i.series, []).append(i.sop)
        try:
            for path in adapter.retrieve_listed(study_uid, by_series, spool):
                sop, stored = _file_head(path)
                inst = by_sop.pop(sop, None)
                if inst is None:  # not listed, or delivered twice: the adapter yields only listed ones
                    path.unlink(missing_ok=True)
                    continue
                problem = _encode_for(path, syntaxes, sop, stored)
                if problem:
                    errors.append(problem)
                    path.unlink(missing_ok=True)
                else:
                    served.append((inst, path))
        except PacsError as exc:
            log.warning("RAD-69: PACS %s failed for study %s: %s", adapter.name, study_uid, exc)
            errors.append(RegistryError(E.XDSRepositoryError, f"study {study_uid}: the PACS {adapter.name} could "
                                        f"not deliver the instances: {exc}", study_uid))
            errors += [RegistryError(E.XDSDocumentUniqueIdError, f"instance {i.sop} was not delivered by the PACS "
                                     f"{adapter.name}", i.sop) for i in by_sop.values()]
            continue
        errors += [RegistryError(E.XDSDocumentUniqueIdError, f"instance {i.sop} is not in series {i.series} of "
                                 f"study {study_uid} on the PACS {adapter.name}", i.sop) for i in by_sop.values()]
    return served, errors


def _file_head(path: Path) -> tuple[str, str]:
    """SOP Instance UID and transfer syntax of a Part 10 file, from its file meta (the data set is not
    read); the data set's own SOP Instance UID when the meta lacks it."""
    with open(path, "rb") as fh:
        uids = part10_uids(fh.read(PART10_HEAD))
    if uids is not None:
        return uids
    meta = read_file_meta_info(path)
    sop = str(meta.get("MediaStorageSOPInstanceUID", "") or "")
    if not sop:
        sop = str(pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)
    return sop, str(meta.get("TransferSyntaxUID", "") or "")


def _encode_for(path: Path, syntaxes: list[str], sop: str, stored: str) -> RegistryError | None:
    """Make ``path`` (instance ``sop`` stored in transfer syntax ``stored``) use one of ``syntaxes``: keep it
    if its own syntax is accepted, else transcode between uncompressed syntaxes. An error if neither works."""
    if stored in syntaxes:
        return None
    target = next((t for t in syntaxes if t in UNCOMPRESSED), None)
    if stored in UNCOMPRESSED and target is not None:
        ds = pydicom.dcmread(path, stop_before_pixels=False)
        ds.file_meta.TransferSyntaxUID = target
        ds.save_as(path, implicit_vr=target == IMPLICIT_LE, little_endian=target != EXPLICIT_BE,
                   enforce_file_format=True)
        return None
    return RegistryError(E.XDSRepositoryError, f"instance {sop} is stored as {stored}; the imaging source cannot "
                         f"encode its pixel data in any of the requested transfer syntaxes {syntaxes}", sop)


def _stream_then_delete(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    try:
        with open(path, "rb") as fh:
            while piece := fh.read(chunk):
                yield piece
    finally:
        path.unlink(missing_ok=True)


def _then_remove(source: Iterator[bytes], spool: Path) -> Iterator[bytes]:
    """The last part's stream also removes the request's spool directory when done."""
    try:
        yield from source
    finally:
        shutil.rmtree(spool, ignore_errors=True)
