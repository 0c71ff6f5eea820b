"""Sensitivity classification of an OpenAI request body: a pure, synchronous function that fails closed.

``classify_request`` walks the whole body (every message and role, string or list ``content``, tool calls and
their arguments, ``name`` fields, tool schemas, ``prompt``, ``input``, ``instructions``, metadata, keys as well as
values, and numbers long enough to be identifiers), brings every string to one normalised form and scans the
views of ``routing.normalize`` with the detector table (``routing.detectors``): normalised, folded to ASCII
(non-ASCII text only), decoded (text carrying markup, escapes, base64 or JSON only), and each message's text
parts joined the way the model reads them. A signal's count is the most any one view found. The level is
``max(declared, detected, floor)``. Signals carry a type and a count, never the matched text.

Content the classifier cannot read (images, audio, video, files, token-id prompts and inputs, ``logit_bias``
token ids, prompt embeddings) makes the request at least OFFICIAL-SENSITIVE with an ``unscanned_<kind>`` signal;
``Classification.level_for`` gives the level for a backend whose configuration accepts some of those kinds.

Fail closed: anything unexpected (a type that is not JSON, nesting deeper than any real request, more objects
and arrays or more text than any real body holds, an exception, running past ``deadline_s`` while walking, decoding or
scanning) gives TOP SECRET with a ``classification_error`` or ``classification_timeout`` signal, so the router
can only keep such a request local or refuse it.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata, resources
from itertools import chain, pairwise
from typing import Any

from routing import names, normalize
from routing.detectors import scanner
from routing.detectors_base import Regex, Scanner, ScanTimeout, re2_options
from routing.levels import Level

__all__ = ["Classification", "Signal", "classifier_digest", "classify_request", "classify_text"]

MAX_DEPTH = 64  # OpenAI bodies nest about 6 deep; anything far deeper is not a real request
MAX_NODES = 1_000_000
# Objects and arrays: a 4 MiB body of tiny messages or content parts has about 130,000-230,000; one nested
# throughout ("[[[[...]]]]") can have two million, which the walk could not get through inside the deadline.
MAX_CONTAINERS = 300_000
MAX_TEXT_BYTES = 64 << 20  # far above the server's body limit; bounds what one classification holds
_CHECK_NODES = 4096  # the walk looks at the clock every this many nodes
_clock = time.perf_counter
_SEPARATOR = b"\n\n"  # each string starts a new "document": banners at its start are at a line start
_SEPARATOR_TEXT = _SEPARATOR.decode()

ERROR_SIGNAL = "classification_error"
TIMEOUT_SIGNAL = "classification_timeout"

# Kinds of content the classifier cannot read, and the signal each raises (OFFICIAL-SENSITIVE).
UNSCANNED_KINDS: tuple[str, ...] = ("image", "audio", "video", "file", "token_ids", "script")
_PART_KINDS = {
    "image_url": "image",
    "input_image": "image",
    "image": "image",
    "image_file": "image",
    "input_audio": "audio",
    "audio": "audio",
    "audio_url": "audio",
    "video_url": "video",
    "input_video": "video",
    "video": "video",
    "file": "file",
    "input_file": "file",
    "document": "file",
}
_PART_KEYS = {"image_url": "image", "input_audio": "audio", "video_url": "video", "file_data": "file"}
_PART_KEY_SET = frozenset(_PART_KEYS)
_TEXT_PARTS = frozenset({"text", "input_text", "output_text"})
# Top-level fields that hold token ids rather than text.
_TOKEN_FIELDS = ("prompt", "input")
_DATA_URL_KINDS = {"image": "image", "audio": "audio", "video": "video", "application": "file", "font": "file"}
_MIN_IDENTIFIER_INT = 100_000  # integers of six digits or more are scanned as text (identifiers in JSON numbers)


# Words in scripts the rules have no vocabulary for: Greek, Cyrillic, Armenian, Hebrew, Arabic (Urdu, Persian), the
# Indic scripts, Thai, Lao, Tibetan, Myanmar, Georgian, Hangul, Ethiopic, Khmer, Kana and Han. A name and a case
# written in them ("translate this letter from a prisoner's mother") cannot be told from a leaflet, so text with
# this many such letters, in runs of two or more (not a formula's single Greek letters), is content the classifier
# cannot read (kind "script"). Latin-script languages are read: their letters fold to ASCII for the name lists.
_OTHER_SCRIPT_WORD = re.compile(
    "[\u0370-\u03ff\u0400-\u052f\u0530-\u058f\u0590-\u05ff\u0600-\u08ff\u0900-\u0dff\u0e00-\u0fff"
    "\u1000-\u109f\u10a0-\u10ff\u1100-\u11ff\u1200-\u139f\u1780-\u17ff\u3040-\u30ff\u3100-\u318f"
    "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\ufb1d-\ufdff\ufe70-\ufeff]{2,}"
)
_OTHER_SCRIPT_LETTERS = 12
# Han, Kana and Hangul write a syllable or a whole word with one character ("张伟" is a name, "监狱" a prison): each
# counts as this many letters, so a short sentence in Chinese weighs what it would in Russian.
_SYLLABIC = re.compile("[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
_LETTERS_PER_SYLLABLE = 3
# ... unless the words around it say it is published material: a leaflet, a sign, a poster, a poem.
_PUBLISHED = Regex(
    rb"(?i)\b(?:(?:this|the|a|visitors?'?|door|foyer|welcome|warning)[ \t]+signs?[ \t]+(?:for|in|on|at|says|reads"
    rb"|translation|text)|signage|leaflets?|posters?|newsletters?|bulletins?|poems?|poetry|slogans?|greetings?"
    rb"|proverbs?|menus?|timetables?|notice[ \t]+board|wellbeing[ \t]+board|reading[ \t]+group|song|lyrics"
    rb"|(?:event|conference)[ \t]+programme|published[ \t]+by|fact[ \t]?sheets?)\b",
    re2_options(1 << 20),
)


def _in_another_script(texts: list[str], buf: bytes) -> bool:
    """At least ``_OTHER_SCRIPT_LETTERS`` letters of scripts the rules cannot read, across ``texts``, and no word
    in their normalised buffer ``buf`` that says they are published material."""
    letters = 0
    look_alike = normalize.confusables()
    for text in texts:
        if text.isascii():
            continue
        for word in _OTHER_SCRIPT_WORD.finditer(text):
            if all(ord(ch) in look_alike for ch in word.group()):
                continue  # Cyrillic or Greek letters standing in for Latin ones ("Рrоѕzę"): read as Latin
            letters += word.end() - word.start()
            if letters < _OTHER_SCRIPT_LETTERS and word.group()[0] >= "\u3040":
                letters += (_LETTERS_PER_SYLLABLE - 1) * len(_SYLLABIC.findall(word.group()))
            if letters >= _OTHER_SCRIPT_LETTERS:
                return not _PUBLISHED.found(buf)
    return False


def unscanned_signal(kind: str) -> str:
    return f"unscanned_{kind}"


_UNSCANNED_LEVELS = {unscanned_signal(kind): Level.OFFICIAL_SENSITIVE for kind in UNSCANNED_KINDS}


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
    # Kinds of content that could not be read, and the level without them (declared and floor included).
    unscanned: frozenset[str] = field(default=frozenset())
    readable_level: Level | None = None

    @property
    def local_only(self) -> bool:
        """True when the default policy keeps the request off commercial backends."""
        return self.level >= Level.OFFICIAL_SENSITIVE

    def level_for(self, accepts_unscanned: frozenset[str]) -> Level:
        """The level for a backend whose configuration accepts these unscanned kinds: the readable content's
        level when every unscanned kind is accepted, else ``level``."""
        if self.unscanned and self.readable_level is not None and self.unscanned <= accepts_unscanned:
            return self.readable_level
        return self.level


class _Unscannable(Exception):
    """The body cannot be walked safely (foreign types, too deep, too large)."""


class _Deadline:
    """The caller's deadline, checked between steps; raises ``ScanTimeout`` once it has passed."""

    __slots__ = ("at",)

    def __init__(self, seconds: float) -> None:
        self.at = _clock() + seconds

    def check(self) -> None:
        if _clock() > self.at:
            raise ScanTimeout


