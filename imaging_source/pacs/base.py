"""What the imaging source needs from a PACS, whatever protocol it speaks.

A study is found with its patient and study attributes (study level), then its tree of series and
instances (what the KOS manifest references), and its instances are retrieved one file at a time, so a
study of thousands of images never sits in memory.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Protocol


@dataclass
class Instance:
    sop_class_uid: str
    sop_instance_uid: str
    instance_number: int | None = None


@dataclass
class Series:
    series_instance_uid: str
    modality: str = ""
    body_part_examined: str = ""
    series_number: int | None = None
    series_description: str = ""
    instances: list[Instance] = field(default_factory=list)


@dataclass
class Study:
    """A study as the PACS describes it. ``series`` is filled by :meth:`PacsAdapter.study` (the full tree),
    left empty by :meth:`PacsAdapter.find_studies` (study level only)."""

    pacs: str  # the adapter's configured name
    study_instance_uid: str
    patient_id: str = ""
    issuer_of_patient_id: str = ""  # (0010,0021): the PACS's local assigning authority
    patient_name: str = ""
    patient_birth_date: str = ""
    patient_sex: str = ""
    accession_number: str = ""
    study_date: str = ""  # DA: YYYYMMDD
    study_time: str = ""  # TM
    study_description: str = ""
    referring_physician_name: str = ""
    institution_name: str = ""
    modalities_in_study: list[str] = field(default_factory=list)
    number_of_instances: int | None = None
    series: list[Series] = field(default_factory=list)

    def instances(self) -> Iterator[tuple[Series, Instance]]:
        for s in self.series:
            for i in s.instances:
                yield s, i


# Digits and dots; leading zeros (invalid per PS3.5 9.1 but found in the wild) are tolerated.
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")


def is_uid(value: str) -> bool:
    """A DICOM UID as far as it matters here: digits and dots, at most 64 characters."""
    return len(value) <= 64 and bool(_UID.match(value))


def check_uid(value: str, what: str = "UID") -> str:
    """``value`` if it is a DICOM UID, else ValueError naming ``what``: a UID goes into a C-FIND key
    (where ``*`` would be a wildcard) or a DICOMweb URL path, so it is checked first."""
    if not is_uid(value):
        raise ValueError(f"{what} {value!r} is not a DICOM UID")
    return value


def date_range(since: date | None, until: date | None) -> str:
    """A StudyDate range for C-FIND and QIDO-RS (PS3.4 C.2.2.2.5): ``a-b``, ``a-`` or ``-b``, inclusive."""
    fmt = "%Y%m%d"
    return f"{since.strftime(fmt) if since else ''}-{until.strftime(fmt) if until else ''}"


def sort_key(number: int | None, uid: str) -> tuple[bool, int, str]:
    """Order series/instances by number (missing last), then UID."""
    return (number is None, number or 0, uid)


class PacsError(RuntimeError):
    """The PACS could not be reached or refused the request; the message says which and why."""


class PacsAdapter(Protocol):
    """One participating PACS."""

    name: str
    #: DICOM AE title to put in the KOS as Retrieve AE Title (may be "" for DICOMweb-only PACS).
    ae_title: str

    def find_studies(self, *, patient_id: str | None = None, study_instance_uid: str | None = None,
                     since: date | None = None, until: date | None = None) -> list[Study]:
        """Study-level query (C-FIND STUDY / QIDO-RS /studies). ``since``/``until`` filter on StudyDate."""
        ...

    def study(self, study_instance_uid: str) -> Study | None:
        """The study with its full series/instance tree, or None if the PACS does not hold it."""
        ...

    def retrieve(self, study_instance_uid: str, dest_dir: Path, *, series_instance_uid: str | None = None,
                 sop_instance_uids: Sequence[str] | None = None) -> Iterator[Path]:
        """Fetch instances (all of the study, of one series, or the listed ones) as DICOM Part 10 files
        written into ``dest_dir``, yielding each path as soon as it is complete. The files are the PACS's
        stored objects (same transfer syntax) wherever the protocol allows."""
        ...
