"""PACS adapters (DIMSE C-FIND/C-GET/C-MOVE and DICOMweb QIDO-RS/WADO-RS) against two real Orthanc PACS.

ORTHANC_A holds patient PAT-001 of HOSP_A (CT, 2 series, Explicit VR LE, loaded over REST) and a
distractor study of another patient; ORTHANC_B holds PAT-001 of HOSP_B (a CT and a Secondary Capture
series, Implicit VR LE, loaded by C-STORE). Every adapter kind is checked against what was stored.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.filereader import _read_file_meta_info, read_preamble
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

from imaging_source.pacs.base import PART10_HEAD, PacsAdapter, PacsError, part10_uids
from imaging_source.pacs.dicomweb import DicomWebAdapter, MultipartError, iter_multipart
from imaging_source.pacs.dimse import DimseAdapter
from imaging_source.pacs.folder import FolderAdapter
from imaging_source.pacs.samples import SECONDARY_CAPTURE, SOP_CLASS_BY_MODALITY, make_study, store_files
from tests.conftest import free_port
from tests.orthanc import SCU_AET, OrthancInstance, OrthancPair, orthanc_pair  # noqa: F401 (fixture)

PATIENT = "PAT-001"


@dataclass
class Loaded:
    pair: OrthancPair
    files: dict[str, list[Path]]  # "A" / "B" / "other" -> stored files
    study_uid: dict[str, str]

    def pacs(self, which: str) -> OrthancInstance:
        return self.pair.a if which in ("A", "other") else self.pair.b


@pytest.fixture(scope="module")
def loaded(orthanc_pair: OrthancPair, tmp_path_factory: pytest.TempPathFactory) -> Loaded:  # noqa: F811
    src = tmp_path_factory.mktemp("pacs-src")
    files = {
        "A": make_study(PATIENT, "HOSP_A", out_dir=src / "a", study_date="20240115", body_part="CHEST",
                        institution="Hospital A"),
        "B": make_study(PATIENT, "HOSP_B", out_dir=src / "b", modality=["CT", "OT"], study_date="20230301",
                        body_part="HEAD", institution="Hospital B", transfer_syntax=ImplicitVRLittleEndian,
                        study_description="CT HEAD"),
        "other": make_study("PAT-999", "HOSP_A", out_dir=src / "o", series=1, instances_per_series=2,
                            study_date="20220601", patient_name="ROE^RICHARD"),
    }
    store_files(files["A"] + files["other"], http_url=orthanc_pair.a.http_url)
    store_files(files["B"], dicom=orthanc_pair.b.dicom, calling_aet=SCU_AET)
    uids = {k: pydicom.dcmread(v[0], stop_before_pixels=True).StudyInstanceUID for k, v in files.items()}
    return Loaded(orthanc_pair, files, uids)


def make_adapter(kind: str, pacs: OrthancInstance, pair: OrthancPair, **kw: object) -> Any:
    if kind == "dicomweb":
        return DicomWebAdapter(pacs.name, pacs.dicomweb_url, ae_title=pacs.aet, timeout=10)
    dimse: dict[str, object] = {"host": pacs.host, "port": pacs.dicom_port, "called_aet": pacs.aet,
                                "calling_aet": SCU_AET, "timeout": 10}
    if kind == "dimse-move":
        dimse.update(use_c_get=False, move_destination=pair.move_destination, move_host="127.0.0.1")
    dimse.update(kw)
    return DimseAdapter(pacs.name, **dimse)  # type: ignore[arg-type]


def stored(files: list[Path]) -> dict[str, pydicom.Dataset]:
    return {ds.SOPInstanceUID: ds for ds in (pydicom.dcmread(f) for f in files)}


def split_part10(data: bytes) -> tuple[pydicom.Dataset, bytes]:
    """(file meta, data set bytes) of a Part 10 file."""
    f = io.BytesIO(data)
    read_preamble(f, False)
    meta = _read_file_meta_info(f)
    return meta, data[f.tell():]


# ---------------------------------------------------------------------------------------------------
# Query

QUERY_KINDS = ["dimse", "dicomweb"]
RETRIEVE_KINDS = ["dimse-get", "dimse-move", "dicomweb"]


@pytest.mark.parametrize("kind", QUERY_KINDS)
def test_find_by_patient_both_pacs(kind: str, loaded: Loaded) -> None:
    for which, issuer, day, inst in (("A", "HOSP_A", "20240115", "Hospital A"), ("B", "HOSP_B", "20230301", "Hospital B")):
        pacs = loaded.pacs(which)
        found = make_adapter(kind, pacs, loaded.pair).find_studies(patient_id=PATIENT)
        assert [s.study_instance_uid for s in found] == [loaded.study_uid[which]]
        s = found[0]
        ref = pydicom.dcmread(loaded.files[which][0], stop_before_pixels=True)
        assert s.pacs == pacs.name and s.series == []
        assert (s.patient_id, s.issuer_of_patient_id, s.patient_name) == (PATIENT, issuer, "DOE^JANE")
        assert (s.study_date, s.accession_number, s.institution_name) == (day, ref.AccessionNumber, inst)
        assert (s.patient_birth_date, s.patient_sex, s.study_time) == ("19700101", "F", "101500")
        assert s.study_description == ref.StudyDescription
        assert s.referring_physician_name == "HOUSE^GREGORY"
        assert s.number_of_instances == 6
        assert sorted(s.modalities_in_study) == (["CT"] if which == "A" else ["CT", "OT"])
    assert make_adapter(kind, loaded.pair.a, loaded.pair).find_studies(patient_id="NO-SUCH-PATIENT") == []


@pytest.mark.parametrize("kind", QUERY_KINDS)
def test_find_by_date_range(kind: str, loaded: Loaded) -> None:
    a = make_adapter(kind, loaded.pair.a, loaded.pair)

    def uids(**kw: Any) -> set[str]:
        return {s.study_instance_uid for s in a.find_studies(**kw)}

    assert uids() == {loaded.study_uid["A"], loaded.study_uid["other"]}
    assert uids(since=date(2024, 1, 1)) == {loaded.study_uid["A"]}
    assert uids(until=date(2023, 12, 31)) == {loaded.study_uid["other"]}
    assert uids(since=date(2024, 1, 15), until=date(2024, 1, 15)) == {loaded.study_uid["A"]}  # inclusive
    assert uids(since=date(2022, 6, 2), until=date(2024, 1, 14)) == set()
    # date and patient together
    b = make_adapter(kind, loaded.pair.b, loaded.pair)
    assert [s.study_instance_uid for s in b.find_studies(patient_id=PATIENT, since=date(2023, 1, 1),
                                                         until=date(2023, 12, 31))] == [loaded.study_uid["B"]]
    assert b.find_studies(patient_id=PATIENT, since=date(2024, 1, 1)) == []


@pytest.mark.parametrize("kind", QUERY_KINDS)
def test_find_by_study_uid(kind: str, loaded: Loaded) -> None:
    a = make_adapter(kind, loaded.pair.a, loaded.pair)
    found = a.find_studies(study_instance_uid=loaded.study_uid["other"])
    assert [(s.study_instance_uid, s.patient_id, s.patient_name) for s in found] == [
        (loaded.study_uid["other"], "PAT-999", "ROE^RICHARD")]
    assert a.find_studies(study_instance_uid=loaded.study_uid["B"]) == []  # held by the other PACS
    with pytest.raises(ValueError, match="not a DICOM UID"):
        a.find_studies(study_instance_uid="1.2.*")


@pytest.mark.parametrize("kind", QUERY_KINDS)
def test_study_tree_matches_what_was_stored(kind: str, loaded: Loaded) -> None:
    for which in ("A", "B"):
        study = make_adapter(kind, loaded.pacs(which), loaded.pair).study(loaded.study_uid[which])
        assert study is not None
        assert study.study_instance_uid == loaded.study_uid[which] and study.patient_id == PATIENT
        refs = list(stored(loaded.files[which]).values())
        expected: dict[str, list[pydicom.Dataset]] = {}
        for ds in refs:
            expected.setdefault(ds.SeriesInstanceUID, []).append(ds)
        assert [s.series_instance_uid for s in study.series] == sorted(
            expected, key=lambda u: expected[u][0].SeriesNumber)
        for series in study.series:
            ref = sorted(expected[series.series_instance_uid], key=lambda d: d.InstanceNumber)
            assert series.modality == ref[0].Modality
            assert series.body_part_examined == ref[0].BodyPartExamined
            assert series.series_number == ref[0].SeriesNumber
            assert series.series_description == ref[0].SeriesDescription
            assert [(i.sop_class_uid, i.sop_instance_uid, i.instance_number) for i in series.instances] == [
                (d.SOPClassUID, d.SOPInstanceUID, d.InstanceNumber) for d in ref]
        assert len(list(study.instances())) == 6
    assert study is not None
    classes = {i.sop_class_uid for _, i in study.instances()}  # B: CT + Secondary Capture
    assert classes == {SOP_CLASS_BY_MODALITY["CT"], SECONDARY_CAPTURE}


@pytest.mark.parametrize("kind", QUERY_KINDS)
def test_unknown_study(kind: str, loaded: Loaded) -> None:
    a = make_adapter(kind, loaded.pair.a, loaded.pair)
    assert a.study("1.2.3.4.5.6.7.8.9") is None
    assert a.study(loaded.study_uid["B"]) is None


# ---------------------------------------------------------------------------------------------------
# Retrieve


def check_retrieved(kind: str, pacs: OrthancInstance, paths: list[Path], expected_uids: set[str],
                    dest: Path) -> None:
    """Files arrived once each, are valid DICOM named by SOP Instance UID, and are the stored objects."""
    assert len(paths) == len(set(paths))
    assert {p.name for p in paths} == {f"{u}.dcm" for u in expected_uids}
    assert all(p.parent == dest for p in paths)
    assert sorted(x.name for x in dest.iterdir()) == sorted(p.name for p in paths)  # no temp files left
    for p in paths:
        data = p.read_bytes()
        ds = pydicom.dcmread(p)
        assert f"{ds.SOPInstanceUID}.dcm" == p.name
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        original = pacs.instance_file(ds.SOPInstanceUID)
        if kind == "dicomweb":
            assert data == original  # WADO-RS with transfer-syntax=*: the stored file, byte for byte
        else:
            # DIMSE carries the data set, not the file: the meta is ours, the data set bytes are the stored
            # ones in the stored transfer syntax (nothing decoded and re-encoded).
            meta, body = split_part10(data)
            ometa, obody = split_part10(original)
            assert meta.TransferSyntaxUID == ometa.TransferSyntaxUID
            assert body == obody
            ref = pydicom.dcmread(io.BytesIO(original))
            assert ds == ref  # element by element
            assert ds.PixelData == ref.PixelData and len(ds.PixelData) == 64 * 64 * 2


@pytest.mark.parametrize("kind", RETRIEVE_KINDS)
def test_retrieve_whole_study(kind: str, loaded: Loaded, tmp_path: Path) -> None:
    for which, ts in (("A", ExplicitVRLittleEndian), ("B", ImplicitVRLittleEndian)):
        pacs = loaded.pacs(which)
        dest = tmp_path / which
        paths = list(make_adapter(kind, pacs, loaded.pair).retrieve(loaded.study_uid[which], dest))
        check_retrieved(kind, pacs, paths, set(stored(loaded.files[which])), dest)
        assert {pydicom.dcmread(p).file_meta.TransferSyntaxUID for p in paths} == {ts}


@pytest.mark.parametrize("kind", RETRIEVE_KINDS)
def test_retrieve_one_series_and_listed_instances(kind: str, loaded: Loaded, tmp_path: Path) -> None:
    pacs = loaded.pair.b
    refs = stored(loaded.files["B"])
    by_series: dict[str, list[str]] = {}
    for uid, ds in refs.items():
        by_series.setdefault(ds.SeriesInstanceUID, []).append(uid)
    series_uid, series_members = min(by_series.items())
    adapter = make_adapter(kind, pacs, loaded.pair)

    paths = list(adapter.retrieve(loaded.study_uid["B"], tmp_path / "s", series_instance_uid=series_uid))
    check_retrieved(kind, pacs, paths, set(series_members), tmp_path / "s")

    # One instance of each series (two SOP classes), plus one the PACS does not hold: not yielded.
    listed = [uids[0] for uids in by_series.values()]
    paths = list(adapter.retrieve(loaded.study_uid["B"], tmp_path / "l",
                                  sop_instance_uids=[*listed, "1.2.3.4.5.6.7"]))
    check_retrieved(kind, pacs, paths, set(listed), tmp_path / "l")

    # listed instances restricted to a series
    paths = list(adapter.retrieve(loaded.study_uid["B"], tmp_path / "sl", series_instance_uid=series_uid,
                                  sop_instance_uids=listed))
    check_retrieved(kind, pacs, paths, set(listed) & set(series_members), tmp_path / "sl")


@pytest.mark.parametrize("kind", RETRIEVE_KINDS)
def test_retrieve_unknown_is_empty(kind: str, loaded: Loaded, tmp_path: Path) -> None:
    adapter = make_adapter(kind, loaded.pair.a, loaded.pair)
    assert list(adapter.retrieve("1.2.3.4.5.6.7.8.9", tmp_path)) == []
    assert list(adapter.retrieve(loaded.study_uid["A"], tmp_path, series_instance_uid="1.2.3.4")) == []
    assert list(adapter.retrieve(loaded.study_uid["A"], tmp_path, sop_instance_uids=["1.2.3.4"])) == []
    with pytest.raises(ValueError, match="SOPInstanceUID"):
        list(adapter.retrieve(loaded.study_uid["A"], tmp_path, sop_instance_uids=["../etc"]))


@pytest.mark.parametrize("spill", [False, True])
def test_stream_listed_delivers_the_stored_files(spill: bool, loaded: Loaded, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """DICOMweb stream_listed (RAD-69's streamed answer) delivers the same instances as retrieve_listed, byte
    for byte as Orthanc stores them, with their UIDs from the File Meta Information: in memory, or past
    SPILL_BYTES in a spool file that goes once read."""
    from imaging_source.pacs import dicomweb

    if spill:
        monkeypatch.setattr(dicomweb, "SPILL_BYTES", 1024)
    pacs = loaded.pair.b
    by_series: dict[str, list[str]] = {}
    for uid, ds in stored(loaded.files["B"]).items():
        by_series.setdefault(ds.SeriesInstanceUID, []).append(uid)
    (s1, m1), (s2, m2) = sorted((k, sorted(v)) for k, v in by_series.items())
    adapter = make_adapter("dicomweb", pacs, loaded.pair)
    spool = tmp_path / "spool"
    got = list(adapter.stream_listed(loaded.study_uid["B"], {s1: [*m1, m2[0]], s2: [m2[1]]}, spool))
    assert sorted(g.sop_instance_uid for g in got) == sorted([*m1, m2[1]])
    assert all((g.path is not None) == spill and (g.pieces is None) == spill for g in got)
    for g in got:
        data = b"".join(g.chunks())
        assert data == pacs.instance_file(g.sop_instance_uid) and g.size == len(data)
        assert g.transfer_syntax == str(ImplicitVRLittleEndian)
    assert not any(spool.iterdir())  # spilled files are deleted once read


@pytest.mark.parametrize("kind", [*RETRIEVE_KINDS, "folder"])
def test_retrieve_listed_yields_what_each_series_holds(kind: str, loaded: Loaded, tmp_path: Path) -> None:
    """retrieve_listed (RAD-69's fetch, no tree query first) yields exactly the listed instances that
    are in the series they are listed under: not an unknown instance, not one of another series (a DIMSE
    C-GET finds an instance by its own UID), nothing of an unknown series, no unlisted extra of a series
    fetched whole."""
    pacs = loaded.pair.b
    by_series: dict[str, list[str]] = {}
    for uid, ds in stored(loaded.files["B"]).items():
        by_series.setdefault(ds.SeriesInstanceUID, []).append(uid)
    (s1, m1), (s2, m2) = sorted((k, sorted(v)) for k, v in by_series.items())
    source = loaded.files["B"][0].parent
    adapter = FolderAdapter("folder", source) if kind == "folder" else make_adapter(kind, pacs, loaded.pair)
    cases = [
        # s1 listed whole, plus an unknown instance and one of s2: the whole series comes, nothing else
        ({s1: [*m1, "1.2.3.4.5.6.7", m2[0]]}, set(m1)),
        # most of s1 (fetched whole, its unlisted instance dropped); one instance of s2 (instance level)
        ({s1: m1[:2], s2: [m2[1]]}, {*m1[:2], m2[1]}),
        # instances listed under the wrong series, and under a series the study does not have
        ({s2: [m1[0]], "1.2.3.4.9": [m2[2]]}, set()),
    ]
    for n, (wanted, expected) in enumerate(cases):
        dest = tmp_path / str(n)
        paths = list(adapter.retrieve_listed(loaded.study_uid["B"], wanted, dest))
        if kind == "folder":  # copies of the folder's files
            assert sorted(p.name for p in paths) == sorted(f"{u}.dcm" for u in expected)
            assert all(p.read_bytes() == (source / p.name).read_bytes() for p in paths)
        else:
            check_retrieved(kind, pacs, paths, expected, dest)
    assert list(adapter.retrieve_listed("1.2.3.4.5.6.7.8.9", {s1: m1}, tmp_path / "none")) == []


def test_c_get_groups_sop_classes_over_associations(loaded: Loaded, tmp_path: Path) -> None:
    """With room for one SOP class per association (1 + 13 contexts), B's CT and SC instances come
    over two associations, still in their stored encoding."""
    pacs = loaded.pair.b
    adapter = make_adapter("dimse-get", pacs, loaded.pair, max_contexts=14)
    paths = list(adapter.retrieve(loaded.study_uid["B"], tmp_path))
    check_retrieved("dimse-get", pacs, paths, set(stored(loaded.files["B"])), tmp_path)


@pytest.mark.parametrize("kind", RETRIEVE_KINDS)
def test_closing_retrieve_early_stops_it(kind: str, loaded: Loaded, tmp_path: Path) -> None:
    adapter = make_adapter(kind, loaded.pair.a, loaded.pair)
    gen = adapter.retrieve(loaded.study_uid["A"], tmp_path / "early")
    first = next(gen)
    assert first.is_file()
    t = time.monotonic()
    gen.close()
    assert time.monotonic() - t < 5  # the association is aborted, not waited out
    # the adapter (and, for C-MOVE, its Storage SCP port) is usable again
    assert len(list(adapter.retrieve(loaded.study_uid["A"], tmp_path / "again"))) == 6


# ---------------------------------------------------------------------------------------------------
# Errors


def test_pacs_down_gives_clear_errors(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    dimse = DimseAdapter("DOWN", host="127.0.0.1", port=port, called_aet="DOWN", timeout=3)
    with pytest.raises(PacsError, match=rf"cannot connect to PACS 'DOWN' \(DOWN at 127.0.0.1:{port}\)"):
        dimse.find_studies(patient_id=PATIENT)
    with pytest.raises(PacsError, match="cannot connect"):
        list(dimse.retrieve("1.2.3", tmp_path))
    web = DicomWebAdapter("DOWN", f"http://127.0.0.1:{port}/dicom-web", timeout=3)
    with pytest.raises(PacsError, match=rf"cannot connect to DICOMweb PACS 'DOWN' at http://127.0.0.1:{port}"):
        web.find_studies(patient_id=PATIENT)
    with pytest.raises(PacsError, match="cannot connect"):
        web.study("1.2.3")
    with pytest.raises(PacsError, match="WADO-RS: cannot connect"):
        list(web.retrieve("1.2.3", tmp_path))


def test_association_rejected_and_failure_statuses(loaded: Loaded, tmp_path: Path) -> None:
    pacs = loaded.pair.a
    wrong = make_adapter("dimse-get", pacs, loaded.pair, called_aet="NOT_ORTHANC")
    with pytest.raises(PacsError, match="rejected the association from XDSI_IDS: .*Called AE title not recognised"):
        wrong.find_studies()
    # C-MOVE to a destination the PACS does not know: the failure status is reported
    unknown = make_adapter("dimse-move", pacs, loaded.pair, move_destination=("NOBODY", free_port()))
    with pytest.raises(PacsError, match=r"C-MOVE to NOBODY on PACS 'ORTHANC_A' .* failed with status 0x[A-C]"):
        list(unknown.retrieve(loaded.study_uid["A"], tmp_path))
    # C-FIND failure status (an invalid Query/Retrieve Level)
    from imaging_source.pacs.dimse import FIND_MODEL, _identifier

    adapter = make_adapter("dimse-get", pacs, loaded.pair)
    with adapter._association("C-FIND", [(FIND_MODEL, [ExplicitVRLittleEndian])]) as assoc, \
            pytest.raises(PacsError, match=r"C-FIND FOO on PACS 'ORTHANC_A' .* failed with status 0xC"):
        list(adapter._find(assoc, _identifier("FOO", ["PatientID"])))


def test_not_a_dicomweb_server_is_reported(loaded: Loaded) -> None:
    # Orthanc's own REST root: /studies with limit/offset is a 400 there; without, a list of ids
    web = DicomWebAdapter("A", loaded.pair.a.http_url, timeout=5)
    with pytest.raises(PacsError, match=r"QIDO-RS http://127.0.0.1:\d+/studies on PACS 'A': HTTP 400 .*since"):
        web.find_studies()


# ---------------------------------------------------------------------------------------------------
# Samples and the multipart splitter (no PACS needed)


def test_both_adapters_are_pacs_adapters() -> None:
    adapters: list[PacsAdapter] = [  # checked by mypy against the Protocol, by the asserts at run time
        DimseAdapter("D", host="127.0.0.1", port=104, called_aet="PACS"),
        DicomWebAdapter("W", "http://127.0.0.1:1/dicom-web", ae_title="PACS"),
    ]
    for a in adapters:
        assert a.ae_title == "PACS" and callable(a.find_studies) and callable(a.study) and callable(a.retrieve)
    with pytest.raises(ValueError, match="move_destination"):
        DimseAdapter("D", host="127.0.0.1", port=104, called_aet="PACS", use_c_get=False)



def test_make_study_writes_valid_part10(tmp_path: Path) -> None:
    files = make_study("P9", "ISSUER", out_dir=tmp_path, modality=["MR", "OT"], series=2,
                       instances_per_series=2, study_date=date(2021, 5, 4), accession_number="ACC1")
    assert len(files) == 4
    sets = [pydicom.dcmread(f) for f in files]
    assert len({d.StudyInstanceUID for d in sets}) == 1 and len({d.SeriesInstanceUID for d in sets}) == 2
    assert {d.SOPClassUID for d in sets} == {SOP_CLASS_BY_MODALITY["MR"], SECONDARY_CAPTURE}
    for d in sets:
        assert d.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert (d.PatientID, d.IssuerOfPatientID, d.StudyDate, d.AccessionNumber) == ("P9", "ISSUER", "20210504", "ACC1")
        assert d.BodyPartExamined and d.InstitutionName
        assert (d.Rows, d.Columns, d.BitsAllocated, len(d.PixelData)) == (64, 64, 16, 64 * 64 * 2)
    no_pixels = make_study("P9", "ISSUER", out_dir=tmp_path / "np", series=1, instances_per_series=1, pixel=False)
    assert "PixelData" not in pydicom.dcmread(no_pixels[0])


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _parts(events: list[tuple[str, object]]) -> list[tuple[dict, bytes]]:
    out: list[tuple[dict, bytes]] = []
    for kind, value in events:
        if kind == "headers":
            out.append((value, b""))  # type: ignore[arg-type]
        elif kind == "data":
            out[-1] = (out[-1][0], out[-1][1] + value)  # type: ignore[operator]
    return out


@pytest.mark.parametrize("ts", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_part10_uids_reads_the_file_meta(ts: str, tmp_path: Path) -> None:
    for path in make_study("P", "H", out_dir=tmp_path, series=1, instances_per_series=2, transfer_syntax=ts):
        data = path.read_bytes()
        meta = pydicom.dcmread(path).file_meta
        assert part10_uids(data) == (meta.MediaStorageSOPInstanceUID, meta.TransferSyntaxUID) == \
            part10_uids(data[:PART10_HEAD])
        assert part10_uids(data[:140]) is None  # cut inside the meta
        assert part10_uids(data[128:]) is None  # no preamble: not Part 10


# 12-80: reads about as long as the separator, so one falls across every read boundary in turn (the
# splitter scans a read on its own unless a separator, or the CR before it, may straddle the boundary).
@pytest.mark.parametrize("size", [1, 2, 3, 7, *range(12, 81), 10_000])
@pytest.mark.parametrize("nl", [b"\r\n", b"\n"])
def test_iter_multipart_any_chunking(size: int, nl: bytes) -> None:
    b = "b0undary:+="
    p1 = b"\x00DICM\r\n--b0undar\r\n" + bytes(range(256))  # looks like a boundary, but is not one
    p2 = b"second" + nl
    body = (b"preamble" + nl + b"--" + b.encode() + nl + b"Content-Type: application/dicom" + nl + nl + p1 + nl
            + b"--" + b.encode() + b"  " + nl + b"content-type: application/dicom" + nl + b"X-A: 1" + nl + nl + p2
            + nl + b"--" + b.encode() + b"--" + nl + b"epilogue")
    events = list(iter_multipart(_chunks(body, size), b))
    assert [k for k, _ in events if k != "data"] == ["headers", "end", "headers", "end"]
    parts = _parts(events)
    assert [p for _, p in parts] == [p1, p2]
    assert parts[1][0] == {"content-type": "application/dicom", "x-a": "1"}


def test_iter_multipart_empty_and_truncated() -> None:
    assert list(iter_multipart([b"--B--\r\n"], "B")) == []
    with pytest.raises(MultipartError, match="truncated"):
        list(iter_multipart(_chunks(b"--B\r\n\r\nabcdef", 2), "B"))
    with pytest.raises(MultipartError, match="closing boundary"):
        list(iter_multipart([b"no boundary here"], "B"))
