"""The budgets' pure core: fixed windows, reservation and settlement, OpenAI's header values."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from routing.budgets import DAY, MINUTE, BudgetBook, InProcessLedger, Limits, Scope, format_reset

M0 = 1_800_000_000.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.2, "1s"),
        (1, "1s"),
        (1.01, "2s"),
        (59, "59s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (3599, "59m59s"),
        (DAY - 1, "23h59m59s"),
    ],
)
def test_format_reset(seconds: float, text: str) -> None:
    assert format_reset(seconds) == text


def test_refusal_charges_nothing_and_names_the_budget() -> None:
    book = BudgetBook()
    caller = Scope("caller:a", Limits(requests_per_minute=5))
    team = Scope("team:t", Limits(tokens_per_minute=100, tokens_per_day=1000))
    ok = book.reserve([caller, team], 60, M0 + 20)
    assert ok.allowed and ok.headers == {
        "x-ratelimit-limit-requests": "5",
        "x-ratelimit-remaining-requests": "4",
        "x-ratelimit-reset-requests": "40s",
        "x-ratelimit-limit-tokens": "100",
        "x-ratelimit-remaining-tokens": "40",
        "x-ratelimit-reset-tokens": "40s",
    }
    refused = book.reserve([caller, team], 41, M0 + 30)
    assert not refused.allowed and refused.exceeded == "tokens_per_minute of team:t"
    assert refused.headers["x-ratelimit-remaining-tokens"] == "40"
    assert refused.headers["x-ratelimit-remaining-requests"] == "4"  # the refused request is not counted
    assert refused.retry_after_s == 30
    book.settle([caller, team], ok.minute, ok.day, 10 - 60)  # counted usage 10, estimate 60
    assert book.reserve([caller, team], 41, M0 + 31).allowed


def test_day_budget_outlives_the_minute() -> None:
    book = BudgetBook()
    team = Scope("team:t", Limits(tokens_per_minute=100, tokens_per_day=150))
    day_start = (M0 // DAY) * DAY
    assert book.reserve([team], 100, day_start + 10).allowed
    late = book.reserve([team], 60, day_start + 10 + MINUTE)
    assert not late.allowed and late.exceeded == "tokens_per_day of team:t"
    assert late.headers["x-ratelimit-reset-tokens"] == format_reset(DAY - 10 - MINUTE)
    assert book.reserve([team], 60, day_start + DAY).allowed  # the next day


@given(st.lists(st.tuples(st.integers(0, 50), st.integers(0, 50)), max_size=40))
def test_never_over_budget(requests: list[tuple[int, int]]) -> None:
    """Whatever the estimates and counted usage, the tokens charged to a window never pass its limit through
    reservations (settlement can only make a window show what was really used)."""
    book = BudgetBook()
    scope = Scope("team:t", Limits(requests_per_minute=30, tokens_per_minute=200))
    for estimate, used in requests:
        verdict = book.reserve([scope], estimate, M0 + 1)
        counter = book.minutes.get(("team:t", int((M0 + 1) // MINUTE)))
        assert counter is None or counter.requests <= 30
        if verdict.allowed:
            assert counter is not None and counter.tokens <= 200
            book.settle([scope], verdict.minute, verdict.day, min(used, estimate) - estimate)


def test_in_process_ledger_uses_its_clock() -> None:
    now = [M0 + 59.5]
    ledger = InProcessLedger(lambda: now[0])
    scope = Scope("caller:x", Limits(requests_per_minute=1))

    async def go() -> None:
        first = await ledger.reserve([scope], 1)
        assert first.allowed and first.headers["x-ratelimit-reset-requests"] == "1s"
        assert not (await ledger.reserve([scope], 1)).allowed
        now[0] = M0 + 60
        assert (await ledger.reserve([scope], 1)).allowed
        await ledger.settle([scope], first, 0)

    asyncio.run(go())
