"""Configuration of the Imaging Document Source, read from a TOML file.

One file describes the actor itself (its RAD-69 ``repositoryUniqueId``, the SubmissionSet ``sourceId``, the
XDS Repository it publishes to, the affinity domain, the author institution and the XDS-I.b codes of its
manifests) and every participating PACS (how to reach it and how its local patient ids map to the
affinity-domain id, so that studies from every hospital land on the right patient)::

    repository_unique_id = "1.3.6.1.4.1.21367.13.80.110"
    source_id = "1.3.6.1.4.1.21367.13.80.1"
    repository_url = "http://127.0.0.1:8020/repository"
    registry_url = "http://127.0.0.1:8010/registry"
    affinity_domain_oid = "1.3.6.1.4.1.21367.13.20.1000"
    institution = "Demo Hospital^^^^^^^^^1.3.6.1.4.1.21367.13.40.1"

    [[pacs]]
    name = "hospital-a"
    protocol = "dimse"
    ae_title = "ORTHANC_A"
    host = "127.0.0.1"
    port = 14242
    default_issuer = "HOSP_A"
    issuer_oid = "1.3.6.1.4.1.21367.13.30.1"
    patient_id_mapping = { table = "patient-ids-a.csv" }

Every problem of a file is reported at once by :class:`ConfigError`, each message naming the key
(``pacs[2] 'hospital-b'.port``) and what is wrong with its value.
"""

from __future__ import annotations

import csv
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from imaging_source.pacs.base import PacsAdapter
from xdsi.metadata.hl7 import HD
from xdsi.metadata.model import Code
from xdsi.validate import hl7

__all__ = [
    "PROTOCOLS",
    "ConfigError",
    "ImagingSourceConfig",
    "PacsConfig",
    "PatientIdMapping",
    "XdsCodes",
    "load_config",
    "make_adapter",
    "parse_config",
]

#: How the imaging source talks to a PACS: DIMSE (C-FIND/C-MOVE/C-GET) or DICOMweb (QIDO-RS/WADO-RS).
PROTOCOLS = ("dimse", "dicomweb", "folder")
MAPPING_KINDS = ("domain", "rewrite", "table")
#: HL7 v2 delimiters: an id holding one would change the meaning of the CX it is put in.
_HL7_DELIMITERS = "^&~\\|"


class ConfigError(ValueError):
    """The configuration is not usable; ``errors`` lists every problem, one precise message each."""

    def __init__(self, source: str, errors: list[str]) -> None:
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + ("; ".join(errors) if len(errors) == 1 else
                                          f"{len(errors)} problems:\n  " + "\n  ".join(errors)))


# --- the dataclasses -------------------------------------------------------------------------------------


_IMAGES = Code("IMAGES", "1.3.6.1.4.1.19376.1.2.6.1", "Images")
_DIAGNOSTIC_IMAGING_STUDY = Code("18748-4", "2.16.840.1.113883.6.1", "Diagnostic imaging study")  # LOINC
_RADIOLOGY = Code("394914008", "2.16.840.1.113883.6.96", "Radiology")  # SNOMED CT
_HOSPITAL = Code("22232009", "2.16.840.1.113883.6.96", "Hospital")  # SNOMED CT
_NORMAL = Code("N", "2.16.840.1.113883.5.25", "normal")  # HL7 v3 Confidentiality


@dataclass(frozen=True)
class XdsCodes:
    """The coded DocumentEntry/SubmissionSet attributes of every manifest (formatCode is fixed by RAD-68).

    The defaults are what an XDS-I.b source commonly sends for a KOS manifest; an affinity domain that
    checks codes against its code list sets its own values here.
    """

    class_code: Code = _IMAGES
    type_code: Code = _DIAGNOSTIC_IMAGING_STUDY
    practice_setting_code: Code = _RADIOLOGY
    healthcare_facility_type_code: Code = _HOSPITAL
    confidentiality_codes: tuple[Code, ...] = (_NORMAL,)
    content_type_code: Code = _DIAGNOSTIC_IMAGING_STUDY
    language_code: str = "en-US"


