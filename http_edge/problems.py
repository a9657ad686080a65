"""Errors of the edge and the one registry that maps every error to RFC 9457 problem+json.

    EdgeError                      (this module; status and code per class)
    ├── MalformedJson              400 malformed_json
    ├── InvalidBody                422 invalid_field | unknown_field | missing_field | ...
    ├── InvalidHeader              400 missing_idempotency_key | invalid_idempotency_key
    ├── InvalidQuery               400 invalid_query
    ├── Unauthorized               401 missing_token | invalid_token | token_expired
    ├── Forbidden                  403 insufficient_scope
    └── UnsupportedMediaType       415 unsupported_media_type

Domain errors (ledger, money, pipeline, stages) keep their own `code`; `STATUS_BY_CODE` gives
their HTTP status. Anything unmapped is a bug: 500 `internal_error`, logged with its traceback.
Some answers carry headers too (`error_headers`): `Retry-After` on 503 and 429, and
`RateLimit-*` on `RateLimited` (429 `client_rate_limited` | `card_rate_limited`).
"""

from __future__ import annotations

import functools
import re

import msgspec
from aiohttp import web

from http_edge.schemas import Problem
from pipeline import Overloaded, StageFailed
from stages.gcra import Limit, whole_seconds
from stages.ratelimit import Quota, RateLimited

PROBLEM_TYPE_BASE = "https://sentinelstream.dev/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"


class EdgeError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, detail: str, *, code: str | None = None,
                 pointer: str | None = None) -> None:
        super().__init__(detail)
        if code is not None:
            self.code = code
        self.pointer = pointer


class MalformedJson(EdgeError):
    status, code = 400, "malformed_json"


class InvalidBody(EdgeError):
    status, code = 422, "invalid_field"


class InvalidHeader(EdgeError):
    status, code = 400, "invalid_header"


class InvalidQuery(EdgeError):
    status, code = 400, "invalid_query"


class Unauthorized(EdgeError):
    status, code = 401, "invalid_token"


class Forbidden(EdgeError):
    status, code = 403, "insufficient_scope"


class UnsupportedMediaType(EdgeError):
    status, code = 415, "unsupported_media_type"


STATUS_BY_CODE: dict[str, int] = {
    "account_not_found": 404,
    "transaction_not_found": 404,
    "account_exists": 409,
    "transaction_exists": 409,
    "request_in_flight": 409,
    "currency_mismatch": 422,
    "idempotency_key_reused": 422,
    "unknown_currency": 422,
    "invalid_amount": 422,
    "unknown_country": 422,
    "invalid_cursor": 400,
    "client_rate_limited": 429,
    "card_rate_limited": 429,
    "ledger_unavailable": 503,
    "overloaded": 503,
    "shutting_down": 503,
    "deadline_exceeded": 503,
    "model_unavailable": 503,
    "rule_syntax_error": 422,
    "rule_type_error": 422,
    "unknown_field": 422,
    "rule_not_found": 404,
    "rule_exists": 409,
    "merchant_not_found": 404,
    "merchant_exists": 409,
    "event_not_found": 404,
    "no_webhook_url": 409,
    "delivery_disabled": 409,
}

_encode_problem = msgspec.json.Encoder().encode

_AT_PATH = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"`(?P<field>[^`]+)`")


def json_pointer(path: str) -> str:
    """`.a.b[0]` (msgspec's path after '$') -> `/a/b/0` (RFC 6901)."""
    parts = re.findall(r"\.([^.\[]+)|\[(\d+)\]", path)
    return "/" + "/".join(name or index for name, index in parts) if parts else ""


def invalid_body(error: msgspec.ValidationError) -> InvalidBody:
    """Turn msgspec's message into a stable code and a JSON pointer to the field."""
    message = str(error)
    match = _AT_PATH.search(message)
    pointer = json_pointer(match["path"]) if match else ""
    field = _FIELD.search(message)
    if message.startswith("Object contains unknown field") and field:
        return InvalidBody(message, code="unknown_field", pointer=f"{pointer}/{field['field']}")
    if message.startswith("Object missing required field") and field:
        return InvalidBody(message, code="missing_field", pointer=f"{pointer}/{field['field']}")
    if message.startswith("Expected `object`"):
        return InvalidBody(message, code="invalid_body", pointer=pointer or "/")
    return InvalidBody(message, code="invalid_field", pointer=pointer or None)


def _title(code: str) -> str:
    return code.replace("_", " ").capitalize()


def problem_response(status: int, code: str, detail: str, *, request_id: str | None = None,
                     pointer: str | None = None, instance: str | None = None,
                     column: int | None = None,
                     headers: dict[str, str] | None = None) -> web.Response:
    body = Problem(type=PROBLEM_TYPE_BASE + code, title=_title(code), status=status, code=code,
                   detail=detail, instance=instance, pointer=pointer, column=column,
                   request_id=request_id)
    return web.Response(status=status, body=_encode_problem(body),
                        content_type=PROBLEM_CONTENT_TYPE, headers=headers)


@functools.cache  # a handful of limits per process; saves formatting on every answer
def rate_limit_policy(limit: Limit) -> str:
    """`RateLimit-Policy` of draft-ietf-httpapi-ratelimit-headers-06: quota;w=window;burst=n."""
    window_s, quota = 1, limit.per_s
    for window_s in (1, 2, 5, 10, 60, 3600):
        quota = limit.per_s * window_s
        if abs(quota - round(quota)) < 1e-6:
            break
    return f"{round(quota)};w={window_s};burst={limit.burst}"


def rate_limit_headers(quota: Quota) -> dict[str, str]:
    """The draft-06 fields: Limit is the burst (what an idle client may send at once),
    Remaining what it may send now, Reset the seconds until it is back to Limit."""
    return {"RateLimit-Limit": str(quota.limit.burst),
            "RateLimit-Remaining": str(quota.remaining),
            "RateLimit-Reset": str(whole_seconds(quota.reset_us)),
            "RateLimit-Policy": rate_limit_policy(quota.limit)}


def error_headers(error: BaseException, status: int) -> dict[str, str] | None:
    """The headers a known error's answer carries beside its problem body."""
    if isinstance(error, RateLimited):
        return {"Retry-After": str(error.retry_after_s), **rate_limit_headers(error.quota)}
    if isinstance(error, Overloaded):
        return {"Retry-After": str(max(1, round(error.retry_after_s)))}
    if status == 503:
        return {"Retry-After": "1"}
    return None


def status_of(error: BaseException) -> tuple[int, str, BaseException] | None:
    """(status, code, the error to describe) for a known error, None for a bug."""
    if isinstance(error, StageFailed) and error.__cause__ is not None:
        return status_of(error.__cause__)
    if isinstance(error, EdgeError):
        return error.status, error.code, error
    code = getattr(error, "code", None)
    if isinstance(code, str) and code in STATUS_BY_CODE:
        return STATUS_BY_CODE[code], code, error
    return None
