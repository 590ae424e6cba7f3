"""The Starlette request handler every actor mounts: SOAP 1.2 (plain or MTOM) in, SOAP 1.2 out.

Every way a request can go wrong ends in a SOAP fault (ITI TF-2x V.3, SOAP 1.2 Part 2 section 7.5.1.2 for
the HTTP status): malformed or hostile XML, oversize bodies (refused while reading, never buffered whole),
broken MTOM packages, unknown actions, handler bugs. Nothing ever answers with a bare 500 page.
"""

from __future__ import annotations

import inspect
import logging
import os
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Union

from lxml import etree
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from xdsi.soap.envelope import SoapFault, SoapRequest, build_envelope, parse_envelope
from xdsi.soap.mtom import (
    Attachment,
    MultipartError,
    PackageTooLarge,
    PartSource,
    mtom_response,
    parse_content_type,
    read_multipart_related,
    resolve_xop,
)
from xdsi.xmlparse import MalformedXML, parse_xml

__all__ = ["SoapResponse", "Handler", "soap_endpoint", "soap_content_type", "MiB"]

log = logging.getLogger("xdsi.soap")

MiB = 1024 * 1024
#: Bodies above this are parsed in the thread pool so one big ITI-41 does not stall the event loop.
_THREADED_PARSE_BYTES = 256 * 1024
#: Room for MIME headers and boundaries on top of the envelope and attachment caps.
_PACKAGE_SLACK = 1 * MiB


@dataclass
class SoapResponse:
    """What a handler returns.

    ``attachments`` are ``(content_id, content_type, source)`` tuples (source: bytes, a path, an async or
    sync iterator of bytes) or :class:`Attachment` objects; reference them from ``body`` with
    :func:`xdsi.soap.mtom.xop_include`. They may also come from an async iterator of such tuples, which
    produces them while the answer is being sent (see :func:`xdsi.soap.mtom.mtom_response`). ``mtom`` forces (True) or forbids (False) an MTOM reply; the
    default ``None`` sends MTOM when there are attachments, or when the request was MTOM and the endpoint
    mirrors the request's form.
    """

    action: str
    body: bytes | etree._Element
    attachments: list[Union[tuple[str, str, PartSource], Attachment]] | AsyncIterable[tuple[str, str, PartSource]] = \
        field(default_factory=list)
    status_code: int = 200
    mtom: bool | None = None


Handler = Callable[[SoapRequest], Union[SoapResponse, Awaitable[SoapResponse]]]


def soap_content_type(action: str) -> str:
    """``application/soap+xml`` with the SOAP 1.2 ``action`` parameter (RFC 3902)."""
    return 'application/soap+xml; charset=utf-8; action="%s"' % action.replace('"', "").replace("\r", "").replace("\n", "")


def _is_async(handler: Handler) -> bool:
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None))


def _as_part(item: Union[tuple[str, str, PartSource], Attachment]) -> tuple[str, str, PartSource]:
    if isinstance(item, Attachment):
        return item.content_id, item.content_type, item.path
    content_id, content_type, source = item
    if isinstance(source, Attachment):
        source = source.path
    if isinstance(source, str):
        raise TypeError("attachment %s: give bytes or a Path, not str" % content_id)
    if isinstance(source, os.PathLike) and not os.path.isfile(source):
        # Check before the status line goes out: afterwards the reply can no longer become a fault.
        raise FileNotFoundError("attachment %s: no file %s" % (content_id, os.fspath(source)))
    return content_id, content_type, source


def _fault_response(fault: SoapFault, relates_to: str | None, *, soap11: bool = False) -> Response:
    if soap11:
        return Response(fault.to_bytes(soap11=True), status_code=500, headers={"content-type": "text/xml; charset=utf-8"})
    return Response(
        fault.to_bytes(relates_to),
        status_code=fault.http_status,
        headers={"content-type": soap_content_type(fault.action)},
    )


def _cleanup(attachments: Mapping[str, Attachment]) -> None:
    for attachment in attachments.values():
        try:
            attachment.delete()
        except OSError:  # cleanup must never turn a reply into an error
            log.warning("could not delete spool file %s", attachment.path, exc_info=True)