def _issuer_names(value: str) -> set[str]:
    """The names an Issuer of Patient ID goes by: itself, or the parts of an HD ``ns&oid&ISO``."""
    value = value.strip()
    if "&" in value:
        hd = HD.parse(value)
        return {hd.namespace_id, hd.universal_id} - {""}
    return {value} - {""}


def is_oid(value: str) -> bool:
    return bool(value) and hl7.check_oid(value) is None


@dataclass(frozen=True)
class PatientIdMapping:
    """How one PACS's local patient ids become affinity-domain ids.

    ``kind`` is one of

    * ``domain``: the PACS already stores the affinity-domain id (``domain_issuer = true``);
    * ``rewrite``: the domain id is the local id with ``strip_prefix``/``strip_suffix`` removed (the id must
      carry them, else it is not one of ours) and ``prefix``/``suffix`` added;
    * ``table``: the domain id is looked up in ``table`` (read from a CSV file ``local_id,domain_id``).

    ``issuers`` are the Issuer of Patient ID values (0010,0021) this PACS's ids carry (its default issuer,
    the OID of that issuer, and for ``domain`` the domain OID). An id with another issuer belongs to another
    assigning authority (an imported study) and is not mapped; an id without issuer is the PACS's own.
    """

    kind: str
    domain_oid: str
    issuers: frozenset[str] = frozenset()
    prefix: str = ""
    suffix: str = ""
    strip_prefix: str = ""
    strip_suffix: str = ""
    table: Mapping[str, str] = field(default_factory=dict, repr=False)
    table_path: Path | None = None

    def accepts_issuer(self, issuer: str) -> bool:
        """True when ``issuer`` is empty (the PACS's default) or one of :attr:`issuers`."""
        names = _issuer_names(issuer)
        if not names:
            return True
        return bool(names & {n for i in self.issuers for n in _issuer_names(i)})

    def domain_id(self, local_id: str, issuer: str = "") -> str | None:
        """The affinity-domain id (CX.1 only), or None when this mapping cannot give one."""
        local_id = local_id.strip()
        if not local_id or not self.accepts_issuer(issuer):
            return None
        if self.kind == "domain":
            mapped: str | None = local_id
        elif self.kind == "rewrite":
            mapped = local_id
            if self.strip_prefix:
                if not mapped.startswith(self.strip_prefix):
                    return None
                mapped = mapped[len(self.strip_prefix):]
            if self.strip_suffix:
                if not mapped.endswith(self.strip_suffix):
                    return None
                mapped = mapped[: len(mapped) - len(self.strip_suffix)]
            mapped = f"{self.prefix}{mapped}{self.suffix}" if mapped else None
        elif self.kind == "table":
            mapped = self.table.get(local_id)
        else:
            raise ValueError(f"unknown patient id mapping kind {self.kind!r} (one of {', '.join(MAPPING_KINDS)})")
        if not mapped or any(c in mapped for c in _HL7_DELIMITERS):
            return None
        return mapped

    def to_domain(self, local_id: str, issuer: str = "") -> str | None:
        """The affinity-domain patient id as an XDS CX ``id^^^&<domain OID>&ISO``.

        None when the id cannot be mapped (other issuer, not in the table, prefix missing...): the
        publisher must not guess a patient; it reports or queues the study.
        """
        mapped = self.domain_id(local_id, issuer)
        return None if mapped is None else f"{mapped}^^^&{self.domain_oid}&ISO"


