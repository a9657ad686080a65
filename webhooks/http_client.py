"""One webhook POST: Standard Webhooks headers, a timeout, and what the merchant answered.

The only module of the domain that speaks HTTP (an aiohttp *client*; the layering test allows
it here and nowhere else in `webhooks/`). Redirects are not followed: only a 2xx answer
acknowledges a delivery (a 3xx usually means a misconfigured URL, and following it would
send signed payloads somewhere the merchant did not register).

Merchants choose the URL, so by default a webhook may only reach public addresses: names are
checked after resolution, at connect time (a name that later resolves to 10.x or 169.254.x —
DNS rebinding — is refused too), and IP literals before the request. Private, loopback,
link-local and reserved ranges need `allow_private_networks` (development, tests).
"""

from __future__ import annotations

import ipaddress
import socket
import time
from email.utils import parsedate_to_datetime
from urllib.parse import urlsplit

import aiohttp
import msgspec
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver

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


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


def _literal_ip(host: str) -> str | None:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default and keeps only public addresses."""

    def __init__(self) -> None:
        self._inner = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if is_public(r["host"])]
        if not public:
            raise OSError(f"{host} resolves to no public address (webhooks may not reach "
                          f"private networks; see SENTINEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS)")
        return public

    async def close(self) -> None:
        await self._inner.close()


class WebhookClient:
    """A pooled HTTP client for signed webhook POSTs; `async with` closes it."""

    def __init__(self, *, connections: int, timeout_s: float,
                 allow_private_networks: bool = False) -> None:
        self._allow_private = allow_private_networks
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=connections, ttl_dns_cache=300,
                resolver=None if allow_private_networks else PublicOnlyResolver()),
            timeout=aiohttp.ClientTimeout(total=timeout_s),
            headers={"User-Agent": USER_AGENT})

    def refused(self, url: str) -> str | None:
        """Why `url` may not be posted to, or None (names are checked when connecting)."""
        if self._allow_private:
            return None
        literal = _literal_ip(urlsplit(url).hostname or "")
        if literal is not None and not is_public(literal):
            return (f"{literal} is not a public address (webhooks may not reach private "
                    f"networks; see SENTINEL_WEBHOOK_ALLOW_PRIVATE_NETWORKS)")
        return None

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
        refusal = self.refused(url)
        if refusal is not None:
            return Answer(status_code=None, latency_ms=0.0, error=refusal)
        try:
            async with self._session.post(url, data=body, headers=headers,
                                          allow_redirects=False) as response:
                text = await response.text(errors="replace")
                return _answer(response.status, started, text,
                               response.headers.get("Retry-After"))
        except TimeoutError:
            return Answer(status_code=None, latency_ms=_since_ms(started), error="timed out")
        except aiohttp.ClientConnectorError as exc:
            return Answer(status_code=None, latency_ms=_since_ms(started),
                          error=f"cannot connect to {exc.host}:{exc.port}: "
                                f"{exc.os_error}"[:EXCERPT_CHARS])
        except (aiohttp.ClientError, OSError) as exc:
            return Answer(status_code=None, latency_ms=_since_ms(started),
                          error=f"{type(exc).__name__}: {exc}"[:EXCERPT_CHARS])


def _since_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _answer(status: int, started: float, text: str, retry_after: str | None) -> Answer:
    error = None if 200 <= status < 300 else f"HTTP {status}: {text[:EXCERPT_CHARS]}".rstrip(": ")
    return Answer(status_code=status, latency_ms=_since_ms(started), error=error,
                  retry_after_s=retry_after_s(retry_after))
