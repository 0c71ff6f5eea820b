"""Detector rows one by one: what counts, and the near misses that must not."""

from __future__ import annotations

import functools
import random
from re import _constants as _c
from re import _parser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing import detectors_base
from routing.classify import classify_text
from routing.detectors import DETECTORS, scanner
from routing.detectors_base import Scanner
from tests.routing.test_classify_corpus import ITEMS


def signals(text: str) -> set[str]:
    return {s.type for s in classify_text(text).signals}


MARKINGS = [
    ("OFFICIAL-SENSITIVE", "marking_official_sensitive"),
    ("OFFICIAL - SENSITIVE\nBriefing", "marking_official_sensitive"),
    ("OFFICIAL – SENSITIVE\nBriefing", "marking_official_sensitive"),  # en dash
    ("OFFICIAL: SENSITIVE: PERSONAL\nx", "marking_official_sensitive"),
    ("OFFICIAL SENSITIVE COMMERCIAL", "marking_official_sensitive"),
    ("Protective marking: Official-Sensitive", "marking_official_sensitive"),
    ("| Classification | OFFICIAL SENSITIVE |", "marking_official_sensitive"),
    ("text\n\nOFFICIAL-SENSITIVE", "marking_official_sensitive"),
    ("End of note. OFFICIAL-SENSITIVE", "marking_official_sensitive"),
    ("SECRET", "marking_secret"),
    ("  *** SECRET ***", "marking_secret"),
    ("SECRET - UK EYES ONLY\nbody", "marking_secret"),
    ("SECRET: Operation Kestrel timings", "marking_secret"),
    ("Classification: secret", "marking_secret"),
    ("see [SECRET] above", "marking_secret"),
    ("Please treat this as SECRET.", "marking_secret"),
    ("Subject: SECRET update", "marking_secret"),
    ("TOP SECRET", "marking_top_secret"),
    ("TOP SECRET//STRAP1\nbody", "marking_top_secret"),
    ("# TOP SECRET", "marking_top_secret"),
    ("UK EYES ONLY", "marking_caveat"),
    ("RESTRICTED", "marking_legacy_restricted"),
    ("CONFIDENTIAL\nMinutes", "marking_legacy_confidential"),
    ("PROTECT - PERSONAL", "marking_legacy_protect"),
]


@pytest.mark.parametrize(("text", "signal"), MARKINGS)
def test_markings_as_banners_and_labels(text, signal):
    assert signal in signals(text)


def test_top_secret_is_not_also_secret():
    assert signals("TOP SECRET\nbody") == {"marking_top_secret"}


@pytest.mark.parametrize(
    "text",
    [
        "The secret to good bread is time.",
        "See the official documentation.",
        "It is no secret that sensitive skin needs care.",
        "Official statistics on sensitive sectors.",
        "The GSC has three levels: OFFICIAL, SECRET and TOP SECRET.",
        "Staff must handle OFFICIAL-SENSITIVE material with care, the guidance says in section 3.",
        "SECRET_KEY = os.environ['SECRET_KEY']",
        "    SECRET: str = 'x'",
        "SECRET: Final = 'abc'",
        "kind: Secret",
        "Access is restricted after 6pm.",
        "Keep this confidential.",
        "The Official Secrets Act 1989",
    ],
)
def test_markings_in_prose_and_code_do_not_count(text):
    assert not {s for s in signals(text) if s.startswith("marking")}


