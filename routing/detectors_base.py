"""The detector table's row type and the scanning engine shared by every detector.

Presidio's shape (one recognizer per entity: pattern, validator, context words), without its cost: all
patterns are compiled into one ``re2.Set`` and the text is scanned once; only the rows whose pattern
occurs anywhere are then run with ``finditer`` to get their candidates, which the row's validator checks
(check digits, allocation rules, context). Everything runs on bytes in RE2's Latin-1 mode: the patterns
are ASCII, the text is encoded once, and RE2 never needs to map byte offsets back to characters.

RE2 guarantees time linear in the text for every pattern, so hostile input can make a scan slow but never
catastrophic. Validation is Python, so the number of candidates is what costs; ``Scan`` checks the clock
every few candidates and raises ``ScanTimeout`` past the deadline (the caller then fails closed).

The two hot calls (the set, and each row's search for its next candidate) go to ``re2._re2``, the pybind11
extension that the ``re2`` package's Python wrapper is itself built on, and candidates are small ``Candidate``
objects: on a request-sized text the wrapper's generator and match objects cost more than RE2's scan. Same
engine, same options, same matches. ``Regex`` is the whole of that dependency.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import re2

from routing.levels import Level
from serving.thirdparty import re2_extension

_re2 = re2_extension()  # re2._re2, at the version it was written for (serving/thirdparty.py)


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

    ``trigger``, when given, stands in for ``pattern`` in the first pass: a cheaper pattern that matches
    inside every match of ``pattern`` (a part of it, such as the date after a name). The set's DFA runs
    over every byte of every request and its cost grows with how many partial matches it has to track at
    once, so a row whose pattern starts with something common (any capitalised word, any word before an
    ``@``) is cheaper to find by its rarer part; the second pass still searches with ``pattern``.
    """

    signal: str
    level: Level
    pattern: bytes
    validate: Validator | None = None
    # Extra signal types this row may return, with their levels (e.g. a 10-digit row that can say "utr").
    also: tuple[tuple[str, Level], ...] = field(default=())
    trigger: bytes | None = None
    # Context words without which the validator accepts no candidate: when none occurs anywhere in the text, the
    # row is not searched at all (one RE2 pass instead of a validator call for every 10-digit number of a dump).
    requires: Words | None = None
    # Bytes of which every match holds at least one: the digits for an identifier, "@" for an e-mail address.
    # The second pass then starts each search at the line of the next such byte (no match spans a line, so
    # none starts earlier), ends it with the line of the last such byte (so none ends later) and stops when
    # none is left, where RE2 would scan on to the end: one memchr over the page of prose before an identifier
    # instead of a DFA pass per row, and no search after the last one.
    needs: bytes | None = None


class ScanTimeout(Exception):
    """Validation ran past the caller's deadline."""


class Candidate(tuple):
    """One match: the subset of ``re.Match`` that validators use (``group``, ``span``, ``start``, ``end``).

    A tuple ``(text, spans, group names)`` underneath, built with ``_new(Candidate, (text, spans, names))``
    (``tuple.__new__``): one C call, which matters because one is built for every candidate a validator
    looks at."""

    __slots__ = ()

    @overload
    def group(self, group: Literal[0] = 0) -> bytes: ...

    @overload
    def group(self, group: int | bytes) -> bytes | None: ...

    def group(self, group: int | bytes = 0) -> bytes | None:
        """The text of ``group`` (an index or a name), None when it did not take part in the match (the whole
        match, group 0, always did)."""
        start, end = self[1][group if type(group) is int else self[2][group]]
        return None if start < 0 else self[0][start:end]

    def named(self, group: bytes) -> bytes | None:
        """The text of the named ``group``, None when the pattern has no such group or it did not take part (one
        validator serving rows whose patterns name their groups differently)."""
        index = self[2].get(group)
        return None if index is None else self.group(index)

    def span(self, group: int = 0) -> tuple[int, int]:
        return self[1][group]

    def start(self) -> int:
        return self[1][0][0]

    def end(self) -> int:
        return self[1][0][1]