@dataclass(frozen=True)
class PacsConfig:
    """One participating PACS."""

    name: str
    protocol: str  # "dimse", "dicomweb" or "folder" (a directory of DICOM files: the demo's embedded store)
    patient_id_mapping: PatientIdMapping
    #: Called AE title; also the RetrieveAETitle (0008,0054) of the KOS evidence (may be "" for DICOMweb).
    ae_title: str = ""
    host: str = ""
    port: int = 0
    calling_ae_title: str = ""
    dicomweb_url: str = ""
    #: Directory of DICOM Part 10 files (protocol "folder").
    path: str = ""
    #: Issuer of Patient ID (0010,0021) the PACS's ids have when the attribute is absent.
    default_issuer: str = ""
    #: OID of the PACS's patient id assigning authority: the CX.4 of sourcePatientId.
    issuer_oid: str = ""
    #: OID of the assigning authority of its accession numbers (referenceIdList accession entries).
    accession_issuer_oid: str = ""
    #: IANA zone of the PACS's dates and times (StudyDate/StudyTime carry no zone).
    timezone: str = "UTC"
    #: DIMSE retrieval: "c-get" (default) or "c-move" (the PACS sends to calling_ae_title at move_port).
    retrieve: str = "c-get"
    move_port: int = 0
    #: Seconds for each network exchange with the PACS.
    timeout: float = 30.0

    @property
    def retrieve_ae_title(self) -> str:
        return self.ae_title

    @property
    def tzinfo(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local_authority_oid(self, issuer: str = "") -> str | None:
        """OID of the assigning authority of a local id with this Issuer of Patient ID, or None if unknown.

        An issuer that is (or holds, as ``ns&oid&ISO``) an OID is that OID; an empty issuer or one of the
        PACS's own names is :attr:`issuer_oid`.
        """
        names = _issuer_names(issuer)
        oids = [n for n in names if is_oid(n)]
        if oids:
            return oids[0]
        if not names or names & (_issuer_names(self.default_issuer) | _issuer_names(self.issuer_oid)):
            return self.issuer_oid or None
        return None


@dataclass(frozen=True)
class ImagingSourceConfig:
    """The Imaging Document Source and its PACS."""

    #: repositoryUniqueId of this Imaging Document Source (RAD-69): the KOS RetrieveLocationUID.
    repository_unique_id: str
    #: SubmissionSet.sourceId of its RAD-68 submissions.
    source_id: str
    #: The XDS Document Repository it publishes to (RAD-68) and the Registry it queries (ITI-18).
    repository_url: str
    registry_url: str
    #: Assigning authority of affinity-domain patient ids (CX.4 ``&OID&ISO`` of patientId).
    affinity_domain_oid: str
    #: authorInstitution (XON) of the manifests; its XON.1 is the KOS InstitutionName.
    institution: str
    pacs: tuple[PacsConfig, ...] = ()
    home_community_id: str = ""
    #: Its own DICOM AE title (default calling AE title, C-MOVE destination).
    ae_title: str = "XDSI_IDS"
    codes: XdsCodes = XdsCodes()
    source: Path | None = None  # the file it was read from

    @property
    def institution_name(self) -> str:
        return self.institution.split("^", 1)[0]

    def pacs_named(self, name: str) -> PacsConfig:
        for p in self.pacs:
            if p.name == name:
                return p
        raise KeyError(f"no PACS named {name!r} in the configuration (configured: "
                       f"{', '.join(repr(p.name) for p in self.pacs) or 'none'})")

    def domain_patient_id(self, pacs: str, local_id: str, issuer: str = "") -> str | None:
        """The affinity-domain CX of a PACS's local id (see :meth:`PatientIdMapping.to_domain`)."""
        return self.pacs_named(pacs).patient_id_mapping.to_domain(local_id, issuer)


# --- reading and validation ------------------------------------------------------------------------------


_TOP_KEYS = {
    "repository_unique_id", "source_id", "repository_url", "registry_url", "affinity_domain_oid",
    "institution", "home_community_id", "ae_title", "timezone", "codes", "pacs",
}
_CODE_KEYS = {
    "class_code", "type_code", "practice_setting_code", "healthcare_facility_type_code",
    "confidentiality_code", "content_type_code", "language_code",
}
_PACS_KEYS = {
    "name", "protocol", "ae_title", "host", "port", "calling_ae_title", "dicomweb_url", "default_issuer",
    "issuer_oid", "accession_issuer_oid", "timezone", "patient_id_mapping", "retrieve", "move_port", "timeout", "path",
}
RETRIEVE_METHODS = ("c-get", "c-move")
_MAPPING_KEYS = {"domain_issuer", "prefix", "suffix", "strip_prefix", "strip_suffix", "table"}


class _Reader:
    """Typed access to one TOML table that records a precise message for every bad or missing key."""

    def __init__(self, data: Mapping[str, Any], where: str, errors: list[str]) -> None:
        self.data, self.where, self.errors = data, where, errors

    def name(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def error(self, key: str, message: str) -> None:
        self.errors.append(f"{self.name(key)} {message}")

    def unknown(self, known: set[str]) -> None:
        for key in sorted(set(self.data) - known):
            self.errors.append(f"unknown key {key!r} in {self.where or 'the top level'} (known keys here: "
                               f"{', '.join(sorted(known))})")

    def text(self, key: str, *, required: bool = False, default: str = "", what: str = "") -> str:
        if key not in self.data:
            if required:
                self.errors.append(f"{self.name(key)} is missing" + (f" ({what})" if what else ""))
            return default
        value = self.data[key]
        if not isinstance(value, str):
            self.error(key, f"must be a string, not {type(value).__name__} {value!r}")
            return default
        value = value.strip()
        if required and not value:
            self.error(key, "is empty" + (f" ({what})" if what else ""))
        return value

    def oid(self, key: str, *, required: bool = False, what: str = "") -> str:
        value = self.text(key, required=required, what=what)
        if value and hl7.check_oid(value):
            why = (f"longer than {hl7.MAX_OID} characters" if len(value) > hl7.MAX_OID
                   else "dotted decimal numbers such as 1.2.3 expected")
            self.error(key, f"= {value!r} is not a valid OID ({why})")
            return ""
        return value

    def url(self, key: str, *, required: bool = False, what: str = "") -> str:
        value = self.text(key, required=required, what=what)
        if value:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                self.error(key, f"= {value!r} is not an http:// or https:// URL with a host")
                return ""
        return value

    def ae_title(self, key: str, *, required: bool = False, default: str = "", what: str = "") -> str:
        value = self.text(key, required=required, default=default, what=what)
        if value and (len(value) > 16 or "\\" in value or not value.isprintable()):
            self.error(key, f"= {value!r} is not a DICOM AE title (1-16 printable characters, no backslash)")
            return ""
        return value

    def timezone(self, key: str, default: str) -> str:
        value = self.text(key, default=default)
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            self.error(key, f"= {value!r} is not a known IANA time zone (e.g. 'UTC', 'Europe/Paris')")
            return "UTC"
        return value


def _code(r: _Reader, key: str, default: Code) -> Code:
    """A code given as ``{ code = "...", scheme = "...", display = "..." }``."""
    if key not in r.data:
        return default
    value = r.data[key]
    if not isinstance(value, Mapping):
        r.error(key, f"must be a table {{ code = \"...\", scheme = \"...\", display = \"...\" }}, not {value!r}")
        return default
    c = _Reader(value, r.name(key), r.errors)
    c.unknown({"code", "scheme", "display"})
    code = Code(c.text("code", required=True), c.text("scheme", required=True, what="the codingScheme"),
                c.text("display"))
    return code if code.code and code.scheme else default


def _codes(data: Any, errors: list[str]) -> XdsCodes:
    defaults = XdsCodes()
    if data is None:
        return defaults
    if not isinstance(data, Mapping):
        errors.append(f"codes must be a table [codes], not {data!r}")
        return defaults
    r = _Reader(data, "codes", errors)
    r.unknown(_CODE_KEYS)
    conf: tuple[Code, ...] = defaults.confidentiality_codes
    if "confidentiality_code" in data:
        raw = data["confidentiality_code"]
        items = raw if isinstance(raw, list) else [raw]
        if not items:
            r.error("confidentiality_code", "is an empty list; at least one confidentialityCode is required")
        else:
            conf = tuple(_code(_Reader({f"[{i}]": v}, r.name("confidentiality_code"), errors), f"[{i}]",
                               defaults.confidentiality_codes[0]) for i, v in enumerate(items))
    language = r.text("language_code", default=defaults.language_code)
    if hl7.check_language_code(language):
        r.error("language_code", f"= {language!r} is not an RFC 3066 language tag (e.g. 'en-US')")
    return XdsCodes(
        class_code=_code(r, "class_code", defaults.class_code),
        type_code=_code(r, "type_code", defaults.type_code),
        practice_setting_code=_code(r, "practice_setting_code", defaults.practice_setting_code),
        healthcare_facility_type_code=_code(r, "healthcare_facility_type_code",
                                            defaults.healthcare_facility_type_code),
        confidentiality_codes=conf,
        content_type_code=_code(r, "content_type_code", defaults.content_type_code),
        language_code=language,
    )


def read_id_table(path: Path) -> dict[str, str]:
    """Read a ``local_id,domain_id`` CSV table (optional header row, ``#`` comments, blank lines).

    Raises ValueError naming the file and line of the first problem.
    """
    table: dict[str, str] = {}
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise ValueError(f"cannot read patient id table {path}: {exc.strerror or exc}") from None
    for line_no, row in enumerate(csv.reader(text.splitlines()), 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if line_no == 1 and [c.lower() for c in cells] == ["local_id", "domain_id"]:
            continue
        at = f"patient id table {path} line {line_no}"
        if len(cells) != 2:
            raise ValueError(f"{at}: expected 2 columns 'local_id,domain_id', found {len(cells)}: {row!r}")
        local, domain = cells
        if not local or not domain:
            raise ValueError(f"{at}: the {'local' if not local else 'domain'} id is empty")
        if any(c in domain for c in _HL7_DELIMITERS):
            raise ValueError(f"{at}: domain id {domain!r} contains an HL7 delimiter (^ & ~ \\ |); give the id "
                             "only (CX.1), the assigning authority is the affinity domain's")
        if table.get(local, domain) != domain:
            raise ValueError(f"{at}: local id {local!r} is mapped twice, to {table[local]!r} and to {domain!r}")
        table[local] = domain
    return table


def _mapping(raw: Any, where: str, domain_oid: str, issuers: frozenset[str], base_dir: Path,
             errors: list[str]) -> PatientIdMapping | None:
    forms = ("patient_id_mapping = { domain_issuer = true } (the PACS stores domain ids), "
             "{ prefix = \"...\", suffix = \"...\" } (rewrite) or { table = \"ids.csv\" } (lookup table)")
    name = f"{where}.patient_id_mapping"
    if raw is None:
        errors.append(f"{name} is missing: say how local patient ids map to the affinity domain: {forms}")
        return None
    if not isinstance(raw, Mapping):
        errors.append(f"{name} must be a table: {forms}")
        return None
    r = _Reader(raw, name, errors)
    r.unknown(_MAPPING_KEYS)
    domain = raw.get("domain_issuer", False)
    if not isinstance(domain, bool):
        r.error("domain_issuer", f"must be true or false, not {domain!r}")
        domain = False
    rewrite = [k for k in ("prefix", "suffix", "strip_prefix", "strip_suffix") if k in raw]
    kinds = [k for k, on in (("domain_issuer = true", domain), ("a rewrite (" + ", ".join(rewrite) + ")",
                                                                  bool(rewrite)), ("table", "table" in raw)) if on]
    if len(kinds) != 1:
        errors.append(f"{name} must choose exactly one mapping, found "
                      f"{' and '.join(kinds) if kinds else 'none'}: {forms}")
        return None
    if domain:
        return PatientIdMapping("domain", domain_oid, issuers | {domain_oid})
    if rewrite:
        parts = {k: r.text(k) for k in ("prefix", "suffix", "strip_prefix", "strip_suffix")}
        for k, v in parts.items():
            if any(c in v for c in _HL7_DELIMITERS):
                r.error(k, f"= {v!r} contains an HL7 delimiter (^ & ~ \\ |)")
        return PatientIdMapping("rewrite", domain_oid, issuers, **parts)
    table_file = r.text("table", required=True, what="the path of a CSV file local_id,domain_id")
    if not table_file:
        return None
    path = Path(table_file)
    if not path.is_absolute():
        path = base_dir / path  # relative to the configuration file, not the working directory
    try:
        table = read_id_table(path)
    except ValueError as exc:
        errors.append(f"{name}.table: {exc}")
        return None
    return PatientIdMapping("table", domain_oid, issuers, table=table, table_path=path)


def _pacs(raw: Any, index: int, top: dict[str, str], base_dir: Path, errors: list[str]) -> PacsConfig | None:
    if not isinstance(raw, Mapping):
        errors.append(f"pacs[{index}] must be a table [[pacs]], not {raw!r}")
        return None
    label = raw.get("name")
    where = f"pacs[{index}]" + (f" {label!r}" if isinstance(label, str) and label.strip() else "")
    r = _Reader(raw, where, errors)
    r.unknown(_PACS_KEYS)
    name = r.text("name", required=True, what="the PACS name studies refer to")
    protocol = r.text("protocol", required=True, what=f"one of {', '.join(PROTOCOLS)}").lower()
    if protocol and protocol not in PROTOCOLS:
        r.error("protocol", f"= {protocol!r} is not a known PACS protocol (one of {', '.join(PROTOCOLS)})")
    dimse = protocol == "dimse"
    ae_title = r.ae_title("ae_title", required=dimse, what="the PACS's AE title, required for DIMSE")
    host = r.text("host", required=dimse, what="required for DIMSE")
    port = 0
    if "port" in raw:
        port = raw["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            r.error("port", f"= {port!r} is not a TCP port (an integer 1-65535)")
            port = 0
    elif dimse:
        r.error("port", "is missing (required for DIMSE)")
    calling = r.ae_title("calling_ae_title", default=top["ae_title"])
    retrieve = r.text("retrieve", default="c-get").lower()
    if retrieve not in RETRIEVE_METHODS:
        r.error("retrieve", f"= {retrieve!r} is not a DIMSE retrieval (one of {', '.join(RETRIEVE_METHODS)})")
    move_port = 0
    if "move_port" in raw:
        move_port = raw["move_port"]
        if isinstance(move_port, bool) or not isinstance(move_port, int) or not 1 <= move_port <= 65535:
            r.error("move_port", f"= {move_port!r} is not a TCP port (an integer 1-65535)")
            move_port = 0
    elif dimse and retrieve == "c-move":
        r.error("move_port", "is missing (required for retrieve = \"c-move\": the port of our Storage SCP)")
    timeout = raw.get("timeout", 30.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        r.error("timeout", f"= {timeout!r} is not a positive number of seconds")
        timeout = 30.0
    url = r.url("dicomweb_url", required=protocol == "dicomweb", what="required for DICOMweb")
    folder = r.text("path", required=protocol == "folder", what="the directory of DICOM files, required for folder")
    if folder:
        folder = str((Path(base_dir) / folder).resolve())
    default_issuer = r.text("default_issuer")
    issuer_oid = r.oid("issuer_oid")
    accession_oid = r.oid("accession_issuer_oid")
    timezone = r.timezone("timezone", top["timezone"])
    domain_oid = top["affinity_domain_oid"]
    mapping_raw = raw.get("patient_id_mapping")
    if not issuer_oid and is_oid(default_issuer):
        issuer_oid = default_issuer
    if not issuer_oid and isinstance(mapping_raw, Mapping) and mapping_raw.get("domain_issuer") is True:
        issuer_oid = domain_oid  # the local ids are domain ids: their authority is the domain
    if not issuer_oid and "issuer_oid" not in raw:
        errors.append(f"{where}.issuer_oid is missing: the OID of the PACS's patient id assigning authority is "
                      "needed for sourcePatientId (or make default_issuer an OID, or set "
                      "patient_id_mapping.domain_issuer = true)")
    issuers = frozenset({default_issuer, issuer_oid} - {""})
    mapping = _mapping(mapping_raw, where, domain_oid, issuers, base_dir, errors)
    if mapping is None or not name or protocol not in PROTOCOLS:
        return None
    return PacsConfig(name=name, protocol=protocol, patient_id_mapping=mapping, ae_title=ae_title, host=host,
                      port=port, calling_ae_title=calling, dicomweb_url=url, path=folder,
                      default_issuer=default_issuer,
                      issuer_oid=issuer_oid, accession_issuer_oid=accession_oid, timezone=timezone,
                      retrieve=retrieve, move_port=move_port, timeout=float(timeout))


def make_adapter(pacs: PacsConfig) -> PacsAdapter:
    """The PACS adapter that speaks ``pacs.protocol`` with the configured address and settings."""
    if pacs.protocol == "dimse":
        from imaging_source.pacs.dimse import DimseAdapter

        move = (pacs.calling_ae_title, pacs.move_port) if pacs.retrieve == "c-move" else None
        return DimseAdapter(pacs.name, host=pacs.host, port=pacs.port, called_aet=pacs.ae_title,
                            calling_aet=pacs.calling_ae_title, move_destination=move,
                            use_c_get=pacs.retrieve == "c-get", timeout=pacs.timeout)
    if pacs.protocol == "dicomweb":
        from imaging_source.pacs.dicomweb import DicomWebAdapter

        return DicomWebAdapter(pacs.name, pacs.dicomweb_url, ae_title=pacs.ae_title, timeout=pacs.timeout)
    if pacs.protocol == "folder":
        from imaging_source.pacs.folder import FolderAdapter

        return FolderAdapter(pacs.name, Path(pacs.path), ae_title=pacs.ae_title)
    raise ValueError(f"PACS {pacs.name!r}: unknown protocol {pacs.protocol!r} (one of {', '.join(PROTOCOLS)})")


def parse_config(data: Mapping[str, Any], *, base_dir: Path | str = ".", source: str = "<config>",
                 path: Path | None = None) -> ImagingSourceConfig:
    """Build and validate the configuration from parsed TOML; raises :class:`ConfigError` listing every
    problem. Relative table paths are resolved against ``base_dir``."""
    errors: list[str] = []
    r = _Reader(data, "", errors)
    r.unknown(_TOP_KEYS)
    repository_unique_id = r.oid("repository_unique_id", required=True,
                                 what="this Imaging Document Source's RAD-69 repositoryUniqueId, the KOS "
                                      "RetrieveLocationUID")
    source_id = r.oid("source_id", required=True, what="the SubmissionSet.sourceId OID")
    domain_oid = r.oid("affinity_domain_oid", required=True,
                       what="the assigning authority OID of affinity-domain patient ids")
    repository_url = r.url("repository_url", required=True, what="the XDS Repository to publish to")
    registry_url = r.url("registry_url", required=True, what="the XDS Registry to query")
    institution = r.text("institution", required=True,
                        what="authorInstitution XON, e.g. 'Hospital^^^^^^^^^1.2.3.4'")
    if institution:
        problem = hl7.check_xon(institution)
        if problem:
            r.error("institution", f"is not a valid XON: {problem}")
    home = r.text("home_community_id")
    if home and (not home.startswith("urn:oid:") or not is_oid(home[len("urn:oid:"):])):
        r.error("home_community_id", f"= {home!r} is not 'urn:oid:' followed by an OID")
    top = {
        "ae_title": r.ae_title("ae_title", default="XDSI_IDS") or "XDSI_IDS",
        "timezone": r.timezone("timezone", "UTC"),
        "affinity_domain_oid": domain_oid,
    }
    codes = _codes(data.get("codes"), errors)
    raw_pacs = data.get("pacs", [])
    pacs: list[PacsConfig] = []
    if not isinstance(raw_pacs, list):
        errors.append("pacs must be an array of tables [[pacs]]")
        raw_pacs = []
    elif not raw_pacs:
        errors.append("no PACS is configured: add at least one [[pacs]] table")
    for i, raw in enumerate(raw_pacs, 1):
        p = _pacs(raw, i, top, Path(base_dir), errors)
        if p is not None:
            pacs.append(p)
    names = [p.name for p in pacs]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        errors.append(f"PACS name {dup!r} is used by {names.count(dup)} [[pacs]] tables; names must be unique")
    if errors:
        raise ConfigError(source, errors)
    return ImagingSourceConfig(
        repository_unique_id=repository_unique_id, source_id=source_id, repository_url=repository_url,
        registry_url=registry_url, affinity_domain_oid=domain_oid, institution=institution, pacs=tuple(pacs),
        home_community_id=home, ae_title=top["ae_title"], codes=codes, source=path,
    )


def load_config(path: Path | str) -> ImagingSourceConfig:
    """Read and validate the TOML configuration at ``path``; raises :class:`ConfigError`."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except OSError as exc:
        raise ConfigError(str(path), [f"cannot read the configuration: {exc.strerror or exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [f"is not valid TOML: {exc}"]) from None
    return parse_config(data, base_dir=path.resolve().parent, source=str(path), path=path)