IDENTIFIERS = [
    ("NHS 943 476 5919", "nhs_number"),
    ("9434765919", "nhs_number"),
    ("NI number JH 12 34 56 C", "ni_number"),
    ("JH123456C", "ni_number"),
    ("2008/0056560Z", "pnc_id"),
    ("20030011985X", "pnc_id"),
    ("81/34U", "pnc_id"),
    ("PNC 033Y", "pnc_id"),
    ("265416/21G", "cro_number"),
    ("SF05/482703J", "cro_number"),
    ("SF83/4661E", "cro_number"),
    ("A1234BC", "prison_number"),
    ("prisoner number K1234LM", "prison_number"),
    ("CRN X123456", "probation_crn"),
    ("AB1234567", "uk_passport"),
    ("passport 123456789", "uk_passport"),
    ("MORGA657054SM9IJ", "driving_licence"),
    ("sort code 20-00-00, account 12345678", "sort_code_account"),
    ("GB29 NWBK 6016 1331 9268 19", "iban"),
    ("4929 1234 5678 9015", "payment_card"),
    ("3401 234567 89014", "payment_card"),
    ("UTR 19558 39661", "utr"),
    ("jane.doe@gmail.com", "email"),
    ("07911 123456", "uk_phone"),
    ("+44 (0)20 7123 4567", "uk_phone"),
    ("SW1A 1AA", "uk_postcode"),
    ("DOB: 12/03/1985", "date_of_birth"),
    ("born on 3 March 1982", "date_of_birth"),
    ("Jane Doe (12/03/1985)", "date_of_birth"),
    ("John Smith was convicted of burglary.", "justice_context_named_person"),
    ("Mrs Okafor is a witness.", "justice_context_named_person"),
    ("KOWALSKI, Piotr - remanded in custody", "justice_context_named_person"),
]


@pytest.mark.parametrize(("text", "signal"), IDENTIFIERS)
def test_identifiers(text, signal):
    assert signal in signals(text)


@pytest.mark.parametrize(
    "text",
    [
        "943 476 5918",  # NHS check digit wrong
        "999 123 4560",  # NHS test range, never issued
        "0123456789",  # placeholder
        "Build 1712345678 done",  # epoch-like 10 digits without NHS context
        "QQ 12 34 56 C",  # Q is never a first NI letter
        "BG 12 34 56 A",  # administrative prefix
        "meet at 10 20 30 a.m.",
        "2008/0056560A",  # PNC check letter wrong
        "85227/65G",  # CRO check letter wrong
        "X123456",  # CRN shape without probation context
        "123456789",  # 9 digits without passport context
        "MORGA613054SM9IJ",  # month 13
        "order 20-00-00 shipped 12345678",  # no bank context
        "GB29 NWBK 6016 1331 9268 18",  # IBAN mod 97 wrong
        "4929 1234 5678 9012",  # Luhn wrong
        "4111 1111 1111 1111",  # published test card
        "12345 67890 tracking",  # UTR shape without tax context
        "support@example.com",
        "git@github.com:org/repo.git",
        "0800 123 4567",  # freephone: an organisation
        "020 7946 0123",  # Ofcom drama range
        "QA1 1AA",  # Q never starts a postcode
        "Enter your date of birth, e.g. DD/MM/YYYY",
        "The Criminal Justice Act 2003 sets out sentencing purposes.",
        "In R v Brown the defendants were convicted.",
        "Crown Court sentencing guidelines for theft",
    ],
)
def test_near_misses(text):
    assert not classify_text(text).local_only, signals(text)


def test_every_row_compiles_into_the_set():
    table = scanner()
    assert len(table.detectors) == len(DETECTORS)
    assert all(signal in table.levels for signal in {d.signal for d in DETECTORS})


# --- what the second pass's localisation relies on (detectors_base.Scanner._where) -------------------------

_NL = ord("\n")
_CATEGORIES_WITH_NEWLINE = {_c.CATEGORY_SPACE, _c.CATEGORY_NOT_DIGIT, _c.CATEGORY_NOT_WORD}


def _class_has_newline(items) -> bool:
    negate = bool(items) and items[0][0] is _c.NEGATE
    found = False
    for op, av in items[1:] if negate else items:
        assert op in (_c.LITERAL, _c.RANGE, _c.CATEGORY), f"class item {op} not understood"
        found = found or (
            (op is _c.LITERAL and av == _NL)
            or (op is _c.RANGE and av[0] <= _NL <= av[1])
            or (op is _c.CATEGORY and av in _CATEGORIES_WITH_NEWLINE)
        )
    return found != negate


