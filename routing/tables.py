"""People in tables as staff paste them: a header row that names a person column says that the cells under it are
people, where the prose rules (``routing.names``) need a first name from the lists or words around a name.

The header and the rows are read as CSV (comma, semicolon, tab or pipe, with the ``csv`` module's quoting),
Markdown (pipes, a ``|---|`` rule under the header), fixed-width query output (two spaces or more between
columns) or an SQL ``INSERT`` (the column list in brackets, a row per bracketed tuple). A person column is
``name``, ``full name``, ``surname``/``forename``, or a role (``defendant``, ``victim``, ``child``...); a cell
under it is a name when it looks like one (two to five words, each capitalised or in capitals, particles and
initials allowed; a single word under ``surname`` or ``forename``), and not an anonymised label (``Person A``,
``[REDACTED]``) or a phrase of everyday words.

``header_at`` reads a header and hands back the lines under it; ``people_in_table``, ``marking_in_table``,
``bank_details_in_table`` and ``secret_cells`` (a password or a door, gate or alarm code column) read those.
Whether a table of people is about a case (its header's columns, the words around it) is the caller's rule
(``routing.detectors``). Bounded: a header line of at most ``MAX_LINE`` bytes and ``MAX_ROWS`` rows under it.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass

from routing import names, normalize

MAX_LINE = 2048  # bytes of a header or row line that are read
MAX_ROWS = 40  # rows under a header that are read

_FULL_NAME_HEADERS_TEXT = """
    name names full_name fullname person individual subject nominal client service_user defendant offender prisoner
    probationer victim witness child young_person pupil patient inmate detainee suspect accused applicant claimant
    tenant resident learner
"""
_FULL_NAME_HEADERS = frozenset(_FULL_NAME_HEADERS_TEXT.split())
# The words before "name" that make it a person's: "defendant name", "child's name", "full name".
_NAME_QUALIFIERS_TEXT = """
    full first last given family maiden preferred legal child child's defendant defendant's offender offender's
    prisoner prisoner's client client's victim victim's witness witness's person person's nominal subject patient
    pupil applicant individual suspect
"""
_NAME_QUALIFIERS = frozenset(_NAME_QUALIFIERS_TEXT.split())
_SURNAME_HEADERS = frozenset(("surname", "surnames", "last_name", "lastname", "family_name"))
_FORENAME_HEADERS = frozenset(("forename", "forenames", "first_name", "firstname", "given_name", "given_names"))
# Person columns whose cells are in a case by being in the column: the header itself is the justice context.
_JUSTICE_ROLES_TEXT = (
    "defendant offender prisoner probationer victim witness inmate detainee suspect accused nominal patient"
)
JUSTICE_ROLES = frozenset(_JUSTICE_ROLES_TEXT.split())
# Words of a cell that make it a label, not a name ("Person A", "Child 2", "[REDACTED]").
_ANONYMOUS_TEXT = """
    person child offender victim witness defendant prisoner subject nominal redacted anon anonymous unknown withheld
    tbc tba none null example sample test individual client
"""
_ANONYMOUS = frozenset(_ANONYMOUS_TEXT.split())


_MARKING_HEADERS_TEXT = """
    classification security_classification protective_marking marking security_marking gsc gsc_marking
    classification_level security_label sensitivity sensitivity_label data_classification
"""
_MARKING_HEADERS = frozenset(_MARKING_HEADERS_TEXT.split())
# Columns that explain each level: the table is about the scheme, not a register of marked documents.
_EXPLAINING = frozenset(("description", "meaning", "definition", "explanation", "examples", "example", "guidance"))
_SORT_HEADERS_TEXT = """
    sort_code sortcode sort bank_sort_code branch_sort_code sort_code_number destination_sort_code payee_sort_code
"""
_SORT_HEADERS = frozenset(_SORT_HEADERS_TEXT.split())
_ACCOUNT_HEADERS_TEXT = """
    account_number account_no acct_no account acct bank_account bank_account_number account_num acc_no acct_number
    destination_account_number payee_account_number account_no.
