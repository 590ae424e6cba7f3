"""Settling what a crash leaves behind: ``pending`` ledger rows and content no document points at.

Run at start-up and then periodically. Only things older than the grace period are touched, so
submissions in flight are left alone. A submission left pending whose content is all stored is finished:
its ITI-42 request (kept in the ledger) is sent again. The registry then registers it, answers that it
already has it (the crash came after its answer), holds it for patient reconciliation, or refuses it; only
a refusal, or missing content, makes the repository forget the documents and delete their content. While
the registry cannot be reached, pending rows wait for the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from repository import ledger
from repository.registry_client import RegistryUnavailable
from xdsi.db import write_transaction
from xdsi.validate import errors as E

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    registered: int = 0  # pending documents now registered (or held) by the registry
    forgotten: int = 0  # pending documents refused or without content (content deleted)
    orphans_deleted: int = 0  # content files no ledger row references
    registry_unreachable: bool = False


def forget_documents(repo, unique_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """Delete ledger rows and the content no other row references, in one write transaction: a
    submission recording a pending row for the same content waits for it, or is seen by it."""
    if not unique_ids:
        return
    with write_transaction(repo.engine) as conn:
        with repo.engine.connect() as probe:
            keys = {h.content_key for h in ledger.lookup(probe, unique_ids).values()}
        ledger.lock_content(conn, keys)
        for key in ledger.forget(conn, unique_ids):
            repo.store.delete(key)
        ledger.drop_settled_submissions(conn)


def sweep_orphans(repo, grace_seconds: float) -> int:  # type: ignore[no-untyped-def]
    """Delete content older than the grace period that no ledger row references. Each check-and-delete
    holds the write transaction (and, on PostgreSQL, the content's advisory lock), the same a submission
    takes to record its pending row, so content being submitted again is never deleted under it."""
    deleted = 0
    for key in list(repo.store.keys_older_than(grace_seconds)):
        with write_transaction(repo.engine) as conn:
            ledger.lock_content(conn, [key])
            if not ledger.is_referenced(conn, key):
                repo.store.delete(key)
                deleted += 1
    return deleted


def _finish(repo, submission_id: str, docs: list[ledger.Held]) -> set[str]:  # type: ignore[no-untyped-def]
    """Complete an interrupted submission; return the uniqueIds the registry now has (or holds)."""
    uids = {d.unique_id for d in docs}
    if not all(repo.store.exists(d.content_key) for d in docs):
        return set()  # the crash came before the content was stored: nothing was registered
    with repo.engine.connect() as conn:
        request = ledger.submission_request(conn, submission_id)
    if request is None:  # recorded before requests were kept: ask the registry what it has
        return repo.registry.registered(uids)
    answer = repo.registry.register(request)
    if answer.ok:  # registered now, or held for reconciliation (Success with a warning)
        return uids
    if all(e.code == E.XDSDuplicateUniqueIdInRegistry for e in answer.errors if e.is_error):
        return repo.registry.registered(uids)  # registered by the interrupted attempt
    log.warning("recovery: the registry refuses pending submission %s: %s", submission_id,
                "; ".join(f"{e.code}: {e.message}" for e in answer.errors))
    return set()


def recover(repo, *, grace_seconds: float) -> RecoveryReport:  # type: ignore[no-untyped-def]
    report = RecoveryReport()
    cleanup = getattr(repo.store, "cleanup_spool", None)
    if cleanup is not None:
        cleanup(grace_seconds)
    with repo.engine.connect() as conn:
        pending = ledger.pending_older_than(conn, grace_seconds)
    by_submission: dict[str, list[ledger.Held]] = {}
    for held in pending:
        by_submission.setdefault(held.submission, []).append(held)
    for submission_id, docs in by_submission.items():
        try:
            registered = _finish(repo, submission_id, docs)
        except RegistryUnavailable as exc:
            log.warning("recovery: registry unreachable, %d pending documents wait: %s", len(pending), exc)
            report.registry_unreachable = True
            break
        uids = [d.unique_id for d in docs]
        with write_transaction(repo.engine) as conn:
            ledger.mark_registered(conn, [u for u in uids if u in registered])
        forget_documents(repo, [u for u in uids if u not in registered])
        report.registered += len(registered)
        report.forgotten += len(uids) - len(registered)
    with write_transaction(repo.engine) as conn:  # requests of settled submissions, and of taken-over ones
        ledger.drop_settled_submissions(conn)
    report.orphans_deleted = sweep_orphans(repo, grace_seconds)
    if report.registered or report.forgotten or report.orphans_deleted:
        log.info("recovery: %s", report)
    return report
