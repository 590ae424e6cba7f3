"""ITI-41 Provide and Register Document Set-b, and RAD-68 Provide and Register Imaging Document Set
(ITI TF-2b 3.41, RAD TF-3 4.68): validate, store durably, register with the registry (ITI-42).

The order is what makes "nothing lost, nothing half-done" hold:

1. validate the metadata and match every document to its DocumentEntry; compute each document's size
   and SHA-1 (MTOM parts were hashed while they streamed in) and compare them with the metadata;
   check KOS manifests (RAD-68);
2. write the ledger rows ``pending`` (durable commit), then store the content durably
   (:mod:`repository.store`: fsync + atomic rename) - so every entry the registry may learn of has its
   bytes, and the orphan sweep never takes content a pending row points at;
3. send ITI-42; on Success mark the rows ``registered``; on refusal delete rows and content and relay the
   registry's errors. A crash anywhere leaves pending rows (and maybe their content), which
   :mod:`repository.recovery` settles by asking the registry, or a spool file, removed after a grace period.

A retried submission whose documents are already registered with the same content answers Success
without registering twice, so a submitter that lost our answer can simply send again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from lxml import etree
from sqlalchemy import Connection

from repository import kos, ledger
from repository.recovery import forget_documents
from repository.registry_client import RegistryUnavailable
from xdsi.db import grouped_write
from xdsi.ebxml.namespaces import XDSB, q
from xdsi.ebxml.response import registry_response
from xdsi.ebxml.tags import T_SLOT, T_SUBMIT, T_VALUE, T_VALUELIST
from xdsi.metadata.model import DocumentEntry
from xdsi.soap.envelope import SoapRequest
from xdsi.soap.mtom import Attachment
from xdsi.transform.ebrim_read import read_submission
from xdsi.validate import errors as E
from xdsi.validate.errors import RegistryError
from xdsi.validate.submission import validate_register

log = logging.getLogger(__name__)

T_DOCUMENT = q(XDSB, "Document")


@dataclass
class Content:
    """One received document: where its bytes are spooled, their size and SHA-1."""

    path: Path
    size: int
    sha1: str


def provide_and_register(repo, req: SoapRequest) -> bytes:  # type: ignore[no-untyped-def]
    """Handle one ITI-41 / RAD-68 request; return the RegistryResponse."""
    received: list[Content] = []
    try:
        errors = _provide(repo, req, received)
    finally:
        for c in received:  # whatever was not moved into the store
            c.path.unlink(missing_ok=True)
    return registry_response(errors)


def _provide(repo, req: SoapRequest, received: list[Content]) -> list[RegistryError]:  # type: ignore[no-untyped-def]
    body = req.body
    if body.tag != q(XDSB, "ProvideAndRegisterDocumentSetRequest"):
        return [RegistryError(E.XDSRepositoryError,
                              f"expected xdsb:ProvideAndRegisterDocumentSetRequest in the SOAP Body, got {body.tag}")]
    request = body.find(T_SUBMIT)
    if request is None:
        return [RegistryError(E.XDSRepositoryMetadataError,
                              "ProvideAndRegisterDocumentSetRequest has no lcm:SubmitObjectsRequest")]
    sub, errors = read_submission(request, metadata_error=E.XDSRepositoryMetadataError)
    errors += validate_register(sub, provide=True, error_code=E.XDSRepositoryMetadataError)

    # Every stable DocumentEntry needs its document, every document its DocumentEntry (ITI TF-2b 3.41.4.1.3).
    entries = {de.id: de for de in sub.documents if not de.on_demand}
    documents: dict[str, etree._Element] = {}
    for doc in body.iter(T_DOCUMENT):
        ident = doc.get("id", "")
        if ident in documents:
            errors.append(RegistryError(E.XDSRepositoryMetadataError, f"Document {ident} is given twice", ident))
        documents[ident] = doc
    for ident in documents.keys() - entries.keys():
        errors.append(RegistryError(E.XDSMissingDocumentMetadata,
                                    f"Document {ident} has no DocumentEntry (ExtrinsicObject with id {ident})", ident))
    for ident in entries.keys() - documents.keys():
        errors.append(RegistryError(E.XDSMissingDocument,
                                    f"DocumentEntry {ident} has no xdsb:Document with id {ident}", ident))
    if any(e.is_error for e in errors):
        return errors

    contents: dict[str, Content] = {}
    for ident, de in entries.items():
        content, problem = _content(repo, req, documents[ident], de)
        if problem:
            errors.append(problem)
            continue
        received.append(content)
        contents[ident] = content
        errors += _check_against_metadata(repo, de, content)
        if kos.is_imaging_manifest(de):
            errors += kos.check_manifest(content.path, de, error_code=E.XDSRepositoryMetadataError)
    if any(e.is_error for e in errors):
        return errors

    for ident, de in entries.items():
        _set_slot(de.source, "hash", contents[ident].sha1)
        _set_slot(de.source, "size", str(contents[ident].size))
        _set_slot(de.source, "repositoryUniqueId", repo.config.repository_unique_id)
    return _store_and_register(repo, request, entries, contents) + errors


# --- content ----------------------------------------------------------------------------------------


def _content(repo, req: SoapRequest, doc: etree._Element, de: DocumentEntry):  # type: ignore[no-untyped-def]
    """The document's bytes as a spooled file: the MTOM part, or the inline base64 decoded."""
    attachment: Attachment | None = req.xop.get(doc)
    if attachment is not None:
        return Content(Path(attachment.path), attachment.size, attachment.sha1), None
    text = "".join((doc.text or "").split())
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None, RegistryError(E.XDSRepositoryMetadataError,
                                   f"Document {de.id}: content is neither an xop:Include nor valid base64", de.id)
    fd, name = tempfile.mkstemp(dir=repo.store.spool_dir, prefix="inline-")
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return Content(Path(name), len(data), hashlib.sha1(data).hexdigest()), None


