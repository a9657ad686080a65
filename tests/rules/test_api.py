"""The rule engine end to end: API, versions, hot reload across processes, decisions.

Every rule here names a card or merchant unique to its test, so the live rule set never
changes the decisions other tests expect; the fixture switches its rules off afterwards.
"""

from __future__ import annotations

import msgspec
import pytest

from ops.application import Application
from tests.conftest import unique, wait_for


def _version_at_least(app: Application, change_id: int):
    async def reached() -> bool:
        return app.rules.current.version >= change_id
    return reached


@pytest.fixture
async def make_rule(server):
    created: list[dict] = []

    async def make(expression: str, *, action: str = "flag", status: str = "active",
                   priority: int = 100) -> dict:
        code, body, _ = await server.call("POST", "/v1/rules", json={
            "name": unique("r").replace("-", "_"), "expression": expression,
            "action": action, "status": status, "priority": priority},
            scopes=("rules:write",))
        assert code == 201, body
        created.append(body)
        await wait_for(_version_at_least(server.app, body["change_id"]))
        return body

    yield make
    for rule in created:
        await set_status(server, rule, "disabled")


async def set_status(server, rule: dict, status: str) -> dict:
    code, body, _ = await server.call("PUT", f"/v1/rules/{rule['rule_id']}", json={
        "expression": rule["expression"], "action": rule["action"], "status": status,
        "priority": rule["priority"]}, scopes=("rules:write",))
    assert code == 200, body
    await wait_for(_version_at_least(server.app, body["change_id"]))
    return body


async def pay(server, account: str, **fields) -> dict:
    body = {"transaction_id": unique("txn"), "account_id": account, "card_id": "card-1",
            "merchant_id": "merchant-1", "amount": "10.00", "currency": "EUR",
            "merchant_category": "grocery_pos", "country": "DE",
            "timestamp": "2026-11-29T10:00:00Z", **fields}
    code, answer, _ = await server.call("POST", "/v1/transactions", json=body,
                                        headers={"Idempotency-Key": unique("k")})
    assert code == 200, answer
    return answer


async def test_rule_lifecycle_and_versions(server, make_rule):
    card = unique("card")
    rule = await make_rule(f"card_id = '{card}' and amount > 100", status="draft")
    assert rule["version"] == 1 and rule["author"] == "gateway"
    updated = await set_status(server, rule, "shadow")
    assert updated["version"] == 2 and updated["change_id"] > rule["change_id"]
    code, versions, _ = await server.call("GET", f"/v1/rules/{rule['rule_id']}/versions",
                                          scopes=("rules:read",))
    assert code == 200 and [v["version"] for v in versions] == [2, 1]
    code, latest, _ = await server.call("GET", f"/v1/rules/{rule['rule_id']}",
                                        scopes=("rules:read",))
    assert latest["status"] == "shadow"
    code, listing, _ = await server.call("GET", "/v1/rules", scopes=("rules:read",))
    assert rule["rule_id"] in {r["rule_id"] for r in listing["items"]}
    assert listing["rule_set_version"] >= updated["change_id"]


async def test_bad_rules_are_refused_with_a_position(server):
    code, body, _ = await server.call("POST", "/v1/rules", json={
        "name": "typo_rule", "expression": "amout > 5000", "action": "flag"})
    assert (code, body["code"]) == (422, "unknown_field")
    assert body["column"] == 1 and "amount" in body["detail"]
    code, body, _ = await server.call("GET", "/v1/rules/typo_rule", scopes=("rules:read",))
    assert code == 404
    code, body, _ = await server.call("POST", "/v1/rules", json={
        "name": "Bad Name", "expression": "amount > 1", "action": "flag"})
    assert (code, body["code"]) == (422, "invalid_field")
    code, body, _ = await server.call("PUT", "/v1/rules/999999999", json={
        "expression": "amount > 1", "action": "flag", "status": "active"})
    assert (code, body["code"]) == (404, "rule_not_found")
    code, body, _ = await server.call("POST", "/v1/rules", json={
        "name": "x", "expression": "amount > 1", "action": "flag"}, scopes=("rules:read",))
    assert code == 403


async def test_rule_names_are_unique(server, make_rule):
    rule = await make_rule(f"card_id = '{unique('c')}'", status="draft")
    code, body, _ = await server.call("POST", "/v1/rules", json={
        "name": rule["name"], "expression": "amount > 1", "action": "flag"})
    assert (code, body["code"]) == (409, "rule_exists")


