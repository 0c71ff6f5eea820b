"""The detector table: UK personal and criminal-justice identifiers, and named people in justice context.

One row per signal shape (see ``detectors_base.Detector``). Patterns only find candidates; a candidate
counts when its validator accepts it, so "numbers that look right" do not: check digits are verified
(``python-stdnum`` where it has the scheme, except the NHS mod-11 sum, which is computed here the same way in one
C-level pass; the PNC/CRO mod-23 letter here, as the Police National Computer defines it), allocation rules
applied (NI number prefixes and letters), and identifiers whose shape alone is too common (probation CRN, old
9-digit passports, UTR, sort code + account) need a context word nearby. Fake ranges that can never identify
anyone (NHS 999 test range, Ofcom drama phone numbers, published test card numbers, ``example.com``) do not count,
nor do details that identify an organisation rather than a person: a postcode in an organisation's address, a
team's mailbox, a colleague's public-sector address on an e-mail's header lines (``_postcode``, ``_email``).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from dataclasses import replace
from functools import cache
from operator import mul
from typing import Any

import phonenumbers
from phonenumbers import PhoneNumberType
from stdnum import iban as _iban
from stdnum import luhn as _luhn
from stdnum.gb import utr as _utr

from routing import names, normalize, tables
from routing.detectors_base import Detector, Match, Regex, Scanner, Words, near, re2_options
from routing.levels import Level
from routing.markings import MARKING_DETECTORS
from routing.phones import uk_number_type

OS = Level.OFFICIAL_SENSITIVE
_NON_DIGITS = bytes(c for c in range(256) if not 0x30 <= c <= 0x39)
_MOD23 = b"ZABCDEFGHJKLMNPQRTUVWXY"  # PNC and CRO check letters (no I, O, S)


def _digits(raw: bytes) -> bytes:
    return raw.translate(None, _NON_DIGITS)


_RUNS = b"01234567890123456789", b"98765432109876543210"
# Every run of one digit and every stretch of the two sequences, up to 20 digits: one set lookup per candidate.
_PLACEHOLDERS = frozenset(
    {bytes([digit]) * n for digit in b"0123456789" for n in range(1, 21)}
    | {run[i : i + n] for run in _RUNS for n in range(1, 21) for i in range(len(run) - n + 1)}
)


def _placeholder(d: bytes) -> bool:
    """``0123456789``, ``9876543210``, ``0000000000``: form-filler placeholders, not anyone's number."""
    return d in _PLACEHOLDERS


def _mod23_ok(number: bytes, letter: int) -> bool:
    return _MOD23[int(number) % 23] == letter


# --- health, tax, national insurance ---------------------------------------------------------------------

_UTR_CONTEXT = Words(
    b"utr",
    b"unique taxpayer",
    b"taxpayer reference",
    b"tax reference",
    b"self assessment",
    b"self-assessment",
    b"hmrc",
    b"sa302",
    b"sa100",
    b"tax return",
    b"tax year",
    b"taxyear",
)
_NHS_CONTEXT = Words(b"nhs", b"chi number", b"patient", b"health")
# stdnum.gb.nhs.checksum's weights (10 for the first digit down to 1 for the check digit), applied to the ASCII
# codes: the codes are the digits plus 48, and 48 times the weights' sum (55) is a multiple of 11, so the sum
# modulo 11 is the same. One C-level pass instead of a generator over a decoded string.
_NHS_WEIGHTS = (10, 9, 8, 7, 6, 5, 4, 3, 2, 1)


_INTERNATIONAL_PREFIX = Regex(rb"\+[0-9]{1,3}[ \t.\-]{0,2}\(?$", re2_options(1 << 20))


_NHS_EXAMPLE = b"9434765919"
_CODE_TEST = Regex(rb"(?i:\btest|\bassert|pytest|\bdummy|\bfixture|\bvalidat)", re2_options(1 << 20))


# A label that says what a number or a code is, when it is not a person's: an order's, an invoice's, a parcel's, a
# ticket's, a release's, a product's ("SKU A4471KT", "toner part no. A4821DK").
_OTHER_NUMBER_LABEL = Regex(
    rb"(?i:\b(?:order|invoice|purchase[ \t]+order|po|tracking|parcel|consignment|ticket|incident|inc|sku|serial"
    rb"|transaction|booking|confirmation|policy|quote|quotation|customer|account|batch|lot|job|version|build|release"
    rb"|part|stock|product|item|model|cat(?:alogue)?)"
    rb"[ \t]*(?:no|number|num|code|ref(?:erence)?|id|#)?\.?[ \t]*[:#=\-]?[ \t]*)$",
    re2_options(1 << 20),
)


