"""Request handlers of the `/v1` API: decode strictly, call the pipeline or the ledger, encode.

Each handler declares the scope it needs with `@requires`; the auth middleware enforces it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from aiohttp import web

from http_edge.auth import PRINCIPAL, Principal
from http_edge.metrics import EdgeStatistics
from http_edge.problems import (
    InvalidQuery,
    MalformedJson,
    UnsupportedMediaType,
    invalid_body,
    rate_limit_headers,
)
from http_edge.schemas import (
    AccountIn,
    AccountOut,
    BalanceOut,
    DepositIn,
    DepositOut,
    TransactionDetail,
    TransactionIn,
    TransactionOut,
    TransactionPage,
)
from http_edge.validation import account_spec, deposit, idempotency_key, payment_request
from ledger.errors import TransactionNotFound, UnknownAccount
from ledger.money import format_amount
from ledger.records import AccountState, PaymentRecord, TransactionView
from ledger.repository import Ledger
from pipeline import Item, Pipeline
from stages.idempotency import IdempotencyCache
from stages.ratelimit import RateLimitCheck
from stages.screening import Screening

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
T = TypeVar("T")

MAX_PAGE = 500
DEFAULT_PAGE = 50

_encode = msgspec.json.Encoder().encode
_decoders: dict[type, msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls) for cls in (TransactionIn, AccountIn, DepositIn)}


F = TypeVar("F", bound=Callable[..., Awaitable[web.StreamResponse]])


def requires(scope: str) -> Callable[[F], F]:
    """Declare the scope a handler needs; the auth middleware reads it."""
    def mark(handler: F) -> F:
        handler.required_scope = scope  # type: ignore[attr-defined]
        return handler
    return mark


def json_response(body: msgspec.Struct, *, status: int = 200,
                  headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_encode(body), status=status, content_type="application/json",
                        headers=headers)


async def read_body(request: web.Request, cls: type[T]) -> T:
    if request.content_type != "application/json":
        raise UnsupportedMediaType(
            f"send the body as application/json (got {request.content_type or 'nothing'})")
    raw = await request.read()
    try:
        decoder = _decoders.get(cls)
        if decoder is None:
            decoder = _decoders[cls] = msgspec.json.Decoder(cls)
        return decoder.decode(raw)  # type: ignore[no-any-return]
    except msgspec.ValidationError as exc:
        raise invalid_body(exc) from None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:
        # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 in strings.
        raise MalformedJson(f"the body is not valid JSON: {exc}") from None


def server_timing(item: Item, total_ms: float) -> str:
    parts = [f"{stage};dur={ms:.2f}" for stage, ms in item.timings_ms.items()]
    parts.append(f"total;dur={total_ms:.2f}")
    return ", ".join(parts)


def transaction_out(record: PaymentRecord, elapsed_ms: float) -> TransactionOut:
    return TransactionOut(
        transaction_id=record.transaction_id, decision=record.decision,
        risk_score=record.risk_score, reasons=record.reasons,
        balance_after=format_amount(record.balance_after_minor, record.currency),
        currency=record.currency, processed_in_ms=round(elapsed_ms, 3),
        rules_version=record.rules_version, model_version=record.model_version)


def transaction_detail(view: TransactionView) -> TransactionDetail:
    return TransactionDetail(
        transaction_id=view.transaction_id, account_id=view.account_id, card_id=view.card_id,
        merchant_id=view.merchant_id, amount=format_amount(view.amount_minor, view.currency),
        currency=view.currency, merchant_category=view.merchant_category,
        country=view.country, lat=view.lat, lon=view.lon, timestamp=view.event_time,
        decision=view.decision, risk_score=view.risk_score, reasons=view.reasons,
        balance_after=format_amount(view.balance_after_minor, view.currency),
        rules_version=view.rules_version, model_version=view.model_version,
        recorded_at=view.recorded_at)


def account_out(state: AccountState) -> AccountOut:
    return AccountOut(
        account_id=state.account_id, currency=state.currency, home_country=state.home_country,
        home_lat=state.home_lat, home_lon=state.home_lon,
        overdraft_limit=format_amount(state.overdraft_limit_minor, state.currency),
        balance=format_amount(state.balance_minor, state.currency), created_at=state.created_at)


_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def account_id_of(request: web.Request) -> str:
    """The path's account id; one that could never exist is simply not found."""
    account_id = request.match_info["account_id"]
    if not _ID.fullmatch(account_id):
        raise UnknownAccount(account_id[:80])
    return account_id


