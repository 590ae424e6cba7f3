"""A PACS reached over DIMSE (pynetdicom): C-FIND to query, C-GET or C-MOVE to retrieve.

Queries use the Study Root Query/Retrieve Information Model (PS3.4 C.6.2): STUDY level for
:meth:`DimseAdapter.find_studies`, then SERIES and IMAGE levels for the tree of :meth:`DimseAdapter.study`,
all C-FINDs of one call on one association.

A retrieve first asks, on one C-FIND association, only what it needs: the study's SOP Classes in Study
(which storage contexts to propose), and for listed instances its series with their Number of Series
Related Instances. A series with no more instances than are listed is fetched at SERIES level (an unlisted
one that comes is not written). For the others an IMAGE-level C-FIND with the UID list says which listed
instances the series holds: a C-GET may find an instance by its own UID whatever its series (Orthanc
does). Each C-FIND costs ~50 ms on Orthanc, so that is two or three. The study's full tree (an IMAGE-level
C-FIND per series, ~1 ms per instance on Orthanc) is read only when the PACS does not report SOP Classes
in Study, when they need more than one association, or to find the series of instances listed without one.

Retrieval runs the association in a worker thread. Each C-STORE sub-operation is written straight to a
Part 10 file from the bytes as received (``event.encoded_dataset()``: the file meta says the negotiated
transfer syntax, the data set is not decoded and re-encoded) and its path handed to the caller through a
queue, so the caller sees each file as soon as it is complete and no dataset stays in memory.

* C-GET (default): the storage sub-operations come back on our association, so we propose, for each SOP
  class the C-FIND found, one presentation context *per transfer syntax* (and the SCP role for it). With
  one transfer syntax per context the PACS can pick the context matching the stored file and send it
  as stored instead of transcoding. An association has at most 128 presentation contexts, so SOP
  classes are split into groups, one association per group.
* C-MOVE: a temporary pynetdicom Storage SCP listens on ``move_destination`` (the PACS must know that AE
  title and port) for the duration of the retrieve; it accepts every storage SOP class in every transfer
  syntax. Retrieves on one adapter are serialized because they share that port.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import socket
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import (
    JPEG2000,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGExtended12Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)
from pynetdicom import AE, ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts, _config, build_role, evt
from pynetdicom.association import Association

from imaging_source.pacs.base import Instance, PacsError, Series, Study, check_uid, date_range, is_uid, sort_key

__all__ = ["GET_TRANSFER_SYNTAXES", "DimseAdapter", "write_part10"]

log = logging.getLogger(__name__)

# Study Root Query/Retrieve Information Model (PS3.4 C.6.2)
FIND_MODEL = UID("1.2.840.10008.5.1.4.1.2.2.1")
MOVE_MODEL = UID("1.2.840.10008.5.1.4.1.2.2.2")
GET_MODEL = UID("1.2.840.10008.5.1.4.1.2.2.3")

#: Transfer syntaxes proposed, one context each, per SOP class for C-GET: the ones PACS store in practice.
GET_TRANSFER_SYNTAXES = [
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGExtended12Bit, JPEGLossless, JPEGLosslessSV1, JPEGLSLossless, JPEGLSNearLossless,
    JPEG2000Lossless, JPEG2000, RLELossless,
]
_MAX_CONTEXTS = 128  # PS3.8: presentation context ids are odd numbers 1..255
_UID_LIST_CHUNK = 200  # SOP Instance UIDs per IMAGE-level C-GET/C-MOVE identifier (UID list matching)

STUDY_KEYS = (
    "StudyInstanceUID", "PatientID", "IssuerOfPatientID", "PatientName", "PatientBirthDate", "PatientSex",
    "AccessionNumber", "StudyDate", "StudyTime", "StudyDescription", "ReferringPhysicianName",
    "InstitutionName", "ModalitiesInStudy", "NumberOfStudyRelatedInstances",
)
SERIES_KEYS = ("SeriesInstanceUID", "Modality", "BodyPartExamined", "SeriesNumber", "SeriesDescription")
SERIES_COUNT_KEYS = ("SeriesInstanceUID", "NumberOfSeriesRelatedInstances")
IMAGE_KEYS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber")

# pynetdicom formats every request and response identifier for its log whether or not the log is on:
# ~0.7 ms per C-FIND match, a fifth of a study query's time. Its standard event handlers also build an
# event for every PDU and DIMSE message (a 100 MiB C-GET is ~6,400 PDUs of 16 KiB) and log each C-STORE
# at INFO: ~7 % of a retrieve. The adapter reports its own errors.
_config.LOG_REQUEST_IDENTIFIERS = False
_config.LOG_RESPONSE_IDENTIFIERS = False
_config.LOG_HANDLER_LEVEL = "none"

# C-FIND/C-GET/C-MOVE status classes (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4)
_PENDING = (0xFF00, 0xFF01)
_CANCEL = 0xFE00
_WARNING = 0xB000


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    if value is None:
        return ""
    if isinstance(value, MultiValue):
        return "\\".join(str(v) for v in value)
    return str(value)


def _int(ds: Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _list(ds: Dataset, keyword: str) -> list[str]:
    value = ds.get(keyword)
    if value in (None, ""):
        return []
    if isinstance(value, str):
        return [v for v in value.split("\\") if v]
    return [str(v) for v in value]


def _identifier(level: str, keys: Sequence[str], **match: str | Sequence[str]) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = level
    for k in keys:
        setattr(ds, k, "")
    for k, v in match.items():
        setattr(ds, k, v)
    return ds


def _study_from(pacs: str, ds: Dataset) -> Study:
    return Study(
        pacs=pacs,
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        patient_id=_text(ds, "PatientID"),
        issuer_of_patient_id=_text(ds, "IssuerOfPatientID"),
        patient_name=_text(ds, "PatientName"),
        patient_birth_date=_text(ds, "PatientBirthDate"),
        patient_sex=_text(ds, "PatientSex"),
        accession_number=_text(ds, "AccessionNumber"),
        study_date=_text(ds, "StudyDate"),
        study_time=_text(ds, "StudyTime"),
        study_description=_text(ds, "StudyDescription"),
        referring_physician_name=_text(ds, "ReferringPhysicianName"),
        institution_name=_text(ds, "InstitutionName"),
        modalities_in_study=_list(ds, "ModalitiesInStudy"),
        number_of_instances=_int(ds, "NumberOfStudyRelatedInstances"),
    )


def write_part10(dest_dir: Path, sop_instance_uid: str, data: bytes) -> Path:
    """Write ``data`` (a complete Part 10 file) as ``dest_dir/<uid>.dcm``, atomically: a reader never
    sees half a file under the final name."""
    name = sop_instance_uid if is_uid(sop_instance_uid) else hashlib.sha1(sop_instance_uid.encode()).hexdigest()
    path = dest_dir / f"{name}.dcm"
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".part-", suffix=".dcm")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


@dataclass
class _Request:
    """One C-GET/C-MOVE identifier."""

    level: str
    study: str
    series: str = ""
    sop_instances: Sequence[str] = ()
    #: The SOP Instance UIDs to write of what this request brings (None: all): a series fetched whole
    #: for some of its instances.
    keep: frozenset[str] | None = None

    def dataset(self) -> Dataset:
        ds = Dataset()
        ds.QueryRetrieveLevel = self.level
        ds.StudyInstanceUID = self.study
        if self.level in ("SERIES", "IMAGE"):
            ds.SeriesInstanceUID = self.series
        if self.level == "IMAGE":
            # UID list matching (PS3.4 C.4.2.2.1 / C.4.3.2.1): several instances of one series per request.
            ds.SOPInstanceUID = list(self.sop_instances)
        return ds


@dataclass
class _Plan:
    """What a retrieve sends: per association, the SOP classes to negotiate (C-GET) and the identifiers."""

    groups: list[tuple[list[str], list[_Request]]]


_DONE = object()


class DimseAdapter:
    """A PACS queried with C-FIND and retrieved with C-GET (``use_c_get``) or C-MOVE.

    Parameters
    ----------
    name : str
        Our name for this PACS (goes into :attr:`Study.pacs`).
    host, port, called_aet : the PACS's DICOM address and AE title.
    calling_aet : our AE title as SCU.
    move_destination : (aet, port), optional
        AE title and port of the temporary Storage SCP for C-MOVE; the PACS must have it configured.
    use_c_get : bool
        Retrieve with C-GET (default); C-MOVE otherwise (needs ``move_destination``).
    timeout : float
        Seconds for connection, association negotiation and each DIMSE response.
    move_host : str
        Interface the C-MOVE Storage SCP listens on (all by default: the PACS connects to us).
    max_contexts : int
        Presentation contexts per C-GET association (128, the protocol maximum; lower it to test grouping).
    """

    def __init__(self, name: str, *, host: str, port: int, called_aet: str, calling_aet: str = "XDSI_IDS",
                 move_destination: tuple[str, int] | None = None, use_c_get: bool = True, timeout: float = 30,
                 move_host: str = "", max_contexts: int = _MAX_CONTEXTS) -> None:
        if not use_c_get and move_destination is None:
            raise ValueError("C-MOVE retrieval (use_c_get=False) needs move_destination=(aet, port)")
        if not 1 + len(GET_TRANSFER_SYNTAXES) <= max_contexts <= _MAX_CONTEXTS:
            raise ValueError(f"max_contexts must be {1 + len(GET_TRANSFER_SYNTAXES)}..{_MAX_CONTEXTS}")
        self.name = name
        self.host = host
        self.port = port
        self.called_aet = called_aet
        self.ae_title = called_aet  # the Retrieve AE Title a KOS names for this PACS
        self.calling_aet = calling_aet
        self.move_destination = move_destination
        self.use_c_get = use_c_get
        self.timeout = timeout
        self.move_host = move_host
        self.max_contexts = max_contexts
        self._move_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DimseAdapter({self.name!r}, {self.called_aet}@{self.host}:{self.port})"

    # --- association ------------------------------------------------------------------------------

    def _where(self) -> str:
        return f"PACS {self.name!r} ({self.called_aet} at {self.host}:{self.port})"

    @contextlib.contextmanager
    def _association(self, what: str, contexts: Sequence[tuple[str, Sequence[str]]], *,
                     ext_neg: list[Any] | None = None,
                     handlers: list[tuple[Any, Callable[..., Any]]] | None = None,
                     holder: list[Association] | None = None) -> Iterator[Association]:
        """An established association for ``what`` (e.g. "C-FIND"), released on exit.

        Raises PacsError saying whether the connection failed, the association was rejected (with the
        PACS's reason) or none of our presentation contexts was accepted.
        """
        ae = AE(ae_title=self.calling_aet)
        ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = self.timeout
        ae.connection_timeout = self.timeout
        for abstract, syntaxes in contexts:
            ae.add_requested_context(abstract, list(syntaxes))
        seen: dict[str, Any] = {}

        def on_open(event: Any) -> None:
            seen["open"] = True
            # A DIMSE message goes out as several small PDUs (command, then data set): with Nagle's
            # algorithm the second waits for the PACS's delayed ACK, ~40 ms per C-FIND or C-GET request.
            with contextlib.suppress(OSError, AttributeError):
                event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def on_acse(event: Any) -> None:
            prim = event.primitive
            if getattr(prim, "result", None) in (0x01, 0x02):
                seen["reject"] = f"{prim.result_str}, source {prim.source_str}: {prim.reason_str}"

        all_handlers: list[Any] = [(evt.EVT_CONN_OPEN, on_open), (evt.EVT_ACSE_RECV, on_acse), *(handlers or [])]
        assoc = ae.associate(self.host, self.port, ae_title=self.called_aet, ext_neg=ext_neg,
                             evt_handlers=all_handlers)
        if not assoc.is_established:
            if assoc.is_rejected:
                raise PacsError(f"{what}: {self._where()} rejected the association from {self.calling_aet}: "
                                f"{seen.get('reject', 'no reason given')}")
            if not seen.get("open"):
                raise PacsError(f"{what}: cannot connect to {self._where()}: connection refused, or no "
                                f"answer within {self.timeout:g}s")
            raise PacsError(f"{what}: {self._where()} aborted the association (no presentation context "
                            "accepted, or the PACS closed the connection)")
        if holder is not None:
            holder.append(assoc)
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _find(self, assoc: Association, identifier: Dataset) -> Iterator[Dataset]:
        """The matches of one C-FIND; PacsError on a failure status, a timeout or an abort."""
        for status, match in assoc.send_c_find(identifier, FIND_MODEL):
            code = getattr(status, "Status", None)
            if code is None:
                raise PacsError(f"C-FIND {identifier.QueryRetrieveLevel}: no response from {self._where()} "
                                f"(timed out after {self.timeout:g}s or association aborted)")
            if code in _PENDING:
                if match is not None:
                    yield match
                continue
            if code == 0x0000:
                return
            comment = _text(status, "ErrorComment")
            raise PacsError(f"C-FIND {identifier.QueryRetrieveLevel} on {self._where()} failed with status "
                            f"0x{code:04X}" + (f": {comment}" if comment else ""))

    # --- query ------------------------------------------------------------------------------------

    def find_studies(self, *, patient_id: str | None = None, study_instance_uid: str | None = None,
                     since: date | None = None, until: date | None = None) -> list[Study]:
        """C-FIND at STUDY level; ``since``/``until`` become a StudyDate range (inclusive)."""
        match: dict[str, str] = {}
        if patient_id:
            match["PatientID"] = patient_id
        if study_instance_uid:
            match["StudyInstanceUID"] = check_uid(study_instance_uid, "StudyInstanceUID")
        if since or until:
            match["StudyDate"] = date_range(since, until)
        ident = _identifier("STUDY", STUDY_KEYS, **match)
        with self._association("C-FIND", [(FIND_MODEL, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]) as a:
            return [_study_from(self.name, m) for m in self._find(a, ident)]

    def study(self, study_instance_uid: str) -> Study | None:
        """The study with its series and instances (C-FIND STUDY, SERIES, then IMAGE per series)."""
        uid = check_uid(study_instance_uid, "StudyInstanceUID")
        with self._association("C-FIND", [(FIND_MODEL, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]) as a:
            found = list(self._find(a, _identifier("STUDY", STUDY_KEYS, StudyInstanceUID=uid)))
            if not found:
                return None
            study = _study_from(self.name, found[0])
            # Drain each C-FIND before the next: one association carries one operation at a time.
            for m in list(self._find(a, _identifier("SERIES", SERIES_KEYS, StudyInstanceUID=uid))):
                series = Series(
                    series_instance_uid=_text(m, "SeriesInstanceUID"),
                    modality=_text(m, "Modality"),
                    body_part_examined=_text(m, "BodyPartExamined"),
                    series_number=_int(m, "SeriesNumber"),
                    series_description=_text(m, "SeriesDescription"),
                )
                ident = _identifier("IMAGE", IMAGE_KEYS, StudyInstanceUID=uid,
                                    SeriesInstanceUID=series.series_instance_uid)
                series.instances = sorted(
                    (Instance(_text(i, "SOPClassUID"), _text(i, "SOPInstanceUID"), _int(i, "InstanceNumber"))
                     for i in self._find(a, ident)),
                    key=lambda i: sort_key(i.instance_number, i.sop_instance_uid))
                study.series.append(series)
        study.series.sort(key=lambda s: sort_key(s.series_number, s.series_instance_uid))
        return study

    # --- retrieve ---------------------------------------------------------------------------------

    def retrieve(self, study_instance_uid: str, dest_dir: Path, *, series_instance_uid: str | None = None,
                 sop_instance_uids: Sequence[str] | None = None) -> Iterator[Path]:
        """C-GET (or C-MOVE) the study, one series, or the listed instances into ``dest_dir``.

        Yields each ``dest_dir/<SOPInstanceUID>.dcm`` once written. Instances the PACS does not hold are
        simply not yielded (compare with what was asked). Closing the generator early aborts the
        association. Raises PacsError if the PACS cannot be reached or the retrieve fails.
        """
        uid = check_uid(study_instance_uid, "StudyInstanceUID")
        if series_instance_uid:
            check_uid(series_instance_uid, "SeriesInstanceUID")
        if sop_instance_uids is None:
            yield from self._retrieve(uid, {series_instance_uid: None} if series_instance_uid else None, dest_dir)
            return
        listed = {check_uid(u, "SOPInstanceUID") for u in sop_instance_uids}
        if series_instance_uid:
            yield from self._retrieve(uid, {series_instance_uid: sorted(listed)}, dest_dir)
            return
        # IMAGE level needs each instance's series (a unique key of the level above): the tree has it.
        by_series: dict[str, list[str]] = {}
        tree = self.study(uid)
        for series, inst in tree.instances() if tree is not None else ():
            if inst.sop_instance_uid in listed:
                by_series.setdefault(series.series_instance_uid, []).append(inst.sop_instance_uid)
        if by_series:
            yield from self._retrieve(uid, by_series, dest_dir)

    def retrieve_listed(self, study_instance_uid: str, wanted: Mapping[str, Collection[str]],
                        dest_dir: Path) -> Iterator[Path]:
        uid = check_uid(study_instance_uid, "StudyInstanceUID")
        listed: dict[str, list[str] | None] = {
            check_uid(series, "SeriesInstanceUID"): [check_uid(u, "SOPInstanceUID") for u in uids]
            for series, uids in wanted.items()}
        return self._retrieve(uid, listed, dest_dir)

    def _retrieve(self, study_uid: str, wanted: Mapping[str, list[str] | None] | None,
                  dest_dir: Path) -> Iterator[Path]:
        """Fetch ``wanted`` (None: the whole study; series -> listed SOP Instance UIDs, None: the whole
        series) in a worker thread, yielding each file as it is written."""
        dest_dir = Path(dest_dir)
        dest_dir.mkdir(parents=True, exist_ok=True)
        plan = self._plan(study_uid, wanted)
        if plan is None:
            return
        q: queue.Queue[Any] = queue.Queue()
        holder: list[Association] = []
        stop = threading.Event()

        def work() -> None:
            try:
                (self._get if self.use_c_get else self._move)(plan, dest_dir=dest_dir, sink=q.put, holder=holder,
                                                              stop=stop)
            except BaseException as err:  # noqa: BLE001 -- re-raised in the consuming thread
                q.put(err)
            finally:
                q.put(_DONE)

        worker = threading.Thread(target=work, name=f"dimse-retrieve-{self.name}", daemon=True)
        worker.start()
        try:
            while True:
                item = q.get()
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if worker.is_alive():  # the consumer stopped early: abort rather than receive the rest
                stop.set()
                for assoc in holder:
                    with contextlib.suppress(Exception):
                        assoc.abort()
                        # A local abort does not wake a thread waiting for the next DIMSE response
                        # (pynetdicom only queues this marker when the *peer* aborts): wake it ourselves.
                        assoc.dimse.msg_queue.put((None, None))
            worker.join(self.timeout + 5)

    def _plan(self, study_uid: str, wanted: Mapping[str, list[str] | None] | None) -> _Plan | None:
        """The C-GET/C-MOVE identifiers for ``wanted`` and the SOP classes to negotiate for them; None if
        the PACS holds none of it."""
        with self._association("C-FIND", [(FIND_MODEL, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]) as a:
            found = list(self._find(a, _identifier("STUDY", ("SOPClassesInStudy",), StudyInstanceUID=study_uid)))
            if not found:
                return None
            classes = _list(found[0], "SOPClassesInStudy")
            if wanted is None:
                requests = [_Request("STUDY", study_uid)]
            else:
                counts = {_text(m, "SeriesInstanceUID"): _int(m, "NumberOfSeriesRelatedInstances")
                          for m in list(self._find(a, _identifier("SERIES", SERIES_COUNT_KEYS,
                                                                  StudyInstanceUID=study_uid)))}
                requests = []
                for series, uids in wanted.items():
                    if series not in counts:
                        continue
                    held = counts[series]
                    if uids is None or (held is not None and held <= len(set(uids))):
                        requests.append(_Request("SERIES", study_uid, series,
                                                 keep=None if uids is None else frozenset(uids)))
                        continue
                    # Which listed instances the series holds: the PACS matches the whole hierarchy in a
                    # C-FIND, whereas a C-GET may find an instance by its own UID, whatever its series.
                    members = []
                    for k in range(0, len(uids), _UID_LIST_CHUNK):
                        ident = _identifier("IMAGE", (), StudyInstanceUID=study_uid, SeriesInstanceUID=series,
                                            SOPInstanceUID=uids[k:k + _UID_LIST_CHUNK])
                        members += [_text(m, "SOPInstanceUID") for m in list(self._find(a, ident))]
                    requests += [_Request("IMAGE", study_uid, series, members[k:k + _UID_LIST_CHUNK])
                                 for k in range(0, len(members), _UID_LIST_CHUNK)]
                if not requests:
                    return None
        if not self.use_c_get or 0 < len(classes) <= self._classes_per_association():
            return _Plan([(sorted(classes), requests)])
        return self._plan_from_tree(study_uid, requests)

    def _classes_per_association(self) -> int:
        return (self.max_contexts - 1) // len(GET_TRANSFER_SYNTAXES)

    def _plan_from_tree(self, study_uid: str, requests: list[_Request]) -> _Plan | None:
        """IMAGE-level identifiers grouped by SOP class, one group per association, from the study tree:
        for a PACS that does not report SOP Classes in Study, or a study with more SOP classes than one
        C-GET association can negotiate."""
        tree = self.study(study_uid)
        if tree is None:
            return None
        scope: dict[str, set[str] | None] = {}
        for req in requests:
            if req.level == "STUDY":
                scope = {s.series_instance_uid: None for s in tree.series}
            elif req.level == "SERIES":
                scope[req.series] = None if req.keep is None else set(req.keep)
            else:
                scope.setdefault(req.series, set()).update(req.sop_instances)  # type: ignore[union-attr]
        picked = []
        for s, i in tree.instances():
            listed = scope.get(s.series_instance_uid, set())
            if listed is None or i.sop_instance_uid in listed:
                picked.append((s, i))
        classes = sorted({i.sop_class_uid for _, i in picked})
        per_assoc = self._classes_per_association()
        groups = []
        for k in range(0, len(classes), per_assoc):
            members = set(classes[k:k + per_assoc])
            by_series: dict[str, list[str]] = {}
            for s, i in picked:
                if i.sop_class_uid in members:
                    by_series.setdefault(s.series_instance_uid, []).append(i.sop_instance_uid)
            groups.append((sorted(members), [_Request("IMAGE", study_uid, suid, uids[j:j + _UID_LIST_CHUNK])
                                             for suid, uids in by_series.items()
                                             for j in range(0, len(uids), _UID_LIST_CHUNK)]))
        return _Plan(groups) if picked else None

    def _store_handler(self, dest_dir: Path, sink: Callable[[Path], None], errors: list[BaseException],
                       current: list[_Request]) -> Callable[[Any], int]:
        """The C-STORE handler; ``current`` holds the request being served (its sub-operations come while
        it is outstanding, one request at a time)."""
        def on_c_store(event: Any) -> int:
            keep = current[0].keep if current else None
            if keep is not None and str(event.request.AffectedSOPInstanceUID) not in keep:
                return 0x0000  # an unlisted instance of a series fetched whole: not written
            try:
                # Preamble + file meta (negotiated transfer syntax) + the data set bytes as received.
                data = event.encoded_dataset(include_meta=True)
                path = write_part10(dest_dir, str(event.request.AffectedSOPInstanceUID), data)
            except Exception as err:  # noqa: BLE001 -- e.g. disk full: refuse this one, report after the retrieve
                errors.append(err)
                return 0xA700  # Refused: Out of Resources
            sink(path)
            return 0x0000

        return on_c_store

    def _check_retrieve(self, what: str, responses: Iterator[tuple[Dataset, Dataset | None]]) -> None:
        """Drain C-GET/C-MOVE responses; PacsError on failure, cancel, timeout. A warning (some
        sub-operations failed) is logged: the caller sees which instances did not arrive."""
        for status, ident in responses:
            code = getattr(status, "Status", None)
            if code is None:
                raise PacsError(f"{what}: no response from {self._where()} (timed out after "
                                f"{self.timeout:g}s or association aborted)")
            if code in _PENDING:
                continue
            failed = _int(status, "NumberOfFailedSuboperations") or 0
            if code == 0x0000:
                return
            if code == _WARNING:
                log.warning("%s from %s: %d sub-operations failed", what, self._where(), failed)
                return
            if code == _CANCEL:
                raise PacsError(f"{what} on {self._where()} was cancelled")
            comment = _text(status, "ErrorComment")
            raise PacsError(f"{what} on {self._where()} failed with status 0x{code:04X}"
                            f" ({failed} sub-operations failed)" + (f": {comment}" if comment else ""))

    def _get(self, plan: _Plan, *, dest_dir: Path, sink: Callable[[Path], None], holder: list[Association],
             stop: threading.Event) -> None:
        errors: list[BaseException] = []
        current: list[_Request] = []
        handler = self._store_handler(dest_dir, sink, errors, current)
        for classes, requests in plan.groups:
            if stop.is_set():
                return
            contexts: list[tuple[str, Sequence[str]]] = [(GET_MODEL, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])]
            # One context per (SOP class, transfer syntax): the PACS then sends each file as stored.
            contexts += [(c, [ts]) for c in classes for ts in GET_TRANSFER_SYNTAXES]
            roles = [build_role(c, scp_role=True) for c in classes]
            with self._association("C-GET", contexts, ext_neg=roles, handlers=[(evt.EVT_C_STORE, handler)],
                                   holder=holder) as assoc:
                for req in requests:
                    if stop.is_set():
                        return
                    current[:] = [req]
                    self._check_retrieve("C-GET", assoc.send_c_get(req.dataset(), GET_MODEL))
        if errors:
            raise PacsError(f"C-GET from {self._where()}: could not write {len(errors)} file(s) to {dest_dir}: "
                            f"{errors[0]}")

    def _move(self, plan: _Plan, *, dest_dir: Path, sink: Callable[[Path], None], holder: list[Association],
              stop: threading.Event) -> None:
        assert self.move_destination is not None
        move_aet, move_port = self.move_destination
        errors: list[BaseException] = []
        scp = AE(ae_title=move_aet)
        scp.require_called_aet = True
        scp.acse_timeout = scp.dimse_timeout = scp.network_timeout = self.timeout
        known: set[str] = set()
        for cx in AllStoragePresentationContexts:
            scp.add_supported_context(str(cx.abstract_syntax), ALL_TRANSFER_SYNTAXES)
            known.add(str(cx.abstract_syntax))
        for c in sorted({c for classes, _ in plan.groups for c in classes} - known):  # e.g. private SOP classes
            scp.add_supported_context(c, ALL_TRANSFER_SYNTAXES)
        current: list[_Request] = []
        handler = self._store_handler(dest_dir, sink, errors, current)
        with self._move_lock:
            try:
                server = scp.start_server((self.move_host, move_port), block=False,
                                          evt_handlers=[(evt.EVT_C_STORE, handler)])
                assert server is not None  # block=False returns the server
            except OSError as err:
                raise PacsError(f"C-MOVE: cannot listen as {move_aet} on port {move_port}: {err}") from err
            try:
                with self._association("C-MOVE", [(MOVE_MODEL, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])],
                                       holder=holder) as assoc:
                    for req in (r for _, requests in plan.groups for r in requests):
                        if stop.is_set():
                            return
                        current[:] = [req]
                        self._check_retrieve(f"C-MOVE to {move_aet}",
                                             assoc.send_c_move(req.dataset(), move_aet, MOVE_MODEL))
            finally:
                server.shutdown()
        if errors:
            raise PacsError(f"C-MOVE from {self._where()}: could not write {len(errors)} file(s) to {dest_dir}: "
                            f"{errors[0]}")
