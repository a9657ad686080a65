"""JWT bearer tokens with scopes (RFC 8725: one fixed algorithm, exp/iss/aud required)."""

from __future__ import annotations

import time
from collections.abc import Callable

import jwt
import msgspec
from aiohttp import web

from http_edge.problems import Forbidden, Unauthorized

ALGORITHM = "HS256"  # hard-coded: never taken from the token's header

SCOPES = frozenset({
    "transactions:write", "transactions:read", "accounts:write", "accounts:read",
    "rules:read", "rules:write", "merchants:read", "merchants:write", "admin",
})


class Principal(msgspec.Struct, frozen=True):
    """Who is calling: the token's subject is the client identity idempotency is scoped by."""

    subject: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        if scope not in self.scopes and "admin" not in self.scopes:
            raise Forbidden(f"this token lacks the {scope!r} scope")


PRINCIPAL: web.RequestKey[Principal] = web.RequestKey("principal", Principal)


# Verified tokens remembered per process: a gateway sends the same token with every request,
# and PyJWT's decode cost ~8 % of the edge's CPU (BENCHMARKS.md). Only a byte-identical token
# that verified before hits the cache, and only until its own `exp`.
VERIFIED_CACHE_MAX = 10_000


class TokenIssuer:
    """Signs and checks tokens with one shared key."""

    def __init__(self, secret: str, *, issuer: str, audience: str,
                 clock: Callable[[], float] = time.time) -> None:
        if len(secret.encode()) < 32:
            raise ValueError("the JWT secret must be at least 32 bytes for HS256")
        self._secret = secret
        self._issuer = issuer
        self._audience = audience
        self._clock = clock
        self._verified: dict[str, tuple[Principal, float]] = {}

    def issue(self, subject: str, scopes: list[str], *, ttl_s: int = 3600,
              now_s: float | None = None) -> str:
        unknown = sorted(set(scopes) - SCOPES)
        if unknown:
            raise ValueError(f"unknown scope(s) {unknown}; known: {sorted(SCOPES)}")
        if not subject:
            raise ValueError("a token needs a subject")
        issued_at = int(time.time() if now_s is None else now_s)
        claims = {"sub": subject, "scope": " ".join(sorted(set(scopes))), "iat": issued_at,
                  "exp": issued_at + ttl_s, "iss": self._issuer, "aud": self._audience}
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def verify(self, authorization: str | None) -> Principal:
        if not authorization:
            raise Unauthorized("an 'Authorization: Bearer <token>' header is required",
                               code="missing_token")
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'",
                               code="missing_token")
        cached = self._verified.get(token)
        if cached is not None:
            if self._clock() < cached[1]:
                return cached[0]
            del self._verified[token]
        principal, expires_s = self._decode(token)
        if len(self._verified) >= VERIFIED_CACHE_MAX:
            self._verified.pop(next(iter(self._verified)))  # the oldest entry
        self._verified[token] = (principal, expires_s)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        try:
            claims = jwt.decode(
                token, self._secret, algorithms=[ALGORITHM], issuer=self._issuer,
                audience=self._audience, options={"require": ["exp", "iss", "aud", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired", code="token_expired") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthorized(f"the token is not valid: {exc}", code="invalid_token") from None
        scope = claims.get("scope", "")
        if not isinstance(scope, str) or not isinstance(claims["sub"], str):
            raise Unauthorized("the token's claims are malformed", code="invalid_token")
        return Principal(claims["sub"], frozenset(scope.split())), float(claims["exp"])