"""
_ACCOUNT_HEADERS = frozenset(_ACCOUNT_HEADERS_TEXT.split())
# Columns of secrets: a password manager's export, a list of sites' gate and alarm codes.
_PASSWORD_HEADERS = frozenset(("password", "passwd", "pwd", "passcode", "pass", "pw", "pin", "passphrase"))
_CODE_HEADERS_TEXT = """
    gate_code door_code alarm_code alarm keypad_code key_safe keysafe key_safe_code access_code entry_code safe_code
    lockbox lock_box padlock_code barrier_code override_code alarm_unset_code unset_code
"""
_CODE_HEADERS = frozenset(_CODE_HEADERS_TEXT.split())
_STAFF_HEADERS_TEXT = """
    role job_title job position grade band team department directorate unit line_manager manager post title_role
    staff_role business_unit shift shift_pattern rota
"""
_STAFF_HEADERS = frozenset(_STAFF_HEADERS_TEXT.split())
_LEVELS = frozenset(("OFFICIAL", "OFFICIAL SENSITIVE", "SECRET", "TOP SECRET"))
# A marking column's cell (upper case, dashes and underscores as spaces, spaces folded) -> (rank, signal).
_MARKINGS: dict[str, tuple[int, str]] = {
    "TOP SECRET": (3, "marking_top_secret"),
    "SECRET": (2, "marking_secret"),
    "UK SECRET": (2, "marking_secret"),
    "OFFICIAL SENSITIVE": (1, "marking_official_sensitive"),
    "OFFICIAL SENSITIVE PERSONAL": (1, "marking_official_sensitive"),
    "OFFICIAL SENSITIVE COMMERCIAL": (1, "marking_official_sensitive"),
    "OFFICIAL: SENSITIVE": (1, "marking_official_sensitive"),
    "OFFSENS": (1, "marking_official_sensitive"),
    "OFF SENS": (1, "marking_official_sensitive"),
    "RESTRICTED": (1, "marking_legacy_restricted"),
    "CONFIDENTIAL": (1, "marking_legacy_confidential"),
    "PROTECT": (1, "marking_legacy_protect"),
    "UK EYES ONLY": (1, "marking_caveat"),
}


# What a line of source code holds and a table's header row does not.
_CODE = ("=", "def ", "return ", "self.", "lambda", "{", "}", "print(", "()")


@dataclass(frozen=True, slots=True)
class Header:
    """A header row: its delimiter, the cells' normalised names, and which columns hold people."""

    delimiter: str
    cells: tuple[str, ...]
    full: tuple[int, ...]  # whole names
    parts: tuple[int, ...]  # surname or forename: a single word is a name there
    marks: tuple[int, ...]  # a protective marking per row (classification, security label...)
    sql: bool
    sort: tuple[int, ...] = ()  # a bank sort code per row
    account: tuple[int, ...] = ()  # a bank account number per row
    passwords: tuple[int, ...] = ()  # a password per row
    codes: tuple[int, ...] = ()  # a door, gate, alarm or key-safe code per row

    @property
    def staff(self) -> bool:
        """A column that says the rows are staff (role, grade, team): a list of colleagues, not of cases."""
        return not _STAFF_HEADERS.isdisjoint(self.cells)


def _normalised(cell: str) -> str:
    """A header cell as compared: folded to ASCII, lower case, quotes and decoration stripped, ``_``/``-``/spaces as
    one ``_``."""
    if not cell.isascii():  # "Téam", "na\u0327me": as the folded view reads them
        cell = normalize.fold(cell)
    cell = cell.strip().strip("\"'`*#[]()<>:").strip().lower()
    return "_".join(cell.replace("-", " ").replace("_", " ").split())


def _role(cell: str) -> str | None:
    if cell in _MARKING_HEADERS:
        return "mark"
    if cell in _PASSWORD_HEADERS:
        return "password"
    if cell in _CODE_HEADERS:
        return "code"
    if cell in _SORT_HEADERS:
        return "sort"
    if cell in _ACCOUNT_HEADERS:
        return "account"
    if cell in _SURNAME_HEADERS or cell in _FORENAME_HEADERS:
        return "part"
    if cell in _FULL_NAME_HEADERS:
        return "full"
    words = cell.split("_")
    if len(words) >= 2 and words[-1] in ("name", "names") and words[-2] in _NAME_QUALIFIERS:
        return "part" if words[-2] in ("first", "last", "given", "family", "maiden") else "full"
    if len(words) >= 3 and words[0] == "name" and words[1] == "of" and words[2] in _NAME_QUALIFIERS:
        return "full"  # "name of child"
    return None


