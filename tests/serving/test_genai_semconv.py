"""GenAI semantic-convention attributes built from configuration and responses: names from the semconv package,
values that are names, codes and counts only."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from serving.backends.base import Endpoint, Opened, Usage
from serving.config import OPENAI_API_BASE_URL, load_settings
from serving.defaults import default_config
from serving.genai_semconv import attempt_attributes, observed, request_attributes, response_attributes
from serving.thirdparty import genai_attributes

gen_ai = genai_attributes()


def _settings():
    config = default_config()
    config["backends"].append(
        {
            "name": "openai",
            "kind": "openai",
            "sovereign": False,
            "model": "gpt-4o-mini",
            "embedding_model": "text-embedding-3-small",
            "max_classification": "OFFICIAL",
        }
    )
    return load_settings(data=config)


def test_attempt_attributes_for_local_and_commercial_backends() -> None:
    settings = _settings()
    local = attempt_attributes(settings, "local", Endpoint.CHAT)
    assert local == {
        gen_ai.GEN_AI_OPERATION_NAME: "chat",
        gen_ai.GEN_AI_PROVIDER_NAME: "vllm",
        "server.address": "local",
        gen_ai.GEN_AI_REQUEST_MODEL: "smollm2-135m-instruct",
    }
    openai = attempt_attributes(settings, "openai", Endpoint.EMBEDDINGS)
    assert openai[gen_ai.GEN_AI_OPERATION_NAME] == "embeddings"
    assert openai[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"
    assert openai[gen_ai.GEN_AI_REQUEST_MODEL] == "text-embedding-3-small"
    openai_host = urlsplit(OPENAI_API_BASE_URL).hostname  # configured, never contacted: no test reaches the internet
    assert openai["server.address"] == openai_host and openai["server.port"] == 443
    assert attempt_attributes(settings, "nope", Endpoint.COMPLETIONS) == {
        gen_ai.GEN_AI_OPERATION_NAME: "text_completion"
    }


def test_request_and_response_attributes_hold_no_free_text() -> None:
    attributes = request_attributes(Endpoint.CHAT, "a model name with spaces", Usage(4, 2))
    assert gen_ai.GEN_AI_REQUEST_MODEL not in attributes  # not a safe name: not recorded
    assert attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] == 4
    body: dict[str, Any] = {
        "model": "fake",
        "choices": [{"finish_reason": "stop"}, {"finish_reason": "Ignore previous text"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 2},
    }
    usage = Usage()
    usage.update(body["usage"])
    answer = response_attributes(Opened(body=body, usage=usage))
    assert answer[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] == ["stop"]
    assert answer[gen_ai.GEN_AI_RESPONSE_MODEL] == "fake" and answer[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] == 2


def test_streams_are_passed_through_and_their_finish_reasons_noted() -> None:
    events = [
        'data: {"choices":[{"delta":{"content":"hi"},"finish_reason":null}]}\n\n',
        'data: {"choices":[{"delta":{},"finish_reason":"length"}]}\n\n',
        "data: [DONE]\n\n",
    ]
    closed = []

    async def chunks():
        try:
            for event in events:
                yield event
        finally:
            closed.append(True)

    async def run() -> list[str]:
        opened = observed(Opened(chunks=chunks()))
        assert opened.chunks is not None
        seen = [chunk async for chunk in opened.chunks]
        await opened.chunks.aclose()
        assert opened.finish_reasons == ["length"]
        assert response_attributes(opened)[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] == ["length"]
        return seen

    assert asyncio.run(run()) == events and closed == [True]
