"""An OpenAI-compatible HTTP endpoint through the official ``openai`` SDK: OpenAI itself, or a UK-hosted one.

What is sent is exactly what the caller sent for the model, with only ``model`` replaced: no internal headers, no
caller identity, and none of the SDK's ``x-stainless-*`` headers (the SDK's version, the host's OS, architecture and
Python runtime, its retry count and read timeout: a fingerprint of the deployment the request does not need). The
SDK's own retries are off; retrying elsewhere is the router's decision.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncGenerator, Awaitable, Mapping
from typing import Any, Literal

import aiohttp
import httpx
import openai

from routing.levels import Level
from serving.backends.base import (
    RESPONSE_TERMINAL_EVENTS,
    BackendFailure,
    BackendRefusal,
    Endpoint,
    Opened,
    Usage,
    error_envelope,
    response_event,
    take_usage,
    wants_usage,
    with_usage,
)
from serving.backends.errors import sanitised_refusal
from serving.config import OpenAIBackendConfig
from serving.errors import BadRequest
from serving.http_edge import DONE_EVENT
from serving.thirdparty import openai_client_class

_RETRYABLE_STATUS = {408, 409, 429}
_UPSTREAM_ID = re.compile(r"[A-Za-z0-9_-]{1,256}")  # what may stand in a /responses/{id} path at the provider


def _timed_out(exc: openai.APIConnectionError) -> bool:
    """Whether a transport failure was a timeout. The SDK's aiohttp transport reports every aiohttp connection
    error (a refused connection, a server hanging up) as a connect *timeout*, so aiohttp's own error decides."""
    if not isinstance(exc, openai.APITimeoutError):
        return False
    cause = exc.__cause__
    while cause is not None:
        if isinstance(cause, aiohttp.ClientError):
            return isinstance(cause, aiohttp.ServerTimeoutError)
        cause = cause.__cause__
    return True


def _failure_from(exc: Exception) -> Exception:
    """Classify an SDK exception as fallback-eligible failure or a refusal to return to the caller."""
    if isinstance(exc, openai.APIConnectionError):  # includes APITimeoutError
        return BackendFailure("timeout" if _timed_out(exc) else "connect")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status >= 500 or status in _RETRYABLE_STATUS:
            retry_after = exc.response.headers.get("retry-after")
            try:
                seconds = float(retry_after) if retry_after else None
            except ValueError:
                seconds = None
            return BackendFailure(f"http_{status}", retry_after=seconds)
        body = exc.body if isinstance(exc.body, dict) else {}
        return sanitised_refusal(status, body.get("error", body) if isinstance(body, dict) else {})
    # Anything else (garbage instead of JSON/SSE, protocol errors) means this backend cannot serve now.
    return BackendFailure("bad_response")


