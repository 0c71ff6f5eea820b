"""Writes ``generated.jsonl``: the faker-generated part of the classifier evaluation corpus.

Run ``python tests/routing/corpus/generate.py`` to regenerate (seeded; the output is committed so that the
tests do not depend on the installed faker version). Identifiers are built here with their check digits
computed from the published schemes (NHS mod 11, NI allocation rules, PNC/CRO mod 23, IBAN mod 97, Luhn,
UTR mod 11); the benign near misses are the same shapes with a wrong check digit or a banned prefix, each
verified to be invalid before it is written.
"""

from __future__ import annotations

import json
import random
import string
from collections.abc import Callable
from pathlib import Path

import phonenumbers
from faker import Faker
from stdnum import iban, luhn
from stdnum.gb import nhs, utr

SEED = 20250603
OUT = Path(__file__).with_name("generated.jsonl")
MOD23 = "ZABCDEFGHJKLMNPQRTUVWXY"

fake = Faker("en_GB")
Faker.seed(SEED)
rng = random.Random(SEED)


def digits(n: int) -> str:
    return "".join(rng.choice(string.digits) for _ in range(n))


def name() -> str:
    return f"{fake.first_name()} {fake.last_name()}"


def nhs_number(valid: bool = True) -> str:
    while True:
        body = str(rng.choice([4, 6, 7])) + digits(8)
        total = sum(int(c) * (10 - i) for i, c in enumerate(body))
        check = (11 - total % 11) % 11
        if check == 10:
            continue
        if not valid:
            check = (check + rng.randint(1, 9)) % 10
        number = body + str(check)
        if nhs.is_valid(number) == valid:
            return rng.choice(
                [
                    f"{number[:3]} {number[3:6]} {number[6:]}",
                    number,
                    f"{number[:3]}-{number[3:6]}-{number[6:]}",
                ]
            )


NI_FIRST = "ABCEGHJKLMNOPRSTWXYZ"
NI_SECOND = "ABCEGHJKLMNPRSTWXYZ"
NI_BANNED = {"BG", "GB", "KN", "NK", "NT", "TN", "ZZ"}


def ni_number(valid: bool = True) -> str:
    if valid:
        while True:
            prefix = rng.choice(NI_FIRST) + rng.choice(NI_SECOND)
            if prefix not in NI_BANNED:
                break
    else:
        prefix = rng.choice(
            [
                rng.choice("DFIQUV") + rng.choice(NI_SECOND),
                rng.choice(sorted(NI_BANNED)),
                rng.choice(NI_FIRST) + rng.choice("DFIQUVO"),
            ]
        )
    d = digits(6)
    suffix = rng.choice("ABCD")
    return rng.choice([f"{prefix} {d[:2]} {d[2:4]} {d[4:]} {suffix}", f"{prefix}{d}{suffix}"])


def pnc(valid: bool = True, form: str = "long") -> str:
    year = rng.randint(1975, 2024)
    serial = rng.randint(1, 999_999)
    letter = MOD23[int(f"{year % 100:02d}{serial:07d}") % 23]
    if not valid:
        letter = rng.choice([c for c in MOD23 if c != letter])
    if form == "long":
        return f"{year}/{serial:07d}{letter}"
    if form == "compact":
        return f"{year}{serial:07d}{letter}"
    return f"{year % 100:02d}/{serial}{letter}"


def cro(valid: bool = True, sf: bool = False) -> str:
    year = rng.randint(60, 99) if not sf else rng.randint(70, 99)
    serial = rng.randint(100, 999_999)
    letter = MOD23[int(f"{year:02d}{serial}") % 23] if sf else MOD23[int(f"{year:02d}{serial:06d}") % 23]
    if not valid:
        letter = rng.choice([c for c in MOD23 if c != letter])
    return f"SF{year:02d}/{serial}{letter}" if sf else f"{serial}/{year:02d}{letter}"


def card(valid: bool = True) -> str:
    prefix, length = rng.choice([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("34", 15), ("37", 15), ("6011", 16)])
    body = prefix + digits(length - len(prefix) - 1)
    check = luhn.calc_check_digit(body)
    if not valid:
        check = str((int(check) + rng.randint(1, 9)) % 10)
    n = body + check
    if length == 16:
        return rng.choice(
            [
                " ".join(n[i : i + 4] for i in range(0, 16, 4)),
                n,
                "-".join(n[i : i + 4] for i in range(0, 16, 4)),
            ]
        )
    return f"{n[:4]} {n[4:10]} {n[10:]}"


