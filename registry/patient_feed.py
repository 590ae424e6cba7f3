"""Patient Identity Feed [ITI-8] (ITI TF-2a 3.8), Document Registry side.

The registry learns the affinity domain's patient ids from HL7 v2 ADT messages: A01/A04/A05/A08
create or update a patient, A40 merges a subsumed id into a surviving one. Each message is answered
with an HL7 ACK (AA accepted, AE application error, AR rejected) whose ERR segment names the
offending segment and field.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from registry import hl7v2
from registry.hl7v2 import Message, Segment, composite, segment, value
from xdsi.metadata.hl7 import CX, HD

log = logging.getLogger(__name__)

UPSERT_EVENTS = ("A01", "A04", "A05", "A08")  # admit, register, pre-admit, update patient information
MERGE_EVENT = "A40"  # merge patient - patient identifier list
MESSAGE_STRUCTURES = {"A01": "ADT_A01", "A04": "ADT_A01", "A05": "ADT_A05", "A08": "ADT_A01", "A40": "ADT_A39"}

# HL7 table 0357 (message error condition codes) - the ones this transaction answers with.
HL7_ERROR_TEXT = {
    100: "Segment sequence error", 101: "Required field missing", 102: "Data type error",
    103: "Table value not found", 200: "Unsupported message type", 201: "Unsupported event code",
    207: "Application internal error",
}


class PatientStore(Protocol):
    """What the feed needs from the registry database."""

    def upsert_patient(self, patient_id: str, demographics: dict) -> None:
        """Create or update the patient *patient_id* (XDS form ``ID^^^&OID&ISO``)."""

    def merge_patients(self, surviving_id: str, subsumed_id: str) -> int:
        """Move the subsumed patient's registry objects to the surviving id (creating it if
        unknown) so they stay findable; return how many objects moved."""


@dataclass
class AdtError(Exception):
    """A reason to answer AE/AR, with the HL7 error location ``segment-field``."""

    ack_code: str  # "AE" or "AR"
    hl7_code: int
    text: str
    segment: str = ""
    field: int = 0


def handle_adt(message: bytes, store: PatientStore, *, domain_oid: str | None) -> bytes:
    """Apply one ITI-8 ADT message to *store* and return the ACK message bytes (never raises).

    *domain_oid* is the affinity domain's assigning authority OID; when None, every PID-3 id with
    an ISO assigning authority is accepted.
    """
    msg: Message | None = None
    try:
        msg = hl7v2.parse(message)
        event = _check_header(msg)
        if event == MERGE_EVENT:
            _merge(msg, store, domain_oid)
        else:
            _upsert(msg, event, store, domain_oid)
        return build_ack(msg, "AA")
    except AdtError as err:
        log.info("ITI-8 %s %s: %s", err.ack_code, err.hl7_code, err.text)
        return build_ack(msg or _header_only(message), err.ack_code, err)
    except hl7v2.HL7ParseError as exc:
        err = AdtError("AR", 100, f"unparseable HL7 message: {exc}", "MSH")
        return build_ack(_header_only(message), "AR", err)
    except Exception as exc:  # storage failure: tell the sender, who will retry
        log.exception("ITI-8 store failure")
        err = AdtError("AE", 207, f"registry could not store the patient: {type(exc).__name__}: {exc}")
        return build_ack(msg or _header_only(message), "AE", err)


def _header_only(message: bytes) -> Message:
    """Best effort: the MSH alone of an otherwise unparseable message, to address the ACK."""
    try:
        return hl7v2.parse(message.replace(b"\n", b"\r").split(b"\r", 1)[0])
    except hl7v2.HL7ParseError:
        return hl7v2.Message([])


def _check_header(msg: Message) -> str:
    """Validate MSH-9 and return the trigger event."""
    msh = msg.segments[0]
    if not msh.get(10):
        raise AdtError("AR", 101, "MSH-10 (message control id) is missing", "MSH", 10)
    msg_type = msh.get(9, 1)
    if msg_type != "ADT":
        raise AdtError("AR", 200, f"MSH-9.1 message type {msg_type!r} is not supported; "
                       "the Patient Identity Feed [ITI-8] accepts ADT only", "MSH", 9)
    event = msh.get(9, 2) or msg.get("EVN-1")  # EVN-1 is the pre-2.3 place of the trigger event
    if event not in UPSERT_EVENTS and event != MERGE_EVENT:
        raise AdtError("AR", 201, f"MSH-9.2 trigger event {event!r} is not supported; expected one of "
                       f"{', '.join(UPSERT_EVENTS + (MERGE_EVENT,))}", "MSH", 9)
    return event


def _cx_list(seg: Segment, n: int) -> list[CX]:
    """The CX repetitions of field *n* as XDS-form :class:`CX` (CX.1 and CX.4 only)."""
    out = []
    for rep in seg.field(n):
        cx_id = rep[0][0] if rep else ""
        aa = rep[3] if len(rep) > 3 else [""]
        parts = (aa + ["", "", ""])[:3]
        if cx_id or any(parts):  # built, not re-parsed: CX.1 may contain an unescaped ^ or &
            out.append(CX(cx_id, HD(*parts)))
    return out


def _domain_ids(cxs: Iterable[CX], domain_oid: str | None) -> list[CX]:
    """The ids that belong to the affinity domain (or to any ISO authority when no domain is set)."""
    return [cx for cx in cxs if cx.id and cx.assigning_authority.universal_id_type == "ISO"
            and cx.assigning_authority.universal_id
            and (domain_oid is None or cx.assigning_authority.universal_id == domain_oid)]


def _describe(cx: CX) -> str:
    # error texts avoid ^ and & so they read well without HL7 escape sequences
    aa = cx.assigning_authority
    return f"id {cx.id!r} of authority {aa.universal_id or aa.namespace_id or '(none)'}"


def canonical(cx: CX) -> str:
    """XDS patient id form ``ID^^^&OID&ISO`` (ITI TF-3 4.2.3.1.7, sourcePatientId/patientId)."""
    return f"{cx.id}^^^&{cx.assigning_authority.universal_id}&ISO"


def _require_ids(seg: Segment, n: int, domain_oid: str | None) -> list[CX]:
    where = f"{seg.name}-{n}"
    cxs = _cx_list(seg, n)
    if not cxs:
        raise AdtError("AE", 101, f"{where} (patient identifier list) is missing", seg.name, n)
    if not all(cx.id for cx in cxs):
        raise AdtError("AE", 102, f"{where}: a repetition has an empty CX.1 (id number)", seg.name, n)
    ids = _domain_ids(cxs, domain_oid)
    if not ids:
        wanted = domain_oid or "any ISO OID (CX.4.2, with CX.4.3 = ISO)"
        got = ", ".join(_describe(cx) for cx in cxs)
        raise AdtError("AE", 103, f"{where}: no identifier of the affinity domain assigning authority "
                       f"{wanted}; got {got}", seg.name, n)
    return ids


def demographics(pid: Segment, patient: CX | None = None) -> dict:
    """PID demographics as a JSON-able dict; ``other_ids`` are the PID-3 ids other than *patient*."""
    others = [canonical(cx) if _domain_ids([cx], None) else str(cx) for cx in _cx_list(pid, 3)]
    own = canonical(patient) if patient else None
    return {
        "name": {"family": pid.get(5, 1), "given": pid.get(5, 2), "middle": pid.get(5, 3),
                 "suffix": pid.get(5, 4), "prefix": pid.get(5, 5)},
        "birth_date": pid.get(7, 1),
        "sex": pid.get(8, 1),
        "other_ids": [o for o in others if o != own],
    }


def _upsert(msg: Message, event: str, store: PatientStore, domain_oid: str | None) -> None:
    pid = msg.segment("PID")
    if pid is None:
        raise AdtError("AE", 100, f"ADT^{event} has no PID segment", "PID")
    for cx in _require_ids(pid, 3, domain_oid):
        store.upsert_patient(canonical(cx), demographics(pid, cx))


def _merge(msg: Message, store: PatientStore, domain_oid: str | None) -> None:
    """A40: each PID (surviving id) is followed by its MRG (prior ids); the PATIENT group repeats."""
    pairs: list[tuple[Segment, Segment]] = []
    pid: Segment | None = None
    for seg in msg.segments:
        if seg.name == "PID":
            pid = seg
        elif seg.name == "MRG":
            if pid is None:
                raise AdtError("AE", 100, "MRG segment without a preceding PID segment", "MRG")
            pairs.append((pid, seg))
            pid = None
    if not pairs:
        raise AdtError("AE", 100, "ADT^A40 needs a PID segment followed by an MRG segment",
                       "PID" if msg.segment("PID") is None else "MRG")
    merges = []  # resolve every pair before changing anything
    for pid, mrg in pairs:
        survivors = {cx.assigning_authority.universal_id: cx for cx in _require_ids(pid, 3, domain_oid)}
        for prior in _require_ids(mrg, 1, domain_oid):
            # without a configured domain, a prior id merges into the surviving id of the same authority
            surviving = survivors.get(prior.assigning_authority.universal_id)
            if surviving is None:
                raise AdtError("AE", 103, f"MRG-1 {_describe(prior)} has no PID-3 surviving id with the same "
                               "assigning authority", "MRG", 1)
            if canonical(surviving) != canonical(prior):
                merges.append((canonical(surviving), canonical(prior)))
    for surviving_id, subsumed_id in merges:
        moved = store.merge_patients(surviving_id, subsumed_id)
        log.info("ITI-8 A40: merged %s into %s (%d registry objects)", subsumed_id, surviving_id, moved)


# --- ACK -------------------------------------------------------------------------------------------


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S+0000")


def build_ack(msg: Message, code: str, err: AdtError | None = None) -> bytes:
    """General acknowledgment (HL7 v2.5 ACK): sender/receiver swapped, MSA-2 = request MSH-10."""
    req = msg.segments[0] if msg.segments and msg.segments[0].name == "MSH" else Segment("MSH")
    event = req.get(9, 2)
    version = req.get(12) or "2.5"
    msh = segment("MSH", "|", value(msg.encoding.msh2),
                  req.field(5), req.field(6), req.field(3), req.field(4),  # MSH-3..6 swapped
                  _now(), "", value(["ACK", event, "ACK"] if event else "ACK"), uuid.uuid4().hex[:20],
                  req.field(11) or value("P"), value(version))
    msa = segment("MSA", code, req.get(10), err.text if err else "")
    segments = [msh, msa]
    if err is not None:
        location = [err.segment, "1", str(err.field) if err.field else ""]
        err_seg = segment("ERR", "", value(location),
                          value([str(err.hl7_code), HL7_ERROR_TEXT.get(err.hl7_code, ""), "HL70357"]),
                          "E", "", "", "", err.text)
        if version.startswith(("2.3", "2.4")):  # ERR-1 (ELD) is what v2.3.1/2.4 receivers read
            err_seg.set(1, value([err.segment, "1", location[2], [str(err.hl7_code), err.text, "HL70357"]]))
        segments.append(err_seg)
    return Message(segments, msg.encoding).encode()


# --- builder used by tests and the conformance runner ----------------------------------------------


def build_adt(event: str, patient_id: str, *, name: str = "", birth_date: str = "", sex: str = "",
              other_ids: Sequence[str] = (), prior_id: str | None = None,
              sending: tuple[str, str] = ("XDSI_PIF", "XDSI"),
              receiving: tuple[str, str] = ("XDSI_REGISTRY", "XDSI"),
              control_id: str | None = None) -> bytes:
    """An ITI-8 ADT message (HL7 v2.5). Ids are XDS strings ``ID^^^&OID&ISO``; *name* is
    ``Family^Given``; *prior_id* is the MRG-1 id of an A40."""
    if event not in MESSAGE_STRUCTURES:
        raise ValueError(f"unsupported ADT event {event!r}")
    if event == MERGE_EVENT and not prior_id:
        raise ValueError("A40 needs prior_id")
    msh = segment("MSH", "|", "^~\\&", sending[0], sending[1], receiving[0], receiving[1], _now(), "",
                  value(["ADT", event, MESSAGE_STRUCTURES[event]]),
                  control_id or uuid.uuid4().hex[:20], "P", "2.5")
    pid = segment("PID", "1", "", [composite(i) for i in (patient_id, *other_ids)], "",
                  value(composite(name)) if name else "", "", birth_date, sex)
    segments = [msh, segment("EVN", "", _now()), pid]
    if event == MERGE_EVENT:
        segments.append(segment("MRG", [composite(prior_id or "")]))
    else:
        segments.append(segment("PV1", "1", "N"))  # PV1-2 patient class N = not applicable
    return Message(segments).encode()