class OpenAIBackend:
    def __init__(self, config: OpenAIBackendConfig) -> None:
        self.name = config.name
        self.sovereign = config.sovereign
        self.max_classification: Level = config.max_classification
        self.model = config.model
        self.embedding_model = config.embedding_model
        self.store_responses = config.store_responses
        timeout = openai.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        # The aiohttp transport opens its session on first use, inside the serving event loop.
        http_client = openai.DefaultAioHttpClient(timeout=timeout) if config.http_client == "aiohttp" else None
        self._client = openai_client_class()(
            base_url=config.base_url,
            api_key=config.api_key() or "missing",
            max_retries=0,
            timeout=timeout,
            default_headers={"User-Agent": "sovereign-inference"},
            http_client=http_client,
        )
        self._has_key = config.api_key() is not None

    def serves(self, endpoint: Endpoint) -> bool:
        """Chat, completions and responses; embeddings with an ``embedding_model``. Never score or rerank: the OpenAI
        API has neither, and a UK-hosted endpoint's would take documents the router cannot match to the API's
        schema."""
        if endpoint is Endpoint.EMBEDDINGS:
            return self.embedding_model is not None
        return endpoint in (Endpoint.CHAT, Endpoint.COMPLETIONS, Endpoint.RESPONSES)

    available = True  # an endpoint's failures show per request (BackendFailure), not ahead of it

    @property
    def overloaded(self) -> bool:
        return False  # its own 429s say so, per request

    @property
    def queue_depth(self) -> None:
        return None

    def validate(self, endpoint: Endpoint, body: dict[str, Any]) -> None:
        """Shape checks only: the endpoint validates the rest, and its 4xx comes back as a refusal."""
        if endpoint is Endpoint.CHAT and not _non_empty_list(body, "messages"):
            raise BadRequest("invalid request: messages: a non-empty list is required", param="messages")
        if endpoint is Endpoint.COMPLETIONS and not isinstance(body.get("prompt"), str | list):
            raise BadRequest("invalid request: prompt: a string or list is required", param="prompt")
        if endpoint is Endpoint.EMBEDDINGS and not isinstance(body.get("input"), str | list):
            raise BadRequest("invalid request: input: a string or list is required", param="input")
        if endpoint is Endpoint.RESPONSES and not (
            isinstance(body.get("input"), str) or _non_empty_list(body, "input")
        ):
            raise BadRequest("invalid request: input: a string or non-empty list is required", param="input")

    async def ready(self) -> bool:
        return self._has_key

    async def close(self) -> None:
        await self._client.close()

    async def open(
        self,
        endpoint: Endpoint,
        body: dict[str, Any],
        *,
        request_id: str,
        trace_headers: Mapping[str, str],
        parsed: Any = None,
    ) -> Opened:
        payload = dict(body)
        options: openai.RequestOptions = {"headers": dict(trace_headers)} if trace_headers else {}
        payload["model"] = self.embedding_model if endpoint is Endpoint.EMBEDDINGS else self.model
        if endpoint is Endpoint.RESPONSES and not self.store_responses:
            payload["store"] = False  # whatever the caller asked: nothing it sent stays at the provider
        stream = bool(payload.get("stream")) and endpoint is not Endpoint.EMBEDDINGS
        forward_usage = True
        if stream and self.sovereign and endpoint is not Endpoint.RESPONSES:
            # Inside the boundary we may ask for usage (for the audit record); a commercial request stays as sent.
            # A Responses stream has no such option: its terminal event always carries the usage.
            forward_usage, payload = wants_usage(payload), with_usage(payload)
        path = endpoint.path.removeprefix("/v1")
        if not stream:
            data = _json_body(
                await _sent(self._client.post(path, body=payload, cast_to=httpx.Response, options=options))
            )
            usage = Usage()
            usage.update(data.get("usage"))
            return Opened(body=data, usage=usage)
        response = await _sent(
            self._client.post(path, body=payload, cast_to=httpx.Response, stream=True, options=options)
        )
        usage = Usage()
        frames = _ResponseFrames(usage) if endpoint is Endpoint.RESPONSES else _ChatFrames(usage, forward_usage)
        return await self._open_stream(response, frames, usage)

    async def stored(
        self, action: Literal["retrieve", "delete", "cancel"], upstream_id: str, *, request_id: str
    ) -> Opened:
        """A response the provider holds (created with ``store_responses`` on): fetched, deleted or cancelled there.
        ``upstream_id`` is the provider's id; one that could be anything but an id never reaches a URL."""
        if not _UPSTREAM_ID.fullmatch(upstream_id):
            raise BackendRefusal(
                404, error_envelope("no response with this id", "invalid_request_error", "not_found", "response_id")
            )
        path = f"/responses/{upstream_id}"
        if action == "retrieve":
            request = self._client.get(path, cast_to=httpx.Response)
        elif action == "delete":
            request = self._client.delete(path, cast_to=httpx.Response)
        else:
            request = self._client.post(f"{path}/cancel", cast_to=httpx.Response)
        return Opened(body=_json_body(await _sent(request)))

    async def _open_stream(self, response: httpx.Response, frames: _Frames, usage: Usage) -> Opened:
        events = _sse_events(response, frames)
        try:
            first = await anext(events)
        except StopAsyncIteration:
            await response.aclose()
            raise BackendFailure("empty_stream") from None
        except BaseException:
            await response.aclose()
            raise

        async def chunks() -> AsyncGenerator[str, None]:
            try:
                yield first
                async for event in events:
                    yield event
            finally:
                await response.aclose()

        return Opened(chunks=chunks(), usage=usage)


async def _sent(request: Awaitable[httpx.Response]) -> httpx.Response:
    """The provider's answer to a request: its status was 2xx, else the SDK's error mapped by ``_failure_from``."""
    try:
        return await request
    except Exception as exc:
        raise _failure_from(exc) from None


def _json_body(raw: httpx.Response) -> dict[str, Any]:
    """A non-streamed answer's JSON object; anything else means this backend cannot serve now."""
    try:
        data = raw.json()
    except Exception:  # not JSON (ValueError, invalid UTF-8 included) or a body that could not be read
        raise BackendFailure("bad_response") from None
    if not isinstance(data, dict):
        raise BackendFailure("bad_response")
    return data


_LINES_AFTER_DONE = 4  # a well-behaved stream has at most a blank line after its last event
MAX_SSE_LINE_BYTES = 1 << 20  # far above any chunk of a completion; an upstream that never ends a line is cut off


class _Frames:
    """How one endpoint's upstream events are passed on: ``frame`` takes the text of one ``data:`` line and returns
    the event to forward (None: nothing), or raises ``BackendFailure``; ``done`` is set by the stream's last event."""

    done = False

    def frame(self, data: str) -> str | None:
        raise NotImplementedError


_DONE = DONE_EVENT.decode()  # the very event the edge sends last, with the end of the body


