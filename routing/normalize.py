"""One normalisation step for every string, and the views of a text that the detector table scans.

Text arrives as documents carry it: Windows and PDF line breaks, Word's dashes and spaces, invisible format
characters, look-alike letters from other scripts, HTML, JSON pasted into prose, base64 MIME parts. The
detectors (``routing.detectors``, ``routing.markings``) are ASCII patterns over bytes, so every string is first
brought to one canonical form, and the few encodings that hide text entirely are decoded into a second form:

- **normalised** (``normalise``): every line break (CR LF, CR, form feed, vertical tab, NEL, U+2028/2029) is
  ``\\n``; ASCII control characters, Unicode format characters (zero-width space and joiners, word joiner, soft
  hyphen, bidi controls, BOM, tag characters), variation selectors and invisible fillers are removed; dashes
  are ``-``, curly quotes straight, spaces of every width a space (the detectors' patterns take runs of spaces,
  so they are not folded: that would cost a pass over every text); NFKC folds
  compatibility forms (full-width letters, ligatures, mathematical alphanumerics); letters of other scripts
  that look Latin (Cyrillic ``С``, Greek ``ο``: the confusables of Unicode TR39, from ``confusable_homoglyphs``)
  become the Latin letter they imitate.
- **folded** (``fold``): the normalised text with its Latin letters folded to ASCII (``anyascii``'s
  transliterations): ``Zoë`` is ``Zoe``, ``Łukasz`` is ``Lukasz``, combining marks go; currency signs stay as they
  are (``£`` is no letter). Only text that folding changes has one: a text whose only non-ASCII characters are
  bullets, ticks, pound signs or another script's letters would be scanned twice for nothing.
- **decoded** (``decode``): HTML and XML tags (block tags become line breaks, inline tags vanish) and character
  entities, percent-escapes, quoted-printable and base64 runs that decode to text, and JSON found anywhere in a
  string (its scalars written out as ``key: value`` lines, so a ``"classification": "SECRET"`` pair reads as a
  label). Only text that carries such an encoding (``needs_decoding``) has one.
- **rejoined** (``rejoined``): identifiers that a line break or spacing breaks up, read whole (a PDF column's wrap
  after a label, an OCR'd form's boxes a character at a time), and lines with file names whose words are joined by
  underscores, with spaces for them. Only text with the REJOIN marker has one, a few lines long.

A message's text parts joined the way the model reads them is the fourth view; ``routing.classify`` builds it,
since it is about the request's shape, not about one string.

Everything here runs in time linear in its input: RE2 for patterns, the standard library's decoders, bounded
attempts at JSON. ``check`` is called between steps with the caller's deadline.
"""

from __future__ import annotations

import binascii
import html
import json
import quopri
import re
import unicodedata
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import cache
from importlib import resources
from itertools import accumulate, pairwise
from typing import Any

from anyascii import anyascii

from routing.detectors_base import Regex, re2_options
from serving.thirdparty import re2_extension

_re2 = re2_extension()  # re2._re2, at the version it was written for (serving/thirdparty.py)

__all__ = [
    "MARKERS",
    "NORMALISATION_VERSION",
    "decode",
    "decode_and_fold",
    "fold",
    "needs_decoding",
    "needs_decoding_bytes",
    "normalise",
    "normalise_and_fold_in_pieces",
    "normalise_and_fold_utf8",
    "normalise_ascii",
]

# Bumped whenever what these functions produce changes; part of the classifier's digest (routing.classify).
NORMALISATION_VERSION = "2026-12-08.1"

_LINE_BREAKS = "\r\x0b\x0c\x85\u2028\u2029"
# ASCII: line breaks to \n, other control characters (NUL, ESC, DEL...) removed; tab and \n kept.
_ASCII_TABLE = bytes(range(256)).translate(bytes.maketrans(b"\r\x0b\x0c", b"\n\n\n"))
_ASCII_DELETE = bytes(c for c in range(32) if c not in (9, 10, 11, 12, 13)) + b"\x7f"

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
Spans = Sequence[tuple[int, int]]  # what RE2 gives for a match: (start, end) per group


_PATTERNS: dict[Regex, bytes] = {}  # the pattern of each of this module's regexes


def _regex(pattern: bytes) -> Regex:
    regex = Regex(pattern, re2_options(16 << 20))
    _PATTERNS[regex] = pattern
    return regex


_NON_ASCII_RUN = _regex(rb"[\x00-\x7f]?[\x80-\xff]+")
_INVISIBLE_LO = (0x115F, 0x1160, 0x3164, 0xFFA0, 0x034F, 0x180B, 0x180C, 0x180D, 0x180E, 0x180F, 0x2800)


# ASCII maps to itself in both translation tables. str.translate copies a character that a dict table lacks,
# but only after the lookup has raised and cleared a KeyError (about 0.1 us), and half the characters it sees
# are ASCII: each run starts with the ASCII character before it, and runs are joined by NUL (``_map_runs``).
# Same output, about a third of the time. The rest of the Basic Multilingual Plane maps to itself too, for the
# same reason: a page of Cyrillic, Arabic or Han goes through the tables a third faster (about 5 MB each).
_ASCII_IDENTITY = {cp: cp for cp in range(0x80)}


def _with_identity(table: dict[int, str | int | None]) -> dict[int, str | int | None]:
    """``table`` with every other character of the Basic Multilingual Plane (not surrogates) mapped to itself."""
    for cp in (*range(0x80, 0xD800), *range(0xE000, 0x10000)):
        table.setdefault(cp, cp)
    table.update(_ASCII_IDENTITY)
    return table


@cache
def _unicode_table() -> dict[int, str | int | None]:
    """str.translate table for non-ASCII text: breaks, invisibles, dashes, spaces, quotes, confusables."""
    table: dict[int, str | int | None] = {}
    # Planes 0 and 1 hold every line break, space, dash, quote and all but a few format characters; plane 14
    # holds the tag characters and the supplementary variation selectors.
    for cp in (*range(0x80, 0xD800), *range(0xE000, 0x20000), *range(0xE0000, 0xE01F0)):
        ch = chr(cp)
        category = unicodedata.category(ch)
        if category == "Cf" or cp in _INVISIBLE_LO or (category == "Mn" and _is_selector(cp)):
            table[cp] = None
        elif category == "Pd" or cp in (0x2212, 0x2043, 0xFE63, 0xFF0D):
            table[cp] = "-"
        elif category == "Zs":
            table[cp] = " "
        elif category in ("Pi", "Pf") or cp in (0x201A, 0x201E, 0x2032, 0x2033, 0xFF02, 0xFF07):
            table[cp] = '"' if ch in "\u201c\u201d\u201e\u201f\u00ab\u00bb\u2033\uff02" else "'"
        elif category in ("Zl", "Zp") or ch in _LINE_BREAKS:
            table[cp] = "\n"
        elif 0x300 <= cp < 0x370:  # a combining diacritic that NFKC could not compose with its letter: noise
            table[cp] = None
    table.update(confusables())
    # Digits of other scripts (Arabic-Indic, Devanagari, Bengali...), which NFKC leaves as they are: their value, so
    # that a number written in them reads as the identifier it is (after the confusables, which map a few of them
    # to the Latin letter they resemble).
    for cp in range(0x80, 0x20000):
        if unicodedata.category(chr(cp)) == "Nd":
            table[cp] = str(unicodedata.decimal(chr(cp)))
    return _with_identity(table)


