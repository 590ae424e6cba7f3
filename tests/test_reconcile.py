"""Patient reconciliation end to end, on SQLite and PostgreSQL: ITI-42 submissions whose patientId is a
local id are linked automatically by a national id fed over ITI-8, or held (Success with a warning) until
an operator links them with ``xdsi reconcile`` or the registry's HTTP endpoint; linking also moves entries
registered under a wrong id (new versions); the RAD-68 path through a real repository keeps the document."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from lxml import etree
from sqlalchemy import select

from registry import reconcile
from registry.mllp import send_mllp
from registry.patient_feed import build_adt
from registry.register import register, reread
from registry.storage import schema as s
from registry.storage.engine import make_engine
from registry.storage.patients import PatientStore
from tests.conftest import REPO, start_registry, start_repository
from xdsi import samples
from xdsi.ebxml.namespaces import RIM, RS, q
from xdsi.ebxml.query import adhoc_query, find_documents, quote
from xdsi.metadata import vocabulary as v
from xdsi.metadata.model import Association, Folder, Submission
from xdsi.soap.client import call, call_mtom
from xdsi.transform.ebrim_write import write_provide_and_register, write_submission
from xdsi.validate import errors as E

ITI42 = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
DOMAIN = samples.DEMO_DOMAIN_OID
HOSPITAL = "1.3.6.1.4.1.21367.13.30.1"  # a hospital's local patient id authority
NATIONAL = "2.16.840.1.113883.4.1"  # national person ids
TOKEN = "op-token-123"


def local_id(n: str) -> str:
    return f"{n}^^^&{HOSPITAL}&ISO"


def national_id(n: str) -> str:
    return f"{n}^^^&{NATIONAL}&ISO"


def feed(reg, pid: str, *others: str, birth: str = "19700101") -> None:  # type: ignore[no-untyped-def]
    ack = send_mllp(*reg.mllp, build_adt("A04", pid, name="Doe^Jane", birth_date=birth, sex="F", other_ids=others))
    assert b"MSA|AA" in ack, ack


def study(pid: str, *pid3: str, birth: str = "19700101") -> Submission:
    """A source's submission under ``pid`` whose sourcePatientInfo PID-3 lists ``pid`` and ``pid3``."""
    sub = samples.imaging_study_submission(pid)
    sub.documents[0].source_patient_info = ["PID-3|" + "~".join((pid, *pid3)), "PID-5|Doe^Jane^^^",
                                            f"PID-7|{birth}", "PID-8|F"]
    return sub


def iti42(reg, sub: Submission | etree._Element) -> etree._Element:  # type: ignore[no-untyped-def]
    return call(reg.url, ITI42, sub if isinstance(sub, etree._Element) else write_submission(sub))


def errors(resp: etree._Element) -> list[tuple[str, str, str]]:
    """(code, severity suffix, message) of each RegistryError."""
    return [(e.get("errorCode"), e.get("severity").rsplit(":", 1)[-1], e.get("codeContext"))
            for e in resp.iter(q(RS, "RegistryError"))]


def held_item(resp: etree._Element) -> int:
    """The item number of a held submission's answer: Success with one XDSUnknownPatientId warning."""
    assert resp.get("status") == v.RESPONSE_SUCCESS, etree.tostring(resp)
    [(code, severity, message)] = errors(resp)
    assert (code, severity) == (E.XDSUnknownPatientId, "Warning")
    return int(re.search(r"held for reconciliation as item (\d+)", message).group(1))