def _split(line: str, delimiter: str, sql: bool) -> list[str]:
    if delimiter == "  ":
        return [cell.strip() for cell in line.split("  ") if cell.strip()]
    if sql:
        line = line.strip().lstrip("(").rstrip(";,").rstrip(")")
    elif delimiter == "|":
        line = line.strip().strip("|")
    try:
        return next(csv.reader([line], delimiter=delimiter, quotechar="'" if sql else '"', skipinitialspace=True))
    except (csv.Error, StopIteration):
        return []


def _lines(text: bytes, at: int) -> tuple[bytes, Iterator[bytes], int] | None:
    """The line of ``text`` that holds ``at``, the lines after it (``MAX_ROWS`` at most), and where the last of
    them ends. A table pasted into a JSON string has its line breaks escaped (``\\n``): its lines are then the
    pieces of the one line of text."""
    start = text.rfind(b"\n", 0, at) + 1
    end = text.find(b"\n", at)
    end = len(text) if end < 0 else end
    line = text[start:end]
    if b"\\n" in line:
        cut = line.rfind(b"\\n", 0, at - start)
        pieces = line[cut + 2 if cut >= 0 else 0 :].replace(b"\\r", b"").split(b"\\n")
        if len(pieces[0]) > MAX_LINE:
            return None
        return pieces[0], iter(pieces[1 : MAX_ROWS + 1]), end
    if end - start > MAX_LINE:
        return None

    rows: list[bytes] = []
    pos = end  # the lines after it, each cut at MAX_LINE, and where the last of them ends (the table's extent)
    while len(rows) < MAX_ROWS and pos < len(text):
        row_end = text.find(b"\n", pos + 1)
        row_end = len(text) if row_end < 0 else row_end
        rows.append(text[pos + 1 : min(row_end, pos + 1 + MAX_LINE)])
        pos = row_end
    return line, iter(rows), pos


def header_at(text: bytes, at: int) -> tuple[Header, Iterator[bytes], int] | None:
    """The header row of the line that holds ``at``, the lines after it, and where they end, when the header has two
    columns or more and one of them holds people or markings."""
    found = _lines(text, at)
    if found is None:
        return None
    raw, rows, end = found
    line = raw.decode("utf-8", "replace")
    sql = False
    lower = line.lower()
    if "insert" in lower and "(" in line:  # INSERT INTO nominals (surname, forename, ...) VALUES
        line = line[line.index("(") + 1 : line.rindex(")") if ")" in line else len(line)]
        sql = True
    if line.count('"') % 2:  # the table starts inside a quoted field (a CSV cell or a JSON string holding it)
        line = line[line.rindex('"') + 1 :]
    if any(code in line for code in _CODE):
        return None  # a line of source code that names a variable "name"
    delimiter = max(("\t", "|", ";", ","), key=line.count)
    if line.count(delimiter) == 0:
        if "  " not in line.strip():
            return None
        delimiter = "  "
    cells = tuple(_normalised(cell) for cell in _split(line, delimiter, False))
    if len(cells) < 2:
        return None
    roles = [_role(cell) for cell in cells]
    full = tuple(i for i, role in enumerate(roles) if role == "full")
    parts = tuple(i for i, role in enumerate(roles) if role == "part")
    marks = tuple(i for i, role in enumerate(roles) if role == "mark")
    sort = tuple(i for i, role in enumerate(roles) if role == "sort")
    account = tuple(i for i, role in enumerate(roles) if role == "account")
    passwords = tuple(i for i, role in enumerate(roles) if role == "password")
    codes = tuple(i for i, role in enumerate(roles) if role == "code")
    if not full and not parts and not marks and not (sort and account) and not passwords and not codes:
        return None
    return Header(delimiter, cells, full, parts, marks, sql, sort, account, passwords, codes), rows, end


def _name_word(word: str) -> bool:
    word = word.strip("'\"")  # a nickname in quotes: Patrick 'Paddy' McDonagh
    if len(word) == 2 and word[1] == "." and word[0].isupper():
        return True  # an initial
    core = word.replace("'", "").replace("\u2019", "").replace("-", "")
    return len(core) >= 2 and core.isalpha() and word[0].isupper() and word.lower() not in _ANONYMOUS