@dataclass
class _Body:
    """What the walk found: the strings to scan (in document order) and the kinds it could not read."""

    texts: list[str] = field(default_factory=list)
    unscanned: dict[str, int] = field(default_factory=dict)  # kind -> parts of that kind
    data_urls: set[str] = field(default_factory=set)  # kinds of data: URLs seen in strings (often inside a part)

    def cannot_read(self, kind: str) -> None:
        self.unscanned[kind] = self.unscanned.get(kind, 0) + 1


def _walk(body: Mapping[str, Any], deadline: _Deadline) -> _Body:
    """Every string of ``body`` (keys too), long integers as text, joined text parts, unreadable parts."""
    found = _Body()
    texts = found.texts
    unread: set[str] = set()  # top-level fields that hold no text: not walked
    for key in _TOKEN_FIELDS:
        if _holds_token_ids(body.get(key)):
            found.cannot_read("token_ids")
            unread.add(key)
    for key in ("logit_bias", "prompt_embeds"):
        if body.get(key):
            found.cannot_read("token_ids")
            unread.add(key)
    if unread:
        texts.extend(unread)  # the keys themselves, as every key is scanned
        body = {key: value for key, value in body.items() if key not in unread}
    # The body's own numbers are parameters (seed, max_tokens): not walked.
    _note_parts(body, found)
    top: list[Any] = []
    for key, value in body.items():
        if type(key) is str:
            top.append(key)
        if type(value) is not int:
            top.append(value)
    # Depth first, in document order, with a stack of iterators (one per open container): a leaf costs one step of
    # its container's iterator, not a push and a pop. Each container is charged for its children as it is
    # entered (a dict's keys and values), and for itself: a container costs the walk several times what a leaf
    # does, so objects and arrays have a budget of their own.
    nodes = len(top)
    if nodes > MAX_NODES:
        raise _Unscannable
    containers = 0
    check_at = _CHECK_NODES
    stack: list[tuple[Iterator[Any], int]] = [(iter(top), 1)]
    while stack:
        children, depth = stack[-1]
        for node in children:
            kind_of_node = type(node)
            if kind_of_node is str:
                texts.append(node)
                if "base64," in node:
                    _data_urls(node, found)
                continue
            if kind_of_node is dict or (
                kind_of_node is not list and kind_of_node is not int and isinstance(node, Mapping)
            ):
                if not node:
                    continue
                if "type" in node or not _PART_KEY_SET.isdisjoint(node):
                    _note_parts(node, found)
                nodes += 2 * len(node)  # keys too: clients put data in metadata keys as readily as in values
                inner: Iterator[Any] = chain.from_iterable(node.items())
            elif kind_of_node is list or isinstance(node, tuple):
                if not node:
                    continue
                nodes += len(node)
                if len(node) > 1:
                    if all(type(item) is str for item in node):  # a list of strings (input, stop): no descent
                        if nodes > MAX_NODES:
                            raise _Unscannable
                        listed = normalize.short_list_text(node)
                        if listed is not None:
                            texts.append(listed)  # a list of values as it reads ("enum": [...])
                        else:
                            texts.extend(node)
                        continue
                    texts.extend(_joined_text_parts(node))
                    texts.extend(_message_seams(node))
                inner = iter(node)
            elif kind_of_node is int:
                if abs(node) >= _MIN_IDENTIFIER_INT:
                    texts.append(str(node))
                continue
            elif node is None or kind_of_node is bool or kind_of_node is float:
                continue
            elif isinstance(node, str):  # a str subclass
                texts.append(str(node))
                continue
            elif isinstance(node, int) and not isinstance(node, bool):
                if abs(node) >= _MIN_IDENTIFIER_INT:
                    texts.append(str(int(node)))
                continue
            else:
                raise _Unscannable
            # A container to descend into; this container's iterator resumes after it.
            containers += 1
            if depth >= MAX_DEPTH or containers > MAX_CONTAINERS:
                raise _Unscannable
            if nodes >= check_at:
                if nodes > MAX_NODES:
                    raise _Unscannable
                check_at = nodes + _CHECK_NODES
                deadline.check()
            stack.append((inner, depth + 1))
            break
        else:
            stack.pop()
    for kind in found.data_urls - found.unscanned.keys():
        found.cannot_read(kind)
    return found


