"""The Imaging Document Source as a Starlette application: RAD-69 at ``/imaging-source``, and (optionally)
the watcher that publishes PACS studies as they become stable."""

from __future__ import annotations

import contextlib
import logging
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from imaging_source import state
from imaging_source.config import ImagingSourceConfig, make_adapter
from imaging_source.pacs.base import PacsAdapter, PacsError
from imaging_source.publish import Publisher, Watcher
from imaging_source.retrieve import RetrieveAborted, retrieve_imaging_document_set
from xdsi import db
from xdsi.periodic import periodic
from xdsi.soap.endpoint import SoapRequest, SoapResponse, soap_endpoint

log = logging.getLogger(__name__)

RAD69 = "urn:ihe:rad:2009:RetrieveImagingDocumentSet"
WSDL = Path(__file__).resolve().parent / "wsdl" / "imaging-source.wsdl"
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
DEFAULT_DB = "sqlite:///xdsi-imaging-source/state.db"


class _CutOffAlreadyLogged(logging.Filter):
    """Drops uvicorn's "Exception in ASGI application" record, traceback and all, for a streamed RAD-69
    answer cut off on purpose (:class:`RetrieveAborted`): :mod:`imaging_source.retrieve` has logged it as
    a WARNING that says why, and a traceback would read like a crash to an operator. Raising is the only
    way an ASGI application can cut a response off, so uvicorn sees it as an error."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and _only_cut_offs(record.exc_info[1]))


def _only_cut_offs(exc: BaseException | None) -> bool:
    if isinstance(exc, BaseExceptionGroup):  # a Starlette that streams in a task group may wrap it
        return all(_only_cut_offs(e) for e in exc.exceptions)
    return isinstance(exc, RetrieveAborted)


_CUT_OFF_ALREADY_LOGGED = _CutOffAlreadyLogged()


class ImagingSource:
    """The actor: configuration, PACS adapters, publication state, publisher."""

    def __init__(self, config: ImagingSourceConfig, *, db_url: str = DEFAULT_DB, engine: Engine | None = None,
                 adapters: dict[str, PacsAdapter] | None = None, spool_dir: str | None = None) -> None:
        self.config = config
        self.engine = engine or db.create(db_url)
        db.upgrade(self.engine, MIGRATIONS)
        self.adapters = adapters if adapters is not None else {p.name: make_adapter(p) for p in config.pacs}
        self.publisher = Publisher(config, self.adapters, self.engine)
        # One directory per host, not per start: each RAD-69 request spools into its own subdirectory of it
        # and removes it when the answer has been sent.
        self.spool_dir = spool_dir or str(Path(tempfile.gettempdir()) / "xdsi-ids-spool")
        Path(self.spool_dir).mkdir(parents=True, exist_ok=True)

    def locate(self, study_uid: str) -> tuple[PacsAdapter | None, str | None]:
        """The PACS holding a study (the one it was published from, else the first that finds it), and the
        tree digest (:func:`state.tree_digest`) of its current manifest: None if none is published, or if a
        streamed answer for it was cut off (retrievals are then fetched whole first, with a true status)."""
        with self.engine.connect() as conn:
            published = state.get(conn, study_uid)
        if published is not None and published.pacs in self.adapters:
            streamable = published.status == state.PUBLISHED and published.cut_off_at is None
            return self.adapters[published.pacs], published.tree_digest if streamable else None
        for adapter in self.adapters.values():
            try:
                if adapter.find_studies(study_instance_uid=study_uid):
                    return adapter, None
            except PacsError as exc:
                log.warning("RAD-69: PACS %s not reachable while locating %s: %s", adapter.name, study_uid, exc)
        return None, None

    def mark_cut_off(self, study_uid: str) -> None:
        """A streamed answer for the study was cut off: answer it whole-first from now on (:meth:`locate`)."""
        with self.engine.begin() as conn:
            state.mark_cut_off(conn, study_uid)

    def retrieve(self, req: SoapRequest) -> SoapResponse:
        return retrieve_imaging_document_set(self, req)

    def close(self) -> None:
        self.publisher.close()
        self.engine.dispose()


def create_app(ids: ImagingSource, *, watch: bool = False, poll_interval: float = 60,
               stable_seconds: float = 300) -> Starlette:
    """The imaging source's ASGI application. With ``watch``, a background task polls the PACS every
    ``poll_interval`` seconds and publishes studies stable for ``stable_seconds``."""
    endpoint = soap_endpoint({RAD69: ids.retrieve}, wsdl=WSDL if WSDL.exists() else None)
    logging.getLogger("uvicorn.error").addFilter(_CUT_OFF_ALREADY_LOGGED)  # once: addFilter skips a repeat
    watcher = Watcher(ids.publisher, stable_seconds=stable_seconds)

    def poll() -> None:
        for result in watcher.poll():
            log.info("watcher: %s %s %s %s", result.pacs, result.study_instance_uid, result.outcome, result.message)

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        watching = periodic(poll, interval=poll_interval, first_after=0, what="watcher poll", logger=log) \
            if watch else contextlib.nullcontext()
        try:
            async with watching:
                yield
        finally:
            ids.close()

    async def health(_request):  # type: ignore[no-untyped-def]
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/imaging-source", endpoint, methods=["GET", "POST"]), Route("/health", health)],
                    lifespan=lifespan)
    app.state.imaging_source = ids
    return app
