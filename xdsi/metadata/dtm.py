"""HL7 DTM time values (``YYYY[MM[DD[hh[mm[ss]]]]]``, UTC) as XDS metadata carries them."""

from __future__ import annotations

from datetime import datetime, timezone


def sortable(value: str | None) -> str | None:
    """Right-pad a DTM to 14 digits so that string order is time order (``2004`` -> ``20040000000000``).

    Stored query time ranges compare these strings: ``From`` is inclusive, ``To`` exclusive
    (ITI TF-2a 3.18.4.1.2.3.6).
    """
    if not value:
        return None
    digits = value.strip()[:14]
    return digits + "0" * (14 - len(digits))


def now() -> str:
    """The current UTC time as a 14-digit DTM."""
    return datetime.now(timezone.utc).strftime("%Y%m%d%H%M%S")
