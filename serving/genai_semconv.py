"""OpenTelemetry GenAI semantic conventions for the router's spans: names from ``opentelemetry-semantic-conventions``,
values that are configured names, codes and counts only (never prompt or completion text).

Where they go: the request span (SERVER) gets the operation, the public model asked for and the token counts;
each backend attempt (CLIENT, the GenAI call) gets the operation, the backend's model, its provider and its
address; the response (the attempt span for a whole body, the stream span for a stream) gets token counts, the
finish reasons and the model that answered. The ``sovereign.*`` attributes stay beside them.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.semconv.attributes import server_attributes as server

from routing.audit import audit_name
from serving.backends.base import Chunks, Endpoint, Opened, Usage
from serving.config import OPENAI_API_BASE_URL
from serving.thirdparty import genai_attributes

gen_ai = genai_attributes()

OPERATION = {
    Endpoint.CHAT: gen_ai.GenAiOperationNameValues.CHAT.value,
    Endpoint.COMPLETIONS: gen_ai.GenAiOperationNameValues.TEXT_COMPLETION.value,
    Endpoint.EMBEDDINGS: gen_ai.GenAiOperationNameValues.EMBEDDINGS.value,
    Endpoint.RESPONSES: gen_ai.GenAiOperationNameValues.GENERATE_CONTENT.value,
    # No registered value for these; the convention allows a custom one.
    Endpoint.SCORE: "score",
    Endpoint.RERANK: "rerank",
}
# Finish reasons are short codes ("stop", "length", "tool_calls"); anything else is not recorded.
_REASON = re.compile(r"^[a-z_]{1,32}$")
_FINISH = re.compile(r'"finish_reason":"([a-z_]{1,32})"')
# vLLM has no registered provider value; the convention allows a custom one.
LOCAL_PROVIDER = "vllm"


def request_attributes(endpoint: Endpoint, model: str | None, usage: Usage | None = None) -> dict[str, Any]:
    """For the request span: the operation, the public model name (if a safe name) and the token counts."""
    attributes: dict[str, Any] = {gen_ai.GEN_AI_OPERATION_NAME: OPERATION[endpoint]}
    if (name := audit_name(model)) not in (None, "_invalid"):
        attributes[gen_ai.GEN_AI_REQUEST_MODEL] = name
    if usage is not None:
        attributes.update(usage_attributes(usage))
    return attributes


_OPENAI_HOST = urlsplit(OPENAI_API_BASE_URL).hostname


def attempt_attributes(settings: Any, backend: str, endpoint: Endpoint) -> dict[str, Any]:
    """For a backend attempt: operation, the model the backend is asked for, provider, server address/port."""
    config = next((b for b in settings.backends if b.name == backend), None)
    attributes: dict[str, Any] = {gen_ai.GEN_AI_OPERATION_NAME: OPERATION[endpoint]}
    if config is None:
        return attributes
    if config.kind == "openai":
        model = config.embedding_model if endpoint is Endpoint.EMBEDDINGS and config.embedding_model else config.model
        url = urlsplit(config.base_url)
        attributes[gen_ai.GEN_AI_PROVIDER_NAME] = (
            gen_ai.GenAiProviderNameValues.OPENAI.value if url.hostname == _OPENAI_HOST else "openai_compatible"
        )
        if url.hostname:
            attributes[server.SERVER_ADDRESS] = url.hostname
            attributes[server.SERVER_PORT] = url.port or (443 if url.scheme == "https" else 80)
    else:
        model = config.adapter if config.kind == "adapter" else config.served_model_name or config.name
        attributes[gen_ai.GEN_AI_PROVIDER_NAME] = LOCAL_PROVIDER
        # A local engine is a Ray Serve deployment in this cluster, addressed by its backend name.
        attributes[server.SERVER_ADDRESS] = config.name
    if (name := audit_name(model)) not in (None, "_invalid"):
        attributes[gen_ai.GEN_AI_REQUEST_MODEL] = name
    return attributes


def usage_attributes(usage: Usage) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if usage.prompt_tokens is not None:
        attributes[gen_ai.GEN_AI_USAGE_INPUT_TOKENS] = usage.prompt_tokens
    if usage.completion_tokens is not None:
        attributes[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] = usage.completion_tokens
    return attributes


def response_attributes(opened: Opened) -> dict[str, Any]:
    """For a response: token counts, finish reasons (codes) and the model that answered (a safe name)."""
    attributes = usage_attributes(opened.usage)
    reasons = list(opened.finish_reasons)
    body = opened.body
    if isinstance(body, dict):
        for choice in body.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str) and _REASON.match(reason):
                reasons.append(reason)
        if (name := audit_name(body.get("model") if isinstance(body.get("model"), str) else None)) not in (
            None,
            "_invalid",
        ):
            attributes[gen_ai.GEN_AI_RESPONSE_MODEL] = name
    if reasons:
        attributes[gen_ai.GEN_AI_RESPONSE_FINISH_REASONS] = reasons
    return attributes


class _Observed:
    """A stream passed through unchanged, noting the finish reasons its SSE events carry (a substring scan)."""

    def __init__(self, inner: Chunks, reasons: list[str]) -> None:
        self._inner, self._reasons = inner, reasons

    def __aiter__(self) -> _Observed:
        return self

    async def __anext__(self) -> str:
        chunk = await self._inner.__anext__()
        if '"finish_reason":"' in chunk:
            self._reasons.extend(_FINISH.findall(chunk))
        return chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


def observed(opened: Opened) -> Opened:
    """``opened`` whose stream notes its finish reasons in ``opened.finish_reasons`` (shared list)."""
    if opened.chunks is None:
        return opened
    return dataclasses.replace(opened, chunks=_Observed(opened.chunks, opened.finish_reasons))
