"""The dresses real documents put text in: the same content as Windows, Word, Outlook, PDFs, web pages, services
and attachments deliver it. Each dress keeps the meaning; the classifier must see through every one.

A dress takes the item's text and a random source and returns either a text or a request body (``{"messages":
...}``) for ``classify_request``. The look-alike table is written here by hand (the letters people and attackers
actually use), not taken from the classifier's own confusables data, so the test does not grade its own homework.
"""

from __future__ import annotations

import base64
import html
import json
import quopri
import random
import re
from collections.abc import Callable
from typing import Any

Dressed = str | dict[str, Any]
Dress = Callable[[str, random.Random], Dressed]

# Cyrillic and Greek letters that render like Latin ones.
LOOK_ALIKES = {
    "A": "\u0410",
    "B": "\u0412",
    "C": "\u0421",
    "E": "\u0415",
    "H": "\u041d",
    "K": "\u041a",
    "M": "\u041c",
    "O": "\u041e",
    "P": "\u0420",
    "T": "\u0422",
    "X": "\u0425",
    "Y": "\u03a5",
    "I": "\u0399",
    "N": "\u039d",
    "Z": "\u0396",
    "a": "\u0430",
    "c": "\u0441",
    "e": "\u0435",
    "o": "\u043e",
    "p": "\u0440",
    "x": "\u0445",
    "y": "\u0443",
    "i": "\u0456",
    "j": "\u0458",
    "s": "\u0455",
}
INVISIBLES = ["\u200b", "\u200c", "\u200d", "\u2060", "\u00ad", "\ufeff", "\u200e", "\u202a", "\ufe0f", "\U000e0041"]
LINE_BREAKS = {
    "crlf": "\r\n",
    "cr": "\r",
    "form_feed": "\f",
    "vertical_tab": "\v",
    "nel": "\u0085",
    "line_separator": "\u2028",
    "paragraph_separator": "\u2029",
}


def _line_breaks(sep: str) -> Dress:
    return lambda text, _rng: text.replace("\n", sep)


def word_dashes(text: str, rng: random.Random) -> str:
    """Word's non-breaking hyphen, en and em dashes, minus sign, in place of hyphens."""
    return "".join(rng.choice(["\u2011", "\u2013", "\u2014", "\u2010", "\u2212"]) if ch == "-" else ch for ch in text)


def nbsp_and_double_spaces(text: str, rng: random.Random) -> str:
    return "".join(rng.choice(["\u00a0", "  ", "\u202f", " \u00a0"]) if ch == " " else ch for ch in text)


def byte_order_mark(text: str, _rng: random.Random) -> str:
    return "\ufeff" + text


def invisible_characters(text: str, rng: random.Random) -> str:
    """A zero-width or format character after about one letter in three."""
    out = []
    for ch in text:
        out.append(ch)
        if ch.isalnum() and rng.random() < 0.35:
            out.append(rng.choice(INVISIBLES))
    return "".join(out)


def combining_marks(text: str, rng: random.Random) -> str:
    """A stray combining mark (from a bad paste or on purpose) on some letters."""
    return "".join(
        ch + rng.choice(["\u0301", "\u0308", "\u0327"]) if ch.isalpha() and rng.random() < 0.1 else ch for ch in text
    )


def look_alikes(text: str, rng: random.Random) -> str:
    return "".join(LOOK_ALIKES[ch] if ch in LOOK_ALIKES and rng.random() < 0.5 else ch for ch in text)


def full_width(text: str, rng: random.Random) -> str:
    return "".join(chr(ord(ch) + 0xFEE0) if "!" <= ch <= "~" and rng.random() < 0.3 else ch for ch in text)


def html_page(text: str, rng: random.Random) -> str:
    """A web page or an Outlook HTML body: every line a paragraph, spaces sometimes &nbsp;, markup inline."""
    lines = []
    for line in text.split("\n"):
        escaped = html.escape(line, quote=False)
        if rng.random() < 0.3:
            escaped = escaped.replace(" ", "&nbsp;")
        if rng.random() < 0.3 and escaped:
            escaped = f"<b>{escaped}</b>"
        lines.append(f'<p class="MsoNormal">{escaped}</p>')
    return "<html><body><div>" + "\n".join(lines) + "</div></body></html>"


def json_in_prose(text: str, _rng: random.Random) -> str:
    """A JSON record pasted into a message, with its escapes (\\n, \\u00e9)."""
    return "Can you tidy up this record? " + json.dumps({"id": 1172, "note": text}) + " Thanks."


def xml_document(text: str, _rng: random.Random) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<record>\n  <body>'
        + html.escape(text, quote=False)
        + "</body>\n</record>"
    )


def csv_row(text: str, _rng: random.Random) -> str:
    quoted = '"' + text.replace('"', '""') + '"'
    return "id,created,body,owner\n4411,2026-11-02," + quoted + ",casework"


