"""HL7 v2.5 data types used inside XDS metadata values (ITI TF-3 Table 4.2.3.1.7-2).

Each type parses from and formats to its ``^``/``&``-separated string form. Parsing never raises:
whether a value is *acceptable* is decided by :mod:`xdsi.validate.hl7`, which reports XDS error codes.
"""

from __future__ import annotations

from dataclasses import dataclass


def _split(value: str, sep: str, n: int) -> list[str]:
    parts = value.split(sep)
    return parts + [""] * (n - len(parts))


@dataclass(frozen=True)
class HD:
    """Hierarchic designator (assigning authority): ``namespace&universalId&universalIdType``."""

    namespace_id: str = ""
    universal_id: str = ""
    universal_id_type: str = ""

    @classmethod
    def parse(cls, value: str) -> HD:
        p = _split(value, "&", 3)
        return cls(p[0], p[1], p[2])

    def __str__(self) -> str:
        return "&".join((self.namespace_id, self.universal_id, self.universal_id_type)).rstrip("&")


@dataclass(frozen=True)
class CX:
    """Extended composite id, e.g. a patient id ``id^^^&1.2.3&ISO`` (XDS uses CX.1 and CX.4)."""

    id: str
    assigning_authority: HD = HD()
    identifier_type_code: str = ""  # CX.5, used in referenceIdList
    assigning_facility: HD = HD()  # CX.6, homeCommunityId in referenceIdList
    raw: str = ""

    @classmethod
    def parse(cls, value: str) -> CX:
        p = _split(value, "^", 6)
        return cls(p[0], HD.parse(p[3]), p[4], HD.parse(p[5]), raw=value)

    def __str__(self) -> str:
        return self.raw or f"{self.id}^^^{self.assigning_authority}"


@dataclass(frozen=True)
class XCN:
    """Extended composite person name and id (author person, legal authenticator)."""

    id: str = ""
    family: str = ""
    given: str = ""
    assigning_authority: HD = HD()
    raw: str = ""

    @classmethod
    def parse(cls, value: str) -> XCN:
        p = _split(value, "^", 9)
        return cls(p[0], p[1], p[2], HD.parse(p[8]), raw=value)

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True)
class XON:
    """Extended composite organization name (author institution): name ``^^^^^^^^^`` org id."""

    name: str = ""
    organization_id: str = ""
    assigning_authority: HD = HD()
    raw: str = ""

    @classmethod
    def parse(cls, value: str) -> XON:
        p = _split(value, "^", 10)
        return cls(p[0], p[9], HD.parse(p[5]), raw=value)

    def __str__(self) -> str:
        return self.raw


@dataclass(frozen=True)
class XTN:
    """Extended telecommunication number (author telecommunication); XDS uses XTN.2/3/4."""

    use_code: str = ""
    equipment_type: str = ""
    email: str = ""
    raw: str = ""

    @classmethod
    def parse(cls, value: str) -> XTN:
        p = _split(value, "^", 4)
        return cls(p[1], p[2], p[3], raw=value)

    def __str__(self) -> str:
        return self.raw
