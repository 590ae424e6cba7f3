"""The Document Repository as a Starlette application: SOAP at ``/repository`` (ITI-41, RAD-68, ITI-43)."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from repository.provide import provide_and_register
from repository.recovery import recover
from repository.registry_client import RegistryClient
from repository.retrieve import retrieve_document_set
from repository.store import open_store
from xdsi import db
from xdsi.periodic import periodic
from xdsi.soap.endpoint import SoapRequest, SoapResponse, soap_endpoint

log = logging.getLogger(__name__)

ITI41 = "urn:ihe:iti:2007:ProvideAndRegisterDocumentSet-b"  # RAD-68 uses the same action
ITI43 = "urn:ihe:iti:2007:RetrieveDocumentSet"
WSDL = Path(__file__).resolve().parent / "wsdl" / "repository.wsdl"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
MiB = 1024 * 1024


@dataclass
class RepositoryConfig:
    """What a deployment sets (``xdsi repository`` options)."""

    registry_url: str
    repository_unique_id: str
    store_url: str = "xdsi-repository/documents"
    db_url: str = "sqlite:///xdsi-repository/ledger.db"
    #: Pending ledger rows and unreferenced content younger than this are left alone by recovery.
    grace_seconds: float = 600
    #: How often recovery runs after start-up (seconds; 0: only at start-up).
    sweep_interval: float = 600
    #: Largest document accepted (all MTOM parts of one request together).
    max_document_bytes: int = 4096 * MiB
    #: Largest SOAP envelope (metadata, or inline base64 documents).
    max_envelope_bytes: int = 64 * MiB


class Repository:
    """The actor: configuration, document store, ledger and registry client."""

    def __init__(self, config: RepositoryConfig, *, engine: Engine | None = None) -> None:
        self.config = config
        self.store = open_store(config.store_url)
        # A store that cannot work (an S3 bucket that does not exist) is a deployment error: fail now, saying
        # which, rather than at the first submission. Buckets are provisioned, never created here.
        check = getattr(self.store, "check_bucket", None)
        if check is not None:
            check()
        self.engine = engine or db.create(config.db_url)
        db.upgrade(self.engine, MIGRATIONS)
        self.registry = RegistryClient(config.registry_url)
        # Failure injection for the crash tests (tests/test_repository_crash.py): the process dies right
        # there, as a power cut would. Never set in production.
        self._crash_at = os.environ.get("XDSI_CRASH_AT", "")

    def crash_point(self, name: str) -> None:
        if name == self._crash_at:
            os._exit(137)

    def provide_and_register(self, req: SoapRequest) -> SoapResponse:
        return SoapResponse(ITI41 + "Response", provide_and_register(self, req))

    def retrieve(self, req: SoapRequest) -> SoapResponse:
        return retrieve_document_set(self, req)

    def close(self) -> None:
        self.registry.close()
        self.engine.dispose()


def create_app(config: RepositoryConfig | None = None, *, repository: Repository | None = None) -> Starlette:
    """The repository's ASGI application; recovery runs at start-up and every ``sweep_interval``."""
    if repository is None:
        assert config is not None
        repository = Repository(config)
    repo = repository
    endpoint = soap_endpoint(
        {ITI41: repo.provide_and_register, ITI43: repo.retrieve},
        wsdl=WSDL if WSDL.exists() else None,
        max_body_bytes=repo.config.max_envelope_bytes,
        max_attachment_bytes=repo.config.max_document_bytes,
        spool_dir=str(repo.store.spool_dir),
        allow_inline_documents=True,
    )

    def sweep() -> None:
        recover(repo, grace_seconds=repo.config.grace_seconds)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(sweep)
        interval = repo.config.sweep_interval
        sweeping = periodic(sweep, interval=interval, first_after=interval, what="repository recovery", logger=log) \
            if interval > 0 else contextlib.nullcontext()
        try:
            async with sweeping:
                yield
        finally:
            repo.close()

    async def health(_request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/repository", endpoint, methods=["GET", "POST"]), Route("/health", health)],
                    lifespan=lifespan)
    app.state.repository = repo
    return app
