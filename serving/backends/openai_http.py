"""An OpenAI-compatible HTTP endpoint through the official ``openai`` SDK: OpenAI itself, or a UK-hosted one.

What is sent is exactly what the caller sent for the model, with only ``model`` replaced: no internal headers, no
caller identity, and none of the SDK's ``x-stainless-*`` headers (the SDK's version, the host's OS, architecture and
Python runtime, its retry count and read timeout: a fingerprint of the deployment the request does not need). The
SDK's own retries are off; retrying elsewhere is the router's decision.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import aiohttp
import httpx
import openai

from routing.levels import Level
from serving.backends.base import (
    BackendFailure,
    Endpoint,
    Opened,
    Usage,
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
        """Chat and completions; embeddings with an ``embedding_model``. Never score or rerank: the OpenAI API has
        neither, and a UK-hosted endpoint's would take documents the router cannot match to the API's schema."""
        if endpoint is Endpoint.EMBEDDINGS:
            return self.embedding_model is not None
        return endpoint in (Endpoint.CHAT, Endpoint.COMPLETIONS)

    available = True  # an endpoint's failures show per request (BackendFailure), not ahead of it

    @property
    def overloaded(self) -> bool:
        return False  # its own 429s say so, per request

    @property
    def queue_depth(self) -> None:
        return None

    def validate(self, endpoint: Endpoint, body: dict[str, Any]) -> None:
        """Shape checks only: the endpoint validates the rest, and its 4xx comes back as a refusal."""
        if endpoint is Endpoint.CHAT and not (isinstance(body.get("messages"), list) and body["messages"]):
            raise BadRequest("invalid request: messages: a non-empty list is required", param="messages")
        if endpoint is Endpoint.COMPLETIONS and not isinstance(body.get("prompt"), str | list):
            raise BadRequest("invalid request: prompt: a string or list is required", param="prompt")
        if endpoint is Endpoint.EMBEDDINGS and not isinstance(body.get("input"), str | list):
            raise BadRequest("invalid request: input: a string or list is required", param="input")

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
        stream = bool(payload.get("stream")) and endpoint is not Endpoint.EMBEDDINGS
        forward_usage = True
        if stream and self.sovereign:
            # Inside the boundary we may ask for usage (for the audit record); a commercial request stays as sent.
            forward_usage, payload = wants_usage(payload), with_usage(payload)
        try:
            if not stream:
                raw = await self._client.post(
                    endpoint.path.removeprefix("/v1"), body=payload, cast_to=httpx.Response, options=options
                )
                data = raw.json()
                if not isinstance(data, dict):
                    raise BackendFailure("bad_response")
                usage = Usage()
                usage.update(data.get("usage"))
                return Opened(body=data, usage=usage)
            response = await self._client.post(
                endpoint.path.removeprefix("/v1"), body=payload, cast_to=httpx.Response, stream=True, options=options
            )
        except BackendFailure:
            raise
        except ValueError:
            raise BackendFailure("bad_response") from None
        except Exception as exc:
            raise _failure_from(exc) from None
        return await self._open_stream(response, forward_usage)

    async def _open_stream(self, response: httpx.Response, forward_usage: bool) -> Opened:
        usage = Usage()
        events = _sse_events(response, usage, forward_usage)
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


_LINES_AFTER_DONE = 4  # a well-behaved stream has at most a blank line after [DONE]
MAX_SSE_LINE_BYTES = 1 << 20  # far above any chunk of a completion; an upstream that never ends a line is cut off


async def _sse_events(response: httpx.Response, usage: Usage, forward_usage: bool) -> AsyncGenerator[str, None]:
    """Re-frame the upstream SSE stream as ``data: ...\\n\\n`` events; refuse anything that is not SSE JSON.

    The events that one read of the body brings are passed on together, as one string: one write to the client
    instead of one per event (a socket write per event was the router's largest single cost per streamed
    request), and nothing is held back to wait for more. Lines end in LF, CRLF or CR, as SSE allows.

    Raises ``BackendFailure`` on garbage, on an upstream error event and on a stream that ends without ``[DONE]``.
    After ``[DONE]`` the body is read on to its end (nothing more is forwarded), but only a few lines: a response
    closed before its last chunk cannot go back to the connection pool, so every request would pay for a new TCP
    connection; an upstream that keeps sending after ``[DONE]`` is cut off instead of holding the stream open.
    """
    if "text/event-stream" not in response.headers.get("content-type", ""):
        raise BackendFailure("bad_response")
    done, after_done = False, 0
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
                if done:
                    break  # the answer is complete: stop reading, as for too many lines after [DONE]
                raise BackendFailure("bad_stream")
            events: list[str] = []
            for line in lines:
                if done:
                    after_done += 1
                    continue
                event = _event(line, usage, forward_usage)
                if event is _DONE:
                    done = True
                if event:
                    events.append(event)
            if events:
                yield "".join(events)
            if after_done > _LINES_AFTER_DONE:
                break
        if partial and not done:
            event = _event(b"".join(partial), usage, forward_usage)  # a last line without its line end
            done = event is _DONE
            if event:
                yield event
    except BackendFailure:
        raise
    except Exception:  # the SDK's transport (httpx2) raises its own types; any read failure is a broken stream
        if done:  # the caller has the whole answer; only the connection's reuse is lost
            return
        raise BackendFailure("stream_broken") from None
    if not done:
        raise BackendFailure("stream_truncated")


_DONE = DONE_EVENT.decode()  # the very event the edge sends last, with the end of the body


def _event(line: bytes, usage: Usage, forward_usage: bool) -> str | None:
    """The event to forward for one SSE line (``_DONE`` for the end), None for a line that forwards nothing;
    raise ``BackendFailure`` for anything that is not SSE JSON or is an upstream error."""
    if not line or line.startswith(b":"):
        return None  # event separator or comment
    if not line.startswith(b"data:"):
        if line.startswith((b"event:", b"id:", b"retry:")):
            return None
        raise BackendFailure("bad_stream")
    try:
        data = line[5:].strip().decode()
        if data == "[DONE]":
            return _DONE
        obj = json.loads(data)
    except ValueError:  # includes invalid UTF-8
        raise BackendFailure("bad_stream") from None
    if not isinstance(obj, dict) or "error" in obj:
        raise BackendFailure("upstream_stream_error")
    return take_usage(f"data: {data}\n\n", usage, forward_usage)
