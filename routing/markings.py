"""UK protective markings as detector rows: a marking counts where a document carries it, not where a text
only talks about the scheme.

GSC 2014 markings (``OFFICIAL-SENSITIVE``, ``SECRET``, ``TOP SECRET``), the ``UK EYES ONLY`` national caveat
and the pre-2014 ``RESTRICTED``/``CONFIDENTIAL``/``PROTECT`` banners. "The secret to good bread", "see the
official documentation" and "explain what OFFICIAL-SENSITIVE means" are prose about things, not markings, so
a marking counts only in these positions (text is normalised first: every line break is ``\n``, dashes are
``-``, look-alike letters Latin; see ``routing.normalize``):

- a banner line: the marking at the start of a line (after decoration such as ``***``, ``#``, ``[``),
  optionally followed by upper-case descriptors or caveats, or a page number, and nothing else on the line.
  Upper case, or for the multi-word markings any case (``Official Sensitive``, ``Top Secret`` as Word's title
  case writes them); a single word in title case too when it is the whole line (``Secret``);
- a line that starts with the marking and a separator (``SECRET - UK EYES ONLY - ...``,
  ``OFFICIAL-SENSITIVE: PERSONAL``, ``TOP SECRET//...``, ``SECRET: the plan``). A bare ``SECRET:`` must be
  followed by text without ``=`` so that code and config (``SECRET: str = ...``, ``SECRET_KEY``) do not count;
- a label: ``Classification:``, ``Protective marking:``, ``Security classification -``, ``sensitivity:``, as
  written in prose, YAML, JSON (``"classification": "SECRET"``), XML attributes or code (``data_classification``,
  ``securityClassification``); label and marking in any case. Also an e-mail ``Subject: SECRET ...``;
- in brackets anywhere (``[SECRET]``, ``(OFFICIAL-SENSITIVE)``);
- a field of a CSV, TSV or pipe-separated row (``1,SECRET,Estates``): no space around it, as in data (not
  semicolons: HTML entities end with one);
- a handling instruction or a statement that this text is marked: "treat as SECRET", "this document is
  OFFICIAL-SENSITIVE", "This note is marked SECRET", "the report is classified as TOP SECRET", "the attached
  OFFICIAL-SENSITIVE briefing". Statements about documents in general ("a document marked SECRET must...",
  questions, "if", "when") are checked by ``_said_of_this_text`` and do not count;
- the last words of a line after a full stop (a footer): ``... end of note. OFFICIAL-SENSITIVE``.

None of these counts for a marking given as an example (``e.g. [SECRET]``), a Secret Santa, or an item of a list
of the scheme's levels (a schema's ``enum``, a regex's alternatives, a form's options: ``"OFFICIAL-SENSITIVE",
"SECRET"``, ``TOP SECRET|SECRET``).

Legacy banners and caveats raise to OFFICIAL-SENSITIVE (keeps them off commercial backends; a human re-marks
them), SECRET and TOP SECRET to themselves.
"""

from __future__ import annotations

from typing import Any

from routing.detectors_base import Detector, Match, Regex, Validator, re2_options
from routing.levels import Level
from serving.thirdparty import re2_extension

_re2 = re2_extension()  # re2._re2, at the version it was written for (serving/thirdparty.py)

