"""Merchants API and store against the real PostgreSQL: secrets shown once, rotation, errors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.conftest import Server, unique
from webhooks.merchants import MerchantStore
from webhooks.signing import sign, verify

pytestmark = pytest.mark.integration


async def create(server: Server, **overrides: object) -> tuple[int, dict, dict]:
    body = {"merchant_id": unique("shop"), "name": "Corner Shop",
            "webhook_url": "https://shop.example/hooks", "category": "grocery_pos"}
    body.update(overrides)
    return await server.call("POST", "/v1/merchants", json=body, scopes=("merchants:write",))


async def test_create_shows_the_secret_once(server: Server):
    status, body, headers = await create(server)
    assert status == 201, body
    secret = body["signing_secret"]
    assert secret.startswith("whsec_")
    assert headers["Location"] == f"/v1/merchants/{body['merchant_id']}"
    verify(secret, "m1", "100", b"{}", sign(secret, "m1", 100, b"{}"), now_s=100)
    status, shown, _ = await server.call("GET", f"/v1/merchants/{body['merchant_id']}",
                                         scopes=("merchants:read",))
    assert status == 200 and "signing_secret" not in shown
    assert shown["webhook_url"] == "https://shop.example/hooks" and shown["delivery_enabled"]
    store = MerchantStore(server.app.pool)
    assert await store.signing_secrets(body["merchant_id"]) == [secret]


async def test_a_second_create_is_a_conflict_and_keeps_the_first_secret(server: Server):
    status, first, _ = await create(server)
    status, body, _ = await create(server, merchant_id=first["merchant_id"], name="Other")
    assert status == 409 and body["code"] == "merchant_exists"
    secrets = await MerchantStore(server.app.pool).signing_secrets(first["merchant_id"])
    assert secrets == [first["signing_secret"]]


@pytest.mark.parametrize(("overrides", "pointer"), [
    ({"webhook_url": "ftp://shop.example/x"}, "/webhook_url"),
    ({"webhook_url": "/relative"}, "/webhook_url"),
    ({"webhook_url": "https://user:pw@shop.example/x"}, "/webhook_url"),
    ({"name": ""}, "/name"),
    ({"merchant_id": "bad id"}, "/merchant_id"),
    ({"colour": "red"}, None),
])
async def test_bad_merchants_are_refused_and_nothing_is_written(server: Server, overrides,
                                                                pointer):
    merchant_id = overrides.get("merchant_id", unique("shop"))
    status, body, _ = await create(server, **{**overrides, "merchant_id": merchant_id})
    assert status == 422, body
    assert body["code"] in ("invalid_field", "unknown_field")
    if pointer is not None:
        assert body["pointer"] == pointer
    async with server.app.pool.acquire() as conn:  # type: ignore[union-attr]
        assert await conn.fetchval("SELECT count(*) FROM merchants WHERE merchant_id = $1",
                                   merchant_id) == 0


async def test_rotation_keeps_the_old_secret_valid_for_a_day(server: Server):
    _, first, _ = await create(server)
    merchant_id = first["merchant_id"]
    status, rotated, _ = await server.call("POST", f"/v1/merchants/{merchant_id}/secret/rotate",
                                           scopes=("merchants:write",))
    assert status == 200, rotated
    new = rotated["signing_secret"]
    assert new != first["signing_secret"]
    store = MerchantStore(server.app.pool)
    assert await store.signing_secrets(merchant_id) == [new, first["signing_secret"]]
    async with server.app.pool.acquire() as conn:  # type: ignore[union-attr]
        now = await conn.fetchval("SELECT now()")
    assert await store.signing_secrets(merchant_id, at=now + timedelta(hours=23)) == [
        new, first["signing_secret"]]
    assert await store.signing_secrets(merchant_id, at=now + timedelta(hours=25)) == [new]


async def test_patch_changes_the_url_and_stops_and_restarts_delivery(server: Server):
    _, first, _ = await create(server)
    path = f"/v1/merchants/{first['merchant_id']}"
    status, body, _ = await server.call("PATCH", path, json={"delivery_enabled": False},
                                        scopes=("merchants:write",))
    assert status == 200 and body["delivery_enabled"] is False
    assert body["disabled_reason"] == "disabled by API"
    status, body, _ = await server.call(
        "PATCH", path, json={"delivery_enabled": True, "webhook_url": "http://new.example/h"},
        scopes=("merchants:write",))
    assert status == 200 and body["delivery_enabled"] and body["disabled_reason"] is None
    assert body["webhook_url"] == "http://new.example/h"
    status, body, _ = await server.call("PATCH", path, json={"webhook_url": None},
                                        scopes=("merchants:write",))
    assert status == 200 and body["webhook_url"] is None  # no URL: no deliveries
    status, body, _ = await server.call("PATCH", path, json={}, scopes=("merchants:write",))
    assert status == 422 and "nothing to change" in body["detail"]
    status, body, _ = await server.call("PATCH", path, json={"webhook_url": "nope"},
                                        scopes=("merchants:write",))
    assert status == 422 and body["pointer"] == "/webhook_url"


async def test_unknown_merchants_and_missing_scopes(server: Server):
    for method, suffix in (("GET", ""), ("PATCH", ""), ("POST", "/secret/rotate")):
        status, body, _ = await server.call(
            method, f"/v1/merchants/{unique('nobody')}{suffix}",
            json={"name": "x"} if method == "PATCH" else None, scopes=("merchants:write",
                                                                        "merchants:read"))
        assert status == 404 and body["code"] == "merchant_not_found", (method, body)
    status, body, _ = await server.call(
        "POST", "/v1/merchants", json={"merchant_id": "x", "name": "y"},
        scopes=("merchants:read",))
    assert status == 403 and body["code"] == "insufficient_scope"
