"""Run the conformance cases against the actors under test, connectathon style.

Order (conformance-data README, "Suggested run"): register the patients over ITI-8, run the Stored Query fixture
groups, then every ``live`` group in ``step`` order. A case whose ``requires`` did not pass is skipped, not failed,
so one broken submission shows up once.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from lxml import etree

from .cases import Case, load_cases, requirement_key, run_order, static_skips
from .check import judge
from .patients import patients_to_register, register_patients
from .report import FAIL, PASS, SKIP, CaseResult, RunResult
from .wire import ACTOR_OF, load_message, send

#: Seconds to wait for an actor's answer (a PnR of a large KOS or a Retrieve can take a while).
HTTP_TIMEOUT = 60.0


def selected_transactions(urls: dict[str, str | None], transactions: set[str] | None) -> set[str]:
    """Transactions that will be sent: those asked for (all by default) whose actor URL is given."""
    return {t for t, actor in ACTOR_OF.items() if urls.get(actor) and (transactions is None or t in transactions)}


def _requirement_problem(case: Case, done: dict[str, CaseResult], known: set[str]) -> str | None:
    for req in case.requires:
        key = requirement_key(req)
        if key not in known:
            continue  # e.g. a hold-out case requiring a shared one: the operator ran it before
        prior = done.get(key)
        if prior is None:
            return f"requires {key} (not run)"
        if prior.outcome != PASS:
            return f"requires {key} ({'failed' if prior.outcome == FAIL else 'skipped'})"
    return None


def run_case(client: httpx.Client, case: Case, url: str, *, inline: bool = False) -> CaseResult:
    """Send one case and judge the answer; transport problems are failures with the error as reason."""
    started = time.monotonic()
    try:
        response = send(client, url, load_message(case.file), case.transaction, inline=inline)
    except (httpx.HTTPError, OSError, etree.XMLSyntaxError, ValueError) as exc:
        return CaseResult(case, FAIL, f"{type(exc).__name__}: {exc}", seconds=time.monotonic() - started)
    verdict = judge(case, response)
    details = [f"unchecked contents: {'; '.join(verdict.unchecked)}"] if verdict.unchecked else []
    if not verdict.passed and response.body is None:
        details.append(f"HTTP {response.http_status} {response.content_type}: {response.raw[:300]!r}")
    return CaseResult(case, PASS if verdict.passed else FAIL, verdict.reason, details, time.monotonic() - started)


def run(data_dir: Path, *, registry: str | None, repository: str | None, imaging_source: str | None,
        mllp: tuple[str, int] | None, transactions: set[str] | None, inline: bool = False, feed: bool = True,
        progress: Callable[[CaseResult], None] | None = None) -> RunResult:
    """Run every case under ``data_dir`` and return the results in run order.

    Cases of transactions that are not selected are left out of the results (only counted); cases of selected
    transactions that depend on them are skipped with ``needs <transaction>``.

    Parameters
    ----------
    data_dir : a folder laid out like ``conformance-data/messages`` (transaction folders + ``patients.tsv``).
    registry, repository, imaging_source : actor endpoint URLs; transactions of a missing actor are left out.
    mllp : ``(host, port)`` of the Registry's ITI-8 listener, used when ``feed`` is true.
    transactions : restrict to these transactions (``{"ITI-42", "ITI-18"}``); ``None`` means all.
    inline : send ITI-41/RAD-68 documents as inline base64 instead of MTOM/XOP attachments.
    progress : called with each result as soon as it is known.
    """
    data_dir = Path(data_dir)
    urls = {"registry": registry, "repository": repository, "imaging_source": imaging_source}
    selected = selected_transactions(urls, transactions)
    ordered = run_order(load_cases(data_dir))
    skips = static_skips(ordered, selected)
    result = RunResult()

    if feed:
        if mllp is None:
            result.setup_errors.append("patient feed requested but no MLLP address given (use --mllp or --no-feed)")
        else:
            result.setup_errors += register_patients(patients_to_register(data_dir / "patients.tsv"), *mllp)

    known = {c.key for c in ordered}
    done: dict[str, CaseResult] = {}
    with httpx.Client(timeout=HTTP_TIMEOUT, trust_env=False) as client:  # no proxy between us and the actors
        for case in ordered:
            if case.transaction not in selected:  # not part of this run: counted, not reported per case
                result.not_selected[case.transaction] = result.not_selected.get(case.transaction, 0) + 1
                continue
            reason = skips.get(case.key) or _requirement_problem(case, done, known)
            if reason:
                outcome = CaseResult(case, SKIP, reason)
            else:
                outcome = run_case(client, case, urls[ACTOR_OF[case.transaction]], inline=inline)
            done[case.key] = outcome
            result.results.append(outcome)
            if progress:
                progress(outcome)
    return result