_DASH = rb"-{1,3}"  # en and em dashes are "-" once normalised; typed, they are "--" or "---"
# Not "|": "| SECRET | ... |" is a Markdown table's cell. A page number set apart by spaces (a PDF's running footer:
# "3          OFFICIAL-SENSITIVE") or a spreadsheet's cell reference ("A1: OFFICIAL-SENSITIVE") may come first.
_LEAD = rb"(?m:^)(?:[ \t]*[0-9]{1,4}[ \t]{2,}|[ \t]*[A-Z]{1,2}[0-9]{1,5}[ \t]*:[ \t]*)?[ \t*#=_~\-\[(<>\"'.]*"
_TRAIL = rb"[ \t*#=_~\-\])>|\"'.,;}]*(?m:$)"
_SEP = rb"[ \t]*(?:[:/|,]+|-+)?[ \t]*"
_PAGE = rb"(?:[ \t]*(?:[|,\-][ \t]*)?(?i:page)[ \t]+\d+(?:[ \t]+(?i:of)[ \t]+\d+)?)?"
# Upper-case descriptors, caveats and codewords after a marking on a banner line.
_UPPER_TAIL = rb"(?:" + _SEP + rb"[A-Z0-9\[(][A-Z0-9 \t/:|,()\[\]\-]*)?"
_LABEL = (
    # an e-mail's X-Protective-Marking header writes the level as SEC=: "VER=2012.3, NS=gov.uk, SEC=SECRET"
    rb"(?:\bSEC|"
    rb"(?i:(?:\b|_)(?:security[ \t_\-]*|data[ \t_\-]*|document[ \t_\-]*|information[ \t_\-]*)?"
    rb"(?:classification|marking|sensitivity|caveat)(?:[ \t_\-]*level)?"
    rb"|\bprotective[ \t_\-]*marking|\bsecurity[ \t_\-]*level|\bhandling(?:[ \t_\-]*(?:caveat|instructions?))?"
    # the scheme's own initials as a field's name: "gsc": "OS", gpms=RESTRICTED
    rb"|(?:\b|_)gsc|(?:\b|_)gpms"
    # a field's short name in a log or a schema: doc_class=, docClass:, security_class
    rb"|(?:\b|_)(?:doc|document|data|security|info)[ \t_\-]*class"
    # a Microsoft Purview sensitivity label in a mail header: MSIP_Label_<guid>_Name=OFFICIAL-SENSITIVE
    rb"|\bmsip_label_[0-9a-f\-]{8,40}_name))"
    # Markdown: | Label | **SECRET** |; a name and value pair: {"name": "sensitivity", "value": "Official Sensitive"}
    rb"[\"'*_]{0,4}[ \t]*(?::|=|\||" + _DASH + rb"|,[ \t]*[\"'](?i:value|level)[\"'][ \t]*:)"
    rb"[ \t]*[\"'\[(*_]{0,4}[ \t]*"
)
_HANDLING = (
    rb"(?i:\b(?:treat(?:ed)?|handle(?:d)?)(?:[ \t]+(?:this|it|them))?[ \t]+as"
    rb"|\b(?:this|the[ \t]+(?:attached|enclosed|following))[ \t]+(?:document|doc|email|e-mail|message|note|report"
    rb"|information|material|minute|minutes|letter|paper|annex|file|attachment|conversation|chat|thread|text"
    rb"|paragraph|section|passage|extract|brief|briefing|submission|memo|record|draft|summary|slides?|deck"
    rb"|presentation|plan|assessment|spreadsheet|table|list|log|transcript|statement|item|agenda[ \t]+item|extract"
    rb"|excerpt|content|contents|discussion|case|update|entry)[ \t]+(?:is|are)"
    rb"|\b(?:this|these|it|the[ \t]+attached|the[ \t]+enclosed|attached|enclosed)[ \t]+(?:is|are)"
    rb"|\bin[ \t]+this[ \t]+(?:conversation|chat|thread|session|document|email|e-mail)[ \t]+(?:is|are)"
    # a part of this paper or meeting by its number: "item three is official sensitive", "Annex B is SECRET"
    rb"|\b(?:item|agenda[ \t]+item|annex|annexe|appendix|paragraph|section|slide|part)[ \t]+(?:[0-9]{1,3}[a-z]?|[a-z]"
    rb"|one|two|three|four|five|six|seven|eight|nine|ten)[ \t]+(?:is|are))[ \t]+"
)
# Upper-case codewords between a marking and the separator that starts a line's text: "TOP SECRET STRAP1 - ...".
_CODEWORDS = rb"(?:[ \t]+[A-Z][A-Z0-9]{1,11}){0,3}"
# A bilingual banner's other language first: "ZASTRZEZONE / RESTRICTED" (the folded view has the letters in ASCII).
_OTHER_LANGUAGE = rb"(?:[A-Z][A-Z\-]{2,24}[ \t]*/[ \t]*|UK[ \t]+)?"  # also "UK OFFICIAL-SENSITIVE"
# Descriptors after a marking written in any case ("Official - Sensitive: Personal").
_ANY_CASE_TAIL = rb"(?:[ \t]*(?:[:/|,]+|-+)[ \t]*(?i:personal|commercial|locsen|uk[ \t]+eyes[ \t]+only|staff))?"
_SUBJECT = rb"(?i:\bsubject[ \t]*:[ \t]*(?:(?:re|fw|fwd|aw|tr)[ \t]*:[ \t]*)*)\[?[ \t]*"
# A mail client's tag in a subject line, in any case: "Subject: RE: [official-sensitive] Q4 outturn".
_SUBJECT_TAG = rb"(?i:\bsubject[ \t]*:[ \t]*(?:(?:re|fw|fwd)[ \t]*:[ \t]*)*)[\[(][ \t]*"
# A document pasted as a quoted value whose first line is its banner: a JSON string ("note": "SECRET\n...",
# its line breaks still escaped) or a quoted CSV field (4411,"SECRET\n..."). Only when a line break follows, so
# that a list of levels in a schema ("enum": ["OFFICIAL","SECRET"]) is not a banner.
_VALUE_START = rb"(?:[:=][ \t]*\"|,\")[ \t*#=_~\-\[(<|>'.]*"
_VALUE_LINE_END = rb"[ \t*#=_~\-\])>|'.]*(?:\\[nr]|(?m:$))"
_FIELD_START = rb"(?m:^|[,\t|])[\"']?"
# A document part whose whole value is the marking: "header": "OFFICIAL-SENSITIVE", a YAML line "footer: SECRET"
# (a tool call writing a document). Other keys name options ("name": "SECRET" in a labelling tool's settings). The
# key starts with its keyword or a short prefix: letters of any length before it cost the first pass ~20%.
_PART_KEY = rb"(?i:(?:page|doc|document|report)?[_\-]?(?:header|footer|banner|heading|watermark|stamp))[A-Za-z_]{0,12}"
_KEY_VALUE_START = rb"(?:\"" + _PART_KEY + rb"\"[ \t]*:[ \t]*\"|(?m:^)[ \t]*" + _PART_KEY + rb":[ \t]+)"
_KEY_VALUE_END = rb"(?:\"[ \t]*(?:[,}]|(?m:$))|[ \t]*(?m:$))"
_FIELD_END = rb"[\"']?(?:[,\t|]|(?m:$))"
# A field of a semicolon-separated row (Excel's CSV in many locales).
# Quoted twice when the row is quoted again inside another CSV's field, escaped inside a JSON string (\"SECRET\";).
# Unquoted only as a row's first field: after a ";" it may be an HTML entity's end (TOP&nbsp;SECRET;&nbsp;...).
_QUOTED_FIELD_START = rb"(?:(?m:^)|;\\?\")(?:\\?\")?"
_QUOTED_FIELD_END = rb"(?:\\?\"){0,2}(?:;|\\[rn]|(?m:$))"
# "This note is marked SECRET", "was classified as TOP SECRET": checked by _said_of_this_text.
_STATED = (
    rb"(?i:(?:\b(?:is|are|was|were|been|be|remains?)|[a-z]'s|,)[ \t]+"
    rb"(?:(?:now|currently|still|also|formally|properly)[ \t]+)?"
    rb"(?:protectively[ \t]+)?(?:marked|classified|graded|labell?ed|designated|headed|stamped)"
    rb"(?:[ \t]+(?:as|at))?[ \t]+)[\"'(\[]?"
)
_ITS = (  # also as chat writes it: "its off-sen"; "this call is at SECRET"
    rb"(?i:\b(?:it'?s|this'?s|that'?s|it[ \t]+is|this[ \t]+is)[ \t]+"
    rb"|\b(?:call|meeting|session|discussion|conversation|brief|briefing|item)[ \t]+(?:is|will[ \t]+be)[ \t]+"
    rb"(?:held[ \t]+)?at[ \t]+"
    # Welsh: "mae hwn yn SWYDDOGOL-SENSITIF" (this is)
    rb"|\bmae[ \t]+(?:hwn|hyn|hon)[ \t]+yn[ \t]+)"
)
# "the header reads SECRET - UK EYES ONLY", "The doc header says OFFICIAL-SENSITIVE [COMMERCIAL]"
_HEADER_READS = (
    rb"(?i:\b(?:header|banner|footer|marking|classification)[ \t]+(?:reads|says|shows|is)[ \t]*:?[ \t]+)[\"']?"
)
# A marking with its descriptor anywhere in a sentence: "from a OFFICIAL-SENSITIVE: PERSONAL paper"
_DESCRIPTOR = (
    rb"[ \t]*(?::|-)?[ \t]*\[?(?:PERSONAL|COMMERCIAL|LOCSEN)\]?"  # "it's official-sensitive personal so keep it short"
)
# This text said to come from a document the sentence goes on to describe: "The following is an extract from a
# document marked Official Sensitive", "Below is part of a report classified as SECRET".
_EXTRACT_OF = (
    rb"\b(?:the[ \t]+following(?:[ \t]+(?:paragraph|text|passage|extract|excerpt|section|notes?|lines?|wording))?"
    rb"|below|above|this|here|attached|the[ \t]+(?:paragraph|text|passage|extract|excerpt"
    rb"|section|notes?|content|wording)[ \t]+(?:below|above))[ \t]+(?:is|are|was|were|comes|came)[ \t]+"
    rb"(?:(?:taken|lifted|copied|pasted|quoted|extracted)[ \t]+|(?:an?[ \t]+|the[ \t]+|some[ \t]+)?"
    rb"(?:extract|excerpt|copy|section|part|paragraph|passage|summary|page|pages|notes)s?[ \t]+)?(?:of|from)\b"
)
_CLASSIFIED_AS = (
    rb"(?i:\b(?:classified|marked|graded)[ \t]+(?:as|at)[ \t]+"
    # "The following is an extract from a document marked Official Sensitive"
    rb"|" + _EXTRACT_OF + rb"[ \t]+[^.\n]{0,48}?\bmarked[ \t]+"
    # "a document with the mark OFFICIAL-SENSITIVE on the top"
    rb"|\bwith[ \t]+(?:the|a)[ \t]+(?:protective[ \t]+)?(?:mark|marking|label|classification|banner)[ \t]+"
    rb"(?:of[ \t]+)?)"
    rb"[\"'(\[]?"
)
# "the attached OFFICIAL-SENSITIVE briefing": this text's own material, named with its marking.
_DEIXIS = (
    rb"(?i:\b(?:the[ \t]+)?(?:attached|enclosed|following|above|below)|\bthis|\bthese|\bour|\bmy"
    # "I'm pasting an OFFICIAL-SENSITIVE briefing below", "forwarding the SECRET annex"
    rb"|\b(?:pasting|pasted|attaching|sharing|forwarding|enclosing|uploading|sending)[ \t]+(?:in[ \t]+)?"
    rb"(?:an?|the|this|my|our|some))[ \t]+"
)
_DOCUMENT = (
    rb"[ \t]+(?:[A-Za-z]+[ \t]+)?(?i:document|report|briefing|brief|note|notes|email|e-mail|annex|annexe|appendix"
    rb"|paper|papers|material|information|submission|minute|minutes|letter|file|files|attachment|record|records"
    rb"|case|assessment|summary|memo|draft|spreadsheet|data|discussion|meeting|call|conversation|session|chat"
    rb"|thread)s?\b"
)
_THIS_IS_A = rb"(?i:\b(?:this|it|that)(?:[ \t]+is|'s)[ \t]+an?)[ \t]+"