def _problems(subpattern, flags: int) -> list[str]:
    """What in a parsed pattern could match a newline, or anchor other than at line starts and ends."""
    found = []
    for op, av in subpattern:
        if op is _c.LITERAL:
            found += ["literal newline"] if av == _NL else []
        elif op is _c.NOT_LITERAL:
            found += [] if av == _NL else ["negated literal (matches newline)"]
        elif op is _c.ANY:
            found += ["dot-all ."] if flags & _c.SRE_FLAG_DOTALL else []
        elif op is _c.IN:
            found += ["class with newline"] if _class_has_newline(av) else []
        elif op is _c.BRANCH:
            for branch in av[1]:
                found += _problems(branch, flags)
        elif op is _c.SUBPATTERN:
            _group, add, delete, inner = av
            found += _problems(inner, (flags | add) & ~delete)
        elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT):
            found += _problems(av[2], flags)
        elif op is _c.AT:
            if av in (_c.AT_BEGINNING, _c.AT_END) and not flags & _c.SRE_FLAG_MULTILINE:
                found.append("^ or $ outside multi-line mode")
            elif av not in (_c.AT_BEGINNING, _c.AT_END, _c.AT_BOUNDARY, _c.AT_NON_BOUNDARY):
                found.append(f"anchor {av}")
        else:
            found.append(f"construct {op}")
    return found


_PATTERNS = [(row, "pattern") for row in range(len(DETECTORS))] + [
    (row, "trigger") for row, det in enumerate(DETECTORS) if det.trigger is not None
]


@pytest.mark.parametrize(("row", "which"), _PATTERNS)
def test_rows_match_within_one_line_and_never_nothing(row, which):
    """Each row's matches (and its trigger's) lie inside one line (no construct can match a newline,
    ``^``/``$`` only in multi-line mode, no \\A or \\Z) and are never empty: the second pass may then search a
    row only in the blocks of lines where the set finds it."""
    parsed = _parser.parse(getattr(DETECTORS[row], which).decode("latin-1"))
    assert _problems(parsed, parsed.state.flags) == []
    assert parsed.getwidth()[0] > 0


def test_some_rows_have_a_cheaper_trigger():
    assert {DETECTORS[row].signal for row, which in _PATTERNS if which == "trigger"} >= {
        "email",
        "date_of_birth",
        "justice_context_named_person",
    }


def _texts_with_every_row() -> list[bytes]:
    rng = random.Random(9)
    pieces = [item["text"] for item in ITEMS if "text" in item]
    texts = [piece.encode() for piece in pieces]
    texts += [rng.choice(["\n", " ", ", ", "; "]).join(rng.choices(pieces, k=20)).encode() for _ in range(200)]
    # and each signal's own items among others, so that a row with few items in the corpus is tried often enough
    by_signal: dict[str, list[str]] = {}
    for item in ITEMS:
        if "text" in item and item.get("signal"):
            by_signal.setdefault(item["signal"], []).append(item["text"])
    for group in by_signal.values():
        for _ in range(16):
            chosen = rng.choices(group, k=4) + rng.choices(pieces, k=8)
            rng.shuffle(chosen)
            texts.append(rng.choice(["\n", " ", ", ", "; "]).join(chosen).encode())
    return texts


@pytest.mark.parametrize("row", [row for row, which in _PATTERNS if which == "trigger"])
def test_a_trigger_matches_inside_every_match_of_its_row(row):
    """The first pass looks for the trigger instead of the pattern, so a text where the pattern matches must
    contain the trigger, and (for the localised second pass) inside that match: checked on every corpus
    item and on runs of them joined, with the whole text around each match as context."""
    det = DETECTORS[row]
    pattern = detectors_base.Regex(det.pattern, detectors_base.re2_options())
    trigger = detectors_base.Regex(det.trigger, detectors_base.re2_options())
    matches = 0
    for text in _texts_with_every_row():
        for m in pattern.finditer(text):
            matches += 1
            inside = next(trigger.finditer(text, m.start(), m.end()), None)
            assert inside is not None and inside.end() <= m.end(), (det.signal, m.span())
    assert matches >= 20


