"""Fallback and fail-closed behaviour under generated fault schedules (gateway in-process, loopback fakes)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from routing.audit import verify
from routing.classify import classify_request
from tests.support.inprocess import InProcessGateway, running_gateway

SENSITIVE_SNIPPETS = [
    "NHS number 943 476 5919",
    "OFFICIAL-SENSITIVE",
    "Classification: SECRET",
    "contact jo.bloggs@justice.gov.uk",
    "NI number JG 10 37 28 D",  # (AB 12 34 56 C is the format's usual example, not a number)
    "card 4539 1488 0343 6467",
]

FAULTS = [
    {"mode": "ok"},
    {"mode": "status", "status": 500},
    {"mode": "status", "status": 503},
    {"mode": "status", "status": 429, "retry_after": 1},
    {"mode": "broken_stream"},
    {"mode": "garbage"},
]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    with running_gateway(tmp_path_factory.mktemp("gw")) as running:
        yield running


def _place(snippet: str, where: str, canary: str) -> dict:
    text = f"{canary}\n{snippet}\n"
    messages: list[dict] = [{"role": "user", "content": "Please help."}]
    if where == "system":
        messages.insert(0, {"role": "system", "content": text})
    elif where == "parts":
        messages.append({"role": "user", "content": [{"type": "text", "text": "see"}, {"type": "text", "text": text}]})
    elif where == "tool_args":
        messages.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "f", "arguments": json.dumps({"q": text})}}
                ],
            }
        )
        messages.append({"role": "tool", "tool_call_id": "c1", "content": "ok"})
    elif where == "history":
        messages = [{"role": "user", "content": text}, {"role": "assistant", "content": "ok"}, *messages]
    else:
        messages[-1]["content"] = text
    return {"messages": messages, "max_tokens": 4}


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _wait_for_final(path: Path, request_id: str) -> list[dict]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        mine = [r for r in _records(path) if r["request_id"] == request_id and r["event"] == "request"]
        if mine:
            return mine
        time.sleep(0.02)
    return []


def test_snippets_are_sensitive() -> None:
    for snippet in SENSITIVE_SNIPPETS:
        body = {"model": "default", **_place(snippet, "user", "x")}
        assert classify_request(body).local_only, snippet


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    snippet=st.sampled_from(SENSITIVE_SNIPPETS),
    where=st.sampled_from(["user", "system", "parts", "tool_args", "history"]),
    model=st.sampled_from(["default", "commercial-first"]),
    stream=st.booleans(),
    uk_fault=st.sampled_from(FAULTS),
    commercial_fault=st.sampled_from(FAULTS),
)
def test_sensitive_never_reaches_commercial_under_any_faults(
    gw: InProcessGateway, snippet: str, where: str, model: str, stream: bool, uk_fault: dict, commercial_fault: dict
) -> None:
    gw.uk.set_fault(**uk_fault)
    gw.commercial.set_fault(**commercial_fault)
    canary = f"canary{uuid.uuid4().hex[:10]}"
    body = {"model": model, "stream": stream, **_place(snippet, where, canary)}
    response = httpx.post(f"{gw.base_url}/chat/completions", json=body, headers=gw.headers, timeout=30)
    request_id = response.headers["x-request-id"]

    assert canary not in json.dumps(gw.commercial.received)
    assert response.headers["x-sovereign-classification"] != "OFFICIAL"
    assert response.headers.get("x-sovereign-backend") in {None, "uk"}
    if uk_fault["mode"] in {"status", "garbage"}:
        assert response.status_code == 503  # no cleared backend could serve: never a silent downgrade
    finals = _wait_for_final(gw.audit_path, request_id)
    assert len(finals) == 1
    assert all(a["backend"] == "uk" for a in finals[0]["attempts"])


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stream=st.booleans(), uk_fault=st.sampled_from(FAULTS), commercial_fault=st.sampled_from(FAULTS))
def test_low_risk_falls_back_between_backends(
    gw: InProcessGateway, stream: bool, uk_fault: dict, commercial_fault: dict
) -> None:
    gw.uk.set_fault(**uk_fault)
    gw.commercial.set_fault(**commercial_fault)
    body = {
        "model": "default",
        "stream": stream,
        "max_tokens": 3,
        "messages": [{"role": "user", "content": "What does a magistrate do?"}],
    }
    response = httpx.post(f"{gw.base_url}/chat/completions", json=body, headers=gw.headers, timeout=30)
    uk_down = uk_fault["mode"] in {"status", "garbage"} or (uk_fault["mode"] == "broken_stream" and not stream)
    commercial_down = commercial_fault["mode"] in {"status", "garbage"} or (
        commercial_fault["mode"] == "broken_stream" and not stream
    )
    if not uk_down:
        assert response.headers["x-sovereign-backend"] == "uk"
    elif not commercial_down:
        assert response.status_code == 200
        assert response.headers["x-sovereign-backend"] == "commercial"
    else:
        assert response.status_code == 503
    finals = _wait_for_final(gw.audit_path, response.headers["x-request-id"])
    assert len(finals) == 1


def test_audit_chain_verifies_after_the_fault_storm(gw: InProcessGateway) -> None:
    gw.uk.set_fault("ok")
    gw.commercial.set_fault("ok")
    result = verify(gw.audit_path)
    assert result.ok, result.reason
    assert result.records > 0
