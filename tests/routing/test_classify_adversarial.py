"""Hostile input finishes in bounded time and memory, and never opens the gate.

Generous wall-clock guards only (the machine may be busy): the point is linear behaviour, not speed.
"""

from __future__ import annotations

import random
import time

import pytest

from routing.classify import classify_request, classify_text
from routing.levels import Level

BOUND_S = 10.0
_RNG = random.Random(1)


def noise(alphabet: str, size: int) -> str:
    return "".join(_RNG.choice(alphabet) for _ in range(size))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


@pytest.mark.parametrize(
    "text",
    [
        "1 " * 1_000_000,  # 2 MB of digits and spaces: every position is a candidate boundary
        noise("0123456789 -/", 2_000_000),  # random digits: thousands of candidates that pass a check
        noise("0123456789 -/ABCDEFGHJKLMNPQRTUVWXYZ@.", 1_000_000),
        "9" * 3_000_000,
        "a@" * 1_000_000,  # e-mail shapes that never complete
        "Mr " * 500_000 + "convicted",  # names and justice words everywhere
        ("SECRET\n" * 200_000),
        "\ud800\udfff" * 100_000 + " 943 476 5919",  # lone surrogates
    ],
    ids=["digit-space", "digit-punct", "mixed", "digits", "at-signs", "titles", "banners", "surrogates"],
)
def test_hostile_text_finishes_and_is_never_lowered(text):
    c, elapsed = timed(classify_text, text)  # the default deadline (0.25 s)
    assert elapsed < BOUND_S
    if c.signals and c.signals[0].type.startswith("classification_"):
        assert c.level == Level.TOP_SECRET  # fail closed when it gives up


def test_surrogates_do_not_hide_identifiers():
    c = classify_text("\ud800 NHS 943 476 5919 \udfff")
    assert c.local_only


def test_deeply_nested_content_parts_fail_closed_quickly():
    content: object = "NHS 943 476 5919"
    for _ in range(100_000):
        content = [{"type": "text", "text": content}]
    c, elapsed = timed(classify_request, {"messages": [{"role": "user", "content": content}]})
    assert elapsed < BOUND_S
    assert c.level == Level.TOP_SECRET
    assert c.signals[0].type == "classification_error"


def test_deeply_nested_json_in_tool_arguments_fails_closed():
    args = "[" * 200_000 + "\\u0040" + "]" * 200_000
    body = {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": "f", "arguments": args}}]}]}
    c, elapsed = timed(classify_request, body)
    assert elapsed < BOUND_S
    assert c.level == Level.TOP_SECRET


def test_very_many_small_parts():
    parts = [{"type": "text", "text": "x"}] * 400_000
    c, elapsed = timed(classify_request, {"messages": [{"role": "user", "content": parts}]})
    assert elapsed < BOUND_S
    assert c.level in (Level.OFFICIAL, Level.TOP_SECRET)


def test_many_valid_identifiers_time_out_closed_rather_than_pass():
    text = " ".join(["943 476 5919"] * 300_000)
    c, elapsed = timed(classify_text, text, deadline_s=0.05)
    assert elapsed < BOUND_S
    assert c.local_only


def test_more_objects_than_any_request_fails_closed_quickly():
    from routing.classify import MAX_CONTAINERS

    many = [[{"a": ["x"]}] for _ in range(MAX_CONTAINERS // 3 + 1)]  # shallow, and fewer nodes than MAX_NODES
    # A generous deadline: on a loaded host the walk to the limit can outlast the default 250 ms, which fails closed
    # too but as a timeout; what is checked here is the limit itself.
    body = {"messages": [{"role": "user", "content": "hi"}], "metadata": {"n": many}}
    c, elapsed = timed(classify_request, body, deadline_s=BOUND_S)
    assert elapsed < BOUND_S
    assert c.level == Level.TOP_SECRET
    assert c.signals[0].type == "classification_error"
    fewer = many[: MAX_CONTAINERS // 4]
    c = classify_request({"messages": [{"role": "user", "content": "hi"}], "metadata": {"n": fewer}}, deadline_s=10)
    assert c.signals == ()


def test_more_nodes_than_any_request_fail_closed_without_a_container_to_enter():
    from routing.classify import MAX_NODES

    for body in ({"input": ["a"] * (MAX_NODES + 1)}, {f"k{i}": "" for i in range(MAX_NODES // 2 + 1)}):
        c = classify_request(body, deadline_s=10)
        assert c.level == Level.TOP_SECRET
        assert c.signals[0].type == "classification_error"