def _is_selector(cp: int) -> bool:
    return 0xFE00 <= cp <= 0xFE0F or 0xE0100 <= cp <= 0xE01EF or cp == 0x034F


_IDENTIFIER_PUNCTUATION = frozenset("/.:@")


@cache
def confusables() -> dict[int, str]:
    """Non-ASCII characters that Unicode's confusables data (TR39) says look like one ASCII letter, digit or
    identifier mark, and the one they look like."""
    data = json.loads(resources.files("confusable_homoglyphs").joinpath("confusables.json").read_text("utf-8"))
    mapping: dict[int, str] = {}
    for char, glyphs in data.items():
        if len(char) != 1 or char.isascii():
            continue
        if not char.isalpha():
            # punctuation that identifiers and addresses are written with: "2019\u22150482913U" (a division slash)
            marks = [g["c"] for g in glyphs if g["c"] in _IDENTIFIER_PUNCTUATION]
            if marks and unicodedata.category(char)[0] in "PS":
                mapping[ord(char)] = marks[0]
            continue
        latin = [g["c"] for g in glyphs if len(g["c"]) == 1 and g["c"].isascii() and g["c"].isalnum()]
        letters = [c for c in latin if c.isalpha()]
        if letters:  # prefer a letter of the same case
            same_case = [c for c in letters if c.isupper() == char.isupper()]
            latin_letter = (same_case or letters)[0]
            # TR39's prototype for the I/l/1 family is "l"; a capital that looks like it reads as "I".
            mapping[ord(char)] = "I" if latin_letter == "l" and char.isupper() else latin_letter
        elif latin:
            mapping[ord(char)] = latin[0]
    return mapping


def warm() -> None:
    """Build the translation tables now (a tenth of a second) rather than inside the first request's deadline."""
    _unicode_table()
    _fold_table()


def normalise_ascii(data: bytes) -> bytes:
    """ASCII (or UTF-8) bytes with every line break as \n and other control characters removed. A Windows line
    break (CR LF) is one break, not two: a quoted-printable soft break (``=`` CR LF) and rules that read the next
    line ("Sort code: ..." then "Account: ...") see the lines as the document has them."""
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    return data.translate(_ASCII_TABLE, _ASCII_DELETE)


def normalise(text: str) -> str:
    """The normalised view of ``text`` (see the module docstring)."""
    if text.isascii():
        return normalise_ascii(text.encode()).decode()
    return normalise_utf8(text.encode("utf-8", "replace")).decode("utf-8", "replace")  # lone surrogates: "?"


def normalise_utf8(data: bytes) -> bytes:
    """``normalise`` on UTF-8 bytes. NFKC and str.translate with a dict cost tens of nanoseconds a character, so
    only the runs of non-ASCII characters (each with the character before it, which a combining mark composes
    with) go through them; RE2 finds the runs."""
    return normalise_ascii(_map_runs(data, _normalise_runs))


def normalise_and_fold_utf8(data: bytes) -> tuple[bytes, str | None]:
    """``normalise_utf8(data)`` and, when folding changes that (``_folded_view``), ``fold`` of it, from one cut of
    ``data`` into runs (``_split_runs``), where the two calls would cut twice and fold would decode and encode the
    whole text again.

    ``fold`` of the normalised text is its ASCII text as it is and each converted run folded. Folding, like
    normalising, changes only non-ASCII runs, each taken with the character before it, and gives the same when
    the pieces it is given are cut before any other ASCII character (``_map_runs``: normalisation never composes
    across one); each converted run starts with the ASCII character its run started with (or that character
    composed with the marks after it), so cutting the normalised text at the runs' starts is such a cut. Unless
    ``normalise_ascii``, the last step, removed or changed a control character (NUL among them), which may join
    what the cut kept apart: then the normalised text is folded as ``fold`` does it."""
    if data.isascii():
        return normalise_ascii(data), None
    if b"\0" in data:
        normalised = normalise_utf8(data)
        return normalised, None if normalised.isascii() else _folded_view(normalised.decode("utf-8", "replace"))
    if len(data) - len(data.translate(None, _NON_ASCII_BYTES)) > len(data) // _DENSE:
        return _normalise_and_fold_whole(data)
    parts = _split_runs(data)
    converted = _normalise_runs(b"\0".join(parts[1::2]).decode("utf-8", "replace"))  # the runs, joined by NUL
    runs = converted.encode("utf-8", "replace").split(b"\0")
    if len(runs) != len(parts) // 2:
        raise ValueError("a conversion changed the number of runs")
    parts[1::2] = runs
    joined = b"".join(parts)
    normalised = normalise_ascii(joined)
    if normalised.isascii():
        return normalised, None
    if normalised != joined:
        return normalised, _folded_view(normalised.decode("utf-8", "replace"))
    folded_converted = _fold_runs(converted)
    if folded_converted == converted:  # the ASCII text around the runs is the same in both
        return normalised, None
    folded_runs = folded_converted.split("\0")
    if len(folded_runs) != len(runs):
        raise ValueError("a conversion changed the number of runs")
    pieces: list[str] = [text.decode("ascii") for text in parts[0::2]]
    folded = [""] * len(parts)
    folded[0::2] = pieces
    folded[1::2] = folded_runs
    return normalised, "".join(folded)


# Non-ASCII text is normalised in pieces of about this many bytes, with the deadline checked between them: a page
# of accented letters normalises at a few MB/s, so a body of it near the server's limit would otherwise hold the
# caller for most of a second before the deadline is looked at.
_NORMALISE_PIECE = 128 << 10


def normalise_and_fold_in_pieces(data: bytes, check: Callable[[], None]) -> tuple[bytes, str | None]:
    """``normalise_and_fold_utf8(data)``, in pieces cut after a line break (else a space, else any ASCII
    byte) with ``check`` called after each. Normalisation never composes across an ASCII character, and a cut
    after a line feed keeps a CR LF whole, so the pieces give what the whole would (a combining mark that opens a
    piece stays, where after an ASCII letter it would have been removed)."""
    if len(data) <= _NORMALISE_PIECE:
        return normalise_and_fold_utf8(data)
    normalised: list[bytes] = []
    folded: list[str] = []
    any_folded = False
    start = 0
    while start < len(data):
        end = start + _NORMALISE_PIECE
        if end < len(data):
            cut = data.rfind(b"\n", start, end) + 1  # after a line feed (0 when there is none)
            if cut <= start:
                cut = data.rfind(b" ", start, end)  # before a space
            if cut <= start:
                cut = end  # before the next ASCII byte
                while cut < len(data) and data[cut] >= 0x80:
                    cut += 1
            end = cut
        piece, piece_folded = normalise_and_fold_utf8(data[start:end])
        normalised.append(piece)
        if piece_folded is None:
            folded.append(piece.decode("utf-8", "replace"))
        else:
            folded.append(piece_folded)
            any_folded = True
        start = end
        check()
    return b"".join(normalised), "".join(folded) if any_folded else None


# Text with more than a tenth of its bytes non-ASCII (a page of Polish, French or Welsh) has so many runs that
# cutting it into them costs more than converting it whole: measured, the two cost the same at about 12%.
_DENSE = 10
_NON_ASCII_BYTES = bytes(range(0x80, 0x100))


