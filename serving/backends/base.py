"""The backend protocol: one call, ``open``, that either fails before any byte or hands back a ready response.

This is the convention the fallback loop relies on (after Ray Serve LLM's ``LLMEngine`` protocol):
- ``open`` raises ``BackendFailure`` (connection, timeout, 429, 5xx, overload: the next candidate may be tried)
  or ``BackendRefusal`` (a 4xx about the request itself: returned to the caller, never retried elsewhere);
- otherwise it returns ``Opened`` holding the JSON body, or a stream of ready SSE strings (``data: ...\\n\\n``)
  whose first chunk has already arrived. A stream that fails later raises ``BackendFailure`` mid-iteration;
  by then bytes may have gone to the client, so the router ends the stream with an error event.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal, Protocol

from routing.levels import Level


class Endpoint(StrEnum):
    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    SCORE = "score"  # vLLM's, for pooling models: not in the OpenAI API
    RERANK = "rerank"  # vLLM's (Jina/Cohere form), for pooling models: not in the OpenAI API
    RESPONSES = "responses"  # the Responses API: its stream is typed events ending in a terminal one, no [DONE]

    @property
    def path(self) -> str:
        return f"/v1/{'chat/completions' if self is Endpoint.CHAT else self.value}"

    @property
    def pooling(self) -> bool:
        """Served by an embedding (pooling) model, never streamed."""
        return self in _POOLING


_POOLING = frozenset({Endpoint.EMBEDDINGS, Endpoint.SCORE, Endpoint.RERANK})


class BackendFailure(Exception):
    """The backend could not serve; ``reason`` is a short code (``connect``, ``timeout``, ``http_503``...)."""

    def __init__(self, reason: str, *, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class BackendRefusal(Exception):
    """The backend refused the request itself (4xx). ``envelope`` is an OpenAI error body safe to return."""

    def __init__(self, status: int, envelope: dict[str, Any]) -> None:
        super().__init__(f"http_{status}")
        self.status = status
        self.envelope = envelope


@dataclass
class Usage:
    prompt_tokens: int | None = None
    completion_tokens: int | None = None

    def update(self, usage: dict[str, Any] | None) -> None:
        """From an OpenAI ``usage`` object: chat, completions and embeddings name the counts ``prompt_tokens`` and
        ``completion_tokens``, the Responses API ``input_tokens`` and ``output_tokens``."""
        if isinstance(usage, dict):
            self.prompt_tokens = usage.get("prompt_tokens", usage.get("input_tokens", self.prompt_tokens))
            self.completion_tokens = usage.get("completion_tokens", usage.get("output_tokens", self.completion_tokens))


RESPONSE_TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
"""The Responses API stream's last event is one of these (there is no ``[DONE]``)."""


def response_event(data: dict[str, Any]) -> str:
    """One Responses API stream event as OpenAI sends it: its type as the SSE event name, the object as data."""
    return f"event: {data.get('type', 'message')}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


class Chunks(Protocol):
    """A started stream of SSE events: read until it ends, then closed (which stops what is still generating)."""

    def __aiter__(self) -> AsyncIterator[str]: ...

    async def __anext__(self) -> str: ...

    async def aclose(self) -> None: ...


class GuardedStream:
    """An async generator as ``Chunks`` that runs ``on_unread_close`` when it is closed before its first read: an
    async generator closed before it starts runs none of its code, its ``finally`` included. Once read, closing it
    closes the generator, whose own ``finally`` does the rest."""

    def __init__(self, events: AsyncGenerator[str, None], on_unread_close: Callable[[], Awaitable[None]]) -> None:
        self._events, self._on_unread_close, self._read = events, on_unread_close, False

    def __aiter__(self) -> GuardedStream:
        return self

    async def __anext__(self) -> str:
        self._read = True
        return await anext(self._events)

    async def aclose(self) -> None:
        try:
            if not self._read:
                self._read = True
                await self._on_unread_close()
        finally:
            await self._events.aclose()


@dataclass
class Opened:
    """A response that has started: exactly one of ``body`` and ``chunks`` is set."""

    body: dict[str, Any] | None = None
    chunks: Chunks | None = None
    usage: Usage = field(default_factory=Usage)  # filled as the response is read, for the audit record
    finish_reasons: list[str] = field(default_factory=list)  # codes, filled as a stream is read (for traces)


class Backend(Protocol):
    """Everything the gateway uses of a backend."""

    name: str
    sovereign: bool
    max_classification: Level
    available: bool  # False while a local engine has no running replica (serving/availability.py): skipped

    @property
    def overloaded(self) -> bool:
        """Its queue is full: the routing policy may overflow to the next candidate."""
        ...

    @property
    def queue_depth(self) -> int | None:
        """Requests this router replica has in flight to it, for the metrics; None where nothing queues here."""
        ...

    def serves(self, endpoint: Endpoint) -> bool: ...

    def validate(self, endpoint: Endpoint, body: dict[str, Any]) -> Any:
        """Check ``body`` before any backend sees it: raises ``BadRequest`` (or pydantic's ``ValidationError``)
        for a body this backend could not take. Returns what ``open`` takes as ``parsed`` (None: nothing)."""
        ...

    async def open(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        *,
        request_id: str,
        trace_headers: Mapping[str, str],
        parsed: Any = None,
    ) -> Opened:
        """``trace_headers``: W3C trace context to propagate (empty for non-sovereign backends); ``parsed``: what
        ``validate`` returned for this body, so it is not parsed twice."""
        ...

    async def stored(
        self, action: Literal["retrieve", "delete", "cancel"], upstream_id: str, *, request_id: str
    ) -> Opened:
        """A Responses API response this backend holds, by its own id: fetched, deleted, or its generation
        cancelled. Raises ``BackendRefusal`` (404 for an unknown id, 400 for an action it does not offer) or
        ``BackendFailure``."""
        ...

    async def ready(self) -> bool: ...

    async def close(self) -> None: ...


def wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and bool(options.get("include_usage"))


def with_usage(body: dict[str, Any]) -> dict[str, Any]:
    """The body asking for a final usage chunk, so the audit record gets token counts for every stream."""
    options = body.get("stream_options")
    if not isinstance(options, dict):
        options = {}
    return {**body, "stream_options": {**options, "include_usage": True}}


def take_usage(event: str, usage: Usage, forward_usage: bool) -> str | None:
    """Record usage from an SSE event; return the event to forward (without a usage the caller didn't ask for)."""
    if '"usage":{' not in event:
        return event
    obj = json.loads(event[5:].strip())
    usage.update(obj.get("usage"))
    if forward_usage:
        return event
    if not obj.get("choices"):
        return None  # the usage-only chunk
    obj["usage"] = None
    return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"


def take_response_usage(events: str, usage: Usage) -> None:
    """Record usage from a Responses API stream: its terminal event carries the Response, and its usage."""
    if '"usage":{' not in events:
        return
    for event in events.split("\n\n"):
        head, sep, data = event.partition("data: ")
        if sep and head.startswith("event: response.") and '"usage":{' in data:
            response = json.loads(data).get("response")
            if isinstance(response, dict):
                usage.update(response.get("usage"))


def error_envelope(message: str, type_: str, code: str | int | None, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}
