"""Handlers of the rules, lists and labels API, for fraud analysts and risk officers."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
from aiohttp import web

from http_edge.auth import PRINCIPAL
from http_edge.handlers import json_response, read_body, requires
from http_edge.problems import InvalidBody, InvalidQuery
from http_edge.rules_schemas import (
    BacktestIn,
    BacktestOut,
    ExpressionIn,
    LabelIn,
    LabelOut,
    ListChange,
    ListItemsIn,
    ListOut,
    RuleIn,
    RuleList,
    RuleOut,
    RuleTestIn,
    RuleTestOut,
    RuleUpdate,
    Step,
    Validation,
)
from http_edge.validation import country_code, currency_code, money
from ledger.errors import TransactionNotFound
from ledger.geo import distance_km
from ledger.money import exponent
from rules import RuleContext, RuleError, VelocityKey, compile_rule, explain
from rules.backtest import backtest, lookback
from rules.store import RuleDraft, RuleNotFound, RuleStore, RuleVersion

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def rule_out(rule: RuleVersion) -> RuleOut:
    return RuleOut(**msgspec.structs.asdict(rule))


def _rule_id(request: web.Request) -> int:
    raw = request.match_info["rule_id"]
    if not raw.isdigit() or len(raw) > 18:
        raise RuleNotFound(0)
    return int(raw)


def _list_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if not name or len(name) > 64 or not set(name) <= _NAME_CHARS:
        raise InvalidQuery(f"list name {name[:80]!r} must be 1-64 of a-z 0-9 _",
                           code="invalid_list_name")
    return name


def _velocity_key(text: str) -> VelocityKey:
    """`count(card, 10m)` -> its VelocityKey, by compiling it as a tiny rule."""
    try:
        keys = compile_rule(f"{text} = 0").velocity
    except RuleError as exc:
        raise InvalidBody(f"velocity feature {text!r}: {exc}", code="invalid_field",
                          pointer="/velocity") from None
    if len(keys) != 1:
        raise InvalidBody(f"{text!r} is not one velocity feature like 'count(card, 10m)'",
                          code="invalid_field", pointer="/velocity")
    return next(iter(keys))


def _no_history(vk: VelocityKey) -> object:
    return None if vk.function == "avg_amount" else (0 if vk.function != "sum" else Decimal(0))


@dataclass(frozen=True)
class RulesApi:
    store: RuleStore

    @requires("rules:read")
    async def list_rules(self, request: web.Request) -> web.Response:
        rules = await self.store.latest()
        version = await self.store.current_version()
        return json_response(RuleList(rule_set_version=version,
                                      items=[rule_out(r) for r in rules]))

    @requires("rules:write")
    async def create_rule(self, request: web.Request) -> web.Response:
        body = await read_body(request, RuleIn)
        draft = RuleDraft(description=body.description, expression=body.expression,
                          action=body.action, priority=body.priority, status=body.status)
        rule = await self.store.create(body.name, draft, author=request[PRINCIPAL].subject)
        return json_response(rule_out(rule), status=201,
                             headers={"Location": f"/v1/rules/{rule.rule_id}"})

    @requires("rules:read")
    async def get_rule(self, request: web.Request) -> web.Response:
        return json_response(rule_out(await self.store.get(_rule_id(request))))

    @requires("rules:write")
    async def update_rule(self, request: web.Request) -> web.Response:
        rule_id = _rule_id(request)
        body = await read_body(request, RuleUpdate)
        draft = RuleDraft(description=body.description, expression=body.expression,
                          action=body.action, priority=body.priority, status=body.status)
        rule = await self.store.update(rule_id, draft, author=request[PRINCIPAL].subject)
        return json_response(rule_out(rule))

    @requires("rules:read")
    async def rule_versions(self, request: web.Request) -> web.Response:
        versions = await self.store.versions(_rule_id(request))
        return web.Response(body=msgspec.json.encode([rule_out(v) for v in versions]),
                            content_type="application/json")

    @requires("rules:read")
    async def validate(self, request: web.Request) -> web.Response:
        body = await read_body(request, ExpressionIn)
        try:
            rule = compile_rule(body.expression)
        except RuleError as exc:
            return json_response(Validation(valid=False, code=exc.code, detail=str(exc),
                                            column=exc.column))
        return json_response(Validation(
            valid=True, velocity=sorted(f"{vk.function}({vk.entity}, {vk.window_s}s)"
                                        for vk in rule.velocity),
            lists=sorted(rule.lists), uses_risk_score=rule.uses_risk_score))

    @requires("rules:read")
    async def test_rule(self, request: web.Request) -> web.Response:
        body = await read_body(request, RuleTestIn)
        rule = compile_rule(body.expression)
        velocity: dict[VelocityKey, object] = {vk: _no_history(vk) for vk in rule.velocity}
        for text, value in body.velocity.items():
            vk = _velocity_key(text)
            velocity[vk] = int(value) if vk.function in ("count", "distinct_countries") else (
                Decimal(str(value)))
        lists = await self.store.load_lists(sorted(rule.lists))
        result = explain(body.expression, self._context(body, velocity, lists))
        return json_response(RuleTestOut(
            matched=result.matched,
            steps=[Step(text, _jsonable(value)) for text, value in result.steps]))

    @staticmethod
    def _context(body: RuleTestIn, velocity: dict[VelocityKey, object],
                 lists: dict[str, frozenset[str]]) -> RuleContext:
        txn, account = body.transaction, body.account
        currency = currency_code(txn.currency)
        amount = Decimal(money(txn.amount, currency, "transaction/amount", allow_zero=True))
        moment = txn.timestamp or datetime.now(UTC)
        distance = None
        if None not in (txn.lat, txn.lon, account.home_lat, account.home_lon):
            distance = distance_km(txn.lat, txn.lon, account.home_lat,  # type: ignore[arg-type]
                                   account.home_lon)  # type: ignore[arg-type]
        return RuleContext(
            amount=amount.scaleb(-exponent(currency)), currency=currency,
            country=country_code(txn.country, "transaction/country"),
            merchant_id=txn.merchant_id, merchant_category=txn.merchant_category,
            card_id=txn.card_id, account_id=txn.account_id,
            hour=moment.astimezone(UTC).hour, lat=txn.lat, lon=txn.lon,
            account_home_country=account.home_country, account_age_days=account.age_days,
            account_currency=currency, distance_km_from_home=distance,
            risk_score=body.risk_score, velocity=velocity, lists=lists)

    @requires("rules:read")
    async def backtest(self, request: web.Request) -> web.Response:
        body = await read_body(request, BacktestIn)
        if body.end <= body.start:
            raise InvalidBody("end must be after start", code="invalid_field", pointer="/end")
        rule = compile_rule(body.expression)
        lists = await self.store.load_lists(sorted(rule.lists))
        rows = self.store.history(body.start - lookback(rule), body.end)
        result = await backtest(rule, rows, start=body.start, lists=lists,
                                sample_size=body.sample_size)
        return json_response(BacktestOut(
            expression=body.expression, start=body.start, end=body.end,
            transactions=result.transactions, matched=result.matched,
            match_rate=result.match_rate, sample=result.sample, labelled=result.labelled,
            fraud_caught=result.fraud_caught, legit_caught=result.legit_caught,
            fraud_missed=result.fraud_missed, precision=result.precision,
            recall=result.recall))

    @requires("rules:read")
    async def get_list(self, request: web.Request) -> web.Response:
        name = _list_name(request)
        return json_response(ListOut(name=name, items=await self.store.list_items(name)))

    @requires("rules:write")
    async def add_to_list(self, request: web.Request) -> web.Response:
        name = _list_name(request)
        body = await read_body(request, ListItemsIn)
        added = await self.store.add_list_items(name, body.items,
                                                author=request[PRINCIPAL].subject)
        return json_response(ListChange(name=name, added=added))

    @requires("rules:write")
    async def remove_from_list(self, request: web.Request) -> web.Response:
        name = _list_name(request)
        body = await read_body(request, ListItemsIn)
        removed = 0
        for value in body.items:
            removed += await self.store.remove_list_item(name, value)
        return json_response(ListChange(name=name, removed=removed))

    @requires("rules:write")
    async def add_label(self, request: web.Request) -> web.Response:
        transaction_id = request.match_info["transaction_id"]
        body = await read_body(request, LabelIn)
        label = await self.store.add_label(transaction_id, body.label, source=body.source,
                                           note=body.note, author=request[PRINCIPAL].subject)
        if label is None:
            raise TransactionNotFound(transaction_id[:80])
        return json_response(LabelOut(**msgspec.structs.asdict(label)), status=201)


def _jsonable(value: object) -> object:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, frozenset | set):
        return sorted(value)
    return value


def add_routes(app: web.Application, api: RulesApi) -> None:
    app.router.add_get("/v1/rules", api.list_rules)
    app.router.add_post("/v1/rules", api.create_rule)
    app.router.add_post("/v1/rules/validate", api.validate)
    app.router.add_post("/v1/rules/test", api.test_rule)
    app.router.add_post("/v1/rules/backtest", api.backtest)
    app.router.add_get("/v1/rules/{rule_id}", api.get_rule)
    app.router.add_put("/v1/rules/{rule_id}", api.update_rule)
    app.router.add_get("/v1/rules/{rule_id}/versions", api.rule_versions)
    app.router.add_get("/v1/lists/{name}/items", api.get_list)
    app.router.add_post("/v1/lists/{name}/items", api.add_to_list)
    app.router.add_delete("/v1/lists/{name}/items", api.remove_from_list)
    app.router.add_post("/v1/transactions/{transaction_id}/labels", api.add_label)