def looks_like_name(cell: str, single: bool) -> bool:
    """Whether a cell holds a person's name: two to five name words (``Kieran Faulkner``, ``PHAM Minh Tuan``,
    ``van der Berg, Ruud``, ``J. Whitlock``), or one under a surname or forename column."""
    cell = cell.strip().strip("\"'*")
    if "," in cell:  # "Khan, Imran"
        cell = " ".join(reversed([part.strip() for part in cell.split(",", 1)]))
    words = [w for w in cell.split() if w.lower() not in names.PARTICLES]
    if not words or len(words) > 5 or (len(words) == 1 and not single):
        return False
    if any(not _name_word(w) for w in words):
        return False
    lowered = [w.lower().strip(".") for w in words]
    if all(w in names.NOT_NAME_WORDS for w in lowered):
        return False
    return not (len(words) > 1 and any(w in names.NOT_SURNAMES for w in lowered[1:]))


def _rows(header: Header, lines: Iterator[bytes]) -> Iterator[list[str]]:
    """The cells of each row under a header, up to the first line that is no row (prose after the table)."""
    for raw_line in lines:
        raw = raw_line.decode("utf-8", "replace")
        if not raw.strip() or (header.delimiter == "|" and set(raw.strip()) <= set("|-+=: ")):
            continue  # a blank line, or the rule under the header (Markdown, psql)
        cells = _split(raw, header.delimiter, header.sql)
        if len(cells) < 2:
            return
        yield cells


def people_in_table(header: Header, lines: Iterator[bytes]) -> bool:
    """Whether a row under ``header`` names someone in a person column."""
    if not (header.full or header.parts):
        return False
    for cells in _rows(header, lines):
        if any(i < len(cells) and looks_like_name(cells[i], False) for i in header.full) or (
            header.parts and all(i < len(cells) and looks_like_name(cells[i], True) for i in header.parts)
        ):
            return True
    return False


def marking_in_table(header: Header, lines: Iterator[bytes]) -> str | None:
    """The highest protective marking in a marking column under ``header`` (a register of documents:
    ``id;title;classification``), as the marking's signal; None for a table about the scheme itself (a column that
    describes or explains each level, or each level in turn)."""
    if not header.marks or not _EXPLAINING.isdisjoint(header.cells):
        return None
    levels: set[str] = set()
    best: tuple[int, str] | None = None
    for cells in _rows(header, lines):
        for i in header.marks:
            if i < len(cells):
                value = " ".join(cells[i].upper().replace("-", " ").replace("_", " ").split())
                levels.add(value)
                marking = _MARKINGS.get(value)
                if marking is not None and (best is None or marking[0] > best[0]):
                    best = marking
    if len(levels & _LEVELS) >= 3:
        return None
    return None if best is None else best[1]


def bank_details_in_table(header: Header, lines: Iterator[bytes]) -> bool:
    """Whether a row under ``header`` has a sort code and an account number in its columns (six digits and eight,
    separators and Excel's leading apostrophe aside; not all zeros, as a layout's example)."""
    if not (header.sort and header.account):
        return False
    for cells in _rows(header, lines):
        for i in header.sort:
            for j in header.account:
                if i < len(cells) and j < len(cells):
                    sort_code = "".join(ch for ch in cells[i] if ch.isdigit())
                    account = "".join(ch for ch in cells[j] if ch.isdigit())
                    if len(sort_code) == 6 and len(account) == 8 and sort_code.strip("0") and account.strip("0"):
                        return True
    return False


def secret_cells(header: Header, lines: Iterator[bytes]) -> Iterator[tuple[str, str]]:
    """Each non-empty cell under a password column, as ``("password", cell)``, and under a code column, as
    ``("code", cell)``, row by row (quotes around a cell stripped); whether it is a secret is the caller's rule."""
    if not (header.passwords or header.codes):
        return
    for cells in _rows(header, lines):
        for kind, columns in (("password", header.passwords), ("code", header.codes)):
            for i in columns:
                cell = cells[i].strip().strip("\"'`") if i < len(cells) else ""
                if cell:
                    yield kind, cell
