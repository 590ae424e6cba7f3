"""Publishing PACS studies as XDS-I.b manifests (RAD-68), and keeping them current.

* :meth:`Publisher.publish_study` builds the KOS manifest of one study and sends it to the repository
  (Provide and Register Imaging Document Set, MTOM). A study already published with the same instances is
  left alone; a study whose instances changed gets a new manifest that replaces the old one (RPLC), so
  consumers always see the current study.
* :meth:`Publisher.withdraw` deprecates the manifest of a study withdrawn from its PACS (ITI-57
  UpdateAvailabilityStatus to the registry).
* :meth:`Publisher.publish_since` backfills a PACS; :class:`Watcher` polls the PACS and publishes studies
  once they are stable (no change for a while), and withdraws the ones that disappeared.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

import httpx
from lxml import etree
from sqlalchemy import Engine

from imaging_source import state
from imaging_source.config import ImagingSourceConfig
from imaging_source.manifest import kos_bytes, kos_for, submission_for
from imaging_source.pacs.base import PacsAdapter, PacsError, Study
from xdsi.ebxml.namespaces import RS, q
from xdsi.metadata import vocabulary as v
from xdsi.metadata.dtm import now as dtm_now
from xdsi.metadata.model import Association, Author, Submission, SubmissionSet
from xdsi.soap.client import SoapCallError, call, call_mtom
from xdsi.transform.ebrim_write import write_provide_and_register, write_submission

log = logging.getLogger(__name__)

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"  # RAD-68 uses the ITI-41 action
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"

# Outcomes of publish_study.
PUBLISHED, REPLACED, UNCHANGED = "published", "replaced", "unchanged"
NOT_FOUND, UNMAPPED_PATIENT, FAILED, WITHDRAWN = "not-found", "unmapped-patient", "failed", "withdrawn"


@dataclass
class PublishResult:
    pacs: str
    study_instance_uid: str
    outcome: str
    document_unique_id: str = ""
    message: str = ""
    errors: list[tuple[str, str]] = field(default_factory=list)  # (errorCode, codeContext) from the peer

    @property
    def ok(self) -> bool:
        return self.outcome in (PUBLISHED, REPLACED, UNCHANGED, WITHDRAWN)


def instance_digest(study: Study) -> str:
    """Identifies the set of instances a manifest references (:func:`state.digest`)."""
    return state.digest(i.sop_instance_uid for _, i in study.instances())


def _errors(resp: etree._Element) -> list[tuple[str, str]]:
    return [(e.get("errorCode", ""), e.get("codeContext", "")) for e in resp.iter(q(RS, "RegistryError"))
            if e.get("severity", v.SEVERITY_ERROR) == v.SEVERITY_ERROR]


class Publisher:
    """Publishes the studies of the configured PACS to the repository."""

    def __init__(self, config: ImagingSourceConfig, adapters: dict[str, PacsAdapter], engine: Engine) -> None:
        self.config = config
        self.adapters = adapters
        self.engine = engine
        self.http = httpx.Client(timeout=300, trust_env=False)
        # One publication of a given study at a time (watcher and command line may overlap).
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def _lock(self, study_uid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(study_uid, threading.Lock())

    # --- one study -------------------------------------------------------------------------------------

    def publish_study(self, pacs: str, study_uid: str) -> PublishResult:
        adapter = self.adapters[pacs]
        with self._lock(study_uid):
            try:
                study = adapter.study(study_uid)
            except PacsError as exc:
                return PublishResult(pacs, study_uid, FAILED, message=f"PACS {pacs}: {exc}")
            if study is None or not any(True for _ in study.instances()):
                return PublishResult(pacs, study_uid, NOT_FOUND, message=f"PACS {pacs} holds no instance of study "
                                     f"{study_uid}")
            return self._publish(study)

    def _publish(self, study: Study) -> PublishResult:
        pacs, uid = study.pacs, study.study_instance_uid
        digest = instance_digest(study)
        tree = state.tree_digest((s.series_instance_uid, i.sop_instance_uid) for s, i in study.instances())
        with self.engine.connect() as conn:
            previous = state.get(conn, uid)
        if previous is not None and previous.status == state.PUBLISHED and previous.digest == digest:
            if previous.tree_digest != tree:  # kept from before the column existed, or the series changed
                with self.engine.begin() as conn:
                    state.put(conn, state.Published(**{**previous.__dict__, "tree_digest": tree}))
            return PublishResult(pacs, uid, UNCHANGED, previous.document_unique_id)
        domain_pid = self.config.domain_patient_id(pacs, study.patient_id, study.issuer_of_patient_id)
        if domain_pid is None:
            return PublishResult(pacs, uid, UNMAPPED_PATIENT, message=(
                f"PACS {pacs}: local patient id {study.patient_id!r} (issuer {study.issuer_of_patient_id!r}) of study "
                f"{uid} has no affinity-domain id in the patient id mapping"))
        replaces = previous.entry_uuid if previous is not None and previous.status == state.PUBLISHED else None
        kos = kos_for(study, self.config)
        data = kos_bytes(kos)
        sub = submission_for(study, kos, data, config=self.config, domain_patient_id=domain_pid, replaces=replaces)
        de = sub.documents[0]
        cid = f"kos.{uuid.uuid4().hex}@xdsi.ids"
        request = write_provide_and_register(sub, {de.id: cid})
        try:
            resp = call_mtom(self.config.repository_url, ITI41, request, [(cid, "application/dicom", data)],
                             client=self.http)
        except (httpx.HTTPError, SoapCallError, etree.XMLSyntaxError) as exc:
            return PublishResult(pacs, uid, FAILED, de.unique_id, f"repository {self.config.repository_url}: {exc}")
        if resp.get("status") != v.RESPONSE_SUCCESS:
            errs = _errors(resp)
            return PublishResult(pacs, uid, FAILED, de.unique_id, "RAD-68 refused: " + "; ".join(
                f"{c}: {t}" for c, t in errs), errs)
        with self.engine.begin() as conn:
            state.put(conn, state.Published(uid, pacs, de.id, de.unique_id, domain_pid, digest,
                                            sum(1 for _ in study.instances()), state.PUBLISHED, state.now(), tree))
        return PublishResult(pacs, uid, REPLACED if replaces else PUBLISHED, de.unique_id)

    def withdraw(self, study_uid: str) -> PublishResult:
        """Deprecate the manifest of a study that left its PACS (ITI-57 UpdateAvailabilityStatus)."""
        with self._lock(study_uid):
            with self.engine.connect() as conn:
                p = state.get(conn, study_uid)
            if p is None or p.status != state.PUBLISHED:
                return PublishResult(p.pacs if p else "", study_uid, NOT_FOUND, message="no current manifest")
            request = write_submission(self._deprecation(p))
            try:
                resp = call(self.config.registry_url, ITI57, request, client=self.http)
            except (httpx.HTTPError, SoapCallError, etree.XMLSyntaxError) as exc:
                return PublishResult(p.pacs, study_uid, FAILED, p.document_unique_id,
                                     f"registry {self.config.registry_url}: {exc}")
            if resp.get("status") != v.RESPONSE_SUCCESS:
                errs = _errors(resp)
                return PublishResult(p.pacs, study_uid, FAILED, p.document_unique_id, "ITI-57 refused: " + "; ".join(
                    f"{c}: {t}" for c, t in errs), errs)
            with self.engine.begin() as conn:
                state.put(conn, state.Published(**{**p.__dict__, "status": state.WITHDRAWN,
                                                   "published_at": state.now()}))
            return PublishResult(p.pacs, study_uid, WITHDRAWN, p.document_unique_id)

    def _deprecation(self, p: state.Published) -> Submission:
        codes = self.config.codes
        ss = SubmissionSet(id="urn:uuid:" + str(uuid.uuid4()), unique_id="2.25." + str(uuid.uuid4().int),
                           source_id=self.config.source_id, patient_id=p.patient_id, submission_time=dtm_now(),
                           title="Imaging study withdrawn from its PACS", content_type_code=codes.content_type_code,
                           authors=[Author(institutions=[self.config.institution])])
        update = Association(id="urn:uuid:" + str(uuid.uuid4()), association_type=v.UPDATE_AVAILABILITY_STATUS,
                             source_object=ss.id, target_object=p.entry_uuid, original_status=v.STATUS_APPROVED,
                             new_status=v.STATUS_DEPRECATED)
        return Submission(submission_set=ss, associations=[update])

    # --- many studies ----------------------------------------------------------------------------------

    def publish_since(self, pacs: str, since: date, *, until: date | None = None,
                      progress: Callable[[PublishResult], None] | None = None) -> list[PublishResult]:
        """Publish every study of ``pacs`` with StudyDate in [since, until] (the backfill)."""
        studies = self.adapters[pacs].find_studies(since=since, until=until)
        results = []
        for s in studies:
            result = self.publish_study(pacs, s.study_instance_uid)
            results.append(result)
            if progress is not None:
                progress(result)
        return results


class Watcher:
    """Polls each PACS and publishes studies once stable; withdraws published studies that disappeared.

    A study is *stable* when its set of instances has not changed for ``stable_seconds``. Only studies
    with a StudyDate within ``lookback_days`` are watched, and only manifests published within that window
    are checked for withdrawal, so each poll costs a bounded number of queries.
    """

    def __init__(self, publisher: Publisher, *, stable_seconds: float = 300, lookback_days: int = 7,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.publisher = publisher
        self.stable_seconds = stable_seconds
        self.lookback_days = lookback_days
        self.clock = clock
        self._seen: dict[str, tuple[str, float]] = {}  # study uid -> (digest, since when unchanged)

    def poll(self, pacs_names: Iterable[str] | None = None) -> list[PublishResult]:
        results: list[PublishResult] = []
        since = date.today() - timedelta(days=self.lookback_days)
        for name in pacs_names or self.publisher.adapters:
            adapter = self.publisher.adapters[name]
            try:
                found = {s.study_instance_uid for s in adapter.find_studies(since=since)}
            except PacsError as exc:
                log.warning("watcher: PACS %s unreachable: %s", name, exc)
                continue
            for uid in sorted(found):
                result = self._consider(adapter, uid)
                if result is not None:
                    results.append(result)
            results += self._withdrawals(name, adapter, found)
        return results

    def _consider(self, adapter: PacsAdapter, uid: str) -> PublishResult | None:
        try:
            study = adapter.study(uid)
        except PacsError as exc:
            log.warning("watcher: %s study %s: %s", adapter.name, uid, exc)
            return None
        if study is None:
            return None
        digest, now = instance_digest(study), self.clock()
        seen = self._seen.get(uid)
        if seen is None or seen[0] != digest:
            self._seen[uid] = (digest, now)
            return None
        if now - seen[1] < self.stable_seconds:
            return None
        result = self.publisher.publish_study(adapter.name, uid)
        return None if result.outcome == UNCHANGED else result

    def _withdrawals(self, name: str, adapter: PacsAdapter, found: set[str]) -> list[PublishResult]:
        cutoff = state.now() - self.lookback_days * 86400
        with self.publisher.engine.connect() as conn:
            candidates = [p for p in state.for_pacs(conn, name) if p.published_at >= cutoff
                          and p.study_instance_uid not in found]
        results = []
        for p in candidates:
            try:  # not in the date window any more is not gone: ask for the study itself
                still = adapter.find_studies(study_instance_uid=p.study_instance_uid)
            except PacsError:
                continue
            if not still:
                self._seen.pop(p.study_instance_uid, None)
                results.append(self.publisher.withdraw(p.study_instance_uid))
        return results