def _normalise_and_fold_whole(data: bytes) -> tuple[bytes, str | None]:
    """``normalise_and_fold_utf8`` for text dense with non-ASCII runs: the conversions applied to the whole text,
    which gives the same, as they leave ASCII characters as they are and never compose across one."""
    converted = _normalise_runs(data.decode("utf-8", "replace"))
    joined = converted.encode("utf-8", "replace")
    normalised = normalise_ascii(joined)
    if normalised.isascii():
        return normalised, None
    if normalised != joined:
        return normalised, _folded_view(normalised.decode("utf-8", "replace"))
    folded = _fold_runs(converted)
    return normalised, None if folded == converted else folded


# Combining diacritics on an ASCII letter ("OF\u0301FICIAL", "Lt\u0327d", a name in decomposed form): removed before
# NFKC, which would otherwise compose most of them into letters that no rule reads as their ASCII base. Letters
# that carry their diacritic precomposed (Zoë) keep it; the folded view reads those. One fixed-width look-behind
# and a character class: linear in the text.
_MARKS_ON_ASCII = re.compile(r"(?<=[\x00-\x7f])[\u0300-\u036f]+")


def _normalise_runs(runs: str) -> str:
    return unicodedata.normalize("NFKC", _MARKS_ON_ASCII.sub("", runs)).translate(_unicode_table())


def _folded_view(normalised: str) -> str | None:
    """``fold(normalised)``, or None when folding changes nothing: the view would be the normalised one again, and
    scanning it again finds only what that one found (a text whose only non-ASCII characters are bullets, ticks or
    letters of other scripts)."""
    folded = fold(normalised)
    return None if folded == normalised else folded


def fold(text: str) -> str:
    """Normalised text with Latin letters' diacritics removed (``Zoë`` is ``Zoe``, ``Łukasz`` is ``Lukasz``,
    ``ß`` is ``ss``), the transliterations of ``anyascii`` applied by ``str.translate`` to the non-ASCII runs;
    other scripts stay as they are (no detector reads them)."""
    return _map_runs(text.encode("utf-8", "replace"), _fold_runs).decode("utf-8", "replace")


def _fold_runs(runs: str) -> str:
    return unicodedata.normalize("NFC", runs).translate(_fold_table())


def _map_runs(data: bytes, convert: Callable[[str], str]) -> bytes:
    """``data`` with each non-ASCII run (and the character before it) replaced by ``convert`` of it.

    The runs go through ``convert`` together, joined by NUL, in one call: a text of short runs (a table of
    accented letters, Greek from ``\\u`` escapes) would otherwise pay a decode, NFKC, translate and encode per
    run. That is the same as converting each run alone: NUL is ASCII, and Unicode normalisation never composes
    across an ASCII character (none is a combining mark, nor the second of a composition pair); translate maps
    one character at a time, and neither it nor NFKC/NFC makes a NUL. A text that holds NUL already (a run
    may start with one) has its runs converted one at a time."""
    if data.isascii():
        return data
    parts = _split_runs(data)
    runs = parts[1::2]
    if b"\0" in data:
        converted = [convert(run.decode("utf-8", "replace")).encode("utf-8", "replace") for run in runs]
    else:
        converted = convert(b"\0".join(runs).decode("utf-8", "replace")).encode("utf-8", "replace").split(b"\0")
    if len(converted) != len(runs):
        raise ValueError("a conversion changed the number of runs")
    parts[1::2] = converted
    return b"".join(parts)


def _split_runs(data: bytes) -> list[bytes]:
    """``[text, run, text, run, ..., text]``: ``data`` (not ASCII) cut at its runs of non-ASCII bytes, each run
    with the byte before it (ASCII, as runs are maximal; none at the very start), the first and last text
    possibly empty. The lengths come from two translations and two splits (C loops over the bytes), where a
    search per run costs a microsecond through RE2's binding and ``re`` tests a class at every byte: a decoded
    page of accented letters has tens of thousands of runs."""
    ascii_lengths = [len(text) for text in data.translate(_RUNS_AS_SPACE).split()]
    run_lengths = [len(run) for run in data.translate(_ASCII_AS_SPACE).split()]
    if data[0] >= 0x80:
        ascii_lengths.insert(0, 0)
    if data[-1] >= 0x80:
        ascii_lengths.append(0)
    lengths = [0] * (len(ascii_lengths) + len(run_lengths))
    lengths[0::2] = ascii_lengths
    lengths[1::2] = run_lengths
    bounds = list(accumulate(lengths, initial=0))
    bounds[1:-1:2] = [start - 1 if start else 0 for start in bounds[1:-1:2]]  # each run's start: the byte before
    return [data[start:end] for start, end in pairwise(bounds)]


_RUNS_AS_SPACE = bytes(0x20 if c >= 0x80 else 0x78 for c in range(256))  # then split() gives the ASCII texts
_ASCII_AS_SPACE = bytes(0x78 if c >= 0x80 else 0x20 for c in range(256))  # then split() gives the runs


# Latin-1 Supplement, Latin Extended-A/B, IPA, Latin Extended Additional and -C/-D/-E, and the combining marks.
_LATIN_RANGES = ((0x80, 0x250), (0x1E00, 0x1F00), (0x2C60, 0x2C80), (0xA720, 0xA800), (0xAB30, 0xAB70))


@cache
def _fold_table() -> dict[int, str | int | None]:
    table: dict[int, str | int | None] = {}
    for lo, hi in _LATIN_RANGES:
        for cp in range(lo, hi):
            if unicodedata.category(chr(cp)) == "Sc":
                continue  # a currency sign ("£" would be "GBP"): no letter, and the normalised view reads it as it is
            ascii_form = anyascii(chr(cp))
            if ascii_form.isascii() and ascii_form.isprintable():
                table[cp] = ascii_form
    for cp in range(0x300, 0x370):  # combining diacritical marks left over after NFC
        table[cp] = None
    return _with_identity(table)


# --- decoded view -------------------------------------------------------------------------------------------

