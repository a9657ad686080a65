"""The model in the running service: every answer scored, a live swap loses nothing."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest

from model.artifact import Thresholds, read_manifest
from model.generate import generate
from model.scorer import Scorer
from model.train import TrainOptions, train
from ops.application import Application
from ops.settings import Settings
from tests.conftest import Server, unique

pytestmark = pytest.mark.integration
KEY = "swap-test-key"


async def test_every_answer_carries_a_score_and_the_model_version(
        server: Server, make_account: Callable[..., Any], make_transaction: Callable[..., Any]):
    account = await make_account(deposit="500.00")
    status, body, _ = await server.call(
        "POST", "/v1/transactions", json=make_transaction(account, card_id=unique("card")),
        headers={"Idempotency-Key": unique("k")})
    assert status == 200, body
    scorer = server.app.models.current
    assert scorer is not None
    assert body["model_version"] == scorer.version
    assert 0 < body["risk_score"] <= 1
    status, stored, _ = await server.call("GET", f"/v1/transactions/{body['transaction_id']}")
    assert status == 200 and stored["risk_score"] == body["risk_score"]


@pytest.fixture
async def swap_app(database: Settings, tmp_path: Path) -> AsyncIterator[tuple[Application, Path]]:
    path = tmp_path / "model.joblib"
    train(generate(30, 10, 1), options=TrainOptions(n_estimators=40), out=path,
          key=KEY.encode(), data_sha256="test")
    settings = msgspec.structs.replace(database, model_path=str(path), model_key=KEY,
                                       model_poll_s=3600.0)  # the test triggers the reload
    app = Application(settings)
    await app.startup()
    yield app, path
    await app.shutdown()


async def test_model_swap_under_load_loses_nothing(swap_app: tuple[Application, Path],
                                                   server: Server,
                                                   make_account: Callable[..., Any],
                                                   make_transaction: Callable[..., Any]):
    app, path = swap_app
    first = app.models.current
    assert first is not None
    account = await make_account(deposit="100000.00")
    url = f"http://127.0.0.1:{app.port}/v1/transactions"
    headers = server.headers("admin")
    sent: list[str] = []
    answers: list[tuple[int, dict[str, Any]]] = []
    swapped = asyncio.Event()

    async def client(session: aiohttp.ClientSession, n: int) -> None:
        for _ in range(n):
            body = make_transaction(account, card_id=unique("card"))
            sent.append(body["transaction_id"])
            async with session.post(url, json=body, headers={
                    **headers, "Idempotency-Key": unique("k")}) as response:
                answers.append((response.status, await response.json()))

    async def swapper() -> None:
        while len(answers) < 40:  # noqa: ASYNC110 - waiting for load to build up
            await asyncio.sleep(0.005)
        await asyncio.to_thread(train, generate(30, 10, 2), options=TrainOptions(
            n_estimators=40, seed=7), out=path, key=KEY.encode(), data_sha256="test-2")
        assert await app.model_reloader.reload_if_changed()  # type: ignore[union-attr]
        swapped.set()

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(swapper(), *(client(session, 40) for _ in range(8)))
    assert swapped.is_set()
    assert len(answers) == len(sent) == 320
    assert Counter(status for status, _ in answers) == {200: 320}
    second = app.models.current
    assert second is not None and second.version != first.version
    assert second.version == read_manifest(path).model_version
    versions = Counter(body["model_version"] for _, body in answers)
    assert set(versions) == {first.version, second.version}, versions
    # Nothing lost, nothing doubled: the ledger has exactly the answered transactions.
    async with app.pool.acquire() as conn:  # type: ignore[union-attr]
        recorded = await conn.fetch(
            "SELECT transaction_id, model_version FROM transactions WHERE account_id = $1",
            account)
    assert sorted(r["transaction_id"] for r in recorded) == sorted(sent)
    assert Counter(r["model_version"] for r in recorded) == versions


def lower_threshold_without_the_key(manifest: Path) -> None:
    data = json.loads(manifest.read_text())
    data["thresholds"]["flag"] = 0.01
    manifest.write_text(json.dumps(data))


async def test_a_tampered_replacement_is_refused_and_the_old_model_keeps_serving(
        swap_app: tuple[Application, Path]):
    app, path = swap_app
    before = app.models.current
    await asyncio.to_thread(lower_threshold_without_the_key, Path(f"{path}.manifest.json"))
    assert await app.model_reloader.reload_if_changed() is False  # type: ignore[union-attr]
    assert app.models.current is before


async def test_the_model_endpoint_describes_the_served_model(server: Server):
    status, body, _ = await server.call("GET", "/v1/model", scopes=("rules:read",))
    assert status == 200, body
    scorer = server.app.models.current
    assert scorer is not None
    assert body["model_version"] == scorer.version
    assert body["features"] == list(scorer.manifest.features)
    assert body["flag_threshold"] == scorer.thresholds.flag == 0.999  # the tests' override
    assert body["training_metrics"]["rows"] > 0
    status, body, _ = await server.call("GET", "/v1/model", scopes=("transactions:write",))
    assert status == 403 and body["code"] == "insufficient_scope"


async def test_a_high_score_flags_through_the_api_and_the_ledger_keeps_the_reasons(
        server: Server, make_account: Callable[..., Any], make_transaction: Callable[..., Any]):
    served = server.app.models.current
    assert served is not None
    strict = Scorer(served.model, served.manifest,
                    thresholds=Thresholds(flag=0.0001, decline=None, target_alert_rate=0.5))
    server.app.models.current = strict  # what a hot swap does
    try:
        account = await make_account(deposit="500.00")
        status, body, _ = await server.call(
            "POST", "/v1/transactions", json=make_transaction(account, card_id=unique("card")),
            headers={"Idempotency-Key": unique("k")})
    finally:
        server.app.models.current = served
    assert status == 200, body
    assert body["decision"] == "flag"
    assert body["reasons"][0] == "ml_high_risk"
    assert len([r for r in body["reasons"] if r.startswith("ml_factor:")]) == 3
    status, stored, _ = await server.call("GET", f"/v1/transactions/{body['transaction_id']}")
    assert status == 200 and stored["reasons"] == body["reasons"]
    assert stored["decision"] == "flag"
