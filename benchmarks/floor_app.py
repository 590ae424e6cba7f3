"""The ITI-18 benchmark's HTTP floor: the least an HTTP server can do to answer the benchmark's query.

A bare ASGI application on the same uvicorn stack as ``xdsi registry`` (httptools, uvloop, the same malloc
settings) that finds the patient id in the request body with a regular expression, runs the raw indexed SELECT
of :data:`benchmarks.registry_query.RAW_SQL` on one DBAPI connection, on the event loop, and answers with the
rows' XML joined under one element. No SOAP, no parameter checks, no thread pool, no framework: no real service
can be faster, so ``floor / raw`` says how much of the end-to-end ratio any HTTP service pays before it does
anything of its own, and ``registry / floor`` what xdsi adds on top.

Run as ``uvicorn benchmarks.floor_app:app`` with ``XDSI_FLOOR_DB`` set to the registry's SQLAlchemy URL.
"""

from __future__ import annotations

import os
import re

from xdsi import malloc

malloc.tune()

_PATIENT = re.compile(rb"\$XDSDocumentEntryPatientId\"><rim:ValueList><rim:Value>'([^']*)'")
_URL = os.environ.get("XDSI_FLOOR_DB", "")


def _connect():  # type: ignore[no-untyped-def]
    """One DBAPI connection with the registry's own connection settings (page cache, mmap)."""
    from benchmarks.registry_query import RAW_SQL
    from registry.storage.engine import make_engine

    engine = make_engine(_URL, migrate=False)
    dbapi = engine.raw_connection().driver_connection
    sqlite = engine.dialect.name == "sqlite"
    if not sqlite:
        dbapi.autocommit = True
    return dbapi, RAW_SQL.format(p="?" if sqlite else "%s")


_db, _sql = _connect() if _URL else (None, "")


async def app(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    if scope["path"] == "/health":
        out = b"ok"
    else:
        match = _PATIENT.search(body)
        patient = match.group(1).decode().replace("&amp;", "&") if match else ""
        rows = _db.execute(_sql, (patient,)).fetchall()
        out = ("<rim:RegistryObjectList>" + "".join(row[2] for row in rows) + "</rim:RegistryObjectList>").encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/soap+xml"), (b"content-length", b"%d" % len(out))]})
    await send({"type": "http.response.body", "body": out})
