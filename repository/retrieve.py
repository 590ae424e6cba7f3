"""ITI-43 Retrieve Document Set (ITI TF-2b 3.43): documents streamed back as MTOM/XOP parts.

Each requested document is served from the store without being read into memory; the ones the
repository cannot serve get a RegistryError (XDSUnknownRepositoryId for another repository's id,
XDSDocumentUniqueIdError for an unknown document) and the status becomes PartialSuccess or Failure.
"""

from __future__ import annotations

from xml.sax.saxutils import escape

from repository import ledger
from xdsi.ebxml.namespaces import XDSB, q
from xdsi.ebxml.response import error_list, response_status
from xdsi.soap.endpoint import SoapResponse
from xdsi.soap.envelope import SoapRequest
from xdsi.soap.mtom import new_content_id, xop_include_xml
from xdsi.validate import errors as E
from xdsi.validate.errors import RegistryError

ITI43_RESPONSE = "urn:ihe:iti:2007:RetrieveDocumentSetResponse"
_XDSB = "{%s}" % XDSB


def retrieve_document_set(repo, req: SoapRequest) -> SoapResponse:  # type: ignore[no-untyped-def]
    body = req.body
    errors: list[RegistryError] = []
    wanted: list[tuple[str, str]] = []  # (home, uniqueId) this repository must serve
    if body.tag != q(XDSB, "RetrieveDocumentSetRequest"):
        errors.append(RegistryError(E.XDSRepositoryError,
                                    f"expected xdsb:RetrieveDocumentSetRequest in the SOAP Body, got {body.tag}"))
    else:
        for n, dr in enumerate(body.iter(_XDSB + "DocumentRequest"), 1):
            repo_id = (dr.findtext(_XDSB + "RepositoryUniqueId") or "").strip()
            doc_id = (dr.findtext(_XDSB + "DocumentUniqueId") or "").strip()
            home = (dr.findtext(_XDSB + "HomeCommunityId") or "").strip()
            if not doc_id:
                errors.append(RegistryError(E.XDSDocumentUniqueIdError, f"DocumentRequest {n}: DocumentUniqueId is "
                                            "missing or empty", f"DocumentRequest[{n}]"))
            elif repo_id != repo.config.repository_unique_id:
                errors.append(RegistryError(E.XDSUnknownRepositoryId, f"DocumentRequest {n}: RepositoryUniqueId "
                                            f"{repo_id!r} is not this repository "
                                            f"({repo.config.repository_unique_id})", doc_id))
            else:
                wanted.append((home, doc_id))
        if not wanted and not errors:
            errors.append(RegistryError(E.XDSRepositoryError, "RetrieveDocumentSetRequest has no DocumentRequest"))

    with repo.engine.connect() as conn:
        held = ledger.lookup(conn, [uid for _, uid in wanted])
    parts = []
    responses = []
    for home, uid in wanted:
        h = held.get(uid)
        if h is None or not repo.store.exists(h.content_key):
            errors.append(RegistryError(E.XDSDocumentUniqueIdError, f"document {uid} is not held by repository "
                                        f"{repo.config.repository_unique_id}", uid))
            continue
        cid = new_content_id()
        parts.append((cid, h.mime_type, repo.store.iter_chunks(h.content_key)))
        responses.append(
            "<xdsb:DocumentResponse>%s<xdsb:RepositoryUniqueId>%s</xdsb:RepositoryUniqueId>"
            "<xdsb:DocumentUniqueId>%s</xdsb:DocumentUniqueId><xdsb:mimeType>%s</xdsb:mimeType>"
            "<xdsb:Document>%s</xdsb:Document></xdsb:DocumentResponse>"
            % (f"<xdsb:HomeCommunityId>{escape(home)}</xdsb:HomeCommunityId>" if home else "",
               escape(repo.config.repository_unique_id), escape(uid), escape(h.mime_type),
               xop_include_xml(cid).decode()))
    status = response_status(errors, partial=bool(responses))
    body_xml = (
        '<xdsb:RetrieveDocumentSetResponse xmlns:xdsb="urn:ihe:iti:xds-b:2007" '
        'xmlns:rs="urn:oasis:names:tc:ebxml-regrep:xsd:rs:3.0">'
        '<rs:RegistryResponse status="%s">%s</rs:RegistryResponse>%s</xdsb:RetrieveDocumentSetResponse>'
        % (status, error_list(errors), "".join(responses)))
    return SoapResponse(ITI43_RESPONSE, body_xml.encode(), attachments=parts, mtom=True)
