"""GenAI semantic conventions on the spans the running app exports over OTLP, for a local vLLM backend, streamed
and not; and still no prompt text in anything exported."""

from __future__ import annotations

import secrets

import httpx
import pytest

from serving.thirdparty import genai_attributes
from tests.support.app import RunningApp
from tests.support.otlp import OTLPCollector

gen_ai = genai_attributes()


@pytest.mark.parametrize("stream", [False, True])
def test_local_backend_spans_carry_genai_attributes(
    app: RunningApp, otlp_collector: OTLPCollector, stream: bool
) -> None:
    trace_id = secrets.token_hex(16)
    canary = f"genaicanary{secrets.token_hex(4)}"
    response = httpx.post(
        f"{app.base_url}/chat/completions",
        timeout=120,
        headers={**app.headers(), "traceparent": f"00-{trace_id}-{secrets.token_hex(8)}-01"},
        json={
            "model": "local-only",
            "max_tokens": 4,
            "stream": stream,
            "messages": [{"role": "user", "content": f"say {canary}"}],
        },
    )
    assert response.status_code == 200, response.text
    names = {"sovereign.request", "sovereign.backend_attempt"} | ({"sovereign.stream"} if stream else set())
    spans = {s.name: s for s in otlp_collector.wait_for(trace_id, names)}
    root, attempt = spans["sovereign.request"].attributes, spans["sovereign.backend_attempt"].attributes
    assert root[gen_ai.GEN_AI_OPERATION_NAME] == "chat" and root[gen_ai.GEN_AI_REQUEST_MODEL] == "local-only"
    assert root[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] >= 1 and root[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] >= 1
    assert attempt[gen_ai.GEN_AI_PROVIDER_NAME] == "vllm" and attempt["server.address"] == "local"
    assert attempt[gen_ai.GEN_AI_REQUEST_MODEL] == "tiny"
    answer = spans["sovereign.stream" if stream else "sovereign.backend_attempt"].attributes
    assert answer[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] >= 1
    assert set(answer[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS]) <= {"stop", "length"}
    assert canary.encode() not in b"".join(otlp_collector.raw)
