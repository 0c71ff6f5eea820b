"""Per-caller request-rate limit: a token bucket per caller, O(1) per check.

Each caller may burst up to ``rate_per_minute`` requests, refilled continuously at ``rate_per_minute / 60``
per second.

* :class:`RateLimiter` keeps the buckets in this process: exact for one router replica.
* :class:`SharedRateLimiter` is what several router replicas use: the buckets live in one place that every replica
  shares (the application's ledger actor, routing/budgets.py), and a replica draws *leases* from them, a few permits
  at a time (:func:`lease_size`: 1/50 of the caller's rate, at least one), which it then spends locally. So a caller
  gets its limit across all replicas together, not once per replica, and a replica calls the ledger about once per
  lease (at most about 50 times a minute per caller whatever the rate, plus one call per refusal window), never once
  per request. The error is bounded and on the refusing side: permits a replica holds are taken from the shared
  bucket already, so at most ``replicas x lease`` permits (2 % of the rate per replica) are held by one replica
  while another refuses; more than the limit is never let through beyond that.
* If the ledger cannot be reached (its actor died and is restarting, a call timed out), each replica falls back to
  a bucket of its own at ``rate / replicas`` (at least 1), so the replicas together still let through no more than
  the limit, and tries the ledger again after ``LEDGER_RETRY_S``. This errs towards refusing (a caller whose
  requests all reach one replica gets a share of its limit) and keeps serving: a rate limit bounds abuse; it is
  not an access decision. Budgets (routing/budgets.py), which are, fail closed instead.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

log = logging.getLogger("sovereign.ratelimit")

LEASE_SHARE = 50
"""A lease is 1/LEASE_SHARE of the caller's rate per minute (at least one permit)."""
LEASE_TTL_S = 5.0
"""Permits a replica has not spent this long after drawing them are dropped (an idle caller is forgotten)."""
LEDGER_TIMEOUT_S = 0.5
"""The longest a draw may take; past it the ledger counts as unreachable."""
LEDGER_RETRY_S = 5.0
"""After a failed draw, how long a replica uses its own bucket before it tries the ledger again."""


@dataclass
class _Bucket:
    tokens: float
    last: float


class RateLimiter:
    """Token buckets keyed by caller name. Not thread-safe: use one per event loop (one per replica), or inside one
    actor (the shared ledger).

    Memory stays bounded: buckets that have been idle long enough to be full again carry no state and are
    dropped, and beyond ``max_callers`` the least recently seen caller is dropped (it restarts with a full
    bucket, which errs towards serving).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, max_callers: int = 100_000) -> None:
        if max_callers < 1:
            raise ValueError("max_callers must be at least 1")
        self._clock = clock
        self._max = max_callers
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()  # least recently seen first

    def __len__(self) -> int:
        return len(self._buckets)

    def check(self, caller: str, rate_per_minute: int) -> float | None:
        """Take one request from ``caller``'s bucket: None when allowed, else the seconds until it would be."""
        granted, wait = self.take(caller, rate_per_minute, 1)
        return None if granted else wait

    async def acheck(self, caller: str, rate_per_minute: int) -> float | None:
        """:meth:`check`, with the signature of :meth:`SharedRateLimiter.acheck`."""
        return self.check(caller, rate_per_minute)

    def take(self, caller: str, rate_per_minute: int, want: int) -> tuple[int, float]:
        """Take up to ``want`` whole permits from ``caller``'s bucket: (how many were taken, and when none were, the
        seconds until one will be there; else 0)."""
        if rate_per_minute < 1:
            raise ValueError("rate_per_minute must be at least 1")
        now = self._clock()
        capacity = float(rate_per_minute)
        per_second = rate_per_minute / 60.0
        bucket = self._buckets.pop(caller, None)
        if bucket is None:
            bucket = _Bucket(capacity, now)
        else:
            elapsed = max(0.0, now - bucket.last)
            bucket.tokens = min(capacity, bucket.tokens + elapsed * per_second)
            bucket.last = now
        self._buckets[caller] = bucket  # most recently seen last
        self._evict(now)
        granted = min(max(1, want), math.floor(bucket.tokens))
        if granted >= 1:
            bucket.tokens -= granted
            return granted, 0.0
        return 0, (1.0 - bucket.tokens) / per_second

    def _evict(self, now: float) -> None:
        # A bucket untouched for 60 s is full whatever its rate (capacity = one minute of refill): forget it.
        while self._buckets:
            name, oldest = next(iter(self._buckets.items()))
            if len(self._buckets) > self._max or now - oldest.last >= 60.0:
                del self._buckets[name]
            else:
                break


