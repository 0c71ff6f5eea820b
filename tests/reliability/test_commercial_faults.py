"""The commercial side failing in every way: each fault gives the documented fallback or error, in bounded time.

The gateway runs in this process (no Ray) in front of two real loopback fakes ("uk", sovereign; "commercial") and
a port that refuses connections. After the whole matrix, the server loop holds no more tasks than when it started
and no connection to a fake is left beyond the client's keep-alive pool: nothing hangs, nothing leaks.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from routing.audit import verify
from tests.reliability.harness import COMMERCIAL_TIMEOUT_S, Harness, running_harness

BOUND_S = COMMERCIAL_TIMEOUT_S + 8  # generous: the point is "bounded", not "fast"


@pytest.fixture(scope="module")
def harness(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Harness]:
    with running_harness(tmp_path_factory.mktemp("faults")) as h:
        h.baseline_tasks = h.tasks()
        yield h


@dataclass(frozen=True)
class Case:
    fault: dict[str, Any]
    model: str
    expect_status: int
    expect_backend: str | None  # who answered (None: nobody)
    reason: str | None  # the failed attempt's reason in the audit record


FALLBACKS = [
    Case({"mode": "ok"}, "commercial-first", 200, "commercial", None),
    Case({"mode": "ok"}, "refused-first", 200, "uk", "connect"),
    Case({"mode": "ok"}, "refused-only", 503, None, "connect"),
    Case({"mode": "slow", "delay_s": 4}, "commercial-first", 200, "uk", "timeout"),
    Case({"mode": "slow", "delay_s": 4}, "commercial-only", 503, None, "timeout"),
    Case({"mode": "hang"}, "commercial-first", 200, "uk", "timeout"),
    Case({"mode": "hang"}, "commercial-only", 503, None, "timeout"),
    Case({"mode": "status", "status": 500}, "commercial-first", 200, "uk", "http_500"),
    Case({"mode": "status", "status": 500}, "commercial-only", 503, None, "http_500"),
    Case({"mode": "status", "status": 429, "retry_after": 7}, "commercial-first", 200, "uk", "http_429"),
    Case({"mode": "status", "status": 429, "retry_after": 7}, "commercial-only", 503, None, "http_429"),
    Case({"mode": "garbage"}, "commercial-first", 200, "uk", None),
    Case({"mode": "garbage"}, "commercial-only", 503, None, None),
]


def _ids(case: Case) -> str:
    return f"{case.fault['mode']}{case.fault.get('status', '')}-{case.model}"


def _post(h: Harness, model: str, stream: bool) -> tuple[httpx.Response, float]:
    body = {
        "model": model,
        "stream": stream,
        "max_tokens": 4,
        "messages": [{"role": "user", "content": "What does a magistrate do?"}],
    }
    started = time.monotonic()
    response = httpx.post(f"{h.base_url}/chat/completions", json=body, headers=h.headers, timeout=60)
    return response, time.monotonic() - started


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("case", FALLBACKS, ids=_ids)
def test_commercial_fault_gives_fallback_or_error(harness: Harness, case: Case, stream: bool) -> None:
    harness.uk.set_fault("ok")
    harness.commercial.set_fault(**case.fault)
    response, elapsed = _post(harness, case.model, stream)

    assert elapsed < BOUND_S, f"took {elapsed:.1f}s"
    assert response.status_code == case.expect_status, response.text
    assert response.headers.get("x-sovereign-backend") == case.expect_backend
    if case.expect_status == 200:
        text = response.text
        assert ("data: [DONE]" in text) if stream else ("choices" in response.json())
    else:
        error = response.json()["error"]
        assert error["code"] == "no_cleared_backend_available"
        if case.fault.get("retry_after"):
            assert response.headers["retry-after"] == "7"
    record = harness.final_record(response.headers["x-request-id"])
    assert record["status"] == case.expect_status
    failed = [a for a in record["attempts"] if a["outcome"] == "failed"]
    if case.reason is not None:
        assert failed and failed[0]["reason"] == case.reason
    elif case.fault["mode"] != "ok":
        assert failed and failed[0]["backend"] == "commercial"


@pytest.mark.parametrize("model", ["commercial-only", "commercial-first"])
def test_stream_cut_half_way_ends_with_error_event_never_a_clean_finish(harness: Harness, model: str) -> None:
    """After the first byte there is no fallback: the client sees an error event and the audit says so."""
    harness.commercial.set_fault("broken_stream")
    response, elapsed = _post(harness, model, stream=True)
    assert elapsed < BOUND_S
    assert response.status_code == 200
    events = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
    assert events and "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == "stream_interrupted"
    record = harness.final_record(response.headers["x-request-id"])
    assert record["status"] == 502
    assert record["attempts"][-1]["outcome"] == "failed_mid_stream"
    assert record["backend"] == "commercial"


def test_non_streamed_body_cut_half_way_falls_back(harness: Harness) -> None:
    harness.commercial.set_fault("broken_stream")
    response, _ = _post(harness, "commercial-first", stream=False)
    assert response.status_code == 200
    assert response.headers["x-sovereign-backend"] == "uk"


def test_every_commercial_attempt_was_audited_durably_first(harness: Harness) -> None:
    records = harness.records()
    for index, record in enumerate(records):
        if record["event"] != "request":
            continue
        tried = [a for a in record["attempts"] if a["backend"] in {"commercial", "refused"}]
        egress = [r for r in records[:index] if r["event"] == "egress" and r["request_id"] == record["request_id"]]
        assert len(egress) == len(tried), record["request_id"]
        assert all(r["level"] == "OFFICIAL" for r in egress)
    assert verify(harness.audit_path).ok


def test_zz_no_hung_requests_no_leaked_tasks_or_connections(harness: Harness) -> None:
    harness.commercial.set_fault("ok")
    deadline = time.monotonic() + 10
    while harness.tasks() > harness.baseline_tasks and time.monotonic() < deadline:
        time.sleep(0.1)
    assert harness.tasks() <= harness.baseline_tasks
    assert harness.gateway.in_flight == 0
    # What stays open is the backend client's keep-alive pool for sequential requests: one or two sockets.
    assert harness.sockets_to(harness.commercial) <= 2
    assert harness.sockets_to(harness.uk) <= 2
    finals = [r["request_id"] for r in harness.records() if r["event"] == "request"]
    assert len(finals) == len(set(finals))
