"""RAD-69 Retrieve Imaging Document Set (RAD TF-3 4.69): DICOM instances of a study, fetched from the
PACS that holds it and streamed back as MTOM/XOP parts.

The request names instances by study / series / SOP Instance UID with a list of acceptable transfer
syntaxes. The listed instances of each study are fetched from its PACS series by series
(:meth:`PacsAdapter.retrieve_listed`, no query of the study's tree first) into a spool directory one file
at a time (never a study in memory). A delivered instance is sent in its stored transfer syntax when the
consumer accepts it, transcoded between the uncompressed syntaxes otherwise, or refused
(XDSRepositoryError) when neither works. A listed instance the PACS did not deliver in the study and
series it is listed under (unknown, or misplaced) gets XDSDocumentUniqueIdError.

The RegistryResponse status (Success, PartialSuccess, Failure) comes first in the MTOM package, so it
must be known before the first instance goes out. Two ways to answer:

* **Streamed** when the request lists, for every study, exactly the instances of the manifest this
  imaging source published for it, under their series (the tree digest in :mod:`imaging_source.state`),
  and accepts an
  uncompressed transfer syntax: what a consumer asks after reading our KOS. The status is then Success up front, and each instance is sent as soon as
  it is in the spool while the next ones are fetched. If the PACS fails to deliver one after all (the
  study changed since it was published, a compressed syntax the consumer does not accept), the HTTP
  transfer is cut off before the package's closing delimiter, so no consumer can take it for a complete
  answer; the study is then answered the second way by this process, and the consumer's retry gets
  a true PartialSuccess.
* **Verified** otherwise: every instance is in the spool before the answer starts, so the status
  reports exactly what was delivered.
"""
from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import pydicom
from pydicom.filereader import read_file_meta_info
from pydicom.uid import UID
from starlette.concurrency import run_in_threadpool

from imaging_source import state
from imaging_source.pacs.base import (
    PART10_HEAD, PacsAdapter, PacsError, Received, is_uid, part10_uids, read_then_delete,
)
from xdsi.ebxml.namespaces import XDSB, XDSI
from xdsi.ebxml.response import error_list, response_status
from xdsi.metadata import vocabulary as v
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


