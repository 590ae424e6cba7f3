"""The registry's reconciliation endpoint (JSON over HTTP), for operators and their tools.

``GET  /reconciliation?state=open``          items (state open|linked|rejected|all; default open)
``GET  /reconciliation/{item}``               one item, with the SubmitObjectsRequest as received
``POST /reconciliation/{item}/link``          {"domain_patient_id", "operator", "note"?}
``POST /reconciliation/{item}/reject``        {"operator", "note"?}
``GET  /reconciliation/links``                the local id links
``POST /reconciliation/links``                {"local_patient_id", "domain_patient_id", "operator", "note"?}:
                                              link a local id (also one with entries registered under it)

Every request needs ``Authorization: Bearer <admin token>``. A registry started without a token answers
403: the queue holds patient data and its decisions move documents between patients.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from registry import reconcile

if TYPE_CHECKING:
    from registry.app import Registry

log = logging.getLogger(__name__)


def _error(status: int, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers or None)


def _refused(registry: Registry, request: Request) -> Response | None:
    """The answer to a request that is not allowed, or None."""
    token = registry.config.admin_token
    if not token:
        return _error(403, "the reconciliation endpoint is disabled: start the registry with --admin-token "
                           "(or XDSI_ADMIN_TOKEN) to enable it")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return _error(401, "missing bearer token (Authorization: Bearer <admin token>)",
                      **{"WWW-Authenticate": 'Bearer realm="xdsi-registry"'})
    if not hmac.compare_digest(given.strip().encode(), token.encode()):
        return _error(401, "wrong bearer token", **{"WWW-Authenticate": 'Bearer realm="xdsi-registry", '
                                                                        'error="invalid_token"'})
    return None


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except ValueError as exc:
        raise reconcile.ReconcileError(400, f"the request body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise reconcile.ReconcileError(400, "the request body must be a JSON object")
    return body


def reconciliation_routes(registry: Registry) -> list[Route]:
    """The Starlette routes, bound to ``registry``."""
    engine = registry.engine

    def guarded(handler):  # type: ignore[no-untyped-def]
        async def endpoint(request: Request) -> Response:
            refused = _refused(registry, request)
            if refused is not None:
                return refused
            try:
                return JSONResponse(await handler(request))
            except reconcile.ReconcileError as exc:
                return JSONResponse(exc.to_json(), status_code=exc.status)
            except Exception as exc:  # the database went away...: say so, in JSON like every other answer
                log.exception("reconciliation endpoint %s %s", request.method, request.url.path)
                return _error(500, f"the registry could not carry out the request: {type(exc).__name__}: {exc}")
        return endpoint

    async def items(request: Request) -> Any:
        state = request.query_params.get("state", reconcile.OPEN)
        return {"items": await run_in_threadpool(reconcile.list_items, engine, None if state == "all" else state)}

    async def item(request: Request) -> Any:
        return await run_in_threadpool(reconcile.get_item, engine, request.path_params["item"])

    async def link_item(request: Request) -> Any:
        body = await _body(request)
        result = await run_in_threadpool(
            lambda: reconcile.link(engine, request.path_params["item"], body.get("domain_patient_id"),
                                   operator=body.get("operator"), note=body.get("note")))
        return result.to_json()

    async def reject_item(request: Request) -> Any:
        body = await _body(request)
        return await run_in_threadpool(
            lambda: reconcile.reject(engine, request.path_params["item"], operator=body.get("operator"),
                                     note=body.get("note")))

    async def links(request: Request) -> Any:
        if request.method == "GET":
            return {"links": await run_in_threadpool(reconcile.list_links, engine)}
        body = await _body(request)
        local = body.get("local_patient_id")
        if not isinstance(local, str) or not local.strip():
            raise reconcile.ReconcileError(422, "local_patient_id is required")
        result = await run_in_threadpool(
            lambda: reconcile.link(engine, local, body.get("domain_patient_id"), operator=body.get("operator"),
                                   note=body.get("note")))
        return result.to_json()

    return [
        Route("/reconciliation", guarded(items), methods=["GET"]),
        Route("/reconciliation/links", guarded(links), methods=["GET", "POST"]),
        Route("/reconciliation/{item:int}", guarded(item), methods=["GET"]),
        Route("/reconciliation/{item:int}/link", guarded(link_item), methods=["POST"]),
        Route("/reconciliation/{item:int}/reject", guarded(reject_item), methods=["POST"]),
    ]
