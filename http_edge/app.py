"""Builds the aiohttp application: routes, the middleware stack, health and metrics.

Middleware, outermost first: request id + error mapping (every error becomes problem+json
here, in one place) -> JWT scopes -> handler.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web

from http_edge.auth import PRINCIPAL, TokenIssuer
from http_edge.events_api import EventsApi
from http_edge.events_api import add_routes as add_event_routes
from http_edge.handlers import Api, Handler
from http_edge.merchants_api import MerchantsApi
from http_edge.merchants_api import add_routes as add_merchant_routes
from http_edge.metrics import render_metrics
from http_edge.model_api import ModelApi
from http_edge.openapi import openapi_document
from http_edge.problems import error_headers, problem_response, status_of
from http_edge.rules_api import RulesApi
from http_edge.rules_api import add_routes as add_rule_routes

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[None]]
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@dataclass(frozen=True)
class Probes:
    """Readiness checks by name (e.g. postgresql, redis); each raises when not ready."""

    checks: dict[str, Probe]


def _route_name(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _error_response(request: web.Request, exc: BaseException) -> web.Response:
    request_id = request.get(REQUEST_ID)
    if isinstance(exc, web.HTTPException):
        code = {404: "not_found", 405: "method_not_allowed",
                413: "payload_too_large"}.get(exc.status, "http_error")
        return problem_response(exc.status, code, exc.reason, request_id=request_id,
                                instance=request.path)
    known = status_of(exc)
    if known is None:
        log.exception("unhandled error in %s %s", request.method, request.path, exc_info=exc)
        return problem_response(500, "internal_error", "an unexpected error occurred",
                                request_id=request_id, instance=request.path)
    status, code, error = known
    return problem_response(status, code, str(error), request_id=request_id,
                            pointer=getattr(error, "pointer", None), instance=request.path,
                            column=getattr(error, "column", None),
                            headers=error_headers(error, status))


def _error_middleware(api: Api) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        request_id = request.headers.get("X-Request-Id", "")
        if not _REQUEST_ID.fullmatch(request_id):  # never echo arbitrary bytes back
            request_id = uuid.uuid4().hex
        request[REQUEST_ID] = request_id
        try:
            response = await handler(request)
        except Exception as exc:
            response = _error_response(request, exc)
        response.headers["X-Request-Id"] = request_id
        api.statistics.count_request(request.method, _route_name(request), response.status)
        return response
    return errors


def _auth_middleware(tokens: TokenIssuer) -> Callable[..., Awaitable[web.StreamResponse]]:
    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        scope = getattr(request.match_info.handler, "required_scope", None)
        if scope is not None:
            principal = tokens.verify(request.headers.get("Authorization"))
            principal.require(scope)
            request[PRINCIPAL] = principal
        return await handler(request)
    return auth


def _readiness(probes: Probes) -> Handler:
    async def readyz(request: web.Request) -> web.Response:
        failing = {}
        for name, check in probes.checks.items():
            try:
                await check()
            except Exception as exc:
                failing[name] = f"{type(exc).__name__}: {exc}"
        if failing:
            return web.json_response({"status": "unavailable", "failing": failing}, status=503)
        return web.json_response({"status": "ready", "checks": sorted(probes.checks)})
    return readyz


def build_app(api: Api, rules_api: RulesApi, tokens: TokenIssuer, probes: Probes, *,
              max_body_bytes: int, model_api: ModelApi | None = None,
              merchants_api: MerchantsApi | None = None,
              events_api: EventsApi | None = None,
              metrics_text: Callable[[], str] | None = None) -> web.Application:
    """`metrics_text` renders `/metrics` instead of this process's own statistics (several
    edge processes: the sum over all of them)."""
    app = web.Application(client_max_size=max_body_bytes,
                          middlewares=[_error_middleware(api), _auth_middleware(tokens)])
    document = openapi_document()

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def metrics(request: web.Request) -> web.Response:
        text = (metrics_text() if metrics_text is not None
                else render_metrics(api.statistics, api.pipeline.statistics()))
        return web.Response(text=text, content_type="text/plain", charset="utf-8",
                            headers={"X-Prometheus-Version": "0.0.4"})

    async def openapi(request: web.Request) -> web.Response:
        return web.json_response(document)

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", _readiness(probes))
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/openapi.json", openapi)
    app.router.add_post("/v1/transactions", api.screen_transaction)
    app.router.add_get("/v1/transactions/{transaction_id}", api.get_transaction)
    app.router.add_post("/v1/accounts", api.create_account)
    app.router.add_get("/v1/accounts/{account_id}", api.get_account)
    app.router.add_post("/v1/accounts/{account_id}/deposits", api.deposit)
    app.router.add_get("/v1/accounts/{account_id}/balance", api.balance)
    app.router.add_get("/v1/accounts/{account_id}/transactions", api.history)
    add_rule_routes(app, rules_api)
    if model_api is not None:
        app.router.add_get("/v1/model", model_api.current)
    if merchants_api is not None:
        add_merchant_routes(app, merchants_api)
    if events_api is not None:
        add_event_routes(app, events_api)
    return app