def transaction_id_of(request: web.Request) -> str:
    transaction_id = request.match_info["transaction_id"]
    if not _ID.fullmatch(transaction_id):
        raise TransactionNotFound(transaction_id[:80])
    return transaction_id


def page_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_PAGE
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidQuery(f"limit must be an integer from 1 to {MAX_PAGE}, got {raw!r}")
    return int(raw)


@dataclass(frozen=True)
class Api:
    """The `/v1` handlers, with the resources they use."""

    ledger: Ledger
    pipeline: Pipeline
    cache: IdempotencyCache
    statistics: EdgeStatistics
    request_deadline_s: float

    @requires("transactions:write")
    async def screen_transaction(self, request: web.Request) -> web.Response:
        started = time.perf_counter()
        principal: Principal = request[PRINCIPAL]
        key = idempotency_key(request.headers.get("Idempotency-Key"))
        body = await read_body(request, TransactionIn)
        payment = payment_request(body, client_id=principal.subject, idem_key=key)
        screening = Screening(request=payment,
                              cache_key=self.cache.key(principal.subject, key))
        check = RateLimitCheck(screening)
        item = self.pipeline.submit_nowait(check, deadline_s=self.request_deadline_s)
        screening.deadline_s = item.deadline_s  # the scoring stage skips the model when short
        try:
            record: PaymentRecord = await item.future
        except Exception:  # a RateLimited request claimed no key: the release is a no-op
            await self.cache.release(screening)
            raise
        elapsed_ms = (time.perf_counter() - started) * 1000
        self.statistics.count_decision(record.decision, elapsed_ms)
        headers = {"Server-Timing": server_timing(item, elapsed_ms)}
        if record.replayed:
            headers["Idempotent-Replayed"] = "true"
        if check.quota is not None:
            headers.update(rate_limit_headers(check.quota))
        return json_response(transaction_out(record, elapsed_ms), headers=headers)

    @requires("transactions:read")
    async def get_transaction(self, request: web.Request) -> web.Response:
        view = await self.ledger.get_transaction(transaction_id_of(request))
        return json_response(transaction_detail(view))

    @requires("accounts:write")
    async def create_account(self, request: web.Request) -> web.Response:
        spec = account_spec(await read_body(request, AccountIn))
        state, created = await self.ledger.create_account(spec)
        return json_response(account_out(state), status=201 if created else 200,
                             headers={"Location": f"/v1/accounts/{state.account_id}"})

    @requires("accounts:read")
    async def get_account(self, request: web.Request) -> web.Response:
        state = await self.ledger.get_account(account_id_of(request))
        return json_response(account_out(state))

    @requires("accounts:write")
    async def deposit(self, request: web.Request) -> web.Response:
        principal: Principal = request[PRINCIPAL]
        key = idempotency_key(request.headers.get("Idempotency-Key"))
        account_id = account_id_of(request)
        body = await read_body(request, DepositIn)
        amount_minor, fingerprint = deposit(body, account_id)
        record = await self.ledger.post_deposit(
            client_id=principal.subject, idem_key=key, fingerprint=fingerprint,
            account_id=account_id, amount_minor=amount_minor, currency=body.currency)
        out = DepositOut(deposit_id=record.entry_id, account_id=record.account_id,
                         amount=format_amount(record.amount_minor, record.currency),
                         currency=record.currency,
                         balance_after=format_amount(record.balance_after_minor,
                                                     record.currency))
        headers = {"Idempotent-Replayed": "true"} if record.replayed else None
        return json_response(out, status=200 if record.replayed else 201, headers=headers)

    @requires("accounts:read")
    async def balance(self, request: web.Request) -> web.Response:
        state = await self.ledger.get_account(account_id_of(request))
        fmt = format_amount
        return json_response(BalanceOut(
            account_id=state.account_id, currency=state.currency,
            balance=fmt(state.balance_minor, state.currency),
            available=fmt(state.balance_minor + state.overdraft_limit_minor, state.currency),
            overdraft_limit=fmt(state.overdraft_limit_minor, state.currency)))

    @requires("transactions:read")
    async def history(self, request: web.Request) -> web.Response:
        limit = page_limit(request.query.get("limit"))
        page = await self.ledger.history(account_id_of(request), limit=limit,
                                         cursor=request.query.get("cursor") or None)
        return json_response(TransactionPage(
            items=[transaction_detail(v) for v in page.items], next_cursor=page.next_cursor))
