"""The benchmark loader (benchmarks.synthetic): counts, distribution, rows identical to what the registry
stores for the same objects, and a real ITI-18 FindDocuments over the loaded data."""

from __future__ import annotations

import contextlib
import random
from collections import Counter

import pytest
from lxml import etree
from sqlalchemy import func, select

from benchmarks import synthetic
from registry.storage import schema as s
from registry.storage.engine import make_engine
from registry.storage.objects import row_for
from registry.storedquery import run_stored_query
from xdsi.ebxml.namespaces import QUERY, RIM, q
from xdsi.metadata import vocabulary as v
from xdsi.transform.ebrim_read import read_registry_object

from tests.conftest import throwaway_pg_database

ENTRIES, PATIENTS = 2000, 20


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loaded(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """One load per backend, shared by the tests of this module (they only read)."""
    with contextlib.ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path_factory.mktemp('synthetic') / 'registry.db'}"
        else:
            url = stack.enter_context(throwaway_pg_database())
        engine = make_engine(url)
        stack.callback(engine.dispose)
        # chunk=700: several transactions, the last one partial.
        yield engine, synthetic.load(engine, ENTRIES, PATIENTS, seed=7, progress=False, chunk=700)


def _find_documents(patient: str) -> etree._Element:
    req = etree.Element(q(QUERY, "AdhocQueryRequest"), nsmap={"query": QUERY, "rim": RIM})
    etree.SubElement(req, q(QUERY, "ResponseOption"), returnComposedObjects="true", returnType="LeafClass")
    aq = etree.SubElement(req, q(RIM, "AdhocQuery"), id=v.SQ_FIND_DOCUMENTS)
    for name, value in (("$XDSDocumentEntryPatientId", f"'{patient}'"),
                        ("$XDSDocumentEntryStatus", f"('{v.STATUS_APPROVED}')")):
        slot = etree.SubElement(aq, q(RIM, "Slot"), name=name)
        etree.SubElement(etree.SubElement(slot, q(RIM, "ValueList")), q(RIM, "Value")).text = value
    return req


def test_counts_and_distribution(loaded) -> None:
    engine, result = loaded
    ro = s.registry_object
    with engine.connect() as conn:
        kinds = dict(conn.execute(select(ro.c.kind, func.count()).group_by(ro.c.kind)).all())
        per_patient = dict(conn.execute(select(ro.c.patient_id, func.count()).where(ro.c.kind == s.DOCUMENT_ENTRY)
                                        .group_by(ro.c.patient_id)).all())
        n_patients = conn.execute(select(func.count()).select_from(s.patient)).scalar_one()
        n_values = conn.execute(select(func.count()).select_from(s.object_value)).scalar_one()
        statuses = set(conn.execute(select(ro.c.status).distinct()).scalars())
    assert kinds == {s.DOCUMENT_ENTRY: ENTRIES, s.SUBMISSION_SET: ENTRIES, s.ASSOCIATION: ENTRIES}
    assert statuses == {"A"}
    assert n_patients == PATIENTS and len(per_patient) == PATIENTS
    assert sum(per_patient.values()) == ENTRIES
    assert result.target_patients == synthetic.target_patient_ids(PATIENTS)
    assert len(result.target_patients) == 1
    for pid in result.target_patients:
        assert per_patient[pid] == synthetic.TARGET_ENTRIES
    assert result.registry_object_rows == 3 * ENTRIES and result.object_value_rows == n_values
    assert result.db_bytes > 0


def test_rows_are_what_the_registry_stores(loaded) -> None:
    """Every sampled row equals row_for() of its own stored XML read back: the template substitution
    produced consistent columns, multi-valued attributes and well-formed ebRIM."""
    engine, _ = loaded
    ro, ov = s.registry_object, s.object_value
    with engine.connect() as conn:
        pks = random.Random(1).sample(range(1, 3 * ENTRIES + 1), 60)
        rows = conn.execute(select(ro).where(ro.c.pk.in_(pks))).all()
        values = Counter(conn.execute(select(ov.c.object_pk, ov.c.attr, ov.c.value).where(ov.c.object_pk.in_(pks))).all())
        ids = conn.execute(select(ro.c.id)).scalars().all()
    assert len(set(ids)) == len(ids)
    expected_values: Counter = Counter()
    for row in rows:
        el = etree.fromstring('<r xmlns:rim="%s">%s</r>' % (RIM, row.xml))[0]
        obj = read_registry_object(el)
        want, multi = row_for(obj, row.xml)
        got = row._mapping
        for col, val in want.items():
            assert got[col] == val, (row.pk, col)
        expected_values.update((row.pk, a, val) for a, val in multi)
        if row.kind == s.DOCUMENT_ENTRY:
            assert obj.mime_type == "application/dicom"
            assert obj.format_code.key() == "1.2.840.10008.5.1.4.1.1.88.59^^1.2.840.10008.2.6.1"
            assert [r.rsplit("^", 1)[-1] for r in obj.reference_ids] == [
                "urn:ihe:iti:xds:2013:studyInstanceUID", "urn:ihe:iti:xds:2013:accession"]
            assert len(obj.event_codes) == 2 and len(obj.authors) == 1
            assert len({el.get("id") for el in el.iter() if el.get("id")}) == 12  # DE + author + 8 codes + 2 ExternalIdentifiers
    assert values == expected_values


def test_find_documents_returns_the_target_patients_entries(loaded) -> None:
    engine, result = loaded
    pid = result.target_patients[0]
    ro = s.registry_object
    with engine.connect() as conn:
        want = set(conn.execute(select(ro.c.id).where(ro.c.patient_id == pid, ro.c.kind == s.DOCUMENT_ENTRY)).scalars())
        body = run_stored_query(conn, _find_documents(pid))
    resp = etree.fromstring(body)
    assert resp.get("status") == v.RESPONSE_SUCCESS
    found = [el.get("id") for el in resp.iter(q(RIM, "ExtrinsicObject"))]
    assert len(found) == synthetic.TARGET_ENTRIES == len(want)
    assert set(found) == want


def test_too_few_entries_is_refused() -> None:
    with pytest.raises(ValueError, match="too few"):
        synthetic.entries_per_patient(100, 200, random.Random(1))
