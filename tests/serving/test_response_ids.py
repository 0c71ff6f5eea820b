"""Response ids (serving/response_ids.py): they carry the holding backend, resolve only for their owner under the
key that made them, and nothing forged or altered resolves; the stream rewriting touches only Response objects."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from serving.response_ids import ResponseIds, new_key, rewrite_event_chunk, rewrite_response

IDS = ResponseIds(new_key())


def test_an_issued_id_resolves_to_its_backend_for_its_owner_only() -> None:
    issued = IDS.issue("local", "resp_abc123", "alice")
    assert issued.startswith("resp_")
    assert IDS.resolve(issued, "alice") == ("local", "resp_abc123")
    assert IDS.resolve(issued, "bob") is None
    assert ResponseIds(new_key()).resolve(issued, "alice") is None  # another deployment's key


def test_altered_ids_resolve_to_nothing() -> None:
    issued = IDS.issue("local", "resp_abc123", "alice")
    payload, tag = issued.removeprefix("resp_").split(".")
    other = IDS.issue("commercial", "resp_abc123", "alice").removeprefix("resp_").split(".")[0]
    for forged in (
        f"resp_{other}.{tag}",  # the payload swapped for another backend's
        f"resp_{payload}.{tag[:-1]}A" if tag[-1] != "A" else f"resp_{payload}.{tag[:-1]}B",
        issued + "x",
        issued.upper(),
        None,
        42,
        "resp_" + "A" * 2000,
    ):
        assert IDS.resolve(forged, "alice") is None


@given(st.text(max_size=300))
def test_nothing_arbitrary_resolves(text: str) -> None:
    assert IDS.resolve(text, "alice") is None


def test_a_short_key_is_refused() -> None:
    with pytest.raises(ValueError):
        ResponseIds("short")


def test_rewriting_a_response_and_its_stream() -> None:
    response = {"id": "up1", "previous_response_id": "up0", "output": []}
    rewrite_response(response, lambda upstream: f"mine-{upstream}", "resp_prev")
    assert response == {"id": "mine-up1", "previous_response_id": "resp_prev", "output": []}

    created = {"type": "response.created", "response": {"id": "up1", "previous_response_id": None}}
    delta = {"type": "response.output_text.delta", "delta": '"response":{', "item_id": "msg_1"}
    chunk = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in (created, delta))
    out = rewrite_event_chunk(chunk, lambda r: rewrite_response(r, lambda u: f"mine-{u}", None))
    events = [json.loads(part.split("data: ", 1)[1]) for part in out.split("\n\n") if part]
    assert events[0]["response"]["id"] == "mine-up1"
    assert events[1] == delta  # a delta that merely contains the text is untouched
    assert out.startswith("event: response.created\ndata: ")