def _note_parts(node: Mapping[str, Any], found: _Body) -> None:
    """A content part the classifier cannot read (an image, audio, a file), by its ``type`` or its keys."""
    kind = node.get("type")
    if type(kind) is str and kind in _PART_KINDS:
        found.cannot_read(_PART_KINDS[kind])
    elif not _PART_KEY_SET.isdisjoint(node):
        for key, part in _PART_KEYS.items():
            if node.get(key):
                found.cannot_read(part)
                break


def _holds_token_ids(value: Any) -> bool:
    """``prompt`` or ``input`` given as token ids: a list of integers, or a list of such lists."""
    if not isinstance(value, list) or not value:
        return False
    first = value[0]
    if isinstance(first, list):
        return any(isinstance(item, list) and any(type(t) is int for t in item) for item in value)
    return any(type(t) is int for t in value)


def _joined_text_parts(parts: list[Any] | tuple[Any, ...]) -> list[str]:
    """A message's text parts as the model may read them, when it has two or more: concatenated (a word or a
    number split between parts), and, where a part ends with a letter and the next starts with a capital, with a
    space there too (a name split at a word: "... for Gwenllian" and "Ap Dafydd ..."; clients and chat templates
    differ on what they put between parts)."""
    texts = [
        p["text"]
        for p in parts
        if isinstance(p, Mapping) and p.get("type") in _TEXT_PARTS and isinstance(p.get("text"), str)
    ]
    if len(texts) < 2:
        return []
    joined = "".join(texts)
    pieces = [texts[0]]
    for before, text in pairwise(texts):
        if before[-1:].isalpha() and (text[:1].isupper() or text.split(" ", 1)[0] in names.PARTICLES):
            pieces.append(" ")
        pieces.append(text)
    spaced = "".join(pieces)
    return [joined] if spaced == joined else [joined, spaced]