def test_localised_second_pass_finds_what_the_whole_text_pass_finds(monkeypatch):
    rng = random.Random(8)
    pieces = [item["text"] for item in ITEMS if "text" in item]
    table = scanner()
    texts = []
    for _ in range(40):
        chosen = rng.choices(pieces, k=600)
        texts.append(rng.choice(["\n", "\n\n", " ", "\r\n"]).join(chosen).encode())
    assert all(len(t) > detectors_base.LOCALIZE_ABOVE for t in texts)
    localised = [table.validate(t, table.present(t), float("inf")) for t in texts]
    monkeypatch.setattr(detectors_base, "LOCALIZE_ABOVE", 1 << 40)
    whole = [table.validate(t, table.present(t), float("inf")) for t in texts]
    assert localised == whole
    assert sum(len(counts) > 3 for counts in whole) > 30  # many rows present, so most texts were localised


# --- what the second pass's skip to the next needed byte relies on (Detector.needs) -----------------------


def _class_within(items, needs: bytes) -> bool:
    """True when every character of a parsed class is one of ``needs``."""
    if items and items[0][0] is _c.NEGATE:
        return False
    for op, av in items:
        if op is _c.LITERAL:
            ok = av in needs
        elif op is _c.RANGE:
            ok = all(c in needs for c in range(av[0], av[1] + 1))
        elif op is _c.CATEGORY:
            ok = av is _c.CATEGORY_DIGIT and all(c in needs for c in b"0123456789")
        else:
            ok = False
        if not ok:
            return False
    return True


def _always_holds(subpattern, needs: bytes) -> bool:
    """True when every match of a parsed pattern holds at least one byte of ``needs`` (``needs`` has no letters,
    so case-insensitive flags change nothing)."""
    for op, av in subpattern:
        if op is _c.LITERAL and av in needs:
            return True
        if op is _c.IN and _class_within(av, needs):
            return True
        if op is _c.BRANCH and all(_always_holds(branch, needs) for branch in av[1]):
            return True
        if op is _c.SUBPATTERN and _always_holds(av[3], needs):
            return True
        if op in (_c.MAX_REPEAT, _c.MIN_REPEAT) and av[0] >= 1 and _always_holds(av[2], needs):
            return True
    return False


_NEEDING = [row for row, det in enumerate(DETECTORS) if det.needs]


def test_identifier_rows_need_a_digit_or_an_at_sign():
    assert {DETECTORS[row].signal for row in _NEEDING} >= {
        "nhs_number",
        "ni_number",
        "uk_phone",
        "payment_card",
        "uk_postcode",
        "date_of_birth",
        "email",
    }
    assert all(not any(chr(c).isalpha() for c in DETECTORS[row].needs) for row in _NEEDING)


@pytest.mark.parametrize("row", _NEEDING)
def test_every_match_holds_a_needed_byte(row):
    """The second pass starts a row's search at the line of the next byte of ``needs`` and stops where none is
    left: every match must hold one. Checked on the parsed pattern (some part that every path goes through
    matches only those bytes) and on the corpus; that matches lie within one line is checked above."""
    det = DETECTORS[row]
    parsed = _parser.parse(det.pattern.decode("latin-1"))
    assert _always_holds(parsed, det.needs), det.signal
    pattern = detectors_base.Regex(det.pattern, detectors_base.re2_options())
    for text in _texts_with_every_row()[:300]:
        for m in pattern.finditer(text):
            assert any(byte in det.needs for byte in m.group()), (det.signal, m.span())


