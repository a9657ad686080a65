"""Merchants API: register a merchant's webhook endpoint, rotate its secret, change or stop it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated
from urllib.parse import urlsplit

import msgspec
from aiohttp import web
from msgspec import Meta

from http_edge.handlers import json_response, read_body, requires
from http_edge.problems import InvalidBody, InvalidQuery
from http_edge.schemas import Category, Identifier, StrictBody
from webhooks.merchants import Merchant, MerchantStore

Name = Annotated[str, Meta(min_length=1, max_length=200)]
Url = Annotated[str, Meta(max_length=2048, examples=["https://shop.example/webhooks"])]


class MerchantIn(StrictBody, frozen=True):
    merchant_id: Identifier
    name: Name
    webhook_url: Url | None = None
    category: Category | None = None


class MerchantPatch(StrictBody, frozen=True):
    name: Name | msgspec.UnsetType = msgspec.UNSET
    webhook_url: Url | msgspec.UnsetType | None = msgspec.UNSET
    category: Category | msgspec.UnsetType | None = msgspec.UNSET
    delivery_enabled: bool | msgspec.UnsetType = msgspec.UNSET


class MerchantOut(msgspec.Struct, frozen=True, kw_only=True):
    merchant_id: str
    name: str
    category: str | None
    webhook_url: str | None
    delivery_enabled: bool
    disabled_reason: str | None
    created_at: datetime
    updated_at: datetime
    # Only in the answers to create and rotate: store it, it is never shown again.
    signing_secret: str | msgspec.UnsetType = msgspec.UNSET


def webhook_url(raw: str | None) -> str | None:
    """An absolute http(s) URL without credentials, or 422 naming the field."""
    if raw is None:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidBody("webhook_url must be an absolute http:// or https:// URL",
                          pointer="/webhook_url")
    if parts.username or parts.password:
        raise InvalidBody("webhook_url must not carry credentials; the signature "
                          "authenticates deliveries", pointer="/webhook_url")
    return raw


def merchant_out(merchant: Merchant, secret: str | None = None) -> MerchantOut:
    return MerchantOut(**msgspec.structs.asdict(merchant),
                       signing_secret=msgspec.UNSET if secret is None else secret)


def merchant_id_of(request: web.Request) -> str:
    value = request.match_info["merchant_id"]
    if not value or len(value) > 64 or "\x00" in value:
        raise InvalidQuery("merchant_id in the path must be 1-64 characters")
    return value


@dataclass(frozen=True)
class MerchantsApi:
    store: MerchantStore

    @requires("merchants:write")
    async def create(self, request: web.Request) -> web.Response:
        body = await read_body(request, MerchantIn)
        merchant, secret = await self.store.create(
            body.merchant_id, body.name, webhook_url=webhook_url(body.webhook_url),
            category=body.category)
        return json_response(merchant_out(merchant, secret), status=201,
                             headers={"Location": f"/v1/merchants/{merchant.merchant_id}"})

    @requires("merchants:read")
    async def get(self, request: web.Request) -> web.Response:
        return json_response(merchant_out(await self.store.get(merchant_id_of(request))))

    @requires("merchants:write")
    async def patch(self, request: web.Request) -> web.Response:
        merchant_id = merchant_id_of(request)
        body = await read_body(request, MerchantPatch)
        changes = {k: v for k, v in msgspec.structs.asdict(body).items()
                   if v is not msgspec.UNSET}
        if "webhook_url" in changes:
            changes["webhook_url"] = webhook_url(changes["webhook_url"])
        if not changes:
            raise InvalidBody("nothing to change: send name, webhook_url, category or "
                              "delivery_enabled")
        return json_response(merchant_out(await self.store.update(merchant_id, changes)))

    @requires("merchants:write")
    async def rotate_secret(self, request: web.Request) -> web.Response:
        merchant_id = merchant_id_of(request)
        secret = await self.store.rotate_secret(merchant_id)
        return json_response(merchant_out(await self.store.get(merchant_id), secret))


def add_routes(app: web.Application, api: MerchantsApi) -> None:
    app.router.add_post("/v1/merchants", api.create)
    app.router.add_get("/v1/merchants/{merchant_id}", api.get)
    app.router.add_patch("/v1/merchants/{merchant_id}", api.patch)
    app.router.add_post("/v1/merchants/{merchant_id}/secret/rotate", api.rotate_secret)
