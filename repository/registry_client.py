"""The repository's side of ITI-42 (Register Document Set-b) and of the ITI-18 lookups its recovery needs."""

from __future__ import annotations

import http.client
from collections.abc import Iterable
from dataclasses import dataclass

from lxml import etree

from xdsi.ebxml.namespaces import RIM, RS, q
from xdsi.ebxml.query import adhoc_query, value_list
from xdsi.metadata import vocabulary as v
from xdsi.soap.client import SoapCallError, SoapClient
from xdsi.validate.errors import RegistryError

ITI42 = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"


class RegistryUnavailable(RuntimeError):
    """The registry did not answer with a SOAP response (down, timeout, fault)."""


_UNAVAILABLE = (OSError, http.client.HTTPException, SoapCallError, etree.XMLSyntaxError)


@dataclass
class RegistryAnswer:
    """A RegistryResponse as the repository relays it."""

    status: str
    errors: list[RegistryError]

    @property
    def ok(self) -> bool:
        return self.status == v.RESPONSE_SUCCESS


def parse_registry_response(el: etree._Element) -> RegistryAnswer:
    errors = [RegistryError(e.get("errorCode", ""), e.get("codeContext", ""), e.get("location", ""),
                            e.get("severity", v.SEVERITY_ERROR)) for e in el.iter(q(RS, "RegistryError"))]
    return RegistryAnswer(el.get("status", ""), errors)


class RegistryClient:
    """Talks to one Document Registry over SOAP 1.2 (kept-alive connections, thread-safe)."""

    def __init__(self, url: str, *, timeout: float = 60) -> None:
        self.url = url
        self.soap = SoapClient(url, timeout=timeout)

    def register(self, submit_objects_request: str) -> RegistryAnswer:
        """ITI-42 of the serialized lcm:SubmitObjectsRequest (as the ledger keeps it). Raises
        RegistryUnavailable when no RegistryResponse comes back."""
        try:
            return parse_registry_response(self.soap.call(ITI42, submit_objects_request.encode()))
        except _UNAVAILABLE as exc:
            raise RegistryUnavailable(str(exc)) from exc

    def registered(self, unique_ids: Iterable[str]) -> set[str]:
        """Which of these document uniqueIds the registry knows (ITI-18 GetDocuments, any status).
        One query per id: ObjectRefs carry no uniqueId and LeafClass refuses multi-patient results."""
        known = set()
        for uid in unique_ids:
            query = adhoc_query(v.SQ_GET_DOCUMENTS, {"$XDSDocumentEntryUniqueId": value_list([uid])},
                                return_type="ObjectRef")
            try:
                resp = self.soap.call(ITI18, query)
            except _UNAVAILABLE as exc:
                raise RegistryUnavailable(str(exc)) from exc
            if not resp.get("status", "").endswith(":Success"):
                raise RegistryUnavailable(f"GetDocuments for {uid} failed: {resp.get('status')}")
            if resp.find(f"{q(RIM, 'RegistryObjectList')}/{q(RIM, 'ObjectRef')}") is not None:
                known.add(uid)
        return known

    def close(self) -> None:
        self.soap.close()
