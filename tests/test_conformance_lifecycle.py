"""The shared NIST ITI-57 (Metadata Update) and ITI-62 (Delete Document Set) cases, with the ITI-42 submissions
they build on and the ITI-18 queries that check their effects, end to end over HTTP and MLLP against our
registry, on SQLite and on PostgreSQL, with the conformance code list loaded."""

from __future__ import annotations

from conformance.report import text_report
from conformance.runner import run
from tests.conftest import start_registry


def test_shared_lifecycle_cases_pass(shared_data, db_url: str) -> None:  # type: ignore[no-untyped-def]
    codes = shared_data / "codes" / "conformance-union-codes.xml"
    with start_registry(db_url, codes_path=str(codes)) as reg:
        result = run(shared_data / "messages", registry=reg.url, repository=None, imaging_source=None,
                     mllp=reg.mllp, transactions={"ITI-42", "ITI-18", "ITI-57", "ITI-62"})
    report = text_report(result, verbose=True)
    print(report)
    assert not result.setup_errors, result.setup_errors
    assert result.count("FAIL") == 0, report
    ran = {r.case.transaction for r in result.results if r.outcome == "PASS"}
    assert {"ITI-57", "ITI-62"} <= ran, report
    # Every live ITI-57/ITI-62 case runs (the validate-only ITI-57 samples are not sent).
    lifecycle = [r for r in result.results if r.case.transaction in ("ITI-57", "ITI-62") and r.case.mode == "live"]
    assert lifecycle and all(r.outcome == "PASS" for r in lifecycle), report