async def test_validate_and_test_endpoints(server):
    code, body, _ = await server.call("POST", "/v1/rules/validate", json={
        "expression": "amount > 5000 and country != account.home_country"})
    assert code == 200 and body["valid"] is True
    code, body, _ = await server.call("POST", "/v1/rules/validate",
                                      json={"expression": "amount > (5000"})
    assert code == 200 and body["valid"] is False and body["column"] > 1
    code, body, _ = await server.call("POST", "/v1/rules/test", json={
        "expression": "amount > 5000 and country != account.home_country",
        "transaction": {"amount": "6000.00", "currency": "EUR", "country": "FR"},
        "account": {"home_country": "DE"}})
    assert code == 200 and body["matched"] is True
    assert any(step["expression"] == "amount > 5000" and step["value"] is True
               for step in body["steps"])
    code, body, _ = await server.call("POST", "/v1/rules/test", json={
        "expression": "count(card, 10m) >= 5",
        "transaction": {"amount": "1.00", "currency": "EUR", "country": "DE"},
        "velocity": {"count(card, 10m)": 6}})
    assert code == 200 and body["matched"] is True


async def test_flag_decline_shadow_and_allow(server, pool, make_account, make_rule):
    account = await make_account(deposit="1000.00")
    card = unique("card")
    flag = await make_rule(f"card_id = '{card}' and amount > 100", action="flag")
    shadow = await make_rule(f"card_id = '{card}'", status="shadow", action="decline")
    answer = await pay(server, account, card_id=card, amount="150.00")
    assert answer["decision"] == "flag"
    assert answer["reasons"] == [f"rule:{flag['name']}"]
    assert answer["rules_version"] >= shadow["change_id"]
    hits = {(r["change_id"], r["shadow"]) for r in await pool.fetch(
        "SELECT change_id, shadow FROM transaction_rule_hits WHERE transaction_id = $1",
        answer["transaction_id"])}
    assert hits == {(flag["change_id"], False), (shadow["change_id"], True)}

    allow = await make_rule(f"card_id = '{card}'", action="allow")
    answer = await pay(server, account, card_id=card, amount="150.00")
    # allow suppresses only an ML-only flag: a rule's flag stands, and both are listed.
    assert answer["decision"] == "flag"
    assert set(answer["reasons"]) == {f"rule:{flag['name']}", f"rule:{allow['name']}"}

    decline = await make_rule(f"card_id = '{card}' and amount > 500", action="decline")
    answer = await pay(server, account, card_id=card, amount="600.00")
    assert answer["decision"] == "decline"
    assert f"rule:{decline['name']}" in answer["reasons"]
    code, balance, _ = await server.call("GET", f"/v1/accounts/{account}/balance")
    assert balance["balance"] == "700.00"  # the declined 600 was not posted


async def test_velocity_rule_fires_on_the_sixth_payment_in_ten_minutes(server, make_account,
                                                                     make_rule):
    account = await make_account(deposit="1000.00")
    card = unique("card")
    rule = await make_rule(f"card_id = '{card}' and count(card, 10m) >= 5")
    start = "2026-11-29T08:{:02d}:00Z"
    decisions = [(await pay(server, account, card_id=card, timestamp=start.format(i)))
                 ["decision"] for i in range(6)]
    assert decisions == ["approve"] * 5 + ["flag"]
    # Event time, not arrival time: a payment 11 minutes after the last one sees only one
    # payment (at 08:05) in its window.
    later = await pay(server, account, card_id=card, timestamp="2026-11-29T08:15:30Z")
    assert later["decision"] == "approve", later
    assert rule["name"] not in "".join(later["reasons"])


async def test_lists_drive_rules_live(server, make_account, make_rule):
    account = await make_account(deposit="100.00")
    merchant = unique("m")
    list_name = unique("risky").replace("-", "_")
    await make_rule(f"merchant_id in list('{list_name}')", action="decline")
    assert (await pay(server, account, merchant_id=merchant))["decision"] == "approve"

    code, body, _ = await server.call("POST", f"/v1/lists/{list_name}/items",
                                      json={"items": [merchant, "other"]},
                                      scopes=("rules:write",))
    assert code == 200 and body["added"] == 2
    await wait_for(lambda: _list_has(server.app, list_name, merchant))
    assert (await pay(server, account, merchant_id=merchant))["decision"] == "decline"
    code, body, _ = await server.call("GET", f"/v1/lists/{list_name}/items",
                                      scopes=("rules:read",))
    assert body["items"] == sorted([merchant, "other"])

    code, body, _ = await server.call("DELETE", f"/v1/lists/{list_name}/items",
                                      json={"items": [merchant]}, scopes=("rules:write",))
    assert code == 200 and body["removed"] == 1
    await wait_for(lambda: _list_lacks(server.app, list_name, merchant))
    assert (await pay(server, account, merchant_id=merchant))["decision"] == "approve"


