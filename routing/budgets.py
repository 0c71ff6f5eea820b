"""Budgets: requests per minute and tokens per minute and per day, per caller and per team.

The accounting is a pure core (:class:`BudgetBook`: fixed windows, a clock passed in) behind a small asynchronous
interface (:class:`Ledger`) with two implementations: :class:`InProcessLedger` (one process; tests, a single
router) and :class:`RayLedger` (one named Ray actor that every router replica of a cluster shares, so a budget is
one budget however many replicas serve it). The same ledger holds the per-caller request-rate buckets that router
replicas draw leases from (``draw``; routing/ratelimit.py: SharedRateLimiter).

Windows are fixed: a minute window starts on the minute, a day window at midnight UTC, so the ``reset`` a caller
is told is exact and the same on every replica. A request is charged one request and an *estimate* of its tokens
before it goes to a backend (:meth:`BudgetBook.reserve`; refused, and charged nothing, when that would go over any
budget); when it ends the estimate is replaced by the backend's counted usage (:meth:`BudgetBook.settle`; streams
when the stream ends). Headers follow OpenAI: ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}``, each trio
describing the budget with the least left.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from routing.ratelimit import RateLimiter

MINUTE = 60
DAY = 86_400
_KINDS = ("requests_per_minute", "tokens_per_minute", "tokens_per_day")


@dataclass(frozen=True)
class Limits:
    """One scope's budget; None: no limit of that kind."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    tokens_per_day: int | None = None

    def __bool__(self) -> bool:
        return any(getattr(self, k) is not None for k in _KINDS)


@dataclass(frozen=True)
class Scope:
    """Whose budget: ``key`` is ``caller:NAME`` or ``team:NAME``."""

    key: str
    limits: Limits


@dataclass(frozen=True)
class Verdict:
    """The answer to a reservation: allowed or not, the OpenAI headers, and what to settle later."""

    allowed: bool
    headers: dict[str, str]
    retry_after_s: float | None = None
    exceeded: str | None = None  # e.g. "tokens_per_minute of team:analysts" (names from configuration only)
    minute: int = 0  # the windows charged (settle adjusts these, even after they have closed)
    day: int = 0
    tokens: int = 0  # the estimate charged


def format_reset(seconds: float) -> str:
    """A duration the way OpenAI's ``x-ratelimit-reset-*`` headers write it: ``1s``, ``6m0s``, ``23h59m59s``
    (whole seconds, rounded up, at least 1s)."""
    total = max(1, math.ceil(seconds - 1e-9))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


@dataclass
class _Counter:
    requests: int = 0
    tokens: int = 0


