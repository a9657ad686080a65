"""The one typed settings object, read once from `SENTINEL_*` environment variables.

Nothing else in the project reads `os.environ`: the CLI calls `load_settings()` and passes the
frozen result down. Every error names the variable that caused it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import msgspec

from pipeline import StageConfig
from webhooks.schedule import (
    DEFAULT_ALERT_SCHEDULE,
    DEFAULT_WEBHOOK_SCHEDULE,
    ScheduleError,
    parse_schedule,
)

PREFIX = "SENTINEL_"
STAGE_PREFIX = "SENTINEL_STAGE_"

# Defaults per pipeline stage; tuned on the 2-core dev machine (see BENCHMARKS.md).
DEFAULT_STAGES: dict[str, StageConfig] = {
    # Rate limits, idempotency claims and the velocity/history reads in one Redis round
    # trip. The first stage forms the batches the next ones receive whole. Two workers with
    # an adaptive window: while one batch is in Redis the other gathers for up to 4 ms, so
    # batches grow with load, and an idle stage hands a lone payment on at once (a fixed
    # 1 ms window cost every payment at 100 tx/s 1 ms). At 1,000 tx/s with two edge
    # processes: p99 21-24 ms against 24-84 ms with one worker and no window, 100 tx/s
    # unchanged (BENCHMARKS.md, session 4).
    "admit": StageConfig(workers=2, batch_max=128, batch_wait_ms=4.0, queue_max=4096,
                         wait_when_idle=False),
    "rules": StageConfig(workers=1, batch_max=256, batch_wait_ms=0.0, queue_max=4096),
    "scoring": StageConfig(workers=1, batch_max=256, batch_wait_ms=0.0, queue_max=4096),
    # Group commit, one commit in flight per process: while it runs, payments queue, and the
    # next commit takes all of them at once (an idle ledger commits a lone payment at once).
    # With two edge processes on the 2-core dev box, one worker each against two: p99 at
    # 1,000 tx/s 13.5-29.5 ms against 28-50 ms in 4 of 5 alternating pairs (the box was
    # busier in the fifth), and a higher maximum (2,853 against 2,735 tx/s in the same hour):
    # fewer concurrent commits wait less in PostgreSQL, whose CPU per payment is unchanged
    # (BENCHMARKS.md, session 5). The window only matters with more workers (it waits only
    # while another commits). N processes make N concurrent commits.
    "ledger": StageConfig(workers=1, batch_max=256, batch_wait_ms=2.0, queue_max=4096,
                          wait_when_idle=False),
    "respond": StageConfig(workers=2, batch_max=256, batch_wait_ms=0.0, queue_max=4096),
}


def usable_cpus() -> int:
    """Cores this process may run on: the affinity mask (taskset, cpusets), else all of them."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class SettingsError(Exception):
    """A `SENTINEL_*` variable is missing or malformed; the message names it."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    # Several edge processes may share one port (SO_REUSEPORT), one per core.
    http_reuse_port: bool = False
    # Edge processes `sentinel serve` runs on the port (SENTINEL_PROCESSES=0: one per usable
    # core); above 1, ops/supervisor.py starts and watches them. Always >= 1 once loaded.
    processes: int = msgspec.field(default_factory=usable_cpus)
    # Where a supervisor's edge processes share their statistics for `/metrics`.
    run_dir: str = ".cache/run"
    log_level: str = "INFO"
    # The service's own role: it may INSERT into the ledger, never UPDATE or DELETE.
    database_url: str = "postgresql://sentinel_app@127.0.0.1:5432/sentinel"
    # The owner role: runs migrations, owns the tables. Never used by the serving process.
    admin_database_url: str = "postgresql://postgres@127.0.0.1:5432/sentinel"
    db_pool_min: int = 2
    db_pool_max: int = 12
    # A ledger call slower than this is logged with its size and the pool's state.
    ledger_slow_ms: float = 250.0
    # An event loop that runs a timer later than this is logged, with the CPU the process
    # used meanwhile (pipeline/loop_lag.py); every lag goes to sentinel_event_loop_lag_ms.
    loop_lag_warn_ms: float = 50.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "sentinel"
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    jwt_secret: str = "dev-only-secret-change-me-in-production-0123456789"
    jwt_issuer: str = "sentinelstream"
    jwt_audience: str = "sentinelstream-api"
    request_deadline_ms: int = 200
    idempotency_ttl_s: int = 86_400
    idempotency_inflight_ttl_s: int = 30
    shutdown_timeout_s: float = 30.0
    # Rule changes arrive by LISTEN/NOTIFY at once; this poll only covers lost notifications.
    rules_poll_s: float = 5.0
    max_body_bytes: int = 65_536
    # The model artifact to serve; empty: the embedded default, trained from the synthetic
    # generator on first start (seconds) and cached under model_cache_dir.
    model_path: str = ""
    model_cache_dir: str = ".cache/models"
    # HMAC key the artifact's manifest must be signed with (`sentinel train` signs with it).
    model_key: str = "dev-only-model-key-change-me"
    # A changed artifact at model_path is loaded and swapped in within this many seconds.
    model_poll_s: float = 2.0
    # > 0 overrides the threshold the artifact proposes; 0 keeps the proposal.
    model_flag_threshold: float = 0.0
    model_decline_threshold: float = 0.0
    # A payment with less than this left of its deadline is decided by the rules alone.
    scoring_min_budget_ms: float = 5.0
    # RabbitMQ: every queue name starts with the prefix (tests use their own per run).
    amqp_prefix: str = "sentinel"
    # The outbox relay: events per batch (all confirms in flight at once), the idle poll,
    # and how often a standby relay tries to take the lead.
    relay_batch_max: int = 500
    relay_poll_ms: float = 20.0
    relay_takeover_s: float = 1.0
    # Webhook delivery: delays before each retry (n delays = n + 1 attempts), unacknowledged
    # deliveries per worker (= concurrent POSTs) and the timeout of one POST.
    webhook_retry_schedule: str = DEFAULT_WEBHOOK_SCHEDULE
    webhook_prefetch: int = 200
    webhook_timeout_s: float = 15.0
    # Merchants pick their URL: by default a webhook may only reach public addresses (no
    # loopback, private, link-local or metadata ranges). True for development and tests.
    webhook_allow_private_networks: bool = False
    # E-mail alerts for flagged and declined payments. Empty alert_to: logged, not mailed.
    alert_to: str = ""
    alert_from: str = "sentinel@localhost"
    alert_retry_schedule: str = DEFAULT_ALERT_SCHEDULE
    alert_prefetch: int = 500
    # Alerts arriving within the window are sent as one digest (at most digest_max each).
    alert_digest_window_s: float = 5.0
    alert_digest_max: int = 50
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_timeout_s: float = 10.0
    # GCRA limits (stages/ratelimit.py): requests a second and how many at one instant, per
    # API client (the token's subject) and per card; per_s 0 turns that limit off.
    rate_limit_client_per_s: float = 5000.0
    rate_limit_client_burst: int = 5000
    rate_limit_card_per_s: float = 3.0
    rate_limit_card_burst: int = 5
    stages: dict[str, StageConfig] = msgspec.field(default_factory=lambda: dict(DEFAULT_STAGES))

    def stage(self, name: str) -> StageConfig:
        return self.stages[name]


def _convert(name: str, raw: str, kind: Any) -> Any:
    if kind is bool or kind == "bool":
        if raw.lower() in ("1", "true", "yes", "on"):
            return True
        if raw.lower() in ("0", "false", "no", "off"):
            return False
        raise SettingsError(f"{name}={raw!r} is not a boolean (use true or false)")
    try:
        if kind is int or kind == "int":
            return int(raw)
        if kind is float or kind == "float":
            return float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a valid {kind}") from None
    if not raw:
        raise SettingsError(f"{name} is set but empty")
    return raw


_STAGE_FIELDS = {"WORKERS": "workers", "BATCH_MAX": "batch_max",
                 "BATCH_WAIT_MS": "batch_wait_ms", "QUEUE_MAX": "queue_max",
                 "WAIT_WHEN_IDLE": "wait_when_idle"}


def _stage_variable(name: str) -> tuple[str, str]:
    """`SENTINEL_STAGE_LEDGER_BATCH_MAX` -> ("ledger", "batch_max")."""
    rest = name[len(STAGE_PREFIX):]
    for suffix, field in _STAGE_FIELDS.items():
        if rest.endswith("_" + suffix):
            return rest[: -len(suffix) - 1].lower(), field
    raise SettingsError(f"{name}: unknown stage setting (use _WORKERS, _BATCH_MAX, "
                        f"_BATCH_WAIT_MS, _QUEUE_MAX or _WAIT_WHEN_IDLE)")


def _load_stages(environ: Mapping[str, str]) -> dict[str, StageConfig]:
    stages = dict(DEFAULT_STAGES)
    for name, raw in environ.items():
        if not name.startswith(STAGE_PREFIX):
            continue
        stage, field = _stage_variable(name)
        if stage not in stages:
            raise SettingsError(f"{name}: unknown stage {stage!r} (known: {sorted(stages)})")
        kind = {"batch_wait_ms": float, "wait_when_idle": bool}.get(field, int)
        value = _convert(name, raw, kind)
        if kind is not bool and (value < 0 or (kind is int and value < 1)):
            raise SettingsError(f"{name}={raw!r} must be positive")
        stages[stage] = msgspec.structs.replace(stages[stage], **{field: value})
    return stages


def _check_rate_limits(settings: Settings) -> None:
    for scope in ("client", "card"):
        per_s = getattr(settings, f"rate_limit_{scope}_per_s")
        burst = getattr(settings, f"rate_limit_{scope}_burst")
        if not 0 <= per_s <= 1_000_000:
            raise SettingsError(f"{PREFIX}RATE_LIMIT_{scope.upper()}_PER_S={per_s:g} must be "
                                f"from 0 (off) to 1000000")
        if per_s > 0 and burst < 1:
            raise SettingsError(f"{PREFIX}RATE_LIMIT_{scope.upper()}_BURST={burst} must be "
                                f"at least 1 while the limit is on")


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from the environment (default: `os.environ`)."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(Settings):
        if field.name == "stages":
            continue
        name = PREFIX + field.name.upper()
        if name in environ:
            values[field.name] = _convert(name, environ[name], field.type)
    values["stages"] = _load_stages(environ)
    if values.get("processes", 1) < 0:
        raise SettingsError(f"{PREFIX}PROCESSES={environ[PREFIX + 'PROCESSES']!r} must be 0 "
                            f"(one edge process per core) or more")
    if values.get("processes") == 0:
        values["processes"] = usable_cpus()
    settings = Settings(**values)
    _check_rate_limits(settings)
    for name in ("webhook_retry_schedule", "alert_retry_schedule"):
        try:
            parse_schedule(getattr(settings, name))
        except ScheduleError as exc:
            raise SettingsError(f"{PREFIX}{name.upper()}: {exc}") from None
    return settings