# How much of each side of a seam between two messages is read together: an identifier (at most 20 characters
# with its spacing) and the label before it ("his NHS number is").
_SEAM_CHARS = 48


def _message_text(item: Any) -> str | None:
    """A message's text (``content`` as a string, or its text parts concatenated), or None for anything else."""
    if not isinstance(item, Mapping) or "role" not in item:
        return None
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [p.get("text") for p in content if isinstance(p, Mapping) and p.get("type") in _TEXT_PARTS]
        return "".join(t for t in texts if isinstance(t, str)) or None
    return None


def _message_seams(items: list[Any] | tuple[Any, ...]) -> list[str]:
    """Where one message of a conversation ends in a letter or digit and the next starts with a digit or a
    capital, the end of the first and the start of the second joined by a space: a number sent in two messages
    as people type them ("his NHS number is 943 476", then "5919 sorry"). Each seam is scanned as a text of its
    own, so nothing else is joined across messages."""
    seams: list[str] = []
    previous: str | None = None
    for item in items:
        # (the common message first, in the fewest steps: a body may hold a hundred thousand of them)
        text = item.get("content") if type(item) is dict and "role" in item else None
        if type(text) is not str:
            text = _message_text(item)
            if text is None:
                previous = None
                continue
        if previous:
            last = previous[-1]
            if last.isspace():
                last = previous.rstrip()[-1:]
            if last.isalnum():
                first = text[:1]
                if first.isspace():
                    first = text.lstrip()[:1]
                if first.isdigit() or first.isupper():
                    seams.append(previous.rstrip()[-_SEAM_CHARS:] + " " + text.lstrip()[:_SEAM_CHARS])
        previous = text
    return seams


