"""Settling what a crash leaves behind: ``pending`` ledger rows and content no document points at.

Run at start-up and then periodically. Only things older than the grace period are touched, so
submissions in flight are left alone. Pending rows are settled by asking the registry: registered
documents become ``registered``, the others are forgotten and their content deleted. While the
registry cannot be reached, pending rows wait for the next run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from repository import ledger
from repository.registry_client import RegistryUnavailable
from xdsi.db import write_transaction

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    registered: int = 0  # pending rows the registry turned out to know
    forgotten: int = 0  # pending rows the registry does not know (content deleted)
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


def recover(repo, *, grace_seconds: float) -> RecoveryReport:  # type: ignore[no-untyped-def]
    report = RecoveryReport()
    cleanup = getattr(repo.store, "cleanup_spool", None)
    if cleanup is not None:
        cleanup(grace_seconds)
    with repo.engine.connect() as conn:
        pending = ledger.pending_older_than(conn, grace_seconds)
    if pending:
        try:
            known = repo.registry.registered([p.unique_id for p in pending])
        except RegistryUnavailable as exc:
            log.warning("recovery: registry unreachable, %d pending documents wait: %s", len(pending), exc)
            report.registry_unreachable = True
        else:
            unknown = [p.unique_id for p in pending if p.unique_id not in known]
            with repo.engine.begin() as conn:
                ledger.mark_registered(conn, known)
            forget_documents(repo, unknown)
            report.registered, report.forgotten = len(known), len(unknown)
    report.orphans_deleted = sweep_orphans(repo, grace_seconds)
    if report.registered or report.forgotten or report.orphans_deleted:
        log.info("recovery: %s", report)
    return report
