"""Recovery finishes interrupted submissions by re-sending their kept ITI-42 request, including one the
registry holds for patient reconciliation: its document must survive the crash window between the
registry's answer and the ledger update, and be served once an operator links the patient."""

from __future__ import annotations

import os

import pytest

from registry.reconcile import link
from repository import ledger
from repository.recovery import recover
from tests.conftest import start_registry, start_repository
from tests.test_repository import provide, retrieve, submission
from xdsi import samples
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import SoapCallError


class Crash(RuntimeError):
    """Stands for the process dying at the failure-injection point (the crash tests kill a real process)."""


def test_held_submission_survives_a_crash_and_is_served_after_linking(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    domain = samples.DEMO_DOMAIN_OID
    local = "LOC-42^^^&1.3.6.1.4.1.21367.99.1&ISO"  # a hospital's local id: another assigning authority
    domain_pid = samples.patient_id("DOM-42")
    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}", domain_oid=domain) as reg, \
            start_repository(reg.url, tmp_path / "repository", grace_seconds=0) as repo:
        reg.feed(domain_pid)
        content = os.urandom(5000)
        sub = submission(local, content)

        def crash(name: str) -> None:
            if name == "after_register":
                raise Crash(name)

        monkeypatch.setattr(repo.repo, "crash_point", crash)
        with pytest.raises(SoapCallError):  # the handler died after the registry held it: no RegistryResponse
            provide(repo, sub, content)
        with repo.repo.engine.connect() as conn:
            assert [h.state for h in ledger.lookup(conn, [sub.documents[0].unique_id]).values()] == [ledger.PENDING]

        report = recover(repo.repo, grace_seconds=0)
        assert (report.registered, report.forgotten) == (1, 0)
        with repo.repo.engine.connect() as conn:
            assert [h.state for h in ledger.lookup(conn, [sub.documents[0].unique_id]).values()] == [ledger.REGISTERED]

        result = link(reg.engine, local, domain_pid, operator="test-operator")
        assert result.registered_items
        status, docs, _errors = retrieve(repo, sub.documents[0].unique_id)
        assert status == v.RESPONSE_SUCCESS and docs == {sub.documents[0].unique_id: content}
