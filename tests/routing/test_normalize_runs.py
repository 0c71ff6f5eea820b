"""The non-ASCII runs of a text converted together give what converting each run alone gives."""

from __future__ import annotations

from unittest import mock

from hypothesis import given, settings
from hypothesis import strategies as st

from routing import normalize

# ASCII around runs of accented letters, combining marks, dashes, spaces, look-alikes, ligatures, full-width
# forms, Hangul jamo, invisibles and noncharacters; bytes that are not UTF-8 too.
_CHARS = st.sampled_from(
    list("aeE s0\n\t\x00-'\"")
    + list("éëÉßŁłøØ\u0301\u0308\u0327\u2013\u2014\u00a0\u2009\u200b\u00ad\ufeff")
    + list("СсΑοＳＥＣ\ufb01\u2460\u1100\u1161\u11a8가\U0001d400\u00bd\u212b\u0041\u030a\ufffe")
)
_TEXTS = st.lists(_CHARS, max_size=40).map("".join)


def _per_run(data: bytes, convert) -> bytes:
    return normalize.substitute(
        normalize._NON_ASCII_RUN,
        data,
        lambda d, spans: convert(d[spans[0][0] : spans[0][1]].decode("utf-8", "replace")).encode("utf-8", "replace"),
    )


@settings(max_examples=2000, deadline=None)
@given(_TEXTS, st.binary(max_size=6))
def test_runs_converted_together_as_one_at_a_time(text, junk):
    for data in (text.encode(), text.encode() + junk + text[::-1].encode(), text.replace("\x00", "").encode()):
        assert normalize._map_runs(data, normalize._normalise_runs) == _per_run(data, normalize._normalise_runs)
        assert normalize._map_runs(data, normalize._fold_runs) == _per_run(data, normalize._fold_runs)


_STEP_REGEXES = (
    normalize._PERCENT,
    normalize._QP,
    normalize._TAG,
    normalize._ENTITY,
    normalize._SPACED_OR_BROKEN,
    normalize._ESCAPE,
    normalize._BASE64_CONTEXT,
    normalize._JSON_START,
    normalize._OCR_DIGITS,
    normalize._ENCODED_WORD,
    normalize._QP_BARE,
    normalize._NAME_VALUE_PAIR,
)
_MARKUP = st.sampled_from(
    [
        "<p>",
        "</b>",
        "<!-- x -->",
        "&amp;",
        "&#83;",
        "%53",
        "%zz",
        "\\u0053",
        "\\n",
        '\\"',
        '{"a": ',
        "[1, ",
        "base64,",
        "Content-Transfer-Encoding: quoted-printable",
        "=E2=80",
        "=\n",
        "=?utf-8?Q?x?=",
        "=?",
        "?=",
        "S E C R E T",
        "l29O",
        "6l",
        "A-\nB",
        '"name": "sensitivity",',
        "value:",
        "<",
        "&",
        "%",
        "\\",
        "{",
        "x",
        " ",
        "\n",
        "\u00e9",
    ]
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_MARKUP, max_size=12).map("".join))
def test_one_set_pass_finds_the_decoding_steps_a_search_each_would(text):
    data = text.encode()
    assert len(normalize._STEPS) == len(_STEP_REGEXES)
    assert normalize._steps(data) == {i for i, regex in enumerate(_STEP_REGEXES) if regex.found(data)}


@settings(max_examples=1000, deadline=None)
@given(_TEXTS)
def test_identity_entries_of_the_translation_tables_change_nothing(text):
    """Both tables map ASCII and the rest of the BMP's unmapped characters to themselves only so that str.translate
    finds those characters instead of raising and clearing a KeyError for each: the translation is what it is
    without them."""
    for table in (normalize._unicode_table(), normalize._fold_table()):
        without = {cp: to for cp, to in table.items() if to != cp}
        assert all(table[cp] == cp for cp in range(0x80))
        assert text.translate(table) == text.translate(without)


@settings(max_examples=2000, deadline=None)
@given(
    st.lists(st.one_of(_CHARS, st.sampled_from(list("\r\x0b\x0c\x01\x1b\x7f\u0085\u2028"))), max_size=40).map("".join),
    st.binary(max_size=6),
)
def test_normalised_and_folded_from_one_cut_as_in_two_steps(text, junk):
    """``normalise_and_fold_utf8`` gives what ``normalise_utf8`` and then ``fold`` give (no folded view when folding
    changes nothing), control characters, NUL and bytes that are not UTF-8 included."""
    for data in (text.encode(), text.encode() + junk + text[::-1].encode(), text.replace("\x00", "").encode()):
        normalised = normalize.normalise_utf8(data)
        folded = _folded_or_none(normalised.decode("utf-8", "replace"))
        assert normalize.normalise_and_fold_utf8(data) == (normalised, folded)


def _folded_or_none(normalised: str) -> str | None:
    folded = normalize.fold(normalised)
    return None if folded == normalised else folded


def test_no_folded_view_when_folding_changes_nothing():
    """Bullets, ticks, currency signs and letters of other scripts fold to themselves: the folded view would be the
    normalised one scanned twice. Letters with diacritics do change."""
    texts = (
        "\u2022 first point\n\u2022 second",
        "done \u2713",
        "\u0417\u0443 \u4e2d",
        "\u2022 " * 20000,
        "\u00a3300, \u00a55",
    )
    for text in texts:
        assert normalize.normalise_and_fold_utf8(text.encode())[1] is None, text[:20]
        assert normalize.normalise_and_fold_in_pieces(text.encode(), lambda: None)[1] is None
    assert normalize.normalise_and_fold_utf8("Zo\u00eb \u2022".encode())[1] == "Zoe \u2022"
    assert normalize.normalise_and_fold_utf8("Zo\u00eb \u00a3300".encode())[1] == "Zoe \u00a3300"
    assert normalize.decode_and_fold(b"&bull; item &#x2713;") == ("\u2022 item \u2713", None)


# Markup and escapes whose decoded text is not ASCII (accented letters, combining marks, Cyrillic and Greek).
_ESCAPED = st.one_of(
    _MARKUP,
    st.sampled_from(
        ["\\u00e9", "\\u0301", "\\u0430", "\\u03b1", "&eacute;", "&#x301;", "%C3%A9", "Zo\u00eb", "\u0435"]
    ),
)


@settings(max_examples=1000, deadline=None)
@given(st.lists(_ESCAPED, max_size=16).map("".join), st.integers(min_value=1, max_value=40))
def test_decoded_and_folded_from_one_cut_as_in_two_steps(text, limit):
    """``decode_and_fold`` gives ``decode`` and ``fold`` of it (None when that changes nothing), also when
    ``MAX_DECODED_BYTES`` cuts it short."""
    data = normalize.normalise(text).encode("utf-8", "replace")
    for cap in (normalize.MAX_DECODED_BYTES, limit):
        with mock.patch.object(normalize, "MAX_DECODED_BYTES", cap):
            decoded = normalize.decode(data)
            folded = None if decoded.isascii() else _folded_or_none(decoded)
            assert normalize.decode_and_fold(data) == (decoded, folded)
