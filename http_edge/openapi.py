"""The OpenAPI 3.1 document, generated from the msgspec schemas the edge decodes with."""

from __future__ import annotations

from typing import Any

import msgspec

from http_edge.events_api import ReplayOut
from http_edge.model_api import ModelOut
from http_edge.schemas import (
    AccountIn,
    AccountOut,
    BalanceOut,
    DepositIn,
    DepositOut,
    Problem,
    TransactionDetail,
    TransactionIn,
    TransactionOut,
    TransactionPage,
)
from webhooks.deliveries import OUTCOMES, DeliveryPage, EventRecord

_REF = "#/components/schemas/{name}"
_PROBLEM = {"description": "problem details (RFC 9457)",
            "content": {"application/problem+json": {
                "schema": {"$ref": "#/components/schemas/Problem"}}}}
_INTEGER_HEADER = {"schema": {"type": "integer", "minimum": 0}}
# draft-ietf-httpapi-ratelimit-headers-06; on 200 the client limit's, on 429 the refusing one's.
_RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {"description": "the burst: requests an idle client may send at once",
                        **_INTEGER_HEADER},
    "RateLimit-Remaining": {"description": "requests allowed right now", **_INTEGER_HEADER},
    "RateLimit-Reset": {"description": "seconds until Remaining is back to Limit",
                        **_INTEGER_HEADER},
    "RateLimit-Policy": {"description": "steady rate and burst, e.g. 5000;w=1;burst=5000",
                         "schema": {"type": "string"}}}
_IDEMPOTENCY_KEY = {"name": "Idempotency-Key", "in": "header", "required": True,
                    "description": "1-255 visible ASCII characters; bare or quoted",
                    "schema": {"type": "string", "maxLength": 257}}


def _json(name: str, description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": _REF.format(name=name)}}}}


def _operation(summary: str, scope: str, ok: tuple[str, str, str], *,
               body: str | None = None, params: list[dict[str, Any]] | None = None,
               errors: tuple[int, ...] = (400, 401, 403, 422)) -> dict[str, Any]:
    status, schema, description = ok
    op: dict[str, Any] = {
        "summary": summary, "security": [{"bearer": [scope]}],
        "responses": {status: _json(schema, description),
                      **{str(code): _PROBLEM for code in errors}}}
    if body:
        op["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": _REF.format(name=body)}}}}
    if params:
        op["parameters"] = params
    return op


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _rate_limited(operation: dict[str, Any]) -> dict[str, Any]:
    """Document the 429 and the RateLimit-* fields of a rate-limited operation."""
    responses = operation["responses"]
    responses["200"] = {**responses["200"], "headers": _RATE_LIMIT_HEADERS}
    responses["429"] = {
        **_PROBLEM, "description": "over the client's or the card's rate limit "
                                   "(client_rate_limited | card_rate_limited); nothing recorded",
        "headers": {"Retry-After": {"description": "seconds, at least 1", **_INTEGER_HEADER},
                    **_RATE_LIMIT_HEADERS}}
    return operation


def openapi_document() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        (TransactionIn, TransactionOut, TransactionDetail, TransactionPage, AccountIn,
         AccountOut, DepositIn, DepositOut, BalanceOut, ModelOut, DeliveryPage, EventRecord,
         ReplayOut, Problem),
        ref_template=_REF)
    account = _path_param("account_id")
    event = _path_param("event_id")
    page = [{"name": "limit", "in": "query", "schema": {
                "type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
            {"name": "cursor", "in": "query", "schema": {"type": "string"}}]
    paths = {
        "/v1/transactions": {"post": _rate_limited(_operation(
            "Screen a card payment", "transactions:write",
            ("200", "TransactionOut", "the decision, recorded in the ledger"),
            body="TransactionIn", params=[_IDEMPOTENCY_KEY],
            errors=(400, 401, 403, 404, 409, 413, 415, 422, 503)))},
        "/v1/transactions/{transaction_id}": {"get": _operation(
            "A recorded transaction", "transactions:read",
            ("200", "TransactionDetail", "the transaction"),
            params=[_path_param("transaction_id")], errors=(401, 403, 404))},
        "/v1/accounts": {"post": _operation(
            "Register a cardholder account", "accounts:write",
            ("201", "AccountOut", "created (200 when it already exists identically)"),
            body="AccountIn", errors=(400, 401, 403, 409, 415, 422))},
        "/v1/accounts/{account_id}": {"get": _operation(
            "An account", "accounts:read", ("200", "AccountOut", "the account"),
            params=[account], errors=(401, 403, 404))},
        "/v1/accounts/{account_id}/deposits": {"post": _operation(
            "Credit money to an account", "accounts:write",
            ("201", "DepositOut", "posted (200 with Idempotent-Replayed on a replay)"),
            body="DepositIn", params=[account, _IDEMPOTENCY_KEY],
            errors=(400, 401, 403, 404, 415, 422))},
        "/v1/accounts/{account_id}/balance": {"get": _operation(
            "Current balance", "accounts:read", ("200", "BalanceOut", "the balance"),
            params=[account], errors=(401, 403, 404))},
        "/v1/accounts/{account_id}/transactions": {"get": _operation(
            "Transaction history, newest first", "transactions:read",
            ("200", "TransactionPage", "one page; follow next_cursor for the next"),
            params=[account, *page], errors=(400, 401, 403, 404))},
        "/v1/merchants/{merchant_id}/deliveries": {"get": _operation(
            "A merchant's webhook delivery attempts, newest first", "merchants:read",
            ("200", "DeliveryPage", "one page; follow next_cursor for the next"),
            params=[_path_param("merchant_id"), *page,
                    {"name": "outcome", "in": "query", "schema": {"enum": list(OUTCOMES)}},
                    {"name": "event_id", "in": "query", "schema": {"type": "string"}}],
            errors=(400, 401, 403, 404))},
        "/v1/events/{event_id}": {"get": _operation(
            "A webhook event, its delivery status and attempts", "merchants:read",
            ("200", "EventRecord", "the event as delivered, with its attempts oldest first"),
            params=[event], errors=(401, 403, 404))},
        "/v1/events/{event_id}/replay": {"post": _operation(
            "Deliver an event again", "merchants:write",
            ("202", "ReplayOut", "queued: the relay publishes it, even after a broker outage"),
            params=[event], errors=(400, 401, 403, 404, 409, 415, 422))},
        "/v1/model": {"get": _operation(
            "The risk model this process serves", "rules:read",
            ("200", "ModelOut", "version, features, thresholds, training record"),
            errors=(401, 403, 503))},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "SentinelStream", "version": "1",
                 "description": "Real-time fraud screening for card payments"},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}},
    }
