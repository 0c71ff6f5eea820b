"""Sovereignty end to end: the real app (tiny vLLM engine) and the loopback fake standing in for OpenAI.

The canary strings prove absence: whatever the fake received is searched for them, in every form.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import httpx
import openai
import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from tests.support.app import RunningApp
from tests.support.audit import audit_records

pytestmark = pytest.mark.engine

NHS = "943 476 5919"  # valid mod-11 check digit


def _canary() -> str:
    return f"canary{uuid.uuid4().hex[:12]}"


def _leaked(fake: FakeOpenAIServer, canary: str) -> bool:
    return canary in json.dumps(fake.received)


def _sensitive_requests(canary: str) -> list[tuple[str, dict]]:
    sensitive = f"OFFICIAL-SENSITIVE\nRe: {canary}, NHS number {NHS}."
    tool_call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "lookup", "arguments": json.dumps({"note": sensitive})},
    }
    return [
        (
            "chat/completions",
            {"model": "commercial-first", "max_tokens": 4, "messages": [{"role": "user", "content": sensitive}]},
        ),
        (
            "chat/completions",
            {
                "model": "commercial-first",
                "max_tokens": 4,
                "stream": True,
                "messages": [{"role": "user", "content": sensitive}],
            },
        ),
        (
            "chat/completions",
            {
                "model": "commercial-first",
                "max_tokens": 4,
                "messages": [
                    {"role": "system", "content": f"Case notes for {canary}: email jo.bloggs@justice.gov.uk"},
                    {"role": "assistant", "content": "Noted."},
                    {"role": "user", "content": [{"type": "text", "text": "Summarise please"}]},
                ],
            },
        ),
        (
            "chat/completions",
            {
                "model": "commercial-first",
                "max_tokens": 4,
                "messages": [
                    {"role": "user", "content": f"Look up {canary}"},
                    {"role": "assistant", "content": None, "tool_calls": [tool_call]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "done"},
                    {"role": "user", "content": "and?"},
                ],
            },
        ),
        ("completions", {"model": "commercial-first", "max_tokens": 4, "prompt": sensitive}),
        ("completions", {"model": "commercial-first", "max_tokens": 4, "prompt": [sensitive], "stream": True}),
        ("embeddings", {"model": "embeddings-commercial-first", "input": [f"{canary} SECRET\n", sensitive]}),
    ]


@pytest.mark.parametrize("index", range(7))
def test_sensitive_requests_never_reach_commercial(app: RunningApp, commercial: FakeOpenAIServer, index: int) -> None:
    canary = _canary()
    path, body = _sensitive_requests(canary)[index]
    response = httpx.post(f"{app.base_url}/{path}", json=body, headers=app.headers(), timeout=120)
    assert response.status_code == 200, response.text
    assert response.headers["x-sovereign-backend"] in {"local", "embed"}
    assert response.headers["x-sovereign-classification"] != "OFFICIAL"
    assert not _leaked(commercial, canary)
    assert commercial.received == []


def test_declared_level_routes_locally_and_cannot_lower(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    canary = _canary()
    declared = app.client(default_headers={"X-Sovereign-Classification": "SECRET"})
    raw = declared.chat.completions.with_raw_response.create(
        model="commercial-first", max_tokens=4, messages=[{"role": "user", "content": f"plain text {canary}"}]
    )
    assert raw.headers["x-sovereign-classification"] == "SECRET"
    assert raw.headers["x-sovereign-backend"] == "local"
    lowered = app.client(default_headers={"X-Sovereign-Classification": "OFFICIAL"})
    raw = lowered.chat.completions.with_raw_response.create(
        model="commercial-first", max_tokens=4, messages=[{"role": "user", "content": f"NHS {NHS} {canary}"}]
    )
    assert raw.headers["x-sovereign-classification"] == "OFFICIAL-SENSITIVE"
    assert not _leaked(commercial, canary)


def test_declared_level_that_is_not_a_level_is_400(app: RunningApp) -> None:
    client = app.client(default_headers={"X-Sovereign-Classification": "VERY SECRET"})
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="default", messages=[{"role": "user", "content": "hi"}])
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "invalid_classification"


def test_low_risk_goes_commercial_with_only_what_the_caller_sent(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    body = {
        "model": "commercial-first",
        "messages": [{"role": "user", "content": "What is a magistrate?"}],
        "max_tokens": 5,
        "temperature": 0.2,
    }
    response = httpx.post(
        f"{app.base_url}/chat/completions", json=body, headers={**app.headers(), "X-Sovereign-Backend": "local"}
    )
    assert response.status_code == 200
    assert response.headers["x-sovereign-backend"] == "commercial"
    assert response.headers["x-sovereign-classification"] == "OFFICIAL"
    [received] = commercial.received
    assert received["body"] == {**body, "model": "gpt-fake"}
    assert received["headers"]["authorization"] == "Bearer sk-fake-commercial"
    leaked_headers = [h for h in received["headers"] if h.startswith(("x-sovereign", "x-request-id", "x-forwarded"))]
    assert leaked_headers == []
    assert app.keys["tester"] not in json.dumps(received)


def test_low_risk_stream_through_commercial(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    stream = app.client().chat.completions.create(
        model="commercial-first",
        messages=[{"role": "user", "content": "Define bail."}],
        max_tokens=3,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[-1].usage is not None
    assert len(commercial.received) == 1


def test_fallback_to_local_when_commercial_fails(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    faults: list[dict[str, Any]] = [
        {"mode": "status", "status": 503},
        {"mode": "status", "status": 429, "retry_after": 1},
    ]
    for fault in faults:
        commercial.set_fault(**fault)
        raw = app.client().chat.completions.with_raw_response.create(
            model="commercial-first", max_tokens=3, messages=[{"role": "user", "content": "hello"}]
        )
        assert raw.headers["x-sovereign-backend"] == "local"


def test_commercial_refusal_is_returned_not_retried(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    commercial.set_fault("status", status=400)
    with pytest.raises(openai.BadRequestError) as info:
        app.client().chat.completions.create(
            model="commercial-first", max_tokens=3, messages=[{"role": "user", "content": "hello"}]
        )
    assert info.value.response.headers["x-sovereign-backend"] == "commercial"
    assert len(commercial.received) == 1


def test_no_candidate_left_is_503_with_retry_after(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    commercial.set_fault("status", status=429, retry_after=7)
    response = httpx.post(
        f"{app.base_url}/chat/completions",
        headers=app.headers(),
        json={"model": "commercial-only", "messages": [{"role": "user", "content": "hello"}]},
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "no_cleared_backend_available"
    assert response.headers["retry-after"] == "7"


def test_sensitive_request_to_commercial_only_model_is_403(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    canary = _canary()
    with pytest.raises(openai.PermissionDeniedError) as info:
        app.client().chat.completions.create(
            model="commercial-only", messages=[{"role": "user", "content": f"{canary} NHS {NHS}"}]
        )
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "classification_not_permitted"
    assert commercial.received == []


def test_stream_broken_midway_ends_with_error_event(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    commercial.set_fault("broken_stream")
    response = httpx.post(
        f"{app.base_url}/chat/completions",
        headers=app.headers(),
        timeout=30,
        json={
            "model": "commercial-only",
            "stream": True,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": "hello"}],
        },
    )
    assert response.status_code == 200
    events = [line for line in response.text.splitlines() if line.startswith("data:")]
    assert events and "data: [DONE]" not in events
    assert json.loads(events[-1][5:])["error"]["code"] == "stream_interrupted"


def test_garbage_from_commercial_falls_back_before_first_byte(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    commercial.set_fault("garbage")
    stream = (
        app.client()
        .with_options(timeout=60)
        .chat.completions.create(
            model="commercial-first", stream=True, max_tokens=3, messages=[{"role": "user", "content": "hello"}]
        )
    )
    assert list(stream)  # served by the local model after the commercial stream was refused


def test_overflow_sends_low_risk_to_commercial_but_keeps_sensitive_local(
    app: RunningApp, commercial: FakeOpenAIServer
) -> None:
    """With the local queue over its depth (4), low-risk traffic overflows; sensitive traffic never does.

    Bursts of 8 sensitive and 8 low-risk requests start together (a barrier); whether a burst really overlaps
    on this 2-core machine varies (a warm tiny engine finishes 600 tokens in about a second, and arrivals have
    been seen to spread out), so up to four bursts are sent until one overflows. Sensitive requests must stay
    local in every burst.
    """
    commercial.set_fault("slow", delay_s=0.5)  # keep commercial requests open while the burst arrives
    sensitive_backends: set[str] = set()
    low_risk: list[str] = []

    def burst() -> None:
        barrier = threading.Barrier(16)
        results: dict[int, str] = {}

        def call(i: int, sensitive: bool) -> None:
            content = f"NHS {NHS} request {i}" if sensitive else f"Tell me a story {i}"
            with httpx.Client(timeout=180) as client:
                barrier.wait()
                response = client.post(
                    f"{app.base_url}/chat/completions",
                    headers=app.headers(),
                    json={
                        "model": "default",
                        "max_tokens": 600,
                        "messages": [{"role": "user", "content": content}],
                        "ignore_eos": True,
                    },
                )
            results[i] = response.headers.get("x-sovereign-backend") or f"status {response.status_code}"

        threads = [threading.Thread(target=call, args=(i, i % 2 == 0)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sensitive_backends.update(results[i] for i in range(0, 16, 2))
        low_risk.extend(results[i] for i in range(1, 16, 2))

    for _ in range(4):
        burst()
        if "commercial" in low_risk:
            break
    assert sensitive_backends == {"local"}
    assert "commercial" in low_risk, low_risk
    assert NHS not in json.dumps(commercial.received)
    metrics = httpx.get(app.metrics_url).text
    assert 'sovereign_overflows_total{backend="local",model="default"}' in metrics


def test_auth_errors(app: RunningApp) -> None:
    body = {"model": "default", "messages": [{"role": "user", "content": "hi"}]}
    for headers in (
        {},
        {"Authorization": "Bearer sk-sov-not-a-key"},
        {"Authorization": "Basic Zm9vOmJhcg=="},
        {"Authorization": "Bearer"},
    ):
        response = httpx.post(f"{app.base_url}/chat/completions", json=body, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "authentication_error"


def test_key_ceiling_and_floor(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    with pytest.raises(openai.PermissionDeniedError) as info:
        app.client("ceiling-official").chat.completions.create(
            model="default", messages=[{"role": "user", "content": f"NHS {NHS}"}]
        )
    assert isinstance(info.value.body, dict) and info.value.body["code"] == "classification_not_permitted"
    raw = app.client("floor-secret").chat.completions.with_raw_response.create(
        model="commercial-first", max_tokens=3, messages=[{"role": "user", "content": "hello"}]
    )
    assert raw.headers["x-sovereign-classification"] == "SECRET"
    assert raw.headers["x-sovereign-backend"] == "local"
    assert commercial.received == []


def test_rate_limit_is_429_with_retry_after(app: RunningApp) -> None:
    body = {"model": "local-only", "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]}
    statuses = [
        httpx.post(f"{app.base_url}/chat/completions", json=body, headers=app.headers("slow-rate"), timeout=60)
        for _ in range(3)
    ]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[-1].headers["retry-after"]) >= 1
    assert statuses[-1].json()["error"]["type"] == "rate_limit_error"


def test_zz_audit_chain_is_intact_and_complete(app: RunningApp) -> None:
    """Runs last in this module: every request so far has exactly one `request` record; the chain verifies."""
    result = subprocess.run(
        [sys.executable, "-m", "serving.cli", "audit", "verify", str(app.audit_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr
    records = audit_records(app.audit_path)
    finals = [r["request_id"] for r in records if r["event"] == "request"]
    assert len(finals) == len(set(finals))
    egress = [r for r in records if r["event"] == "egress"]
    assert egress and all(r["level"] == "OFFICIAL" for r in egress)
    for r in egress:  # each egress record comes before its request's final record
        final_index = next(
            i for i, x in enumerate(records) if x["request_id"] == r["request_id"] and x["event"] == "request"
        )
        assert records.index(r) < final_index
    text = app.audit_path.read_text()
    assert "canary" not in text and NHS not in text


def test_keys_created_and_revoked_take_effect_without_a_restart(app: RunningApp) -> None:
    from routing.keys import create_key
    from routing.keys_cli import main as keys_main

    keys_file = app.config["auth"]["keys_file"]
    key = create_key(keys_file, "short-lived")

    def status_within(expected: int, seconds: float = 10) -> int:
        deadline = time.monotonic() + seconds
        while True:
            status = httpx.get(f"{app.base_url}/models", headers={"Authorization": f"Bearer {key}"}).status_code
            if status == expected or time.monotonic() > deadline:
                return status
            time.sleep(0.2)

    assert status_within(200) == 200  # picked up from the file by the running router
    assert keys_main(["revoke", "--caller", "short-lived", "--keys-file", keys_file]) == 0
    assert status_within(401) == 401
    assert httpx.get(f"{app.base_url}/models", headers=app.headers()).status_code == 200  # the others still work


def _dressed_requests(canary: str) -> list[tuple[str, dict]]:
    """Issue 18's first-week failures: content as documents deliver it, on a route that prefers OpenAI."""
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
    return [
        (
            "chat/completions",
            {
                "model": "commercial-first",
                "max_tokens": 4,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "text", "text": f"What does this scanned prison record say? {canary}"},
                            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{pixel}"}},
                        ],
                    }
                ],
            },
        ),
        (
            "completions",
            {"model": "commercial-first", "max_tokens": 4, "prompt": [1543, 318, 257, 2116, 13], "user": canary},
        ),
        (
            "chat/completions",
            {
                "model": "commercial-first",
                "max_tokens": 4,
                "messages": [
                    {
                        "role": "user",
                        "content": (
                            f"Minutes of the estates board\r\nOFFICIAL-SENSITIVE\r\n\r\n1. Apologies ({canary})."
                        ),
                    }
                ],
            },
        ),
        (
            "chat/completions",
            {
                "model": "commercial-first",
                "max_tokens": 4,
                "messages": [
                    {
                        "role": "user",
                        "content": f"OFFICIAL\u2011SENSITIVE\n\nSubmission to the Permanent Secretary ({canary}).",
                    }
                ],
            },
        ),
        ("embeddings", {"model": "embeddings-commercial-first", "input": [[101, 7592, 2088, 102]], "user": canary}),
        (
            "chat/completions",
            {
                "model": "commercial-first",
                "max_tokens": 4,
                "messages": [
                    {
                        "role": "user",
                        "content": f"Translate ({canary}): "
                        "میرا بیٹا عمران ایچ ایم پی برمنگھم میں ہے، اسے انسولین نہیں ملی",
                    }
                ],
            },
        ),
        (
            "chat/completions",
            {
                "model": "commercial-first",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": f"Why does this fail ({canary})? DB_PASSWORD=Tr0ub4dor&3xyz"}],
            },
        ),
    ]


@pytest.mark.parametrize("index", range(7))
def test_documents_as_delivered_never_reach_commercial(
    app: RunningApp, commercial: FakeOpenAIServer, index: int
) -> None:
    """An image part, token ids, a CRLF-marked minute, a Word-hyphenated marking, a letter in Urdu and a password in
    config: answered locally or refused (the tiny local model reads no images), never sent to the fake OpenAI; the
    audit record names the signal and the classifier."""
    canary = _canary()
    path, body = _dressed_requests(canary)[index]
    response = httpx.post(f"{app.base_url}/{path}", json=body, headers=app.headers(), timeout=120)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 200:
        assert response.headers["x-sovereign-backend"] in {"local", "embed"}
        assert response.headers["x-sovereign-classification"] != "OFFICIAL"
    assert commercial.received == [] and not _leaked(commercial, canary)
    records = audit_records(app.audit_path)
    last = [r for r in records if r["event"] == "request" and r["endpoint"].endswith(path)][-1]
    assert last["level"] != "OFFICIAL" and len(last["classifier_sha256"]) == 64
    assert {s["type"] for s in last["signals"]} & {
        "unscanned_image",
        "unscanned_token_ids",
        "unscanned_script",
        "marking_official_sensitive",
        "credential",
    }