def lease_size(rate_per_minute: int) -> int:
    """How many permits a replica draws at a time for a caller of this rate."""
    return max(1, rate_per_minute // LEASE_SHARE)


class PermitSource(Protocol):
    """Where shared buckets live (routing/budgets.py: the ledger)."""

    async def draw(self, caller: str, rate_per_minute: int, want: int) -> tuple[int, float]: ...


@dataclass
class _Lease:
    permits: int
    drawn: float


class SharedRateLimiter:
    """Per-caller limits shared by every router replica: leases drawn from ``source``. One per event loop.

    ``replicas``: how many router replicas share the limit (each falls back to ``rate / replicas`` of its own
    while the source is unreachable). Concurrent requests of one caller share one draw in flight, which asks for
    enough permits for all of them (or a lease, if more)."""

    def __init__(
        self,
        source: PermitSource,
        replicas: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        timeout_s: float = LEDGER_TIMEOUT_S,
        retry_s: float = LEDGER_RETRY_S,
        ttl_s: float = LEASE_TTL_S,
    ) -> None:
        self._source = source
        self.replicas = max(1, replicas)
        self._clock = clock
        self._timeout_s, self._retry_s, self._ttl_s = timeout_s, retry_s, ttl_s
        self._leases: OrderedDict[str, _Lease] = OrderedDict()  # least recently drawn first
        self._refused_until: dict[str, float] = {}
        self._draws: dict[str, asyncio.Future[None]] = {}
        self._waiting: dict[str, int] = {}
        self._fallback = RateLimiter(clock)
        self._down_until: float | None = None  # while set: the source failed; local buckets until then
        self.draws = 0  # calls to the source (for tests and the benchmark)

    @property
    def degraded(self) -> bool:
        """Whether the shared buckets are unreachable now (each replica on its own share)."""
        return self._down_until is not None and self._clock() < self._down_until

    async def acheck(self, caller: str, rate_per_minute: int) -> float | None:
        """None when ``caller`` may make a request now, else the seconds until it may."""
        if rate_per_minute < 1:
            raise ValueError("rate_per_minute must be at least 1")
        for _ in range(16):  # a draw shared by a crowd may be spent before this request's turn: draw again
            now = self._clock()
            lease = self._leases.get(caller)
            if lease is not None and now - lease.drawn >= self._ttl_s:
                del self._leases[caller]
                lease = None
            if lease is not None and lease.permits >= 1:
                lease.permits -= 1
                return None
            refused = self._refused_until.get(caller)
            if refused is not None:
                if now < refused:
                    return refused - now
                del self._refused_until[caller]
            if self.degraded:
                return self._local(caller, rate_per_minute)
            if not await self._draw(caller, rate_per_minute):
                return self._local(caller, rate_per_minute)
        return 1.0  # a crowd larger than what the shared bucket hands out: the caller is over its rate anyway

    def _local(self, caller: str, rate_per_minute: int) -> float | None:
        return self._fallback.check(caller, max(1, rate_per_minute // self.replicas))

    async def _draw(self, caller: str, rate_per_minute: int) -> bool:
        """Wait for a draw for ``caller`` (starting one if none is in flight); False if the source failed."""
        self._waiting[caller] = self._waiting.get(caller, 0) + 1
        try:
            draw = self._draws.get(caller)
            if draw is None:
                draw = asyncio.ensure_future(self._draw_now(caller, rate_per_minute))
                self._draws[caller] = draw
                draw.add_done_callback(lambda _f: self._draws.pop(caller, None))
            await asyncio.shield(draw)
        finally:
            self._waiting[caller] -= 1
            if not self._waiting[caller]:
                del self._waiting[caller]
        return not self.degraded

    async def _draw_now(self, caller: str, rate_per_minute: int) -> None:
        # Counted as the task starts: the requests that arrived with this one have joined it by then.
        want = max(lease_size(rate_per_minute), self._waiting.get(caller, 0))
        self.draws += 1
        try:
            granted, wait = await asyncio.wait_for(self._source.draw(caller, rate_per_minute, want), self._timeout_s)
        except Exception as exc:  # unreachable, timed out, or its actor died: each replica on its share
            if not self.degraded:
                log.warning(
                    "rate-limit ledger unreachable: each router replica limits callers to rate/replicas on "
                    "its own until it answers again",
                    extra={"status": type(exc).__name__},
                )
            self._down_until = self._clock() + self._retry_s
            return
        self._down_until = None
        now = self._clock()
        if granted >= 1:
            lease = self._leases.pop(caller, None)
            kept = lease.permits if lease is not None and now - lease.drawn < self._ttl_s else 0
            self._leases[caller] = _Lease(kept + granted, now)
            self._evict(now)
        else:
            self._refused_until[caller] = now + wait

    def _evict(self, now: float) -> None:
        while self._leases:
            name, oldest = next(iter(self._leases.items()))
            if now - oldest.drawn < self._ttl_s:
                break
            del self._leases[name]
        if len(self._refused_until) > 1024:  # refusals are read (and dropped) as callers come back; rarely swept
            for name in [n for n, until in self._refused_until.items() if until <= now]:
                del self._refused_until[name]


def retry_after_header(seconds: float) -> str:
    """The ``retry-after`` header value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
