"""One trace end to end, over real OTLP export: the caller's ``traceparent`` -> Ray Serve's replica span -> the
router's spans -> Serve's handle call -> the engine replica's span -> vLLM's own request span. And no prompt text
in anything any of these processes exported."""

from __future__ import annotations

import secrets

import httpx
import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from tests.support.app import RunningApp
from tests.support.otlp import CollectedSpan, OTLPCollector

VLLM_SPAN = "llm_request"


def _traceparent() -> tuple[str, str]:
    trace_id = secrets.token_hex(16)
    return trace_id, f"00-{trace_id}-{secrets.token_hex(8)}-01"


def _by_name(spans: list[CollectedSpan], name: str) -> CollectedSpan:
    found = [s for s in spans if s.name == name]
    assert found, f"no {name!r} span in {sorted({s.name for s in spans})}"
    return found[0]


def _ancestors(span: CollectedSpan, spans: list[CollectedSpan]) -> list[str]:
    """Names from ``span`` up to the root (the caller's span, not exported, ends the chain)."""
    by_id = {s.span_id: s for s in spans}
    names = []
    while span.parent_span_id in by_id:
        span = by_id[span.parent_span_id]
        names.append(span.name)
    return names


@pytest.mark.parametrize("stream", [False, True])
def test_one_trace_from_caller_to_vllm(app: RunningApp, otlp_collector: OTLPCollector, stream: bool) -> None:
    trace_id, traceparent = _traceparent()
    canary = f"tracecanary{secrets.token_hex(4)}"
    response = httpx.post(
        f"{app.base_url}/chat/completions",
        timeout=120,
        headers={**app.headers(), "traceparent": traceparent, "X-Sovereign-Backend": "local"},
        json={
            "model": "local-only",
            "max_tokens": 4,
            "stream": stream,
            "messages": [{"role": "user", "content": f"say {canary}"}],
        },
    )
    assert response.status_code == 200, response.text
    spans = otlp_collector.wait_for(trace_id, {"sovereign.request", "sovereign.backend_attempt", VLLM_SPAN})

    request = _by_name(spans, "sovereign.request")
    assert request.attributes["sovereign.backend"] == "local"
    # Serve's replica span sits between the caller and the router (it read `traceparent` at direct ingress).
    assert _ancestors(request, spans) and _ancestors(request, spans)[-1].startswith("replica_handle_request")
    assert request.service == "sovereign-inference"

    # vLLM's span hangs under the router's backend attempt: one trace, not a second one.
    vllm = _by_name(spans, VLLM_SPAN)
    assert "sovereign.backend_attempt" in _ancestors(vllm, spans)
    assert vllm.attributes["gen_ai.usage.completion_tokens"] >= 1
    # Serve's handle call reached the engine replica in the same trace.
    assert any(s.name.startswith("replica_handle_request engine-local") for s in spans), sorted(s.name for s in spans)

    raw = b"".join(otlp_collector.raw)
    assert canary.encode() not in raw


def test_commercial_attempt_is_traced_but_carries_no_context(
    app: RunningApp, otlp_collector: OTLPCollector, commercial: FakeOpenAIServer
) -> None:
    """The router traces a commercial attempt in the caller's trace; the provider gets no trace context at all."""
    trace_id, traceparent = _traceparent()
    response = httpx.post(
        f"{app.base_url}/chat/completions",
        timeout=60,
        headers={**app.headers(), "traceparent": traceparent, "tracestate": "k=v"},
        json={
            "model": "commercial-only",
            "max_tokens": 4,
            "messages": [{"role": "user", "content": "what is the capital of France"}],
        },
    )
    assert response.status_code == 200, response.text
    spans = otlp_collector.wait_for(trace_id, {"sovereign.request", "sovereign.backend_attempt"})
    assert _by_name(spans, "sovereign.backend_attempt").attributes["sovereign.backend"] == "commercial"
    assert VLLM_SPAN not in {s.name for s in spans}
    [received] = commercial.received
    assert not {"traceparent", "tracestate", "baggage"} & set(received["headers"])