def _nhs_number(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    raw = m.group()
    d = _digits(raw)  # ten digits, as the pattern has them: the mod-11 checksum alone is its whole test
    if d.startswith(b"999") or sum(map(mul, d, _NHS_WEIGHTS)) % 11 or _placeholder(d):
        return None  # 999 000 0000-999 999 9999 is the test range: never issued to anyone
    start, end = m.span()
    if d == _NHS_EXAMPLE and (_an_example(text, start) or _CODE_TEST.found(text, max(0, start - 200), start)):
        return None  # NHS Digital's documented example, in a guide or a test
    if b"+" in text[max(0, start - 8) : start] and _INTERNATIONAL_PREFIX.ends_at(text, start, 8):
        return None  # "+1 212-555-0147": a telephone number after its country code
    health = near(text, start, end, _NHS_CONTEXT)
    if not health and _OTHER_NUMBER_LABEL.ends_at(text, start, 32):
        return None  # "Order number: 4194814061": a number that its label says is something else
    if not health and near(text, start, end, _UTR_CONTEXT) and _utr.is_valid(d.decode()):
        return "utr"  # a valid UTR among tax words, and nothing says health: counted as what it most likely is
    if len(raw) == 10 and d[:1] in b"12" and not health:
        return None  # bare 1xxxxxxxxx/2xxxxxxxxx: Unix timestamps and order numbers; NHS never issued these
    return "nhs_number"


def _utr_number(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    d = _digits(m.group())
    if not _placeholder(d) and near(text, m.start(), m.end(), _UTR_CONTEXT) and _utr.is_valid(d.decode()):
        return "utr"
    return None


_NINO_BAD_PREFIX = frozenset({b"BG", b"GB", b"KN", b"NK", b"NT", b"TN", b"ZZ"})
_NINO_EXAMPLE = b"AB123456C"  # the format's usual example in forms, guides and data dictionaries (HMRC's QQ is refused)
# Lower-case "at 12 34 56 a" in prose is not a NI number unless the text says so.
_NINO_WORDS = frozenset(
    {
        b"AT",
        b"AN",
        b"AS",
        b"BE",
        b"BY",
        b"HE",
        b"ME",
        b"MY",
        b"ON",
        b"OR",
        b"WE",
        b"AM",
        b"AH",
        b"EH",
        b"HA",
        b"HM",
        b"OH",
        b"PA",
        b"MA",
        b"YA",
        b"YE",
        b"YO",
        b"OW",
        b"AW",
        b"OK",
        b"LA",
    }
)
_NINO_CONTEXT = Words(b"insurance", b"nino", b"ni number", b"ni no", b"nin ")


def _ni_number(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    raw = m.group()
    start, end = m.span()
    if text[end : end + 1].isdigit() and start > 0 and text[start - 1 : start] not in (b" ", b"\t", b"\n"):
        return None  # a digit runs on only in a fixed-width record's field, which starts after spacing
    s = raw.upper().translate(None, b" \t.-")
    a, b = s[0:1], s[1:2]
    if a in b"DFIQUV" or b in b"DFIQUVO" or s[:2] in _NINO_BAD_PREFIX or s == _NINO_EXAMPLE:
        return None
    spaced_word = not raw[:2].isupper() and len(raw) > 9 and s[:2] in _NINO_WORDS
    if spaced_word and not near(text, m.start(), m.end(), _NINO_CONTEXT):
        return None
    return "ni_number"


# --- police and justice identifiers ----------------------------------------------------------------------

_PNC_CONTEXT = Words(b"pnc", b"police national computer")
_CRO_CONTEXT = Words(b"cro", b"criminal record")
_PRISON_CONTEXT = Words(b"prison", b"noms", b"hmp", b"inmate", b"offender", b"custody", b"booking", b"parole")
_CRN_CONTEXT = Words(b"crn", b"case reference", b"case ref", b"probation", b"delius", b"oasys", b"psr", b"pdu")


def _pnc_long(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    raw = m.group()  # YYYY/NNNNNNNC or YYYYNNNNNNNC; the check covers YY + 7-digit serial
    d = _digits(raw)
    return "pnc_id" if _mod23_ok(d[2:4] + d[4:11], raw[-1]) else None


def _pnc_short(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    raw = m.group()  # YY/N..NC, serial padded to 7
    year, serial = raw[:-1].split(b"/")
    if len(serial) < 2 and not near(text, m.start(), m.end(), _PNC_CONTEXT, 40):
        return None
    return "pnc_id" if _mod23_ok(year + serial.rjust(7, b"0"), raw[-1]) else None


def _pnc_bare(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    raw = m.group()  # YYN..NC without the slash: only where the text says PNC
    if not near(text, m.start(), m.end(), _PNC_CONTEXT, 40):
        return None
    return "pnc_id" if _mod23_ok(raw[:2] + raw[2:-1].rjust(7, b"0"), raw[-1]) else None


def _cro_standard(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    raw = m.group()  # N..N/YYC, serial padded to 6, checked as YY + serial
    serial, year = raw[:-1].split(b"/")
    if len(serial) < 3 and not near(text, m.start(), m.end(), _CRO_CONTEXT, 40):
        return None
    return "cro_number" if _mod23_ok(year + serial.rjust(6, b"0"), raw[-1]) else None


def _cro_search_file(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    raw = m.group()  # SFYY/N..NC: search-file numbers check YY + the serial padded to five digits
    year, serial = raw[2:-1].split(b"/")
    return "cro_number" if _mod23_ok(year + serial.rjust(5, b"0"), raw[-1]) else None


_PRISON_NUMBER_EXAMPLE = b"A1234BC"  # the format's usual example in guides and data dictionaries
# Words that say the identifier before them stands for its format ("the usual example A1234BC", "a postcode such as
# SW1A 1AA", "regex ... e.g. EC1A 1BB"): the formats' usual examples then count for nothing.
# (A word of prose: not "intranet.example/search?q=...".)
_EXAMPLE_CUE = Regex(
    rb"(?i:(?:^|[ \t(,;:\"'])(?:examples?|e\.g\.?|eg|such[ \t]+as|like|for[ \t]+instance|formats?|pattern|regex"
    rb"|placeholder)\b[^\n]{0,48}$)",
    re2_options(1 << 20),
)


def _an_example(text: bytes, start: int) -> bool:
    """A format's usual example value, as one: after a word that says so, or in a text that says its data is
    synthetic, dummy or made up (a test fixture)."""
    return _EXAMPLE_CUE.ends_at(text, start, 72) or _invented(text, start, start)


def _prison_number(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    raw = m.group()
    if len(set(raw[1:5])) == 1 or (raw.upper() == _PRISON_NUMBER_EXAMPLE and _an_example(text, m.start())):
        return None  # A0000AA: a form's or a fixture's placeholder; A1234BC as a guide's example
    if _OTHER_NUMBER_LABEL.ends_at(text, m.start() + (len(raw) - len(raw.lstrip(b" \t(,;:"))), 32):
        return None  # a product's code of the same shape: "SKU A4471KT", "toner part no. A4821DK"
    if (raw[:1] in b"AG" and raw.isupper()) or near(text, m.start(), m.end(), _PRISON_CONTEXT):
        return "prison_number"
    return None


# A CRN in lower case ("crn x123456"), as chat writes it, only right after its label.
_CRN_LABEL = Regex(rb"(?i:\bcrn)[ \t:#.\-]{0,4}$", re2_options(1 << 20))


def _crn(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    if m.group()[0] >= 0x61 and not _CRN_LABEL.ends_at(text, m.start(), 12):  # a-z
        return None
    if _OTHER_NUMBER_LABEL.ends_at(text, m.start(), 32):
        return None  # "release D482913", "build X102938": a version's or a ticket's number
    if _an_example(text, m.start()):
        return None  # "a CRN (e.g. X123456)", a fixture's synthetic record
    return "probation_crn" if near(text, m.start(), m.end(), _CRN_CONTEXT) else None


# --- travel and driving ----------------------------------------------------------------------------------


_PASSPORT_CONTEXT = Words(b"passport")


# Two letters and seven digits that are other things' numbers: Microsoft's knowledge-base articles (KB5039212).
_NOT_PASSPORT_PREFIXES = frozenset({b"KB"})


def _passport_letters(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    return None if m.group()[:2].upper() in _NOT_PASSPORT_PREFIXES else "uk_passport"


def _passport_digits(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    if _an_example(text, m.start()):
        return None  # "the field accepts 9 digits (e.g. 123456789)"
    return "uk_passport" if near(text, m.start(), m.end(), _PASSPORT_CONTEXT) else None


_LICENCE_EXAMPLE = b"MORGA753116SM9IJ"  # DVLA's own published example (Sarah Meredith Morgan), in guides and forms


def _driving_licence(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    s = b"".join(m.group().split()).upper()  # SSSSS D MM DD Y II N CC, as printed in groups or not
    if s[:16] == _LICENCE_EXAMPLE and _an_example(text, m.start()):
        return None
    surname = s[:5].rstrip(b"9")
    if not surname or not surname.isalpha():
        return None
    month, day = int(s[6:8]), int(s[8:10])
    if month > 50:
        month -= 50
    if not (1 <= month <= 12 and 1 <= day <= 31) or not s[11:12].isalpha():
        return None
    return "driving_licence"


# --- money -----------------------------------------------------------------------------------------------

_BANK_CONTEXT = Words(b"sort", b"account", b"acc no", b"acct", b"a/c", b"bank", b"acc", b"refund", b"payee")
_TEST_CARDS = frozenset(
    {
        b"4111111111111111",
        b"4242424242424242",
        b"5555555555554444",
        b"5105105105105100",
        b"4012888888881881",
        b"378282246310005",
        b"371449635398431",
        b"6011111111111117",
        b"4000056655665556",
        b"2223003122003222",
        b"4000000000000002",
        b"30569309025904",
        b"3530111333300000",
        b"4444333322221111",  # GOV.UK Pay's sandbox cards
        b"4000160000000004",
        b"5101180000000007",
    }
)


# An account number on the lines after a labelled sort code ("Sort code: 52 19 36" then "Account no: 24151480").
_ACCOUNT_AFTER = Regex(rb"(?:^|[^0-9])[0-9]{8}(?:[^0-9]|$)", re2_options(1 << 20))
_ACCOUNT_LOOK = 80


_NOT_BANK_LABEL = Regex(
    rb"(?i:\bvat\b|company[ \t]+(?:no|number|reg)|registration|invoice|purchase[ \t]+order|\bpo[ \t]+(?:no|number)"
    rb"|order[ \t]+(?:no|number|ref))",
    re2_options(1 << 20),
)


# The Government Banking Service's sort codes (Citi's 08-32, NatWest's 60-70-80): public bodies' accounts, as HMRC's
# and the courts' "how to pay" pages give them; no private person banks there.
_GOVERNMENT_SORT_CODES = (b"0832", b"607080")


def _sort_code_account(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    digits = _digits(m.group())
    if not digits.strip(b"0"):
        return None  # 00-00-00 / 00000000: a layout's or a form's example
    start, end = m.span()
    if digits.startswith(_GOVERNMENT_SORT_CODES):
        return None
    if _business_account(text, start):
        return None
    if m.group(b"labelled") is None and _NOT_BANK_LABEL.found(text, max(0, start - 24), end):
        return None  # a VAT or company registration number, an invoice's or order's: no sort code said so
    if m.group(b"labelled") is None:  # sort code and account on one line
        return "sort_code_account" if near(text, m.start(), m.end(), _BANK_CONTEXT, 40) else None
    end = m.end()
    return "sort_code_account" if _ACCOUNT_AFTER.found(text, end, end + _ACCOUNT_LOOK) else None


_IBAN_EXAMPLE = b"GB82WEST12345698765432"  # the IBAN standard's (ECBS) own example, in documentation and tests


def _iban_gb(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    compact = b"".join(m.group().split()).upper()
    if compact == _IBAN_EXAMPLE or _business_account(text, m.start()):
        return None
    return "iban" if _iban.is_valid(compact.decode()) else None


# Other countries' IBANs that documentation and tests use (Germany's, France's, the Netherlands').
_IBAN_EXAMPLES_ABROAD = frozenset((b"DE89370400440532013000", b"FR1420041010050500013M02606", b"NL91ABNA0417164300"))


# A company's account: an invoice's or a supplier's details before it (also Polish "rachunek firmowy", "Sp. z o.o.").
_BUSINESS_ACCOUNT = Regex(
    rb"(?i:\b(?:invoice|faktura|vat|nip|company|supplier|vendor|firmowy|sp\.[ \t]*z[ \t]*o\.[ \t]*o|gmbh|ltd|limited"
    rb"|s\.a\.|srl|llc|plc|remittances?|government[ \t]+banking|gbs|receipts[ \t]+(?:acc|account)"
    # a public body's own account, as its "how to pay" page gives it: "Account name: HMCTS Fines Receipts"
    rb"|account[ \t]+name[ \t]*:[ \t]*(?:hmcts|hmrc|hmpps|hm[ \t]+courts|ministry|department|council|the[ \t]+)))",
    re2_options(1 << 20),
)


def _business_account(text: bytes, start: int) -> bool:
    """An organisation's account: an invoice's, a supplier's or a public body's details before ``start``, and no
    one named there (a refund to a person on the same page stays theirs)."""
    lo = max(0, start - 200)
    return _BUSINESS_ACCOUNT.found(text, lo, start) and not names.find_person(text, lo, start)


def _iban_abroad(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    """Another country's IBAN (a victim's or a witness's account abroad): its own format and check digits; not a
    company's on an invoice."""
    compact = b"".join(m.group().split())
    if compact[:2] == b"GB":
        return None  # the GB row's
    if _business_account(text, m.start()):
        return None
    return "iban" if compact not in _IBAN_EXAMPLES_ABROAD and _iban.is_valid(compact.decode()) else None


def _card_brand_ok(d: bytes) -> bool:
    n = len(d)
    two, four = int(d[:2]), int(d[:4])
    if d[:1] == b"4":
        return n in (13, 16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if d[:1] == b"6" or two in (36, 38, 39) or 300 <= int(d[:3]) <= 305 or 3528 <= four <= 3589:
        return n >= 14
    return two in (50, 56, 57, 58) and n >= 13  # Maestro


# The start of an IBAN (country, check digits, bank code) just before a card-shaped run: the run is the IBAN's
# sort code and account ("GB08 NWBK 6073 1026 7625 98"), not a card.
_IBAN_BEFORE = Regex(rb"\b[A-Z]{2}\d{2}[ \t]?(?:[A-Z0-9]{4}[ \t]?){1,2}$", re2_options(1 << 20))


def _payment_card(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    if _IBAN_BEFORE.ends_at(text, m.start(), 16):
        return None
    # A card number followed by more digits in the same run ("4539 1488 0343 6467 123": a CVV, an amount) is
    # a candidate that fails as a whole; its groups are tried again without the trailing ones.
    groups = m.group().replace(b"-", b" ").replace(b".", b" ").split()
    while groups:
        d = b"".join(groups)
        if (
            13 <= len(d) <= 19
            and d not in _TEST_CARDS
            and not _placeholder(d)
            and _card_brand_ok(d)
            and _luhn.is_valid(d.decode())
        ):
            return "payment_card"
        if len(groups) == 1:
            return None
        groups.pop()
    return None


# --- contact details -------------------------------------------------------------------------------------

_EXAMPLE_DOMAINS = (b"example.com", b"example.org", b"example.net", b"example.co.uk", b"example.gov.uk")
_EXAMPLE_TLDS = (b".example", b".test", b".invalid", b".localhost", b".local")
_ROBOT_LOCAL = frozenset({b"git", b"noreply", b"no-reply", b"donotreply", b"do-not-reply", b"mailer-daemon"})
# A team's or a function's mailbox (data.protection@, private.office@, pdu.north@, ycs.ops@) names no one: its
# local part is made only of such words. One word that is not (a name, initials) makes it a person's address.
_FUNCTION_WORDS = frozenset(
    b"admin analysis analytical analytics accounts aid assurance bookings business care casework central centre "
    b"commissioning communications comms complaints compliance contact contracts correspondence data delivery "
    b"desk digital directorate enquiries enquiry estates events finance foi general governance group help helpdesk "
    b"hr hub info information intelligence it legal mail media north east south west office operations ops "
    b"payroll pdu performance policy press private probation procurement programme project protection public "
    b"records reception recruitment reducing reoffending response safeguarding secretariat security service "
    b"services strategy support team training unit victims wales england london ycs youth listing court courts "
    b"alerts newsletter bulletin referral referrals regional region northwest northeast southwest southeast "
    b"midlands yorkshire humber cymru scotland all staff everyone internal external national crowncourt "
    b"countycourt magistrates tribunal tribunals dpo ops transport travel fleet facilities witness witnesses "
    b"cps hmcts hmpps moj laa opg cica noms".split()
)
_LOCAL_SEPARATORS = bytes.maketrans(b"._-+", b"    ")


# Public-sector mail domains, and the header lines of a message: a colleague's work address in the From/To/Cc of
# pasted correspondence is routine business contact detail (OFFICIAL), the same address elsewhere still counts.
_PUBLIC_SECTOR_DOMAINS = (
    b".gov.uk",
    b".nhs.uk",
    b"nhs.net",
    b".police.uk",
    b".mod.uk",
    b"cjsm.net",
    b".gov.scot",
    b".gov.wales",
    b".parliament.uk",
)
_HEADER_LINE = Regex(  # from the start of the line
    # (after a JSON key, as the decoded view writes a string value: "body: From: ...")
    rb"(?:[A-Za-z_][A-Za-z0-9_]{0,30}:[ \t]+)?(?:[ \t>\"]|<[A-Za-z/][^<>\n]{0,200}>)*"
    rb"(?i:from|to|cc|bcc|reply-to|sender|sent[ \t]+by"
    # a meeting's invitees, a commit's author, a directory's or a signature's address line
    rb"|required|optional|attendees?|invitees?|organi[sz]er|author|committer|reviewers?|assignee|signed-off-by"
    rb"|co-authored-by|e-?mail|contact"
    # a message's machine identifiers
    rb"|message-id|in-reply-to|references|thread-index)"
    rb"(?:[ \t]|</[A-Za-z]{1,8}>)*:",
    re2_options(1 << 20),
)


_LINE_LOOK = 1024  # how far back a validator looks for the start of a candidate's line
# Line breaks as text still escaped or marked up writes them (a mail pasted into a JSON string, an HTML body, a CSV
# field): where a header line starts in the normalised view, before the decoded view has made them breaks.
_HEADER_LOOK = 512  # a header line's label is this close before an address on it (a long To: line's last ones)
_WRITTEN_BREAKS = (b"\\n", b"\\r", b"\\u2028", b"\\u2029", b"\\u0085", b"<br>", b"<br/>", b"<br />")


def _in_header_line(text: bytes, start: int) -> bool:
    """Whether ``start`` is on a mail header's or a labelled line (``_HEADER_LINE``), the line starting at a break as
    written or at a string's opening quote ("From: ..." as a JSON or a CSV value)."""
    line_start = _logical_line_start(text, start)
    if _HEADER_LINE.starts_at(text, line_start, start):
        return True
    quote = text.rfind(b'"', line_start, start)
    return quote >= 0 and _HEADER_LINE.starts_at(text, quote + 1, start)


def _logical_line_start(text: bytes, start: int) -> int:
    """Where the line holding ``start`` begins, a written line break counting as one; at most ``_HEADER_LOOK`` back
    (a body of one long line must not make every candidate search all of it)."""
    lo = max(0, start - _HEADER_LOOK)
    window = text[lo:start]
    line_start = window.rfind(b"\n") + 1
    if b"\\" in window or b"<br" in window:
        for brk in _WRITTEN_BREAKS:
            at = window.rfind(brk, line_start)
            if at >= 0:
                line_start = at + len(brk)
    return lo + line_start


_LOCAL_PART_PUNCTUATION = frozenset(b"._%+-")


# Mail providers whose addresses are someone's own, not an organisation's.
_PERSONAL_MAIL_DOMAINS = frozenset(
    b"gmail.com googlemail.com hotmail.com hotmail.co.uk outlook.com live.com live.co.uk msn.com yahoo.com "
    b"yahoo.co.uk ymail.com icloud.com me.com mac.com aol.com aol.co.uk btinternet.com btopenworld.com sky.com "
    b"talktalk.net virginmedia.com ntlworld.com blueyonder.co.uk tiscali.co.uk protonmail.com proton.me pm.me "
    b"gmx.com gmx.co.uk mail.com zoho.com yandex.com yandex.ru mail.ru wp.pl o2.pl interia.pl onet.pl "
    b"yahoo.ro qq.com 163.com".split()
)


def _email(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    if m.start() > 0 and text[m.start() - 1] in _LOCAL_PART_PUNCTUATION:
        return None  # the tail of a longer address that was rejected ("smith@..." in "omar.smith@...")
    address = m.group().lower()
    if (
        address.rpartition(b"@")[2] not in _PERSONAL_MAIL_DOMAINS
        and not address.endswith(_PUBLIC_SECTOR_DOMAINS)
        # an organisation's address (a law firm's, a supplier's) in a mail's header, or one that names a function
        # (probate@firm.co.uk): correspondence, not a case
        and (_in_header_line(text, m.start()) or not _person_shaped(address.partition(b"@")[0]))
    ):
        return None
    if address.endswith(_PUBLIC_SECTOR_DOMAINS):
        start, end = m.span()
        # (bounded: a text of one long line must not make each candidate search all of it)
        line_start = text.rfind(b"\n", max(0, start - _LINE_LOOK), start) + 1
        line_end = text.find(b"\n", end, end + 8)
        alone = (
            start - line_start <= 8
            and line_end >= 0
            and not text[line_start:start].strip(b" \t<")
            and not text[end:line_end].strip(b" \t>")
        )
        if (
            alone  # a signature's address line
            or _in_header_line(text, start)
            or not _person_shaped(address.partition(b"@")[0])
        ):
            return None
    return _email_address(address)


def _person_shaped(local: bytes) -> bool:
    """A public-sector mailbox's local part that names someone: two or three words (``first.last``,
    ``j.smith``, ``jane.k.smith``), or one word from the name lists. With a function's or a region's word in it
    (``enquiries.manchester.crowncourt``, ``vcs.northwest``, ``all.leeds``), or one word outside the lists
    (``dpo``), it is a function's mailbox, which names no one."""
    words = local.translate(_LOCAL_SEPARATORS).split()
    if any(word in _FUNCTION_WORDS for word in words) or not all(word.isalpha() for word in words):
        return False
    if 2 <= len(words) <= 3:  # unless every word is an everyday one: "assisted.prison.visits"
        return not all(word.decode() in names.common_words() for word in words)
    return len(words) == 1 and (words[0].decode() in names.first_names() or words[0].decode() in names.surnames())


def _email_address(address: bytes) -> str | None:
    local, _at, domain = address.rpartition(b"@")
    if domain in _EXAMPLE_DOMAINS or domain.endswith(_EXAMPLE_TLDS) or local in _ROBOT_LOCAL:
        return None
    if all(word in _FUNCTION_WORDS for word in local.translate(_LOCAL_SEPARATORS).split()):
        return None
    return "email"


# "[at]", "(dot)", " dot " in a lower-cased spelt-out address; group 1 is the word.
_SPELT_OUT = Regex(rb"[ \t]*(?:[\[({<][ \t]*(at|dot)[ \t]*[\])}>]|[ \t](dot)[ \t])[ \t]*", re2_options(1 << 20))


def _email_spelt_out(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    """``ngozi.eze88 [at] yahoo [dot] com``: the address with its "at" and "dot" put back."""
    address = normalize.substitute(_SPELT_OUT, m.group().lower(), _spelt_symbol)
    return _email_address(address) if address.count(b"@") == 1 else None


def _spelt_symbol(data: bytes, spans: normalize.Spans) -> bytes:
    start = spans[1][0]
    return b"@" if start >= 0 and data[start : start + 2] == b"at" else b"."


# Ofcom's ranges reserved for TV, radio and examples (national significant number prefixes): never a person.
_DRAMA_PREFIXES = (
    b"1134960",
    b"1144960",
    b"1154960",
    b"1164960",
    b"1174960",
    b"1184960",
    b"1214960",
    b"1314960",
    b"1414960",
    b"1514960",
    b"1614960",
    b"1914980",
    b"2079460",
    b"2890180",
    b"2920180",
    b"1632960",
    b"7700900",
    b"8081570",
    b"9098790",
    b"3069990",
)
_PERSONAL_PHONE = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
        PhoneNumberType.PERSONAL_NUMBER,
        PhoneNumberType.VOIP,
    }
)


def _uk_nsn(raw: bytes) -> bytes | None:
    """The national significant number that ``phonenumbers.parse(raw, "GB")`` gives for a candidate of the
    phone row, or None where only phonenumbers should say.

    The row's shapes are ``0`` + 9-10 digits, or ``+44``/``0044`` and an optional ``(0)`` + 9-10 digits, the
    first of them 1-9, with spaces, dots, hyphens and parentheses between (tabs are made spaces first):
    phonenumbers strips exactly the trunk ``0``, or the country code and the ``(0)``, from those. The 180020
    text-relay prefix (which it may strip) goes to phonenumbers itself.
    """
    d = _digits(raw)
    if raw[:1] == b"+":
        if d[:2] != b"44":
            return None
        d = d[2:]
    elif raw[:2] == b"00":
        if d[:4] != b"0044":
            return None
        d = d[4:]
    if d[:1] == b"0":
        d = d[1:]
    if not 9 <= len(d) <= 10 or d[:1] == b"0" or d.startswith(b"180020"):
        return None
    return d


# 071-075 and 077-079: Ofcom's mobile ranges (076 is pagers, 070 personal numbering, checked by phonenumbers).
_MOBILE_RANGES = frozenset({b"71", b"72", b"73", b"74", b"75", b"77", b"78", b"79"})


# What says a landline is an organisation's, in the few words before it: "switchboard", "enquiries", "helpline".
_SWITCHBOARD = Regex(
    rb"(?i:\b(?:switchboard|main[ \t]+(?:line|number)|enquir(?:y|ies)|helpline|help[ \t]+line|reception|front[ \t]+desk"
    rb"|call[ \t]+cent(?:re|er)|contact[ \t]+cent(?:re|er)|infolinia|ff[o\xc3\xb4]+n"
    # a service's other lines and desks: "out of hours line", "Advice line:", "Textphone:", "our service desk ("
    rb"|out[ \t\-]+of[ \t\-]+hours|advice[ \t]+line|textphone|minicom|fax|service[ \t]+desk|duty[ \t]+desk"
    # a list of a body's lines by what they are for ("Appointments / Apwyntiadau: 0161 ..."), an extension
    rb"|ext(?:ension)?\.?[ \t]*\d{2,6}"
    # an event's or a service's booking line: "Book a place on 0114 ...", "To rearrange call 0300 ..."
    rb"|book[ \t]+(?:a|your)[ \t]+(?:place|space|seat|appointment)[ \t]+on|to[ \t]+(?:rearrange|book|cancel))\b"
    rb"|\bappointments(?:[ \t]*/[ \t]*[a-z]+)?[ \t]*:)",
    re2_options(1 << 20),
)
_SWITCHBOARD_LOOK = 48
# ... or its opening hours after it: "0300 063 2100 (Mon-Fri, 9am-5pm)", "01443 425 006, lines open 9-5".
_OPENING_HOURS_AFTER = Regex(
    rb"[ \t]*[(,\-]?[ \t]*(?i:mon(?:day)?[ \t]*(?:-|to)[ \t]*(?:fri|sat|sun)|lines[ \t]+(?:are[ \t]+)?open|open[ \t]+\d"
    rb"|\d{1,2}(?:[.:]\d\d)?[ \t]*(?:am)?[ \t]*(?:-|to)[ \t]*\d{1,2}(?:[.:]\d\d)?[ \t]*pm)",
    re2_options(1 << 20),
)


# ... or before it: "The desk is staffed 08:00-18:00 Monday to Friday on 0113 206 5118".
_OPENING_HOURS_BEFORE = Regex(
    rb"(?i:mon(?:day)?[ \t]*(?:-|to)[ \t]*(?:fri|sat|sun)[a-z]*|\d{1,2}[.:]\d\d[ \t]*(?:-|to)[ \t]*\d{1,2}[.:]\d\d"
    rb"|\bstaffed|\blines[ \t]+(?:are[ \t]+)?open)[^\n]{0,40}$",
    re2_options(1 << 20),
)


def _organisation_line(text: bytes, start: int, end: int) -> bool:
    """A landline labelled as an organisation's or with its opening hours beside it, or in an organisation's address
    with no one named there (as ``_postcode`` decides)."""
    if _SWITCHBOARD.found(text, max(0, start - _SWITCHBOARD_LOOK), start):
        return True
    if _OPENING_HOURS_AFTER.starts_at(text, end, end + 40) or _OPENING_HOURS_BEFORE.ends_at(text, start, 72):
        return True
    return _organisation_address(text, start)


# A number stored without its "+": "mobile": 447834512906 in JSON, msisdn=447834512906 in a log. Only after a label.
_PHONE_CONTEXT = Words(b"mobile", b"phone", b"tel", b"msisdn", b"sms", b"whatsapp", b"contact number")


def _uk_phone_bare(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    start = m.start()
    if text[start - 1 : start] == b"+" or not near(text, start, start, _PHONE_CONTEXT, 32):
        return None  # "+44...": the formatted row's
    return _personal_phone(b"+" + m.group(), text, start)


def _uk_phone(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    return _personal_phone(m.group(), text, m.start())


def _personal_phone(raw: bytes, text: bytes, start: int) -> str | None:
    """Geographic, mobile and personal numbers; not freephone, 03/08/09 service numbers, drama ranges, nor a
    landline that is an organisation's (``_organisation_line``)."""
    raw = raw.replace(b"\t", b" ")  # phonenumbers takes spaces, not tabs, as punctuation
    national = _uk_nsn(raw)
    if national is not None:  # the usual case: phonenumbers' verdict without its parser (see routing.phones)
        kind = uk_number_type(national)
    else:
        try:
            number = phonenumbers.parse(raw.decode(), "GB")
        except phonenumbers.NumberParseException:
            return None
        if number.country_code != 44:
            return None
        national = str(number.national_number).encode()
        kind = phonenumbers.number_type(number)
    # number_type is UNKNOWN for every number that is_valid_number rejects (the same test on the same
    # region's metadata), so every personal type below is a valid number: no separate validity check.
    if national.startswith(_DRAMA_PREFIXES) or _placeholder(b"0" + national):
        return None
    if len(national) == 10 and national[:2] in _MOBILE_RANGES:
        return "uk_phone"  # a mobile number whether or not phonenumbers' metadata lists its block as allocated yet
    if kind not in _PERSONAL_PHONE:
        return None
    return None if national[:1] in b"12" and _organisation_line(text, start, start + len(raw)) else "uk_phone"


# A postcode is someone's address unless the address is an organisation's: a prison, a court, a police station,
# a ministry, a company. Those words within the address's lines before the postcode (and no person named there)
# make it a public address, unless the word names the street ("3 Station Road", "12 College Street": group
# ``street``), which says nothing about who lives there.
_STREET = (
    rb"(?P<street>[ \t]+(?i:road|rd|street|st|lane|avenue|ave|way|close|drive|place|hill|terrace|gardens|square"
    rb"|crescent|walk|row|parade|yard|court|mews|grove|park|green|view|approach)\b)?"
)
_ORGANISATION = Regex(
    rb"\b(?:HMP|HMYOI|HMPPS|(?i:crown[ \t]+court|magistrates'?[ \t]+court|county[ \t]+court|courts[ \t]+of[ \t]+justice"
    rb"|criminal[ \t]+court|tribunal|police|constabulary|ministry|home[ \t]+office|parliament|headquarters"
    rb"|council|hospital|university|college|museum|library|stadium|airport|cathedral|station|embassy"
    rb"|convention|conference|venue|department|agency|office|centre|center|ltd|limited|plc|llp"
    # schools, surgeries, churches, hotels, charities, rooms to book, and a PO box (no one's home)
    rb"|school|academy|nursery|surgery|clinic|pharmacy|church|mosque|temple|synagogue|hotel|theatre|charity"
    rb"|(?:training|meeting|conference|function)[ \t]+room|suite|po[ \t]+box"
    # a vCard's or a form's work address; an organisation's record in JSON ("resourceType": "Organization", a prison
    # register's "prisonName", an establishment's "agencyType")
    rb"|type=work|work[ \t]+address|business[ \t]+address|registered[ \t]+office|bureau|organi[sz]ation"
    rb"|prison[ \t_]?(?:name|id)|agency[ \t_]?(?:type|id)|establishment|switchboard|enquiries"
    rb"|nhs[ \t]+(?:foundation[ \t]+)?trust"
    # Welsh: hospital, health board
    rb"|ysbyty|bwrdd[ \t]+iechyd"
    # Welsh: centre, court, prison, office, council
    rb"|canolfan|llys|carchar|swyddfa|cyngor)|House)\b" + _STREET,  # an office building's name: "Phoenix House"
    re2_options(1 << 20),
)
_ADDRESS_LOOK = 240  # an organisation's word this far before the postcode (a JSON record's name, then its address)
_ADDRESS_LINES = 120


# What makes an address someone's home whatever else is near: "her address", "lives at", "home visit", "bail
# address".
_HOME = Regex(
    rb"(?i:\b(?:home|bail|approved|last[ \t]+known|his|her|their)[ \t]+address"
    rb"|\b(?:lives|living|resides|residing|staying)[ \t]+(?:at|in)\b|\bhome[ \t]+visit|\bhv\b"
    rb"|\bhome[ \t]+(?:phone|number|tel|telephone|landline))",
    re2_options(1 << 20),
)


# The justice system's public buildings that every signature, invitation and letter template names: 102 Petty
# France (the Ministry, HMCTS and LAA headquarters), the Royal Courts of Justice, the Central Criminal Court, the
# Rolls Building, Field House, the Supreme Court, the Parole Board's and CICA's offices, Parliament, the Home Office
# and the Treasury. Such a postcode is no one's home unless the words around say so ("lives at").
_PUBLIC_BUILDING_POSTCODES = frozenset(
    b"SW1H9AJ WC2A2LL EC4M7EH EC4A1NL EC4A1DZ SW1P3BD E144PU G28JQ SW1A0AA SW1P4DF SW1A2HQ".split()
)
_PUBLIC_BUILDING = Regex(
    rb"(?i:"
    + rb"|".join(code[:-3] + rb"[ \t]{0,3}" + code[-3:] for code in sorted(_PUBLIC_BUILDING_POSTCODES))
    + rb")\b",
    re2_options(1 << 20),
)


def _organisation_address(text: bytes, start: int) -> bool:
    """An organisation's word in the address before ``start`` (not one that names the street) or a public
    building's postcode, no one named, and nothing that says it is someone's home."""
    lo = max(0, start - _ADDRESS_LOOK)
    organisation = any(word.group(b"street") is None for word in _ORGANISATION.finditer(text, lo, start))
    organisation = organisation or _PUBLIC_BUILDING.found(text, lo, start)
    if not organisation:
        return False
    near = max(0, start - _ADDRESS_LINES)  # the address's own lines: a person named there lives at it
    return not _HOME.found(text, lo, min(len(text), start + 48)) and not names.find_person(text, near, start)


# Postcodes that stand for the format in guides and code (Buckingham Palace's, Downing Street's, Royal Mail's
# example) and the one the Post Office reserves for no address, where the words before say they are an example.
_EXAMPLE_POSTCODES = frozenset((b"SW1A1AA", b"SW1A2AA", b"EC1A1BB", b"ZZ999ZZ"))


# Non-geographic postcode areas, which Royal Mail gives organisations only (HMRC's and DWP's BX, Santa's XM): no one
# lives at them.
_NON_GEOGRAPHIC_AREAS = (b"BX", b"XM")


def _postcode(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    code = m.group().upper().replace(b" ", b"").replace(b"\t", b"")
    if code.startswith(_NON_GEOGRAPHIC_AREAS):
        return None
    if code in _EXAMPLE_POSTCODES and _an_example(text, m.start()):
        return None
    if code in _PUBLIC_BUILDING_POSTCODES:
        start = m.start()
        return "uk_postcode" if _HOME.found(text, max(0, start - _ADDRESS_LOOK), start + 48) else None
    if _invented(text, m.start(), m.start()):
        return None  # a fixture's or a training exercise's made-up address
    return None if _organisation_address(text, m.start()) else "uk_postcode"


# --- dates of birth and named people ---------------------------------------------------------------------

_MONTHS = rb"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DATE = (
    rb"(?:\d{1,2}[/.\-]\d{1,2}[/.\-](?:19|20)?\d{2}\b|(?:19|20)\d{2}-\d{2}-\d{2}\b"
    rb"|\d{1,2}(?:st|nd|rd|th)?[ \t]+(?i:" + _MONTHS + rb"),?[ \t]+(?:19|20)\d{2}\b"
    rb"|(?i:" + _MONTHS + rb")[ \t]+\d{1,2}(?:st|nd|rd|th)?,?[ \t]+(?:19|20)\d{2}\b)"
)
_MONTH_NUMBERS = {
    name: i
    for i, name in enumerate(
        (b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec"), 1
    )
}


def _date_ok(raw: bytes, *, max_year: int) -> bool:
    """A real calendar-ish date (day 1-31, month 1-12) in the past; two-digit years are accepted."""
    s = raw.lower()
    parts = s.replace(b",", b" ").replace(b".", b" ").replace(b"/", b" ").replace(b"-", b" ").split()
    try:
        if parts[0][:1].isdigit() and len(parts) == 3 and parts[1].isdigit():
            if len(parts[0]) == 4:
                year, month, day = int(parts[0]), int(parts[1]), int(parts[2])
            else:
                day, month, year = int(parts[0]), int(parts[1]), int(parts[2])
        else:
            words = [p for p in parts if p[:1].isalpha()]
            nums = [int(p.rstrip(b"stndrh")) for p in parts if p[:1].isdigit()]
            month = _MONTH_NUMBERS[words[0][:3]]
            day, year = (nums[0], nums[1]) if nums[0] <= 31 else (nums[1], nums[0])
    except (ValueError, IndexError, KeyError):
        return False
    return 1 <= day <= 31 and 1 <= month <= 12 and (year < 100 or _OLDEST_BIRTH_YEAR <= year <= max_year)


_THIS_YEAR = datetime.date.today().year
# No one alive was born earlier: a date before it is a form's or a fixture's "no date" (1900-01-01) or history.
_OLDEST_BIRTH_YEAR = _THIS_YEAR - 120


def _dob_labelled(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    date = m.group(b"date") or b""
    if _invented(text, m.start(), m.end()):
        return None  # a form's or a fixture's "no date"; a training exercise's invented record
    return "date_of_birth" if _date_ok(date, max_year=_THIS_YEAR) else None


def _dob_after_name(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    # "Jane Doe (12/03/1985)": a name with a date at least a few years old next to it.
    date = m.group(b"date") or b""  # the pattern ends with the date, so the name lies before m.end() - len(date)
    if not _date_ok(date, max_year=_THIS_YEAR - 5):
        return None
    return "date_of_birth" if names.find_person(text, m.start(), m.end() - len(date)) else None


_JUSTICE_WINDOW = 200
# A person named with a cue that says who they are (a relative's "your son, Jordan", an age, "a lad called Lorcan")
# is the case's person further away: a letter names them in its first lines and tells the case a paragraph later.
_CUE_WINDOW = 600
# A form's, a record's or a letter's field that says whom it is about ("Name of child:", "Re:") heads it: its
# case may be told anywhere below, as far as a long assessment runs.
_RECORD_WINDOW = 2400


# An event dated before 1970 ("in 1605", "on 13 July 1955", "in March 1969"): history, whose people are public
# figures (Guy Fawkes, Ruth Ellis), not the subjects of a live case. A statute's year ("Criminal Justice Act
# 1967") has no such preposition before it.
_HISTORIC_YEAR = rb"(?:1[0-8]\d\d|19[0-6]\d)\b"
_HISTORIC_EVENT = Regex(
    rb"(?i:\b(?:in|on|of|during|until|since|from|by)[ \t]+(?:the[ \t]+year[ \t]+)?(?:\d{1,2}(?:st|nd|rd|th)?[ \t]+)?"
    rb"(?:"
    + _MONTHS
    + rb"[ \t]+)?)"
    + _HISTORIC_YEAR
    # a month and year without a preposition ("(13 July 1955)", "July 1955"), a year in brackets as law reports
    # cite it ("R v Dudley and Stephens (1884)")
    + rb"|(?i:\b"
    + _MONTHS
    + rb"[ \t]+)"
    + _HISTORIC_YEAR
    + rb"|\("
    + _HISTORIC_YEAR
    + rb"\)"
    # a decade: "in the 1810s", "the 1960s"
    + rb"|(?i:\bthe[ \t]+)(?:1[0-8]\d0|19[0-6]0)'?s\b"
    # a century before the last: "in the early 19th century", "an 18th-century gaol"
    + rb"|(?i:\b1\d(?:st|nd|rd|th)[ \t\-]+century)\b",
    re2_options(1 << 20),
)
# A date of birth is no event: "born 12 March 1962", "DOB: March 1962".
_BIRTH_BEFORE = Regex(
    rb"(?i:born|birth|d\.?o\.?b\.?)[ \t:,\-]*(?:on[ \t]+)?(?:\d{1,2}(?:st|nd|rd|th)?[ \t]+)?$", re2_options(1 << 20)
)


def _historic(text: bytes, lo: int, hi: int) -> bool:
    return any(not _BIRTH_BEFORE.ends_at(text, event.start(), 24) for event in _HISTORIC_EVENT.finditer(text, lo, hi))


# A justice word in a job title ("Senior Probation Officer", "Victim Liaison Officer", "Offender Manager"): a
# colleague's role, which says nothing of a case.
_JOB_TITLE_AFTER = Regex(
    rb"(?:(?:[ \t]|&nbsp;)+[A-Z][A-Za-z]+)?(?:[ \t]|&nbsp;)+" + names.JOB_WORDS, re2_options(1 << 20)
)


def _job_title_after(text: bytes, end: int) -> bool:
    if _JOB_TITLE_AFTER.starts_at(text, end, end + 48):
        return True
    after = text[end : end + 48]
    if after.isascii():
        return False
    # the title's letters with diacritics: read them folded
    after = normalize.fold(after.decode("utf-8", "replace")).encode("ascii", "replace")
    return _JOB_TITLE_AFTER.starts_at(after, 0, len(after))


# A disclaimer: "ALL NAMES, EVENTS AND PLACES ARE FICTITIOUS", "all characters in this scenario are invented".
_ALL_INVENTED_PATTERN = (
    rb"\ball[ \t]+(?:names|characters|people|persons|individuals|events)\b[^\n\]]{0,60}?\b(?:are|is)[ \t\n]+"
    rb"(?:entirely[ \t\n]+|wholly[ \t\n]+)?(?:fictitious|fictional|invented|made[ \t\-]up|imaginary)"
)
# A text that says its people are invented: a training scenario, an exercise, fiction.
_FICTION = Regex(
    rb"(?i:\b(?:fictional|fictitious|imaginary|made-up|invented)[ \t]+(?:character|person|people|name|scenario|case"
    rb"|trial|court|defendant|offender|victim|witness|example)s?\b|\bcharacters[ \t]+(?:are|is)[ \t]+(?:all[ \t]+)?"
    rb"(?:fictional|fictitious|invented)|\b(?:training|exercise|practice)[ \t]+(?:scenario|case[ \t]+study)\b"
    rb"|\bmock[ \t]+trial\b|\bmoot\b"
    # a story, a play or a programme: "a scene where", "Dickens's novel", "this week's episode of"
    rb"|\b(?:screenplay|radio[ \t]+(?:play|drama)|stage[ \t]+play|short[ \t]+story|tv[ \t]+drama|soap[ \t]+opera"
    rb"|sitcom)\b|\b(?:the|a|this|that)[ \t]+(?:film|movie)\b"  # not "wrapped in cling film"
    rb"|\b(?:in|from)[ \t]+(?:the|his|her|a|my)[ \t]+novel\b|'s[ \t]+novel\b|\bnovel[ \t]+(?:by|called)\b"
    rb"|\bepisode[ \t]+of\b|\b(?:write|writing)[ \t]+a[ \t]+scene\b|\bscene[ \t]+where\b"
    # a review of a programme: "TV review: 'The Long Licence', episode 3", "(played by Helen Brannock)"
    rb"|\b(?:tv|television|film|drama|theatre)[ \t]+review\b|\bepisode[ \t]+\d|\bplayed[ \t]+by\b"
    # a quiz or a reading group about them: "Induction quiz", "Book club - April pick: Great Expectations"
    rb"|\bbook[ \t]+club\b|\bquiz\b|\bcharacters?[ \t]+in[ \t]+(?:the|a|his|her)\b"
    rb"|\b(?:INT|EXT)\.[ \t]+[A-Z]"
    # test data: "synthetic fixtures", "dummy data", "not a real person", "generated by faker"
    rb"|\b(?:synthetic|dummy|fake|fictional|fictitious)[ \t]+(?:test[ \t]+)?(?:data|fixtures?|users?|records?|person"
    rb"|people|scenario|values|examples?|patients?|identifiers|details)\b"
    rb"|\btest[ \t]+(?:fixtures?|users?)\b|\bnot[ \t]+(?:an?[ \t]+)?real[ \t]+(?:person|people|individuals?)\b"
    rb"|\bgenerated[ \t]+by[ \t]+faker\b|" + _ALL_INVENTED_PATTERN + rb")",
    re2_options(1 << 20),
)
_FICTION_LOOK = 240


_HEADING_LOOK = 160
_DISCLAIMER_LOOK = 2048
_ALL_INVENTED = Regex(rb"(?i:" + _ALL_INVENTED_PATTERN + rb")", re2_options(1 << 20))


def _invented(text: bytes, start: int, end: int) -> bool:
    """The words around say the people (or the data) are invented, or the text's heading does ("INVESTIGATION
    REPORT - TRAINING PACK (FICTIONAL CASE)", "# SYNTHETIC TEST DATA")."""
    if _FICTION.found(text, max(0, start - _FICTION_LOOK), min(len(text), end + _FICTION_LOOK)):
        return True
    heading = text.find(b"\n", 0, _HEADING_LOOK)
    return heading > 0 and start > heading and _FICTION.found(text, 0, heading)


def _invented_case(text: bytes, start: int, end: int) -> bool:
    """``_invented``, or a disclaimer says all the text's names are. For people in a case only: reading the text's
    start and end costs about 3% of the bench corpus's time when every validator asks."""
    return _invented(text, start, end) or _disclaimed(text)


def _disclaimed(text: bytes) -> bool:
    """A disclaimer for the whole text, near its start or its end: "ALL NAMES ... ARE FICTITIOUS"."""
    return _ALL_INVENTED.found(text, 0, min(len(text), _DISCLAIMER_LOOK)) or _ALL_INVENTED.found(
        text, max(0, len(text) - _DISCLAIMER_LOOK), len(text)
    )


def _justice_person(m: Match, text: bytes, state: dict[str, Any]) -> str | None:
    """A named person within a window of justice vocabulary, unless the window dates what it tells before 1970
    (``_HISTORIC_EVENT``) or the text says its people are invented (``_FICTION``); one count per cluster of
    nearby words."""
    start, end = m.span()
    if start < state.get("justice_done", -1) or (
        _job_title_after(text, end) and not names.texted_by_their_worker(text, end)
    ):
        return None
    lo = max(start - _JUSTICE_WINDOW, state.get("justice_searched", 0) - 64, 0)
    hi = end + _JUSTICE_WINDOW
    state["justice_searched"] = hi
    cue_lo, cue_hi = max(0, start - _CUE_WINDOW), min(len(text), end + _CUE_WINDOW)
    if names.find_person(text, lo, hi):
        invented = _invented_case(text, start, end)
    elif names.find_person_by_cue(text, cue_lo, cue_hi):
        invented = _invented_case(text, cue_lo, cue_hi)
    elif names.find_record_subject(text, max(0, start - _RECORD_WINDOW), start):
        invented = _invented_case(text, max(0, start - _RECORD_WINDOW), end)
    else:
        return None
    if not invented and not _historic(text, max(0, start - _JUSTICE_WINDOW), min(len(text), hi)):
        state["justice_done"] = hi
        return "justice_context_named_person"
    return None


# A prosecution's title in a live case: "R v Okonkwo", "R v Kieran ASHDOWN", "Regina v. Marsh", "HM Advocate v
# Eilidh NicLeoid". The defendant is a private individual in a criminal case by the title alone, unless the title is
# a published judgment's (a law report's citation or a year follows it), the defendant is a company or a public
# body, the case is history (before 1970) or invented.
_PROSECUTOR = rb"\b(?:R|(?i:regina|rex|the[ \t]+(?:queen|king|crown)|hm[ \t]+advocate|hma|dpp))[ \t]+[vV]\.?[ \t]+"
_DEFENDANT = rb"(?P<v>[A-Z][A-Za-z'\-]+(?:[ \t]+(?:[A-Z][A-Za-z'\-]+|" + names.PARTICLES_PATTERN + rb")){0,4})"
_LAW_REPORT = Regex(
    rb"[^\n]{0,80}?(?:\[\d{4}\]|\(\d{4}(?:[ \t]*-[ \t]*\d{2,4})?\)|\b(?:EWCA|UKSC|UKHL|UKPC|EWHC|QBD?|KB|WLR|AC"
    rb"|JC|SLT|SCCR|SCCR)\b|Cr[ \t]*App[ \t]*R|All[ \t]*ER|Crim[ \t]*LR)",
    re2_options(1 << 20),
)
# The way an authority is cited in argument or teaching: "In R v Brown the House of Lords...", "see R v G".
# (The match is the defendant's name, group "v": the prosecutor and "v" are before it.)
_CITED = Regex(
    rb"(?i:\b(?:in|see|cf\.?|per|following|applying|applied|overruling|overruled|distinguishing)[ \t]+)"
    + _PROSECUTOR
    + rb"$",
    re2_options(1 << 20),
)
_BODY_CORPORATE = Regex(  # a company (names.COMPANY_WORDS) or a public body
    rb"\b(?:"
    + names.COMPANY_WORDS
    + rb"|(?i:council|trust|authority|board|university|borough|county|constabulary|police|commissioner"
    rb"|secretary[ \t]+of[ \t]+state|ministry|department))\b",
    re2_options(1 << 20),
)


def _prosecuted(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    start, end = m.span()
    name = m.group()
    words = name.split()
    if len(words) == 1 and len(name) < 3:
        return None  # "R v A (a youth)", "R v X": anonymised
    if _BODY_CORPORATE.found(name) or _BODY_CORPORATE.found(text, end, min(len(text), end + 24)):
        return None
    if _LAW_REPORT.starts_at(text, end, min(len(text), end + 120)) or _CITED.ends_at(text, start, 40):
        return None
    if all(names.name_word(w) in names.NOT_NAME_WORDS for w in words):
        return None
    lo, hi = max(0, start - _JUSTICE_WINDOW), min(len(text), end + _JUSTICE_WINDOW)
    if _historic(text, lo, hi) or _invented_case(text, start, end):
        return None
    return "justice_context_named_person"


_JUSTICE_WORDS = (
    rb"convicted|convictions?|sentenced|sentencing|custodial|suspended[ \t]+sentence|prison|prisoners?"
    rb"|hmp|hmyoi"
    rb"|probation|parole|offences?|offenders?|offending|remanded|remand|bailed|custody|charged[ \t]+with"
    rb"|arrested|arrest|victims?|witness(?:es)?|safeguarding|mappa|marac|domestic[ \t]+(?:abuse|violence)"
    rb"|assault(?:ed)?|burglary|robbery|theft|stalking|harassment|criminal[ \t]+record|cautioned"
    rb"|police[ \t]+caution|community[ \t]+order|curfew|tagged|youth[ \t]+offending|child[ \t]+protection"
    rb"|pleaded[ \t]+(?:not[ \t]+)?guilty|pled[ \t]+guilty|found[ \t]+guilty|acquitted|defendant|accused"
    rb"|suspect|perpetrator|complainants?|g[ia]ve[ \t]+evidence|crown[ \t]+court|magistrates|youth[ \t]+court"
    rb"|court[ \t]+hearing"
    # an employee's case, the family court's, a victim's contact and a death investigated
    rb"|misconduct|allegations?|investigating[ \t]+officer|cafcass|child[ \t]+arrangements|supervised[ \t]+contact"
    rb"|family[ \t]+court|vlo|drug[ \t]+debts?|homicide|contact[ \t]+order"
    # a school's, a hospital's, a prison's and Prevent's own case words
    rb"|permanent(?:ly)?[ \t]+exclu(?:de|ded|sion)|fixed[ \t\-]+term[ \t]+exclusion|abscond(?:ed|ing|er|ers)?|imb"
    rb"|restrained|channel[ \t]+panel|radicali[sz](?:ed|ation)"
    # prison self-harm's process (in capitals: "acct" is an account), what it records, and violence at home
    rb"|(?-i:ACCT)\b|swallow(?:ed|ing)[ \t]+(?:batteries|blades?|razors?)"
    rb"|threatened[ \t]+(?:her|him|them|me)[ \t]+with[ \t]+an?[ \t]+(?:knife|weapon|hammer|bat|gun)"
    rb"|fled[ \t]+(?:her|his|their)[ \t]+(?:partner|husband|wife|home)"
    rb"|recalled[ \t]+to[ \t]+prison|released[ \t]+on[ \t]+licence|restraining[ \t]+order|non-molestation"
    rb"|rape|raped|murder|murdered|manslaughter|grooming|exploitation|county[ \t]+lines"
    rb"|drug[ \t]+(?:dealing|supply)"
    rb"|possession[ \t]+with[ \t]+intent|indecent|abuse|abused|at[ \t]+risk[ \t]+of[ \t]+harm"
    rb"|looked[ \t\-]+after[ \t\-]+child(?:ren)?|probationers?"
    # probation, youth justice and the courts' own words
    rb"|licence[ \t]+conditions?|on[ \t]+licence|unpaid[ \t]+work|community[ \t]+payback|referral[ \t]+order"
    rb"|restorative[ \t]+justice|youth[ \t]+offending|pre-sentence[ \t]+report|approved[ \t]+premises"
    rb"|exclusion[ \t]+zone|electronic[ \t]+monitoring|verdict|bail[ \t]+conditions"
    # someone on bail, not a policy on bail accommodation (police or court bail: below)
    rb"|(?:is|was|were|been|being|remains?|released|out|currently|still|while|whilst|he's|she's|they're|,)"
    rb"[ \t]+on[ \t]+bail"
    rb"|(?:at|in|to|before)[ \t]+court|court[ \t]+(?:date|appearance|case|result|order|list)"
    rb"|witness[ \t]+statement|prosecuted|prosecution|segregation[ \t]+unit|adjudication"
    rb"|(?:further|victim[ \t]+personal)[ \t]+statement|ptph|oic|released[ \t]+under[ \t]+investigation"
    rb"|appellant|(?:was|were|been|also|being)[ \t]+charged|procurator[ \t]+fiscal|detained|detention|deportation"
    rb"|deported|foreign[ \t]+national[ \t]+offenders?|fno|modern[ \t]+slavery|trafficking|trafficked|nrm"
    rb"|cse|child[ \t]+sexual[ \t]+exploitation|went[ \t]+missing|missing[ \t]+from[ \t]+(?:care|placement|home)"
    rb"|lac[ \t]+review|segregation|self-harm|ligature|acct[ \t]+review|supervision[ \t]+(?:note|session|appointment)"
    rb"|missed[ \t]+(?:an[ \t]+|his[ \t]+|her[ \t]+|your[ \t]+|their[ \t]+|my[ \t]+)?appointments?|warning[ \t]+letter"
    rb"|positive[ \t]+drug[ \t]+test"
    rb"|recall[ \t]+report|approved[ \t]+address|risk[ \t]+to[ \t]+(?:partner|children|the[ \t]+public|staff)"
    rb"|oasys|risk[ \t]+of[ \t]+serious[ \t]+harm|risk[ \t]+management[ \t]+plan|rosh"
    # probation and prison shorthand, and what staff write in chat
    rb"|bail[ \t]+condition|licence[ \t]+recall|breach(?:ed)?[ \t]+(?:of[ \t]+)?(?:his|her|their|the)?[ \t]*"
    rb"(?:licence|order|bail|curfew|non-mol|conditions|notification)|issue[ \t]+a[ \t]+breach|upw\b|rotl\b|drr\b|atr\b"
    rb"|sex[ \t]+offenders?[ \t]+register|registered[ \t]+sex[ \t]+offender|on[ \t]+an?[ \t]+acct"
    rb"|acct[ \t]+(?:plan|opened|document)|sheriff[ \t]+court|pre[ \t\-]+cons|previous[ \t]+convictions|non[ \t\-]mol\b"
    rb"|arson|stabbing|stabbed|in[ \t]+the[ \t]+cells|delius|nomis|mosovo|ppo\b|pss\b|reparation"
    rb"|end[ \t\-]+of[ \t\-]+order"
    # custody, recall and release
    rb"|jail|jailed|imprisoned|imprisonment|inmates?|incarcerated|(?:was|were|been|being|got|is)[ \t]+recalled"
    rb"|recalled[ \t]+to[ \t]+custody|recall[ \t_\-]+(?:notification|notify|type|decision|request|pack|dossier|papers)"
    rb"|(?:fixed[ \t_\-]term|standard|emergency)[ \t_\-]+recall|dto\b|on[ \t]+acct\b"
    rb"|licence[ \t]+(?:was[ \t]+|has[ \t]+been[ \t]+|been[ \t]+)?(?:revoked|suspended)"
    rb"|bail[ \t]+(?:application|hearing|address|variation|review|hostel)|(?:granted|refused|denied|breached"
    rb"|breaching|jumped|skipped|police|conditional|unconditional|court)[ \t]+bail|released[ \t]+from[ \t]+(?:prison"
    rb"|custody|hmp|hmyoi)|(?:his|her|their|'s|earliest|conditional|automatic)[ \t]+release[ \t]+date|crd\b"
    rb"|home[ \t]+detention[ \t]+curfew|hdc\b|ipp\b|lifers?|category[ \t]+[abcd][ \t]+(?:prisoner|jail|establishment)"
    rb"|open[ \t]+prison|iep\b|basic[ \t]+regime|(?:put|placed|going|gone|back|kept)[ \t]+on[ \t]+basic"
    rb"|on[ \t]+(?:an?[ \t]+|his[ \t]+|her[ \t]+)?(?:electronic[ \t]+)?tag|(?:my|your|his|her|their)[ \t]+tag\b"
    rb"|tag[ \t]+(?:equipment|fitted|removed|strap)"
    # life on a prison wing, as officers' notes write it
    rb"|(?:in|to|from|behind)[ \t]+(?:his|her|their|the)[ \t]+cell|cell[ \t]+(?:search(?:ed)?|mate|bell|door|share"
    rb"|sharing|clearance)|cellmate|on[ \t]+the[ \t]+wing|wing[ \t]+(?:obs|observations?|staff|search)"
    rb"|off[ \t]+association|code[ \t]+(?:blue|red)|psychoactive|cat[ \t]+[abcd]\b|csip|on[ \t]+the[ \t]+numbers"
    rb"|vulnerable[ \t]+prisoners?"
    # offences, as staff name them
    rb"|gbh|abh|wounding|affray|criminal[ \t]+(?:damage|case|charges?|proceedings|investigation|history)"
    rb"|shoplift(?:ing|ed|er)|drink[ \t\-]+driv(?:ing|er)|drug[ \t\-]+driving|dangerous[ \t]+driving"
    rb"|possession[ \t]+of[ \t]+(?:an?[ \t]+)?(?:knife|bladed|offensive|firearm|class|cannabis|cocaine|heroin)"
    rb"|coercive[ \t]+(?:and[ \t]+)?control(?:ling)?|controlling[ \t]+(?:and|or)[ \t]+coercive"
    rb"|sexual[ \t]+(?:assault|offen[cs]es?|activity[ \t]+with)|voyeurism|upskirting|intimate[ \t]+images?"
    rb"|threats?[ \t]+to[ \t]+kill|blackmail(?:ed)?|kidnap(?:ped|ping)?|false[ \t]+imprisonment"
    rb"|terroris[mt][ \t]+(?:offen[cs]es?|act|charges?)|radicali[sz](?:ed|ation)|prevent[ \t]+referral"
    # courts and police
    rb"|(?:his|her|their)[ \t]+trial|stood[ \t]+trial|on[ \t]+trial|indicted|indictment|summonsed"
    rb"|arrest[ \t]+warrant|warrant[ \t]+(?:for[ \t]+(?:his|her|their)[ \t]+arrest|issued|executed)"
    rb"|pleads?[ \t]+(?:not[ \t]+)?guilty|guilty[ \t]+plea|not[ \t]+guilty|plea[ \t]+hearing|interviewed[ \t]+under"
    rb"[ \t]+caution|crime[ \t]+(?:reference|ref|number)|charging[ \t]+decision|mg5\b|mg11\b|psrs?\b"
    # probation, youth justice and safeguarding
    rb"|community[ \t]+sentence|post[ \t\-]+sentence[ \t]+supervision|rar[ \t]+days|failed[ \t]+to[ \t]+surrender"
    rb"|failed[ \t]+to[ \t]+comply[ \t]+with[ \t]+(?:his|her|their|the)[ \t]+(?:order|licence|requirements?)"
    rb"|failed[ \t]+to[ \t]+attend[ \t]+(?:his|her|their)[ \t]+(?:appointment|supervision|induction|court|hearing"
    rb"|upw|programme)|unacceptable[ \t]+absences?|breach[ \t]+(?:action|report|letter|proceedings|hearing)"
    rb"|(?:second|third|final)[ \t]+(?:breach|strike)|yot\b|yjs\b|youth[ \t]+justice[ \t]+(?:service|worker)"
    rb"|detention[ \t]+and[ \t]+training[ \t]+order|youth[ \t]+rehabilitation[ \t]+order|child[ \t]+in[ \t]+need"
    rb"|section[ \t]+47|s\.?47[ \t]+(?:enquiry|enquiries|investigation)|care[ \t]+order|emergency[ \t]+protection"
    rb"[ \t]+order|(?:taken|placed|put)[ \t]+into[ \t]+care|(?:is|was|been|grew[ \t]+up)[ \t]+in[ \t]+care\b"
    rb"|(?:in|into|entered)[ \t]+foster[ \t]+care|(?:his|her|their)[ \t]+foster[ \t]+(?:carers?|placement|parents?)"
    rb"|lado\b|suicid(?:e|al)[ \t]+(?:attempt|ideation|thoughts|risk|watch)|attempted[ \t]+suicide|overdosed"
    rb"|took[ \t]+an[ \t]+overdose|self[ \t\-_]+harm(?:ed|ing)"
    # what health, social care and schools write of someone at risk: thoughts of ending a life, a diagnosis of
    # serious mental illness, harm at home seen by a school or a health visitor, a knife brought in, a suspension
    rb"|awol|absent[ \t]+without[ \t]+leave|s\.?37(?:/41)?\b|section[ \t]+37|escorted[ \t]+leave"
    rb"|suicidal|end(?:ing|ed)?[ \t]+(?:his|her|their|my|both[ \t]+their)[ \t]+(?:own[ \t]+)?li(?:fe|ves)"
    rb"|(?:kill|killing|hurt|hurting|harm|harming|hang|hanging)[ \t]+(?:himself|herself|myself)"
    rb"|ptsd|schizophreni[ac]|bipolar|psychosis|psychotic|personality[ \t]+disorder|eating[ \t]+disorder"
    rb"|anorexi[ac]|bulimi[ac]|postnatal[ \t]+depression|pnd\b|epds[ \t]+(?:score|of)"
    rb"|(?:dad|mum|father|mother|step-?dad|stepfather|partner|boyfriend|husband|uncle)[ \t]+(?:(?:has|had)[ \t]+been"
    rb"[ \t]+|keeps[ \t]+)?(?:hits|hit|hitting|beats|beat|beating|slaps|slapped|slapping|punches|punched|punching|kicks"
    rb"|kicked|kicking|hurts|hurting|burns|burnt|chokes|choked|choking)[ \t]+(?:her|him|them|me)\b"
    rb"|marks[ \t]+(?:seen|noted|observed)[ \t]+on|bruis(?:e|es|ed|ing)[ \t]+(?:on|to)[ \t]+(?:her|his|their)"
    rb"|(?:brought|carried|carrying|concealed)[ \t]+an?[ \t]+(?:kitchen[ \t]+)?(?:knife|blade|bladed[ \t]+article"
    rb"|weapon|machete)|for[ \t]+\d{1,2}[ \t]+school[ \t]+days?|suspension[ \t]+from[ \t]+school"
    rb"|\bda[ \t]+(?:history|victim|perpetrator|risk|disclosure|incident|referral)"
    rb"|do[ \t]+not[ \t]+disclose[ \t]+(?:(?:her|his|their|the)[ \t]+)?(?:new[ \t]+)?address"
    rb"|lone[ \t]+(?:visits?|working)[ \t]+not[ \t]+(?:permitted|allowed)"
    # Welsh, with the mutated forms (carchar, garchar, ngharchar, charchar); the folded view reads mechnïaeth as
    # mechniaeth
    rb"|n?g?h?c?h?archar|[cg]archarorion|n?g?h?c?h?archaror|ngharcharor|carcharu|garcharu|llys[ \t]+y[ \t]+goron"
    rb"|lys[ \t]+y[ \t]+goron|llys[ \t]+(?:yr[ \t]+)?ynadon|ar[ \t]+brawf|gwasanaeth[ \t]+prawf"
    rb"|n?[dt]h?roseddw(?:r|yr)|n?[dt]h?rosedd(?:au)?|d?dedfryd(?:u|wyd)?|nedfryd|h?arest(?:io|iwyd|iwyd)"
    rb"|f?mechniaeth|n?[dt]h?yst(?:ion|iolaeth)?|d?dioddefw(?:r|yr|raig)|nioddefwr|euog|n?g?h?c?h?yhudd(?:o|wyd|iad)"
    rb"|h?ymosod(?:iad|odd)?|c?g?h?am-?drin|camdriniaeth|diogelu[ \t]+(?:plant|oedolion)|gorchymyn[ \t]+cymunedol"
    rb"|gorchymyn[ \t]+atal|dwyn[ \t]+o[ \t]+siop|g?camfanteisio|cyfiawnder[ \t]+ieuenctid|torri[ \t]+amodau"
    rb"|methu[ \t]+(?:ei|eich|(?:a|\xc3\xa2)[ \t]+mynychu[ \t]+eich)[ \t]+apwyntiad"
    # casework outside the courts, where a named person's data is as sensitive: an employee's grievance,
    # discipline or sickness; a patient's health; an adult's or a child's social care; immigration detention
    rb"|grievance|disciplinary|gross[ \t]+misconduct|misconduct[ \t]+(?:hearing|investigation|allegations?)"
    rb"|suspended[ \t]+(?:on[ \t]+full[ \t]+pay|pending|from[ \t]+(?:duty|work|today))"
    rb"|(?:is|was|been|he's|she's|they're|being)[ \t]+suspended|signed[ \t]+off[ \t]+(?:sick|with|since)"
    rb"|sickness[ \t]+absence|employment[ \t]+tribunal|capability[ \t]+(?:hearing|procedure|meeting)"
    rb"|(?:was|were|been|be|being)[ \t]+dismissed|whistleblow(?:ing|er)|counter[ \t]+fraud|fraud[ \t]+investigation"
    rb"|dementia|alzheimer's|schizophreni[ac]|psychosis|psychotic|bipolar|delirium"
    rb"|(?:lacks?|lacking)[ \t]+capacity"
    rb"|mental[ \t]+capacity|dols\b|deprivation[ \t]+of[ \t]+liberty|sectioned|mental[ \t]+health[ \t]+act"
    rb"|diagnosed[ \t]+with|(?:a|his|her|their)[ \t]+diagnosis"
    rb"|admitted[ \t]+(?:to[ \t]+(?:hospital|the[ \t]+ward)|with)"
    rb"|discharge[ \t]+(?:letter|summary)|discharged[ \t]+from[ \t]+hospital|pregnant|miscarriage|chemotherapy"
    rb"|overdose|learning[ \t]+disabilit(?:y|ies)|care[ \t]+home[ \t]+(?:resident|placement)|clozapine"
    rb"|antipsychotics?|eating[ \t]+disorder|safeguarding[ \t]+(?:referral|concern|enquiry)|s\.?[ \t]?42\b"
    rb"|section[ \t]+42|strategy[ \t]+(?:discussion|meeting)|mash\b|idva\b|isva\b|dash[ \t]+(?:risk|score|\d)"
    rb"|refuge|forced[ \t]+marriage|fgm\b|honour[ \t\-]+based|child[ \t]+protection[ \t]+plan|cp[ \t]+plan"
    rb"|foster[ \t]+carers?|special[ \t]+guardianship|care[ \t]+proceedings|deputyship|court[ \t]+of[ \t]+protection"
    rb"|barring[ \t]+(?:referral|list)|dbs[ \t]+referral|going[ \t]+missing|disclosed[ \t]+(?:that|abuse|to)"
    rb"|neglect|appropriate[ \t]+adult|strangled|strangulation|asylum[ \t]+(?:seeker|claim|applicant)|detainee"
    rb"|immigration[ \t]+(?:removal|detention|bail)|removal[ \t]+centre|rule[ \t]+35"
    # a child's death, social care, an employee's absence and health
    rb"|post[ \t\-]?mortem|cdop\b|child[ \t]+death|social[ \t]+(?:care|services|worker)|occupational[ \t]+health"
    rb"|oh[ \t]+(?:report|referral)|off[ \t]+sick|sick[ \t]+leave|attendance[ \t]+(?:review|meeting|management)"
    rb"|stage[ \t]+(?:1|2|3|one|two|three)[ \t]+(?:meeting|absence|hearing|attendance|capability|review)"
    # a witness statement's own words, and a call to the police
    rb"|make[ \t]+this[ \t]+statement|this[ \t]+statement[ \t]+(?:is[ \t]+true|consisting)"
    rb"|(?:rang|called|dialled|phoned)[ \t]+(?:the[ \t]+)?(?:999|police)|(?:my|her|his)[ \t]+ex[ \t\-]?partner"
    rb"|crime[ \t]+report|stab[ \t]+(?:him|her|them|me|you)\b|threatened[ \t]+(?:my|his|her|their|our)[ \t]+(?:son"
    rb"|daughter|child|kids|children|family|partner|wife|husband|mum|dad|sister|brother)"
    # a prison's own word in a prisoner's letter: "my pad mate"
    rb"|pad[ \t\-]?mate"
    # Welsh safeguarding and drugs; Polish and Romanian words of a case (as the folded view spells them: "ofiara",
    # "detinut")
    rb"|tim[ \t]+diogelu|swyddog[ \t]+diogelu|cyffuriau"
    rb"|wiezien|areszcie|ofiar[ay]|pobici[ae]|przemoc[ya]?|prokuratur[ay]"
    # Polish: beat (me), detained, bail ("pobil mnie", "policja zatrzymala go", "wyszedl za kaucja")
    rb"|pobil[ao]?|zatrzymal[ao]?|zatrzyman[ya]|kaucj[aei]"
    rb"|detinut(?:ul|a)?|agresat[a]?|inchisoare|arestat[a]?|condamnat[a]?|victima"
    # Urdu and Polish as staff transliterate or paste them: sentence, imprisonment, crime, arrested, prison
    rb"|saza|qaid|jurm|giraftar|mujrim|wyrok|wiezieni[ae]|skazan[ya]|aresztowan[ya]|zarzut(?:y|em)?"
    # Polish: the injured party, the accused, witnesses, assault (as the folded view spells them)
    rb"|pokrzywdzon[aeyi]|oskarzon(?:y|ego|a|ej|emu)|swiad(?:ek|ka|kowie|kami|kow)|napasc|napasci"
    # Lithuanian (police in its cases, detained, court), Urdu as staff transliterate it (police station, bail, court
    # case, lock-up), Welsh child protection and children's services
    rb"|policij[a-z]{0,3}|sulaikyt[a-z]{1,3}|teism[a-z]{1,3}|thana|zamanat|muqadm[ae]|mukadm[ae]|hawalat"
    rb"|amddiffyn[ \t]+plant|gwasanaethau[ \t]+plant|police[ \t]+(?:le[ \t]+ga(?:yi|ye|i|e)|ne[ \t]+pak(?:ra|ar|da))"
    # immigration removal centres, by name as detainees' families write them
    rb"|harmondsworth|colnbrook|brook[ \t]+house|tinsley[ \t]+house|yarl'?s[ \t]+wood|dungavel|derwentside"
    # prison, police, court and beaten in the other languages of the people a department deals with (Latin script,
    # as the folded view spells them): Somali, Romanian, Portuguese and Spanish, Lithuanian, Albanian, Turkish,
    # Vietnamese, Arabic and Persian transliterated, Welsh
    rb"|xabsi(?:ga)?|booliska|maxkamad(?:da)?|la[ \t]+garaacay|politi(?:a|ei|st)|lovit|batut|amenintat"
    rb"|prisao|carcel|presos?|vitima|victima|agredid[oa]|detid[oa]|detenid[oa]|kalejim(?:e|as|o)"
    rb"|burgun|gjykat[ae]|cezaevi(?:nde)?|hapishane|hapiste|nha[ \t]+tu|cong[ \t]+an|sijn|shurta|zendan|heddlu"
    # health: what a patient has, takes and has done to them, as handovers, incident reports and letters write it
    rb"|medication|prescribed|epilep(?:sy|tic)|seizures?|insulin|depression|anxiety|panic[ \t]+attacks?|ptsd"
    rb"|psychiatric|mental[ \t]+health[ \t]+(?:crisis|team|nurse|assessment|act|liaison|issues|problems)"
    rb"|detox|methadone|substance[ \t]+misuse|alcohol[ \t]+(?:dependen(?:ce|cy|t)|withdrawal|misuse)|ciwa"
    rb"|fractured?|x-ray|injur(?:y|ies|ed)|(?:taken|rushed|admitted|escorted)[ \t]+to[ \t]+hospital"
    rb"|(?:hospital|bedside|cuffed|cat[ \t]+a)[ \t]+escort|a&e|ambulance|cancer|terminal(?:ly)?[ \t]+ill|hiv"
    rb"|on[ \t]+(?:a[ \t]+)?(?:s\.?[ \t]?136|section[ \t]+136)|depot[ \t]+(?:injection|medication)"
    rb"|welfare[ \t]+check|dna'd|datix|falls?[ \t]+(?:assessment|risk|review)"
    rb"|found[ \t]+on[ \t]+the[ \t]+floor|restraint|physical[ \t]+intervention|use[ \t]+of[ \t]+force"
    # the Mental Health Act's sections as a transfer or a detention ("transfer under s.48", "on section 3")
    rb"|(?:under|on)[ \t]+(?:s\.?|section)[ \t]?(?:2|3|37|41|47|48|49|135|136)|constant[ \t]+obs(?:ervations?)?"
    # violence at home, as a note tells it: "he's been hitting his gf again"
    rb"|(?:hitting|hit|beating|beat|punching|punched|kicking|kicked|strangled|choked|pushed|threatening|threatened)"
    rb"[ \t]+(?:his|her|their)[ \t]+(?:gf|bf|girlfriend|boyfriend|partner|wife|husband|kids?|children|son|daughter"
    rb"|mum|mother|dad|father)"
    # sexual abuse or harassment as a child's disclosure or a complaint tells it
    rb"|touch(?:ed|ing)[ \t]+(?:her|him|me|my|them)|sexual[ \t]+(?:comments|messages|remarks|advances|abuse)"
    # personnel casework, vetting and money trouble
    rb"|conduct[ \t]+and[ \t]+discipline|improvement[ \t]+plan|(?:final|written)[ \t]+warning"
    rb"|attendance[ \t]+(?:warning|hearing)|exit[ \t]+interview|phased[ \t]+return"
    rb"|bullying|sexual[ \t]+harassment|inappropriate[ \t]+(?:behaviour|comments|messages|touching|contact)"
    rb"|vetting[ \t]+(?:decision|refusal|interview|review)|(?:clearance|vetting)[ \t]+(?:was[ \t]+)?(?:refused"
    rb"|withdrawn|revoked|denied)|county[ \t]+court[ \t]+judg(?:e)?ments?|ccjs?|iva|bankrupt(?:cy)?"
    rb"|gambling[ \t]+debts?|rent[ \t]+arrears|evict(?:ed|ion)|no[ \t]+fixed[ \t]+abode|nfa|sofa[ \t\-]+surfing"
    # prisons, intelligence and missing people, as their logs write it
    rb"|county[ \t]+line|intel(?:ligence)?[ \t]+(?:report|log|suggests|says|indicates)|int[ \t]+log"
    rb"|yoi|secure[ \t]+(?:children's[ \t]+home|training[ \t]+centre)"
    rb"|children's[ \t]+home|(?:was|were|been|got|being)[ \t]+(?:slashed|stabbed|beaten|attacked|punched|kicked)"
    rb"|(?:supply|supplying|dealing)[ \t]+(?:of[ \t]+)?(?:drugs|spice|cannabis|heroin|cocaine|crack)"
    rb"|missing[ \t]+(?:person|episodes?|from)|contact[ \t]+log|night[ \t]+log"
    rb"|release[ \t]+planning|overstay(?:er|ed)|immigration[ \t]+(?:enforcement|status|offen[cs]es?)"
    rb"|failed[ \t]+to[ \t]+return[ \t]+to[ \t]+(?:the[ \t]+|his[ \t]+|her[ \t]+)?"
    rb"(?:ap|approved|prison|hostel|custody|hmp)"
    rb"|leave[ \t]+to[ \t]+remain|removal[ \t]+directions"
)
_NAME = rb"\b[A-Z][a-z]+[ \t]+(?:[A-Z]\.?[ \t]+)?[A-Z][A-Za-z'\-]+"
# What follows the name in "Jane Doe (12/03/1985)": the first pass looks for this part alone, as tracking every
# capitalised word pair costs the set's DFA more than the dates it then finds.
_DATE_AFTER_NAME = rb"[ \t]*(?:,|\()[ \t]*(?i:(?:b\.|born|dob|d\.o\.b\.?)[ \t:]*)?(?P<date>" + _DATE + rb")"

# Identifier boundaries. An identifier is often glued to what surrounds it ("referral_9434765919.pdf",
# "NHS9434765919", "ref:AB123456C"), where ``\b`` sees no boundary: a digit identifier needs only no digit on
# either side, an alphanumeric one no letter or digit. The identifier itself is the group ``v`` (the scanner
# treats it as the match); the character before and after is part of the match but never a newline.
_DB = rb"(?:(?m:^)|[^0-9\n%])"  # not after "%": a URL's "%20" then digits is an escape, not part of a number
_DE = rb"(?:[^0-9\n]|(?m:$))"
_AB = rb"(?:(?m:^)|[^A-Za-z0-9\n])"
_AE = rb"(?:[^A-Za-z0-9\n]|(?m:$))"


def _digit_id(core: bytes) -> bytes:
    return _DB + rb"(?P<v>" + core + rb")" + _DE


def _alnum_id(core: bytes) -> bytes:
    return _AB + rb"(?P<v>" + core + rb")" + _AE


_SEP = rb"[ \t.\-]{0,3}"  # between a number's groups: spaces, tabs, dots or hyphens (dashes are "-" once normalised)
_SP = rb"[ \t]{0,3}"  # optional spaces between the groups of an alphanumeric identifier
_NHS_SEP = rb"[ \t.\-/]{0,3}"
_NI_SEP = rb"[ \t.\-]{0,3}"  # "ZN.14.12.21.C", "ZN-14-12-21-C"

IDENTIFIER_DETECTORS: tuple[Detector, ...] = (
    Detector(
        "nhs_number",
        OS,
        # also "734/980/4830": slashes between the groups, as some clinical systems print it
        _digit_id(rb"\d{3}" + _NHS_SEP + rb"\d{3}" + _NHS_SEP + rb"\d{4}"),
        _nhs_number,
        also=(("utr", OS),),
    ),
    Detector("utr", OS, _digit_id(rb"\d{5}" + _SP + rb"\d{5}K?"), _utr_number, requires=_UTR_CONTEXT),
    Detector(
        "ni_number",
        OS,
        # a digit may follow the suffix letter: a fixed-width record runs the next field on ("LJ000864C19780203...")
        _AB
        + rb"(?P<v>(?i:[A-Z]{2}"
        + _NI_SEP
        + rb"\d{2}"
        + _NI_SEP
        + rb"\d{2}"
        + _NI_SEP
        + rb"\d{2}"
        + _NI_SEP
        + rb"[A-D]))(?:[^A-Za-z\n]|(?m:$))",
        _ni_number,
    ),
    Detector("pnc_id", OS, _alnum_id(rb"(?:19|20)\d{2}/?\d{7}[A-Z]"), _pnc_long),
    Detector("pnc_id", OS, _alnum_id(rb"\d{2}/\d{1,7}[A-Z]"), _pnc_short),
    Detector("pnc_id", OS, _alnum_id(rb"\d{3,9}[A-Z]"), _pnc_bare, requires=_PNC_CONTEXT),
    Detector("cro_number", OS, _alnum_id(rb"\d{1,6}/\d{2}[A-Z]"), _cro_standard),
    Detector("cro_number", OS, _alnum_id(rb"SF\d{2}/\d{1,6}[A-Z]"), _cro_search_file),
    # in lower case only with a prison word near ("can you check if g5512vt's parole hearing moved?")
    Detector("prison_number", OS, _alnum_id(rb"(?i:[A-Z]\d{4}[A-Z]{2})"), _prison_number),
    Detector("probation_crn", OS, _alnum_id(rb"(?i:[A-Z])\d{6}"), _crn, requires=_CRN_CONTEXT),
    Detector("uk_passport", OS, _alnum_id(rb"(?i:[A-Z]{2})\d{7}"), _passport_letters),
    Detector("uk_passport", OS, _digit_id(rb"\d{9}"), _passport_digits, requires=_PASSPORT_CONTEXT),
    Detector(
        "driving_licence",
        OS,
        _alnum_id(rb"(?i:[A-Z9]{5}" + _SP + rb"\d[0156]\d[0-3]\d\d" + _SP + rb"[A-Z9]{2}\d" + _SP + rb"[A-Z0-9]{2})"),
        _driving_licence,
    ),
    # ... opening a fixed-width record, the next field run on: "KOWAL955213MA9THSP302025021803Northampton"
    Detector("driving_licence", OS, rb"(?m:^)[A-Z9]{5}\d[0156]\d[0-3]\d\d[A-Z9]{2}\d[A-Z0-9]{2}", _driving_licence),
    Detector(
        "sort_code_account",
        OS,
        rb"\b\d{2}" + _SEP + rb"\d{2}" + _SEP + rb"\d{2}\b[^\n\d]{1,40}?\b\d{8}\b"
        rb"|\b\d{8}\b[^\n\d]{1,40}?\b\d{2}" + _SEP + rb"\d{2}" + _SEP + rb"\d{2}\b"
        # a labelled sort code alone on its line: the validator looks for the account number after it
        rb"|(?P<labelled>(?i:sort[ \t_\-]*code)[^\n\d]{0,20}?\b\d{2}" + _SEP + rb"\d{2}" + _SEP + rb"\d{2}\b)",
        _sort_code_account,
        requires=_BANK_CONTEXT,
    ),
    Detector(
        "iban",
        OS,
        _alnum_id(rb"(?i:GB\d{2}" + _SP + rb"[A-Z]{4}" + (_SP + rb"\d{4}") * 3 + _SP + rb"\d{2})"),
        _iban_gb,
    ),
    Detector(
        "iban",
        OS,
        _alnum_id(rb"[A-Z]{2}\d{2}(?:" + _SP + rb"[A-Z0-9]{4}){2,7}(?:" + _SP + rb"[A-Z0-9]{1,3})?"),
        _iban_abroad,
    ),
    Detector(
        "payment_card",
        OS,
        _digit_id(
            rb"\d{13,19}|\d{4}(?:[ \t\-.]{1,3}\d{4}){2,3}(?:[ \t\-.]{0,3}\d{1,3})?"
            rb"|\d{4}[ \t\-.]{1,3}\d{6}[ \t\-.]{1,3}\d{5}"
            # two groups of eight as a chat types them (one space or dash: not a table's two 8-digit columns)
            rb"|\d{8}[ \-]\d{8}"
        ),
        _payment_card,
    ),
    Detector(
        "email",
        OS,
        rb"\b[A-Za-z0-9][A-Za-z0-9._%+\-]*@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,24}\b",
        _email,
        trigger=rb"[A-Za-z0-9._%+\-]@[A-Za-z0-9\-]",  # not every word as a possible local part
    ),
    Detector(
        "uk_phone",
        OS,
        _digit_id(
            rb"(?:(?:\+|00)[ \t]{0,3}44[ \t\-.]{0,3}(?:\(0\)[ \t\-.]{0,3})?|\(?0)\(?[1-9](?:[ \t\-.)]{0,3}\d){8,9}"
        ),
        _uk_phone,
    ),
    Detector("uk_phone", OS, _digit_id(rb"44[1-37]\d{8,9}"), _uk_phone_bare, requires=_PHONE_CONTEXT),
    Detector(
        "uk_postcode",
        OS,
        _alnum_id(
            rb"(?i:GIR[ \t]{0,3}0AA|[A-PR-UWYZ](?:\d[A-HJKPSTUW\d]?|[A-HK-Y]\d[ABEHMNPRVWXY\d]?)"
            rb"[ \t]{0,3}\d[ABD-HJLNP-UW-Z]{2})"
        ),
        _postcode,
    ),
    Detector(
        "date_of_birth",
        OS,
        # also as a field name: dateOfBirth, date_of_birth, "dob": "1984-07-22"
        rb"(?i:\b(?:d\.?o\.?b\.?|date[ \t_\-]*of[ \t_\-]*birth|birth[ \t_\-]*date|born(?:[ \t]+on)?|dyddiad[ \t]+geni))"
        rb"[\"'>]{0,2}[ \t]*[:=\-,]?[ \t]*[\"']{0,2}[ \t]*(?P<date>" + _DATE + rb")",  # quotes doubled in a CSV cell
        _dob_labelled,
    ),
    Detector("date_of_birth", OS, _NAME + _DATE_AFTER_NAME, _dob_after_name, trigger=_DATE_AFTER_NAME),
    Detector(
        "justice_context_named_person",
        OS,
        # "_" as well as a word boundary: a field or a value in snake case (event=safeguarding_flag, CURFEW_BREACH)
        rb"(?i)(?:\b|_)(?:" + _JUSTICE_WORDS + rb")(?:\b|_)",
        _justice_person,
        trigger=rb"(?i)(?:\b|_)(?:" + _JUSTICE_WORDS + rb")",
    ),
)

# What every match of a row holds (Detector.needs): a digit for each identifier and date row, "@" for an e-mail
# address; the justice row is words. tests/routing/test_classify_detectors.py checks it on the parsed patterns.
_DIGITS = b"0123456789"
IDENTIFIER_DETECTORS = tuple(
    det
    if det.signal == "justice_context_named_person"
    else replace(det, needs=b"@" if det.signal == "email" else _DIGITS)
    for det in IDENTIFIER_DETECTORS
)

# An e-mail address spelt out against harvesters ("name [at] domain [dot] com"): words, not "@", so no needed byte.
_SPELT_AT = rb"[ \t]*[\[({<][ \t]*(?i:at)[ \t]*[\])}>][ \t]*"  # in brackets: "meet at the station.com" is no address
_SPELT_DOT = rb"[ \t]*(?:[\[({<][ \t]*(?i:dot)[ \t]*[\])}>]|[ \t](?i:dot)[ \t]|\.)[ \t]*"
IDENTIFIER_DETECTORS += (
    Detector(
        "email",
        OS,
        rb"\b[A-Za-z0-9][A-Za-z0-9._%+\-]*"
        + _SPELT_AT
        + rb"[A-Za-z0-9\-]+(?:"
        + _SPELT_DOT
        + rb"[A-Za-z0-9\-]+)*"
        + _SPELT_DOT
        + rb"[A-Za-z]{2,24}\b",
        _email_spelt_out,
        trigger=rb"[A-Za-z0-9][ \t]*[\[({<][ \t]*(?i:at)[ \t]*[\])}>]",
    ),
)

# A table whose header row names a date-of-birth column (a spreadsheet, CSV or query result): its rows are people,
# and a date in the rows under it is someone's date of birth. The header has no digit, so no needed byte.
_DOB_WORDS = rb"(?i:d\.?o\.?b\.?|date[ \t_\-]*of[ \t_\-]*birth|birth[ \t_\-]*date|dyddiad[ \t]+geni)"
_DATE_RX = Regex(_DATE, re2_options(1 << 20))
_TABLE_LOOK = 600


def _dob_column(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    line_end = text.find(b"\n", m.end())
    if line_end < 0 or _invented(text, m.start(), m.end()):
        return None  # (a table of synthetic test data: "# SYNTHETIC TEST DATA - no real patients")
    for date in _DATE_RX.finditer(text, line_end, min(len(text), line_end + _TABLE_LOOK)):
        if _date_ok(date.group(), max_year=_THIS_YEAR - 5):
            return "date_of_birth"
    return None


IDENTIFIER_DETECTORS += (
    Detector(
        "date_of_birth",
        OS,
        rb"(?m:^|[,;\t|])[ \t]*[\"']?" + _DOB_WORDS + rb"[\"']?[ \t]*(?m:[,;\t|]|$)",
        _dob_column,
        # the header word beside a field separator: "Date of birth: 12/03/1985" (the labelled row's) is no header
        trigger=rb"[,;\t|][ \t]*[\"']?" + _DOB_WORDS + rb"|" + _DOB_WORDS + rb"[\"']?[ \t]*[,;\t|]",
    ),
)

# A table whose header row names a person column (routing.tables): a name in a cell under it is someone in a case
# when the column is a role in one (defendant, victim...), another column is a case's (offence, sentence, release
# date...) or justice words are in the table or just above it.
_PERSON_COLUMN = (
    rb"(?i:(?:full|first|last|given|family|maiden|preferred|legal|child'?s?|defendant'?s?|offender'?s?|prisoner'?s?"
    rb"|client'?s?|victim'?s?|witness'?s?|person'?s?|nominal|subject|patient|pupil|applicant|individual|suspect)"
    rb"[ \t_\-]?names?|surnames?|forenames?|defendant|offender|prisoner|probationer|victim|witness|child"
    rb"|young[ \t_\-]person|nominal|suspect|accused|inmate|detainee|service[ \t_\-]user|client|person|individual"
    rb"|subject)"
)
_BARE_NAME = rb"(?i:names?)"
# After ", " only capitalised ("ID, Full Name, Offence", as a header is typed): source code's arguments
# ("f(self, name, fullname)") are the commonest ", name," there is.
_PERSON_COLUMN_CAPITALISED = (
    rb"(?:N(?i:ames?)|F(?i:ull[ \t_\-]?names?)|F(?i:irst[ \t_\-]?names?)|L(?i:ast[ \t_\-]?names?)"
    rb"|G(?i:iven[ \t_\-]?names?)|S(?i:urnames?)|F(?i:orenames?)|D(?i:efendant)|O(?i:ffender)|P(?i:risoner)"
    rb"|V(?i:ictim)|W(?i:itness)|C(?i:hild)|C(?i:lient)|P(?i:erson)|S(?i:ubject)|N(?i:ominal))"
)
_QUOTES_OPEN = rb"[\"'`*\[]{0,2}"
_CELL_OPEN = rb"[ \t]*" + _QUOTES_OPEN
_CELL_CLOSE = rb"[\"'`*\]]{0,2}[ \t]*"
# Words of a header's columns that say the rows are a case's (snake_case and camelCase read as words).
# Those that say it whatever other columns there are (a staff list has no offence or sentence column) ...
_CASE_ONLY_COLUMN_WORDS = (
    rb"offen[cs]es?|charges?|sentences?|sentenced|convictions?|convicted|plea|verdict|remand|bail|release[ \t_]*date"
    rb"|crd|hdc|mappa|marac|rosh|oasys|crn|pnc|cro|nomis|breach(?:es)?|recall|warrant|adjudications?|victims?"
    rb"|risk[ \t_]*of[ \t_]*serious[ \t_]*harm"
)
_CASE_ONLY_COLUMNS = Regex(rb"(?i:\b(?:" + _CASE_ONLY_COLUMN_WORDS + rb")\b)", re2_options(1 << 20))
# ... and those that say it only where no column says the rows are staff (a wing, a court, a placement).
_CASE_COLUMNS = Regex(
    rb"(?i:\b(?:"
    + _CASE_ONLY_COLUMN_WORDS
    + rb"|custody|licence|sed|led|tier|prison|establishment|wing|cell|hearing|court|missing|placement|yjs|yot|unpaid"
    rb"|hours[ \t_]*ordered|probation|witness(?:es)?|safeguarding)\b)",
    re2_options(1 << 20),
)
_TABLE_CONTEXT_TEXT = """
    offen sentenc convict charge plea verdict custody remand bail release licence mappa marac rosh oasys crn pnc nomis
    prison hmp establishment breach recall warrant hearing court missing placement yjs yot unpaid probation parole
    victim witness safeguard defendant inmate detainee suspect accused nominal arrest police abuse harm hours_ordered
    tier crd hdc upw acct rotl cell wing segregation adjudication
"""
_TABLE_CONTEXT = Words(*(word.replace("_", " ").encode() for word in _TABLE_CONTEXT_TEXT.split()))
_JUSTICE_RX = Regex(rb"(?i)(?:\b|_)(?:" + _JUSTICE_WORDS + rb")(?:\b|_)", re2_options(8 << 20))
_TABLE_CONTEXT_BEFORE = 300


def _table_at(
    m: Match, text: bytes, state: dict[str, Any], key: str
) -> tuple[tables.Header, Iterator[bytes], int] | None:
    """The table whose header holds the match (``tables.header_at``), unless a row of this kind has read it already.
    A header's lines are not read again for this kind (``state[key]``), so a text of many header-like lines costs
    each of its lines a bounded number of reads."""
    start = m.start()
    if start < state.get(key, -1):
        return None
    found = tables.header_at(text, start)
    if found is None:
        line_end = text.find(b"\n", start)
        state[key] = len(text) if line_end < 0 else line_end
        return None
    state[key] = found[2]
    return found


def _person_column(m: Match, text: bytes, state: dict[str, Any]) -> str | None:
    found = _table_at(m, text, state, "people_read")
    if found is None:
        return None
    header, lines, end = found
    if not tables.people_in_table(header, lines):
        return None
    start = m.start()
    cells = " ".join(cell.replace("_", " ") for cell in header.cells).encode()
    if any(header.cells[i].split("_")[0] in tables.JUSTICE_ROLES for i in header.full):
        return "justice_context_named_person"
    if header.staff and not _CASE_ONLY_COLUMNS.found(cells):
        return None  # colleagues by role, team or shift: a wing or a court in their columns says nothing of a case
    if _CASE_COLUMNS.found(cells):
        return "justice_context_named_person"
    lo = max(0, text.rfind(b"\n", 0, start) - _TABLE_CONTEXT_BEFORE)
    return "justice_context_named_person" if _JUSTICE_RX.found(text, lo, end) else None


IDENTIFIER_DETECTORS += (
    Detector(
        "justice_context_named_person", OS, _PROSECUTOR + _DEFENDANT, _prosecuted, trigger=_PROSECUTOR + rb"[A-Z]"
    ),
    Detector(
        "justice_context_named_person",
        OS,
        # a cell: at a line's start (not indented, as code is), after a separator, after text and two spaces
        # (fixed width; not inside an indent), or first in an SQL INSERT's column list ("INSERT INTO nominals
        # (surname, ..."; not a call's arguments, "f(name, ...)")
        rb"(?:(?m:^)|[;\t|][ \t]*|,|[^ \t\n][ \t]{2,}|(?i:insert[ \t]+into[ \t]+)[A-Za-z0-9_.`\"\[\]]+[ \t]*\([ \t]*)"
        + _QUOTES_OPEN
        + rb"(?:"
        + _PERSON_COLUMN
        + rb"|"
        + _BARE_NAME
        + rb")"
        + _CELL_CLOSE
        + rb"(?m:[,;\t|]|  |$)"
        + rb"|,[ \t]+"
        + _QUOTES_OPEN
        + _PERSON_COLUMN_CAPITALISED
        + _CELL_CLOSE
        + rb"(?m:[,;\t|]|  |$)",
        _person_column,
        # without one of these anywhere, no table in the text can be a case's (nor its header name a role in one):
        # one search instead of reading every "name" column of a page of code
        requires=_TABLE_CONTEXT,
    ),
)


def _bank_columns(m: Match, text: bytes, state: dict[str, Any]) -> str | None:
    found = _table_at(m, text, state, "bank_read")
    return "sort_code_account" if found is not None and tables.bank_details_in_table(found[0], found[1]) else None


# The second line of a passport's machine-readable zone (ICAO 9303 TD3, 44 characters), as OCR of a data page gives
# it: document number, nationality, date of birth, sex, expiry, each number with its check digit (weights 7, 3, 1;
# A-Z count 10-35, "<" 0). Any nationality: a foreign national's passport is personal data as much as a British one.
_MRZ_VALUE = {**{ord(str(d)): d for d in range(10)}, **{65 + i: 10 + i for i in range(26)}, ord("<"): 0}
_MRZ_SPECIMENS = frozenset({b"L898902C3", b"L898902C<"})  # ICAO's own specimen (Utopia)


def _mrz_check(field: bytes, digit: int) -> bool:
    return sum(_MRZ_VALUE[c] * (7, 3, 1)[i % 3] for i, c in enumerate(field)) % 10 == digit - 48


def _passport_mrz(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    line = m.group()
    if line[:9] in _MRZ_SPECIMENS or line[10:13] == b"UTO" or not line[:9].strip(b"<0"):
        return None
    checked = _mrz_check(line[0:9], line[9]) and _mrz_check(line[13:19], line[19]) and _mrz_check(line[21:27], line[27])
    return "passport_mrz" if checked else None


IDENTIFIER_DETECTORS += (
    Detector(
        "passport_mrz",
        OS,
        # the line's 44 characters with none of the zone's characters on either side (a JSON string's "\n" too)
        rb"(?:(?m:^)|[^A-Z0-9<\n])(?P<v>[A-Z0-9<]{9}[0-9][A-Z<]{3}[0-9]{6}[0-9][MFX<][0-9]{6}[0-9][A-Z0-9<]{14}[0-9<][0-9])"
        rb"(?:[^A-Z0-9<\n]|(?m:$))",
        _passport_mrz,
        trigger=rb"[0-9][A-Z<]{3}[0-9]{7}[MFX<][0-9]{7}[A-Z0-9<]{14}[0-9<][0-9]",
        needs=b"0123456789",
    ),
)


# A payment file or statement with sort code and account number columns (routing.tables): a row with both.
IDENTIFIER_DETECTORS += (
    Detector(
        "sort_code_account",
        OS,
        rb"(?:(?m:^)|[;\t|,][ \t]*|[^ \t\n][ \t]{2,}|(?i:insert[ \t]+into[ \t]+)[A-Za-z0-9_.`\"\[\]]+[ \t]*\([ \t]*)"
        + _QUOTES_OPEN
        + rb"(?i:(?:bank|branch|destination|payee)?[ \t_\-]?sort[ \t_\-]?code)"
        + _CELL_CLOSE
        + rb"(?m:[,;\t|]|  |$)",
        _bank_columns,
    ),
)


# A password manager's export or a list of sites' codes (routing.tables): a password or a code under its column.
def _secret_columns(m: Match, text: bytes, state: dict[str, Any]) -> str | None:
    """``credential`` for a password under a password column (``_password_like``, or six digits or more),
    ``access_code`` for a code of 3 to 8 digits under a code column (``4510#``, ``49-73-20``); not a mask, a
    placeholder or "(ask the manager)"."""
    found = _table_at(m, text, state, "secrets_read")
    if found is None:
        return None
    for kind, cell in tables.secret_cells(found[0], found[1]):
        value = cell.encode()
        if kind == "code":
            digits = _digits(value)
            bare = value.replace(b" ", b"").replace(b"-", b"").strip(b"#*")
            if 3 <= len(digits) <= 8 and bare.isdigit() and len(set(digits)) > 1:
                return "access_code"
        elif cell.isascii() and " " not in cell and any(c.isdigit() for c in cell):  # letters and digits, or digits
            if value.isdigit() and len(value) >= 6 and not _placeholder(value):
                return "credential"
            if any(c.isalpha() for c in cell) and _password_like(value, shortest=4):
                return "credential"
    return None


_SECRET_COLUMN_DETECTOR = Detector(
    "credential",
    OS,
    rb"(?:(?m:^)|[;\t|,][ \t]*|[^ \t\n][ \t]{2,})"
    + _QUOTES_OPEN
    + rb"(?i:pass(?:word|wd|code|phrase)?|pwd|pin|(?:gate|door|alarm|keypad|access|entry|safe|barrier|override|unset)"
    rb"[ \t_\-]?code|key[ \t_\-]?safe(?:[ \t_\-]?code)?|lock[ \t_\-]?box|alarm)" + _CELL_CLOSE + rb"(?m:[,;\t|]|  |$)",
    _secret_columns,
    also=(("access_code", OS),),
)

# --- credentials -----------------------------------------------------------------------------------------
# A secret that opens a system: a private key, a cloud provider's or a service's access key in its own format, a
# database URL with its password, a password or key assigned in config. Never to leave; placeholders and
# environment look-ups ("changeme", "<password>", "${DB_PASSWORD}", os.environ[...]) are not secrets.
_PLACEHOLDER_SECRET = Regex(
    rb"(?i:^(?:[<{\[$%(*.#_\-]|changeme|change_me|password|passw0rd|secret|example|dummy|redacted|placeholder|none"
    rb"|null|true|false|test|xxx+|your|my|\*+|os\.|env|process\.|getenv|config|settings|vault|<|&lt;|%3c))",
    re2_options(1 << 20),
)


# A value that names a secret rather than being one: an environment variable's or a constant's name
# (REPLACE_ME, DB_PASSWORD), a quoted-printable escape ("SECRET =E2=80=93 ..." in a MIME part).
_NOT_A_SECRET_VALUE = Regex(
    # (and code: a call, an index or an attribute, "bytes(password, enc)", "pw[:-1]", "self.key")
    rb"[A-Z][A-Z_]*[A-Z0-9_]{0,2}$|[A-Za-z_][A-Za-z0-9_.]*[(\[]|(?:self|this|cls|args|kwargs|request|req)\."
    rb"|[0-9A-F]{2}=|&(?:[a-z]+|#[0-9]+);|(?i:replace|todo|fixme|insert|enter|tbc|n/a)",
    re2_options(1 << 20),
)
# ... or says anywhere in it that it stands for one: "sk_test_replace_me", AWS's documented "...EXAMPLEKEY".
_PLACEHOLDER_INSIDE = Regex(
    rb"(?i:replace|example|changeme|change_me|placeholder|dummy|redacted|xxxx|your[_\-]|[_\-]here\b)",
    re2_options(1 << 20),
)


def _assigned_secret(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    value = m.group(b"secret") or b""
    whole = m.group()
    if value.startswith(b"3D") and whole[: len(whole) - len(value)].rstrip(b"\"' \t").endswith(b"="):
        value = value[2:].lstrip(b"\"'")  # "=3D" is "=" in quoted-printable: the value is what follows it
    if (
        _PLACEHOLDER_SECRET.starts_at(value, 0, len(value))
        or _NOT_A_SECRET_VALUE.starts_at(value, 0, len(value))
        or _PLACEHOLDER_INSIDE.found(value)
    ):
        return None
    key = m.group().split(b"=", 1)[0].split(b":", 1)[0].strip(b"\"' \t").lower()
    generic = key.endswith((b"_token", b"_key")) and b"secret" not in key and b"api" not in key
    if generic and (len(value) < 16 or not any(c.isdigit() for c in value.decode("latin-1"))):
        return None  # a generic "..._key: ..." names a secret only when its value looks like one
    if value.isdigit():  # a PIN-like password ("udl_password: 95956314"), not a run such as 12345678
        return "credential" if b"pass" in key and len(value) >= 6 and not _placeholder(value) else None
    letters = sum(c.isalpha() for c in value.decode("latin-1"))
    digits_or_marks = len(value) - letters
    return "credential" if letters and digits_or_marks else None  # a mix, as passwords and keys are


def _url_password(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    password = m.group(b"secret") or b""
    return None if _PLACEHOLDER_SECRET.starts_at(password, 0, len(password)) else "credential"


def _service_key(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    return None if b"EXAMPLE" in m.group().upper() else "credential"  # AWS's documented AKIAIOSFODNN7EXAMPLE


CREDENTIAL_DETECTORS: tuple[Detector, ...] = (
    Detector(
        "credential",
        OS,
        rb"-----BEGIN[ \t]+(?:(?:RSA|EC|DSA|OPENSSH|ENCRYPTED|PGP)[ \t]+)?PRIVATE[ \t]+KEY(?:[ \t]+BLOCK)?-----",
    ),
    Detector(
        "credential",
        OS,
        # AWS access keys, GitHub and Slack tokens, OpenAI and Anthropic keys, Google API keys, Azure account keys
        rb"\b(?:(?:AKIA|ASIA)[0-9A-Z]{16}|(?i:gh[pousr]_)[A-Za-z0-9]{36,}|(?i:github_pat_)[A-Za-z0-9_]{40,}"
        rb"|xox[abpr]-[A-Za-z0-9\-]{20,}|sk-(?:proj-|ant-)?[A-Za-z0-9_\-]{32,}|AIza[0-9A-Za-z_\-]{35}"
        rb"|(?:sk|rk)_live_[A-Za-z0-9]{20,}|api_live_[A-Za-z0-9]{20,})\b"  # (Stripe's and GOV.UK Pay's live keys)
        rb"|(?i:accountkey)=[A-Za-z0-9+/]{40,}={0,2}",
        _service_key,
        trigger=rb"\b(?:AKIA|ASIA|(?i:gh[pousr]_|github_pat_)|xox[abpr]-|sk-|AIza|sk_live_|rk_live_|api_live_)[0-9A-Za-z_\-]|(?i:accountkey)=",
    ),
    Detector(
        "credential",
        OS,
        # scheme://user:password@host
        rb"\b(?i:[a-z][a-z0-9+.\-]{1,20})://[^\s/:@\\\"']{1,64}:(?P<secret>[^\s/@\\\"']{4,64})@[A-Za-z0-9.\-]+",
        _url_password,
        trigger=rb"://[^\s/:@\\\"']+:[^\s/@\\\"']+@",
    ),
    Detector(
        "credential",
        OS,
        # password = "...", "apiKey": "...", client_secret: ... (the value a mix of letters and digits or marks)
        # (a compound name too: PAYMENTS_API_KEY, STRIPE_SECRET_KEY, db-admin-password)
        rb"(?i:\b(?:[a-z0-9_\-]*(?:password|passwd|pwd|secret|secret_?key|api[_\-]?key|access[_\-]?key|auth[_\-]?token"
        rb"|access[_\-]?token|private[_\-]?key)|[a-z][a-z0-9_]*_token|[a-z][a-z0-9_]*_key))"
        rb"[\"']?[ \t]*(?:[:=]|=>)[ \t]*[\"']{0,2}(?P<secret>[^\s\"',;<>]{8,128})",  # ("" in a CSV field)
        _assigned_secret,
        trigger=rb"(?i:password|passwd|pwd|secret|secret_?key|api[_\-]?key|access[_\-]?key|auth[_\-]?token|access[_\-]?token"
        rb"|_token|_key"
        rb"|private[_\-]?key)[\"']?[ \t]*(?:[:=]|=>)",
    ),
)


# A password written in prose or a ticket rather than assigned in config: "user mosaic_sysadm  pass  Wint3r!Holly24",
# "the password is Summer2024!", "logged on using sa / Summer2024!". The value holds a digit and mixes it with
# letters or marks, as passwords do and words, numbers and dates do not.
_SECRET_VALUE = rb"[^\s\"',;<>()]{0,40}[0-9][^\s\"',;<>()]{0,40}"
_SIGNED_IN = rb"(?:(?:log(?:ged|ging)?|sign(?:ed|ing)?)[ \t]+(?:on|in)|connected)"
_PROSE_SECRET = (
    rb"(?i:\b(?:pass(?:word|wd|code|phrase)?|pwd|pw)\b)"
    rb"(?:[ \t]*(?:(?i:is|was|now|set[ \t]+to)|=|:|-|\xe2\x80\x93)){0,2}[ \t]+(?P<secret>" + _SECRET_VALUE + rb")"
    rb"|(?i:\b(?:creds?|credentials|login|logon|username/password|user/pass"
    rb"|" + _SIGNED_IN + rb"[^\n]{0,60}?\b(?:using|with|as)))"
    rb"[ \t:]+[A-Za-z0-9_.\\\-]{2,32}[ \t]*/[ \t]*(?P<secret2>" + _SECRET_VALUE + rb")"
    # "the new pw for the CCTV wifi (SSID FLG-SEC) is Otter&24saffron?": a strong value only (_strong)
    rb"|(?i:\b(?:pass(?:word|wd|code|phrase)?|pwd|pw)[ \t])[^\n]{0,60}?[ \t](?i:is|=|:)[ \t]+(?P<secret3>"
    + _SECRET_VALUE
    + rb")"
)
# A user and a password written "user / password", as tickets, chat and handovers do ("vbadmin / Copper#70thistle@",
# "JUSTICE\\da_emergency / Granite$43granite!"): with no word before it, the value must look like a password
# (_strong), not like "and/or", "24/7" or a date.
_SLASHED_SECRET = rb"(?:(?m:^)|[ \t(:])[A-Za-z0-9_.\\\-@]{2,40}[ \t]+/[ \t]+(?P<secret3>" + _SECRET_VALUE + rb")"
# A password in code that builds a credential: PowerShell's ConvertTo-SecureString '...' -AsPlainText, SQL's
# CREATE LOGIN ... WITH PASSWORD = N'...'.
_CODE_SECRET = (
    rb"(?i:convertto-securestring)[ \t]+[\"'](?P<secret>[^\"'\n]{6,64})[\"'][ \t]+(?i:-asplaintext)"
    rb"|(?i:with[ \t]+password[ \t]*=[ \t]*)N?'(?P<secret2>[^'\n]{6,64})'"
)
_PROSE_SECRET_TRIGGER = (
    rb"(?i:\b(?:pass(?:word|wd|code|phrase)?|pwd|pw)[ \t:=\-]|creds?\b|credentials|login|logon|" + _SIGNED_IN + rb")"
)
_DATE_OR_TIME = Regex(
    rb"\d{1,4}[/.\-:]\d{1,2}(?:[/.\-:]\d{1,4})?$|\d+(?i:st|nd|rd|th|am|pm|s|km|mb|gb|kb|days?|hours?|mins?|chars?"
    rb"|characters|digits)$",
    re2_options(1 << 20),
)
# An online meeting's passcode, as every invitation carries it, is no system's secret.
_MEETING_WORDS = Words(
    b"meeting id", b"join the meeting", b"teams meeting", b"zoom", b"webinar", b"conference id", b"dial-in"
)


_PASSWORD_MARKS = frozenset(b"!#$%&*?@^~+=")
_MONEY = Regex(rb"(?i:gbp|eur|usd|\xc2\xa3|\$|\xe2\x82\xac)[ \t]?[0-9]", re2_options(1 << 20))


def _strong(value: bytes) -> bool:
    """Eight characters or more with letters, digits and a mark, as a password policy makes them (not a price)."""
    return not _MONEY.starts_at(value, 0, len(value)) and (
        len(value) >= 8
        and any(c in _PASSWORD_MARKS for c in value)
        and sum(c.isalpha() for c in value.decode("ascii", "ignore")) >= 3
    )


def _password_like(value: bytes, shortest: int = 6) -> bool:
    """A value that can be a password: not a placeholder, code, a number, a date or a time."""
    return (
        shortest <= len(value) <= 64
        and not value.isdigit()
        and not _PLACEHOLDER_SECRET.starts_at(value, 0, len(value))
        and not _NOT_A_SECRET_VALUE.starts_at(value, 0, len(value))
        and not _PLACEHOLDER_INSIDE.found(value)
        and not _DATE_OR_TIME.starts_at(value, 0, len(value))
    )


def _prose_secret(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    """A password's value (group ``secret`` or ``secret2``, or ``secret3`` where only a strong one counts) that is
    ``_password_like`` and not an online meeting's passcode."""
    strong = m.named(b"secret3")
    if strong is not None and not _strong(strong.rstrip(b".")):
        return None
    value = (m.named(b"secret") or m.named(b"secret2") or strong or b"").rstrip(b".")
    if not _password_like(value):
        return None
    return None if near(text, m.start(), m.end(), _MEETING_WORDS, 160) else "credential"


# A code that opens a door, a gate, an alarm or a key safe: "door code 2580#", "key safe 4-7-1-9", "override PIN
# 4471-9", "Intruder alarm unset code: 7865", "barrier override: *959". The code is the first number after the words
# (a few words between them, on the same line), 3 to 8 digits; a year, a time or an extension is not a code.
_ACCESS_WORDS = (
    rb"(?i:\b(?:key[ \t\-]{0,3}safe|keysafe|key[ \t]+box|lock[ \t\-]{0,3}box|new[ \t]+(?:code|pin|combination)"
    rb"|(?:door|gate|keypad|key[ \t]+pad|alarm|entry|access|entrance|override|padlock|barrier|building|site|safe"
    rb"|unset|exit|fob|cupboard|cabinet|engineer|master|installer|duress)[ \t_\-]+(?:(?:entry|user)[ \t_\-]+)?"
    rb"(?:code|pin|combination|combo)s?"
    rb"|combination[ \t]+lock|(?:barrier|gate|door)[ \t]+override)\b)"
)
_ACCESS_CODE = (
    _ACCESS_WORDS + rb"(?P<gap>[^\n0-9*#]{0,80}?)"
    rb"(?P<code>[*#]?(?:[A-Z][ \t]?-[ \t]?)?[0-9](?:[ \t]?-?[ \t]?[0-9]){2,7}[*#]?)(?:[^0-9\n]|(?m:$))"
)
_NOT_A_CODE_GAP = Regex(
    rb"(?i:\b(?:in|since|from|until|by|before|after|on|at|ext|extension|tel|phone|call|room|floor|level|page|step"
    rb"|section|version|v|no|number|ref|reference|ticket|inc|incident|case|changed?|changing|reset|expire[sd]?|expiry"
    rb"|ring|dial|text|valid|days?|hours?|minutes?|times?|digits?|characters?|attempts?|x)[ \t.:]*$)",
    re2_options(1 << 20),
)


_IS_BEFORE_CODE = Regex(rb"^[ \t:\-]*$|(?i:\bis|:|=)[ \t]*$", re2_options(1 << 20))


def _access_code(m: Match, _text: bytes, _: dict[str, Any]) -> str | None:
    gap = m.group(b"gap") or b""
    if _NOT_A_CODE_GAP.found(gap):
        return None  # "changed in 2024", "ext 4471", "for 5 days", "4 digits"
    if m.group()[:3].lower() == b"new" and not _IS_BEFORE_CODE.found(gap):
        return None  # "new code review: PR 4521", where "New code 6476" and "the new code for X is 7244#" are codes
    code = m.group(b"code") or b""
    if len(code) == 4 and code.isdigit() and code[:2] in (b"19", b"20"):
        return None  # a year
    return "access_code"


# A weakness in a live system, in the state that makes it one ("not yet patched", "default password still set",
# "web shell found"), beside an internal address, a production host or a CVE: a vulnerability report, a scan, an
# incident. Advice about unpatched systems in general has none of those beside it.
_DEFAULT_PASSWORD = rb"default[ \t]+(?:vendor[ \t]+)?(?:admin[ \t]+)?password"
_WEAKNESS = (
    rb"(?i:\bunpatched|\bnot[ \t]+(?:yet[ \t]+)?(?:patched|remediated|fixed|isolated|in[ \t]+place|implemented|applied)"
    rb"|patch(?:es)?[ \t]+(?:not[ \t]+(?:yet[ \t]+)?applied|not[ \t]+planned)"
    rb"|no[ \t]+(?:patch|fix)[ \t]+(?:planned|scheduled|available)"
    rb"|" + _DEFAULT_PASSWORD + rb"[ \t]+(?:is[ \t]+)?still|" + _DEFAULT_PASSWORD + rb"[ \t]+(?:still[ \t]+)?set"
    rb"|still[ \t]+(?:has|on|uses?)[ \t]+(?:the[ \t]+)?"
    + _DEFAULT_PASSWORD
    + rb"|rdp[ \t]+(?:is[ \t]+)?(?:exposed|open)"
    rb"|telnet[ \t]+open|web[ \t]?shell|does[ \t]+not[ \t]+enforce[ \t]+mfa|mfa[ \t]+(?:is[ \t]+)?(?:turned[ \t]+)?off"
    rb"|lacks[ \t]+authori[sz]ation|no[ \t]+rate[ \t]+limiting|vulnerable[ \t]+to|exploitable)"
)
_LIVE_SYSTEM = Regex(
    rb"\b(?:10\.\d{1,3}\.\d{1,3}\.\d{1,3}|192\.168\.\d{1,3}\.\d{1,3}|172\.(?:1[6-9]|2\d|3[01])\.\d{1,3}\.\d{1,3})\b"
    rb"|\b[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.(?:internal|local|lan|corp|intranet)\b"
    rb"|\b[A-Za-z0-9]+-(?i:prd|prod)(?:-[A-Za-z0-9]+)*\b|(?i:\bprod(?:uction)?\b|\blive\b|\bCVE-\d{4}-\d{4,7}\b)",
    re2_options(1 << 20),
)
_WEAKNESS_LOOK = 400


def _weakness(m: Match, text: bytes, state: dict[str, Any]) -> str | None:
    start, end = m.span()
    if start < state.get("weakness_done", -1):
        return None
    lo, hi = max(0, start - _WEAKNESS_LOOK), min(len(text), end + _WEAKNESS_LOOK)
    if not _LIVE_SYSTEM.found(text, lo, hi) or _invented(text, start, end):
        return None
    state["weakness_done"] = hi
    return "security_weakness"


# A press release or statistics under embargo: the banner its first lines (or a cell) carry, or the instruction.
_EMBARGO = (
    rb"(?:(?m:^)|[,;\t|][ \t]*[\"'])[ \t*#\[(<>\-]*"
    rb"(?:EMBARGOED|Embargoed|PRE-RELEASE[ \t]+ACCESS|Pre-release[ \t]+access)\b"
    rb"|(?i:\bnot[ \t]+for[ \t]+(?:publication|release|broadcast|circulation)[ \t]+(?:before|until|till)\b)"
    # in capitals, as a banner's second part writes it: "FACTUAL ACCURACY DRAFT - NOT FOR PUBLICATION"
    rb"|\bNOT[ \t]+FOR[ \t]+(?:PUBLICATION|CIRCULATION|RELEASE)\b|\bEMBARGOED[ \t]+(?:UNTIL|TILL|TO)\b"
)

SECURITY_DETECTORS: tuple[Detector, ...] = (
    Detector("credential", OS, _PROSE_SECRET, _prose_secret, trigger=_PROSE_SECRET_TRIGGER, needs=b"0123456789"),
    # (the first pass looks for the " / " alone: a pattern that starts with any word keeps a DFA thread alive
    # through every word of every text, +50% on the bench corpus's first pass)
    Detector("credential", OS, _SLASHED_SECRET, _prose_secret, trigger=rb"[ \t]/[ \t]", needs=b"0123456789"),
    Detector("credential", OS, _CODE_SECRET, _prose_secret),
    Detector("access_code", OS, _ACCESS_CODE, _access_code, trigger=_ACCESS_WORDS, needs=b"0123456789"),
    Detector("security_weakness", OS, _WEAKNESS, _weakness),
    Detector("embargoed", OS, _EMBARGO),
    _SECRET_COLUMN_DETECTOR,
)


_MARKING_COLUMN = (
    rb"(?i:(?:security|protective|data|gsc)?[ \t_\-]?(?:classification|marking|sensitivity)"
    rb"(?:[ \t_\-]?(?:level|label))?|(?:security|sensitivity)[ \t_\-]?label|gsc)"
)


def _marking_column(m: Match, text: bytes, state: dict[str, Any]) -> str | None:
    found = _table_at(m, text, state, "marks_read")
    return None if found is None else tables.marking_in_table(found[0], found[1])


DETECTORS: tuple[Detector, ...] = (
    *MARKING_DETECTORS,
    # a register of documents with a classification column (routing.tables): the highest marking in it
    Detector(
        "marking_secret",
        Level.SECRET,
        # a cell at a line's start (not indented, as code is) or after a separator
        rb"(?:(?m:^)|[,;\t|][ \t]*)" + _QUOTES_OPEN + _MARKING_COLUMN + _CELL_CLOSE + rb"(?m:[,;\t|]|$)",
        _marking_column,
        also=(
            ("marking_top_secret", Level.TOP_SECRET),
            ("marking_official_sensitive", OS),
            ("marking_legacy_restricted", OS),
            ("marking_legacy_confidential", OS),
            ("marking_legacy_protect", OS),
            ("marking_caveat", OS),
        ),
    ),
    *IDENTIFIER_DETECTORS,
    *CREDENTIAL_DETECTORS,
    *SECURITY_DETECTORS,
)


@cache
def scanner() -> Scanner:
    """The compiled table with the normalisation's markers (built once per process: compiling the set takes a
    few milliseconds)."""
    normalize.warm()
    names.warm()
    return Scanner(DETECTORS, normalize.MARKERS)