Match = Candidate
Validator = Callable[[Candidate, bytes, dict[str, Any]], "str | None"]

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START
_new = tuple.__new__


class Regex:
    """One compiled RE2 pattern over bytes, with ``finditer`` as ``re`` has it (no pattern here matches the
    empty string, but an empty match would still move the search on by one byte)."""

    __slots__ = ("_match", "groupindex")

    def __init__(self, pattern: bytes, options: re2.Options) -> None:
        regexp = _re2.RE2(pattern, options)
        if not regexp.ok():
            raise re2.error(regexp.error())
        self._match = regexp.Match
        self.groupindex: dict[bytes, int] = dict(regexp.NamedCapturingGroups())

    def finditer(self, text: bytes, pos: int = 0, endpos: int | None = None) -> Iterator[Candidate]:
        """Non-overlapping matches in ``text[pos:endpos]``, left to right; ``\\b``, ``^`` and ``$`` see the
        bytes around the range, as in ``re``."""
        size = len(text)
        end = size if endpos is None else max(0, min(endpos, size))
        pos = max(0, pos)
        match, names = self._match, self.groupindex
        while pos <= end:
            spans = match(_UNANCHORED, text, pos, end)
            start, stop = spans[0]
            if start < 0:
                return
            yield _new(Candidate, (text, spans, names))
            pos = stop if stop > start else stop + 1

    def found(self, text: bytes, pos: int = 0, endpos: int | None = None) -> bool:
        """Whether the pattern matches anywhere in ``text[pos:endpos]`` (the bytes around the range seen as by
        ``finditer``)."""
        size = len(text)
        return self._match(_UNANCHORED, text, max(0, pos), size if endpos is None else min(endpos, size))[0][0] >= 0

    def starts_at(self, text: bytes, pos: int, endpos: int) -> bool:
        """Whether a match starts exactly at ``pos`` (and lies within ``endpos``)."""
        return self._match(_ANCHOR_START, text, max(0, pos), min(endpos, len(text)))[0][0] >= 0

    def ends_at(self, text: bytes, at: int, look: int) -> bool:
        """Whether the pattern, written to end with ``$``, matches in the ``look`` bytes before ``at``: they are
        searched as a copy, so that ``$`` is ``at`` (``$`` in a range of the whole text sees the bytes after it)."""
        window = text[max(0, at - look) : at]
        return self._match(_UNANCHORED, window, 0, len(window))[0][0] >= 0


_CHECK_EVERY = 64
MAX_COUNT = 64  # a row stops looking in a range once it has counted this many of its own signal
# Candidates validated in one scan, at most. Past it the text is a dump of identifier-shaped data (tens of
# thousands of numbers): the scan stops with FLOOD_SIGNAL (OFFICIAL-SENSITIVE) instead of running past the
# deadline, which would make the request TOP SECRET.
MAX_CANDIDATES = 20_000
FLOOD_SIGNAL = "identifier_flood"
LOCALIZE_ABOVE = 16 << 10  # bytes of text above which the second pass searches each row only where it occurs
LOCALIZE_BLOCK = 2 << 10  # about how much text one block of lines holds
_MAX_RANGES = 64  # per row; a range may also cover blocks without candidates, which finds nothing more


