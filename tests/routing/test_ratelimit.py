"""Per-caller token buckets with an injected clock: deterministic, no sleeping. Shared limits over a fake ledger."""

from __future__ import annotations

import asyncio

import pytest

from routing.ratelimit import RateLimiter, SharedRateLimiter, lease_size, retry_after_header


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_allows_a_minute_of_burst_then_refuses_with_the_wait() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert all(limiter.check("a", 60) is None for _ in range(60))
    wait = limiter.check("a", 60)
    assert wait == pytest.approx(1.0)
    clock.now += 0.5
    assert limiter.check("a", 60) == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.check("a", 60) is None
    assert limiter.check("a", 60) == pytest.approx(1.0)


def test_callers_are_independent() -> None:
    limiter = RateLimiter(Clock())
    assert limiter.check("a", 1) is None
    assert limiter.check("a", 1) == pytest.approx(60.0)
    assert limiter.check("b", 1) is None


def test_refill_never_exceeds_capacity() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.check("a", 2) is None
    clock.now += 3600
    assert limiter.check("a", 2) is None
    assert limiter.check("a", 2) is None
    assert limiter.check("a", 2) is not None


def test_lowered_rate_applies_at_once() -> None:
    limiter = RateLimiter(Clock())
    assert limiter.check("a", 100) is None
    assert limiter.check("a", 1) is None  # capacity shrinks to 1: the 99 tokens left are capped
    assert limiter.check("a", 1) is not None


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.check("a", 1) is None
    clock.now -= 500
    assert limiter.check("a", 1) is not None


def test_idle_callers_are_evicted_and_memory_is_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(clock, max_callers=50)
    for i in range(200):
        limiter.check(f"c{i}", 10)
    assert len(limiter) == 50
    clock.now += 61
    limiter.check("fresh", 10)
    assert len(limiter) == 1


def test_an_evicted_bucket_was_full_anyway() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    for _ in range(5):
        limiter.check("a", 5)
    assert limiter.check("a", 5) is not None
    clock.now += 60
    limiter.check("other", 5)  # evicts "a", whose bucket has refilled
    assert all(limiter.check("a", 5) is None for _ in range(5))
    assert limiter.check("a", 5) is not None


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError):
        RateLimiter(Clock()).check("a", 0)
    with pytest.raises(ValueError):
        RateLimiter(Clock(), max_callers=0)


def test_retry_after_is_whole_seconds_rounded_up() -> None:
    assert retry_after_header(0.01) == "1"
    assert retry_after_header(1.0) == "1"
    assert retry_after_header(1.2) == "2"
    assert retry_after_header(59.9) == "60"


# -- shared limits: leases drawn from one ledger by several router replicas ------------------------------------------


class Source:
    """The shared buckets as the ledger actor keeps them (the same RateLimiter), counting the calls made to it."""

    def __init__(self, clock: Clock) -> None:
        self.buckets = RateLimiter(clock)
        self.calls = 0
        self.fail: Exception | None = None
        self.hang = False

    async def draw(self, caller: str, rate: int, want: int) -> tuple[int, float]:
        self.calls += 1
        if self.hang:
            await asyncio.sleep(3600)
        if self.fail is not None:
            raise self.fail
        await asyncio.sleep(0)  # a remote call: other requests run meanwhile
        return self.buckets.take(caller, rate, want)


def _replicas(n: int, clock: Clock, source: Source, **kwargs: float) -> list[SharedRateLimiter]:
    return [SharedRateLimiter(source, n, clock, **kwargs) for _ in range(n)]


def test_take_grants_whole_permits_up_to_what_is_left() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    assert limiter.take("a", 20, 15) == (15, 0.0)
    assert limiter.take("a", 20, 15) == (5, 0.0)
    granted, wait = limiter.take("a", 20, 1)
    assert granted == 0 and wait == pytest.approx(3.0)


def test_lease_size_is_a_fiftieth_of_the_rate() -> None:
    assert [lease_size(r) for r in (1, 20, 49, 50, 600, 6000)] == [1, 1, 1, 1, 12, 120]


