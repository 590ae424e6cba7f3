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

log = logging.getLogger(__name__)


@dataclass
class RecoveryReport:
    registered: int = 0  # pending rows the registry turned out to know
    forgotten: int = 0  # pending rows the registry does not know (content deleted)
    orphans_deleted: int = 0  # content files no ledger row references
    registry_unreachable: bool = False


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
                orphans = ledger.forget(conn, unknown)
            for key in orphans:
                repo.store.delete(key)
            report.registered, report.forgotten = len(known), len(unknown)
    for key in list(repo.store.keys_older_than(grace_seconds)):
        with repo.engine.connect() as conn:
            referenced = ledger.is_referenced(conn, key)
        if not referenced:
            repo.store.delete(key)
            report.orphans_deleted += 1
    if report.registered or report.forgotten or report.orphans_deleted:
        log.info("recovery: %s", report)
    return report
