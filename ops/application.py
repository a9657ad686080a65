"""The application object: owns every resource and the order they start and stop in.

uvicorn-style: `serve()` = `startup()` -> `main_loop()` -> `shutdown()`. Signals only set
`should_exit`. Shutdown stops intake at the edge and waits for every accepted request to be
answered (aiohttp's graceful shutdown, while the pipeline keeps running), then drains the
pipeline, then closes the pools.
"""

from __future__ import annotations

import asyncio
import gc
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
from ops.banner import ready_banner
from ops.metrics_share import MetricsPublisher, MetricsShare
from ops.settings import Settings
from ops.supervisor import LISTEN_BACKLOG, Supervision
from pipeline import LoopLagMonitor, Pipeline, Stage
from rules.engine import RuleSetHolder
from rules.reload import RuleReloader
from rules.store import RuleStore
from stages.admit import AdmitStage, ProfileCache
from stages.gcra import Limit
from stages.idempotency import IdempotencyCache
from stages.ledger import LedgerStage
from stages.ratelimit import RateLimiter
from stages.resp import RedisPipelines
from stages.respond import RespondStage
from stages.rules import RulesStage
from stages.scoring import ScoringStage
from stages.velocity import VelocityStore
from webhooks.deliveries import DeliveryLog
from webhooks.merchants import MerchantStore

log = logging.getLogger(__name__)

# After the listeners close, how long connections already accepted have to send a request.
INTAKE_GRACE_S = 0.1


def freeze_startup_heap() -> None:
    """Take what start-up built (libraries, the model, the rule set: ~210k objects) out of the
    cyclic garbage collector's sight. A full collection over them paused the event loop for
    ~95 ms, a stall every request in flight would wait for; after `gc.freeze()` a full
    collection scans only what serving allocated since (~0 ms right after start)."""
    gc.collect()
    gc.freeze()


def open_redis(url: str) -> redis.Redis:
    """A Redis client that fails within a second instead of retrying for many.

    Redis is only the fast path (idempotency falls back to PostgreSQL), so a dead Redis must
    cost a request milliseconds, not redis-py's default retries with backoff.
    """
    return redis.Redis.from_url(url, socket_connect_timeout=0.25, socket_timeout=1.0,
                                retry=Retry(NoBackoff(), retries=1))


