"""What the imaging source needs from a PACS, whatever protocol it speaks.

A study is found with its patient and study attributes (study level), then its tree of series and
instances (what the KOS manifest references), and its instances are retrieved one file at a time, so a
study of thousands of images never sits in memory. RAD-69 retrieves the instances a request lists,
series by series, without reading the study's tree first (:meth:`PacsAdapter.retrieve_listed`).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterator, Mapping, Sequence
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


#: Explicit VR Little Endian VRs with a 2-byte reserved field and a 4-byte length (PS3.5 7.1.2).
_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}
#: Bytes of a Part 10 file that hold its File Meta Information in practice (it is a few hundred).
PART10_HEAD = 8192


def part10_uids(head: bytes) -> tuple[str, str] | None:
    """(Media Storage SOP Instance UID, Transfer Syntax UID) from the File Meta Information at the start
    of a Part 10 file (PS3.10 7.1: preamble, ``DICM``, group 0002 in Explicit VR Little Endian). It is read
    for every instance retrieved, and pydicom takes ~0.3 ms a file for it. None if ``head`` is not the start
    of a Part 10 file with both, or is cut before them."""
    if head[128:132] != b"DICM":
        return None
    found: dict[int, str] = {}
    pos = 132
    while pos + 8 <= len(head) and int.from_bytes(head[pos:pos + 2], "little") == 0x0002:
        element = int.from_bytes(head[pos + 2:pos + 4], "little")
        if head[pos + 4:pos + 6] in _LONG_VRS:
            length, pos = int.from_bytes(head[pos + 8:pos + 12], "little"), pos + 12
        else:
            length, pos = int.from_bytes(head[pos + 6:pos + 8], "little"), pos + 8
        if element in (0x0003, 0x0010) and pos + length <= len(head):
            found[element] = head[pos:pos + length].rstrip(b"\0 ").decode("ascii", "replace")
        pos += length
    sop, syntax = found.get(0x0003), found.get(0x0010)
    return (sop, syntax) if sop and syntax else None


def date_range(since: date | None, until: date | None) -> str:
    """A StudyDate range for C-FIND and QIDO-RS (PS3.4 C.2.2.2.5): ``a-b``, ``a-`` or ``-b``, inclusive."""
    fmt = "%Y%m%d"
    return f"{since.strftime(fmt) if since else ''}-{until.strftime(fmt) if until else ''}"


def sort_key(number: int | None, uid: str) -> tuple[bool, int, str]:
    """Order series/instances by number (missing last), then UID."""
    return (number is None, number or 0, uid)


def read_then_delete(path: Path, chunk: int = 1 << 20) -> Iterator[bytes]:
    """A spooled file's bytes in pieces; the file is deleted once read, or when the reader stops."""
    try:
        with open(path, "rb") as fh:
            while piece := fh.read(chunk):
                yield piece
    finally:
        path.unlink(missing_ok=True)


@dataclass
class Received:
    """One instance delivered for streaming (:meth:`PacsAdapter.stream_listed`): its UIDs from the File Meta
    Information, and its bytes in memory (``pieces``) or, when large, in a spool file (``path``)."""

    sop_instance_uid: str
    transfer_syntax: str
    size: int
    pieces: list[bytes | memoryview] | None = None
    path: Path | None = None

    def chunks(self, chunk: int = 1 << 20) -> Iterator[bytes | memoryview]:
        """The bytes, in pieces; a spool file is deleted once read (or when the reader stops)."""
        if self.path is None:
            yield from self.pieces or ()
        else:
            yield from read_then_delete(self.path, chunk)

    def discard(self) -> None:
        self.pieces = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)


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

    def retrieve_listed(self, study_instance_uid: str, wanted: Mapping[str, Collection[str]],
                        dest_dir: Path) -> Iterator[Path]:
        """Fetch the instances ``wanted`` lists (Series Instance UID -> SOP Instance UIDs) as Part 10 files
        in ``dest_dir``, yielding each path once complete, without querying the study's full tree.

        Only listed instances that the PACS holds in the series they are listed under (of this study)
        are yielded; the caller compares with what it asked for. A series may be fetched whole when that
        is cheaper, its unlisted instances are then dropped.

        An adapter may also offer ``stream_listed(study_instance_uid, wanted, spill_dir)``: the same
        instances as :class:`Received` (in memory unless large), for a RAD-69 answer that sends each one on
        as it arrives. Writing and reading back a file per instance was 40 % of the imaging source's CPU
        there. The DICOMweb adapter has it; the others' files are wrapped by the caller.
        """
        ...
