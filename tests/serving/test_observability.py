"""Traces, metrics and logs: the span tree and counters are right, and no prompt text reaches any of them."""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from serving.telemetry import JSONFormatter
from tests.support.inprocess import InProcessGateway, running_gateway

CANARY = "zebracanary4471"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture(scope="module")
def logs() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JSONFormatter())
    logger = logging.getLogger("sovereign")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield buffer
    logger.removeHandler(handler)


@pytest.fixture(scope="module")
def gw(
    tmp_path_factory: pytest.TempPathFactory, spans: InMemorySpanExporter, logs: io.StringIO
) -> Iterator[InProcessGateway]:
    with running_gateway(tmp_path_factory.mktemp("obs")) as running:
        yield running


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _trace_of(exporter: InMemorySpanExporter, request_id: str) -> list[ReadableSpan]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        roots = [
            s
            for s in exporter.get_finished_spans()
            if s.name == "sovereign.request" and _attrs(s).get("sovereign.request_id") == request_id
        ]
        if roots:
            trace_id = roots[0].context.trace_id
            return [s for s in exporter.get_finished_spans() if s.context.trace_id == trace_id]
        time.sleep(0.02)
    raise AssertionError("no finished request span")


def _post(gw: InProcessGateway, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{gw.base_url}/chat/completions", json=body, headers={**gw.headers, **headers}, timeout=30)


@pytest.mark.parametrize("stream", [False, True])
def test_span_tree(gw: InProcessGateway, spans: InMemorySpanExporter, stream: bool) -> None:
    gw.uk.set_fault("ok")
    body = {
        "model": "default",
        "stream": stream,
        "max_tokens": 3,
        "messages": [{"role": "user", "content": f"{CANARY} NHS 943 476 5919"}],
    }
    response = _post(gw, body, traceparent=TRACEPARENT)
    assert response.status_code == 200
    tree = _trace_of(spans, response.headers["x-request-id"])
    by_name = {s.name: s for s in tree}
    root = by_name["sovereign.request"]
    assert f"{root.context.trace_id:032x}" == TRACEPARENT.split("-")[1]  # joined the caller's trace
    assert root.parent is not None and f"{root.parent.span_id:016x}" == TRACEPARENT.split("-")[2]
    expected = {"sovereign.classify", "sovereign.policy", "sovereign.backend_attempt"}
    if stream:
        expected.add("sovereign.stream")
    assert expected <= set(by_name)
    for name in expected:
        parent = by_name[name].parent
        assert parent is not None and parent.span_id == root.context.span_id
    assert _attrs(by_name["sovereign.classify"])["sovereign.signal_types"] == ("nhs_number",)
    assert _attrs(root)["sovereign.level"] == "OFFICIAL-SENSITIVE"
    assert _attrs(root)["sovereign.backend"] == "uk"
    assert _attrs(root)["sovereign.completion_tokens"] == 3
    assert _attrs(by_name["sovereign.backend_attempt"])["sovereign.outcome"] == "ok"
    if stream:
        assert _attrs(by_name["sovereign.stream"])["sovereign.ttft_ms"] >= 0
    # the sovereign backend got the trace context; vLLM would join the same trace
    sent = gw.uk.received[-1]["headers"]
    assert sent["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]


def test_commercial_backend_gets_no_trace_context(gw: InProcessGateway) -> None:
    gw.commercial.reset()
    response = _post(
        gw, {"model": "commercial-first", "messages": [{"role": "user", "content": "hello"}]}, traceparent=TRACEPARENT
    )
    assert response.headers["x-sovereign-backend"] == "commercial"
    [received] = gw.commercial.received
    assert "traceparent" not in received["headers"]


def test_metrics_parse_and_move(gw: InProcessGateway) -> None:
    def sample(text: str, name: str, **labels: str) -> float:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                    return s.value
        return 0.0

    metrics_url = gw.metrics_url
    before = httpx.get(metrics_url).text
    gw.commercial.set_fault("ok")
    gw.uk.set_fault("status", status=503)
    response = _post(gw, {"model": "default", "messages": [{"role": "user", "content": "hello"}]})
    assert response.headers["x-sovereign-backend"] == "commercial"
    gw.uk.set_fault("ok")
    after = httpx.get(metrics_url).text
    labels = {"model": "default", "level": "OFFICIAL", "backend": "commercial", "status": "200"}
    assert (
        sample(after, "sovereign_requests_total", **labels) == sample(before, "sovereign_requests_total", **labels) + 1
    )
    assert sample(after, "sovereign_commercial_egress_total", level="OFFICIAL", backend="commercial") >= 1
    assert sample(after, "sovereign_fallbacks_total", from_backend="uk", reason="http_503") >= 1
    assert sample(after, "sovereign_classification_seconds_count") > sample(
        before, "sovereign_classification_seconds_count"
    )
    for family in text_string_to_metric_families(after):
        if family.name.startswith("sovereign_commercial_egress"):
            assert {s.labels["level"] for s in family.samples} == {"OFFICIAL"}


def test_canary_appears_nowhere(gw: InProcessGateway, spans: InMemorySpanExporter, logs: io.StringIO) -> None:
    gw.uk.set_fault("ok")
    bodies: list[dict[str, Any]] = [
        {"model": "default", "messages": [{"role": "user", "content": CANARY}]},
        {"model": "default", "stream": True, "messages": [{"role": "user", "content": CANARY}]},
        {"model": "default", "messages": [{"role": "user", "content": CANARY}], "max_tokens": "many"},
        {"model": CANARY, "messages": [{"role": "user", "content": CANARY}]},
    ]
    for body in bodies:
        _post(gw, body)
    httpx.post(
        f"{gw.base_url}/chat/completions", content=b'{"model": "' + CANARY.encode() + b'", oops', headers=gw.headers
    )
    time.sleep(0.2)
    span_dump = json.dumps([json.loads(s.to_json()) for s in spans.get_finished_spans()])
    metrics = httpx.get(gw.metrics_url).text
    assert CANARY not in span_dump
    assert CANARY not in metrics
    assert CANARY not in logs.getvalue()
    assert CANARY not in gw.audit_path.read_text()
    assert gw.key not in logs.getvalue() + span_dump + gw.audit_path.read_text()
    assert '"request_id"' in logs.getvalue()  # one structured line per request


def test_request_log_line_keeps_its_severity_beside_the_classification(gw: InProcessGateway, logs: io.StringIO) -> None:
    gw.uk.set_fault("ok")
    response = _post(gw, {"model": "default", "messages": [{"role": "user", "content": "hello"}]})
    request_id = response.headers["x-request-id"]
    time.sleep(0.2)
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if request_id in line]
    assert [(line["event"], line["level"], line["classification"]) for line in lines] == [
        ("request", "INFO", "OFFICIAL")
    ]


@pytest.mark.parametrize("stream", [False, True])
def test_spans_carry_the_genai_semantic_conventions(
    gw: InProcessGateway, spans: InMemorySpanExporter, stream: bool
) -> None:
    from opentelemetry.semconv.attributes import server_attributes as server

    from serving.thirdparty import genai_attributes

    gen_ai = genai_attributes()

    gw.uk.set_fault("ok")
    body = {
        "model": "default",
        "stream": stream,
        "max_tokens": 3,
        "messages": [{"role": "user", "content": f"{CANARY} NHS 943 476 5919"}],
    }
    response = _post(gw, body)
    assert response.status_code == 200, response.text
    by_name = {s.name: s for s in _trace_of(spans, response.headers["x-request-id"])}
    root, attempt = _attrs(by_name["sovereign.request"]), _attrs(by_name["sovereign.backend_attempt"])
    assert root[gen_ai.GEN_AI_OPERATION_NAME] == "chat" and root[gen_ai.GEN_AI_REQUEST_MODEL] == "default"
    assert root[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 3 and root[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] > 0
    assert attempt[gen_ai.GEN_AI_OPERATION_NAME] == "chat"
    assert attempt[gen_ai.GEN_AI_REQUEST_MODEL] == "fake"  # the model the backend was asked for
    assert attempt[gen_ai.GEN_AI_PROVIDER_NAME] == "openai_compatible"
    assert attempt[server.SERVER_ADDRESS] == "127.0.0.1" and attempt[server.SERVER_PORT] > 0
    answer = _attrs(by_name["sovereign.stream" if stream else "sovereign.backend_attempt"])
    assert answer[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 3
    assert set(answer[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS]) <= {"stop", "length"}
    assert answer[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS]
    # never content: no attribute of any span of the trace holds the prompt
    dumped = json.dumps([_attrs(s) for s in by_name.values()])
    assert CANARY not in dumped and "943 476 5919" not in dumped