def gb_iban(valid: bool = True) -> str:
    bank = rng.choice(["NWBK", "BARC", "LOYD", "HBUK", "MIDL", "NAIA"])
    bban = bank + digits(14)
    check = iban.calc_check_digits("GB00" + bban)
    if not valid:
        check = f"{(int(check) + rng.randint(1, 50)) % 97 + 2:02d}"
    number = "GB" + check + bban
    if iban.is_valid(number) != valid:
        return gb_iban(valid)
    return rng.choice([number, " ".join(number[i : i + 4] for i in range(0, len(number), 4))])


def utr_number(valid: bool = True) -> str:
    while True:
        n = digits(10)
        if utr.is_valid(n) == valid and (valid or not nhs.is_valid(n)):
            return rng.choice([n, f"{n[:5]} {n[5:]}"])


def phone() -> str:
    while True:
        raw = rng.choice(
            [
                "07" + rng.choice("12345789") + digits(8),
                "020 " + rng.choice("378") + digits(7),
                "0161 " + rng.choice("2345789") + digits(6),
                "0113 " + rng.choice("2345") + digits(6),
            ]
        )
        number = phonenumbers.parse(raw, "GB")
        if phonenumbers.is_valid_number(number):
            formatted = phonenumbers.format_number(
                number,
                rng.choice([phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL]),
            )
            return formatted


def driving_licence(first: str, last: str) -> str:
    dob = fake.date_of_birth(minimum_age=18, maximum_age=80)
    surname = "".join(c for c in last.upper() if c.isalpha())[:5].ljust(5, "9")
    month = dob.month + (50 if rng.random() < 0.5 else 0)
    initials = (first[0] + "9").upper()
    decade, year = str(dob.year)[2], str(dob.year)[3]
    checks = rng.choice("ABCDEFGHJK") + rng.choice("ABCDEFGHJK")
    return f"{surname}{decade}{month:02d}{dob.day:02d}{year}{initials}9{checks}"


def dob_text() -> str:
    d = fake.date_of_birth(minimum_age=10, maximum_age=90)
    return rng.choice([d.strftime("%d/%m/%Y"), d.strftime("%d %B %Y"), d.isoformat(), d.strftime("%d.%m.%Y")])


Item = dict[str, object]
items: list[Item] = []


def add(label: str, text: str, signal: str | None = None, level: str = "OFFICIAL-SENSITIVE") -> None:
    item: Item = {
        "id": f"gen-{len(items):04d}",
        "label": label,
        "text": text,
        "source": "generated (faker en_GB)",
    }
    if label == "sensitive":
        item["signal"] = signal
        item["level"] = level
    items.append(item)


def each(n: int, fn: Callable[[int], None]) -> None:
    for i in range(n):
        fn(i)


# --- sensitive: identifiers in varied wording ------------------------------------------------------------

