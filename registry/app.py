"""The Document Registry as a Starlette application: SOAP at ``/registry`` (ITI-42, ITI-18, ITI-57, ITI-62),
ITI-8 over MLLP."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from registry.delete import delete
from registry.reconcile import Reconciliation
from registry.reconcile_http import reconciliation_routes
from registry.register import register
from registry.storage.engine import DEFAULT_URL, make_engine
from registry.storage.patients import PatientStore
from registry.storedquery import run_stored_query
from registry.update import update
from xdsi import codes as codelist
from xdsi.ebxml.response import registry_response
from xdsi.soap.endpoint import SoapRequest, SoapResponse, soap_endpoint

log = logging.getLogger(__name__)

ITI42 = "urn:ihe:iti:2007:RegisterDocumentSet-b"
ITI18 = "urn:ihe:iti:2007:RegistryStoredQuery"
ITI57 = "urn:ihe:iti:2010:UpdateDocumentSet"
ITI62 = "urn:ihe:iti:2010:DeleteDocumentSet"
WSDL = Path(__file__).resolve().parent / "wsdl" / "registry.wsdl"


@dataclass
class RegistryConfig:
    """What a deployment sets (``xdsi registry`` options)."""

    db_url: str = DEFAULT_URL
    #: Affinity-domain code list (NIST codes.xml format). None: codes are not checked against a list.
    codes_path: str | None = None
    #: ITI-18 results above this count fail with XDSTooManyResults.
    max_results: int = 10000
    #: MLLP port for ITI-8 (None: no feed listener).
    mllp_host: str = "127.0.0.1"
    mllp_port: int | None = None
    #: Assigning authority OID of the affinity domain's patient ids (ITI-8 picks the PID-3 id of this domain).
    domain_oid: str | None = None
    #: Patient reconciliation (registry/reconcile.py): hold submissions for unknown local patient ids.
    reconciliation: bool = True
    #: Assigning authority OIDs of national person ids (matched against the other PID-3 ids fed by ITI-8).
    national_id_oids: list[str] = field(default_factory=list)
    #: Bearer token of the /reconciliation endpoint (None: the endpoint answers 403).
    admin_token: str | None = None


class Registry:
    """The actor: storage, configuration and the transaction handlers."""

    def __init__(self, config: RegistryConfig, engine: Engine | None = None) -> None:
        self.config = config
        self.engine = engine or make_engine(config.db_url)
        self.codes = codelist.load(config.codes_path) if config.codes_path else None
        self.patients = PatientStore(self.engine)
        self.reconciliation = Reconciliation(tuple(config.national_id_oids), config.domain_oid) \
            if config.reconciliation else None

    def register_document_set(self, req: SoapRequest) -> SoapResponse:
        result = register(self.engine, req.body, codes=self.codes, reconciliation=self.reconciliation)
        return SoapResponse(ITI42 + "Response", registry_response(result.errors))

    def update_document_set(self, req: SoapRequest) -> SoapResponse:
        result = update(self.engine, req.body, codes=self.codes)
        return SoapResponse(ITI57 + "Response", registry_response(result.errors))

    def delete_document_set(self, req: SoapRequest) -> SoapResponse:
        return SoapResponse(ITI62 + "Response", registry_response(delete(self.engine, req.body)))

    def stored_query(self, req: SoapRequest) -> SoapResponse:
        with self.engine.connect() as conn:
            body = run_stored_query(conn, req.body, max_results=self.config.max_results)
        return SoapResponse(ITI18 + "Response", body)

    def handle_adt(self, message: bytes) -> bytes:
        from registry.patient_feed import handle_adt

        return handle_adt(message, self.patients, domain_oid=self.config.domain_oid)


def create_app(config: RegistryConfig | None = None, *, registry: Registry | None = None) -> Starlette:
    """The registry's ASGI application. The ITI-8 MLLP listener runs in its lifespan."""
    registry = registry or Registry(config or RegistryConfig())
    endpoint = soap_endpoint(
        {ITI42: registry.register_document_set, ITI18: registry.stored_query,
         ITI57: registry.update_document_set, ITI62: registry.delete_document_set},
        wsdl=WSDL if WSDL.exists() else None,
        mirror_mtom=False,  # registry answers are plain SOAP 1.2 even to MTOM requests (ITI TF-2x V.3.6)
    )

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        server = None
        cfg = registry.config
        if cfg.mllp_port is not None:
            from registry.mllp import serve_mllp

            server = await serve_mllp(cfg.mllp_host, cfg.mllp_port, registry.handle_adt)
            log.info("ITI-8 patient identity feed on mllp://%s:%s", cfg.mllp_host, cfg.mllp_port)
        try:
            yield
        finally:
            if server is not None:
                from registry.mllp import stop_mllp

                await stop_mllp(server)
            registry.engine.dispose()

    async def health(_request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[Route("/registry", endpoint, methods=["GET", "POST"]), Route("/health", health),
                *reconciliation_routes(registry)],
        lifespan=lifespan,
    )
    app.state.registry = registry
    return app
