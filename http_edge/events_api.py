"""Events API: a merchant's webhook deliveries, one event with its attempts, and replays."""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgspec
from aiohttp import web

from http_edge.auth import PRINCIPAL, Principal
from http_edge.handlers import json_response, page_limit, read_body, requires
from http_edge.merchants_api import merchant_id_of
from http_edge.problems import InvalidQuery
from http_edge.schemas import StrictBody
from webhooks.deliveries import OUTCOMES, DeliveryLog

_EVENT_ID = re.compile(r"evt_[A-Za-z0-9._:-]{1,64}")


class ReplayIn(StrictBody, frozen=True):
    """No options yet: the body may be empty or `{}`."""


class ReplayOut(msgspec.Struct, frozen=True, kw_only=True):
    event_id: str
    replay_id: int
    status: str = "queued"


def outcome_of(raw: str | None) -> str | None:
    if raw is not None and raw not in OUTCOMES:
        raise InvalidQuery(f"outcome must be one of {', '.join(OUTCOMES)}, got {raw[:80]!r}",
                           code="invalid_outcome")
    return raw


def event_id_filter(raw: str | None) -> str | None:
    if raw is not None and not _EVENT_ID.fullmatch(raw):
        raise InvalidQuery(f"event_id must be 'evt_<transaction_id>', got {raw[:80]!r}",
                           code="invalid_event_id")
    return raw


@dataclass(frozen=True)
class EventsApi:
    log: DeliveryLog

    @requires("merchants:read")
    async def deliveries(self, request: web.Request) -> web.Response:
        merchant_id = merchant_id_of(request)
        query = request.query
        page = await self.log.deliveries(
            merchant_id, limit=page_limit(query.get("limit")),
            cursor=query.get("cursor") or None, outcome=outcome_of(query.get("outcome")),
            event_id=event_id_filter(query.get("event_id")))
        return json_response(page)

    @requires("merchants:read")
    async def get(self, request: web.Request) -> web.Response:
        # EventRecord is the answer as it stands: `event` is byte for byte what the
        # merchant's endpoint receives.
        return json_response(await self.log.event(request.match_info["event_id"]))

    @requires("merchants:write")
    async def replay(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        if await request.read():  # no body at all is fine; any body must be valid
            await read_body(request, ReplayIn)
        replay = await self.log.replay(request.match_info["event_id"],
                                       requested_by=principal.subject)
        return json_response(ReplayOut(event_id=replay.event_id, replay_id=replay.replay_id),
                             status=202)


def add_routes(app: web.Application, api: EventsApi) -> None:
    app.router.add_get("/v1/merchants/{merchant_id}/deliveries", api.deliveries)
    app.router.add_get("/v1/events/{event_id}", api.get)
    app.router.add_post("/v1/events/{event_id}/replay", api.replay)