class _ChatFrames(_Frames):
    """Chat and completions: ``data: {chunk}`` events, then ``data: [DONE]``; an object with ``error`` is an upstream
    failure. Usage is recorded from the chunk that has it, which is forwarded only if the caller asked for it."""

    def __init__(self, usage: Usage, forward_usage: bool) -> None:
        self.usage = usage
        self.forward_usage = forward_usage

    def frame(self, data: str) -> str | None:
        if data == "[DONE]":
            self.done = True
            return _DONE
        if "error" in _json_object(data):
            raise BackendFailure("upstream_stream_error")
        return take_usage(f"data: {data}\n\n", self.usage, self.forward_usage)


_EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,128}")  # the API's event types (response.output_text.delta, ...)


class _ResponseFrames(_Frames):
    """The Responses API: typed events, each forwarded as ``event: <type>`` and its data; the stream ends with a
    terminal event (``RESPONSE_TERMINAL_EVENTS``: there is no ``[DONE]``), whose ``response.usage`` is recorded. An
    ``error`` event is an upstream failure. The type becomes the SSE event name, so it must be a plain event type (a
    line break there would let an upstream write events of its own)."""

    def __init__(self, usage: Usage) -> None:
        self.usage = usage

    def frame(self, data: str) -> str:
        obj = _json_object(data)
        kind = obj.get("type")
        if kind == "error":
            raise BackendFailure("upstream_stream_error")
        if not isinstance(kind, str) or not _EVENT_TYPE.fullmatch(kind):
            raise BackendFailure("bad_stream")
        if kind in RESPONSE_TERMINAL_EVENTS:
            self.done = True
            response = obj.get("response")
            self.usage.update(response.get("usage") if isinstance(response, dict) else None)
        return response_event(obj)


def _json_object(data: str) -> dict[str, Any]:
    obj = json.loads(data)  # a ValueError here is a bad stream (_event)
    if not isinstance(obj, dict):
        raise BackendFailure("bad_stream")
    return obj


async def _sse_events(response: httpx.Response, frames: _Frames) -> AsyncGenerator[str, None]:
    """Re-frame the upstream SSE stream as events to forward (``frames`` says how, per endpoint); refuse anything that
    is not SSE JSON.

    The events that one read of the body brings are passed on together, as one string: one write to the client
    instead of one per event (a socket write per event was the router's largest single cost per streamed
    request), and nothing is held back to wait for more. Lines end in LF, CRLF or CR, as SSE allows.

    Raises ``BackendFailure`` on garbage, on an upstream error event and on a stream that ends without its last
    event (``[DONE]``, or a Responses terminal event). After that the body is read on to its end (nothing more is
    forwarded), but only a few lines: a response closed before its last chunk cannot go back to the connection pool,
    so every request would pay for a new TCP connection; an upstream that keeps sending after its last event is cut
    off instead of holding the stream open.
    """
    if "text/event-stream" not in response.headers.get("content-type", ""):
        raise BackendFailure("bad_response")
    after_done = 0
    partial: list[bytes] = []  # the line still being received, in pieces (joined once: no quadratic copying)
    partial_size = 0
    try:
        async for data in response.aiter_bytes():
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # a CR LF split across reads: one blank line
            if b"\n" in data:
                lines = data.split(b"\n")
                if partial:
                    lines[0] = b"".join(partial) + lines[0]
                last = lines.pop()  # the next line's beginning ("" when the read ended with a line)
                partial, partial_size = ([last], len(last)) if last else ([], 0)
            else:
                lines = []
                partial.append(data)
                partial_size += len(data)
            if partial_size > MAX_SSE_LINE_BYTES:
                if frames.done:
                    break  # the answer is complete: stop reading, as for too many lines after the last event
                raise BackendFailure("bad_stream")
            events: list[str] = []
            for line in lines:
                if frames.done:
                    after_done += 1
                    continue
                event = _event(line, frames)
                if event:
                    events.append(event)
            if events:
                yield "".join(events)
            if after_done > _LINES_AFTER_DONE:
                break
        if partial and not frames.done:
            event = _event(b"".join(partial), frames)  # a last line without its line end
            if event:
                yield event
    except BackendFailure:
        raise
    except Exception:  # the SDK's transport (httpx2) raises its own types; any read failure is a broken stream
        if frames.done:  # the caller has the whole answer; only the connection's reuse is lost
            return
        raise BackendFailure("stream_broken") from None
    if not frames.done:
        raise BackendFailure("stream_truncated")


def _event(line: bytes, frames: _Frames) -> str | None:
    """The event to forward for one SSE line, None for a line that forwards nothing; raise ``BackendFailure`` for
    anything that is not SSE JSON or is an upstream error."""
    if not line or line.startswith(b":"):
        return None  # event separator or comment
    if not line.startswith(b"data:"):
        if line.startswith((b"event:", b"id:", b"retry:")):
            return None  # the data says what an event is (a Responses event's type is in its data too)
        raise BackendFailure("bad_stream")
    try:
        return frames.frame(line[5:].strip().decode())
    except ValueError:  # invalid UTF-8 or JSON
        raise BackendFailure("bad_stream") from None


def _non_empty_list(body: dict[str, Any], key: str) -> bool:
    value = body.get(key)
    return isinstance(value, list) and bool(value)
