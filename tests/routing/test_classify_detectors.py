"""Detector rows one by one: what counts, and the near misses that must not."""

from __future__ import annotations

import random

import pytest
from stdnum.gb import nhs

from routing.classify import classify_text
from routing.detectors import DETECTORS, _nhs_mod11, scanner


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


def test_nhs_check_is_stdnums():
    rng = random.Random(4)
    numbers = ["".join(rng.choice("0123456789") for _ in range(10)) for _ in range(20_000)]
    assert sum(map(nhs.is_valid, numbers)) > 1_000  # both outcomes are exercised
    for number in numbers:
        assert _nhs_mod11(number.encode()) == nhs.is_valid(number), number
