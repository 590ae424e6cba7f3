"""A directory of DICOM Part 10 files used as a PACS: the demo's embedded DICOM store, and a way to
publish studies exported to disk (e.g. from CDs) without a DICOM server.

The index (study -> series -> instances, with the study attributes) is built from the files' headers and
refreshed when files are added, changed or removed. Retrieval copies the files as they are, so the
instances are byte-identical to what the folder holds.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import date
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from imaging_source.pacs.base import Instance, Series, Study, sort_key

_STUDY_ATTRIBUTES = {
    "patient_id": "PatientID", "issuer_of_patient_id": "IssuerOfPatientID", "patient_name": "PatientName",
    "patient_birth_date": "PatientBirthDate", "patient_sex": "PatientSex", "accession_number": "AccessionNumber",
    "study_date": "StudyDate", "study_time": "StudyTime", "study_description": "StudyDescription",
    "referring_physician_name": "ReferringPhysicianName", "institution_name": "InstitutionName",
}


class FolderAdapter:
    """The files under ``root`` (any depth) as a PACS named ``name``."""

    def __init__(self, name: str, root: Path, *, ae_title: str = "") -> None:
        self.name = name
        self.ae_title = ae_title
        self.root = Path(root)
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[float, dict]] = {}  # path -> (mtime, header facts)

    # --- index -------------------------------------------------------------------------------------------

    def _scan(self) -> list[tuple[Path, dict]]:
        with self._lock:
            seen = {}
            for dirpath, _dirs, files in os.walk(self.root):
                for f in files:
                    path = Path(dirpath) / f
                    try:
                        mtime = path.stat().st_mtime
                    except FileNotFoundError:
                        continue
                    cached = self._files.get(path)
                    if cached is None or cached[0] != mtime:
                        facts = _facts(path)
                        if facts is None:
                            continue
                        cached = (mtime, facts)
                    seen[path] = cached
            self._files = seen
            return [(p, facts) for p, (_m, facts) in seen.items()]

    def _studies(self) -> dict[str, Study]:
        studies: dict[str, Study] = {}
        series_of: dict[tuple[str, str], Series] = {}
        for _path, f in self._scan():
            study = studies.get(f["study"])
            if study is None:
                study = studies[f["study"]] = Study(self.name, f["study"], **f["attributes"])
            key = (f["study"], f["series"])
            series = series_of.get(key)
            if series is None:
                series = series_of[key] = Series(f["series"], f["modality"], f["body_part"], f["series_number"],
                                                 f["series_description"])
                study.series.append(series)
                if f["modality"] and f["modality"] not in study.modalities_in_study:
                    study.modalities_in_study.append(f["modality"])
            series.instances.append(Instance(f["sop_class"], f["sop"], f["instance_number"]))
        for study in studies.values():
            study.series.sort(key=lambda s: sort_key(s.series_number, s.series_instance_uid))
            for s in study.series:
                s.instances.sort(key=lambda i: sort_key(i.instance_number, i.sop_instance_uid))
            study.number_of_instances = sum(len(s.instances) for s in study.series)
        return studies

    # --- PacsAdapter ------------------------------------------------------------------------------------

    def find_studies(self, *, patient_id: str | None = None, study_instance_uid: str | None = None,
                     since: date | None = None, until: date | None = None) -> list[Study]:
        lo = since.strftime("%Y%m%d") if since else ""
        hi = until.strftime("%Y%m%d") if until else ""
        out = []
        for study in self._studies().values():
            if patient_id is not None and study.patient_id != patient_id:
                continue
            if study_instance_uid is not None and study.study_instance_uid != study_instance_uid:
                continue
            if (lo and study.study_date < lo) or (hi and study.study_date > hi):
                continue
            study.series = []  # study level, as a C-FIND STUDY answers
            out.append(study)
        return sorted(out, key=lambda s: (s.study_date, s.study_instance_uid))

    def study(self, study_instance_uid: str) -> Study | None:
        return self._studies().get(study_instance_uid)

    def retrieve(self, study_instance_uid: str, dest_dir: Path, *, series_instance_uid: str | None = None,
                 sop_instance_uids: Sequence[str] | None = None) -> Iterator[Path]:
        wanted = set(sop_instance_uids) if sop_instance_uids is not None else None
        return self._copy(dest_dir, lambda f: f["study"] == study_instance_uid
                          and (series_instance_uid is None or f["series"] == series_instance_uid)
                          and (wanted is None or f["sop"] in wanted))

    def retrieve_listed(self, study_instance_uid: str, wanted: Mapping[str, Collection[str]],
                        dest_dir: Path) -> Iterator[Path]:
        listed = {series: set(uids) for series, uids in wanted.items()}
        return self._copy(dest_dir, lambda f: f["study"] == study_instance_uid
                          and f["sop"] in listed.get(f["series"], ()))

    def _copy(self, dest_dir: Path, pick: Callable[[dict], bool]) -> Iterator[Path]:
        """Copy the indexed files whose header facts ``pick`` accepts to ``dest_dir/<uid>.dcm``."""
        dest_dir.mkdir(parents=True, exist_ok=True)
        for path, f in self._scan():
            if pick(f):
                target = dest_dir / f"{f['sop']}.dcm"
                shutil.copyfile(path, target)
                yield target


def _facts(path: Path) -> dict | None:
    """What the index needs from one file's header; None for files that are not DICOM instances."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return None
    if "StudyInstanceUID" not in ds or "SOPInstanceUID" not in ds or "SeriesInstanceUID" not in ds:
        return None

    def text(keyword: str) -> str:
        value = ds.get(keyword, "")
        return str(value) if value is not None else ""

    def number(keyword: str) -> int | None:
        value = ds.get(keyword)
        try:
            return int(value) if value not in (None, "") else None
        except (TypeError, ValueError):
            return None

    return {
        "study": text("StudyInstanceUID"), "series": text("SeriesInstanceUID"), "sop": text("SOPInstanceUID"),
        "sop_class": text("SOPClassUID"), "modality": text("Modality"), "body_part": text("BodyPartExamined"),
        "series_number": number("SeriesNumber"), "series_description": text("SeriesDescription"),
        "instance_number": number("InstanceNumber"),
        "attributes": {field: text(keyword) for field, keyword in _STUDY_ATTRIBUTES.items()},
    }