def _data_urls(text: str, found: _Body) -> None:
    """``data:image/png;base64,...`` inside a string: an image (or audio, video, file) the model would see."""
    pos = text.find("data:")
    while pos >= 0:
        media = text[pos + 5 : pos + 5 + 64].split(";", 1)[0].split("/", 1)[0].lower()
        kind = _DATA_URL_KINDS.get(media)
        if kind is not None:
            found.data_urls.add(kind)
        pos = text.find("data:", pos + 5)


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


def _encode(texts: list[str], check: Callable[[], None] = lambda: None) -> tuple[bytes, list[str]]:
    """The normalised view of ``texts`` as one buffer (UTF-8), and the folded view of its non-ASCII ones;
    ``check`` (the deadline's) is called as long non-ASCII texts are normalised.

    ASCII strings go in as they are: their line breaks and control characters are normalised only when the
    first pass finds any (``_scan``), which saves a pass over the common text that has none."""
    joined = _SEPARATOR_TEXT.join(texts)
    if len(joined) > MAX_TEXT_BYTES:
        raise _Unscannable
    if joined.isascii():  # the usual case: one C pass, however many strings
        return joined.encode(), []
    pieces: list[bytes] = []
    folded: list[str] = []
    size = 0
    for text in texts:
        if text.isascii():
            piece = text.encode()
        else:
            # lone surrogates become "?"
            piece, folded_text = normalize.normalise_and_fold_in_pieces(text.encode("utf-8", "replace"), check)
            if folded_text is not None:
                folded.append(folded_text)
        size += len(piece) + len(_SEPARATOR)
        if size > MAX_TEXT_BYTES:
            raise _Unscannable
        pieces.append(piece)
    return _SEPARATOR.join(pieces), folded


_CONTROL = normalize.CONTROL
_DECODE = normalize.DECODE
_BINARY = normalize.BINARY
_REJOIN = normalize.REJOIN


def _scan(
    table: Scanner, buf: bytes, deadline: _Deadline, found: list[int] | None = None
) -> tuple[dict[str, int], bytes | None]:
    """The signals in ``buf`` (normalising its line breaks and control characters first if it has any), and
    the normalised buffer again when it carries something for the decoded view to read (else None).
    ``found``: what ``table.present(buf)`` returned, when the caller has it already."""
    if found is None:
        found = table.present(buf)
    if not found:
        return {}, None
    rows = table.rows
    if max(found) < rows:  # no marker: the usual case of a text with findings
        return table.validate(buf, found, deadline.at), None
    if rows + _CONTROL in found:  # \r, \f, NUL...: normalise (safe on UTF-8: no byte of a sequence is < 0x80)
        buf = normalize.normalise_ascii(buf)
        found = table.present(buf)
    counts = table.validate(buf, found, deadline.at)
    if rows + _REJOIN in found:  # identifiers broken by a line break or spaced out: read them whole
        _merge(counts, table.scan(normalize.rejoined(buf), deadline.at) or {})
    if rows + _BINARY in found:  # files, images, sounds in base64: counted as content that cannot be read
        for kind in normalize.binary_kinds(buf):
            counts[unscanned_signal(kind)] = 1
    return counts, (buf if rows + _DECODE in found else None)


def _scan_views(
    table: Scanner, buf: bytes, folded: list[str], deadline: _Deadline, found: list[int] | None = None
) -> dict[str, int]:
    """Scan every view of the text in ``buf`` (normalised, UTF-8) and ``folded`` (its non-ASCII strings folded
    to ASCII); each signal counts as often as the view that found it most often.

    The decoded view is made from the normalised text (from the folded one only when that alone carries markup):
    its own folded view is the folded text decoded, so decoding both would read everything twice."""
    counts, encoded = _scan(table, buf, deadline, found)
    if folded:
        deadline.check()
        more, folded_encoded = _scan(table, "\n\n".join(folded).encode(), deadline)
        _merge(counts, more)
        encoded = encoded if encoded is not None else folded_encoded
    if encoded is not None:
        deadline.check()
        decoded, folded_decoded = normalize.decode_and_fold(encoded, deadline.check)
        deadline.check()
        decoded_buf = decoded.encode("utf-8", "replace")
        more, _ = _scan(table, decoded_buf, deadline)
        _merge(counts, more)
        if not decoded_buf.isascii() and _in_another_script([decoded], decoded_buf):  # "\u041c\u0456\u0439 ..."
            counts[unscanned_signal("script")] = 1
        if folded_decoded is not None:
            more, _ = _scan(table, folded_decoded.encode(), deadline)
            _merge(counts, more)
    return counts