NHS_T = [
    "Patient {n}, NHS number {x}, attended the fracture clinic on Tuesday.",
    "NHS No: {x}",
    "Please update the GP record for {x} ({n}).",
    '{{"patient": "{n}", "nhs_number": "{x}"}}',
    "Her NHS number is {x} and she has been referred to the memory clinic.",
    "Referral received for {n} - NHS {x} - urgent.",
]
NI_T = [
    "National Insurance number: {x}",
    "{n}'s NI number is {x}.",
    "NINO {x} - claim for Universal Credit",
    "Employee {n} (NI {x}) started on 3 March.",
    "Can you check the contributions record for {x}?",
]
PNC_T = [
    "PNC ID {x} for the subject.",
    "Police National Computer reference: {x}",
    "Subject's PNC number is {x}",
    "Check {x} on PNC before the interview.",
    "pnc_id,{x},arrest summons",
]
CRO_T = [
    "CRO number {x}",
    "CRO: {x} (fingerprint record)",
    "The criminal record office number is {x}.",
    "Please link CRO {x} to the nominal.",
]
PRISON_T = [
    "Prison number {x}",
    "{n} ({x}) was moved to HMP Leeds on Friday.",
    "NOMS number: {x}",
    "Prisoner {x} has a parole hearing next month.",
]
CRN_T = [
    "CRN: {x}",
    "Probation case reference {x} - initial assessment due.",
    "nDelius CRN {x} for {n}",
    "Offender manager to review case {x} (probation) next week.",
]
PASS_T = ["Passport number {x}", "{n} travelled on passport {x}.", "UK passport no. {x}, expires 2031."]
DL_T = ["Driving licence number: {x}", "{n} produced DVLA licence {x} at the roadside.", "Licence {x}"]
BANK_T = [
    "Sort code {s}, account number {a}",
    "Please pay into account {a}, sort code {s}.",
    "Bank details: {s} / {a} (current account)",
    "a/c {a} s/c {s}",
]
IBAN_T = ["IBAN: {x}", "Transfer the refund to {x} please.", "Beneficiary {n}, IBAN {x}"]
CARD_T = [
    "Card number {x}, expiry 09/27",
    "Paid with {x}.",
    "My card is {x} - please refund it.",
    "card: {x} cvv 123",
]
UTR_T = [
    "UTR: {x}",
    "My Unique Taxpayer Reference is {x}.",
    "Self Assessment UTR {x} for {n}",
    "HMRC tax reference {x} - return outstanding.",
]
EMAIL_T = ["Email {x} for details.", "Contact: {n} <{x}>", "reply to {x} before Friday", "{x}"]
PHONE_T = ["Call me on {x}.", "Mobile: {x}", "{n}, tel {x}", "You can reach her on {x} after 6pm."]
POST_T = ["{n} lives at {a}", "Address: {a}", "Deliver to {p} please.", "Her postcode is {p}."]
DOB_T = [
    "{n}, DOB {d}",
    "Name: {n}\nDate of birth: {d}",
    "{n} (born {d}) was assessed today.",
    "D.O.B: {d} - {n}",
    "{n} was born on {d} in Leeds.",
]
JUSTICE_T = [
    "{n} was convicted of burglary at Leeds Crown Court and sentenced to 18 months.",
    "Victim: {n}. The suspect is known to her.",
    "Mr {l} is on probation and reports weekly to his offender manager.",
    "{n} has been remanded in custody pending trial.",
    "The witness, {n}, gave a statement to police on Monday.",
    "Safeguarding concern raised about {n}, aged 14, following a disclosure at school.",
    "Mrs {l} was a victim of domestic abuse and has a non-molestation order.",
    "{n} pleaded guilty to theft and received a community order.",
    "Parole hearing for {n} scheduled; risk assessment attached.",
    "{ul}, {f} - previous convictions for assault (2019, 2021).",
    "Ms {l} was arrested on suspicion of harassment last night.",
    "Draft pre-sentence report for {n}: the defendant accepts responsibility.",
]