@dataclass
class StudyFetch:
    """The listed instances of one study (by SOP Instance UID) and the PACS that holds the study."""

    study: str
    adapter: PacsAdapter
    by_sop: dict[str, InstanceRequest]
    #: tree digest of the study's published manifest (:func:`state.tree_digest`), None if none is published
    manifest_tree: str | None = None

    def by_series(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for i in self.by_sop.values():
            out.setdefault(i.series, []).append(i.sop)
        return out


class RetrieveAborted(RuntimeError):
    """A streamed RAD-69 answer cannot be completed: raised from the parts iterator to cut the transfer."""


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
    (the PACS adapter holding the study and its manifest's tree digest, None when the study must be fetched
    whole first), ``mark_cut_off(study_uid)`` and ``spool_dir``."""
    parsed = parse_request(req.body, ids.config.repository_unique_id)
    errors = list(parsed.errors)
    syntaxes, problem = _usable_syntaxes(parsed.transfer_syntaxes)
    if problem is not None:
        errors.append(problem)
        fetches: list[StudyFetch] = []
    else:
        fetches, plan_errors = _plan(ids, parsed.instances)
        errors += plan_errors
    # Uncompressed instances can always be served when the consumer takes an uncompressed syntax: only then
    # is Success sure enough to send before the instances (a compressed one it does not take cuts it off).
    if fetches and not errors and UNCOMPRESSED.intersection(syntaxes) \
            and all(_is_current_manifest(f) for f in fetches):
        return _streamed(ids, fetches, syntaxes)
    spool = Path(tempfile.mkdtemp(prefix="rad69-", dir=ids.spool_dir))
    served: list[tuple[InstanceRequest, Path]] = []
    try:
        for fetch in fetches:
            got, fetch_errors = _fetch(fetch, syntaxes, spool)
            served += got
            errors += fetch_errors
    except BaseException:
        shutil.rmtree(spool, ignore_errors=True)
        raise
    parts = []
    for inst, path in served:
        parts.append((new_content_id(), "application/dicom", read_then_delete(path)))
    if not parts:
        shutil.rmtree(spool, ignore_errors=True)
    else:
        parts[-1] = (parts[-1][0], parts[-1][1], _then_remove(parts[-1][2], spool))
    responses = [_document_response(ids, inst, cid) for (inst, _path), (cid, _t, _s) in zip(served, parts)]
    return _answer(response_status(errors, partial=bool(responses)), errors, responses, parts)


def _answer(status: str, errors: list[RegistryError], responses: list[str], parts) -> SoapResponse:  # type: ignore[no-untyped-def]
    body = ('<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="urn:ihe:iti:xds-b:2007" '
            'xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0"><rs:RegistryResponse status="%s">%s'
            "</rs:RegistryResponse>%s</xdsb:RetrieveDocumentSetResponse>"
            % (status, error_list(errors), "".join(responses)))
    return SoapResponse(RAD69_RESPONSE, body.encode(), attachments=parts, mtom=True)


def _document_response(ids, inst: InstanceRequest, cid: str) -> str:  # type: ignore[no-untyped-def]
    return ("<xdsb:DocumentResponse>%s<xdsb:RepositoryUniqueId>%s</xdsb:RepositoryUniqueId>"
            "<xdsb:DocumentUniqueId>%s</xdsb:DocumentUniqueId><xdsb:mimeType>application/dicom</xdsb:mimeType>"
            "<xdsb:Document>%s</xdsb:Document></xdsb:DocumentResponse>"
            % (f"<xdsb:HomeCommunityId>{escape(inst.home)}</xdsb:HomeCommunityId>" if inst.home else "",
               escape(ids.config.repository_unique_id), escape(inst.sop), xop_include_xml(cid).decode()))


def _plan(ids, wanted: list[InstanceRequest]) -> tuple[list[StudyFetch], list[RegistryError]]:  # type: ignore[no-untyped-def]
    """Group the listed instances by study and find each study's PACS; an error for each instance that
    cannot be asked for (not UIDs, listed under two series, a study no PACS holds)."""
    errors: list[RegistryError] = []
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
    fetches = []
    for study_uid, by_sop in by_study.items():
        adapter, manifest_tree = ids.locate(study_uid)
        if adapter is None:
            errors += [RegistryError(E.XDSDocumentUniqueIdError, f"instance {i.sop}: study {study_uid} is not held "
                                     "by any PACS of this imaging source", i.sop) for i in by_sop.values()]
        else:
            fetches.append(StudyFetch(study_uid, adapter, by_sop, manifest_tree))
    return fetches, errors


def _is_current_manifest(fetch: StudyFetch) -> bool:
    """The request lists exactly the instances of the study's published manifest, under their series
    (streamable)."""
    return fetch.manifest_tree is not None and \
        fetch.manifest_tree == state.tree_digest((i.series, i.sop) for i in fetch.by_sop.values())


def _fetch(fetch: StudyFetch, syntaxes: list[str],
           spool: Path) -> tuple[list[tuple[InstanceRequest, Path]], list[RegistryError]]:
    """Fetch the listed instances of one study into the spool and fix their encoding; an error for each
    listed instance that did not come or cannot be encoded."""
    errors: list[RegistryError] = []
    served: list[tuple[InstanceRequest, Path]] = []
    by_sop, adapter, study_uid = dict(fetch.by_sop), fetch.adapter, fetch.study
    try:
        for path in adapter.retrieve_listed(study_uid, fetch.by_series(), spool):
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
        return served, errors
    errors += [RegistryError(E.XDSDocumentUniqueIdError, f"instance {i.sop} is not in series {i.series} of "
                             f"study {study_uid} on the PACS {adapter.name}", i.sop) for i in by_sop.values()]
    return served, errors


def _streamed(ids, fetches: list[StudyFetch], syntaxes: list[str]) -> SoapResponse:  # type: ignore[no-untyped-def]
    """Success up front; the instances follow as they arrive (see the module docstring)."""
    cids = {sop: new_content_id() for f in fetches for sop in f.by_sop}
    responses = [_document_response(ids, inst, cids[sop]) for f in fetches for sop, inst in f.by_sop.items()]
    return _answer(v.RESPONSE_SUCCESS, [], responses, _arrivals(ids, fetches, syntaxes, cids))


#: Bytes of instances fetched but not yet sent that one streamed answer may hold (in memory or spool):
#: the fetch waits beyond it, so a slow consumer slows the PACS transfer instead of filling memory.
IN_FLIGHT_BYTES = 16 << 20


class _Budget:
    """Bytes in flight between the fetching thread and the sending coroutine."""

    def __init__(self, limit: int) -> None:
        self.limit, self.used = limit, 0
        self._cond = threading.Condition()

    def take(self, n: int, stop: threading.Event) -> bool:
        """Wait for room for ``n`` bytes (always granted when nothing is in flight); False if ``stop`` is set."""
        with self._cond:
            while self.used and self.used + n > self.limit:
                if stop.is_set():
                    return False
                self._cond.wait(0.1)
            self.used += n
            return not stop.is_set()

    def give(self, n: int) -> None:
        with self._cond:
            self.used -= n
            self._cond.notify_all()


def _received(path: Path) -> Received:
    """A file delivered by ``retrieve_listed``, as :class:`Received`."""
    sop, stored = _file_head(path)
    return Received(sop, stored, path.stat().st_size, path=path)


def _sent_then_given(got: Received, budget: _Budget) -> Iterator[bytes | memoryview]:
    try:
        yield from got.chunks()
    finally:
        got.discard()
        budget.give(got.size)


async def _arrivals(ids, fetches: list[StudyFetch], syntaxes: list[str],  # type: ignore[no-untyped-def]
                    cids: dict[str, str]) -> AsyncIterator[tuple[str, str, Iterator[bytes]]]:
    """The MTOM parts of a streamed answer, in the order the instances arrive. A thread fetches (the
    adapters block) while this sends, at most :data:`IN_FLIGHT_BYTES` ahead; in memory with an adapter
    that has ``stream_listed``, else through files in the spool, which goes when both sides are done."""
    spool = Path(tempfile.mkdtemp(prefix="rad69-", dir=ids.spool_dir))
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue = asyncio.Queue()
    stop = threading.Event()
    budget = _Budget(IN_FLIGHT_BYTES)
    finished: list[str] = []
    lock = threading.Lock()

    def done(who: str) -> None:
        with lock:
            finished.append(who)
            if len(finished) == 2:
                shutil.rmtree(spool, ignore_errors=True)

    def fetch_all() -> None:
        try:
            for fetch in fetches:
                missing = dict(fetch.by_sop)
                stream = getattr(fetch.adapter, "stream_listed", None)
                delivered: Iterator[Received] = (  # the request is the manifest: the whole study, in one go
                    stream(fetch.study, fetch.by_series(), spool, whole_study=True) if stream is not None else
                    (_received(path) for path in fetch.adapter.retrieve_listed(fetch.study, fetch.by_series(), spool)))
                for got in delivered:
                    if missing.pop(got.sop_instance_uid, None) is None:
                        got.discard()
                        continue
                    if got.transfer_syntax not in syntaxes:
                        got = _transcoded(got, syntaxes, spool, fetch.study)
                    if not budget.take(got.size, stop):  # the consumer went away
                        got.discard()
                        return
                    loop.call_soon_threadsafe(arrived.put_nowait, got)
                if missing:
                    raise RetrieveAborted(fetch.study, f"{len(missing)} instance(s) of its manifest did not come "
                                          f"from the PACS {fetch.adapter.name}, e.g. {next(iter(missing))}")
            loop.call_soon_threadsafe(arrived.put_nowait, None)
        except PacsError as exc:
            loop.call_soon_threadsafe(arrived.put_nowait, RetrieveAborted(fetch.study, str(exc)))
        except BaseException as exc:  # noqa: BLE001 -- handed to the sending side, which raises it
            loop.call_soon_threadsafe(arrived.put_nowait, exc)
        finally:
            done("fetch")

    threading.Thread(target=fetch_all, name="rad69-fetch", daemon=True).start()
    try:
        while (item := await arrived.get()) is not None:
            if isinstance(item, RetrieveAborted):
                study, why = item.args
                try:
                    await run_in_threadpool(ids.mark_cut_off, study)
                except Exception:  # cut off all the same; the next answer streams, and may be cut off again
                    log.exception("RAD-69: could not record the cut-off of study %s", study)
                log.warning("RAD-69: streamed answer cut off for study %s: %s; this study is now answered "
                            "after fetching all of it", study, why)
                raise item
            if isinstance(item, BaseException):
                raise item
            yield cids[item.sop_instance_uid], "application/dicom", _sent_then_given(item, budget)
    finally:
        stop.set()
        while not arrived.empty():  # fetched, never sent
            if isinstance(got := arrived.get_nowait(), Received):
                got.discard()
        done("send")


def _transcoded(got: Received, syntaxes: list[str], spool: Path, study: str) -> Received:
    """An instance in a syntax the consumer did not list: transcoded (uncompressed syntaxes), else the
    answer is cut off."""
    if got.path is None:
        path = spool / f"{got.sop_instance_uid}.dcm"
        with open(path, "wb") as fh:
            fh.writelines(got.chunks())
        got = Received(got.sop_instance_uid, got.transfer_syntax, got.size, path=path)
    assert got.path is not None
    problem = _encode_for(got.path, syntaxes, got.sop_instance_uid, got.transfer_syntax)
    if problem is not None:
        got.discard()
        raise RetrieveAborted(study, problem.message)
    return _received(got.path)


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


def _then_remove(source: Iterator[bytes], spool: Path) -> Iterator[bytes]:
    """The last part's stream also removes the request's spool directory when done."""
    try:
        yield from source
    finally:
        shutil.rmtree(spool, ignore_errors=True)
