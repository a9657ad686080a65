"""JWT bearer tokens and scopes."""

from __future__ import annotations

import time

import jwt
import pytest

from http_edge.auth import TokenIssuer
from http_edge.problems import Forbidden, Unauthorized

SECRET = "s" * 40


def issuer(secret: str = SECRET) -> TokenIssuer:
    return TokenIssuer(secret, issuer="sentinelstream", audience="sentinelstream-api")


def test_round_trip_keeps_subject_and_scopes():
    token = issuer().issue("gateway", ["transactions:write", "accounts:read"])
    principal = issuer().verify(f"Bearer {token}")
    assert principal.subject == "gateway"
    assert principal.scopes == {"transactions:write", "accounts:read"}
    principal.require("accounts:read")
    with pytest.raises(Forbidden):
        principal.require("rules:write")


def test_admin_scope_grants_everything():
    principal = issuer().verify("Bearer " + issuer().issue("ops", ["admin"]))
    principal.require("rules:write")


@pytest.mark.parametrize(("header", "code"), [
    (None, "missing_token"),
    ("", "missing_token"),
    ("Basic abc", "missing_token"),
    ("Bearer ", "missing_token"),
    ("Bearer not.a.jwt", "invalid_token"),
])
def test_missing_or_garbled_tokens(header, code):
    with pytest.raises(Unauthorized) as info:
        issuer().verify(header)
    assert info.value.code == code


def test_expired_forged_and_foreign_tokens_are_refused():
    expired = issuer().issue("gw", ["admin"], ttl_s=10, now_s=time.time() - 100)
    with pytest.raises(Unauthorized) as info:
        issuer().verify(f"Bearer {expired}")
    assert info.value.code == "token_expired"
    forged = issuer("f" * 40).issue("gw", ["admin"])
    with pytest.raises(Unauthorized, match="Signature"):
        issuer().verify(f"Bearer {forged}")
    other_audience = jwt.encode({"sub": "gw", "scope": "admin", "exp": time.time() + 60,
                                 "iss": "sentinelstream", "aud": "elsewhere"}, SECRET)
    with pytest.raises(Unauthorized):
        issuer().verify(f"Bearer {other_audience}")
    no_exp = jwt.encode({"sub": "gw", "scope": "admin", "iss": "sentinelstream",
                         "aud": "sentinelstream-api"}, SECRET)
    with pytest.raises(Unauthorized, match="exp"):
        issuer().verify(f"Bearer {no_exp}")
    unsigned = jwt.encode({"sub": "gw", "scope": "admin", "exp": time.time() + 60,
                           "iss": "sentinelstream", "aud": "sentinelstream-api"}, None,
                          algorithm="none")
    with pytest.raises(Unauthorized):
        issuer().verify(f"Bearer {unsigned}")


def test_issuing_checks_its_input():
    with pytest.raises(ValueError, match="unknown scope"):
        issuer().issue("gw", ["everything"])
    with pytest.raises(ValueError, match="32 bytes"):
        TokenIssuer("short", issuer="i", audience="a")


async def test_edge_answers_401_and_403(server):
    status, body, headers = await server.call("GET", "/v1/accounts/x/balance", scopes=())
    assert (status, body["code"]) == (401, "missing_token")
    status, body, _ = await server.call("GET", "/v1/accounts/x/balance",
                                        headers={"Authorization": "Bearer junk"}, scopes=())
    assert (status, body["code"]) == (401, "invalid_token")
    status, body, _ = await server.call("GET", "/v1/accounts/x/balance",
                                        scopes=("transactions:write",))
    assert (status, body["code"]) == (403, "insufficient_scope")
    status, body, _ = await server.call("POST", "/v1/transactions", json={},
                                        scopes=("transactions:read",),
                                        headers={"Idempotency-Key": "k"})
    assert (status, body["code"]) == (403, "insufficient_scope")


class CountingIssuer(TokenIssuer):
    decodes = 0

    def _decode(self, token):
        self.decodes += 1
        return super()._decode(token)


def test_a_verified_token_is_remembered_until_its_expiry():
    now = [time.time()]
    issuer = CountingIssuer("k" * 32, issuer="i", audience="a", clock=lambda: now[0])
    token = issuer.issue("gw", ["transactions:write"], ttl_s=600)
    first = issuer.verify(f"Bearer {token}")
    assert issuer.verify(f"Bearer  {token} ") == first and issuer.decodes == 1
    # Past its exp the cache no longer vouches for it: the token is decoded (and checked) again.
    now[0] += 601
    issuer.verify(f"Bearer {token}")
    assert issuer.decodes == 2


def test_the_cache_never_accepts_a_token_that_differs_by_a_byte():
    issuer = CountingIssuer("k" * 32, issuer="i", audience="a")
    token = issuer.issue("gw", ["admin"])
    issuer.verify(f"Bearer {token}")
    tampered = token[:-2] + ("A" if token[-2] != "A" else "B") + token[-1]
    with pytest.raises(Unauthorized):
        issuer.verify(f"Bearer {tampered}")
    assert issuer.decodes == 2


def test_the_cache_is_bounded(monkeypatch):
    monkeypatch.setattr("http_edge.auth.VERIFIED_CACHE_MAX", 3)
    issuer = CountingIssuer("k" * 32, issuer="i", audience="a")
    tokens = [issuer.issue(f"c{i}", ["admin"]) for i in range(5)]
    for token in tokens:
        issuer.verify(f"Bearer {token}")
    issuer.verify(f"Bearer {tokens[-1]}")
    assert issuer.decodes == 5  # the newest is still cached
    issuer.verify(f"Bearer {tokens[0]}")
    assert issuer.decodes == 6  # the oldest was evicted
