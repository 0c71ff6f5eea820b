"""The detector table's row type and the scanning engine shared by every detector.

Presidio's shape (one recognizer per entity: pattern, validator, context words), without its cost: all
patterns are compiled into one ``re2.Set`` and the text is scanned once; only the rows whose pattern
occurs anywhere are then run with ``finditer`` to get their candidates, which the row's validator checks
(check digits, allocation rules, context). Everything runs on bytes in RE2's Latin-1 mode: the patterns
are ASCII, the text is encoded once, and RE2 never needs to map byte offsets back to characters.

RE2 guarantees time linear in the text for every pattern, so hostile input can make a scan slow but never
catastrophic. Validation is Python, so the number of candidates is what costs; ``Scan`` checks the clock
every few candidates and raises ``ScanTimeout`` past the deadline (the caller then fails closed).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import re2

from routing.levels import Level

Match = Any  # re2._Match: no public type
Validator = Callable[[Match, bytes, dict[str, Any]], "str | None"]


def re2_options(max_mem: int = 64 << 20) -> re2.Options:
    """Latin-1 (bytes in, byte offsets out) with a large DFA budget: RE2::Set cannot fall back to the NFA
    when its DFA runs out of memory, so the budget is sized far above what any request body needs."""
    opts = re2.Options()
    opts.encoding = re2.Options.Encoding.LATIN1
    opts.max_mem = max_mem
    opts.log_errors = False
    return opts


@dataclass(frozen=True, slots=True)
class Detector:
    """One row of the table.

    ``validate(match, text, state)`` returns the signal type to count (usually ``signal``) or None to
    drop the candidate; ``state`` is a per-scan dict for rows that need to remember what they have seen.
    No validator means every match counts.
    """

    signal: str
    level: Level
    pattern: bytes
    validate: Validator | None = None
    # Extra signal types this row may return, with their levels (e.g. a 10-digit row that can say "utr").
    also: tuple[tuple[str, Level], ...] = field(default=())


class ScanTimeout(Exception):
    """Validation ran past the caller's deadline."""


_CHECK_EVERY = 64


class Scanner:
    """A compiled detector table: one ``re2.Set`` for the first pass, one regex per row for the second."""

    def __init__(self, detectors: Sequence[Detector]) -> None:
        opts = re2_options()
        self.detectors = tuple(detectors)
        self._set = re2.Set.SearchSet(opts)
        for det in self.detectors:
            self._set.Add(det.pattern)
        self._set.Compile()
        self._regexes = tuple(re2.compile(det.pattern, opts) for det in self.detectors)
        self.levels: dict[str, Level] = {}
        for det in self.detectors:
            self.levels[det.signal] = det.level
            self.levels.update(det.also)

    def scan(self, text: bytes, deadline: float) -> Counter[str] | None:
        """The validated signals found in ``text`` (None when no pattern occurs at all, the common case);
        raise ``ScanTimeout`` past ``deadline``."""
        hits = self._set.Match(text)
        if not hits:
            return None
        counts: Counter[str] = Counter()
        state: dict[str, Any] = {}
        clock = time.perf_counter
        for index in sorted(hits):
            det = self.detectors[index]
            validate = det.validate
            for n, match in enumerate(self._regexes[index].finditer(text), 1):
                if n % _CHECK_EVERY == 0 and clock() > deadline:
                    raise ScanTimeout
                signal = det.signal if validate is None else validate(match, text, state)
                if signal is not None:
                    counts[signal] += 1
        if clock() > deadline:
            raise ScanTimeout
        return counts


def near(text: bytes, start: int, end: int, words: tuple[bytes, ...], window: int = 80) -> bool:
    """True when one of ``words`` (lower-case ASCII) occurs within ``window`` bytes of ``text[start:end]``."""
    around = text[max(0, start - window) : end + window].lower()
    return any(w in around for w in words)
