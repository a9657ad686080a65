"""The application object: owns every resource and the order they start and stop in.

uvicorn-style: `serve()` = `startup()` -> `main_loop()` -> `shutdown()`. Signals only set
`should_exit`. Shutdown stops intake at the edge and waits for every accepted request to be
answered (aiohttp's graceful shutdown, while the pipeline keeps running), then drains the
pipeline, then closes the pools.
"""

from __future__ import annotations

import asyncio
import logging
import signal

import asyncpg
import redis.asyncio as redis
from aiohttp import web
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from http_edge.app import Probes, build_app
from http_edge.auth import TokenIssuer
from http_edge.events_api import EventsApi
from http_edge.handlers import Api
from http_edge.merchants_api import MerchantsApi
from http_edge.metrics import EdgeStatistics
from http_edge.model_api import ModelApi
from http_edge.rules_api import RulesApi
from ledger.repository import Ledger, open_pool
from model.reload import ModelReloader
from model.scorer import ModelHolder
from ops.settings import Settings
from pipeline import Pipeline, Stage
from rules.engine import RuleSetHolder
from rules.reload import RuleReloader
from rules.store import RuleStore
from stages.enrich import EnrichStage, ProfileCache
from stages.idempotency import IdempotencyCache, IdempotencyStage
from stages.ledger import LedgerStage
from stages.respond import RespondStage
from stages.rules import RulesStage
from stages.scoring import ScoringStage
from stages.velocity import VelocityStore
from webhooks.deliveries import DeliveryLog
from webhooks.merchants import MerchantStore

log = logging.getLogger(__name__)


def open_redis(url: str) -> redis.Redis:
    """A Redis client that fails within a second instead of retrying for many.

    Redis is only the fast path (idempotency falls back to PostgreSQL), so a dead Redis must
    cost a request milliseconds, not redis-py's default retries with backoff.
    """
    return redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=1.0,
                                retry=Retry(NoBackoff(), retries=1))


