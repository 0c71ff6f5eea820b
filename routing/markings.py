"""UK protective markings as detector rows: a marking counts only where it stands as a banner or label.

GSC 2014 markings (``OFFICIAL-SENSITIVE``, ``SECRET``, ``TOP SECRET``), the ``UK EYES ONLY`` national caveat
and the pre-2014 ``RESTRICTED``/``CONFIDENTIAL``/``PROTECT`` banners. "The secret to good bread" and
"see the official documentation" are prose, not markings, so a marking counts only in these positions:

- a banner line: the marking at the start of a line (after decoration such as ``***``, ``#``, ``[``),
  optionally followed by upper-case descriptors or caveats, and nothing else on the line;
- a line that starts with the marking and a separator (``SECRET - UK EYES ONLY - ...``,
  ``OFFICIAL-SENSITIVE: PERSONAL``, ``TOP SECRET//...``). A bare ``SECRET:`` must be followed by upper-case
  text without ``=`` so that code and config (``SECRET: str = ...``, ``SECRET_KEY``) do not count;
- a label: ``Classification:``, ``Protective marking:``, ``Security classification -`` (label and
  marking in any case), or an e-mail ``Subject: SECRET ...``;
- in brackets anywhere (``[SECRET]``, ``(OFFICIAL-SENSITIVE)``);
- a handling instruction: "treat as SECRET", "this document is OFFICIAL-SENSITIVE";
- the last words of a line after a full stop (a footer): ``... end of note. OFFICIAL-SENSITIVE``.

Outside labels, markings must be upper case, as the GSC writes them. Legacy banners and caveats raise to
OFFICIAL-SENSITIVE (keeps them off commercial backends; a human re-marks them), SECRET and TOP SECRET
to themselves.
"""

from __future__ import annotations

from routing.detectors_base import Detector
from routing.levels import Level

_DASH = rb"(?:-|\xe2\x80\x93|\xe2\x80\x94)"  # hyphen, en dash, em dash (UTF-8 bytes)
_LEAD = rb"(?m:^)[ \t*#=_~\-\[(<|>\"'.]*"
_TRAIL = rb"[ \t*#=_~\-\])>|\"'.]*(?m:$)"
_SEP = rb"[ \t]*(?:[:/|,]+|" + _DASH + rb"+)?[ \t]*"
# Upper-case descriptors, caveats and codewords after a marking on a banner line.
_UPPER_TAIL = rb"(?:" + _SEP + rb"[A-Z0-9][A-Z0-9 \t/:|,()\-]*)?"
_LABEL = (
    rb"(?i:\b(?:classification|security[ \t]+classification|protective[ \t]+marking|security[ \t]+marking"
    rb"|marking|handling[ \t]+caveat|caveat)(?:[ \t]+level)?)[ \t]*(?::|=|\||"
    + _DASH
    + rb")[ \t]*[\"'\[(]?[ \t]*"
)
_HANDLING = (
    rb"(?i:\b(?:treat(?:ed)?|handle(?:d)?)(?:[ \t]+(?:this|it|them))?[ \t]+as"
    rb"|\bthis[ \t]+(?:document|email|e-mail|message|note|report|information|material)[ \t]+is)[ \t]+"
)
_SUBJECT = rb"(?i:\bsubject)[ \t]*:[ \t]*\[?[ \t]*"


def _rows(signal: str, level: Level, upper: bytes, any_case: bytes, *, single_word: bool) -> Detector:
    """One row matching ``upper`` (and ``any_case`` after a label) in the positions listed above."""
    word = upper + rb"\b"
    if single_word:
        # "SECRET - ...", "SECRET // ...", "SECRET | ...", "SECRET: Operation X" but not "SECRET: str = ..."
        line_start = (
            _LEAD + word + rb"(?:[ \t]*(?:[|/\])>]|" + _DASH + rb"[ \t]*[A-Z \t])|:[ \t]+[A-Z0-9\"'][^=\n]*$)"
        )
    else:
        line_start = _LEAD + word + rb"[ \t]*(?:[:|/\])>]|" + _DASH + rb")"
    forms = [
        _LEAD + word + _UPPER_TAIL + _TRAIL,  # banner line
        line_start,
        _LABEL + any_case + rb"\b",
        _SUBJECT + word,
        rb"[\[(<][ \t]*" + word + _UPPER_TAIL + rb"[ \t]*[\])>]",
        _HANDLING + word,
        rb"[.!?][ \t]+" + word + rb"[ \t.]*$",
    ]
    pattern = rb"(?m)(?:" + rb"|".join(forms) + rb")"
    return Detector(signal=signal, level=level, pattern=pattern)


_OS_UPPER = rb"OFFICIAL(?:[ \t]*(?::|" + _DASH + rb")[ \t]*|[ \t]+)SENSITIVE"
_OS_ANY = rb"(?i:official(?:[ \t]*(?::|" + _DASH + rb")[ \t]*|[ \t]+)sensitive)"

MARKING_DETECTORS: tuple[Detector, ...] = (
    _rows(
        "marking_top_secret",
        Level.TOP_SECRET,
        rb"TOP[ \t\-]SECRET",
        rb"(?i:top[ \t\-]secret)",
        single_word=False,
    ),
    # (?:\A|[^P ]...) is not needed: "TOP SECRET" never matches these SECRET forms, because every form
    # anchors what comes before the word (line start, label, bracket, handling phrase, sentence end).
    _rows("marking_secret", Level.SECRET, rb"SECRET", rb"(?i:secret)", single_word=True),
    _rows("marking_official_sensitive", Level.OFFICIAL_SENSITIVE, _OS_UPPER, _OS_ANY, single_word=False),
    _rows(
        "marking_caveat",
        Level.OFFICIAL_SENSITIVE,
        rb"UK(?:[ \t]*/[ \t]*US)?[ \t]+EYES[ \t]+ONLY",
        rb"(?i:uk(?:[ \t]*/[ \t]*us)?[ \t]+eyes[ \t]+only)",
        single_word=False,
    ),
    _rows(
        "marking_legacy_restricted",
        Level.OFFICIAL_SENSITIVE,
        rb"RESTRICTED",
        rb"(?i:restricted)",
        single_word=True,
    ),
    _rows(
        "marking_legacy_confidential",
        Level.OFFICIAL_SENSITIVE,
        rb"CONFIDENTIAL",
        rb"(?i:confidential)",
        single_word=True,
    ),
    _rows(
        "marking_legacy_protect",
        Level.OFFICIAL_SENSITIVE,
        rb"PROTECT[ \t]*(?::|" + _DASH + rb")[ \t]*(?:PERSONAL|COMMERCIAL|STAFF|APPOINTMENTS|PERSONNEL)",
        rb"(?i:protect[ \t]*(?::|-)[ \t]*(?:personal|commercial|staff|appointments|personnel))",
        single_word=False,
    ),
)
