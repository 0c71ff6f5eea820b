"""The request's time limit (server.request_timeout_s, or its model's request_timeout_s) in the gateway itself, with
loopback fakes whose timing the test controls: a 504 before the first byte, an error event after it, the backend's
work cancelled, the audit record written. The real app is checked in tests/reliability/test_hardening.py."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.audit import final_record
from tests.support.inprocess import InProcessGateway, running_gateway

DEADLINE_S = 1.0  # the "deadline" model's request_timeout_s (tests/support/inprocess.py)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessGateway]:
    with running_gateway(tmp_path_factory.mktemp("deadline")) as running:
        yield running


@pytest.fixture(autouse=True)
def _healthy(gw: InProcessGateway) -> Iterator[None]:
    yield
    gw.uk.set_fault("ok")
    gw.commercial.set_fault("ok")


def _body(stream: bool, **extra: object) -> dict:
    return {
        "model": "deadline",
        "stream": stream,
        "max_tokens": 6,
        "messages": [{"role": "user", "content": "NHS 943 476 5919"}],
        **extra,
    }  # local only: uk, never commercial


def test_no_answer_in_time_is_a_504_and_is_audited(gw: InProcessGateway) -> None:
    gw.uk.set_fault("slow", delay_s=3)
    started = time.monotonic()
    response = httpx.post(f"{gw.base_url}/chat/completions", json=_body(False), headers=gw.headers, timeout=30)
    took = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"] == {
        "message": response.json()["error"]["message"],
        "type": "timeout_error",
        "param": None,
        "code": "request_timeout",
    }
    assert DEADLINE_S <= took < DEADLINE_S + 1.5
    record = final_record(gw.audit_path, response.headers["x-request-id"])
    assert record["status"] == 504 and record["backend"] is None
    assert [(a["backend"], a["outcome"], a["reason"]) for a in record["attempts"]] == [
        ("uk", "timeout", "request_timeout")
    ]


def test_a_stream_past_its_deadline_ends_with_an_error_event_not_done(gw: InProcessGateway) -> None:
    gw.uk.set_fault("slow", chunk_delay_s=0.4)  # 6 tokens: about 3 s in all, the deadline is 1 s
    with httpx.stream(
        "POST", f"{gw.base_url}/chat/completions", json=_body(True), headers=gw.headers, timeout=30
    ) as response:
        assert response.status_code == 200
        events = [line.removeprefix("data: ") for line in response.iter_lines() if line.startswith("data: ")]
    assert "[DONE]" not in events
    assert json.loads(events[0])["object"] == "chat.completion.chunk"  # it had started
    assert json.loads(events[-1])["error"]["code"] == "request_timeout"
    record = final_record(gw.audit_path, response.headers["x-request-id"])
    assert record["status"] == 504 and record["backend"] == "uk"
    assert record["attempts"][-1]["outcome"] == "timeout"


def test_within_the_deadline_nothing_changes(gw: InProcessGateway) -> None:
    gw.uk.set_fault("slow", delay_s=0.2)
    response = httpx.post(f"{gw.base_url}/chat/completions", json=_body(False), headers=gw.headers, timeout=30)
    assert response.status_code == 200
    assert final_record(gw.audit_path, response.headers["x-request-id"])["status"] == 200


def test_other_models_keep_the_server_limit(gw: InProcessGateway) -> None:
    gw.uk.set_fault("slow", delay_s=1.5)
    response = httpx.post(
        f"{gw.base_url}/chat/completions", json={**_body(False), "model": "default"}, headers=gw.headers, timeout=30
    )
    assert response.status_code == 200  # server.request_timeout_s is 600 s here
