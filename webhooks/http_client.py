"""One webhook POST: Standard Webhooks headers, a timeout, and what the merchant answered.

The only module of the domain that speaks HTTP (an aiohttp *client*; the layering test allows
it here and nowhere else in `webhooks/`). Redirects are not followed: only a 2xx answer
acknowledges a delivery (a 3xx usually means a misconfigured URL, and following it would
send signed payloads somewhere the merchant did not register).
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime

import aiohttp
import msgspec

from webhooks.signing import signature_header

USER_AGENT = "SentinelStream-Webhooks/1.0"
EXCERPT_CHARS = 200
# A merchant's Retry-After beyond this is capped (the schedule's longest tier still applies).
MAX_RETRY_AFTER_S = 86_400.0


class Answer(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one POST: a status (None when no answer came) or an error."""

    status_code: int | None
    latency_ms: float
    error: str | None = None
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def retry_after_s(value: str | None, *, now_s: float | None = None) -> float | None:
    """`Retry-After` as seconds: delta-seconds or an HTTP date; None when absent or bad."""
    if not value:
        return None
    if value.strip().isdigit():
        return min(float(value.strip()), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None
    now_s = time.time() if now_s is None else now_s
    return min(max(0.0, when - now_s), MAX_RETRY_AFTER_S)


class WebhookClient:
    """A pooled HTTP client for signed webhook POSTs; `async with` closes it."""

    def __init__(self, *, connections: int, timeout_s: float) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=connections, ttl_dns_cache=300),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            headers={"User-Agent": USER_AGENT})

    async def __aenter__(self) -> WebhookClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.close()

    async def post(self, url: str, *, event_id: str, body: bytes, secrets: list[str],
                   now_s: float | None = None) -> Answer:
        """POST the signed body; never raises for what the network or the merchant does."""
        timestamp_s = int(time.time() if now_s is None else now_s)
        headers = {"Content-Type": "application/json", "webhook-id": event_id,
                   "webhook-timestamp": str(timestamp_s),
                   "webhook-signature": signature_header(secrets, event_id, timestamp_s, body)}
        started = time.perf_counter()
        try:
            async with self._session.post(url, data=body, headers=headers,
                                          allow_redirects=False) as response:
                text = await response.text(errors="replace")
                return _answer(response.status, started, text,
                               response.headers.get("Retry-After"))
        except TimeoutError:
            return Answer(status_code=None, latency_ms=_since_ms(started), error="timed out")
        except (aiohttp.ClientError, OSError) as exc:
            return Answer(status_code=None, latency_ms=_since_ms(started),
                          error=f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS])


def _since_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _answer(status: int, started: float, text: str, retry_after: str | None) -> Answer:
    error = None if 200 <= status < 300 else f"HTTP {status}: {text[:EXCERPT_CHARS]}".rstrip(": ")
    return Answer(status_code=status, latency_ms=_since_ms(started), error=error,
                  retry_after_s=retry_after_s(retry_after))