def gen_identifiers() -> None:
    each(14, lambda i: add("sensitive", rng.choice(NHS_T).format(n=name(), x=nhs_number()), "nhs_number"))
    each(14, lambda i: add("sensitive", rng.choice(NI_T).format(n=name(), x=ni_number()), "ni_number"))
    each(
        14,
        lambda i: add(
            "sensitive",
            rng.choice(PNC_T).format(x=pnc(form=rng.choice(["long", "compact", "short"]))),
            "pnc_id",
        ),
    )
    each(12, lambda i: add("sensitive", rng.choice(CRO_T).format(x=cro(sf=i % 3 == 0)), "cro_number"))

    def prison(i: int) -> None:
        x = rng.choice("AG") + digits(4) + rng.choice(string.ascii_uppercase) + rng.choice(string.ascii_uppercase)
        add("sensitive", rng.choice(PRISON_T).format(n=name(), x=x), "prison_number")

    each(10, prison)
    each(
        10,
        lambda i: add(
            "sensitive",
            rng.choice(CRN_T).format(n=name(), x=rng.choice("ABCDEX") + digits(6)),
            "probation_crn",
        ),
    )

    def passport(i: int) -> None:
        x = "".join(rng.choice(string.ascii_uppercase) for _ in range(2)) + digits(7) if i % 3 else digits(9)
        t = rng.choice(PASS_T) if i % 3 else "Passport number {x}"
        add("sensitive", t.format(n=name(), x=x), "uk_passport")

    each(10, passport)

    def licence(i: int) -> None:
        first, last = fake.first_name(), fake.last_name()
        add(
            "sensitive",
            rng.choice(DL_T).format(n=f"{first} {last}", x=driving_licence(first, last)),
            "driving_licence",
        )

    each(10, licence)

    def bank(i: int) -> None:
        s = digits(6)
        add(
            "sensitive",
            rng.choice(BANK_T).format(s=f"{s[:2]}-{s[2:4]}-{s[4:]}", a=digits(8)),
            "sort_code_account",
        )

    each(10, bank)
    each(10, lambda i: add("sensitive", rng.choice(IBAN_T).format(n=name(), x=gb_iban()), "iban"))
    each(12, lambda i: add("sensitive", rng.choice(CARD_T).format(x=card()), "payment_card"))
    each(10, lambda i: add("sensitive", rng.choice(UTR_T).format(n=name(), x=utr_number()), "utr"))
    each(12, lambda i: add("sensitive", rng.choice(EMAIL_T).format(n=name(), x=fake.free_email()), "email"))
    each(12, lambda i: add("sensitive", rng.choice(PHONE_T).format(n=name(), x=phone()), "uk_phone"))

    def postcode(i: int) -> None:
        p = rng.choice(
            [
                "SW1A 2AA",
                "LS1 4DY",
                "M60 1NW",
                "EH1 1YZ",
                "CF10 3NQ",
                "B33 8TH",
                "BT1 5GS",
                "NE1 7RU",
                "G2 1DY",
                "CR2 6XH",
                "DN55 1PT",
                "EC1A 1BB",
                "W1A 1HQ",
                "BS1 6QH",
                "L3 9PP",
            ]
        )
        a = f"{rng.randint(1, 200)} {fake.street_name()}, {fake.city()} {p}"
        add("sensitive", rng.choice(POST_T).format(n=name(), a=a, p=p), "uk_postcode")

    each(12, postcode)
    each(14, lambda i: add("sensitive", rng.choice(DOB_T).format(n=name(), d=dob_text()), "date_of_birth"))

    def justice(i: int) -> None:
        first, last = fake.first_name(), fake.last_name()
        t = JUSTICE_T[i % len(JUSTICE_T)]
        add(
            "sensitive",
            t.format(n=f"{first} {last}", l=last, f=first, ul=last.upper()),
            "justice_context_named_person",
        )

    each(30, justice)


# --- sensitive: markings in varied positions -------------------------------------------------------------