# Markers for the detector table's first pass (``routing.detectors.scanner``), so that noticing them costs no
# pass of its own. CONTROL: ASCII control characters and line breaks other than \n, which ``normalise_ascii``
# removes or turns into \n. DECODE: markup, escapes and base64, which the decoded view reads. The marker is
# stricter than the decoders themselves so that ordinary prose and source code rarely pay for decoding: a
# closing tag or a whole well-known one; a MIME part's base64 header or a data: URL's ";base64," (a pattern for
# base64 runs themselves makes the first pass's DFA blow up on random text); \u escapes, which can hide any
# letter; an escaped quote after JSON punctuation (JSON inside a string); an escaped line break between a word
# and a capital (pasted JSON: "...Allen\\nDate of birth" glues two words that the rules read apart; source
# code's "\\n" is mostly followed by lower case or a quote); RTF; capitals spaced out letter by letter (a
# PDF's letter-spaced banner: "S E C R E T"); a capitalised word hyphenated across a line break. JSON
# itself is no marker: the rules read ``"classification": "SECRET"`` as it stands, identifiers in it are plain
# text, and JSON inside a region decoded for another reason is parsed there.
CONTROL_MARKER = rb"[\x00-\x08\x0b-\x1f\x7f]"
# A number as OCR reads it, with O for 0 and I or l for 1 ("634 659 l29O", "SH 6l 94 27 A", "O9/O3/l994"): a digit and
# one of those letters side by side in a token of them.
_OCR_DIGITS_PATTERN = rb"\b(?:[0-9]+[OIl][0-9OIl]*|[OIl][0-9][0-9OIl]*)\b"
_OCR_AS_DIGITS = bytes.maketrans(b"OIl", b"011")
# A scanned form has a few such numbers; a region with more is a dump of codes, not OCR: it is not read as digits
# (that would scan it twice, past the deadline for a body of nothing else).
_MAX_OCR_TOKENS = 256
# A query string's or form's value with "+" for its spaces and nothing escaped: "?q=new+mobile+is+07912+336+418".
_FORM_VALUE = rb"[?&][A-Za-z0-9_.\-]{1,40}=[A-Za-z0-9_.\-]+\+[A-Za-z0-9]"
# Quoted-printable without the header that names it (an e-mail's body pasted from its source, a ticket that
# stored it raw): two escapes in a row ("=E2=80=93", "=0D=0A"), a soft line break ("=" ending a line, straight
# after a character that is not a space or another "="), an escaped "=" ("=3D") or a space escaped at a line's end
# ("=20"); a soft break after a space too when a word starts the next line ("... the annex is =\nMarlin"): code
# that ends a line with " =" continues it indented or with a bracket. Each is rare outside the encoding.
_QP_CUE = rb"=[0-9A-F]{2}=[0-9A-F]{2}|[^ \t=\n]=\n|[ \t]=\n[A-Za-z0-9]|=3D|=20(?m:$)"
# An RFC 2047 encoded word, as mail headers carry a subject with non-ASCII characters in it ("Subject:
# =?utf-8?Q?OFFICIAL=E2=80=91SENSITIVE?=", "=?UTF-8?B?...?=").
_ENCODED_WORD_PATTERN = rb"=\?[A-Za-z0-9_*\-]{1,40}\?[QqBb]\?[^?\s]{1,998}\?="
# A classification written as a name and a value on two lines, as pretty-printed JSON and YAML write a label
# ({"name": "sensitivity",\n "value": "Official Sensitive"}, "- name: sensitivity\n  value: OFFICIAL-SENSITIVE"):
# the decoded view puts the pair on one line ("sensitivity: Official Sensitive"), where the marking rows read it
# (they match within one line). Only for the names a classification goes by.
# Quotes may be doubled (a CSV field's) and spaces no-break (a Word or HTML page's, before normalisation).
_PAIR_SPACE = rb"(?:[ \t]|\xc2\xa0)*"
_TO_THE_VALUE = (  # the name's end, the line break, and the value's key
    rb"[\"']{0,2}"
    + _PAIR_SPACE
    + rb",?(?:[ \t\n]|\xc2\xa0)*\n"
    + _PAIR_SPACE
    + rb"[\"']{0,2}(?i:value|val)[\"']{0,2}"
    + _PAIR_SPACE
    + rb":"
)
_NAME_VALUE_PAIR_PATTERN = (
    rb"[\"']{0,2}(?i:name|key|label|field|property)[\"']{0,2}" + _PAIR_SPACE + rb":" + _PAIR_SPACE + rb"[\"']{0,2}"
    rb"(?P<name>(?i:(?:security[ \t_\-]?|data[ \t_\-]?)?"
    rb"(?:classification|sensitivity|marking)(?:[ \t_\-]?(?:label|level))?|protective[ \t_\-]?marking|gsc|gpms))"
    + _TO_THE_VALUE
)
# ... and its marker for the first pass, from the classification word on: "name" and "key" at the front would be
# partial matches on every other word of ordinary text (measured: about 3 ms per 10 MB).
_NAME_VALUE_PAIR_MARKER = (
    rb"(?i:classification|sensitivity|marking|gsc|gpms)(?i:[ \t_\-]?(?:label|level))?" + _TO_THE_VALUE
)
DECODE_MARKER = (
    rb"</[A-Za-z]|<(?i:br|p|hr|img|div|span|td|th|tr|li|table|html|body|head|meta|font|b|i|u|em|strong)"
    rb"(?:[ \t][^<>\n]*)?/?>|<!--|<![A-Za-z\[]|<\?xml"
    rb"|&(?:#[0-9]{2,7};?|#[xX][0-9a-fA-F]{2,6};?|[A-Za-z]{2,8};)"
    rb"|%(?:[2-7][0-9A-Fa-f]|0[AaDd9])|" + _FORM_VALUE + rb"|(?i:transfer-encoding:[ \t]*base64|;[ \t]*base64,"
    rb"|\bdecode[ \t]+(?:this|the[ \t]+following|it|below)\b)"
    rb"|\\u[0-9A-Fa-f]{4}|[{\[,:][ \t]*\\\"|[A-Z]\\[nrt]|[A-Za-z0-9.,:;)\]\"'*]\\[nr][ \t*#\[(=\-]*[A-Z]"
    rb"|(?i:quoted-printable)|"
    + _QP_CUE
    + rb"|"
    + _ENCODED_WORD_PATTERN
    + rb"|\{\\\\?(?i:rtf)|(?:[A-Z] {1,3}){4,}[A-Z]\b|[A-Z]-\n[ \t]*[A-Z]|"
    + _NAME_VALUE_PAIR_MARKER
    + rb"|"
    + _OCR_DIGITS_PATTERN
)
# A file, an image or a sound in base64 (a .docx, a PDF, a scan pasted as text or carried in JSON, a data: URL in
# prose): the base64 of the format's magic bytes at the start of a run, and enough of the run to be no word. The
# classifier cannot read what it encodes, so it is unscanned content (``binary_kinds``).
_BINARY_PREFIXES: dict[bytes, str] = {
    b"UEsDB": "file",  # PK\x03\x04: zip, so .docx, .xlsx, .pptx, .odt
    b"JVBERi": "file",  # %PDF
    b"0M8R4KGxGuE": "file",  # an OLE2 compound file: .doc, .xls, .msg
    b"H4sI": "file",  # gzip
    b"UklGR": "file",  # RIFF: .wav, .webp, .avi
    b"/9j/": "image",  # JPEG
    b"iVBORw0KGgo": "image",  # PNG
    b"R0lGOD": "image",  # GIF
    b"SUQz": "audio",  # ID3: .mp3
    b"T2dnUw": "audio",  # Ogg
}
BINARY_MARKER = (
    rb"(?:(?m:^)|[^A-Za-z0-9+/=])(?:"
    + b"|".join(prefix.replace(b"/", rb"\/").replace(b"+", rb"\+") for prefix in _BINARY_PREFIXES)
    + rb")[A-Za-z0-9+/]{60}"
)
# An identifier broken across a line (a PDF's column wrap: "NHS no. 472605\n1180", a number split between two
# messages) or spaced out a character at a time (an OCR'd form's boxes: "A 9 1 3 7 F N", "| H | L | 3 | 0 |"):
# ``rejoined`` reads them whole.
_LINE_BREAKS_BETWEEN = rb"(?:[ \t]*(?:\n|\\[nr])){1,4}[ \t]*"  # up to three blank lines; also escaped, in JSON
_WRAPPED_PATTERN = rb"[0-9]" + _LINE_BREAKS_BETWEEN + rb"[0-9]"
_SPACED_OUT_PATTERN = rb"\b[0-9A-Z]{1,2}(?:(?:[ \t]{1,2}|[ \t]*\|[ \t]*)[0-9A-Z]\b){5,40}"
# A file or object name with its words joined by "_" ("02_Hollis_Jason_VPS_victim_statement.docx",
# "KOWALCZYK_Ewa_1990-02-17_statement.pdf"): the rules' word boundaries do not see the words inside it.
_SNAKE_NAME_PATTERN = rb"_[A-Z][a-z]+_"
# (The first pass looks for four single characters spaced out, cheaper for its DFA than the whole run's pattern.)
_SPACED_OUT_START = rb"\b[0-9A-Z]{1,2}[ \t|]{1,3}[0-9A-Z][ \t|]{1,3}[0-9A-Z][ \t|]{1,3}[0-9A-Z]\b"
REJOIN_MARKER = _WRAPPED_PATTERN + rb"|" + _SPACED_OUT_START + rb"|" + _SNAKE_NAME_PATTERN
MARKERS: tuple[bytes, ...] = (CONTROL_MARKER, DECODE_MARKER, BINARY_MARKER, REJOIN_MARKER)
CONTROL, DECODE, BINARY, REJOIN = range(len(MARKERS))