def _check_against_metadata(repo, de: DocumentEntry, content: Content) -> list[RegistryError]:  # type: ignore[no-untyped-def]
    """hash, size and repositoryUniqueId, when the submitter sent them, must match (ITI TF-2b 3.41.4.1.3)."""
    errors = []
    if de.hash and de.hash.lower() != content.sha1:
        errors.append(RegistryError(E.XDSRepositoryMetadataError,
                                    f"DocumentEntry {de.id}: hash {de.hash} does not match the document "
                                    f"(SHA-1 {content.sha1})", de.id))
    if de.size and de.size != str(content.size):
        errors.append(RegistryError(E.XDSRepositoryMetadataError,
                                    f"DocumentEntry {de.id}: size {de.size} does not match the document "
                                    f"({content.size} bytes)", de.id))
    own = repo.config.repository_unique_id
    if de.repository_unique_id and de.repository_unique_id != own:
        errors.append(RegistryError(E.XDSRepositoryMetadataError,
                                    f"DocumentEntry {de.id}: repositoryUniqueId {de.repository_unique_id} is not "
                                    f"this repository ({own})", de.id))
    return errors


def _set_slot(el: etree._Element, name: str, value: str) -> None:
    """Set a single-valued Slot of the ExtrinsicObject, keeping Slots first (schema order)."""
    for slot in el.findall(T_SLOT):
        if slot.get("name") == name:
            el.remove(slot)
    slot = etree.Element(T_SLOT, name=name)
    etree.SubElement(etree.SubElement(slot, T_VALUELIST), T_VALUE).text = value
    el.insert(0, slot)


# --- store, ledger, registry -----------------------------------------------------------------------


def _store_and_register(repo, request: etree._Element, entries: dict[str, DocumentEntry],  # type: ignore[no-untyped-def]
                        contents: dict[str, Content]) -> list[RegistryError]:
    by_uid = {de.unique_id: (de, contents[ident]) for ident, de in entries.items()}
    # The pending rows go first: from their commit on, the orphan sweep will not delete this content
    # (see recovery.sweep_orphans), even when put_file finds it already stored and only deduplicates.
    submission_id = str(uuid.uuid4())
    docs = [ledger.Held(uid, content.sha1, content.size, de.mime_type, ledger.PENDING)
            for uid, (de, content) in by_uid.items()]
    request_xml = etree.tostring(request, encoding="unicode")

    def record_unless_held(conn: Connection) -> dict[str, ledger.Held]:
        held = ledger.lookup(conn, by_uid)  # the retry check and the insert, in one transaction
        if not held:
            ledger.record_pending(conn, submission_id, docs, request_xml)
        return held

    held = grouped_write(repo.engine, record_unless_held)
    if held:  # a retry: settled outside the write transaction, since it may ask the registry
        answer = _retried(repo, by_uid, held)
        if answer is not None:
            return answer
        grouped_write(repo.engine, lambda conn: ledger.record_pending(conn, submission_id, docs, request_xml))
    repo.crash_point("after_pending")
    for _uid, (_de, content) in by_uid.items():
        repo.store.put_file(content.path, content.sha1, content.size)
    repo.crash_point("after_store")

    try:
        response = repo.registry.register(request_xml)
    except RegistryUnavailable as exc:
        _undo(repo, list(by_uid))
        return [RegistryError(E.XDSRegistryNotAvailable, f"the registry could not be reached: {exc}")]
    repo.crash_point("after_register")
    if response.ok:
        def settle(conn: Connection) -> None:
            ledger.mark_registered(conn, by_uid)
            ledger.drop_submission(conn, submission_id)

        grouped_write(repo.engine, settle)
        return response.errors  # warnings, if any
    _undo(repo, list(by_uid))
    return response.errors


def _undo(repo, unique_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    """The registry refused (or could not be asked): forget the documents and delete unshared content."""
    forget_documents(repo, unique_ids)


def _retried(repo, by_uid: dict, held: dict[str, ledger.Held]) -> list[RegistryError] | None:  # type: ignore[no-untyped-def]
    """A submission naming documents we already hold. Same content and all registered: the submitter is
    retrying after losing our answer - Success, nothing to do. Different content: XDSNonIdenticalHash.
    Otherwise (a crash left them pending, never registered) go on and register them again."""
    for uid, h in held.items():
        content = by_uid[uid][1]
        if h.content_key != content.sha1:
            return [RegistryError(E.XDSNonIdenticalHash,
                                  f"DocumentEntry {by_uid[uid][0].id}: document {uid} is already held with "
                                  f"SHA-1 {h.content_key}; this submission has {content.sha1}", by_uid[uid][0].id)]
    if held.keys() == by_uid.keys():
        registered = repo.registry.registered(list(by_uid))
        if registered == set(by_uid):
            grouped_write(repo.engine, lambda conn: ledger.mark_registered(conn, by_uid))
            return []
    return None
