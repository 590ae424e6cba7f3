"""The shared ITI-41, ITI-43 and RAD-68 cases (and the ITI-42/ITI-18 cases around them) end to end: the
runner sends them over HTTP (MTOM/XOP, and inline base64) to our repository, which registers with our
registry."""

from __future__ import annotations

import pytest

from conformance.report import text_report
from conformance.runner import run
from tests.conftest import start_registry, start_repository


@pytest.mark.parametrize("inline", [False, True], ids=["mtom", "inline"])
def test_shared_repository_cases_pass(shared_data, tmp_path, inline: bool) -> None:  # type: ignore[no-untyped-def]
    codes = shared_data / "codes" / "conformance-union-codes.xml"
    with start_registry(f"sqlite:///{tmp_path / 'registry.db'}", codes_path=str(codes)) as reg, \
            start_repository(reg.url, tmp_path / "repository") as repo:
        result = run(shared_data / "messages", registry=reg.url, repository=repo.url, imaging_source=None,
                     mllp=reg.mllp, transactions={"ITI-42", "ITI-18", "ITI-41", "ITI-43", "RAD-68"}, inline=inline)
    report = text_report(result, verbose=True)
    print(report)
    assert not result.setup_errors, result.setup_errors
    assert result.count("FAIL") == 0, report
    ran = {r.case.transaction for r in result.results if r.outcome == "PASS"}
    assert {"ITI-41", "ITI-43", "RAD-68"} <= ran, report