_DECODE = _regex(DECODE_MARKER)
_BINARY = _regex(BINARY_MARKER)
_TAG = _regex(  # a tag's name ends at a space, tab, line break, "/", or a no-break space (UTF-8 C2 A0)
    rb"<(/?)([A-Za-z][A-Za-z0-9:_\-]{0,40})(?:(?:[ \t\n/]|\xc2\xa0)[^<>]*)?>|<!--[^<>]*-->|<![^<>]*>|<\?[^<>]*>"
)
# Attributes whose values are text a reader sees or a tool reads (a page's <meta content>, a link's target with
# its query, an image's alt text): the tag step removes the tags, and these values are kept after the text.
_TEXT_ATTRIBUTE = _regex(
    rb"(?i:\b(?:content|title|alt|href|summary|label|placeholder|aria-label|data-[a-z0-9\-]{1,40})[ \t\n]*=[ \t\n]*)"
    # quotes doubled when the markup is a CSV field's, escaped when it is a JSON string's
    rb"(?:\\?\"\"?([^\"<>\\]{2,})\\?\"|'([^'<>]{2,})')"
)
_INLINE_TAGS = frozenset(
    b"a abbr b bdi bdo big cite code data del dfn em font i ins kbd mark nobr q s samp small span strike strong "
    b"sub sup time tt u var wbr".split()
)
_ENTITY = _regex(rb"&(?:#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});?")
_PERCENT = _regex(rb"%[0-9A-Fa-f]{2}")
_QUERY_KEY = _regex(rb"[?&]([A-Za-z0-9_.\-]{1,40})=")
_FORM = _regex(_FORM_VALUE)
_ESCAPE = _regex(rb'\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|["nrt/\\])')
# A base64 run (standard or URL-safe alphabet) and the lines that continue it (MIME parts wrap at 76): 16 or more
# characters, or fewer with a digit, "+", "/" or "=" padding, or a whole line (a shorter run of letters inside a
# line is a word). A continuation line does not start with "-": the MIME boundary after a part ("--b1_8c2f--").
_BASE64 = _regex(
    rb"(?:[A-Za-z0-9+/_\-]{16,}|[A-Za-z0-9+/_\-]*[0-9+/][A-Za-z0-9+/_\-]*)={0,2}"
    rb"(?:[ \t]*\n[A-Za-z0-9+/_][A-Za-z0-9+/_\-]+={0,2})*|[A-Za-z0-9+/_\-]{6,}={1,2}|(?m:^)[A-Za-z0-9+/_\-]{6,}(?m:$)"
)
# RTF groups that hold no text (font and colour tables, styles, document info, \\* destinations), one level deep.
_RTF_START = _regex(rb"\{\\(?i:rtf)")
_RTF_DESTINATION = _regex(rb"\{\\(?:(?i:fonttbl|colortbl|stylesheet|info|listtable)|\*)(?:[^{}]|\{[^{}]*\})*\}")
# \uN (a Unicode character, N signed 16-bit) with the one fallback character after it; \'xx (a byte of the code
# page); other control words, control symbols and braces. Control words in any case, as a text upper-cased whole
# carries them.
_RTF = _regex(
    rb"\\[uU](-?[0-9]{1,6}) ?(?:\\'[0-9a-fA-F]{2}|[^\\{}\n])?|\\'([0-9a-fA-F]{2})|\\([a-zA-Z]{1,32})-?[0-9]{0,10} ?"
    rb"|\\([^a-zA-Z])|[{}]"
)
_SPACED_OR_BROKEN = _regex(rb"\b(?:[A-Z] {1,3}){4,}[A-Z]\b|[A-Z]-\n[ \t]*[A-Z]")
# A MIME header, a data: URL or the request itself says so ("decode this: ..."); loose base64 is not decoded.
_BASE64_CONTEXT = _regex(rb"(?i)base64|\bdecode[ \t]+(?:this|the[ \t]+following|it|below)\b")
_QP = _regex(rb"(?i)quoted-printable")
_QP_BARE = _regex(_QP_CUE)
_ENCODED_WORD = _regex(_ENCODED_WORD_PATTERN)
_OCR_DIGITS = _regex(_OCR_DIGITS_PATTERN)
_QP_SPREAD_BREAK = _regex(rb"=[ \t]*\n(?:[ \t]*\n)+")  # a soft break, then the empty lines markup left
_JSON_START = _regex(rb'[\[{][ \t\n]*["{\[]')
_NAME_VALUE_PAIR = _regex(_NAME_VALUE_PAIR_PATTERN)

# The patterns by which ``_decode_into`` decides which decoders a text needs, in one RE2 set: one pass over the
# text says which of them occur, instead of a search per pattern (each a whole pass when, as usual, it finds
# nothing); the set runs again only after a step has changed the text.
_STEPS: tuple[bytes, ...] = (
    _PATTERNS[_PERCENT],
    _PATTERNS[_QP],
    _PATTERNS[_TAG],
    _PATTERNS[_ENTITY],
    _PATTERNS[_SPACED_OR_BROKEN],
    _PATTERNS[_ESCAPE],
    _PATTERNS[_BASE64_CONTEXT],
    _PATTERNS[_JSON_START],
    _PATTERNS[_OCR_DIGITS],
    _PATTERNS[_ENCODED_WORD],
    _PATTERNS[_QP_BARE],
    _PATTERNS[_NAME_VALUE_PAIR],
)
(
    _PERCENT_STEP,
    _QP_STEP,
    _TAG_STEP,
    _ENTITY_STEP,
    _SPACED_STEP,
    _ESCAPE_STEP,
    _BASE64_STEP,
    _JSON_STEP,
    _OCR_STEP,
    _ENCODED_WORD_STEP,
    _QP_BARE_STEP,
    _NAME_VALUE_STEP,
) = range(len(_STEPS))


@cache
def _steps_set() -> Callable[[bytes], list[int]]:
    steps = _re2.Set(_UNANCHORED, re2_options())
    for i, pattern in enumerate(_STEPS):
        if steps.Add(pattern) != i:
            raise ValueError(f"decoding step {i}: pattern does not compile")
    if not steps.Compile():
        raise ValueError("the decoding steps do not compile")
    match: Callable[[bytes], list[int]] = steps.Match
    return match


def _steps(data: bytes) -> frozenset[int]:
    """The steps of ``_STEPS`` whose pattern occurs in ``data``."""
    return frozenset(_steps_set()(data))


