"""Imaging Document Source configuration (imaging_source/config.py): loading, validation messages and the
mapping of each PACS's local patient ids to the affinity domain."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from imaging_source.config import (
    ConfigError,
    PatientIdMapping,
    XdsCodes,
    load_config,
    make_adapter,
    read_id_table,
)
from xdsi.metadata.model import Code

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "imaging_source" / "example-config.toml"
DOMAIN = "1.3.6.1.4.1.21367.13.20.1000"
CX = "^^^&" + DOMAIN + "&ISO"

TOP = f"""
repository_unique_id = "1.3.6.1.4.1.21367.13.80.110"
source_id = "1.3.6.1.4.1.21367.13.80.1"
repository_url = "http://127.0.0.1:8020/repository"
registry_url = "http://127.0.0.1:8010/registry"
affinity_domain_oid = "{DOMAIN}"
institution = "Demo^^^^^^^^^1.3.6.1.4.1.21367.13.40.1"
"""
PACS = """
[[pacs]]
name = "hospital-a"
protocol = "dimse"
ae_title = "ORTHANC_A"
host = "127.0.0.1"
port = 14242
default_issuer = "HOSP_A"
issuer_oid = "1.3.6.1.4.1.21367.13.30.1"
patient_id_mapping = { prefix = "A-" }
"""


def _write(tmp_path: Path, text: str, name: str = "ids.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def _errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as exc:
        load_config(_write(tmp_path, text))
    return exc.value.errors


def _one_error(tmp_path: Path, text: str) -> str:
    errors = _errors(tmp_path, text)
    assert len(errors) == 1, errors
    return errors[0]


# --- the example and a minimal file ----------------------------------------------------------------------


def test_example_config_loads() -> None:
    config = load_config(EXAMPLE)
    assert config.repository_unique_id == "1.3.6.1.4.1.21367.13.80.110"
    assert config.home_community_id == "urn:oid:1.3.6.1.4.1.21367.13.70.1"
    assert config.institution_name == "Demo Imaging Network"
    assert [p.name for p in config.pacs] == ["hospital-a", "hospital-b", "regional-archive"]
    assert [p.patient_id_mapping.kind for p in config.pacs] == ["table", "rewrite", "domain"]
    assert [p.protocol for p in config.pacs] == ["dimse", "dicomweb", "dimse"]
    a, b, archive = config.pacs
    assert a.patient_id_mapping.table_path == EXAMPLE.parent / "example-patient-ids.csv"
    assert config.domain_patient_id("hospital-a", "A0002", "HOSP_A") == "DOM-1002" + CX
    assert config.domain_patient_id("hospital-b", "B-77") == "DOM-77" + CX
    assert config.domain_patient_id("regional-archive", "P123", DOMAIN) == "P123" + CX
    assert b.issuer_oid == b.default_issuer  # an OID issuer is its own authority
    assert archive.issuer_oid == DOMAIN and archive.timezone == "Europe/Paris"
    assert b.timezone == "UTC"
    assert config.codes == XdsCodes()


def test_minimal_config_takes_the_defaults(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, TOP + PACS))
    assert config.codes == XdsCodes()
    assert config.codes.class_code == Code("IMAGES", "1.3.6.1.4.1.19376.1.2.6.1", "Images")
    assert config.ae_title == "XDSI_IDS"
    pacs = config.pacs_named("hospital-a")
    assert pacs.calling_ae_title == "XDSI_IDS" and pacs.timezone == "UTC" and pacs.retrieve_ae_title == "ORTHANC_A"
    assert config.source == tmp_path / "ids.toml"
    with pytest.raises(KeyError, match="no PACS named 'nope' in the configuration .*'hospital-a'"):
        config.pacs_named("nope")


def test_codes_are_read(tmp_path: Path) -> None:
    config = load_config(_write(tmp_path, TOP + """
        ae_title = "MY_IDS"
        [codes]
        class_code = { code = "18726-0", scheme = "2.16.840.1.113883.6.1", display = "Radiology studies" }
        confidentiality_code = [{ code = "N", scheme = "2.16.840.1.113883.5.25" },
                                { code = "R", scheme = "2.16.840.1.113883.5.25", display = "restricted" }]
        language_code = "de-CH"
        """ + PACS))
    assert config.codes.class_code == Code("18726-0", "2.16.840.1.113883.6.1", "Radiology studies")
    assert [c.code for c in config.codes.confidentiality_codes] == ["N", "R"]
    assert config.codes.language_code == "de-CH"
    assert config.codes.type_code == XdsCodes().type_code
    assert config.pacs[0].calling_ae_title == "MY_IDS"


# --- validation messages ---------------------------------------------------------------------------------


def test_missing_keys_are_named(tmp_path: Path) -> None:
    errors = _errors(tmp_path, PACS)
    assert any(e.startswith("repository_unique_id is missing (this Imaging Document Source's RAD-69") for e in errors)
    for key in ("source_id", "affinity_domain_oid", "repository_url", "registry_url", "institution"):
        assert any(e.startswith(f"{key} is missing") for e in errors), key


def test_all_problems_are_reported_at_once(tmp_path: Path) -> None:
    path = _write(tmp_path, TOP.replace("1.3.6.1.4.1.21367.13.80.1\"", "one.two\"") + PACS.replace("14242", "0"))
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert len(exc.value.errors) == 2
    assert str(exc.value).startswith(f"{path}: 2 problems:")


def test_bad_oid(tmp_path: Path) -> None:
    text = TOP.replace('repository_unique_id = "1.3.6.1.4.1.21367.13.80.110"', 'repository_unique_id = "1.3.x"')
    assert _one_error(tmp_path, text + PACS) == (
        "repository_unique_id = '1.3.x' is not a valid OID (dotted decimal numbers such as 1.2.3 expected)")
    long_oid = "1." + "2" * 70
    text = TOP + PACS.replace('issuer_oid = "1.3.6.1.4.1.21367.13.30.1"', f'issuer_oid = "{long_oid}"')
    assert f"pacs[1] 'hospital-a'.issuer_oid = '{long_oid}' is not a valid OID (longer than 64 characters)" in (
        _errors(tmp_path, text))


def test_unknown_protocol(tmp_path: Path) -> None:
    text = TOP + PACS.replace('protocol = "dimse"', 'protocol = "hl7"')
    assert _one_error(tmp_path, text) == (
        "pacs[1] 'hospital-a'.protocol = 'hl7' is not a known PACS protocol (one of dimse, dicomweb, folder)")


def test_dimse_and_dicomweb_requirements(tmp_path: Path) -> None:
    text = TOP + """
        [[pacs]]
        name = "x"
        protocol = "dimse"
        issuer_oid = "1.2.3"
        patient_id_mapping = { prefix = "X" }
        [[pacs]]
        name = "y"
        protocol = "dicomweb"
        dicomweb_url = "ftp://host/dicom-web"
        issuer_oid = "1.2.3"
        patient_id_mapping = { prefix = "Y" }
        """
    errors = _errors(tmp_path, text)
    assert "pacs[1] 'x'.ae_title is missing (the PACS's AE title, required for DIMSE)" in errors
    assert "pacs[1] 'x'.host is missing (required for DIMSE)" in errors
    assert "pacs[1] 'x'.port is missing (required for DIMSE)" in errors
    assert "pacs[2] 'y'.dicomweb_url = 'ftp://host/dicom-web' is not an http:// or https:// URL with a host" in errors
    assert len(errors) == 4


def test_bad_values(tmp_path: Path) -> None:
    text = TOP.replace('"http://127.0.0.1:8010/registry"', '"registry"') + """
        home_community_id = "1.2.3"
        timezone = "Mars/Olympus"
        """ + PACS.replace("14242", "70000").replace('"ORTHANC_A"', '"A_VERY_LONG_AE_TITLE"')
    errors = _errors(tmp_path, text)
    assert errors == [
        "registry_url = 'registry' is not an http:// or https:// URL with a host",
        "home_community_id = '1.2.3' is not 'urn:oid:' followed by an OID",
        "timezone = 'Mars/Olympus' is not a known IANA time zone (e.g. 'UTC', 'Europe/Paris')",
        ("pacs[1] 'hospital-a'.ae_title = 'A_VERY_LONG_AE_TITLE' is not a DICOM AE title (1-16 printable "
         "characters, no backslash)"),
        "pacs[1] 'hospital-a'.port = 70000 is not a TCP port (an integer 1-65535)",
    ]


def test_bad_institution_and_codes(tmp_path: Path) -> None:
    text = TOP.replace('"Demo^^^^^^^^^1.3.6.1.4.1.21367.13.40.1"', '"^^^^^^^^^1.2.3"') + """
        [codes]
        class_code = "IMAGES"
        type_code = { code = "18748-4" }
        typo_code = { code = "x", scheme = "y" }
        """ + PACS
    errors = _errors(tmp_path, text)
    assert errors[0] == "institution is not a valid XON: '^^^^^^^^^1.2.3' has no organization name (XON.1)"
    assert errors[1].startswith("unknown key 'typo_code' in codes (known keys here: class_code, ")
    assert "codes.class_code must be a table { code = \"...\", scheme = \"...\", display = \"...\" }, not 'IMAGES'" \
        in errors
    assert "codes.type_code.scheme is missing (the codingScheme)" in errors


def test_unknown_keys_and_types(tmp_path: Path) -> None:
    text = TOP + "repositry_url = \"http://x\"\n" + PACS.replace('host = "127.0.0.1"', "host = 127")
    errors = _errors(tmp_path, text)
    assert errors[0].startswith("unknown key 'repositry_url' in the top level (known keys here: ae_title, affinity_domain_oid")
    assert "pacs[1] 'hospital-a'.host must be a string, not int 127" in errors


def test_no_pacs_and_duplicate_names(tmp_path: Path) -> None:
    assert _one_error(tmp_path, TOP) == "no PACS is configured: add at least one [[pacs]] table"
    assert _one_error(tmp_path, TOP + PACS + PACS) == (
        "PACS name 'hospital-a' is used by 2 [[pacs]] tables; names must be unique")


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"ids.toml: is not valid TOML: .*line 1"):
        load_config(_write(tmp_path, "repository_unique_id = \n"))
    with pytest.raises(ConfigError, match=r"nope.toml: cannot read the configuration: No such file"):
        load_config(tmp_path / "nope.toml")


# --- the patient id mapping ------------------------------------------------------------------------------


def test_mapping_is_required_and_single(tmp_path: Path) -> None:
    no_mapping = PACS.replace('patient_id_mapping = { prefix = "A-" }', "")
    assert _one_error(tmp_path, TOP + no_mapping).startswith(
        "pacs[1] 'hospital-a'.patient_id_mapping is missing: say how local patient ids map to the affinity domain")
    two = PACS.replace('{ prefix = "A-" }', '{ prefix = "A-", table = "ids.csv" }')
    assert _one_error(tmp_path, TOP + two).startswith(
        "pacs[1] 'hospital-a'.patient_id_mapping must choose exactly one mapping, found a rewrite (prefix) and "
        "table: ")
    none = PACS.replace('{ prefix = "A-" }', "{ domain_issuer = false }")
    assert "found none" in _one_error(tmp_path, TOP + none)
    typo = PACS.replace('{ prefix = "A-" }', '{ prefx = "A-" }')
    assert _errors(tmp_path, TOP + typo)[0].startswith(
        "unknown key 'prefx' in pacs[1] 'hospital-a'.patient_id_mapping (known keys here: domain_issuer, prefix, ")


def test_issuer_oid_is_required_unless_derivable(tmp_path: Path) -> None:
    no_oid = PACS.replace('issuer_oid = "1.3.6.1.4.1.21367.13.30.1"\n', "")
    assert _one_error(tmp_path, TOP + no_oid).startswith(
        "pacs[1] 'hospital-a'.issuer_oid is missing: the OID of the PACS's patient id assigning authority")
    domain = no_oid.replace('{ prefix = "A-" }', "{ domain_issuer = true }")
    assert load_config(_write(tmp_path, TOP + domain)).pacs[0].issuer_oid == DOMAIN
    oid_issuer = no_oid.replace('"HOSP_A"', '"1.2.3.4"')
    assert load_config(_write(tmp_path, TOP + oid_issuer)).pacs[0].issuer_oid == "1.2.3.4"


def test_domain_mapping() -> None:
    m = PatientIdMapping("domain", DOMAIN, frozenset({"HOSP_A", DOMAIN}))
    assert m.to_domain("P1", "") == "P1" + CX
    assert m.to_domain(" P1 ", DOMAIN) == "P1" + CX
    assert m.to_domain("P1", f"&{DOMAIN}&ISO") == "P1" + CX
    assert m.to_domain("P1", "HOSP_A") == "P1" + CX
    assert m.to_domain("P1", "OTHER") is None  # another assigning authority: not ours to map
    assert m.to_domain("", "") is None
    assert m.to_domain("P^1", "") is None  # would break the CX


def test_rewrite_mapping() -> None:
    m = PatientIdMapping("rewrite", DOMAIN, frozenset({"HOSP_B"}), prefix="DOM-", suffix="-B")
    assert m.to_domain("123", "HOSP_B") == "DOM-123-B" + CX
    strip = PatientIdMapping("rewrite", DOMAIN, frozenset({"HOSP_B"}), strip_prefix="B", strip_suffix="X",
                             prefix="D")
    assert strip.to_domain("B123X") == "D123" + CX
    assert strip.to_domain("C123X") is None  # does not carry the local prefix
    assert strip.to_domain("B123") is None
    assert strip.to_domain("BX") is None  # nothing left
    assert strip.to_domain("B123X", "HOSP_C") is None


def test_table_mapping(tmp_path: Path) -> None:
    (tmp_path / "ids.csv").write_text("local_id,domain_id\n# a comment\nA1,D1\n\n A2 , D2 \nA1,D1\n")
    path = _write(tmp_path, TOP + PACS.replace('{ prefix = "A-" }', '{ table = "ids.csv" }'))
    config = load_config(path)
    m = config.pacs[0].patient_id_mapping
    assert m.kind == "table" and m.table_path == tmp_path / "ids.csv"
    assert m.to_domain("A1", "HOSP_A") == "D1" + CX
    assert m.to_domain("A2", "1.3.6.1.4.1.21367.13.30.1") == "D2" + CX
    assert m.to_domain("A2", "HOSP_A&1.3.6.1.4.1.21367.13.30.1&ISO") == "D2" + CX
    assert m.to_domain("A3", "HOSP_A") is None  # not in the table
    assert m.to_domain("A1", "HOSP_B") is None  # same local id, other hospital


@pytest.mark.parametrize(("content", "message"), [
    ("A1,D1,extra\n", "line 1: expected 2 columns 'local_id,domain_id', found 3"),
    ("A1,D1\nA1,D2\n", "line 2: local id 'A1' is mapped twice, to 'D1' and to 'D2'"),
    ("A1,\n", "line 1: the domain id is empty"),
    ("A1,D1^^^&1.2&ISO\n", "line 1: domain id 'D1^^^&1.2&ISO' contains an HL7 delimiter"),
])
def test_table_errors(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "ids.csv").write_text(content)
    with pytest.raises(ValueError, match="patient id table .*ids.csv " + message.replace("^", r"\^")):
        read_id_table(tmp_path / "ids.csv")
    error = _one_error(tmp_path, TOP + PACS.replace('{ prefix = "A-" }', '{ table = "ids.csv" }'))
    assert error.startswith("pacs[1] 'hospital-a'.patient_id_mapping.table: patient id table ")
    assert message in error


def test_missing_table_file(tmp_path: Path) -> None:
    error = _one_error(tmp_path, TOP + PACS.replace('{ prefix = "A-" }', '{ table = "missing.csv" }'))
    assert error == (f"pacs[1] 'hospital-a'.patient_id_mapping.table: cannot read patient id table "
                     f"{tmp_path / 'missing.csv'}: No such file or directory")


def test_local_authority_oid(tmp_path: Path) -> None:
    pacs = load_config(_write(tmp_path, TOP + PACS)).pacs[0]
    assert pacs.local_authority_oid("") == "1.3.6.1.4.1.21367.13.30.1"
    assert pacs.local_authority_oid("HOSP_A") == "1.3.6.1.4.1.21367.13.30.1"
    assert pacs.local_authority_oid("9.8.7") == "9.8.7"
    assert pacs.local_authority_oid("OTHER&9.8.7&ISO") == "9.8.7"
    assert pacs.local_authority_oid("OTHER") is None


# --- retrieval settings and adapters ---------------------------------------------------------------------


def test_retrieval_settings(tmp_path: Path) -> None:
    move = PACS.replace('port = 14242', 'port = 14242\nretrieve = "c-move"\nmove_port = 11113\ntimeout = 5')
    pacs = load_config(_write(tmp_path, TOP + move)).pacs[0]
    assert (pacs.retrieve, pacs.move_port, pacs.timeout) == ("c-move", 11113, 5.0)
    assert _one_error(tmp_path, TOP + PACS.replace('port = 14242', 'port = 14242\nretrieve = "c-move"')) == (
        "pacs[1] 'hospital-a'.move_port is missing (required for retrieve = \"c-move\": the port of our Storage SCP)")
    errors = _errors(tmp_path, TOP + PACS.replace('port = 14242', 'port = 14242\nretrieve = "wado"\ntimeout = 0'))
    assert errors == [
        "pacs[1] 'hospital-a'.retrieve = 'wado' is not a DIMSE retrieval (one of c-get, c-move)",
        "pacs[1] 'hospital-a'.timeout = 0 is not a positive number of seconds",
    ]


def test_make_adapter_for_each_protocol() -> None:
    config = load_config(EXAMPLE)
    a = make_adapter(config.pacs_named("hospital-a"))
    assert type(a).__name__ == "DimseAdapter"
    assert (a.name, a.ae_title, a.host, a.port, a.calling_aet, a.use_c_get) == (
        "hospital-a", "ORTHANC_A", "127.0.0.1", 14242, "XDSI_IDS", True)
    b = make_adapter(config.pacs_named("hospital-b"))
    try:
        assert type(b).__name__ == "DicomWebAdapter"
        assert (b.name, b.ae_title, b.base_url) == ("hospital-b", "ORTHANC_B", "http://127.0.0.1:18043/dicom-web")
    finally:
        b.close()