def _merge(into: dict[str, int], more: dict[str, int]) -> None:
    for signal, count in more.items():
        if count > into.get(signal, 0):
            into[signal] = count


def _classify(
    texts: list[str],
    unscanned: Mapping[str, int],
    declared: Level | None,
    floor: Level | None,
    deadline: _Deadline,
    buf: bytes | None = None,
    found: list[int] | None = None,
) -> Classification:
    """``buf`` and ``found``: the normalised buffer of ``texts`` and what the first pass found in it, when the
    caller has them already (``classify_text``'s ASCII path)."""
    table = scanner()
    if buf is None:
        buf, folded = _encode(texts, deadline.check)
    else:
        folded = []
    counts = _scan_views(table, buf, folded, deadline, found)
    if not buf.isascii() and _in_another_script(texts, buf):
        unscanned = {**unscanned, "script": 1}
    encoded = [signal for signal in counts if signal in _UNSCANNED_LEVELS]
    if encoded:  # base64 files in the text: unreadable content like an image part (level_for may accept them)
        unscanned = dict(unscanned)
        for signal in encoded:
            kind = signal.removeprefix("unscanned_")
            unscanned[kind] = max(unscanned.get(kind, 0), counts.pop(signal))
    if not unscanned:
        return _verdict(counts, declared, floor)
    readable = _verdict(counts, declared, floor)
    for kind, n in unscanned.items():
        counts[unscanned_signal(kind)] = n
    verdict = _verdict(counts, declared, floor)
    return Classification(
        verdict.level,
        verdict.detected_level,
        declared,
        verdict.signals,
        unscanned=frozenset(unscanned),
        readable_level=readable.level,
    )


# Verdicts with findings, by (findings, declared, floor): the same few kinds and counts recur, and a verdict
# costs a microsecond or two to build. Bounded, and Classification is frozen, so sharing is safe.
_VERDICTS: dict[tuple[Any, ...], Classification] = {}
_MAX_VERDICTS = 4096


@cache
def _levels() -> dict[str, Level]:
    """Every signal's level: the detector table's and the unscanned kinds'."""
    return {**scanner().levels, **_UNSCANNED_LEVELS}


def _verdict(counts: dict[str, int], declared: Level | None, floor: Level | None) -> Classification:
    if not counts:  # candidates, none of them valid
        return _OFFICIAL if declared is None and floor is None else _nothing_found(declared, floor)
    key = (*counts.items(), declared, floor)
    made = _VERDICTS.get(key)
    if made is not None:
        return made
    detected = max(map(_levels().__getitem__, counts))
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
    deadline = _Deadline(deadline_s)
    try:
        if not isinstance(body, Mapping):
            raise _Unscannable  # every OpenAI request body is a JSON object
        found = _walk(body, deadline)
        deadline.check()
        return _classify(found.texts, found.unscanned, declared, floor, deadline)
    except ScanTimeout:
        return _failed(TIMEOUT_SIGNAL, declared)
    except Exception:  # fail closed on anything at all; the message may hold prompt text, so it is dropped
        return _failed(ERROR_SIGNAL, declared)


def _first_present(buf: bytes) -> list[int]:
    """``scanner().present``, bound to ``_present`` on first use (the table is compiled then, not at import)."""
    global _present
    _present = scanner().present
    return _present(buf)


_present: Callable[[bytes], list[int]] = _first_present