MAX_DECODED_BYTES = 8 << 20  # what one decoded view may hold
_WINDOW_BEFORE = 256  # what is decoded around each marker (then widened to whole lines)
_WINDOW_AFTER = 1 << 10
_MAX_BASE64_BODY = 8 << 20  # how far a region may stretch to take in a MIME part's body
_MAX_BASE64_RUNS = 256
_MAX_JSON_ATTEMPTS = 64
_MAX_DEPTH = 3  # decoded text is decoded again (base64 holding HTML, JSON holding base64...), this many times


def binary_kinds(data: bytes) -> set[str]:
    """The kinds of content (``file``, ``image``, ``audio``) that base64 runs in ``data`` encode (``BINARY_MARKER``)."""
    kinds: set[str] = set()
    for match in _BINARY.finditer(data):
        run = match.group()
        for prefix, kind in _BINARY_PREFIXES.items():
            if prefix in run[:16]:
                kinds.add(kind)
                break
    return kinds


_WRAP = _regex(rb"(?P<left>[^\n]{0,64}[0-9])" + _LINE_BREAKS_BETWEEN + rb"(?P<right>[0-9][^\n]{0,48})")
_SPACED_OUT = _regex(_SPACED_OUT_PATTERN)
_SPACING = re.compile(rb"[ \t|]")
# What says the number before a line break is an identifier: only then are the two lines read as one.
_IDENTIFIER_LABEL = _regex(
    rb"(?i:nhs|national[ \t]+insurance|\bni\b|nino|card|iban|account|a/c|\bacc\b|sort|passport|licen[cs]e|pnc|cro"
    rb"|prison|crn|phone|mobile|\btel\b|dob|birth|utr|number|\bno\b)"
)
_MAX_REJOINED = 64  # places rejoined per text
_SNAKE_NAME = _regex(_SNAKE_NAME_PATTERN)
_SNAKE_LINE = 256  # bytes of a file name's line either side of it, at most
_MAX_WRAPS_READ = 1024  # line ends between digits looked at per text: a table of numbers has thousands


def rejoined(data: bytes) -> bytes:
    """The identifiers and names of normalised ``data`` that a line break, spacing or underscores break up or glue,
    read whole: for each line that ends in a digit after an identifier's label and is continued by a line that
    starts with one, the two lines joined with a space and without one; each run of single characters spaced out (or
    split by a table's "|"), after up to 64 bytes of what comes before it, with its spacing removed; each line with a
    file name of capitalised words joined by "_", with spaces for them. One line each (the REJOIN marker)."""
    out: list[bytes] = []
    for n, match in enumerate(_WRAP.finditer(data)):
        if n >= _MAX_WRAPS_READ or len(out) >= 2 * _MAX_REJOINED:
            break
        left, right = match.group(b"left") or b"", match.group(b"right") or b""
        if _IDENTIFIER_LABEL.found(left):
            out += (left + b" " + right, left + right)
    for n, match in enumerate(_SPACED_OUT.finditer(data)):
        if n >= _MAX_REJOINED:
            break
        start = match.start()
        before = data[max(0, start - 64) : start].rpartition(b"\n")[2]
        out.append(before + _SPACING.sub(b"", match.group()))
    line_end = -1
    for n, match in enumerate(_SNAKE_NAME.finditer(data)):
        if n >= _MAX_REJOINED:
            break
        if match.start() < line_end:
            continue  # that line is out already
        start = data.rfind(b"\n", max(0, match.start() - _SNAKE_LINE), match.start()) + 1
        line_end = data.find(b"\n", match.end(), match.end() + _SNAKE_LINE)
        line_end = min(len(data), match.end() + _SNAKE_LINE) if line_end < 0 else line_end
        out.append(data[start:line_end].replace(b"_", b" "))
    return b"\n".join(out)


def needs_decoding_bytes(data: bytes) -> bool:
    """True when normalised UTF-8 ``data`` carries what the decoded view reads (the DECODE marker)."""
    return _DECODE._match(_UNANCHORED, data, 0, len(data))[0][0] >= 0


def needs_decoding(text: str) -> bool:
    """``needs_decoding_bytes`` for a normalised string."""
    return needs_decoding_bytes(text.encode("utf-8", "replace"))


def decode(data: bytes, check: Callable[[], None] = lambda: None) -> str:
    """The decoded view of normalised UTF-8 ``data``: what its markup, escapes and encodings say, as plain text.

    Only the regions around the DECODE marker's matches are decoded (a few kilobytes each, widened to whole
    lines and merged where they meet), so a long text with one escaped string costs little; a document that is
    markup throughout is decoded whole."""
    return normalise(_decoded(data, check))[:MAX_DECODED_BYTES]


def decode_and_fold(data: bytes, check: Callable[[], None] = lambda: None) -> tuple[str, str | None]:
    """``decode(data, check)`` and ``fold`` of it (None when that changes nothing), normalised and folded from one
    cut into runs (``normalise_and_fold_utf8``) unless ``MAX_DECODED_BYTES`` cut the decoded view short."""
    text = _decoded(data, check)
    if text.isascii():
        return normalise_ascii(text.encode()).decode()[:MAX_DECODED_BYTES], None
    normalised, folded = normalise_and_fold_in_pieces(text.encode("utf-8", "replace"), check)
    decoded = normalised.decode("utf-8", "replace")
    if len(decoded) > MAX_DECODED_BYTES:
        decoded = decoded[:MAX_DECODED_BYTES]
        folded = None if decoded.isascii() else _folded_view(decoded)
    return decoded, folded


def _decoded(data: bytes, check: Callable[[], None]) -> str:
    """What the regions of ``data`` decode to, joined, before the decoded view's normalisation."""
    pieces: list[str] = []
    for lo, hi in _regions(data):
        check()
        _decode_into(data[lo:hi], pieces, check, 0)
    return "\n\n".join(pieces)


def _regions(data: bytes) -> list[tuple[int, int]]:
    """The line-aligned regions around the DECODE marker's matches, merged; one search per region."""
    regions: list[tuple[int, int]] = []
    size = len(data)
    pos = 0
    while pos < size:
        start, end = _DECODE._match(_UNANCHORED, data, pos, size)[0]
        if start < 0:
            break
        lo = data.rfind(b"\n", 0, max(0, start - _WINDOW_BEFORE)) + 1
        hi = data.find(b"\n", min(size, end + _WINDOW_AFTER))
        hi = size if hi < 0 else hi
        if data[end - 7 : end].lower().endswith((b"base64", b"base64,")):  # the encoded body that follows, whole
            body = _BASE64._match(_UNANCHORED, data, end, min(size, end + _MAX_BASE64_BODY))[0]
            if body[0] >= 0 and body[0] - end < _WINDOW_AFTER:
                hi = max(hi, body[1])
        if regions and lo <= regions[-1][1]:
            regions[-1] = (regions[-1][0], hi)
        else:
            regions.append((lo, hi))
        pos = max(hi, end, pos + 1)
    return regions


def _query_key(data: bytes, spans: Spans) -> bytes:
    """A query parameter's key on a line of its own, as its value's label, and the value from the next line's start
    (a banner stays one): "?defendant=..." reads "defendant:" and the value under it."""
    start, end = spans[1]
    return b"\n" + data[start:end] + b":\n"


