"""Standard Webhooks signatures: what a merchant checks on every delivery.

A secret is `whsec_` + base64 of 24 random bytes; the HMAC key is the decoded part. The
signed bytes are `{webhook-id}.{webhook-timestamp}.{body}`; `webhook-signature` is a
space-separated list of `v1,<base64 HMAC-SHA256>`, one per valid secret (two while a rotated
secret is still honoured). Receivers accept a delivery when any listed signature matches one
of their secrets (constant-time) and the timestamp is within the tolerance (5 minutes), and
de-duplicate on `webhook-id`. See docs/webhooks.md for a merchant-side snippet.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

PREFIX = "whsec_"
TOLERANCE_S = 300


class InvalidSignature(Exception):
    """The delivery does not verify; `reason` says why (never which secret)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def new_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    if not secret.startswith(PREFIX):
        raise ValueError("a webhook secret starts with 'whsec_'")
    return base64.b64decode(secret[len(PREFIX):], validate=True)


def sign(secret: str, msg_id: str, timestamp_s: int, body: bytes) -> str:
    """One `v1,<base64>` signature of the delivery."""
    signed = f"{msg_id}.{timestamp_s}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signature_header(secrets_: Iterable[str], msg_id: str, timestamp_s: int,
                     body: bytes) -> str:
    """The `webhook-signature` value: one signature per secret, space-separated."""
    return " ".join(sign(s, msg_id, timestamp_s, body) for s in secrets_)


def verify(secret: str, msg_id: str, timestamp: str, body: bytes, header: str, *,
           tolerance_s: int = TOLERANCE_S, now_s: float | None = None) -> None:
    """Raise InvalidSignature unless `header` carries a valid, fresh signature of the body."""
    try:
        sent_s = int(timestamp)
    except ValueError:
        raise InvalidSignature("webhook-timestamp is not an integer") from None
    now_s = time.time() if now_s is None else now_s
    if abs(now_s - sent_s) > tolerance_s:
        raise InvalidSignature("webhook-timestamp is outside the tolerance")
    expected = sign(secret, msg_id, sent_s, body).encode()
    for candidate in header.split():
        if hmac.compare_digest(candidate.encode(), expected):
            return
    raise InvalidSignature("no signature matches")
