"""Format checks of the values XDS metadata carries (ITI TF-3 Table 4.2.3.1.7-2 and 4.2.3.2/4.2.3.3).

Each ``check_*`` function takes the wire string and returns ``None`` when it is acceptable, else a short
message saying what is wrong (without the attribute name: the caller prefixes object id and field).
They are pure functions over precompiled patterns, cheap enough to run on every registration.
"""

from __future__ import annotations

import re

__all__ = [
    "check_oid",
    "check_uuid_urn",
    "check_cx",
    "check_cxi",
    "check_hd_iso",
    "check_xcn",
    "check_xon",
    "check_xtn",
    "check_dtm",
    "check_sha1",
    "check_size",
    "check_language_code",
    "check_mime_type",
    "check_document_unique_id",
    "check_source_patient_info",
]

# Lenient on arc values (the NIST data carries sourceIds such as 129.6.58.92.1.1), strict on shape.
_OID = re.compile(r"[0-9]+(?:\.[0-9]+)+")
_UUID_URN = re.compile(r"urn:uuid:[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_SHA1 = re.compile(r"[0-9a-fA-F]{40}")
_SIZE = re.compile(r"[0-9]+")
_LANGUAGE = re.compile(r"[a-zA-Z]{1,8}(?:-[a-zA-Z0-9]{1,8})*")
_TOKEN = r"[A-Za-z0-9!#$&^_.+\-]+"
_MIME = re.compile(rf"{_TOKEN}/{_TOKEN}(?:\s*;\s*{_TOKEN}=(?:{_TOKEN}|\"[^\"]*\"))*")
_DTM = re.compile(r"[0-9]{4}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2}(?:[0-9]{2})?)?)?)?)?")
_PID_FIELD = re.compile(r"PID-[0-9]+\|")
_DAYS = (31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)

#: Longest OID ITI TF-3 allows for uniqueIds, sourceId and assigning authorities.
MAX_OID = 64


def check_oid(value: str) -> str | None:
    """An ISO OID in dotted-decimal form, at most 64 characters."""
    if not value:
        return "is empty; an OID is required"
    if not _OID.fullmatch(value):
        return f"{value!r} is not an OID (dotted decimal numbers)"
    if len(value) > MAX_OID:
        return f"{value!r} is longer than {MAX_OID} characters"
    return None


def check_uuid_urn(value: str) -> str | None:
    """``urn:uuid:`` followed by a UUID in 8-4-4-4-12 hex form."""
    if _UUID_URN.fullmatch(value):
        return None
    return f"{value!r} is not a urn:uuid: UUID"


def check_hd_iso(value: str) -> str | None:
    """Assigning authority ``&OID&ISO``: empty namespace, an OID, universal id type ISO."""
    parts = value.split("&")
    if len(parts) != 3:
        return f"assigning authority {value!r} is not '&<OID>&ISO'"
    if parts[0]:
        return f"assigning authority {value!r} has a namespace id; only '&<OID>&ISO' is allowed"
    if parts[2] != "ISO":
        return f"assigning authority {value!r} must have universal id type ISO"
    err = check_oid(parts[1])
    if err:
        return f"assigning authority {value!r}: universal id {err}"
    return None


def check_cx(value: str) -> str | None:
    """A patient id ``id^^^&OID&ISO``: CX.1 and CX.4 only (ITI TF-3 4.2.3.1.7)."""
    if not value:
        return "is empty; a CX 'id^^^&<OID>&ISO' is required"
    parts = value.split("^")
    if len(parts) != 4:
        return f"{value!r} has {len(parts)} components; expected exactly 'id^^^&<OID>&ISO'"
    if not parts[0]:
        return f"{value!r} has no id (CX.1)"
    if parts[1] or parts[2]:
        return f"{value!r} fills CX.2/CX.3; only CX.1 and CX.4 are allowed"
    err = check_hd_iso(parts[3])
    return f"{value!r}: {err}" if err else None


def check_cxi(value: str) -> str | None:
    """A referenceIdList entry (CXi): CX.1 id, CX.4 assigning authority (optional), CX.5 type required."""
    parts = value.split("^")
    if len(parts) < 5 or not parts[0]:
        return f"{value!r} is not a CXi 'id^^^&<OID>&ISO^type'"
    if parts[1] or parts[2]:
        return f"{value!r} fills CX.2/CX.3"
    if parts[3]:
        err = check_hd_iso(parts[3])
        if err:
            return f"{value!r}: {err}"
    if not parts[4]:
        return f"{value!r} has no identifier type code (CX.5)"
    if len(parts) > 7:
        return f"{value!r} has more than 7 components"
    return None


def check_xcn(value: str) -> str | None:
    """A person (XCN): an id (XCN.1) or a family name (XCN.2); XCN.9 ``&OID&ISO`` when given."""
    if not value:
        return "is empty"
    parts = value.split("^")
    if len(parts) > 23:  # XCN has 23 components
        return f"{value!r} has more than 23 components"
    if not parts[0] and not (len(parts) > 1 and parts[1].split("&", 1)[0]):
        return f"{value!r} has neither an id (XCN.1) nor a family name (XCN.2)"
    if len(parts) > 8 and parts[8]:
        err = check_hd_iso(parts[8])
        if err:
            return f"{value!r}: {err}"
    return None


def check_xon(value: str) -> str | None:
    """An organization (XON): name in XON.1; only XON.6 (``&OID&ISO``) and XON.10 (id) besides it."""
    if not value:
        return "is empty"
    parts = value.split("^")
    if not parts[0]:
        return f"{value!r} has no organization name (XON.1)"
    if len(parts) > 10:
        return f"{value!r} has more than 10 components"
    for i in (1, 3, 4, 6, 7, 8):
        if i < len(parts) and parts[i]:
            return f"{value!r} fills XON.{i + 1}; only XON.1, XON.3, XON.6 and XON.10 are allowed"
    if len(parts) > 5 and parts[5]:
        err = check_hd_iso(parts[5])
        if err:
            return f"{value!r}: {err}"
    return None


def check_xtn(value: str) -> str | None:
    """A telecommunication address (XTN): ``^^Internet^a@b`` or a phone ``^PRN^PH^...^number``."""
    if not value:
        return "is empty"
    parts = value.split("^") + [""] * 12
    use, equipment = parts[1], parts[2]
    if equipment in ("Internet", "X.400"):
        if not parts[3]:
            return f"{value!r} is an {equipment} address without one (XTN.4)"
        if use and use != "NET":
            return f"{value!r}: use code of an {equipment} address must be NET"
        return None
    if equipment in ("PH", "CP", "FX", "BP", "MD"):
        if not (parts[5] or parts[6] or parts[11]):
            return f"{value!r} is a phone without a number (XTN.6/XTN.7 or XTN.12)"
        return None
    return f"{value!r} has no known equipment type in XTN.3 (Internet, X.400, PH, CP, FX, BP, MD)"


def check_dtm(value: str) -> str | None:
    """A UTC time ``YYYY[MM[DD[hh[mm[ss]]]]]`` with valid month, day, hour, minute and second."""
    if not value:
        return "is empty; a time YYYY[MM[DD[hh[mm[ss]]]]] is required"
    if not _DTM.fullmatch(value):
        return f"{value!r} is not a time YYYY[MM[DD[hh[mm[ss]]]]] (UTC, no zone or fraction)"
    n = len(value)
    year = int(value[0:4])
    if n >= 6:
        month = int(value[4:6])
        if not 1 <= month <= 12:
            return f"{value!r} has month {month:02d}"
        if n >= 8:
            day = int(value[6:8])
            leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
            last = 28 if month == 2 and not leap else _DAYS[month - 1]
            if not 1 <= day <= last:
                return f"{value!r} has day {day:02d} (month {month:02d} has {last})"
    if n >= 10 and int(value[8:10]) > 23:
        return f"{value!r} has hour {value[8:10]}"
    if n >= 12 and int(value[10:12]) > 59:
        return f"{value!r} has minute {value[10:12]}"
    if n >= 14 and int(value[12:14]) > 59:
        return f"{value!r} has second {value[12:14]}"
    return None


def check_sha1(value: str) -> str | None:
    """A SHA-1 digest as 40 hexadecimal characters."""
    if _SHA1.fullmatch(value):
        return None
    return f"{value!r} is not a SHA-1 hash (40 hexadecimal characters)"


def check_size(value: str) -> str | None:
    """A size in octets: a non-negative integer."""
    if _SIZE.fullmatch(value):
        return None
    return f"{value!r} is not a non-negative integer"


def check_language_code(value: str) -> str | None:
    """An RFC 3066 language tag such as ``en-US``."""
    if _LANGUAGE.fullmatch(value):
        return None
    return f"{value!r} is not an RFC 3066 language tag (e.g. en-US)"


def check_mime_type(value: str) -> str | None:
    """A MIME type ``type/subtype`` (RFC 2045 tokens, optional parameters)."""
    if not value:
        return "is empty"
    if _MIME.fullmatch(value):
        return None
    return f"{value!r} is not a MIME type 'type/subtype'"


def check_document_unique_id(value: str) -> str | None:
    """DocumentEntry.uniqueId: an OID (at most 64 characters) optionally ``^extension`` (at most 16)."""
    oid, sep, ext = value.partition("^")
    err = check_oid(oid)
    if err:
        return err
    if sep and not 0 < len(ext) <= 16:
        return f"{value!r} has an extension that is empty or longer than 16 characters"
    return None


def check_source_patient_info(value: str) -> str | None:
    """One sourcePatientInfo value: ``PID-<n>|<field value>``."""
    if _PID_FIELD.match(value):
        return None
    return f"{value!r} is not 'PID-<n>|<value>'"
