"""The routing decision: which backends may receive a request, in which order. Pure: no I/O, no clock.

Rules (DESIGN.md, "Routing policy"):
- a backend is cleared for a request when the request's level is at or below its ``max_classification``;
- a non-sovereign backend is never cleared above OFFICIAL, whatever its configuration says (belt and braces:
  config validation already refuses such a backend);
- a caller whose key has a ceiling below the request's level is refused outright;
- overflow: a local backend whose queue is over its depth moves behind the other candidates, so low-risk traffic
  goes elsewhere first; sensitive traffic has nowhere else to go and still queues locally (bounded) or gets 503.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from routing.levels import Level


@dataclass(frozen=True, slots=True)
class BackendPolicy:
    """What the policy needs to know about a backend (from the configuration)."""

    name: str
    sovereign: bool
    max_classification: Level
    # Unreadable kinds (routing.classify.UNSCANNED_KINDS) this backend may receive; see Classification.level_for.
    accepts_unscanned: frozenset[str] = frozenset()


class Refusal(StrEnum):
    CEILING = "caller_ceiling_below_level"
    NOT_CLEARED = "no_backend_cleared_for_level"
    UNAVAILABLE = "no_cleared_backend_available"


@dataclass(frozen=True, slots=True)
class Plan:
    """The ordered backends to try. Empty ``candidates`` means refuse for ``refusal``."""

    candidates: tuple[str, ...]
    refusal: Refusal | None = None
    overflowed: tuple[str, ...] = field(default=())  # local backends moved back because their queue is full


def is_cleared(backend: BackendPolicy, level: Level) -> bool:
    if not backend.sovereign and level > Level.OFFICIAL:
        return False
    return level <= backend.max_classification


def level_for(backend: BackendPolicy, level: Level, unscanned: frozenset[str], readable: Level | None) -> Level:
    """The request's level as ``backend`` sees it: the readable content's level when the request's only
    unreadable kinds are ones this backend accepts, else the whole request's level."""
    if unscanned and readable is not None and unscanned <= backend.accepts_unscanned:
        return readable
    return level


def decide(
    level: Level,
    route: Sequence[BackendPolicy],
    *,
    ceiling: Level | None = None,
    overloaded: Iterable[str] = (),
    unavailable: Iterable[str] = (),
    unscanned: frozenset[str] = frozenset(),
    readable: Level | None = None,
) -> Plan:
    """Filter ``route`` by clearance and current state, keeping the configured preference order. ``unscanned``
    and ``readable``: the kinds of content the classifier could not read and the level of the rest."""
    if ceiling is not None and level > ceiling:
        return Plan(candidates=(), refusal=Refusal.CEILING)
    cleared = [b for b in route if is_cleared(b, level_for(b, level, unscanned, readable))]
    if not cleared:
        return Plan(candidates=(), refusal=Refusal.NOT_CLEARED)
    down = set(unavailable)
    usable = [b for b in cleared if b.name not in down]
    if not usable:
        return Plan(candidates=(), refusal=Refusal.UNAVAILABLE)
    full = set(overloaded)
    free = [b.name for b in usable if b.name not in full]
    busy = [b.name for b in usable if b.name in full]
    # A full queue only matters when something else can take the request; otherwise it waits in that queue.
    overflowed = tuple(busy) if free and busy and usable[0].name in full else ()
    return Plan(candidates=tuple(free + busy), overflowed=overflowed)


def policy_digest(policy: dict[str, Any]) -> str:
    """SHA-256 of the canonical routing policy (backends' clearances and routes), recorded in every audit record."""
    canonical = json.dumps(policy, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
