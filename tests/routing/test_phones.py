"""``routing.phones`` and the phone row's parser shortcut give phonenumbers' own answers."""

from __future__ import annotations

import random

import phonenumbers
import pytest
import re2

from routing.detectors import IDENTIFIER_DETECTORS, _uk_nsn
from routing.phones import uk_number_type


def reference_type(nsn: str) -> int:  # a PhoneNumberType constant
    return phonenumbers.number_type(phonenumbers.PhoneNumber(country_code=44, national_number=int(nsn)))


@pytest.mark.parametrize("length", [7, 8, 9, 10, 11])
def test_number_type_matches_phonenumbers_for_every_four_digit_prefix(length):
    rng = random.Random(length)
    for prefix in range(1000, 10_000):
        for _ in range(2):
            nsn = str(prefix) + "".join(rng.choice("0123456789") for _ in range(length - 4))
            assert uk_number_type(nsn.encode()) == reference_type(nsn), nsn


@pytest.mark.parametrize(
    "nsn",
    ["7797123456", "7781123456", "7624123456", "1481256789", "1534123456", "1624231234", "7700900123", "8001111"],
)
def test_crown_dependencies_and_short_numbers(nsn):
    assert uk_number_type(nsn.encode()) == reference_type(nsn)


def candidates(rng: random.Random, n: int) -> list[str]:
    """Strings of the phone row's shapes, separators and parentheses included."""
    out = []
    for _ in range(n):
        lead = rng.choice(["0", "(0", "+44", "+44 ", "+44-", "+44(0)", "+44 (0) ", "0044", "00 44", "+ 44", "+44\t"])
        body = rng.choice("123456789") + "".join(rng.choice("0123456789") for _ in range(rng.choice((8, 9))))
        if rng.random() < 0.1:
            body = "180020" + body[6:]
        text = "(" if lead in ("0", "+44") and rng.random() < 0.2 else ""
        for i, c in enumerate(body):
            if i and rng.random() < 0.25:
                text += rng.choice([" ", "-", ")", "\t"])
            text += c
        out.append(lead + text)
    return out


def test_parser_shortcut_matches_phonenumbers_parse():
    row = next(d for d in IDENTIFIER_DETECTORS if d.signal == "uk_phone")  # the formatted numbers, not the bare row
    pattern = re2.compile(row.pattern)
    checked = 0
    for text in candidates(random.Random(5), 20_000):
        if not pattern.fullmatch(text.encode()):
            continue
        text = text.replace("\t", " ")  # as the row's validator does: phonenumbers takes no tabs
        nsn = _uk_nsn(text.encode())
        if nsn is None:
            continue
        number = phonenumbers.parse(text, "GB")
        assert (number.country_code, str(number.national_number)) == (44, nsn.decode()), text
        checked += 1
    assert checked > 5_000
