"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from aiohttp.test_utils import TestClient, TestServer

from http_edge.app import Probes, build_app
from http_edge.rules_api import RulesApi
from rules.store import RuleStore
from tests.conftest import unique


async def test_health_and_readiness(server):
    status, body, _ = await server.call("GET", "/healthz", scopes=())
    assert (status, body) == (200, {"status": "ok"})
    status, body, _ = await server.call("GET", "/readyz", scopes=())
    assert status == 200 and body["checks"] == ["postgresql", "redis"]


async def test_metrics_expose_requests_decisions_and_stages(server, make_account,
                                                           make_transaction):
    account = await make_account(deposit="10.00")
    await server.call("POST", "/v1/transactions", json=make_transaction(account),
                      headers={"Idempotency-Key": unique("k")})
    status, text, headers = await server.call("GET", "/metrics", scopes=())
    assert status == 200
    text = text.decode()
    assert 'sentinel_decisions_total{decision="approve"}' in text
    assert 'sentinel_http_requests_total{method="POST",route="/v1/transactions",status="200"}' in text
    for stage in ("admit", "ledger", "respond"):
        assert f'sentinel_stage_queue_depth{{stage="{stage}"}}' in text
        assert f'sentinel_stage_service_ms_bucket{{stage="{stage}",le="+Inf"}}' in text
        assert f'sentinel_stage_batch_size_count{{stage="{stage}"}}' in text
    assert "# TYPE sentinel_screening_ms histogram" in text


async def test_openapi_is_generated_from_the_schemas(server):
    status, doc, _ = await server.call("GET", "/openapi.json", scopes=())
    assert status == 200
    assert doc["openapi"].startswith("3.1")
    schema = doc["components"]["schemas"]["TransactionIn"]
    assert set(schema["required"]) >= {"transaction_id", "amount", "currency", "timestamp"}
    assert schema["properties"]["amount"]["type"] == "string"
    post = doc["paths"]["/v1/transactions"]["post"]
    assert post["security"] == [{"bearer": ["transactions:write"]}]
    assert "503" in post["responses"]


async def test_readiness_fails_when_a_dependency_fails(server):
    async def broken() -> None:
        raise ConnectionError("connection refused")

    app = build_app(server.app.api, RulesApi(RuleStore(server.app.pool)), server.app.tokens(),
                    Probes({"postgresql": broken}), max_body_bytes=1024)
    async with TestServer(app) as test_server, TestClient(test_server) as client:
        response = await client.get("/readyz")
        assert response.status == 503
        body = await response.json()
        assert body["failing"] == {"postgresql": "ConnectionError: connection refused"}