@dataclass
class BudgetBook:
    """Counters per scope and window. Not thread-safe: one per event loop, or inside one actor."""

    minutes: dict[tuple[str, int], _Counter] = field(default_factory=dict)
    days: dict[tuple[str, int], _Counter] = field(default_factory=dict)

    def reserve(self, scopes: Sequence[Scope], tokens: int, now: float) -> Verdict:
        """Charge one request and ``tokens`` (the estimate) to every scope, or nothing when any budget would be
        exceeded (then ``allowed`` is False and the headers describe the budget that refused)."""
        minute, day = int(now // MINUTE), int(now // DAY)
        self._expire(minute, day)
        minute_reset, day_reset = (minute + 1) * MINUTE - now, (day + 1) * DAY - now
        tokens = max(0, int(tokens))
        # (remaining after this request, limit, reset, scope, kind) per budget that applies
        req: list[tuple[int, int, float, str, str]] = []
        tok: list[tuple[int, int, float, str, str]] = []
        for scope in scopes:
            lim = scope.limits
            m = self.minutes.get((scope.key, minute)) or _Counter()
            d = self.days.get((scope.key, day)) or _Counter()
            if lim.requests_per_minute is not None:
                req.append(
                    (
                        lim.requests_per_minute - m.requests - 1,
                        lim.requests_per_minute,
                        minute_reset,
                        scope.key,
                        "requests_per_minute",
                    )
                )
            if lim.tokens_per_minute is not None:
                tok.append(
                    (
                        lim.tokens_per_minute - m.tokens - tokens,
                        lim.tokens_per_minute,
                        minute_reset,
                        scope.key,
                        "tokens_per_minute",
                    )
                )
            if lim.tokens_per_day is not None:
                tok.append(
                    (lim.tokens_per_day - d.tokens - tokens, lim.tokens_per_day, day_reset, scope.key, "tokens_per_day")
                )
        over = [b for b in (*req, *tok) if b[0] < 0]
        if over:
            # Refused: nothing is charged, so the headers show what is left now (this request not counted).
            worst = max(over, key=lambda b: b[2])  # the one that keeps the caller waiting longest
            req_now = [(r + 1, limit, reset, key, name) for r, limit, reset, key, name in req]
            tok_now = [(r + tokens, limit, reset, key, name) for r, limit, reset, key, name in tok]
            return Verdict(
                False,
                _headers(req_now, tok_now),
                retry_after_s=worst[2],
                exceeded=f"{worst[4]} of {worst[3]}",
                minute=minute,
                day=day,
            )
        for scope in scopes:
            if not scope.limits:
                continue
            m = self.minutes.setdefault((scope.key, minute), _Counter())
            m.requests += 1
            m.tokens += tokens
            self.days.setdefault((scope.key, day), _Counter()).tokens += tokens
        return Verdict(True, _headers(req, tok), minute=minute, day=day, tokens=tokens)

    def settle(self, scopes: Sequence[Scope], minute: int, day: int, delta: int) -> None:
        """Correct the windows a reservation charged by ``delta`` tokens (counted usage minus the estimate)."""
        if not delta:
            return
        for scope in scopes:
            for book, index in ((self.minutes, minute), (self.days, day)):
                counter = book.get((scope.key, index))
                if counter is not None:
                    counter.tokens = max(0, counter.tokens + delta)

    def _expire(self, minute: int, day: int) -> None:
        # Keep the previous window a while so that a request that began in it can still settle there.
        for key in [k for k in self.minutes if k[1] < minute - 1]:
            del self.minutes[key]
        for key in [k for k in self.days if k[1] < day - 1]:
            del self.days[key]


def _headers(
    req: list[tuple[int, int, float, str, str]], tok: list[tuple[int, int, float, str, str]]
) -> dict[str, str]:
    headers: dict[str, str] = {}
    for name, budgets in (("requests", req), ("tokens", tok)):
        if budgets:
            remaining, limit, reset, _, _ = min(budgets, key=lambda b: (b[0], -b[2]))
            headers[f"x-ratelimit-limit-{name}"] = str(limit)
            headers[f"x-ratelimit-remaining-{name}"] = str(max(0, remaining))
            headers[f"x-ratelimit-reset-{name}"] = format_reset(reset)
    return headers


class Ledger(Protocol):
    """Where budgets are kept. ``reserve`` before a request goes to a backend, ``settle`` when it ends."""

    async def reserve(self, scopes: Sequence[Scope], tokens: int) -> Verdict: ...

    async def settle(self, scopes: Sequence[Scope], verdict: Verdict, used: int) -> None: ...


LEDGER_NAMESPACE = "sovereign"


def ledger_actor_name(app_name: str) -> str:
    """The name of the ledger actor of Serve application ``app_name`` (in ``LEDGER_NAMESPACE``)."""
    return f"sovereign-ledger-{app_name}"


class InProcessLedger:
    """The budgets of this process alone (one router, or tests with an injected clock)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.book = BudgetBook()
        self._clock = clock
        self.buckets = RateLimiter()

    async def draw(self, caller: str, rate_per_minute: int, want: int) -> tuple[int, float]:
        return self.buckets.take(caller, rate_per_minute, want)

    async def reserve(self, scopes: Sequence[Scope], tokens: int) -> Verdict:
        return self.book.reserve(scopes, tokens, self._clock())

    async def settle(self, scopes: Sequence[Scope], verdict: Verdict, used: int) -> None:
        self.book.settle(scopes, verdict.minute, verdict.day, used - verdict.tokens)


class _BookActor:
    """The Ray actor behind :class:`RayLedger`: one :class:`BudgetBook`, one call at a time (so each reservation
    is atomic across every replica that calls it)."""

    def __init__(self) -> None:
        self.book = BudgetBook()
        self.buckets = RateLimiter()

    def reserve(self, scopes: Sequence[Scope], tokens: int) -> Verdict:
        return self.book.reserve(scopes, tokens, time.time())

    def draw(self, caller: str, rate_per_minute: int, want: int) -> tuple[int, float]:
        return self.buckets.take(caller, rate_per_minute, want)

    def settle(self, scopes: Sequence[Scope], minute: int, day: int, delta: int) -> None:
        self.book.settle(scopes, minute, day, delta)


class RayLedger:
    """Budgets shared by every router replica of a Ray cluster: a named, detached actor (created by the first
    replica that needs it, found by the others) holds the counters. One actor call per reservation and one per
    settlement; if the actor cannot be reached the request is refused (fail closed: 503 from the gateway).
    Request-rate leases (``draw``) come from the same actor. The actor restarts if it dies (its counters start
    again from zero); ``sovereign serve --address`` removes it with the application."""

    def __init__(self, name: str = ledger_actor_name("sovereign"), namespace: str = LEDGER_NAMESPACE) -> None:
        import ray

        actor_cls: Any = ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=0)(_BookActor)
        self._actor = actor_cls.options(
            name=name, namespace=namespace, lifetime="detached", get_if_exists=True
        ).remote()

    async def reserve(self, scopes: Sequence[Scope], tokens: int) -> Verdict:
        return await self._actor.reserve.remote(list(scopes), tokens)

    async def settle(self, scopes: Sequence[Scope], verdict: Verdict, used: int) -> None:
        delta = used - verdict.tokens
        if delta:
            await self._actor.settle.remote(list(scopes), verdict.minute, verdict.day, delta)

    async def draw(self, caller: str, rate_per_minute: int, want: int) -> tuple[int, float]:
        return await self._actor.draw.remote(caller, rate_per_minute, want)


def estimate_tokens(body_bytes: int) -> int:
    """The prompt's size estimate: about four bytes of request body per token (an over-estimate for JSON, which
    carries structure besides the text); replaced by the backend's count when the request ends."""
    return max(1, math.ceil(body_bytes / 4))