class Application:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.should_exit = asyncio.Event()
        self.pool: asyncpg.Pool | None = None
        self.redis: redis.Redis | None = None
        self.pipeline: Pipeline | None = None
        self.runner: web.AppRunner | None = None
        self.api: Api | None = None
        self.rules = RuleSetHolder()
        self.reloader: RuleReloader | None = None
        self.models = ModelHolder()
        self.model_reloader: ModelReloader | None = None
        self.port: int | None = None

    def tokens(self) -> TokenIssuer:
        s = self.settings
        return TokenIssuer(s.jwt_secret, issuer=s.jwt_issuer, audience=s.jwt_audience)

    def build_pipeline(self, ledger: Ledger, cache: IdempotencyCache,
                       velocity: VelocityStore) -> Pipeline:
        s = self.settings
        return Pipeline([
            Stage("idempotency", IdempotencyStage(cache), s.stage("idempotency")),
            Stage("enrich", EnrichStage(ProfileCache(ledger), velocity, self.rules, self.models),
                  s.stage("enrich")),
            Stage("rules", RulesStage(self.rules), s.stage("rules")),
            Stage("scoring", ScoringStage(self.models, min_budget_ms=s.scoring_min_budget_ms),
                  s.stage("scoring")),
            Stage("ledger", LedgerStage(ledger), s.stage("ledger")),
            # After the commit a payment is answered with its record, however late.
            Stage("respond", RespondStage(cache, velocity), s.stage("respond"),
                  enforce_deadline=False),
        ])

    async def startup(self) -> None:
        s = self.settings
        self.model_reloader = ModelReloader(
            self.models, path=s.model_path, cache_dir=s.model_cache_dir,
            key=s.model_key.encode(), poll_s=s.model_poll_s,
            flag_threshold=s.model_flag_threshold, decline_threshold=s.model_decline_threshold)
        await self.model_reloader.start()
        self.pool = await open_pool(s.database_url, min_size=s.db_pool_min,
                                    max_size=s.db_pool_max)
        self.redis = open_redis(s.redis_url)
        ledger = Ledger(self.pool)
        cache = IdempotencyCache(self.redis, prefix=s.redis_prefix, ttl_s=s.idempotency_ttl_s,
                                 inflight_ttl_s=s.idempotency_inflight_ttl_s)
        velocity = VelocityStore(self.redis, prefix=s.redis_prefix)
        rule_store = RuleStore(self.pool)
        self.reloader = RuleReloader(rule_store, self.rules, s.database_url,
                                     poll_s=s.rules_poll_s)
        await self.reloader.start()
        self.pipeline = self.build_pipeline(ledger, cache, velocity)
        await self.pipeline.start()
        self.api = api = Api(ledger=ledger, pipeline=self.pipeline, cache=cache,
                  statistics=EdgeStatistics(),
                  request_deadline_s=s.request_deadline_ms / 1000)
        redis_client = self.redis

        async def redis_ping() -> None:
            await redis_client.ping()

        app = build_app(api, RulesApi(rule_store), self.tokens(),
                        Probes({"postgresql": ledger.ping, "redis": redis_ping}),
                        max_body_bytes=s.max_body_bytes, model_api=ModelApi(self.models),
                        merchants_api=MerchantsApi(MerchantStore(self.pool)),
                        events_api=EventsApi(DeliveryLog(self.pool)))
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=s.shutdown_timeout_s)
        await self.runner.setup()
        site = web.TCPSite(self.runner, s.http_host, s.http_port, reuse_port=s.http_reuse_port)
        await site.start()
        sockets = [sock for server in [site._server] if server is not None
                   for sock in getattr(server, "sockets", [])]
        self.port = sockets[0].getsockname()[1] if sockets else s.http_port

    async def main_loop(self) -> None:
        await self.should_exit.wait()

    async def shutdown(self) -> None:
        if self.runner is not None:
            # Closes the listening socket, then waits for in-flight handlers to answer.
            await self.runner.cleanup()
        if self.pipeline is not None:
            await self.pipeline.drain(self.settings.shutdown_timeout_s)
        if self.reloader is not None:
            await self.reloader.stop()
        if self.model_reloader is not None:
            await self.model_reloader.stop()
        if self.redis is not None:
            await self.redis.aclose()
        if self.pool is not None:
            await self.pool.close()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.should_exit.set)

    async def serve(self) -> None:
        self.install_signal_handlers()
        try:
            await self.startup()
            assert self.port is not None
            log.info("SentinelStream ready on http://%s:%d", self.settings.http_host, self.port)
            print(ready_banner(self.settings.http_host, self.port), flush=True)
            await self.main_loop()
            log.info("shutting down: stopping intake, answering accepted requests")
        finally:
            await self.shutdown()


def ready_banner(host: str, port: int) -> str:
    base = f"http://{host}:{port}"
    json = "-H 'Content-Type: application/json'"
    return f"""SentinelStream ready on {base}  (Ctrl-C or SIGTERM stops it gracefully)
Get a token and screen a payment, from another shell in this folder:
  TOKEN=$(.venv/bin/sentinel token --sub demo --scope admin); H="Authorization: Bearer $TOKEN"
  curl -s -X POST {base}/v1/accounts -H "$H" {json} \\
    -d '{{"account_id": "alice", "currency": "EUR", "home_country": "DE"}}'
  curl -s -X POST {base}/v1/accounts/alice/deposits -H "$H" {json} \\
    -H 'Idempotency-Key: dep-1' -d '{{"amount": "100.00", "currency": "EUR"}}'
  curl -s -X POST {base}/v1/transactions -H "$H" {json} -H 'Idempotency-Key: pay-1' \\
    -d '{{"transaction_id": "t-1", "account_id": "alice", "card_id": "c-1", "merchant_id": "m-1",
         "amount": "12.34", "currency": "EUR", "merchant_category": "grocery_pos",
         "country": "DE", "timestamp": "2026-11-29T10:00:00Z"}}'
More in README.md (API, configuration, stage settings)."""