def test_two_replicas_share_one_limit() -> None:
    """Alternating requests over two replicas: the caller gets its limit once, not once per replica."""

    async def run() -> list[float | None]:
        clock = Clock()
        replicas = _replicas(2, clock, Source(clock))
        return [await replicas[i % 2].acheck("a", 20) for i in range(40)]

    results = asyncio.run(run())
    assert sum(r is None for r in results) == 20
    refused = [r for r in results if r is not None]
    assert all(0 < r <= 3.0 + 1e-9 for r in refused)  # the wait for the next permit (20/min: one per 3 s)


def test_a_busy_caller_costs_about_one_ledger_call_per_lease() -> None:
    async def run() -> tuple[int, int]:
        clock = Clock()
        source = Source(clock)
        replicas = _replicas(2, clock, source)
        allowed = 0
        for i in range(1200):  # 1,200 requests in 2 minutes at a rate of 600/min
            clock.now += 0.1
            allowed += await replicas[i % 2].acheck("a", 600) is None
        return allowed, source.calls

    allowed, calls = asyncio.run(run())
    assert 1200 * 0.96 <= allowed <= 1200  # the budget is a minute's burst plus the refill: nothing is refused
    assert calls <= 1200 / lease_size(600) + 4


def test_a_crowd_of_concurrent_requests_shares_one_draw() -> None:
    async def run() -> tuple[list[float | None], int]:
        clock = Clock()
        source = Source(clock)
        (replica,) = _replicas(1, clock, source)
        results = await asyncio.gather(*(replica.acheck("a", 20) for _ in range(30)))
        return list(results), source.calls

    results, calls = asyncio.run(run())
    assert sum(r is None for r in results) == 20
    assert calls <= 2  # one draw for the crowd, one that finds the bucket empty; the rest refused locally


def test_refusals_are_answered_locally_until_the_next_permit() -> None:
    async def run() -> tuple[int, float | None]:
        clock = Clock()
        source = Source(clock)
        (replica,) = _replicas(1, clock, source)
        for _ in range(20):
            assert await replica.acheck("a", 20) is None
        calls = source.calls
        for _ in range(50):
            assert await replica.acheck("a", 20) is not None
        assert source.calls == calls + 1  # one draw learnt the wait; the other 49 refusals cost nothing
        clock.now += 3.0
        return source.calls, await replica.acheck("a", 20)

    _, after_wait = asyncio.run(run())
    assert after_wait is None


def test_unspent_permits_expire() -> None:
    async def run() -> tuple[float | None, int]:
        clock = Clock()
        source = Source(clock)
        (replica,) = _replicas(1, clock, source, ttl_s=5.0)
        assert await replica.acheck("a", 600) is None  # draws a lease of 12, spends one
        clock.now += 6.0
        calls = source.calls
        result = await replica.acheck("a", 600)
        return result, source.calls - calls

    result, new_calls = asyncio.run(run())
    assert result is None and new_calls == 1  # the 11 left were dropped: a fresh lease was drawn


@pytest.mark.parametrize("fault", ["error", "timeout"])
def test_an_unreachable_ledger_leaves_each_replica_its_share(fault: str) -> None:
    """Fail-safe: while the ledger cannot be reached each replica limits the caller to rate/replicas on its own, so
    the replicas together still let through no more than the limit; the ledger is tried again after retry_s."""

    async def run() -> tuple[list[int], int, bool, int]:
        clock = Clock()
        source = Source(clock)
        if fault == "error":
            source.fail = ConnectionError("actor died")
        else:
            source.hang = True
        replicas = _replicas(2, clock, source, timeout_s=0.01, retry_s=5.0)
        allowed = [0, 0]
        for i in range(60):
            allowed[i % 2] += await replicas[i % 2].acheck("a", 20) is None
        calls_while_down = source.calls
        degraded = replicas[0].degraded
        source.fail, source.hang = None, False
        clock.now += 5.0
        assert await replicas[0].acheck("a", 20) is None  # back on the shared buckets
        return allowed, calls_while_down, degraded and not replicas[0].degraded, source.calls

    allowed, calls_while_down, recovered, calls = asyncio.run(run())
    assert allowed == [10, 10]
    assert calls_while_down == 2  # one failed draw per replica, then no call until retry_s has passed
    assert recovered and calls == 3