def _rows(
    signal: str,
    level: Level,
    upper: bytes,
    any_case: bytes,
    *,
    single_word: bool,
    title: bytes | None = None,
    any_case_stated: bool = False,
) -> tuple[Detector, ...]:
    """The rows for one marking: ``upper`` as the GSC writes it, ``any_case`` after labels and in multi-word
    banners, ``title`` (single words) alone on a banner line; ``any_case_stated``: "this doc is official
    sensitive" in lower case counts (no one says that in jest, as they say "this is top secret")."""
    word = upper + rb"\b"
    if single_word:
        # "SECRET - ...", "SECRET // ...", "SECRET | ...", "SECRET: Operation X", "SECRET: the plan" but not
        # "SECRET: str = ..."
        line_start = (
            _LEAD
            + word
            + _CODEWORDS
            + rb"[*_]{0,3}(?:[ \t]*(?:[|/\])>]|"
            + _DASH
            + rb"[ \t]*[A-Za-z \t])|:[ \t]+[A-Za-z0-9\"'][^=\n]*$)"
        )
        banner_word = rb"(?:" + upper + rb"|" + (title or upper) + rb")\b"
        banner = _LEAD + _OTHER_LANGUAGE + rb"(?:" + word + _UPPER_TAIL + rb"|" + banner_word + rb")" + _PAGE + _TRAIL
    else:
        # a marking in any case with its descriptor, whatever follows: "Official-Sensitive Commercial   Draft 4",
        # at the start of a line or of a quoted value
        described = any_case + rb"[ \t]*(?:[:/|,]+|-+)?[ \t]*(?i:personal|commercial|locsen|uk[ \t]+eyes[ \t]+only)\b"
        line_start = (
            rb"(?:"
            + _LEAD
            + rb"|"
            + _VALUE_START
            + rb")(?:"
            + word
            + _CODEWORDS
            + rb"[*_]{0,3}[ \t]*(?:[:|/\])>]|"
            + _DASH
            # a sentence after it: "OFFICIAL-SENSITIVE. Parole Board capacity review."
            # a header's or a footer's next column after a run of spaces: "OFFICIAL - SENSITIVE      Draft report   7"
            + rb"|\.[ \t]+[A-Z]|[ \t]{3}[A-Za-z])|"
            + described
            # ... and in Word's title case, a running header's or footer's next column: "Official Sensitive    ITHC 12"
            + rb"|"
            + _capitalised(any_case)
            + rb"\b(?:\t|[ \t]{4,})[A-Za-z]"
            + rb")"
            # a quoted string that starts with it, in upper case: paragraph 'OFFICIAL-SENSITIVE - Parole Board...'
            + rb"|[ \t(\[]['\"]"
            + word
            + _CODEWORDS
            + rb"[ \t]*(?::|"
            + _DASH
            + rb")[ \t]*[A-Za-z]"
        )
        banner = (
            _LEAD
            + _OTHER_LANGUAGE
            + rb"(?:"
            + word
            + _UPPER_TAIL
            + rb"|"
            + any_case
            + rb"\b"
            + _ANY_CASE_TAIL
            + rb")"
            + _PAGE
            + _TRAIL
        )
    forms = [
        banner,
        line_start,
        _VALUE_START
        + word
        + rb"(?:"
        + _UPPER_TAIL
        + _VALUE_LINE_END
        + (rb"|:[ \t]+[A-Za-z0-9][^=\n]*$)" if single_word else rb")"),
        _LABEL + any_case + rb"\b",
        _SUBJECT + (word if single_word else any_case + rb"\b"),
        *(
            []
            if single_word
            else [
                _SUBJECT_TAG + any_case + rb"\b",
                # a footer or header in any case with a field after it: "official-sensitive | v1.3 | page 14"
                _LEAD + any_case + rb"[ \t]*\|",
                # a heading that ends with it: "Slide 4 - OFFICIAL SENSITIVE"
                rb"[ \t]-[ \t]+" + word + _TRAIL,
                # a tag in any case: "[official-sensitive] add ACCT fields" (a commit's or a ticket's subject)
                rb"[\[(<][ \t]*" + any_case + rb"[ \t]*[\])>]",
            ]
        ),
        rb"[\[(<][ \t]*" + word + _UPPER_TAIL + rb"[ \t]*[\])>]",
        # the handling phrase takes a capitalised multi-word marking ("handle as Official Sensitive"), not
        # lower case: "this is top secret lol" is banter
        _HANDLING + (word if single_word else (any_case if any_case_stated else _capitalised(any_case)) + rb"\b"),
        _FIELD_START + word + _UPPER_TAIL + _FIELD_END,
        _QUOTED_FIELD_START + word + _UPPER_TAIL + _QUOTED_FIELD_END,
        _KEY_VALUE_START + word + _UPPER_TAIL + _KEY_VALUE_END,
        # a folder named by the marking, in a path or a URL: ".../Shared%20Documents/OFFICIAL-SENSITIVE/paper.docx"
        rb"[/\\]" + upper + rb"[/\\]",
        # a file name that carries the marking: Incident_Review_OFFICIAL-SENSITIVE_v4.docx, Plan_SECRET.pdf
        rb"_" + upper + (rb"\.(?i:docx?|pdf|xlsx?|pptx?|odt|msg|eml|txt)\b" if single_word else rb"[_.]"),
        _DEIXIS + rb"(?:" + upper + rb"|" + (title or any_case) + rb")" + _DOCUMENT,
        # "can I remind everyone this is an OFFICIAL-SENSITIVE discussion" (upper case: "a Secret Garden session")
        _THIS_IS_A + upper + _DOCUMENT,
        # a footer, also as the end of a quoted CSV field or JSON string ("... end of note. SECRET",4411)
        rb"[.!?][ \t]+" + word + rb"[ \t.]*(?:[\"'][ \t]*[,;}\]][^\n]*)?$",
    ]
    stated_word = any_case if not single_word else rb"(?:" + upper + rb"|" + (title or upper) + rb")"
    # "it's top secret lol" is banter; "it's OFFICIAL-SENSITIVE" not
    its_word = rb"(?:" + upper + rb"|" + any_case + rb")" if any_case_stated else upper
    stated = (
        rb"(?:"
        + _STATED
        + stated_word
        + rb"|"
        + _CLASSIFIED_AS
        + (upper if single_word else rb"(?:" + upper + rb"|" + _capitalised(any_case) + rb")")
        + rb"|"
        + _ITS
        + its_word
        + rb"|"
        + _HEADER_READS
        + upper
        + (rb"|" + upper + _DESCRIPTOR if not single_word else rb"")
        + rb")\b"
    )
    return (
        Detector(
            signal=signal, level=level, pattern=rb"(?m)(?:" + rb"|".join(forms) + rb")", validate=_carried(signal)
        ),
        Detector(signal=signal, level=level, pattern=stated, validate=_said_of_this_text(signal)),
    )