def _decode_into(data: bytes, pieces: list[str], check: Callable[[], None], depth: int) -> None:
    """Append the plain text of ``data`` to ``pieces``, then decode what base64 and JSON in it hold. At depth 0
    ``data`` is a region of the scanned text, and is appended only if decoding changed it."""
    given = data
    original = data if depth == 0 else None
    steps = _steps(data)
    quoted_printable = _QP_BARE_STEP in steps and _QP_STEP not in steps
    for _ in range(2):  # twice: a URL inside a URL's query is escaped twice ("%252C")
        if not ((_PERCENT_STEP in steps and b"%" in data) or (b"+" in data and _FORM.found(data))):
            break
        # Each query parameter's key and value on lines of their own (its own ?, & and = are escaped), then
        # unescaped as a form value: "+" is a space there (application/x-www-form-urlencoded, as browsers send
        # forms and query strings), and a literal "+" would have been sent as %2B.
        data = urllib.parse.unquote_to_bytes(substitute(_QUERY_KEY, data, _query_key).replace(b"+", b" "))
        steps = _steps(data)
    if _ENCODED_WORD_STEP in steps:
        data = _decode_encoded_words(data)
        steps = _steps(data)
    if _QP_STEP in steps:
        data = quopri.decodestring(data)
        steps = _steps(data)
    for _ in range(2):  # twice: markup that was itself escaped (XML pasted into an HTML e-mail)
        if _TAG_STEP in steps:
            data = _without_tags(data)
            steps = _steps(data)
        if _ENTITY_STEP in steps and b"&" in data:
            data = html.unescape(data.decode("utf-8", "replace")).encode("utf-8", "replace")
            steps = _steps(data)
        else:
            break
    if _TAG_STEP in steps:
        data = _without_tags(data)
        steps = _steps(data)
    for _ in range(2):  # twice: an RTF document quoted inside another (its braces and backslashes escaped)
        if not _RTF_START.found(data):
            break
        # an RTF document starts a line, as it would in a file of its own
        data = substitute(
            _RTF, substitute(_RTF_DESTINATION, substitute(_RTF_START, data, b"\n{\\rtf"), b""), _rtf_replacement
        )
        steps = _steps(data)
    if _QP_STEP in steps and b"=\n" in data:  # soft breaks that markup around the lines kept apart ("SECR=</p><p>ET")
        data = quopri.decodestring(substitute(_QP_SPREAD_BREAK, data, b"=\n"))
        steps = _steps(data)
    if _SPACED_STEP in steps:
        data = substitute(_SPACED_OR_BROKEN, data, _join_letters)
        steps = _steps(data)
    if _OCR_STEP in steps and _few(_OCR_DIGITS, data, _MAX_OCR_TOKENS):
        data = substitute(_OCR_DIGITS, data, _as_digits)
        steps = _steps(data)
    if _NAME_VALUE_STEP in steps:
        data = substitute(_NAME_VALUE_PAIR, data, _name_value_line)
        steps = _steps(data)
    plain = _unescape(data) if _ESCAPE_STEP in steps and b"\\" in data else data
    if plain != original:  # what decoding left unchanged, the normalised view has scanned already
        pieces.append(plain.decode("utf-8", "replace"))
    check()
    if depth + 1 >= _MAX_DEPTH:
        return
    if _BASE64_STEP in (steps if plain is data else _steps(plain)):
        for inner in _base64_texts(plain):
            check()
            _decode_into(normalise(inner).encode("utf-8", "replace"), pieces, check, depth + 1)
    if _JSON_STEP in steps:  # JSON in data before its escapes were decoded: its strings hold \n, not newlines
        for inner in _json_texts(data, check):
            _decode_into(normalise(inner).encode("utf-8", "replace"), pieces, check, depth + 1)
    if quoted_printable:  # read as quoted-printable too, beside the text as it is: without the header that names
        # the encoding, its cue may be something else (a base64 run's padding at a line's end)
        _decode_into(quopri.decodestring(given), pieces, check, depth + 1)


def substitute(regex: Regex, data: bytes, replacement: bytes | Callable[[bytes, Spans], bytes]) -> bytes:
    """``data`` with every match of ``regex`` replaced by ``replacement`` (bytes, or a function of the data and the
    match's spans, as RE2 gives them: ``(start, end)`` per group, ``(-1, -1)`` for one that did not take part).
    The search runs inline rather than through ``Regex.finditer``: a page of markup has hundreds of matches."""
    match = regex._match
    constant = replacement if isinstance(replacement, bytes) else b""
    function = None if isinstance(replacement, bytes) else replacement
    out: list[bytes] = []
    size = len(data)
    copied = at = 0  # the text before ``copied`` is in ``out``; the next search starts at ``at``
    while at <= size:
        spans = match(_UNANCHORED, data, at, size)
        start, end = spans[0]
        if start < 0:
            break
        out.append(data[copied:start])
        out.append(constant if function is None else function(data, spans))
        copied = end
        at = end if end > start else end + 1
    if not out:
        return data
    out.append(data[copied:])
    return b"".join(out)


# A mail's headers hold a few encoded words; a body of tens of thousands (a hostile one) is decoded this far, in a
# bounded time, and the rest left as it is.
_MAX_ENCODED_WORDS = 256


def _decode_encoded_words(data: bytes) -> bytes:
    end = len(data)
    for n, word in enumerate(_ENCODED_WORD.finditer(data)):
        if n == _MAX_ENCODED_WORDS:
            end = word.start()
            break
    return substitute(_ENCODED_WORD, data[:end], _encoded_word) + data[end:]


def _encoded_word(data: bytes, spans: Spans) -> bytes:
    """An RFC 2047 encoded word's text in UTF-8 (its bytes read as UTF-8 when Python does not know its charset).
    ``binascii`` decodes it, in C: a body may hold tens of thousands of them."""
    charset, encoding, encoded = data[spans[0][0] + 2 : spans[0][1] - 2].split(b"?", 2)
    try:
        if encoding in b"Qq":
            raw = binascii.a2b_qp(encoded, header=True)  # "_" is a space
        else:
            raw = binascii.a2b_base64(encoded + b"=" * (-len(encoded) % 4))
    except (binascii.Error, ValueError):
        return data[spans[0][0] : spans[0][1]]
    try:
        return raw.decode(charset.decode("ascii").split("*")[0], "replace").encode("utf-8", "replace")
    except (LookupError, UnicodeError):  # a charset Python does not know ("*" starts an RFC 2231 language tag), or a
        # codec that raises whatever the error handler ("idna"): the bytes as UTF-8
        return raw.decode("utf-8", "replace").encode("utf-8", "replace")


def _rtf_replacement(data: bytes, spans: Spans) -> bytes:
    start, end = spans[1]
    if start >= 0:  # \uN: the character, its fallback dropped
        code = int(data[start:end]) % 65536
        return b"" if 0xD800 <= code < 0xE000 else chr(code).encode("utf-8")
    start, end = spans[2]
    if start >= 0:  # \'e1: a byte of the document's code page (Windows-1252, RTF's usual \ansicpg)
        return bytes([int(data[start:end], 16)]).decode("cp1252", "replace").encode("utf-8")
    start, end = spans[4]
    if start >= 0:  # a control symbol: an escaped brace or backslash is that character, the others nothing
        symbol = data[start:end]
        return symbol if symbol in b"\\{}" else b""
    start, end = spans[3]
    if start < 0:
        return b""  # a brace
    word = data[start:end].lower()
    return b"\n" if word in (b"par", b"pard", b"line", b"page", b"sect", b"row", b"cell") else b""