def classify_text(
    text: str, *, declared: Level | None = None, floor: Level | None = None, deadline_s: float = 0.25
) -> Classification:
    """Classify one text (the CLI and tests); same views, rules and fail-closed behaviour as ``classify_request``."""
    try:
        # The common case first, in the fewest steps when no pattern occurs at all: each costs about as much as
        # scanning ten bytes, and most texts are a few kilobytes.
        if text.isascii() and len(text) <= MAX_TEXT_BYTES:
            buf = text.encode()
            found = _present(buf)
            if not found:
                return _OFFICIAL if declared is None and floor is None else _nothing_found(declared, floor)
            table = scanner()
            if max(found) < table.rows:  # findings, and nothing for another view: one view, one second pass
                return _verdict(table.validate(buf, found, _clock() + deadline_s), declared, floor)
            return _classify([text], {}, declared, floor, _Deadline(deadline_s), buf, found)
        if len(text) > MAX_TEXT_BYTES:
            raise _Unscannable
        return _classify([text], {}, declared, floor, _Deadline(deadline_s))
    except ScanTimeout:
        return _failed(TIMEOUT_SIGNAL, declared)
    except Exception:  # not a str, or anything else: fail closed
        return _failed(ERROR_SIGNAL, declared)


# Texts that take every view's first-use costs: the decoded view (HTML, entities, percent-escapes, an encoded word,
# a base64 part, embedded JSON), the folded view and the name lists (diacritics, other scripts), and the validators
# whose libraries load data on first use (phone numbers, check digits, dates). Made up; the phone numbers are
# Ofcom's drama ranges.
_WARM_UP_BODY = {
    "messages": [
        {"role": "system", "content": "<p><b>OFFICIAL&#8209;SENSITIVE</b></p> %41 =?utf-8?B?U0VDUkVU?="},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Zo\u00eb N\u00ed Bhriain, born 12/03/1990, NHS 943 476 5919, \u0141ukasz"},
                {"type": "text", "text": "Call 07700 900123 or 0113 496 0000; prisoner A1234BC, CRN X123456"},
            ],
        },
        {
            "role": "user",
            "content": "Content-Transfer-Encoding: base64\n\n"
            "U0VDUkVUIGJyaWVmaW5nIG9uIEpvaG4gU21pdGgsIE5IUyA5NDMgNDc2IDU5MTkK",
        },
        {"role": "user", "content": '{"name": "\u041c\u0430\u0440\u0438\u044f", "dob": "1990-03-12"}\r\n'},
    ]
}


def warm() -> None:
    """Compile the detector table and pay every view's first-use costs now, outside any request's deadline: a
    cold first classification (the table's compile, lazily built tables, libraries' data) takes longer than the
    250 ms deadline on a busy host and fails closed as TOP SECRET. The server calls this before it takes
    traffic, ``sovereign classify`` before its first input."""
    classify_request(_WARM_UP_BODY, deadline_s=60)


_DIGEST_MODULES = (
    "classify.py",
    "normalize.py",
    "detectors.py",
    "detectors_base.py",
    "markings.py",
    "names.py",
    "phones.py",
    "tables.py",
    "levels.py",
)
_DIGEST_DATA = ("first_names.txt", "surnames.txt", "common_words.txt")
_DIGEST_PACKAGES = ("google-re2", "python-stdnum", "phonenumbers", "anyascii", "confusable-homoglyphs")


@cache
def classifier_digest() -> str:
    """SHA-256 naming the classifier that takes a decision: the detector table's and normalisation's source,
    the shipped name lists, the normalisation version and the versions of the libraries they call."""
    digest = hashlib.sha256(normalize.NORMALISATION_VERSION.encode())
    package = resources.files("routing")
    for name in _DIGEST_MODULES:
        digest.update(name.encode() + b"\0" + package.joinpath(name).read_bytes())
    for name in _DIGEST_DATA:
        digest.update(name.encode() + b"\0" + package.joinpath("data", name).read_bytes())
    for dist in _DIGEST_PACKAGES:
        digest.update(f"{dist}=={metadata.version(dist)}".encode())
    return digest.hexdigest()