# Where a marking's form is met and it still marks nothing: an example of the form ("put the marking in the subject,
# e.g. [OFFICIAL-SENSITIVE]") and the office's Secret Santa.
# Also in markup not yet decoded ("e.g.&nbsp;[OFFICIAL-SENSITIVE]", "e.g. <em>OFFICIAL-SENSITIVE PERSONAL</em>"), and
# a guide's "Example header: ..." with the example quoted.
_EXAMPLE_BEFORE = Regex(
    rb"(?i:\be\.?g\.?|\bfor(?:[ \t]|&nbsp;)+example|\bsuch(?:[ \t]|&nbsp;)+as|\bi\.?e\.?"
    rb"|\bexamples?(?:[ \t]+(?:header|footer|banner|marking|label|subject(?:[ \t]+line)?|of[ \t]+a[ \t]+[a-z]+))?"
    rb"[ \t]*:)"
    rb"(?:[ \t,:\"']|&nbsp;|&#160;|&quot;|<(?i:em|strong|b|i|code|span|q)>)*(?:[A-Z][A-Z\-]{2,24}[ \t]*/[ \t]*)?$",
    re2_options(1 << 20),
)
# ... or the markings a guide lists under "for example:", one a line (a PDF's text: "for\nexample:\n\n
#   OFFICIAL-SENSITIVE\n  OFFICIAL-SENSITIVE COMMERCIAL").
_EXAMPLE_LIST_BEFORE = Regex(
    rb"(?i:\be\.?g\.?|\bfor[ \t\n]+example|\bsuch[ \t\n]+as|\bexamples?)[ \t,:]*\n(?:[ \t]*\n)?"
    rb"(?:[ \t]*[A-Z][A-Z0-9 \t\-:/\[\]()]*\n){0,4}[ \t]*$",
    re2_options(1 << 20),
)
_EXAMPLE_LOOK = 64  # bytes before a marking that _EXAMPLE_BEFORE reads
_SANTA = Regex(rb"(?i:secret)[ \t]+(?i:santa)\b", re2_options(1 << 20))