def mime_base64(text: str, _rng: random.Random) -> str:
    """A MIME part as an e-mail export carries it: base64 in 76-character lines."""
    encoded = base64.b64encode(text.encode()).decode()
    lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
    return (
        "From: casework@justice.example\nSubject: notes\nMIME-Version: 1.0\n"
        "Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64\n\n" + "\n".join(lines)
    )


def rich_text(text: str, _rng: random.Random) -> str:
    """Word's RTF on the clipboard: control words, groups, \\par for each paragraph."""
    body = text.replace("\\", "\\\\").replace("{", "\\{").replace("}", "\\}").replace("\n", "\\par\n")
    return "{\\rtf1\\ansi\\deff0{\\fonttbl{\\f0 Arial;}}\\f0\\fs22 " + body + "}"


def percent_encoded(text: str, _rng: random.Random) -> str:
    from urllib.parse import quote

    return "https://intranet.example/search?q=" + quote(text)


def split_parts(text: str, rng: random.Random) -> dict[str, Any]:
    """The text split across two content parts of one message, at any point, as a client that chunks does."""
    cut = rng.randrange(1, len(text)) if len(text) > 1 else 0
    parts = [{"type": "text", "text": text[:cut]}, {"type": "text", "text": text[cut:]}]
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


def split_parts_at_a_line(text: str, rng: random.Random) -> dict[str, Any]:
    """The text split across two content parts at a line break, as a client that sends a document and its
    question apart does (one part when the text is one line). Each part is also read alone, so a split inside a
    line can cut a benign text's context from what it qualifies ("Visiting H" | "MP Brockhill: ... 01527 ...");
    that split is a sensitive item's dress (``split_parts``), not a neutral one."""
    breaks = [i + 1 for i, ch in enumerate(text[:-1]) if ch == "\n"]
    cut = rng.choice(breaks) if breaks else len(text)
    parts = [{"type": "text", "text": piece} for piece in (text[:cut], text[cut:]) if piece]
    return {"model": "m", "messages": [{"role": "user", "content": parts}]}


def quoted_printable_body(text: str, _rng: random.Random) -> str:
    """An e-mail's body copied from its source without the headers: quoted-printable, soft line breaks at 76
    characters, "=" and non-ASCII characters as =XX escapes, CR LF line ends."""
    return quopri.encodestring(text.replace("\n", "\r\n").encode()).decode("ascii")


# Decimal digits of scripts that write numbers with their own digits: Arabic-Indic, Extended Arabic-Indic (Urdu,
# Persian), Devanagari, Bengali.
OTHER_DIGITS = ("\u0660", "\u06f0", "\u0966", "\u09e6")


def other_script_digits(text: str, rng: random.Random) -> str:
    """Numbers in another script's digits, as a translated letter or a form filled in Urdu or Hindi writes them."""
    zero = ord(rng.choice(OTHER_DIGITS))
    return "".join(chr(zero + int(ch)) if "0" <= ch <= "9" else ch for ch in text)


def typed_dashes(text: str, _rng: random.Random) -> str:
    """Dashes typed as two hyphens, as plain-text mail and Markdown write them: between words in capitals
    ("OFFICIAL--SENSITIVE") and between spaces (" -- ")."""
    return re.sub(r"(?<=[A-Z])-(?=[A-Z])| - ", lambda m: m.group().replace("-", "--"), text)


def upper_case(text: str, _rng: random.Random) -> str:
    """Court lists and headings write everything in capitals."""
    return text.upper()


# Dresses that keep the meaning for any text, benign included.
NEUTRAL: dict[str, Dress] = {
    **{name: _line_breaks(sep) for name, sep in LINE_BREAKS.items()},
    "word_dashes": word_dashes,
    "nbsp_and_double_spaces": nbsp_and_double_spaces,
    "byte_order_mark": byte_order_mark,
    "invisible_characters": invisible_characters,
    "combining_marks": combining_marks,
    "look_alikes": look_alikes,
    "full_width": full_width,
    "html_page": html_page,
    "json_in_prose": json_in_prose,
    "xml_document": xml_document,
    "csv_row": csv_row,
    "mime_base64": mime_base64,
    "percent_encoded": percent_encoded,
    "rich_text": rich_text,
    "split_parts_at_a_line": split_parts_at_a_line,
    "quoted_printable_body": quoted_printable_body,
    "other_script_digits": other_script_digits,
    "typed_dashes": typed_dashes,
}
# Dresses for sensitive items only: capitals change what a benign text's words look like (a recipe's "Secret:"
# heading becomes a banner), and a split at any point can cut a benign text's context from what it qualifies
# (``split_parts_at_a_line``), so benign items are not held to them.
SENSITIVE_ONLY: dict[str, Dress] = {"upper_case": upper_case, "split_parts": split_parts}
ALL: dict[str, Dress] = {**NEUTRAL, **SENSITIVE_ONLY}


def dress(item: dict[str, Any], name: str, seed: int) -> Dressed | None:
    """``item`` (a corpus item with ``text``) in dress ``name``; None for request items."""
    if "text" not in item:
        return None
    return ALL[name](item["text"], random.Random(f"{item['id']}/{name}/{seed}"))
