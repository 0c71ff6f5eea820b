"""Sensitivity classification of an OpenAI request body: a pure, synchronous function that fails closed.

``classify_request`` walks every string in the body (all messages and roles, string or list ``content``,
tool-call arguments, ``name`` fields, ``prompt``, embeddings ``input``, and anything else a client sent),
scans them once with the detector table (``routing.detectors``) and returns the level:
``max(declared, detected, floor)``. Signals carry a type and a count, never the matched text.

Fail closed: anything unexpected (a type that is not JSON, nesting deeper than any real request, more text
than any body the server accepts, an exception, running past ``deadline_s``) gives TOP SECRET with a
``classification_error`` or ``classification_timeout`` signal, so the router can only keep such a request
local or refuse it.
"""

from __future__ import annotations

import json
import time
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from routing.detectors import scanner
from routing.detectors_base import Scanner, ScanTimeout
from routing.levels import Level

__all__ = ["Classification", "Signal", "classify_request", "classify_text"]

MAX_DEPTH = 64  # OpenAI bodies nest about 6 deep; anything far deeper is not a real request
MAX_NODES = 1_000_000
MAX_TEXT_BYTES = 64 << 20  # far above the server's body limit; bounds what one classification holds
_clock = time.perf_counter
_SEPARATOR = b"\n\n"  # each string starts a new "document": banners at its start are at a line start

ERROR_SIGNAL = "classification_error"
TIMEOUT_SIGNAL = "classification_timeout"


@dataclass(frozen=True, slots=True)
class Signal:
    """One kind of finding and how many times it occurred (never the text itself)."""

    type: str
    count: int


@dataclass(frozen=True)
class Classification:
    """The classifier's verdict on one request."""

    level: Level  # max(declared, detected, floor)
    detected_level: Level  # from content alone
    declared_level: Level | None  # from the X-Sovereign-Classification header, already parsed
    signals: tuple[Signal, ...]  # sorted by type

    @property
    def local_only(self) -> bool:
        """True when the default policy keeps the request off commercial backends."""
        return self.level >= Level.OFFICIAL_SENSITIVE


class _Unscannable(Exception):
    """The body cannot be walked safely (foreign types, too deep, too large)."""