async def _read_capped(request: Request, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(limit: int) -> SoapFault:
    return SoapFault("Sender", "the SOAP message exceeds the limit of %d bytes" % limit, http_status=413)


def _declared_length(request: Request) -> int | None:
    try:
        return int(request.headers["content-length"])
    except (KeyError, ValueError):
        return None


def soap_endpoint(
    handlers: Mapping[str, Handler],
    *,
    wsdl: Path | None = None,
    max_body_bytes: int = 50 * MiB,
    max_attachment_bytes: int | None = None,
    spool_dir: str | None = None,
    allow_inline_documents: bool = False,
    mirror_mtom: bool = True,
    understood_headers: Collection[str] = (),
) -> Callable[[Request], Awaitable[Response]]:
    """Build a Starlette endpoint dispatching SOAP 1.2 requests on wsa:Action.

    Mount it with the methods it answers, e.g.
    ``Route("/registry", soap_endpoint(handlers, wsdl=...), methods=["GET", "POST"])``: a Starlette
    ``Route`` with a function endpoint allows only GET/HEAD unless told otherwise.

    Parameters
    ----------
    handlers : mapping of str to handler
        wsa:Action -> callable taking a :class:`SoapRequest` and returning a :class:`SoapResponse`.
        Coroutine functions are awaited; plain functions run in the thread pool. The mapping is copied
        when the endpoint is built. A handler may raise :class:`SoapFault` to answer with that fault;
        any other exception becomes a generic Receiver fault (traceback logged on ``xdsi.soap``).
    wsdl : Path, optional
        Served on ``GET ?wsdl``.
    max_body_bytes : int
        Cap on the SOAP envelope (plain body or MTOM root part).
    max_attachment_bytes : int, optional
        Cap on the decoded size of all MTOM attachments together (the raw package is also bounded, by
        ``max_body_bytes + max_attachment_bytes`` plus 1 MiB for MIME framing). None: no cap.
    spool_dir : str, optional
        Directory for attachment spool files. They are deleted once the response has been sent, so a
        handler that keeps a document must move it (:meth:`Attachment.move_to`) during the call.
    allow_inline_documents : bool
        Lift libxml2's 10 MB text-node limit (inline base64 ITI-41 documents); the body cap still applies.
    mirror_mtom : bool
        Answer an MTOM request with an MTOM response even without attachments (ITI TF-2x V.3.6 for
        ITI-41/43 and RAD-69). Registry endpoints pass False: plain ``application/soap+xml``.
    understood_headers : collection of str
        Clark names of extra mustUnderstand header blocks the handlers process.
    """
    table = {action: (handler, _is_async(handler)) for action, handler in handlers.items()}
    max_package = None if max_attachment_bytes is None else max_body_bytes + max_attachment_bytes + _PACKAGE_SLACK
    understood = frozenset(understood_headers)

    async def endpoint(request: Request) -> Response:
        if request.method in ("GET", "HEAD"):
            if wsdl is not None and any(key.lower() == "wsdl" for key in request.query_params.keys()):
                return FileResponse(wsdl, media_type="text/xml; charset=utf-8")
            return PlainTextResponse("Not Found: this is a SOAP 1.2 endpoint (POST; GET ?wsdl)", status_code=404)
        if request.method != "POST":
            return PlainTextResponse("Method Not Allowed: SOAP 1.2 uses POST", status_code=405, headers={"Allow": "GET, POST"})

        attachments: dict[str, Attachment] = {}
        relates_to: str | None = None
        try:
            mime, _params = parse_content_type(request.headers.get("content-type", ""))
            declared = _declared_length(request)
            if mime == "text/xml":
                # SOAP 1.2 Part 1 Appendix A: a SOAP 1.1 sender gets a SOAP 1.1 VersionMismatch + Upgrade.
                fault = SoapFault(
                    "VersionMismatch",
                    "SOAP 1.1 (text/xml) is not supported; ITI TF-2x Appendix V requires SOAP 1.2 (application/soap+xml)",
                )
                return _fault_response(fault, None, soap11=True)
            if mime == "application/soap+xml":
                if declared is not None and declared > max_body_bytes:
                    raise _too_large(max_body_bytes)
                data = await _read_capped(request, max_body_bytes)
                is_mtom = False
            elif mime == "multipart/related":
                if declared is not None and max_package is not None and declared > max_package:
                    raise _too_large(max_package)
                data, attachments = await read_multipart_related(
                    request.headers["content-type"],
                    request.stream(),
                    spool_dir=spool_dir,
                    max_root_bytes=max_body_bytes,
                    max_total_bytes=max_package,
                    max_attachment_bytes=max_attachment_bytes,
                )
                is_mtom = True
            else:
                raise SoapFault(
                    "Sender",
                    "unsupported Content-Type %r: expected application/soap+xml or multipart/related (MTOM/XOP)"
                    % (mime or "(none)"),
                    http_status=415,
                )

            if len(data) > _THREADED_PARSE_BYTES:
                root = await run_in_threadpool(parse_xml, data, huge_text=allow_inline_documents)
            else:
                root = parse_xml(data, huge_text=allow_inline_documents)
            del data
            soap_request = parse_envelope(root, attachments, understood=understood)
            relates_to = soap_request.message_id or None
            # Also for plain SOAP: an xop:Include there names a part that cannot exist -> Sender fault.
            soap_request.xop = resolve_xop(soap_request.body, attachments)

            entry = table.get(soap_request.action)
            if entry is None:
                raise SoapFault.action_not_supported(soap_request.action)
            handler, is_async = entry
            if is_async:
                result = await handler(soap_request)  # type: ignore[misc]
            else:
                result = await run_in_threadpool(handler, soap_request)
                if inspect.isawaitable(result):
                    result = await result
            if not isinstance(result, SoapResponse):
                raise TypeError("handler for %s returned %r, not a SoapResponse" % (soap_request.action, type(result)))
            return _reply(result, relates_to, is_mtom, attachments)
        except SoapFault as fault:
            _cleanup(attachments)
            if fault.code == "Receiver" and fault.__cause__ is not None:
                log.error("handler fault: %s", fault.reason, exc_info=fault.__cause__)
            return _fault_response(fault, relates_to)
        except MalformedXML as err:
            _cleanup(attachments)
            return _fault_response(SoapFault("Sender", str(err)), relates_to)
        except PackageTooLarge as err:
            _cleanup(attachments)
            return _fault_response(SoapFault("Sender", str(err), http_status=413), relates_to)
        except MultipartError as err:
            _cleanup(attachments)
            return _fault_response(SoapFault("Sender", "malformed MTOM/XOP package: %s" % err), relates_to)
        except ClientDisconnect:
            _cleanup(attachments)
            log.info("client disconnected before the request was complete")
            return _fault_response(SoapFault("Sender", "the request body ended early (client disconnected)"), None)
        except Exception:
            _cleanup(attachments)
            reference = uuid.uuid4().hex[:12]
            log.exception("unhandled error while processing a SOAP request (reference %s)", reference)
            fault = SoapFault(
                "Receiver",
                "internal error while processing the request (reference %s); the service log has the details" % reference,
            )
            return _fault_response(fault, relates_to)

    def _reply(result: SoapResponse, relates_to: str | None, was_mtom: bool, attachments: dict[str, Attachment]) -> Response:
        parts = ([_as_part(item) for item in result.attachments] if isinstance(result.attachments, list)
                 else result.attachments)
        envelope = build_envelope(result.action, relates_to, result.body)
        use_mtom = result.mtom if result.mtom is not None else bool(parts) or (mirror_mtom and was_mtom)
        cleanup = BackgroundTask(_cleanup, attachments) if attachments else None
        if not use_mtom:
            if parts:
                raise ValueError("SoapResponse has attachments but mtom=False")
            return Response(
                envelope,
                status_code=result.status_code,
                headers={"content-type": soap_content_type(result.action)},
                background=cleanup,
            )
        content_type, body = mtom_response(envelope, parts, action=result.action)
        return StreamingResponse(
            _closing(body, attachments),
            status_code=result.status_code,
            headers={"content-type": content_type},
            background=cleanup,
        )

    return endpoint


async def _closing(body: AsyncIterator[bytes], attachments: dict[str, Attachment]) -> AsyncIterator[bytes]:
    # The background task does not run when the client drops a streaming reply half way: clean up here too.
    try:
        async for piece in body:
            yield piece
    finally:
        _cleanup(attachments)