# A list of the scheme's levels (a schema's enum, a regex's alternatives, a drop-down's options): the marking
# beside another level with a comma or a bar between them. Each side's level is read whole (OFFICIAL-SENSITIVE,
# TOP SECRET) so that a marking beside the same level ("SECRET, SECRET", a bilingual banner) is no list.
_LEVEL_WORDS = rb"(?i:official(?:[ \t\-]*sensitive)?|(?:top[ \t\-]*)?secret|restricted|confidential)"
# Between two items: a comma or a bar, or a YAML or Markdown bullet on the next line, with the quotes, escapes,
# entities and tags that JSON, HTML, XML, RTF and percent-encoding put around them ("\"OFFICIAL\", \"SECRET\"",
# "&quot;OFFICIAL&quot;, &quot;SECRET&quot;", "%22OFFICIAL%22%2C%20%22SECRET", "<li>OFFICIAL</li><li>SECRET").
_LIST_DECOR = (
    rb"(?:[ \t\n\"'\\\])(\[<>/*]|&(?i:quot|apos|#34|#39|#x22|#x27|nbsp);|%2[027]|\\[nrt]"
    rb"|</?(?i:li|td|p|span|b|i|item|value|option)>)"
)
_LIST_SEPARATOR = (
    _LIST_DECOR
    + rb"{0,12}(?:,|\||%2[Cc]|%7[Cc]|&#44;|<(?i:li|option|item|value)>"
    + rb"|(?:\n|\\n|\\par|<br[ \t]*/?>)[ \t]*[\-*][ \t]+)"
    + _LIST_DECOR
    + rb"{0,12}"
)
_LEVEL_BEFORE = Regex(rb"(?P<level>" + _LEVEL_WORDS + rb")" + _LIST_SEPARATOR + rb"$", re2_options(1 << 20))
_LEVEL_AFTER = Regex(_LIST_SEPARATOR + rb"(?P<level>" + _LEVEL_WORDS + rb")\b", re2_options(1 << 20))
_LEVEL = Regex(_LEVEL_WORDS, re2_options(1 << 20))
_NOT_LETTERS = bytes(c for c in range(256) if not chr(c).isalpha())


def _level_key(words: bytes) -> bytes:
    return words.lower().translate(None, _NOT_LETTERS)


