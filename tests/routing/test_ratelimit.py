"""Per-caller token buckets with an injected clock: deterministic, no sleeping."""

from __future__ import annotations

import pytest

from routing.ratelimit import RateLimiter, retry_after


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
    assert retry_after(0.01) == "1"
    assert retry_after(1.0) == "1"
    assert retry_after(1.2) == "2"
    assert retry_after(59.9) == "60"