class Scanner:
    """A compiled detector table: one RE2 set for the first pass, one regex per row for the second."""

    def __init__(self, detectors: Sequence[Detector], markers: Sequence[bytes] = ()) -> None:
        """``markers``: patterns that find no signal but tell the caller something about the text (that it
        needs normalising or decoding). They share the first pass: ``present`` returns their indices after the
        rows', ``len(detectors) + i`` for ``markers[i]``, so noticing them costs no pass of its own."""
        opts = re2_options()
        self.detectors = tuple(detectors)
        self.rows = len(self.detectors)
        rows = _re2.Set(_UNANCHORED, opts)
        for i, pattern in enumerate(
            [*(d.pattern if d.trigger is None else d.trigger for d in self.detectors), *markers]
        ):
            if rows.Add(pattern) != i:
                raise re2.error(f"row {i}: pattern does not compile")
        if not rows.Compile():
            raise re2.error("the detector set does not compile")
        # present(text): indices of the rows whose pattern (or trigger) and of the markers that occur anywhere
        # in text (one linear pass). The extension's own method, so the common no-finding case runs no Python
        # frame here at all.
        self.present = rows.Match
        self._regexes = tuple(Regex(det.pattern, opts) for det in self.detectors)
        self._rows = tuple(
            (
                det.signal,
                det.validate,
                regex._match,
                regex.groupindex,
                regex.groupindex.get(b"v", 0),
                det.requires._match if det.requires is not None else None,
                det.needs or None,
            )
            for det, regex in zip(self.detectors, self._regexes, strict=True)
        )
        # For rows that need one of several bytes: a translation that makes each of them NUL and NUL itself
        # \x01, so that the next needed byte is one bytes.find of NUL in the translated text.
        self._needs_tables = {
            det.needs: bytes(0 if c in det.needs else 1 if c == 0 else c for c in range(256))
            for det in self.detectors
            if det.needs and len(det.needs) > 1
        }
        self.levels: dict[str, Level] = {FLOOD_SIGNAL: Level.OFFICIAL_SENSITIVE}
        for det in self.detectors:
            self.levels[det.signal] = det.level
            self.levels.update(det.also)

    def scan(self, text: bytes, deadline: float) -> dict[str, int] | None:
        """The validated signals found in ``text`` and their counts (None when no pattern occurs at all, the
        common case); raise ``ScanTimeout`` past ``deadline``."""
        rows = [i for i in self.present(text) if i < self.rows]
        return self.validate(text, rows, deadline) if rows else None

    def validate(self, text: bytes, rows: list[int], deadline: float) -> dict[str, int]:
        """The second pass over the ``rows`` that ``present`` found (markers among them are skipped): each
        row's candidates, validated and counted by signal; raise ``ScanTimeout`` past ``deadline``."""
        counts: dict[str, int] = {}
        state: dict[str, Any] = {}
        clock = time.perf_counter
        n = 0
        size = len(text)
        if size <= LOCALIZE_ABOVE or len(rows) < 2:
            where: Iterable[tuple[int, Sequence[Sequence[int]]]] = [
                (index, ((0, size),))
                for index in rows
                if index < self.rows  # markers have no candidates
            ]
        else:
            where = self._where(text, rows)
        marked: dict[bytes, bytes] = {}  # needed bytes -> the text translated so that they are NUL
        mark, probe = text, b""
        for index, ranges in where:  # rows in any order: only the justice row keeps state
            signal, validate, match, names, value, requires, needs = self._rows[index]
            if requires is not None and requires(_UNANCHORED, text, 0, size)[0][0] < 0:
                continue
            if needs is not None:
                if len(needs) == 1:
                    mark, probe = text, needs
                else:
                    cached = marked.get(needs)
                    if cached is None:
                        cached = marked[needs] = text.translate(self._needs_tables[needs])
                    mark = cached
                    probe = b"\0"
            for pos, end in ranges:
                if counts.get(signal, 0) >= MAX_COUNT:
                    break
                searches = 0
                while pos <= end:  # Regex.finditer, inline: this loop runs for every candidate
                    if needs is not None:  # no match starts before the line of the next needed byte
                        ahead = mark.find(probe, pos, end)
                        if ahead < 0:
                            break
                        if searches == 1:  # nor ends after the line of the last one (bounded once, if needed)
                            end = _line_end(text, mark.rfind(probe, ahead, end), end)
                        line = text.rfind(b"\n", pos, ahead) + 1
                        if line > pos:
                            pos = line
                    searches += 1
                    spans = match(_UNANCHORED, text, pos, end)
                    start, stop = spans[0]
                    if start < 0:
                        break
                    if value:  # the identifier is group "v"; the match also holds the characters around it
                        spans = (spans[value], *spans[1:])
                        start, stop = spans[0]
                    n += 1
                    if n % _CHECK_EVERY == 0:
                        if clock() > deadline:
                            raise ScanTimeout
                        if n >= MAX_CANDIDATES:  # a dump of identifier-shaped data: certainly not for export
                            counts[FLOOD_SIGNAL] = 1
                            return counts
                    found = signal if validate is None else validate(_new(Candidate, (text, spans, names)), text, state)
                    if found is not None:
                        counts[found] = count = counts.get(found, 0) + 1
                        if count >= MAX_COUNT and found == signal:
                            break  # the signal is certain; more of them would only cost time (a dump of them)
                        pos = stop if stop > start else stop + 1
                    else:
                        # A rejected candidate may overlap a valid one that starts inside it: search on from
                        # its second byte, not from its end.
                        pos = start + 1
        if clock() > deadline:
            raise ScanTimeout
        return counts

    def _where(self, text: bytes, rows: list[int]) -> Iterable[tuple[int, Sequence[Sequence[int]]]]:
        """Each present row with the ranges of ``text`` its candidates lie in, in order.

        ``validate`` calls this above ``LOCALIZE_ABOVE`` bytes and for two rows or more; below, or for one
        row, it searches the whole text: one more pass would cost more than it saves. Here ``present`` runs
        again on blocks of lines (about ``LOCALIZE_BLOCK`` bytes, each ending just after a newline), and a
        row is searched only in the blocks where it occurs: in a 128 KB chat request with a few identifiers
        that is a few kilobytes per row instead of the whole body each. The result is the same because no
        row (nor trigger) can match a newline or the empty string, and ``^``/``$`` are multi-line
        (``tests/routing/test_classify_detectors.py`` checks all three on every row): every match lies
        inside one line, so inside one block, and at a block's edges a block read on its own looks exactly
        as it does inside the whole text (after or before a newline). The search inside a block sees the
        whole text around it, as before."""
        size = len(text)
        where: dict[int, list[list[int]]] = {}
        view = memoryview(text)  # no copies of the blocks
        lo = 0
        while lo < size:
            newline = text.find(b"\n", lo + LOCALIZE_BLOCK)
            hi = size if newline < 0 else newline + 1
            for index in self.present(view[lo:hi]):
                if index >= self.rows:
                    continue  # a marker
                ranges = where.get(index)
                if ranges is None:
                    where[index] = [[lo, hi]]
                elif ranges[-1][1] == lo or len(ranges) >= _MAX_RANGES:
                    ranges[-1][1] = hi  # adjacent blocks, or enough ranges kept (bounded memory): stretch the last
                else:
                    ranges.append([lo, hi])
            lo = hi
        return where.items()


def _line_end(text: bytes, at: int, end: int) -> int:
    """Where the line of ``text`` that holds ``at`` ends, its newline included; ``end`` at most."""
    newline = text.find(b"\n", at, end)
    return end if newline < 0 else newline + 1


class Words:
    """Context words (ASCII, matched in any case) that a validator looks for around a candidate: one RE2
    search of the window, where lower-casing a slice and testing each word in turn cost several times more
    (validators run on every candidate of every request with findings). A space in a phrase matches a run of
    spaces and tabs, as the rows' patterns do: normalisation keeps runs of spaces (a no-break space beside a
    space is two)."""

    __slots__ = ("_match",)

    def __init__(self, *words: bytes) -> None:
        phrases = [re.escape(word).replace(b"\\ ", rb"[ \t]+") for word in words]
        self._match = Regex(rb"(?i)(?:" + b"|".join(phrases) + rb")", re2_options(1 << 20))._match


def near(text: bytes, start: int, end: int, words: Words, window: int = 80) -> bool:
    """True when one of ``words`` occurs within ``window`` bytes of ``text[start:end]``."""
    return words._match(_UNANCHORED, text, max(0, start - window), min(len(text), end + window))[0][0] >= 0
