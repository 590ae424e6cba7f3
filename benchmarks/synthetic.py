"""Synthetic XDS-I.b registry: bulk-load N KOS DocumentEntries for P patients, bypassing SOAP.

Each entry is what one RAD-68/ITI-42 submission of a KOS manifest leaves in the registry: a DocumentEntry
(``application/dicom``, KOS formatCode, modality + anatomic-region eventCodes, referenceIdList with the
Study Instance UID and the accession number, one author), its SubmissionSet and the SubmissionSet ->
DocumentEntry HasMember Association, all Approved.

How it is fast
--------------
One template per object kind is built exactly the way the registry's ITI-42 path builds stored rows:
model object -> :mod:`xdsi.transform.ebrim_write` -> registry-set attributes (status, lid, VersionInfo, as
``registry.register`` sets them) -> :func:`xdsi.ebxml.serialize.fragment` (the stored XML) ->
:func:`registry.storage.objects.row_for` (columns and multi-valued attributes). The varying values are
model values set to sentinels ``zz<name>zz``; the template text then becomes a ``%``-format string, so an
entry costs a few dict substitutions instead of building and serializing lxml trees. Rows go in with
``executemany`` (SQLite, journal off and ``synchronous=OFF`` while loading, restored afterwards) or ``COPY``
(PostgreSQL), in transactions of ``chunk`` entries, with the secondary indexes dropped during the load and
rebuilt at the end.

Distribution (documented in docs/performance.md)
------------------------------------------------
* ``max(1, patients // 100)`` *target patients* (every ``patients // n``-th patient id, see
  :func:`target_patient_ids`) have exactly :data:`TARGET_ENTRIES` (50) entries: the query benchmark's target.
* Every other patient has at least one entry; the rest is spread with log-normal weights (sigma 1): a
  heavy tail of frequent patients, as in real imaging archives.
* Entries are inserted in shuffled patient order with creation times rising over ten years
  (2016-01-01 .. 2025-12-31), so one patient's rows are scattered over the table as in a real registry
  (the query benchmark does not profit from unrealistic locality).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import operator
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from xml.sax.saxutils import escape

from lxml import etree
from sqlalchemy import Engine, func, select

from registry.storage import schema as s
from registry.register import set_version_info
from registry.storage.engine import make_engine
from registry.storage.objects import row_for
from xdsi.ebxml.serialize import fragment
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Association, Author, Code, DocumentEntry, SubmissionSet
from xdsi.transform.ebrim_read import SLOT_REFERENCE_ID_LIST, read_registry_object
from xdsi.transform.ebrim_write import write_association, write_document_entry, write_submission_set

#: Entries of each target patient (the FindDocuments benchmark's result size).
TARGET_ENTRIES = 50
#: Affinity domain of the synthetic patient ids.
DOMAIN_OID = "1.3.6.1.4.1.21367.13.20.1000"
_UID_ROOT = "1.2.826.0.1.3680043.10.9999"  # study / KOS / submission UIDs: <root>.<kind>.<seed>.<n>
_LOCAL_MRN_OID = "1.3.6.1.4.1.21367.13.20.2000"
_ACCESSION_OID = "1.3.6.1.4.1.21367.13.20.3000"
_KOS_FORMAT = Code("1.2.840.10008.5.1.4.1.1.88.59", "1.2.840.10008.2.6.1", "Key Object Selection Document")
_STUDY_UID_TYPE = "urn:ihe:iti:xds:2013:studyInstanceUID"
_ACCESSION_TYPE = "urn:ihe:iti:xds:2013:accession"
_T0 = int(datetime(2016, 1, 1, tzinfo=timezone.utc).timestamp())
_SPAN = int(datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()) - _T0  # ten years

# (code, scheme, display, weight): small varied sets, skewed like a real radiology workload.
_DCM = "1.2.840.10008.2.16.4"
_SCT = "2.16.840.1.113883.6.96"
_LOINC = "2.16.840.1.113883.6.1"
MODALITIES = [("CT", _DCM, "Computed Tomography", 25), ("MR", _DCM, "Magnetic Resonance", 15),
              ("CR", _DCM, "Computed Radiography", 18), ("DX", _DCM, "Digital Radiography", 15),
              ("US", _DCM, "Ultrasound", 12), ("MG", _DCM, "Mammography", 6), ("NM", _DCM, "Nuclear Medicine", 3),
              ("PT", _DCM, "Positron emission tomography", 2), ("XA", _DCM, "X-Ray Angiography", 2),
              ("RF", _DCM, "Radio Fluoroscopy", 2)]
REGIONS = [("51185008", _SCT, "Chest", 30), ("69536005", _SCT, "Head", 15), ("818981001", _SCT, "Abdomen", 15),
           ("816092008", _SCT, "Pelvis", 8), ("421060004", _SCT, "Spine", 8), ("72696002", _SCT, "Knee", 6),
           ("16982005", _SCT, "Shoulder", 5), ("76752008", _SCT, "Breast", 6), ("80891009", _SCT, "Heart", 4),
           ("12738006", _SCT, "Brain", 3)]
CLASS_CODES = [("IMAGES", "1.3.6.1.4.1.19376.1.2.6.1", "Images", 95),
               ("REPORTS", "1.3.6.1.4.1.19376.1.2.6.1", "Reports", 5)]
TYPE_CODES = [("18748-4", _LOINC, "Diagnostic imaging study", 70), ("24627-2", _LOINC, "CT Chest", 8),
              ("24558-9", _LOINC, "CT Abdomen", 6), ("24590-2", _LOINC, "MR Brain", 6),
              ("36643-5", _LOINC, "XR Chest 2 Views", 10)]
PRACTICE_SETTINGS = [("309964003", _SCT, "Radiology department", 80), ("225728007", _SCT, "Accident and Emergency department", 10),
                     ("309915006", _SCT, "Cardiology department", 5), ("309927009", _SCT, "General medical department", 5)]
FACILITY_TYPES = [("22232009", _SCT, "Hospital", 70), ("35971002", _SCT, "Ambulatory care site", 25),
                  ("225728007", _SCT, "Accident and Emergency department", 5)]
CONFIDENTIALITY = [("N", "2.16.840.1.113883.5.25", "normal", 95), ("R", "2.16.840.1.113883.5.25", "restricted", 4),
                   ("V", "2.16.840.1.113883.5.25", "very restricted", 1)]
_CONTENT_TYPE = Code("18748-4", _LOINC, "Diagnostic imaging study")
_ROLES = ["Attending", "Resident", "Consultant"]
_SPECIALTIES = ["Radiology", "Nuclear Medicine", "Cardiology", "Interventional Radiology"]
_FAMILY = ["Smith", "Jones", "Garcia", "Muller", "Rossi", "Dubois", "Nowak", "Jansen", "Silva", "Kowalski",
           "Novak", "Larsen", "Moreau", "Fischer", "Romano", "Martin", "Bernard", "Weber", "Costa", "Horvat"]
_GIVEN = ["Anna", "Ben", "Clara", "David", "Eva", "Felix", "Grace", "Hugo", "Ines", "Jonas", "Karin", "Luca",
          "Maria", "Nils", "Olga", "Paul", "Rosa", "Sven", "Tara", "Victor"]
_SITES = ["North", "South", "East", "West", "Central", "Lakeside", "Riverside", "Hillcrest", "Harbour", "Valley"]

#: ``zz<name>zz``: a varying value in a template. Names are lower-case (row_for lower-cases the hash).
_SENTINEL = re.compile(r"zz([a-y0-9]+)zz")
_ID_ATTR = re.compile(r' id="urn:uuid:[0-9a-f-]{36}"')
#: Values that may contain XML-special characters (``&`` of CX/XCN/XON): the XML gets their ``_x`` variant.
_ESCAPED = ("pid", "spid", "person", "inst")
_TIME_COLUMNS = ("creation_time", "service_start_time", "service_stop_time", "submission_time")
RO_COLUMNS = ["pk"] + [c.name for c in s.registry_object.columns if c.name != "pk"]
OV_COLUMNS = ["object_pk", "attr", "value"]


def _s(name: str) -> str:
    return f"zz{name}zz"


def patient_id(index: int) -> str:
    """The CX patient id of synthetic patient ``index``."""
    return f"BP{index:07d}^^^&{DOMAIN_OID}&ISO"


def target_indexes(patients: int) -> list[int]:
    """Indexes of the patients that get exactly :data:`TARGET_ENTRIES` entries (1 %, at least one)."""
    n = max(1, patients // 100)
    stride = max(1, patients // n)
    return list(range(0, patients, stride))[:n]


def target_patient_ids(patients: int) -> list[str]:
    """Patient ids with exactly :data:`TARGET_ENTRIES` entries in a registry loaded with ``patients``."""
    return [patient_id(i) for i in target_indexes(patients)]


# --- templates ------------------------------------------------------------------------------------------


class _Fmt:
    """A ``%(name)s`` format turned positional: ``%s`` + an itemgetter (no per-placeholder key hashing;
    ~30 % faster on the 65-placeholder DocumentEntry)."""

    __slots__ = ("fmt", "get", "single")

    def __init__(self, named: str) -> None:
        keys = re.findall(r"%\((\w+)\)s", named)
        self.fmt = re.sub(r"%\((\w+)\)s", "%s", named)
        self.single = len(keys) == 1
        self.get = operator.itemgetter(*keys) if keys else (lambda _d: ())

    def __mod__(self, d: dict) -> str:
        return self.fmt % ((self.get(d),) if self.single else self.get(d))


@dataclass
class _Template:
    """One object kind: its stored-XML format and how to build its table rows from an entry dict."""

    xml: _Fmt
    base: list  # registry_object row (RO_COLUMNS order) with constants filled in
    varying: list[tuple[int, _Fmt | str, bool]]  # (column index, format or int key, is_format)
    values: list[tuple[str, _Fmt | str, bool]]  # object_value (attr, format or constant, is_format)

    def rows(self, d: dict, pk: int) -> tuple[tuple, list[tuple]]:
        row = self.base.copy()
        row[0] = pk
        for i, f, is_fmt in self.varying:
            row[i] = f % d if is_fmt else int(d[f])  # type: ignore[operator,index]
        row[-1] = self.xml % d
        return tuple(row), [(pk, a, f % d if is_fmt else f) for a, f, is_fmt in self.values]  # type: ignore[operator]


def _registry_attributes(el: etree._Element) -> None:
    """What the registry sets on every stored object (``registry.register._set_registry_attributes``):
    status Approved, lid = id, VersionInfo 1 after the Slots/Name/Description."""
    el.set("status", v.STATUS_APPROVED)
    el.set("lid", el.get("id"))
    set_version_info(el, 1)


def _compile(text: str, ids: dict[str, str], *, xml: bool) -> str:
    """Sentinels -> ``%(name)s`` (ids -> their id format); literal ``%`` doubled."""
    def sub(m: re.Match) -> str:
        name = m.group(1)
        if name in ids:
            return ids[name]
        return "%(" + name + ("_x" if xml and name in _ESCAPED else "") + ")s"
    return _SENTINEL.sub(sub, text.replace("%", "%%"))


def _template(obj, el: etree._Element, ids: dict[str, str], first_sub_id: int, prefix: str) -> _Template:  # type: ignore[no-untyped-def]
    _registry_attributes(el)
    stored = fragment(el)
    row, values = row_for(read_registry_object(el), stored)
    # Time sentinels went through dtm.sortable (zero padding); the loader's times are 14 digits already.
    for col in _TIME_COLUMNS:
        if row.get(col):
            row[col] = _SENTINEL.match(row[col]).group(0)  # type: ignore[union-attr]
    # Classification / ExternalIdentifier ids: unique per entry, derived from the entry number.
    counter = iter(range(first_sub_id, first_sub_id + 1000))
    stored = _ID_ATTR.sub(lambda _m: ' id="urn:uuid:%s-4%03x-8000-zznzz"' % (prefix, next(counter)), stored)
    xml = _Fmt(_compile(stored, ids, xml=True))
    base: list = [None] * len(RO_COLUMNS)
    varying: list[tuple[int, str, bool]] = []
    for i, col in enumerate(RO_COLUMNS):
        val = row.get(col)
        if col == "xml":
            continue  # the escaped-XML format above
        if col == "size" and isinstance(obj, DocumentEntry):
            varying.append((i, "bytes", False))  # an int column; row_for saw the sentinel, not digits
        elif isinstance(val, str) and _SENTINEL.search(val):
            varying.append((i, _Fmt(_compile(val, ids, xml=False)), True))
        else:
            base[i] = val
    assert RO_COLUMNS[-1] == "xml"
    vals = [(a, _Fmt(_compile(val, ids, xml=False)), True) if _SENTINEL.search(val) else (a, val, False)
            for a, val in values]
    return _Template(xml, base, varying, vals)


def _code(prefix: str) -> Code:
    return Code(_s(prefix + "c"), _s(prefix + "s"), _s(prefix + "d"))


def build_templates(prefix: str) -> tuple[_Template, _Template, _Template]:
    """Templates of the SubmissionSet, the KOS DocumentEntry and the HasMember Association.

    ``prefix`` (``xxxxxxxx-xxxx``) starts every id of the load: ``urn:uuid:<prefix>-4kkk-8000-<entry number>``
    (k = object within the entry), so ids are unique, valid UUID syntax, and cost nothing to make."""
    ids = {name: "urn:uuid:%s-4%03x-8000-%%(n)s" % (prefix, k) for k, name in enumerate(("ssid", "deid", "asid"))}
    de = DocumentEntry(
        id=_s("deid"), mime_type="application/dicom", unique_id=_s("uid"), patient_id=_s("pid"),
        title=_s("title"), hash=_s("hash"), size=_s("bytes"), creation_time=_s("ct"),
        service_start_time=_s("sst"), service_stop_time=_s("ssp"), language_code="en-US",
        repository_unique_id=_s("repo"), source_patient_id=_s("spid"),
        source_patient_info=[f"PID-3|{_s('spid')}", f"PID-5|{_s('pname')}", f"PID-7|{_s('dob')}",
                             f"PID-8|{_s('sex')}"],
        class_code=_code("cls"), format_code=_KOS_FORMAT, healthcare_facility_type_code=_code("fac"),
        practice_setting_code=_code("prac"), type_code=_code("typ"), confidentiality_codes=[_code("conf")],
        event_codes=[_code("mod"), _code("reg")],
        authors=[Author(person=_s("person"), institutions=[_s("inst")], roles=[_s("role")],
                        specialties=[_s("spec")])],
        reference_ids=[f"{_s('study')}^^^^{_STUDY_UID_TYPE}",
                       f"{_s('acc')}^^^&{_ACCESSION_OID}&ISO^{_ACCESSION_TYPE}"],
    )
    ss = SubmissionSet(
        id=_s("ssid"), unique_id=_s("ssuid"), source_id=_s("src"), patient_id=_s("pid"),
        submission_time=_s("subt"), content_type_code=_CONTENT_TYPE,
        authors=[Author(person=_s("person"), institutions=[_s("inst")], roles=[_s("role")],
                        specialties=[_s("spec")])],
    )
    assoc = Association(id=_s("asid"), association_type=v.HAS_MEMBER, source_object=_s("ssid"),
                        target_object=_s("deid"), submission_set_status=v.SUBMISSION_SET_STATUS_ORIGINAL)
    assert SLOT_REFERENCE_ID_LIST  # the DocumentEntry template carries the referenceIdList slot
    return (_template(ss, write_submission_set(ss), ids, 0x40, prefix),
            _template(de, write_document_entry(de), ids, 0x10, prefix),
            _template(assoc, write_association(assoc), ids, 0x70, prefix))


# --- the population ---------------------------------------------------------------------------------------


def entries_per_patient(entries: int, patients: int, rng: random.Random) -> list[int]:
    """Entries of each patient: targets get :data:`TARGET_ENTRIES`, the others >= 1 with a log-normal tail."""
    targets = set(target_indexes(patients))
    others = [i for i in range(patients) if i not in targets]
    rest = entries - TARGET_ENTRIES * len(targets) - len(others)
    if rest < 0:
        raise ValueError(f"{entries} entries are too few for {patients} patients: need at least "
                         f"{TARGET_ENTRIES * len(targets) + len(others)}")
    counts = [TARGET_ENTRIES if i in targets else 1 for i in range(patients)]
    if others and rest:
        weights = [rng.lognormvariate(0.0, 1.0) for _ in others]
        for idx, n in Counter(rng.choices(others, weights=weights, k=rest)).items():
            counts[idx] += n
    elif rest:
        raise ValueError("every patient is a target patient: give more patients or fewer entries")
    return counts


def _pick(rng: random.Random, pool: list, k: int) -> list:
    return rng.choices(pool, weights=[p[-1] for p in pool], k=k)


@dataclass
class _Population:
    """Per-patient values and the pools per-entry values are drawn from."""

    pid: list[tuple[str, str]]
    spid: list[tuple[str, str]]
    pname: list[str]
    dob: list[str]
    sex: list[str]
    persons: list[tuple[str, str]]
    insts: list[tuple[str, str]]
    sources: list[str]
    repos: list[str]


def _population(patients: int, rng: random.Random) -> _Population:
    def both(x: str) -> tuple[str, str]:
        return x, escape(x)

    pids = [both(patient_id(i)) for i in range(patients)]
    spids = [both(f"MRN{rng.randrange(10**8):08d}^^^&{_LOCAL_MRN_OID}&ISO") for _ in range(patients)]
    pname = [f"{rng.choice(_FAMILY)}^{rng.choice(_GIVEN)}^^^" for _ in range(patients)]
    dob = [f"{rng.randint(1930, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}" for _ in range(patients)]
    sex = [rng.choice("MF") for _ in range(patients)]
    insts = [both(f"{site} Hospital Radiology^^^^^&1.3.6.1.4.1.21367.13.30.{k}&ISO^^^^1.3.6.1.4.1.21367.13.30.{k}.1")
             for k, site in enumerate(_SITES)]
    persons = [both(f"RAD{k:04d}^{rng.choice(_FAMILY)}^{rng.choice(_GIVEN)}^^^Dr^^^&1.3.6.1.4.1.21367.13.31&ISO")
               for k in range(200)]
    sources = [f"1.3.6.1.4.1.21367.13.40.{k}" for k in range(1, 6)]
    repos = [f"1.3.6.1.4.1.21367.13.41.{k}" for k in range(1, 4)]
    return _Population(pids, spids, pname, dob, sex, persons, insts, sources, repos)


_DAYS: dict[int, str] = {}


def _dtm(epoch: int) -> str:
    """14-digit UTC DTM; the date part is cached (strftime per value was a fifth of the load's CPU)."""
    day, sec = divmod(epoch, 86400)
    prefix = _DAYS.get(day)
    if prefix is None:
        prefix = _DAYS[day] = time.strftime("%Y%m%d", time.gmtime(day * 86400))
    h, rem = divmod(sec, 3600)
    return "%s%02d%02d%02d" % (prefix, h, rem // 60, rem % 60)


def _entries(order: list[int], pop: _Population, seed: int, rng: random.Random, start: int, stop: int,
             total: int) -> Iterator[dict]:
    """The value dicts of entries ``start..stop`` (numbered within the load)."""
    k = stop - start
    mods, regs = _pick(rng, MODALITIES, k), _pick(rng, REGIONS, k)
    clss, typs = _pick(rng, CLASS_CODES, k), _pick(rng, TYPE_CODES, k)
    pracs, facs, confs = _pick(rng, PRACTICE_SETTINGS, k), _pick(rng, FACILITY_TYPES, k), _pick(rng, CONFIDENTIALITY, k)
    rand, randrange = rng.random, rng.randrange
    step = _SPAN / max(total, 1)
    for j in range(k):
        n = start + j
        p = order[n]
        # Creation times rise with the insertion order, jittered within one step.
        sst = _T0 + int((n + rand()) * step)
        stop_ = sst + 300 + randrange(3300)
        ct = stop_ + 60 + randrange(7200)
        mod, reg, cls, typ = mods[j], regs[j], clss[j], typs[j]
        prac, fac, conf = pracs[j], facs[j], confs[j]
        person, inst = pop.persons[randrange(200)], pop.insts[randrange(len(pop.insts))]
        uid = f"{_UID_ROOT}.2.{seed}.{n}"
        pid, spid = pop.pid[p], pop.spid[p]
        yield {
            "n": "%012x" % n,
            "pid": pid[0], "pid_x": pid[1], "spid": spid[0], "spid_x": spid[1],
            "pname": pop.pname[p], "dob": pop.dob[p], "sex": pop.sex[p],
            "uid": uid, "ssuid": f"{_UID_ROOT}.3.{seed}.{n}", "study": f"{_UID_ROOT}.1.{seed}.{n}",
            "acc": f"A{seed}{n:09d}",
            "title": f"{mod[0]} {reg[2]} key images",
            "hash": hashlib.sha1(uid.encode()).hexdigest(), "bytes": str(2000 + randrange(60000)),
            "ct": _dtm(ct), "sst": _dtm(sst), "ssp": _dtm(stop_), "subt": _dtm(ct + 5 + randrange(60)),
            "repo": pop.repos[n % len(pop.repos)], "src": pop.sources[n % len(pop.sources)],
            "modc": mod[0], "mods": mod[1], "modd": mod[2], "regc": reg[0], "regs": reg[1], "regd": reg[2],
            "clsc": cls[0], "clss": cls[1], "clsd": cls[2], "typc": typ[0], "typs": typ[1], "typd": typ[2],
            "pracc": prac[0], "pracs": prac[1], "pracd": prac[2], "facc": fac[0], "facs": fac[1], "facd": fac[2],
            "confc": conf[0], "confs": conf[1], "confd": conf[2],
            "person": person[0], "person_x": person[1], "inst": inst[0], "inst_x": inst[1],
            "role": _ROLES[n % 3], "spec": _SPECIALTIES[n % 4 if n % 10 == 0 else 0],
        }


# --- database ---------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What :func:`load` did and how long it took."""

    url: str
    entries: int
    patients: int
    seed: int
    target_patients: list[str]
    registry_object_rows: int = 0
    object_value_rows: int = 0
    insert_seconds: float = 0.0  # generating + inserting rows
    index_seconds: float = 0.0  # rebuilding the secondary indexes
    analyze_seconds: float = 0.0
    total_seconds: float = 0.0
    db_bytes: int = 0
    distribution: dict = field(default_factory=dict)

    def summary(self) -> str:
        return (f"loaded {self.entries:,} entries / {self.patients:,} patients "
                f"({self.registry_object_rows:,} registry_object + {self.object_value_rows:,} object_value rows) "
                f"in {self.total_seconds:.1f} s (insert {self.insert_seconds:.1f} s, indexes "
                f"{self.index_seconds:.1f} s, analyze {self.analyze_seconds:.1f} s); "
                f"{self.entries / max(self.total_seconds, 1e-9):,.0f} entries/s; db {self.db_bytes / 2**20:,.0f} MiB")


def db_size(engine: Engine) -> int:
    """Bytes the database takes on disk (SQLite: file + WAL; PostgreSQL: pg_database_size)."""
    if engine.dialect.name == "sqlite":
        path = Path(engine.url.database or "")
        return sum(p.stat().st_size for p in (path, Path(str(path) + "-wal")) if p.exists())
    with engine.connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_database_size(current_database())").scalar_one())


def _secondary_indexes() -> list:
    return sorted([*s.registry_object.indexes, *s.object_value.indexes], key=lambda i: i.name)


class _Writer:
    """Bulk insertion through the DBAPI connection: executemany (SQLite) or COPY (PostgreSQL)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sqlite = engine.dialect.name == "sqlite"
        self.raw = engine.raw_connection()
        self.dbapi = self.raw.driver_connection

    def prepare(self) -> None:
        cur = self.dbapi.cursor()
        if self.sqlite:
            # Bulk-load mode: no rollback journal, no fsync, a large cache for the index rebuild. Restored in
            # finish(): durability matters for the registry, not for a synthetic load that is redone on failure.
            for pragma in ("journal_mode=OFF", "synchronous=OFF", "foreign_keys=OFF", "cache_size=-1048576",
                           "temp_store=MEMORY"):
                cur.execute("PRAGMA " + pragma)
        else:
            self.dbapi.commit()
        cur.close()

    def begin(self) -> None:
        if self.sqlite:
            self.dbapi.execute("BEGIN")

    def insert(self, ro_rows: list[tuple], ov_rows: list[tuple]) -> None:
        if self.sqlite:
            self.dbapi.executemany(
                f"INSERT INTO registry_object ({', '.join(RO_COLUMNS)}) VALUES ({', '.join('?' * len(RO_COLUMNS))})",
                ro_rows)
            self.dbapi.executemany("INSERT INTO object_value (object_pk, attr, value) VALUES (?, ?, ?)", ov_rows)
            return
        with self.dbapi.cursor() as cur:
            # session_replication_role=replica skips the FK trigger per object_value row: the rows are
            # consistent by construction and COPY is several times faster without it.
            cur.execute("SET LOCAL session_replication_role = replica")
            with cur.copy(f"COPY registry_object ({', '.join(RO_COLUMNS)}) FROM STDIN") as cp:
                for r in ro_rows:
                    cp.write_row(r)
            with cur.copy("COPY object_value (object_pk, attr, value) FROM STDIN") as cp:
                for r in ov_rows:
                    cp.write_row(r)

    def commit(self) -> None:
        if self.sqlite:
            self.dbapi.execute("COMMIT")
        else:
            self.dbapi.commit()

    def finish(self) -> None:
        cur = self.dbapi.cursor()
        if self.sqlite:
            for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON", "cache_size=-65536",
                           "temp_store=DEFAULT"):
                cur.execute("PRAGMA " + pragma)
        else:
            cur.execute("SELECT setval(pg_get_serial_sequence('registry_object', 'pk'), "
                        "(SELECT coalesce(max(pk), 1) FROM registry_object))")
            self.dbapi.commit()
        cur.close()
        self.raw.close()


def _timed(label: str, fn: Callable[[], None], progress: bool) -> float:
    t = time.perf_counter()
    fn()
    dt = time.perf_counter() - t
    if progress:
        print(f"  {label}: {dt:.1f} s", file=sys.stderr, flush=True)
    return dt


def _insert_patients(engine: Engine, pop: _Population, patients: int) -> None:
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    p = s.patient
    with engine.begin() as conn:
        existing = set(conn.execute(select(p.c.patient_id)).scalars())
        rows = [{"patient_id": pop.pid[i][0], "merged_into": None, "updated": now,
                 "demographics": json.dumps({"name": pop.pname[i], "birth_date": pop.dob[i], "sex": pop.sex[i]})}
                for i in range(patients) if pop.pid[i][0] not in existing]
        if rows:
            conn.execute(p.insert(), rows)


def load(engine: Engine, entries: int, patients: int, *, seed: int = 1, progress: bool = True,
         chunk: int = 20000, drop_indexes: bool | None = None) -> LoadResult:
    """Load ``entries`` synthetic KOS entries (DE + SS + HasMember each) for ``patients`` patients.

    The registry tables must hold no registry objects yet (patients may exist). ``drop_indexes`` drops the
    secondary indexes during the load and rebuilds them afterwards. Default: PostgreSQL yes (COPY + CREATE
    INDEX); SQLite no: its rows (~7 KB of XML) overflow the 4 KiB pages, so a rebuild re-reads one page per
    row, and keeping the indexes measured faster (100k entries: 43 s vs 35 s + 17 s rebuild).
    """
    if drop_indexes is None:
        drop_indexes = engine.dialect.name != "sqlite"
    t_start = time.perf_counter()
    rng = random.Random(seed)
    counts = entries_per_patient(entries, patients, rng)
    order = [p for p, c in enumerate(counts) for _ in range(c)]
    rng.shuffle(order)
    pop = _population(patients, rng)
    prefix = "%08x-%04x" % (rng.getrandbits(32), rng.getrandbits(16))
    ss_t, de_t, as_t = build_templates(prefix)
    result = LoadResult(url=engine.url.render_as_string(hide_password=True), entries=entries, patients=patients,
                        seed=seed, target_patients=target_patient_ids(patients))
    dist = Counter(counts)
    result.distribution = {"target_patients": len(result.target_patients), "entries_per_target": TARGET_ENTRIES,
                           "min": min(counts), "median": sorted(counts)[len(counts) // 2], "max": max(counts),
                           "mean": round(entries / patients, 1), "patients_with_1": dist.get(1, 0)}

    with engine.connect() as conn:
        if conn.execute(select(func.count()).select_from(s.registry_object)).scalar_one():
            raise RuntimeError(f"{result.url}: registry_object is not empty; load into a fresh database")
        pk0 = 1
    _insert_patients(engine, pop, patients)
    indexes = _secondary_indexes() if drop_indexes else []
    if indexes:
        with engine.begin() as conn:
            for idx in indexes:
                idx.drop(conn)

    w = _Writer(engine)
    w.prepare()
    gc_was_enabled = gc.isenabled()
    gc.disable()  # millions of short-lived tuples, no cycles: the collector only costs time here
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=entries, unit="entry", unit_scale=True, desc="load", smoothing=0.05, file=sys.stderr)
    t = time.perf_counter()
    n_ro = n_ov = 0
    try:
        for start in range(0, entries, chunk):
            stop = min(entries, start + chunk)
            ro_rows: list[tuple] = []
            ov_rows: list[tuple] = []
            pk = pk0 + 3 * start
            for d in _entries(order, pop, seed, rng, start, stop, entries):
                # Storage order of an ITI-42 submission (Submission.objects()): SubmissionSet, document, association.
                for tpl in (ss_t, de_t, as_t):
                    row, vals = tpl.rows(d, pk)
                    ro_rows.append(row)
                    ov_rows += vals
                    pk += 1
            w.begin()
            w.insert(ro_rows, ov_rows)
            w.commit()
            n_ro += len(ro_rows)
            n_ov += len(ov_rows)
            if bar is not None:
                bar.update(stop - start)
        result.insert_seconds = time.perf_counter() - t
        if bar is not None:
            bar.close()
        if indexes:
            def rebuild() -> None:
                if not w.sqlite:
                    w.dbapi.execute("SET maintenance_work_mem = '1GB'")
                for idx in indexes:
                    w.dbapi.execute(str(_create_sql(idx, engine)))
                w.dbapi.commit() if not w.sqlite else None
            result.index_seconds = _timed(f"rebuild {len(indexes)} indexes", rebuild, progress)

        def analyze() -> None:
            if w.sqlite:
                w.dbapi.execute("ANALYZE")
            else:
                w.dbapi.commit()
                w.dbapi.autocommit = True  # VACUUM cannot run in a transaction
                w.dbapi.execute("VACUUM ANALYZE")
                w.dbapi.autocommit = False
        result.analyze_seconds = _timed("analyze", analyze, progress)
    finally:
        if gc_was_enabled:
            gc.enable()
        w.finish()
    result.registry_object_rows, result.object_value_rows = n_ro, n_ov
    result.total_seconds = time.perf_counter() - t_start
    result.db_bytes = db_size(engine)
    return result


def _create_sql(idx, engine: Engine):  # type: ignore[no-untyped-def]
    from sqlalchemy.schema import CreateIndex

    return CreateIndex(idx).compile(dialect=engine.dialect)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.synthetic", description=__doc__.split("\n")[0])
    ap.add_argument("--db", required=True, help="SQLAlchemy URL of a fresh registry database")
    ap.add_argument("--entries", type=int, default=1_000_000)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--chunk", type=int, default=20000, help="entries per transaction")
    ap.add_argument("--drop-indexes", choices=("yes", "no", "auto"), default="auto",
                    help="drop secondary indexes during the load (auto: PostgreSQL yes, SQLite no)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args(argv)
    engine = make_engine(args.db)
    try:
        res = load(engine, args.entries, args.patients, seed=args.seed, chunk=args.chunk,
                   drop_indexes={"yes": True, "no": False, "auto": None}[args.drop_indexes])
    finally:
        engine.dispose()
    print(json.dumps(asdict(res) | {"target_patients": res.target_patients[:3]}, indent=1) if args.json
          else res.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main())