def test_skipping_to_the_needed_byte_finds_what_the_whole_search_finds(monkeypatch):
    table = scanner()
    texts = _texts_with_every_row()
    rng = random.Random(18)
    texts += [b"lorem ipsum dolor\n" * rng.randint(1, 200) + text + b"\0 tail 12" for text in texts[:100]]
    skipping = [table.validate(t, table.present(t), float("inf")) for t in texts]
    monkeypatch.setattr(table, "_rows", tuple((*row[:-1], None) for row in table._rows))
    whole = [table.validate(t, table.present(t), float("inf")) for t in texts]
    assert skipping == whole
    assert sum(bool(counts) for counts in whole) > 100


# Pieces of identifiers, context words and filler, so that random joins put candidates, near-misses and the last
# needed byte of a text on the same line, on lines of their own, at the very start and at the very end.
_PIECES = st.sampled_from(
    [
        "943 476 5919",
        "9434765919",
        "07700 900123",
        "07296140722",
        "+44 20 7946 0000",
        "AB 12 34 56 C",
        "LS1 4DY",
        "4539 1488 0343 6467",
        "12-34-56 12345678",
        "jane.doe@nhs.net",
        "a@b",
        "DOB: 17/12/1980",
        "Jane Doe (12/03/1985)",
        "1234567890",
        "0123456789",
        "99/123456Z",
        "A1234BC",
        "NHS",
        "patient",
        "sort code",
        "HMRC UTR",
        "passport",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        "-",
        ".",
        ",",
        "x",
        "lorem ipsum",
        "7",
        "12",
    ]
)


@settings(max_examples=600, deadline=None)
@given(st.lists(_PIECES, max_size=30).map("".join))
def test_searching_only_between_needed_bytes_finds_what_the_whole_search_finds(text):
    """A row that needs a byte searches from the line of its next needed byte to the end of the line of its last
    one; without ``needs`` it searches the whole text. Same counts on any text."""
    table = scanner()
    data = text.encode()
    rows = table.present(data)
    skipping = table.validate(data, rows, float("inf"))
    whole = _whole_text_table().validate(data, rows, float("inf"))
    assert skipping == whole


@functools.cache
def _whole_text_table() -> Scanner:
    """A second table, compiled alike, whose rows all search the whole text (no ``needs``)."""
    table = scanner.__wrapped__()
    table._rows = tuple((*row[:-1], None) for row in table._rows)
    return table


def test_near_finds_context_words_in_any_case_inside_the_window_only():
    words = detectors_base.Words(b"nhs", b"a/c", b"nin ")
    text = b"x" * 100 + b"123" + b"y" * 100
    start, end = 100, 103
    for word, at, found in [
        (b"NHS", 20, True),  # ends 80 bytes before the candidate: inside
        (b"Nhs", 19, False),  # its last byte is 81 bytes before
        (b"a/c", 103 + 77, True),
        (b"a/c", 103 + 78, False),
        (b"nin ", 60, True),
        (b"nin", 60, False),
    ]:
        probe = text[:at] + word + text[at + len(word) :]
        assert detectors_base.near(probe, start, end, words) is found, (word, at)
    assert detectors_base.near(b"nhs 123", 4, 7, words)  # the window runs past both ends of the text


def test_context_phrases_take_runs_of_spaces_as_the_rows_do():
    # A no-break space beside a space normalises to two spaces; the phrase must still be found.
    words = detectors_base.Words(b"unique taxpayer")
    for gap in (b" ", b"  ", b"\t", b" \t "):
        assert detectors_base.near(b"unique" + gap + b"taxpayer 123", 20, 23, words), gap
    assert not detectors_base.near(b"uniquetaxpayer 123", 15, 18, words)
    assert "utr" in signals("My\xa0Unique \xa0Taxpayer \xa0Reference \xa0is \xa013713\xa024014.")