class Application:
    def __init__(self, settings: Settings, *, supervision: Supervision | None = None) -> None:
        self.settings = settings
        # Set when this is one of several edge processes under ops/supervisor.py.
        self.supervision = supervision
        self.metrics: MetricsPublisher | None = None
        self.should_exit = asyncio.Event()
        self.pool: asyncpg.Pool | None = None
        self.redis: redis.Redis | None = None
        self.redis_pipelines: RedisPipelines | None = None  # the stages' hot path
        self.pipeline: Pipeline | None = None
        self.runner: web.AppRunner | None = None
        self.api: Api | None = None
        self.rules = RuleSetHolder()
        self.reloader: RuleReloader | None = None
        self.models = ModelHolder()
        self.model_reloader: ModelReloader | None = None
        self.port: int | None = None
        self.statistics = EdgeStatistics()
        self.loop_lag = LoopLagMonitor(self.statistics.loop_lag_ms,
                                       warn_ms=settings.loop_lag_warn_ms)

    def tokens(self) -> TokenIssuer:
        s = self.settings
        return TokenIssuer(s.jwt_secret, issuer=s.jwt_issuer, audience=s.jwt_audience)

    def build_pipeline(self, ledger: Ledger, cache: IdempotencyCache,
                       velocity: VelocityStore) -> Pipeline:
        s = self.settings
        assert self.redis_pipelines is not None
        # One Redis round trip per batch: rate limits first (a limited request claims no
        # Idempotency-Key and never reaches the ledger), the claims, velocity and history.
        self.admission = AdmitStage(
            self.redis_pipelines, RateLimiter(
                prefix=s.redis_prefix, claim_ttl_ms=cache.inflight_ttl_ms,
                client_limit=Limit(s.rate_limit_client_per_s, s.rate_limit_client_burst),
                card_limit=Limit(s.rate_limit_card_per_s, s.rate_limit_card_burst)),
            cache, ProfileCache(ledger), velocity, self.rules, self.models)
        return Pipeline([
            Stage("admit", self.admission, s.stage("admit")),
            Stage("rules", RulesStage(self.rules), s.stage("rules")),
            Stage("scoring", ScoringStage(self.models, min_budget_ms=s.scoring_min_budget_ms),
                  s.stage("scoring")),
            Stage("ledger", LedgerStage(ledger, slow_ms=s.ledger_slow_ms), s.stage("ledger")),
            # After the commit a payment is answered with its record, however late.
            Stage("respond", RespondStage(self.redis_pipelines, cache, velocity),
                  s.stage("respond"), enforce_deadline=False),
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
        self.redis_pipelines = RedisPipelines.from_url(s.redis_url)
        ledger = Ledger(self.pool)
        cache = IdempotencyCache(self.redis, prefix=s.redis_prefix, ttl_s=s.idempotency_ttl_s,
                                 inflight_ttl_s=s.idempotency_inflight_ttl_s)
        velocity = VelocityStore(self.redis_pipelines, prefix=s.redis_prefix)
        rule_store = RuleStore(self.pool)
        self.reloader = RuleReloader(rule_store, self.rules, s.database_url,
                                     poll_s=s.rules_poll_s)
        await self.reloader.start()
        self.pipeline = self.build_pipeline(ledger, cache, velocity)
        await self.pipeline.start()
        self.api = api = Api(ledger=ledger, pipeline=self.pipeline, cache=cache,
                  statistics=self.statistics,
                  request_deadline_s=s.request_deadline_ms / 1000)
        redis_client = self.redis
        if self.supervision is not None:
            self.metrics = MetricsPublisher(MetricsShare(self.supervision.metrics_dir),
                                            api.statistics, self.pipeline)

        async def redis_ping() -> None:
            await redis_client.ping()

        app = build_app(api, RulesApi(rule_store), self.tokens(),
                        Probes({"postgresql": ledger.ping, "redis": redis_ping}),
                        max_body_bytes=s.max_body_bytes, model_api=ModelApi(self.models),
                        merchants_api=MerchantsApi(MerchantStore(self.pool)),
                        events_api=EventsApi(DeliveryLog(self.pool)),
                        metrics_text=self.metrics.render if self.metrics else None)
        self.runner = web.AppRunner(app, access_log=None, handle_signals=False,
                                    shutdown_timeout=s.shutdown_timeout_s)
        await self.runner.setup()
        sites: list[web.BaseSite] = [
            web.TCPSite(self.runner, s.http_host, s.http_port, reuse_port=s.http_reuse_port,
                        backlog=LISTEN_BACKLOG)
        ] if self.supervision is None else [
            web.SockSite(self.runner, sock) for sock in self.supervision.sockets()]
        for site in sites:
            await site.start()
        sockets = [sock for server in [sites[0]._server] if server is not None
                   for sock in getattr(server, "sockets", [])]
        self.port = sockets[0].getsockname()[1] if sockets else s.http_port
        if self.metrics is not None:
            await self.metrics.start()
        self.loop_lag.start()

    async def main_loop(self) -> None:
        if self.supervision is not None:
            await self.supervision.wait_exit(self.should_exit)
        await self.should_exit.wait()

    async def shutdown(self) -> None:
        if self.runner is not None:
            # Stop accepting first and let the connections accepted just before send their
            # request: aiohttp then closes the idle ones, and a request still in the kernel's
            # buffer would be lost with them (seen in rolling restarts under load).
            for site in list(self.runner.sites):
                await site.stop()
            await asyncio.sleep(INTAKE_GRACE_S)
            # Waits for in-flight handlers to answer.
            await self.runner.cleanup()
        if self.pipeline is not None:
            await self.pipeline.drain(self.settings.shutdown_timeout_s)
        await self.loop_lag.stop()
        if self.metrics is not None:
            await self.metrics.stop()  # a last snapshot, with everything answered counted
        if self.reloader is not None:
            await self.reloader.stop()
        if self.model_reloader is not None:
            await self.model_reloader.stop()
        if self.redis is not None:
            await self.redis.aclose()
        if self.redis_pipelines is not None:
            await self.redis_pipelines.aclose()
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
            freeze_startup_heap()
            assert self.port is not None
            log.info("SentinelStream ready on http://%s:%d", self.settings.http_host, self.port)
            if self.supervision is None:
                print(ready_banner(self.settings.http_host, self.port), flush=True)
            else:
                self.supervision.report_ready()  # the supervisor prints the banner once
            await self.main_loop()
            log.info("shutting down: stopping intake, answering accepted requests")
        finally:
            await self.shutdown()