def _strings(body: Any) -> Iterable[str]:
    """Every string value in ``body``, in document order; JSON inside strings (tool arguments) decoded too."""
    stack: list[tuple[Any, int]] = [(body, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES or depth > MAX_DEPTH:
            raise _Unscannable
        if isinstance(node, str):
            yield node
            stripped = node.lstrip()
            if "\\" in node and stripped[:1] in ("{", "["):
                # Escapes such as \u0040 can hide an identifier from the raw scan; scan the decoded form too.
                try:
                    stack.append((json.loads(node), depth + 1))
                except ValueError:
                    pass
                except RecursionError:
                    raise _Unscannable from None
        elif isinstance(node, Mapping):
            # Keys too: clients put data in metadata keys as readily as in values.
            for key, value in reversed(list(node.items())):
                stack.append((value, depth + 1))
                if isinstance(key, str):
                    stack.append((key, depth + 1))
        elif isinstance(node, list | tuple):
            stack.extend((item, depth + 1) for item in reversed(node))
        elif node is None or isinstance(node, bool | int | float):
            continue  # token ids, temperatures, flags: nothing to read
        else:
            raise _Unscannable


def _encode(text: str) -> bytes:
    """UTF-8 bytes for RE2; NFKC first so full-width digits and letters match like ASCII ones."""
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    return text.encode("utf-8", "replace")  # lone surrogates become "?"


def _combine(declared: Level | None, detected: Level, floor: Level | None) -> Level:
    level = detected
    if declared is not None and declared > level:
        level = declared
    if floor is not None and floor > level:
        level = floor
    return level


def _failed(signal: str, declared: Level | None) -> Classification:
    return Classification(
        level=Level.TOP_SECRET,
        detected_level=Level.TOP_SECRET,
        declared_level=declared,
        signals=(Signal(signal, 1),),
    )


def _join(texts: Iterable[str]) -> bytes:
    pieces: list[bytes] = []
    size = 0
    for text in texts:
        piece = _encode(text)
        size += len(piece) + len(_SEPARATOR)
        if size > MAX_TEXT_BYTES:
            raise _Unscannable
        pieces.append(piece)
    return _SEPARATOR.join(pieces)


# The verdict when nothing is found, built once for every (declared, floor) pair: it is the common case, and
# building a frozen dataclass costs about as much as scanning a kilobyte. Classification is frozen, so sharing is safe.
_NOTHING_FOUND = {
    (declared, floor): Classification(_combine(declared, Level.OFFICIAL, floor), Level.OFFICIAL, declared, ())
    for declared in (None, *Level)
    for floor in (None, *Level)
}
_OFFICIAL = _NOTHING_FOUND[None, None]


def _nothing_found(declared: Level | None, floor: Level | None) -> Classification:
    if (declared is None or type(declared) is Level) and (floor is None or type(floor) is Level):
        return _NOTHING_FOUND[declared, floor]
    return Classification(_combine(declared, Level.OFFICIAL, floor), Level.OFFICIAL, declared, ())


# Signals with small counts, built once each (Signal is frozen): most findings are one or two of a kind.
_SMALL_COUNT = 16
_SIGNALS: dict[tuple[str, int], Signal] = {}


def _signal(signal: str, count: int) -> Signal:
    if count > _SMALL_COUNT:
        return Signal(signal, count)
    made = _SIGNALS.get((signal, count))
    if made is None:
        made = _SIGNALS[signal, count] = Signal(signal, count)  # signal types are the table's, so bounded
    return made


def _classify(buf: bytes, declared: Level | None, floor: Level | None, deadline: float) -> Classification:
    table = scanner()
    rows = table.present(buf)
    if not rows and declared is None and floor is None:  # the common case: no pattern occurs at all
        return _OFFICIAL
    return _verdict(table, table.validate(buf, rows, deadline) if rows else {}, declared, floor)


# Verdicts with findings, by (findings, declared, floor): the same few kinds and counts recur, and a verdict
# costs a microsecond or two to build. Bounded, and Classification is frozen, so sharing is safe.
_VERDICTS: dict[tuple[Any, ...], Classification] = {}
_MAX_VERDICTS = 4096


def _verdict(table: Scanner, counts: dict[str, int], declared: Level | None, floor: Level | None) -> Classification:
    if not counts:  # candidates, none of them valid
        return _OFFICIAL if declared is None and floor is None else _nothing_found(declared, floor)
    key = (*counts.items(), declared, floor)
    made = _VERDICTS.get(key)
    if made is not None:
        return made
    if len(counts) == 1:  # the next most common: one kind of finding
        ((signal, count),) = counts.items()
        detected = table.levels[signal]
        signals: tuple[Signal, ...] = (_signal(signal, count),)
    else:
        detected = max(map(table.levels.__getitem__, counts))
        signals = tuple([_signal(signal, counts[signal]) for signal in sorted(counts)])
    made = Classification(_combine(declared, detected, floor), detected, declared, signals)
    if len(_VERDICTS) < _MAX_VERDICTS:
        _VERDICTS[key] = made
    return made


def classify_request(
    body: Mapping[str, Any],
    *,
    declared: Level | None = None,
    floor: Level | None = None,
    deadline_s: float = 0.25,
) -> Classification:
    """Never raises. Any exception, or running past deadline_s, gives TOP_SECRET with signal
    "classification_error" / "classification_timeout" (fail closed)."""
    deadline = _clock() + deadline_s
    try:
        if not isinstance(body, Mapping):
            raise _Unscannable  # every OpenAI request body is a JSON object
        return _classify(_join(_strings(body)), declared, floor, deadline)
    except ScanTimeout:
        return _failed(TIMEOUT_SIGNAL, declared)
    except Exception:  # fail closed on anything at all; the message may hold prompt text, so it is dropped
        return _failed(ERROR_SIGNAL, declared)


def classify_text(
    text: str, *, declared: Level | None = None, floor: Level | None = None, deadline_s: float = 0.25
) -> Classification:
    """Classify one text (the CLI and tests); same rules and fail-closed behaviour as ``classify_request``."""
    deadline = _clock() + deadline_s
    try:
        buf = text.encode() if text.isascii() else _encode(text)  # not a str: AttributeError, failed below
        if len(buf) > MAX_TEXT_BYTES:
            raise _Unscannable
        return _classify(buf, declared, floor, deadline)
    except ScanTimeout:
        return _failed(TIMEOUT_SIGNAL, declared)
    except Exception:
        return _failed(ERROR_SIGNAL, declared)