def entries(reg, pid: str, *statuses: str) -> list[etree._Element]:  # type: ignore[no-untyped-def]
    resp = call(reg.url, ITI18, find_documents(pid, statuses=statuses or (v.STATUS_APPROVED,)))
    assert resp.get("status") == v.RESPONSE_SUCCESS
    return resp.findall(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ExtrinsicObject')}")


def ext_id(el: etree._Element, scheme: str) -> str:
    return next(ei.get("value") for ei in el.iter(q(RIM, "ExternalIdentifier"))
                if ei.get("identificationScheme") == scheme)


def slot(el: etree._Element, name: str) -> list[str]:
    for sl in el.iter(q(RIM, "Slot")):
        if sl.get("name") == name:
            return [val.text for val in sl.iter(q(RIM, "Value"))]
    return []


def admin(reg, method: str, path: str, token: str | None = TOKEN, **kw) -> httpx.Response:  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, reg.base_url + path, headers=headers, timeout=60, trust_env=False, **kw)


def xdsi(*args: str) -> subprocess.CompletedProcess[str]:
    """``xdsi reconcile ...`` in its own process, as an operator runs it."""
    return subprocess.run([sys.executable, "-m", "xdsi.cli", "reconcile", *args], check=False, cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def xdsi_here(capsys, *args: str) -> tuple[int, str, str]:  # type: ignore[no-untyped-def]
    """The same command in this process (faster; the subprocess runs show the installed entry works)."""
    from xdsi.cli import main

    code = main(["reconcile", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def reg(db_url: str):  # type: ignore[no-untyped-def]
    with start_registry(db_url, domain_oid=DOMAIN, national_id_oids=[NATIONAL], admin_token=TOKEN) as r:
        yield r


# --- automatic linking ----------------------------------------------------------------------------------


def test_national_id_links_a_local_id_automatically(reg) -> None:  # type: ignore[no-untyped-def]
    dom, loc, nat = samples.patient_id("REC-A1"), local_id("MRN-A1"), national_id("NAT-A1")
    feed(reg, dom, nat)
    # Without a national id the submission is held; with one it is linked and registered, with the held one.
    first = held_item(iti42(reg, study(loc)))
    resp = iti42(reg, study(loc, nat))
    assert resp.get("status") == v.RESPONSE_SUCCESS and errors(resp) == []
    found = entries(reg, dom)
    assert len(found) == 2
    assert {ext_id(e, v.DE_PATIENT_ID) for e in found} == {dom}
    assert {slot(e, "sourcePatientId")[0] for e in found} == {loc}  # the source's own id stays
    [item] = reconcile.list_items(reg.engine, "linked")
    assert (item["id"], item["patient_id"], item["resolved_by"]) == (first, dom, reconcile.AUTO_LINKED_BY)
    [lnk] = reconcile.list_links(reg.engine)
    assert (lnk["local_patient_id"], lnk["patient_id"], lnk["method"], lnk["linked_by"]) == \
        (loc, dom, "auto", reconcile.AUTO_LINKED_BY)
    # From now on the link alone routes the local id.
    resp = iti42(reg, study(loc))
    assert resp.get("status") == v.RESPONSE_SUCCESS and errors(resp) == []
    assert len(entries(reg, dom)) == 3 and reconcile.list_items(reg.engine) == []


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_ambiguous_or_inconsistent_national_ids_are_held_with_the_reason(reg) -> None:  # type: ignore[no-untyped-def]
    nat, other = national_id("NAT-B1"), national_id("NAT-B2")
    feed(reg, samples.patient_id("REC-B1"), nat)
    feed(reg, samples.patient_id("REC-B2"), nat)  # the same national id fed for two patients
    feed(reg, samples.patient_id("REC-B3"), other, birth="19800101")
    held_item(iti42(reg, study(local_id("MRN-B1"), nat)))
    held_item(iti42(reg, study(local_id("MRN-B2"), other, birth="19700101")))
    held_item(iti42(reg, study(local_id("MRN-B3"), national_id("NAT-NOBODY"))))
    reasons = [i["reason"] for i in reconcile.list_items(reg.engine)]
    assert "matches 2 patients" in reasons[0]
    assert "birth dates differ (19700101 in the submission, 19800101 fed)" in reasons[1]
    assert "matches no patient" in reasons[2]
    assert reconcile.list_items(reg.engine)[0]["national_ids"] == [nat]


# --- held, then linked over HTTP -----------------------------------------------------------------------


def test_held_submission_is_registered_when_linked_over_http(reg) -> None:  # type: ignore[no-untyped-def]
    dom, loc = samples.patient_id("REC-C1"), local_id("MRN-C1")
    feed(reg, dom)
    request = write_submission(study(loc))
    item = held_item(iti42(reg, request))
    assert item == held_item(iti42(reg, request))  # a retry finds the same item
    assert entries(reg, dom) == [] and entries(reg, loc) == []

    listed = admin(reg, "GET", "/reconciliation?state=open").json()["items"]
    assert [(i["id"], i["submitted_patient_id"], i["demographics"]["birth_date"]) for i in listed] == \
        [(item, loc, "19700101")]
    detail = admin(reg, "GET", f"/reconciliation/{item}").json()
    assert "SubmitObjectsRequest" in detail["request_xml"] and loc.replace("&", "&amp;") in detail["request_xml"]

    unknown = admin(reg, "POST", f"/reconciliation/{item}/link",
                    json={"domain_patient_id": samples.patient_id("NOBODY"), "operator": "alice"})
    assert unknown.status_code == 422 and "not known to the registry" in unknown.json()["error"]
    no_operator = admin(reg, "POST", f"/reconciliation/{item}/link", json={"domain_patient_id": dom})
    assert no_operator.status_code == 422 and "operator" in no_operator.json()["error"]
    assert admin(reg, "POST", "/reconciliation/999/link",
                 json={"domain_patient_id": dom, "operator": "alice"}).status_code == 404
    bad_json = admin(reg, "POST", f"/reconciliation/{item}/link", content=b"{nope")
    assert bad_json.status_code == 400 and "not JSON" in bad_json.json()["error"]
    assert entries(reg, dom) == []  # refused requests changed nothing

    linked = admin(reg, "POST", f"/reconciliation/{item}/link",
                   json={"domain_patient_id": dom, "operator": "alice", "note": "checked the chart"})
    assert linked.status_code == 200, linked.text
    assert linked.json()["registered_items"] == [item] and not linked.json()["already_linked"]
    [entry] = entries(reg, dom)
    assert ext_id(entry, v.DE_PATIENT_ID) == dom
    done = admin(reg, "GET", "/reconciliation?state=linked").json()["items"]
    assert [(i["id"], i["patient_id"], i["resolved_by"], i["note"]) for i in done] == \
        [(item, dom, "alice", "checked the chart")]
    assert done[0]["resolved_at"]

    again = admin(reg, "POST", f"/reconciliation/{item}/link", json={"domain_patient_id": dom, "operator": "bob"})
    assert again.status_code == 200 and again.json()["already_linked"] and again.json()["registered_items"] == []
    assert len(entries(reg, dom)) == 1
    refused = admin(reg, "POST", f"/reconciliation/{item}/reject", json={"operator": "bob"})
    assert refused.status_code == 409 and "cannot be rejected" in refused.json()["error"]
    other = samples.patient_id("REC-C2")
    feed(reg, other)
    conflict = admin(reg, "POST", f"/reconciliation/{item}/link", json={"domain_patient_id": other, "operator": "b"})
    assert conflict.status_code == 409 and "already linked" in conflict.json()["error"]

    resp = iti42(reg, study(loc))  # later submissions with the local id follow the link
    assert resp.get("status") == v.RESPONSE_SUCCESS and errors(resp) == []
    assert len(entries(reg, dom)) == 2


def test_endpoint_needs_the_admin_token(reg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    assert admin(reg, "GET", "/reconciliation", token=None).status_code == 401
    wrong = admin(reg, "GET", "/reconciliation", token="guess")
    assert wrong.status_code == 401 and wrong.headers["www-authenticate"].startswith("Bearer")
    assert admin(reg, "POST", "/reconciliation/1/link", token="guess", json={}).status_code == 401
    assert admin(reg, "GET", "/reconciliation?state=bogus").status_code == 422
    with start_registry(f"sqlite:///{tmp_path / 'plain.db'}") as plain:
        off = admin(plain, "GET", "/reconciliation")
        assert off.status_code == 403 and "--admin-token" in off.json()["error"]


# --- the command line ----------------------------------------------------------------------------------


def test_cli_lists_links_and_rejects(reg, db_url: str, capsys) -> None:  # type: ignore[no-untyped-def]
    dom = samples.patient_id("REC-D1")
    feed(reg, dom)
    rejected_request = write_submission(study(local_id("MRN-D2")))
    keep = held_item(iti42(reg, study(local_id("MRN-D1"))))
    drop = held_item(iti42(reg, rejected_request))

    listed = xdsi("list", "--db", db_url)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split()[:3] == ["ITEM", "STATE", "RECEIVED"]
    assert any(line.startswith(f"{keep} ") and "MRN-D1" in line and "Doe^Jane" in line for line in lines)

    code, out, err = xdsi_here(capsys, "reject", str(drop), "--by", "carol", "--note", "test study", "--db", db_url)
    assert code == 0 and f"item {drop} rejected by carol" in out, err
    code, out, err = xdsi_here(capsys, "link", str(drop), dom, "--by", "carol", "--db", db_url)
    assert code == 1 and "rejected by carol" in err
    code, out, err = xdsi_here(capsys, "link", str(keep), samples.patient_id("NOBODY"), "--by", "carol", "--db", db_url)
    assert code == 1 and "not known to the registry" in err

    linked = xdsi("link", str(keep), dom, "--by", "dave", "--db", db_url)
    assert linked.returncode == 0, linked.stderr
    assert f"linked to {dom}" in linked.stdout and f"held submissions registered: {keep}" in linked.stdout
    assert len(entries(reg, dom)) == 1
    code, out, err = xdsi_here(capsys, "link", str(keep), dom, "--by", "dave", "--db", db_url)
    assert code == 0 and "already linked" in out

    code, out, err = xdsi_here(capsys, "list", "--state", "all", "--json", "--db", db_url)
    assert [(i["id"], i["state"], i["resolved_by"]) for i in json.loads(out)] == [(keep, "linked", "dave"),
                                                                                 (drop, "rejected", "carol")]
    code, out, err = xdsi_here(capsys, "links", "--db", db_url)
    assert "MRN-D1" in out and "manual" in out and "dave" in out
    # A rejected submission sent again is refused, never registered.
    again = iti42(reg, rejected_request)
    assert again.get("status") == v.RESPONSE_FAILURE
    assert errors(again)[0][0] == E.XDSUnknownPatientId and "rejected by carol" in errors(again)[0][2]
    assert len(entries(reg, dom)) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_cli_over_http(reg, capsys) -> None:  # type: ignore[no-untyped-def]
    dom = samples.patient_id("REC-E1")
    feed(reg, dom)
    item = held_item(iti42(reg, study(local_id("MRN-E1"))))
    code, out, err = xdsi_here(capsys, "list", "--registry-url", reg.url, "--token", "nope")
    assert code == 1 and "HTTP 401" in err
    code, out, err = xdsi_here(capsys, "list", "--registry-url", reg.url, "--token", TOKEN)
    assert code == 0 and "MRN-E1" in out, err
    linked = xdsi("link", str(item), dom, "--by", "erin", "--registry-url", reg.url, "--token", TOKEN)
    assert linked.returncode == 0 and f"held submissions registered: {item}" in linked.stdout, linked.stderr
    assert len(entries(reg, dom)) == 1
    code, out, err = xdsi_here(capsys, "list", "--registry-url", "http://127.0.0.1:9", "--token", TOKEN)
    assert code == 2 and "cannot reach the registry" in err


# --- moving entries registered under a wrong id --------------------------------------------------------


def test_link_moves_registered_entries_as_new_versions(reg) -> None:  # type: ignore[no-untyped-def]
    wrong, dom = samples.patient_id("REC-WRONG"), samples.patient_id("REC-F1")
    feed(reg, wrong)  # fed by mistake: the same person as dom
    feed(reg, dom)
    sub = samples.imaging_study_submission(wrong)
    sub.folders.append(Folder(id="Folder01", unique_id=samples.uid(), patient_id=wrong, title="Priors",
                              codes=[samples.MODALITIES["CT"]]))
    sub.associations += [
        Association(id="a2", association_type=v.HAS_MEMBER, source_object="SubmissionSet01", target_object="Folder01"),
        Association(id="a3", association_type=v.HAS_MEMBER, source_object="Folder01", target_object="Document01"),
        Association(id="a4", association_type=v.HAS_MEMBER, source_object="SubmissionSet01", target_object="a3"),
    ]
    assert iti42(reg, sub).get("status") == v.RESPONSE_SUCCESS
    [old] = entries(reg, wrong)

    resp = admin(reg, "POST", "/reconciliation/links",
                 json={"local_patient_id": wrong, "domain_patient_id": dom, "operator": "frank"})
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["moved"]) == 2 and resp.json()["not_moved"] == []
    assert entries(reg, wrong) == []
    [new] = entries(reg, dom)
    assert new.get("lid") == old.get("id") and new.get("id") != old.get("id")
    assert ext_id(new, v.DE_PATIENT_ID) == dom
    assert new.find(q(RIM, "VersionInfo")).get("versionName") == "2"

    # MetadataLevel 2 shows both versions; they belong to two patients, so LeafClass would be refused
    # (XDSResultNotSinglePatient): ObjectRefs, then each version on its own.
    params = {"$XDSDocumentEntryUniqueId": f"({quote(sub.documents[0].unique_id)})", "$MetadataLevel": "2"}
    refs = call(reg.url, ITI18, adhoc_query(v.SQ_GET_DOCUMENTS, params, return_type="ObjectRef"))
    assert {r.get("id") for r in refs.iter(q(RIM, "ObjectRef"))} == {old.get("id"), new.get("id")}
    versions = {}
    for ident in (old.get("id"), new.get("id")):
        resp = call(reg.url, ITI18, adhoc_query(v.SQ_GET_DOCUMENTS, {"$XDSDocumentEntryEntryUUID": f"({quote(ident)})",
                                                                      "$MetadataLevel": "2"}))
        [e] = resp.iter(q(RIM, "ExtrinsicObject"))
        versions[ident] = (e.find(q(RIM, "VersionInfo")).get("versionName"), e.get("status").rsplit(":", 1)[-1],
                           ext_id(e, v.DE_PATIENT_ID))
    assert versions == {old.get("id"): ("1", "Deprecated", wrong), new.get("id"): ("2", "Approved", dom)}

    with reg.engine.connect() as c:
        ro = s.registry_object
        folders = c.execute(select(ro).where(ro.c.kind == s.FOLDER).order_by(ro.c.version)).all()
        assert [(f.version, f.status, f.patient_id) for f in folders] == [(1, "D", wrong), (2, "A", dom)]
        members = c.execute(select(ro.c.target_object).where(ro.c.source_object == folders[1].id,
                                                             ro.c.assoc_type == v.HAS_MEMBER)).scalars().all()
        assert members == [new.get("id")]  # the new Folder version holds the new DocumentEntry version
        update_ss = c.execute(select(ro).where(ro.c.kind == s.SUBMISSION_SET, ro.c.patient_id == dom)).one()
    ss = reread(update_ss.xml)
    assert ss.authors[0].person == "frank" and wrong in ss.comments
    assert PatientStore(reg.engine).get(wrong)["merged_into"] == dom

    again = admin(reg, "POST", "/reconciliation/links",
                  json={"local_patient_id": wrong, "domain_patient_id": dom, "operator": "frank"})
    assert again.json()["already_linked"] and again.json()["moved"] == []
    resp = iti42(reg, samples.imaging_study_submission(wrong))  # the mistaken id now follows the link
    assert resp.get("status") == v.RESPONSE_SUCCESS and errors(resp) == []
    assert len(entries(reg, dom)) == 2


# --- conformance behaviour stays ------------------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_unknown_domain_id_and_reconciliation_off_still_fail(reg, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # An unknown id of the affinity domain's own authority is not a local id: ITI TF's failure.
    resp = iti42(reg, study(samples.patient_id("NEVER-FED")))
    assert resp.get("status") == v.RESPONSE_FAILURE and errors(resp)[0][:2] == (E.XDSUnknownPatientId, "Error")
    with start_registry(f"sqlite:///{tmp_path / 'off.db'}", domain_oid=DOMAIN, reconciliation=False) as off:
        resp = iti42(off, study(local_id("MRN-G1")))
        assert resp.get("status") == v.RESPONSE_FAILURE and errors(resp)[0][:2] == (E.XDSUnknownPatientId, "Error")
    assert reconcile.list_items(reg.engine, None) == []


def test_without_domain_oid_only_operator_links_apply(tmp_path: Path) -> None:
    """No domain OID: a local id cannot be told from an unfed domain id, so nothing is held (the TF
    failure, as in every conformance test), but a link an operator made still routes the id."""
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    dom, loc = samples.patient_id("KNOWN"), local_id("MRN-H1")
    PatientStore(engine).upsert_patient(dom, {})
    policy = reconcile.Reconciliation(national_id_oids=(NATIONAL,))
    refused = register(engine, write_submission(study(loc)), reconciliation=policy)
    assert [e.code for e in refused.errors] == [E.XDSUnknownPatientId] and not refused.ok
    assert reconcile.link(engine, loc, dom, operator="ivan").registered_items == []
    routed = register(engine, write_submission(study(loc)), reconciliation=policy)
    assert routed.ok and routed.errors == []
    with engine.connect() as c:
        assert c.execute(select(s.registry_object.c.patient_id).where(
            s.registry_object.c.kind == s.DOCUMENT_ENTRY)).scalars().all() == [dom]
    engine.dispose()


def test_a_held_submission_is_checked_like_any_other(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    policy = reconcile.Reconciliation(domain_oid=DOMAIN)
    held = register(engine, write_submission(study(local_id("MRN-J1"))), reconciliation=policy)
    assert held.ok and [(e.code, e.is_error) for e in held.errors] == [(E.XDSUnknownPatientId, False)]
    # A uniqueId already held elsewhere, or an association to nothing: refused at once, not held.
    dup = study(local_id("MRN-J2"))
    dup.documents[0].unique_id = reconcile.list_items(engine)[0]["unique_ids"][0]
    refused = register(engine, write_submission(dup), reconciliation=policy)
    assert [e.code for e in refused.errors] == [E.XDSUnknownPatientId, E.XDSDuplicateUniqueIdInRegistry]
    dangling = study(local_id("MRN-J3"))
    dangling.associations.append(Association(id="r", association_type=v.RPLC, source_object="Document01",
                                             target_object="urn:uuid:" + "0" * 8 + "-0000-4000-8000-" + "0" * 12))
    refused = register(engine, write_submission(dangling), reconciliation=policy)
    assert E.XDSRegistryMetadataError in [e.code for e in refused.errors]
    assert len(reconcile.list_items(engine)) == 1
    engine.dispose()


def test_migration_indexes_other_ids_fed_before_it(tmp_path: Path) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text

    from registry.storage.engine import MIGRATIONS

    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0002")
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO patient (patient_id, demographics, merged_into, updated) VALUES "
                          "(:p, :d, NULL, '2025-01-01T00:00:00+00:00')"),
                     {"p": samples.patient_id("OLD"), "d": json.dumps({"other_ids": [national_id("NAT-OLD")]})})
    engine.dispose()
    engine = make_engine(f"sqlite:///{tmp_path / 'r.db'}")  # upgrades to head again
    with engine.connect() as conn:
        rows = conn.execute(select(s.patient_other_id.c.patient_id, s.patient_other_id.c.other_id)).all()
    assert rows == [(samples.patient_id("OLD"), national_id("NAT-OLD"))]
    engine.dispose()


# --- RAD-68 through the repository ---------------------------------------------------------------------


def test_rad68_for_an_unlinked_patient_is_kept_and_served_after_linking(tmp_path: Path) -> None:
    from imaging_source.config import ImagingSourceConfig, PacsConfig, PatientIdMapping
    from imaging_source.manifest import kos_bytes, kos_for, submission_for
    from imaging_source.pacs.base import Instance, Series, Study
    from tests.test_repository import retrieve

    mapping = PatientIdMapping("table", DOMAIN, frozenset({"HOSP_A", HOSPITAL}), table={})
    pacs = PacsConfig(name="hospital-a", protocol="dimse", patient_id_mapping=mapping, ae_title="PACS_A",
                      host="127.0.0.1", port=11112, default_issuer="HOSP_A", issuer_oid=HOSPITAL)
    config = ImagingSourceConfig(
        repository_unique_id="1.3.6.1.4.1.21367.13.80.110", source_id=samples.DEMO_SOURCE_ID,
        repository_url="http://127.0.0.1:1/repository", registry_url="http://127.0.0.1:1/registry",
        affinity_domain_oid=DOMAIN, institution="Hospital A^^^^^^^^^1.3.6.1.4.1.21367.13.40.1", pacs=(pacs,))
    st = Study(pacs="hospital-a", study_instance_uid=samples.uid(), patient_id="MRN-R1", issuer_of_patient_id="HOSP_A",
               patient_name="Doe^Jane", patient_birth_date="19700101", patient_sex="F", study_date="20250102",
               modalities_in_study=["CT"],
               series=[Series(samples.uid(), "CT", "CHEST", 1,
                              instances=[Instance("1.2.840.10008.5.1.4.1.1.2", samples.uid(), 1)])])
    ds = kos_for(st, config)
    data = kos_bytes(ds)
    # The source has no domain id for its patient: it submits its local id.
    sub = submission_for(st, ds, data, config=config, domain_patient_id=local_id("MRN-R1"))
    de = sub.documents[0]
    de.hash = de.size = de.repository_unique_id = ""
    dom = samples.patient_id("REC-R1")

    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}", domain_oid=DOMAIN, admin_token=TOKEN) as reg, \
            start_repository(reg.url, tmp_path / "repository") as repo:
        feed(reg, dom)
        with httpx.Client(timeout=60) as client:
            resp = call_mtom(repo.url, ITI41, write_provide_and_register(sub, {de.id: "kos@test"}),
                             [("kos@test", "application/dicom", data)], client=client)
        item = held_item(resp)  # Success with the registry's warning, relayed by the repository
        assert entries(reg, dom) == []
        status, docs, _ = retrieve(repo, de.unique_id)  # the repository holds the document meanwhile
        assert docs == {de.unique_id: data}

        linked = admin(reg, "POST", f"/reconciliation/{item}/link", json={"domain_patient_id": dom, "operator": "gus"})
        assert linked.status_code == 200, linked.text
        [entry] = entries(reg, dom)
        assert ext_id(entry, v.DE_UNIQUE_ID) == de.unique_id
        assert slot(entry, "repositoryUniqueId") == [repo.repo.config.repository_unique_id]
        status, docs, codes = retrieve(repo, de.unique_id)
        assert status == v.RESPONSE_SUCCESS and docs == {de.unique_id: data}, codes