async def _list_has(app, name, value) -> bool:
    return value in app.rules.current.lists.get(name, frozenset())


async def _list_lacks(app, name, value) -> bool:
    return value not in app.rules.current.lists.get(name, frozenset())


async def test_a_rule_reaches_a_second_edge_process(database, server, make_account, make_rule):
    second = Application(msgspec.structs.replace(database, http_port=0))
    await second.startup()
    try:
        account = await make_account(deposit="100.00")
        card = unique("card")
        rule = await make_rule(f"card_id = '{card}'", action="decline")
        await wait_for(_version_at_least(second, rule["change_id"]), timeout_s=5)
        url = f"http://127.0.0.1:{second.port}/v1/transactions"
        body = {"transaction_id": unique("txn"), "account_id": account, "card_id": card,
                "merchant_id": "m", "amount": "1.00", "currency": "EUR",
                "merchant_category": "misc", "country": "DE",
                "timestamp": "2026-11-29T10:00:00Z"}
        async with server.session.post(url, data=msgspec.json.encode(body), headers=server.headers(
                "transactions:write", **{"Idempotency-Key": unique("k"),
                                         "Content-Type": "application/json"})) as response:
            answer = await response.json()
        assert answer["decision"] == "decline"
        assert answer["reasons"] == [f"rule:{rule['name']}"]
    finally:
        await second.shutdown()


async def test_labels_are_appended(server, pool, make_account):
    account = await make_account(deposit="100.00")
    answer = await pay(server, account)
    path = f"/v1/transactions/{answer['transaction_id']}/labels"
    code, first, _ = await server.call("POST", path, json={"label": "fraud"},
                                       scopes=("rules:write",))
    assert code == 201 and first["label"] == "fraud" and first["source"] == "analyst"
    code, second, _ = await server.call("POST", path, json={"label": "legit",
                                                            "source": "chargeback"})
    assert code == 201 and second["label_id"] > first["label_id"]
    assert await pool.fetchval("SELECT count(*) FROM transaction_labels WHERE "
                               "transaction_id = $1", answer["transaction_id"]) == 2
    code, body, _ = await server.call("POST", "/v1/transactions/nope/labels",
                                      json={"label": "fraud"})
    assert (code, body["code"]) == (404, "transaction_not_found")
    code, body, _ = await server.call("POST", path, json={"label": "maybe"})
    assert (code, body["code"]) == (422, "invalid_field")


async def test_backtest_matches_a_direct_sql_count(server, pool, make_account):
    account = await make_account(deposit="10000.00")
    card = unique("card")
    amounts = ["5.00", "55.00", "120.00", "80.00", "51.00", "49.99"]
    ids = []
    for i, amount in enumerate(amounts):
        answer = await pay(server, account, card_id=card, amount=amount,
                           timestamp=f"2025-03-01T10:{i:02d}:00Z")
        ids.append(answer["transaction_id"])
    for txn, label in ((ids[1], "fraud"), (ids[2], "legit"), (ids[0], "fraud")):
        await server.call("POST", f"/v1/transactions/{txn}/labels", json={"label": label})
    code, result, _ = await server.call("POST", "/v1/rules/backtest", json={
        "expression": f"card_id = '{card}' and amount > 50",
        "start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"},
        scopes=("rules:read",))
    assert code == 200, result
    expected = await pool.fetchval(
        "SELECT count(*) FROM transactions WHERE card_id = $1 AND amount_minor > 5000 "
        "AND event_time >= '2025-03-01' AND event_time < '2025-03-02'", card)
    assert result["matched"] == expected == 4
    assert result["labelled"] == 3
    assert (result["fraud_caught"], result["legit_caught"], result["fraud_missed"]) == (1, 1, 1)
    assert result["precision"] == 0.5 and result["recall"] == 0.5
    assert set(result["sample"]) <= set(ids)

    code, velocity, _ = await server.call("POST", "/v1/rules/backtest", json={
        "expression": f"card_id = '{card}' and count(card, 10m) >= 3",
        "start": "2025-03-01T00:00:00Z", "end": "2025-03-02T00:00:00Z"})
    assert velocity["matched"] == 3  # the 4th, 5th and 6th payment each see 3+ before them
