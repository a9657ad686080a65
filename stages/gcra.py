"""GCRA, the generic cell rate algorithm (as redis-cell's CL.THROTTLE), in plain Python.

The limiter runs it as a Lua script inside Redis (`stages/ratelimit.py`); this module holds
the arithmetic with an explicit clock: the reference the tests check the script against. A
key stores one number, its theoretical arrival time (TAT), the moment its bucket would be
full again at the steady rate. A request is allowed when `max(TAT, now) + interval -
tolerance <= now`; allowing it moves the TAT on by one interval, denying it changes nothing.
Everything is integer microseconds, so the script and the reference agree exactly.

`burst` is how many requests an idle key allows at one instant (redis-cell's `max_burst + 1`):
tolerance = interval x burst.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

US_PER_S = 1_000_000


class Limit(msgspec.Struct, frozen=True):
    """A steady rate with a burst: `per_s` requests a second, `burst` at one instant."""

    per_s: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.per_s > 0

    @property
    def interval_us(self) -> int:
        """The emission interval: one request's share of the rate (0 when off)."""
        return max(1, round(US_PER_S / self.per_s)) if self.per_s > 0 else 0

    @property
    def tolerance_us(self) -> int:
        return self.interval_us * self.burst


class Outcome(NamedTuple):
    """One request against one key."""

    allowed: bool
    remaining: int  # requests still allowed at this instant (0 when denied)
    retry_after_us: int  # 0 when allowed; else how long until this request would be allowed
    reset_us: int  # until the key is full again (idle, as if absent)
    tat_us: int  # the key's TAT after this request (unchanged when denied)


def throttle(tat_us: int | None, now_us: int, limit: Limit) -> Outcome:
    """One request against a key whose TAT is `tat_us` (None: absent)."""
    interval, tolerance = limit.interval_us, limit.tolerance_us
    tat = now_us if tat_us is None or tat_us < now_us else tat_us
    new_tat = tat + interval
    over_us = new_tat - tolerance - now_us
    if over_us > 0:
        return Outcome(False, 0, over_us, tat - now_us, tat)
    return Outcome(True, (tolerance - (new_tat - now_us)) // interval, 0, new_tat - now_us,
                   new_tat)


class Decision(NamedTuple):
    """A request against its client's and its card's limits.

    Allowed (`scope` None): `remaining` and `reset_us` are the client limit's (-1 and 0 when
    that limit is off). Denied: `scope` names the limit that denied it, the one with the longer
    wait when both would (the client's on a tie); `retry_after_us` and `reset_us` are its.
    """

    scope: str | None
    remaining: int
    retry_after_us: int
    reset_us: int


Keyed = tuple[str, Limit]  # a key and the limit that applies to it


def admit(tats: dict[str, int], now_us: int, client: Keyed | None,
          card: Keyed | None) -> Decision:
    """The reference for one request of the Lua script. Only a request both limits allow
    consumes anything, from both; `tats` (key -> TAT) is updated in place."""
    outcomes = {scope: (keyed[0], throttle(tats.get(keyed[0]), now_us, keyed[1]))
                for scope, keyed in (("client", client), ("card", card)) if keyed is not None}
    denied: Decision | None = None
    for scope, (_, outcome) in outcomes.items():
        if outcome.retry_after_us > (denied.retry_after_us if denied else 0):
            denied = Decision(scope, 0, outcome.retry_after_us, outcome.reset_us)
    if denied is not None:
        return denied
    for key, outcome in outcomes.values():
        tats[key] = outcome.tat_us
    if "client" not in outcomes:
        return Decision(None, -1, 0, 0)
    first = outcomes["client"][1]
    return Decision(None, first.remaining, 0, first.reset_us)


def standing(tat_us: int | None, now_us: int, limit: Limit) -> tuple[int, int]:
    """(remaining, reset in µs) of a key as it stands, consuming nothing: what a request
    answered from its Idempotency-Key reports."""
    left = max(0, tat_us - now_us) if tat_us is not None else 0
    return (limit.tolerance_us - left) // limit.interval_us, left


def whole_seconds(duration_us: int) -> int:
    """A duration as the whole seconds an HTTP header carries: rounded up, at least 1."""
    return max(1, -(-duration_us // US_PER_S))