MARKINGS = [
    ("OFFICIAL-SENSITIVE", "marking_official_sensitive", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL - SENSITIVE", "marking_official_sensitive", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL SENSITIVE", "marking_official_sensitive", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL: SENSITIVE: PERSONAL", "marking_official_sensitive", "OFFICIAL-SENSITIVE"),
    ("OFFICIAL-SENSITIVE: COMMERCIAL", "marking_official_sensitive", "OFFICIAL-SENSITIVE"),
    ("SECRET", "marking_secret", "SECRET"),
    ("SECRET - UK EYES ONLY", "marking_secret", "SECRET"),
    ("TOP SECRET", "marking_top_secret", "TOP SECRET"),
    ("TOP SECRET//UK EYES ONLY", "marking_top_secret", "TOP SECRET"),
    ("UK EYES ONLY", "marking_caveat", "OFFICIAL-SENSITIVE"),
    ("RESTRICTED", "marking_legacy_restricted", "OFFICIAL-SENSITIVE"),
    ("CONFIDENTIAL", "marking_legacy_confidential", "OFFICIAL-SENSITIVE"),
]
POSITIONS = [
    "{m}\n\n{b}",
    "{b}\n\n{m}",
    "{m}\n\n{b}\n\n{m}",
    "*** {m} ***\n{b}",
    "[{m}]\n{b}",
    "Classification: {m}\n\n{b}",
    "Protective marking: {m}\n{b}",
    "Subject: {m} - {t}\n\n{b}",
]


def gen_markings() -> None:
    for i in range(60):
        marking, signal, level = MARKINGS[i % len(MARKINGS)]
        body = fake.paragraph(nb_sentences=4)
        text = POSITIONS[(i // len(MARKINGS) + i) % len(POSITIONS)].format(m=marking, b=body, t=fake.catch_phrase())
        add("sensitive", text, signal, level)


# --- benign: near misses ---------------------------------------------------------------------------------


def gen_near_misses() -> None:
    each(10, lambda i: add("benign", f"Order reference {nhs_number(valid=False)} has been dispatched."))
    each(10, lambda i: add("benign", f"Form field example: {ni_number(valid=False)}"))
    each(8, lambda i: add("benign", f"Ticket {pnc(valid=False, form=rng.choice(['long', 'compact']))} closed."))
    each(8, lambda i: add("benign", f"Batch {cro(valid=False)} shipped to the warehouse."))
    each(8, lambda i: add("benign", f"Invoice total ref {card(valid=False)} (not a card)."))
    each(8, lambda i: add("benign", f"Sample IBAN with a bad checksum: {gb_iban(valid=False)}"))
    each(6, lambda i: add("benign", f"Tracking number {utr_number(valid=False)} for the parcel."))
    each(
        6,
        lambda i: add(
            "benign", f"Build {rng.randint(1_000_000_000, 1_999_999_999)} finished in {rng.randint(2, 90)}s."
        ),
    )
    each(6, lambda i: add("benign", f"Contact {fake.safe_email()} for access (documentation example)."))
    each(
        6,
        lambda i: add("benign", f"Call the helpline on 0800 {digits(3)} {digits(4)} or 0300 {digits(3)} {digits(4)}."),
    )
    drama = ["020 7946 0{:03d}", "0161 496 0{:03d}", "0113 496 0{:03d}", "07700 900{:03d}", "01632 960{:03d}"]
    each(
        6,
        lambda i: add("benign", f"Fictional number from the script: {rng.choice(drama).format(rng.randint(0, 999))}"),
    )


PROSE = [
    "The secret to good bread is a long, slow prove.",
    "See the official documentation for the full list of options.",
    "It is no secret that the project ran over budget.",
    "Official statistics show a rise in house prices this quarter.",
    "This moisturiser is designed for sensitive skin.",
    "Access to the staff car park is restricted after 6pm.",
    "I will keep what you told me confidential.",
    "Top secret tip: add a pinch of salt to your coffee.",
    "The Secret Garden is a novel by Frances Hodgson Burnett.",
    "Her official title is Director of Digital Services.",
]
LEGAL = [
    "The maximum sentence for burglary of a dwelling is 14 years' imprisonment.",
    "Section 18 of the Offences Against the Person Act 1861 covers wounding with intent.",
    "The Sentencing Council publishes guidelines that courts must follow unless contrary to the interests of justice.",
    "Probation services in England and Wales were reunified in June 2021.",
    "A community order can include unpaid work, a curfew and rehabilitation activity requirements.",
    "Victims have rights under the Code of Practice for Victims of Crime.",
    "The Crown Prosecution Service decides whether a suspect should be charged.",
    "Magistrates' courts deal with summary offences and some either-way offences.",
    "In R v Brown [1994] 1 AC 212 the House of Lords considered consent to assault.",
    "Safeguarding adults boards were put on a statutory footing by the Care Act 2014.",
]


def gen_benign_text() -> None:
    each(40, lambda i: add("benign", fake.paragraph(nb_sentences=rng.randint(3, 8))))
    each(20, lambda i: add("benign", f"{rng.choice(PROSE)} {fake.sentence()}"))
    each(20, lambda i: add("benign", f"{rng.choice(LEGAL)} {fake.sentence()}"))
    each(
        10,
        lambda i: add("benign", f"{fake.company()} announced {fake.catch_phrase().lower()} on {fake.date()}."),
    )


def main() -> None:
    gen_identifiers()
    gen_markings()
    gen_near_misses()
    gen_benign_text()
    with OUT.open("w", encoding="utf-8") as fh:
        fh.write(
            json.dumps(
                {
                    "_comment": "Generated by generate.py with faker en_GB, seed "
                    f"{SEED}; identifiers synthetic, check digits computed from the public schemes."
                }
            )
            + "\n"
        )
        for item in items:
            fh.write(json.dumps(item, ensure_ascii=False) + "\n")
    print(f"wrote {len(items)} items to {OUT}")


if __name__ == "__main__":
    main()