def _few(regex: Regex, data: bytes, most: int) -> bool:
    """Whether ``regex`` matches ``data`` at most ``most`` times (it stops counting there)."""
    return all(n < most for n, _ in enumerate(regex.finditer(data)))


def _as_digits(data: bytes, spans: Spans) -> bytes:
    start, end = spans[0]
    return data[start:end].translate(_OCR_AS_DIGITS)


def _name_value_line(data: bytes, spans: Spans) -> bytes:
    """A name and value pair's name, with the value's line joined to it: "sensitivity: " then the value."""
    start, end = spans[1]
    return data[start:end] + b": "


def _join_letters(data: bytes, spans: Spans) -> bytes:
    """ "S E C R E T" is SECRET, "T O P   S E C R E T" TOP SECRET (a wider gap between words); "OFFICIAL-\nSENSITIVE"
    is OFFICIAL-SENSITIVE."""
    start, end = spans[0]
    piece = data[start:end]
    if b"\n" in piece:  # a word hyphenated across a line break
        return piece.replace(b" ", b"").replace(b"\n", b"").replace(b"\t", b"")
    return b" ".join(word.replace(b" ", b"") for word in piece.split(b"  ") if word.strip())


def _without_tags(data: bytes) -> bytes:
    """``data`` with its tags removed (block tags as line breaks), and the values of its text attributes
    (``_TEXT_ATTRIBUTE``) after it, one per line."""
    values = [m.group(1) or m.group(2) or b"" for m in _TEXT_ATTRIBUTE.finditer(data)]
    text = substitute(_TAG, data, _tag_replacement)
    return b"\n\n".join([text, *values]) if values else text


# XML elements of a person's name: their texts stay on one line, as the name reads ("<Forename>Tyler</Forename>
# <Surname>Mumford</Surname>" is "Tyler Mumford").
_NAME_PART_TAGS = frozenset(
    b"forename forenames firstname first_name givenname given_name givennames given_names middlename middle_name "
    b"surname lastname last_name familyname family_name".split()
)


def _tag_replacement(data: bytes, spans: Spans) -> bytes:
    start, end = spans[2]
    if start < 0:
        return b"\n"
    name = data[start:end].lower()
    return b"" if name in _INLINE_TAGS else b" " if name in _NAME_PART_TAGS else b"\n"


def _unescape(data: bytes) -> bytes:
    r"""``\u0053ECRET``, ``\n``, ``\"``: a string pasted with its JSON or Python escapes."""
    if data.isascii():
        try:  # the codec, in C; it leaves unknown escapes (\d) as they are
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                return data.decode("unicode_escape").encode("utf-8", "replace")
        except UnicodeDecodeError:  # a malformed \x or \u escape: one at a time
            pass
    return substitute(_ESCAPE, data, _escape_replacement)


def _escape_replacement(data: bytes, spans: Spans) -> bytes:
    start, end = spans[0]
    escape = data[start:end]
    kind = escape[1:2]
    if kind in b"ux":
        return chr(int(escape[2:], 16)).encode("utf-8", "replace")
    return {b"n": b"\n", b"r": b"\n", b"t": b"\t"}.get(kind, kind)


def _base64_texts(data: bytes) -> Iterator[str]:
    """The runs of ``data`` that decode from base64 to readable UTF-8 text."""
    tried = 0
    for match in _BASE64.finditer(data):
        run = b"".join(match.group().split())
        if len(run) < 6:
            continue
        tried += 1
        if tried > _MAX_BASE64_RUNS:
            return
        decoded = _b64(run)
        if decoded is not None:
            yield decoded


def _b64(run: bytes) -> str | None:
    run = run.rstrip(b"=")
    if len(run) < 6:
        return None
    if b"-" in run or b"_" in run:
        run = run.translate(_URLSAFE)
    try:
        raw = binascii.a2b_base64(run + b"=" * (-len(run) % 4), strict_mode=True)
        decoded = normalise(raw.decode("utf-8"))
    except (binascii.Error, ValueError):
        return None
    readable = decoded and decoded.replace("\n", "").replace("\t", "").isprintable()
    return decoded if readable else None


# A list of strings this short (an enum, tags, stop sequences) is read as one text, its items separated by commas, as
# it reads: an enum of levels is no banner. Longer strings (a batch of prompts, embeddings inputs, paragraphs) are
# texts of their own.
SHORT_LIST_ITEM = 32


def short_list_text(items: list[Any]) -> str | None:
    """Two or more short strings as one text ("OFFICIAL, OFFICIAL-SENSITIVE, SECRET"), else None. The body's walk
    and the JSON found inside a string read lists the same way."""
    if len(items) > 1 and all(type(item) is str and len(item) <= SHORT_LIST_ITEM for item in items):
        return ", ".join(items)
    return None


_URLSAFE = bytes.maketrans(b"-_", b"+/")
_DECODER = json.JSONDecoder()


def _json_texts(data: bytes, check: Callable[[], None]) -> Iterator[str]:
    """JSON documents found anywhere in ``data``, each written out as lines of ``key: value`` and strings."""
    text = data.decode("utf-8", "replace")
    ascii_only = data.isascii()  # then byte offsets are character offsets
    end = 0
    for attempts, match in enumerate(_JSON_START.finditer(data)):
        if attempts >= _MAX_JSON_ATTEMPTS:
            return
        start = match.start() if ascii_only else len(data[: match.start()].decode("utf-8", "replace"))
        if start < end:
            continue
        try:  # RecursionError (JSON nested past what Python parses) is not caught: unreadable, so fail closed
            value, end = _DECODER.raw_decode(text, start)
        except ValueError:
            continue
        check()
        lines: list[str] = []
        _json_lines(value, None, lines, 0)
        yield "\n".join(lines)


_NAME_KEYS = ("name", "key", "label", "field", "property", "title")
_VALUE_KEYS = ("value", "values", "val")


def _name_and_value(pair: dict[Any, Any]) -> str | None:
    """A property written as a name and a value, as tags, metadata and form fields are (``{"name": "sensitivity",
    "value": "Official Sensitive"}``, ``{"Key": "Classification", "Value": "SECRET"}``): the two as one ``name:
    value`` line, as the property reads."""
    if len(pair) > 6:
        return None
    lower = {str(k).lower(): v for k, v in pair.items()}
    name = next((lower[k] for k in _NAME_KEYS if type(lower.get(k)) is str), None)
    value = next((lower[k] for k in _VALUE_KEYS if type(lower.get(k)) is str), None)
    if name is None or value is None or len(name) > 40 or len(value) > 80 or "\n" in value:
        return None
    return f"{name}: {value}"


def _json_lines(value: Any, key: str | None, lines: list[str], depth: int) -> None:
    if depth > 64:
        return
    if isinstance(value, dict):
        for k, v in value.items():
            _json_lines(v, str(k), lines, depth + 1)
        named = _name_and_value(value)
        if named is not None:
            lines.append(named)
    elif isinstance(value, list):
        text = short_list_text(value)
        if text is not None:
            lines.append(text if key is None else f"{key}: {text}")
            return
        for item in value:
            _json_lines(item, key, lines, depth + 1)
    elif value is None or isinstance(value, bool | float):
        return
    else:
        text = str(value)
        # A short value reads with its key ("classification: SECRET" is a label; "enum: SECRET" is not); a
        # long or multi-line one is a document of its own, whose first line may be its banner.
        if key is None or "\n" in text or len(text) > 80:
            lines.append(text)
        else:
            lines.append(f"{key}: {text}")
