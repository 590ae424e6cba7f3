"""Register the conformance patients over ITI-8 (Patient Identity Feed, HL7 v2 ADT over MLLP) before a run.

``patients.tsv`` lists every patient id the live messages use; only rows with ``register_before_run=yes`` are
fed (ids such as ``CONFUNKNOWN999`` must stay unknown to the Registry).
"""

from __future__ import annotations

import csv
from pathlib import Path

#: ADT event used for the feed: A01 "admit/visit notification", as the NIST toolkit's feed sends.
FEED_EVENT = "A01"


def patients_to_register(patients_tsv: Path) -> list[str]:
    """Patient ids (CX) marked ``register_before_run=yes``."""
    with Path(patients_tsv).open(newline="", encoding="utf-8") as fh:
        rows = csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)
        return [r["patient_id"].strip() for r in rows
                if (r.get("register_before_run") or "").strip().lower() == "yes"]


def ack_code(ack: bytes) -> str:
    """MSA-1 (``AA``, ``AE``, ``AR`` ...) of an HL7 v2 ACK; ``""`` if there is no MSA segment."""
    text = ack.decode("utf-8", "replace").strip("\x0b\x1c\r\n ")
    segments = [s for s in text.replace("\n", "\r").split("\r") if s]
    sep = segments[0][3] if segments and segments[0].startswith("MSH") and len(segments[0]) > 3 else "|"
    for seg in segments:
        fields = seg.split(sep)
        if fields[0] == "MSA" and len(fields) > 1:
            return fields[1].strip()
    return ""


def register_patients(patient_ids: list[str], host: str, port: int, *, timeout: float = 5) -> list[str]:
    """Feed every id with an ADT^A01 to the Registry's MLLP listener; return one message per id not accepted."""
    # Imported here: the feed modules belong to the registry package and the runner must load without them.
    try:
        from registry.mllp import send_mllp
        from registry.patient_feed import build_adt
    except ImportError as exc:
        return [f"ITI-8 feed unavailable: {exc}"]

    problems = []
    for pid in patient_ids:
        try:
            ack = send_mllp(host, port, build_adt(FEED_EVENT, pid), timeout=timeout)
        except (OSError, ValueError) as exc:  # refused, timed out, or a garbled answer
            problems.append(f"ITI-8 {pid}: {exc}")
            continue
        code = ack_code(ack)
        if code != "AA":
            problems.append(f"ITI-8 {pid}: ACK MSA-1={code or 'missing'}")
    return problems
