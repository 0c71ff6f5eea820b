"""Per-caller request-rate limit: a token bucket per caller, in memory, O(1) per check.

Each caller may burst up to ``rate_per_minute`` requests, refilled continuously at ``rate_per_minute / 60``
per second. Limits are per process: with N ingress replicas a caller gets at most N times its rate, which
bounds abuse without a shared store on the request path.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Bucket:
    tokens: float
    last: float


class RateLimiter:
    """Token buckets keyed by caller name. Not thread-safe: use one per event loop (one per replica).

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
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return None
        return (1.0 - bucket.tokens) / per_second

    def _evict(self, now: float) -> None:
        # A bucket untouched for 60 s is full whatever its rate (capacity = one minute of refill): forget it.
        while self._buckets:
            name, oldest = next(iter(self._buckets.items()))
            if len(self._buckets) > self._max or now - oldest.last >= 60.0:
                del self._buckets[name]
            else:
                break


def retry_after(seconds: float) -> str:
    """The ``retry-after`` header value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(seconds)))