def _in_a_list_of_levels(text: bytes, start: int, end: int) -> bool:
    """The marking matched in ``text[start:end]`` (with the label, decoration or words its form took) is one item
    of a list of levels."""
    level = _LEVEL._match(_UNANCHORED, text, start, end)[0]
    if level[0] < 0:  # a Welsh or OCR-read spelling: not in a list of the English levels
        return False
    core_start, core_end = level
    key = _level_key(text[core_start:core_end])
    window = text[max(0, core_start - 48) : core_start]
    before = _LEVEL_BEFORE._match(_UNANCHORED, window, 0, len(window))
    if before[0][0] >= 0 and _level_key(window[slice(*before[1])]) != key:
        return True
    after = _LEVEL_AFTER._match(_ANCHOR_START, text, core_end, min(len(text), core_end + 48))
    return after[0][0] >= 0 and _level_key(text[slice(*after[1])]) != key


_WORD_START = Regex(rb"[A-Za-z0-9]", re2_options(1 << 20))


def _carried(signal: str) -> Validator:
    def validate(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
        start, end = m.span()
        word = _WORD_START._match(_UNANCHORED, text, start, end)[0][0]  # a form may take the ': "' before it
        if (
            _EXAMPLE_BEFORE.ends_at(text, start, _EXAMPLE_LOOK)
            or (word > start and _EXAMPLE_BEFORE.ends_at(text, word, _EXAMPLE_LOOK))
            or _SANTA.found(text, start, min(len(text), end + 8))
        ):
            return None
        if _EXAMPLE_LIST_BEFORE.ends_at(text, start, 240):
            return None
        if _in_a_list_of_levels(text, start, end):
            return None
        return signal

    return validate


def _capitalised(any_case: bytes) -> bytes:
    """``(?i:official...)`` as ``O(?i:fficial...)``: the same words with a capital first letter."""
    assert any_case.startswith(rb"(?i:") and any_case[4:5].isalpha()
    return any_case[4:5].upper() + rb"(?i:" + any_case[5:]


# --- statements that a text is marked: about this text, or about documents in general? ----------------------

_SENTENCE_BREAK = Regex(rb"[.!?\n]", re2_options(1 << 20))
# A sentence that opens as a question or an instruction to write about the scheme.
_ASKING = Regex(
    rb"(?i)[ \t\"'*#\-]*(?:what|how|why|when|where|which|who|whom|whose|explain|describe|define|tell|list|compare"
    rb"|give|write|draft|summari[sz]e[ \t]+(?:the[ \t]+)?(?:rules|guidance|policy)|can|could|should|would|does|do|did"
    rb"|is[ \t]+(?:it|there)|are[ \t]+there|if|whether|suppose|imagine|say|e\.g|for[ \t]+example)\b",
    re2_options(1 << 20),
)
# Documents in general, or a condition, before the statement: "a document ...", "any file ...", "files ...",
# "if/when/once ...".
_CONDITIONS = rb"if|when|whenever|whether|unless|once|until|must|should|may|might|would|could"
_GENERAL = Regex(
    rb"(?i)\b(?:a|an|any|every|each|all|some|such|no)[ \t]+(?:[a-z\-]+[ \t]+){0,2}?(?:document|file|material"
    rb"|information|asset|email|e-mail|message|record|report|note|paper|item|data|thing)s?\b"
    rb"|\b(?:documents|files|materials|assets|emails|messages|records|reports|notes|papers|items)\b"
    rb"|\b(?:" + _CONDITIONS + rb")\b",
    re2_options(1 << 20),
)
_THIS_TEXT_IS_FROM = Regex(rb"(?i)" + _EXTRACT_OF, re2_options(1 << 20))
# Words that point at the text in hand ("the notes below", "the attached papers", "pasting ... here"), and the
# conditions and modals of a rule about documents in general, which they do not overrule.
_POINTING = Regex(
    rb"(?i)\b(?:below|above|attached|enclosed|pasted|pasting|here(?:'s|[ \t]+is|[ \t]+are))\b", re2_options(1 << 20)
)
_CONDITIONAL = Regex(rb"(?i)\b(?:" + _CONDITIONS + rb"|any|every|all)\b", re2_options(1 << 20))
_UNANCHORED = _re2.RE2.Anchor.UNANCHORED
_ANCHOR_START = _re2.RE2.Anchor.ANCHOR_START
_LOOK = 400  # bytes either side of the match that make up its sentence, at most


# A clause after a comma that says what this text is: ", it's official-sensitive", ", this is OS".
_ITS_CLAUSE = Regex(rb"[ \t]*(?i:it'?s|it[ \t]+is|this[ \t]+is|this'?s)[ \t]", re2_options(1 << 20))
_CONDITION = Regex(rb"[ \t\"'*#\-]*(?i:if|when|whenever|unless|once|where|suppose|imagine)\b", re2_options(1 << 20))


def _said_of_this_text(signal: str) -> Validator:
    """A validator that accepts "This note is marked SECRET" and rejects the same words in a question, a rule
    or a hypothesis about documents in general ("How should a document marked SECRET be stored?", "If a file
    is classified as SECRET, ..."): the sentence before the match, and a question mark after it, decide."""

    def validate(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
        start, end = m.span()
        if _EXAMPLE_LIST_BEFORE.ends_at(text, start, 240) or _EXAMPLE_BEFORE.ends_at(text, start, _EXAMPLE_LOOK):
            return None  # one of a guide's examples
        lo = max(0, start - _LOOK)
        cut = max(
            text.rfind(b".", lo, start),
            text.rfind(b"!", lo, start),
            text.rfind(b"?", lo, start),
            text.rfind(b"\n", lo, start),
        )
        lo = cut + 1 if cut >= 0 else lo
        found = _SENTENCE_BREAK._match(_UNANCHORED, text, end, min(len(text), end + _LOOK))[0][0]
        if found >= 0 and text[found : found + 1] == b"?":
            return None
        clause = max(text.rfind(b",", lo, start), text.rfind(b";", lo, start)) + 1
        if (
            clause > lo
            and _ITS_CLAUSE.starts_at(text, clause, start + 10)
            and not _CONDITION.starts_at(text, lo, start)
        ):
            return signal  # a request, then what this text is: "can you tidy this up, it's official-sensitive:"
        if _ASKING.starts_at(text, lo, start):
            return None
        if (
            _GENERAL.found(text, lo, start)
            and not _THIS_TEXT_IS_FROM.found(text, lo, start)
            and (not _POINTING.found(text, lo, start) or _CONDITIONAL.found(text, lo, start))
        ):
            return None
        return signal

    return validate


# Welsh Government's bilingual markings name the same levels (SWYDDOGOL-SENSITIF, CYFRINACH, CYFRINACH IAWN),
# upper case as banners write them. A word joiner or zero-width space between two words is removed in the
# normalised view, so the words may also touch ("TOPSECRET"). Upper case, a scan's OCR may read I as l or 1 and O
# as 0 ("RESTRlCTED").
_OS_UPPER = (
    rb"(?:[O0]FF[Il1]C[Il1]AL(?:[ \t]*(?::|" + _DASH + rb")[ \t]*|[ \t]*)SENS[Il1]T[Il1]VE|OFF-?SENS"
    rb"|SWYDDOGOL(?:[ \t]*(?::|" + _DASH + rb")[ \t]*|[ \t]+)SENSITIF)"
)
_OS_ANY = rb"(?i:official(?:[ \t]*(?::|" + _DASH + rb")[ \t]*|[ \t]+|_)sensitive|off-sens?)"  # _: an enum's value

# A handling instruction: "pls don't fwd", "do not share".
_DO_NOT_PASS_ON = (
    rb"(?i:(?:pls[ \t]+|please[ \t]+)?(?:do[ \t]+not|don'?t|dont|not[ \t]+to[ \t]+be)[ \t]+(?:forward|fwd|share|send"
    rb"|circulate|copy|print|pass))"
)
# OFFICIAL-SENSITIVE as staff abbreviate it: a tag opening a subject or a message ("Subject: RE: [OS] Tender
# evaluation", "[OS] heads up: ..."), and "this is OS" / "it's OS" / "the brief below is OS" in chat. Not "(OS)"
# (Ordnance Survey, an operating system) nor "OS 10" or "OS X".
_OS_ABBREVIATION = (
    rb"(?m:^)[ \t*>\"']*\[OS\]|" + _SUBJECT + rb"\[OS\]"
    # a message that opens with it and says how to handle it: "OS - pls don't fwd", "os - commercial. ..."
    rb"|(?:(?m:^)[ \t*>\"']*|"
    + _VALUE_START
    + rb")(?i:os)[ \t]*(?:-{1,3}|:)[ \t]*(?:"
    + _DO_NOT_PASS_ON
    + rb"|(?i:commercial|personal|locsen)\b)"
    # "this is os so dont forward": in lower case only with the instruction
    rb"|(?i:\b(?:this|it|that)(?:[ \t]+one)?(?:'s|[ \t]+is)[ \t]+os)[ \t]*[,\-]?[ \t]*(?:(?:so|and|-)[ \t]+)?"
    + _DO_NOT_PASS_ON
    # "this one's o/s - don't forward" (o/s is "outstanding" too, so only with the instruction)
    + rb"|(?i:\bo/s)[ \t]*[\-,.:]?[ \t]*"
    + _DO_NOT_PASS_ON
    + rb"|"
    # ... or with its descriptor, said of this text: "no - it's o/s commercial, keep it in the bid team"
    rb"(?i:\b(?:it'?s|this'?s|that'?s|this[ \t]+is)[ \t]+o/s[ \t]*[\-:]?[ \t]*(?:commercial|personal|locsen)\b)|"
    rb"(?i:\b(?:this|it|that)(?:[ \t]+one)?(?:'s|[ \t]+is)[ \t]+|\bits[ \t]+"
    # "re-sending this as OS", "I've marked it OS"
    rb"|\b(?:this|it|them|these)[ \t]+as[ \t]+|\bmarked[ \t]+(?:it[ \t]+|them[ \t]+)?(?:as[ \t]+)?"
    # "the brief below is OS", "the attached note is OS"
    rb"|\b(?:brief|briefing|note|notes|email|e-mail|doc|document|paper|info|attachment|thread|chat|content|table"
    rb"|below|above|attached)[ \t]+(?:below[ \t]+|above[ \t]+|attached[ \t]+)?(?:is|'s)[ \t]+)"
    rb"OS\b(?:[ \t]*[\-:]?[ \t]*(?i:commercial|personal|locsen)\b)?"  # "its OS commercial so dont fwd"
    rb"(?:[ \t]*[.,;!]|[ \t]+-[ \t]|[ \t]+(?:so|and|pls|please|do|dont|don't"
    rb"|not|btw|fyi)\b|[ \t]*$)"
)
# A mail's subject that opens with it: "Subject: OS: Estates backlog", "Subject: RE: OS - tender scores" (not an
# IT ticket's "Subject: OS: Windows 11 rollout").
_OS_SUBJECT = _SUBJECT + rb"OS[ \t]*(?::|" + _DASH + rb")[ \t]+(?P<next>[A-Za-z][A-Za-z0-9]*)"
_OPERATING_SYSTEM_WORDS = frozenset(
    b"windows linux mac macos ios android ubuntu debian rhel centos chromeos unix upgrade upgrades update updates"
    b" patch patching patches version versions build builds image images install installation migration support"
    b" licence licences license licenses deployment rollout".split()
)


def _a_subjects_tag(m: Match, text: bytes, _: dict[str, Any]) -> str | None:
    return None if (m.group(b"next") or b"").lower() in _OPERATING_SYSTEM_WORDS else "marking_official_sensitive"


MARKING_DETECTORS: tuple[Detector, ...] = (
    Detector(
        signal="marking_official_sensitive",
        level=Level.OFFICIAL_SENSITIVE,
        pattern=rb"(?m)(?:" + _OS_ABBREVIATION + rb")",
    ),
    Detector(
        signal="marking_official_sensitive",
        level=Level.OFFICIAL_SENSITIVE,
        pattern=_OS_SUBJECT,
        validate=_a_subjects_tag,
    ),
    # The abbreviation as the whole value of a label ("gsc": "OS", classification: OS), and the marking as a value in
    # a log line's key=value pairs (label=OFFICIAL-SENSITIVE, to=OFFICIAL-SENSITIVE in a relabelling record).
    Detector(
        signal="marking_official_sensitive",
        level=Level.OFFICIAL_SENSITIVE,
        pattern=_LABEL
        + rb"OS[\"'*_\])]*[ \t]*(?:[,;}|]|(?m:$))|(?i:(?:\b|_)(?:label|labels|to|from|new|old|was|now|level))=[\"']?"
        + _OS_UPPER
        + rb"\b",
        validate=_carried("marking_official_sensitive"),
    ),
    *_rows(
        "marking_top_secret",
        Level.TOP_SECRET,
        rb"(?:TOP[ \t]*-?[ \t]*SECRET|CYFRINACH[ \t]+IAWN)",
        rb"(?i:top(?:[ \t]+|[ \t]*-[ \t]*)secret)",
        single_word=False,
    ),
    # "TOP SECRET" never matches these SECRET forms as SECRET alone: every form anchors what comes before the
    # word (line start, label, bracket, field separator, handling phrase, sentence end, deixis).
    *_rows(
        "marking_secret", Level.SECRET, rb"(?:SECRET|CYFRINACH)", rb"(?i:secret)", single_word=True, title=rb"Secret"
    ),
    *_rows(
        "marking_official_sensitive",
        Level.OFFICIAL_SENSITIVE,
        _OS_UPPER,
        _OS_ANY,
        single_word=False,
        any_case_stated=True,
    ),
    *_rows(
        "marking_caveat",
        Level.OFFICIAL_SENSITIVE,
        rb"UK(?:[ \t]*/[ \t]*US)?[ \t]+EYES[ \t]+ONLY",
        rb"(?i:uk(?:[ \t]*/[ \t]*us)?[ \t]+eyes[ \t]+only)",
        single_word=False,
    ),
    *_rows(
        "marking_legacy_restricted",
        Level.OFFICIAL_SENSITIVE,
        rb"RESTR[Il1]CTED",
        rb"(?i:restricted)",
        single_word=True,
        title=rb"Restricted",
    ),
    *_rows(
        "marking_legacy_confidential",
        Level.OFFICIAL_SENSITIVE,
        rb"C[O0]NF[Il1]DENT[Il1]AL",
        rb"(?i:confidential)",
        single_word=True,
        title=rb"Confidential",
    ),
    *_rows(
        "marking_legacy_protect",
        Level.OFFICIAL_SENSITIVE,
        rb"PROTECT[ \t]*(?::|" + _DASH + rb")[ \t]*(?:PERSONAL|COMMERCIAL|STAFF|APPOINTMENTS|PERSONNEL)",
        rb"(?i:protect[ \t]*(?::|-)[ \t]*(?:personal|commercial|staff|appointments|personnel))",
        single_word=False,
    ),
    # The privacy markings of the old scheme, alone or with their group: IN CONFIDENCE, STAFF IN CONFIDENCE,
    # COMMERCIAL IN CONFIDENCE ("in confidence" in a sentence is not one).
    *_rows(
        "marking_legacy_confidential",
        Level.OFFICIAL_SENSITIVE,
        rb"(?:(?:STAFF|MANAGEMENT|COMMERCIAL|MEDICAL|POLICY|PERSONAL)[ \t]+)?IN[ \t]+CONFIDENCE",
        rb"(?i:in[ \t]+confidence)",
        single_word=False,
    ),
    # PROTECT without a descriptor counts only as the whole value of a label ("classification": "PROTECT",
    # securityLabel=PROTECT): alone on a line it is as often a heading of the CONTEST strategy (Prevent, Pursue,
    # Protect, Prepare).
    Detector(
        signal="marking_legacy_protect",
        level=Level.OFFICIAL_SENSITIVE,
        pattern=_LABEL + rb"(?i:protect)[\"'*_\])]*[ \t]*(?:[,;}|]|(?m:$))",
    ),
)
