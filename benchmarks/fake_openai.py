"""A real HTTP fake of the OpenAI API on loopback, with fault injection.

Why it exists: the router's tests need a commercial endpoint that records everything it receives (to prove
sensitive data never reaches it), ``bench overhead`` needs a fast upstream with no model, and the load
generator needs a no-op server to show it is not the bottleneck. It speaks the OpenAI wire format closely
enough for the official ``openai`` SDK to parse every answer, streamed or not.

Faults (``POST /_fake/fault`` or :meth:`FakeOpenAIServer.set_fault`) apply to every following ``/v1`` request
until changed:

- ``ok``: normal answers.
- ``slow``: sleep ``delay_s`` before the first byte, then answer normally; streams also wait ``chunk_delay_s``
  before each chunk after the first (a model that generates slowly).
- ``status``: answer ``status`` (e.g. 500, 503, 400, 429) with an OpenAI error envelope, plus a
  ``retry-after`` header when ``retry_after`` is given.
- ``broken_stream``: streams send a few chunks, then the connection is dropped without ``[DONE]``;
  non-streamed requests get a 200 status line and part of a body, then the connection is dropped.
- ``garbage``: 200 with bytes that do not parse (``text/event-stream`` of non-SSE lines and invalid JSON for
  streams, invalid JSON with ``application/json`` otherwise).
- ``hang``: never respond.

The Responses API (``POST /v1/responses``, plain or streamed as its typed events) answers as chat does, with
``max_output_tokens`` for ``max_tokens``: a response so limited ends ``incomplete`` (its stream with
``response.incomplete``), like chat's ``length``. A response whose request did not say ``store: false`` is kept for
``GET`` and ``DELETE /v1/responses/{id}``; one created with ``background: true`` (not streamed) stays ``queued``
until ``POST /v1/responses/{id}/cancel``, which refuses any other response, as OpenAI does.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import logging
import socket
import struct
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FaultMode = Literal["ok", "slow", "status", "broken_stream", "garbage", "hang"]
FAULT_MODES: tuple[str, ...] = ("ok", "slow", "status", "broken_stream", "garbage", "hang")
DEFAULT_TOKENS = 8
EMBEDDING_DIM = 8
BROKEN_STREAM_CHUNKS = 2


class InjectedStreamAbort(Exception):
    """Raised inside a response body to make the server drop the connection (the ``broken_stream`` fault)."""


class _DropInjectedAborts(logging.Filter):
    """Keep uvicorn from logging a traceback for every deliberately broken stream."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        while exc is not None:
            if isinstance(exc, InjectedStreamAbort):
                return False
            exc = exc.__cause__ or exc.__context__ or _first_of_group(exc)
        return True


def _first_of_group(exc: BaseException) -> BaseException | None:
    inner = getattr(exc, "exceptions", None)
    return inner[0] if inner else None


logging.getLogger("uvicorn.error").addFilter(_DropInjectedAborts())


@dataclass(frozen=True)
class Fault:
    """What the fake does to ``/v1`` requests; replaced whole, so readers never see half a change."""

    mode: FaultMode = "ok"
    delay_s: float = 0.0
    chunk_delay_s: float = 0.0
    status: int = 500
    retry_after: float | int | None = None

    @classmethod
    def parse(cls, data: dict[str, Any]) -> Fault:
        mode = data.get("mode", "ok")
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; expected one of {', '.join(FAULT_MODES)}")
        status = int(data.get("status") or 500)
        if not 100 <= status <= 599:
            raise ValueError("status must be an HTTP status code")
        retry_after = data.get("retry_after")
        return cls(
            mode=mode,
            delay_s=float(data.get("delay_s") or 0.0),
            chunk_delay_s=float(data.get("chunk_delay_s") or 0.0),
            status=status,
            retry_after=retry_after if retry_after is None else float(retry_after),
        )


@dataclass
class FakeState:
    """What the fake has received and which fault it applies. Shared between the server and test threads."""

    model: str = "fake"
    record: bool = True
    fault: Fault = field(default_factory=Fault)
    closing: bool = False
    _received: list[dict[str, Any]] = field(default_factory=list)
    _responses: dict[str, dict[str, Any]] = field(default_factory=dict)  # the stored Responses API objects, by id
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, entry: dict[str, Any]) -> None:
        if self.record:
            with self._lock:
                self._received.append(entry)

    def received(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._received)

    def remember(self, response: dict[str, Any]) -> None:
        with self._lock:
            self._responses[response["id"]] = response

    def stored(self, response_id: str) -> dict[str, Any] | None:
        with self._lock:
            return self._responses.get(response_id)

    def forget(self, response_id: str) -> bool:
        with self._lock:
            return self._responses.pop(response_id, None) is not None

    def reset(self) -> None:
        with self._lock:
            self._received.clear()
            self._responses.clear()
        self.fault = Fault()


# ---------------------------------------------------------------------------------------------------------
# Deterministic content: pure functions of the request body.


def completion_tokens(body: dict[str, Any]) -> int:
    """``max_tokens`` (or ``max_completion_tokens``, or the Responses API's ``max_output_tokens``) when given, else
    :data:`DEFAULT_TOKENS`."""
    value = body.get("max_output_tokens") or body.get("max_completion_tokens") or body.get("max_tokens")
    try:
        return max(0, int(value)) if value is not None else DEFAULT_TOKENS
    except (TypeError, ValueError):
        return DEFAULT_TOKENS


def token_texts(n: int) -> list[str]:
    """The pieces a stream sends; joined they read ``fake0 fake1 ...``."""
    return [f"fake{i}" if i == 0 else f" fake{i}" for i in range(n)]


def _count_words(value: Any) -> int:
    if isinstance(value, str):
        return len(value.split())
    if isinstance(value, list):
        return sum(_count_words(item) for item in value)
    if isinstance(value, dict):
        return sum(_count_words(item) for item in value.values())
    return 0


def prompt_tokens(body: dict[str, Any]) -> int:
    """Whitespace words in the prompt or messages (at least 1): deterministic, and good enough for a fake."""
    if isinstance(body.get("messages"), list):
        return max(1, sum(_count_words(_message_text(m)) for m in body["messages"]))
    source = body.get("prompt", "")
    if isinstance(source, list) and source and all(isinstance(t, int) for t in source):
        return len(source)
    return max(1, _count_words(source))


def response_input_tokens(body: dict[str, Any]) -> int:
    """Whitespace words in a Responses request's ``instructions`` and ``input`` (a string, or items: messages and
    tool outputs), at least 1."""
    source = body.get("input")
    items = [source] if isinstance(source, str) else source if isinstance(source, list) else []
    words = _count_words(body.get("instructions"))
    for item in items:
        if isinstance(item, dict):
            words += _count_words(_message_text(item)) + _count_words(item.get("output"))
        else:
            words += _count_words(item)
    return max(1, words)


def _message_text(message: Any) -> list[str]:
    """The text a message carries: string content, or the ``text`` of content parts."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)]
    return []


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _finish_reason(body: dict[str, Any]) -> str:
    limited = body.get("max_tokens") is not None or body.get("max_completion_tokens") is not None
    return "length" if limited else "stop"


def _request_id(prefix: str) -> str:
    return f"{prefix}-fake{time.monotonic_ns():x}"


def embedding_vector(item: Any) -> list[float]:
    """A fixed-size unit vector derived from the input's SHA-256: same input, same vector."""
    digest = hashlib.sha256(json.dumps(item, sort_keys=True).encode()).digest()
    raw = [(b - 127.5) / 127.5 for b in digest[:EMBEDDING_DIM]]
    norm = sum(x * x for x in raw) ** 0.5 or 1.0
    return [x / norm for x in raw]


def _embedding_inputs(value: Any) -> list[Any]:
    """A string, a token list, or a list of either; one embedding per item."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(t, int) for t in value):
        return [value]
    if isinstance(value, list):
        return list(value)
    raise ValueError("input must be a string, a list of strings, or token ids")


def _encode(vector: list[float], encoding_format: str | None) -> list[float] | str:
    if encoding_format == "base64":
        return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
    return vector


# ---------------------------------------------------------------------------------------------------------
# Responses.


def _error(
    status: int, message: str, err_type: str, code: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    envelope = {"error": {"message": message, "type": err_type, "param": None, "code": code}}
    return JSONResponse(envelope, status_code=status, headers=headers)


def _sse(obj: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chat_chunks(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
    rid, created = _request_id("chatcmpl"), int(time.time())
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    n = completion_tokens(body)

    def chunk(delta: dict[str, Any], finish: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        return out

    chunks = [chunk({"role": "assistant", "content": ""}, None)]
    chunks += [chunk({"content": text}, None) for text in token_texts(n)]
    chunks.append(chunk({}, _finish_reason(body)))
    if include_usage:
        chunks.append(
            {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(prompt_tokens(body), n),
            }
        )
    return chunks


def _completion_chunks(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
    rid, created = _request_id("cmpl"), int(time.time())
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    n = completion_tokens(body)
    texts = token_texts(n)

    def chunk(text: str, finish: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}],
        }
        if include_usage:
            out["usage"] = None
        return out

    chunks = [chunk(text, None) for text in texts]
    chunks.append(chunk("", _finish_reason(body)))
    if include_usage:
        chunks.append(
            {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": [],
                "usage": _usage(prompt_tokens(body), n),
            }
        )
    return chunks


def _chat_response(body: dict[str, Any], model: str) -> dict[str, Any]:
    n = completion_tokens(body)
    return {
        "id": _request_id("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "".join(token_texts(n))},
                "logprobs": None,
                "finish_reason": _finish_reason(body),
            }
        ],
        "usage": _usage(prompt_tokens(body), n),
    }


def _completion_response(body: dict[str, Any], model: str) -> dict[str, Any]:
    n = completion_tokens(body)
    return {
        "id": _request_id("cmpl"),
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": "".join(token_texts(n)),
                "logprobs": None,
                "finish_reason": _finish_reason(body),
            }
        ],
        "usage": _usage(prompt_tokens(body), n),
    }


def _embeddings_response(body: dict[str, Any], model: str) -> dict[str, Any]:
    items = _embedding_inputs(body.get("input"))
    fmt = body.get("encoding_format")
    data = [
        {"object": "embedding", "index": i, "embedding": _encode(embedding_vector(item), fmt)}
        for i, item in enumerate(items)
    ]
    tokens = sum(max(1, _count_words(item)) if isinstance(item, str) else len(item) for item in items)
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _response_object(body: dict[str, Any], model: str) -> dict[str, Any]:
    """The finished Response object for a Responses API request (``queued``, with no output yet, for a
    ``background`` one that is not streamed)."""
    n, prompt = completion_tokens(body), response_input_tokens(body)
    limited = body.get("max_output_tokens") is not None
    status = "incomplete" if limited else "completed"
    text = {"type": "output_text", "text": "".join(token_texts(n)), "annotations": [], "logprobs": []}
    message = {"id": f"msg_{uuid.uuid4().hex}", "type": "message", "status": status, "role": "assistant"}
    response = {
        "id": f"resp_{uuid.uuid4().hex}",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": bool(body.get("background")),
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if limited else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "metadata": body.get("metadata") or {},
        "model": model,
        "output": [{**message, "content": [text]}],
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store") is not False,
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "usage": {
            "input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": n,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": prompt + n,
        },
        "user": body.get("user"),
    }
    if response["background"] and not body.get("stream"):
        response.update(status="queued", incomplete_details=None, output=[], usage=None)
    return response


def _response_events(response: dict[str, Any]) -> list[dict[str, Any]]:
    """The Responses API's stream for a finished response: its start, the message's text in deltas, its end."""
    message = response["output"][0]
    part, texts = message["content"][0], token_texts(response["usage"]["output_tokens"])
    started = {**response, "status": "in_progress", "incomplete_details": None, "output": [], "usage": None}
    where = {"item_id": message["id"], "output_index": 0, "content_index": 0}
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**message, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": {**part, "text": ""}},
        *({"type": "response.output_text.delta", **where, "delta": text, "logprobs": []} for text in texts),
        {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0, "item": message},
        {"type": f"response.{response['status']}", "response": response},
    ]
    return [{**event, "sequence_number": i} for i, event in enumerate(events)]


def _response_sse(obj: dict[str, Any]) -> bytes:
    """A Responses API event: its type as the SSE event name."""
    return f"event: {obj['type']}\n".encode() + _sse(obj)


async def _stream(
    chunks: list[dict[str, Any]],
    broken: bool,
    chunk_delay_s: float = 0.0,
    frame: Callable[[dict[str, Any]], bytes] = _sse,
    end: bytes = b"data: [DONE]\n\n",
) -> AsyncIterator[bytes]:
    for i, chunk in enumerate(chunks):
        if broken and i >= BROKEN_STREAM_CHUNKS:
            raise InjectedStreamAbort("fake: broken_stream fault")
        if chunk_delay_s and i:
            await asyncio.sleep(chunk_delay_s)
        yield frame(chunk)
    if end:
        yield end


async def _broken_json() -> AsyncIterator[bytes]:
    yield b'{"id": "chatcmpl-broken", "object": '
    raise InjectedStreamAbort("fake: broken_stream fault on a non-streamed request")


async def _garbage_stream() -> AsyncIterator[bytes]:
    yield b"this is not server-sent events\n"
    yield b"data: {not json\n\n"
    yield b"\x00\xff garbage \xfe\n\n"


# ---------------------------------------------------------------------------------------------------------
# The app.


def create_app(state: FakeState | None = None) -> Starlette:
    """The ASGI app; ``app.state.fake`` is the :class:`FakeState` it uses."""
    state = state or FakeState()

    async def record(request: Request) -> tuple[dict[str, Any], Response | None]:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        state.add(
            {
                "method": request.method,
                "path": request.url.path,
                "headers": {k.lower(): v for k, v in request.headers.items()},
                "body": body,
            }
        )
        if raw and not isinstance(body, dict):
            return {}, _error(400, "request body must be a JSON object", "invalid_request_error")
        return body or {}, None

    async def apply_fault(stream: bool) -> Response | None:
        """Answer for the current fault before any normal work, or None to answer normally."""
        fault = state.fault
        if fault.mode == "hang":
            while not state.closing:  # until the server stops, then drop the connection quietly
                await asyncio.sleep(0.05)
            raise InjectedStreamAbort("fake: hang fault released by shutdown")
        if fault.mode == "slow" and fault.delay_s > 0:
            await asyncio.sleep(fault.delay_s)
        if fault.mode == "status":
            headers = {"retry-after": _fmt_seconds(fault.retry_after)} if fault.retry_after is not None else None
            err_type = "invalid_request_error" if fault.status < 500 else "server_error"
            return _error(fault.status, f"fake: injected status {fault.status}", err_type, "fake_fault", headers)
        if fault.mode == "garbage":
            if stream:
                return StreamingResponse(_garbage_stream(), media_type="text/event-stream")
            return Response(b'{"id": "broken", not json', media_type="application/json")
        if fault.mode == "broken_stream" and not stream:
            return StreamingResponse(_broken_json(), media_type="application/json")
        return None

    async def accepted(request: Request, stream: bool | None = None) -> tuple[dict[str, Any], Response | None]:
        """The request's body, recorded, and the answer to give instead of the normal one (a bad body, a fault);
        ``stream``: whether it is answered as a stream (None: as its body says)."""
        body, bad = await record(request)
        if bad is None:
            bad = await apply_fault(bool(body.get("stream")) if stream is None else stream)
        return body, bad

    def generation(build_stream, build_response, frame=_sse, end=b"data: [DONE]\n\n"):
        async def endpoint(request: Request) -> Response:
            body, bad = await accepted(request)
            if bad is not None:
                return bad
            stream = bool(body.get("stream"))
            model = str(body.get("model") or state.model)
            if stream:
                fault = state.fault
                delay = fault.chunk_delay_s if fault.mode == "slow" else 0.0
                return StreamingResponse(
                    _stream(build_stream(body, model), fault.mode == "broken_stream", delay, frame, end),
                    media_type="text/event-stream",
                )
            return JSONResponse(build_response(body, model))

        return endpoint

    async def embeddings(request: Request) -> Response:
        body, bad = await accepted(request, stream=False)
        if bad is not None:
            return bad
        try:
            return JSONResponse(_embeddings_response(body, str(body.get("model") or state.model)))
        except ValueError as exc:
            return _error(400, str(exc), "invalid_request_error")

    def created_response(body: dict[str, Any], model: str) -> dict[str, Any]:
        response = _response_object(body, model)
        if response["store"]:
            state.remember(response)
        return response

    def created_response_events(body: dict[str, Any], model: str) -> list[dict[str, Any]]:
        return _response_events(created_response({**body, "background": False}, model))

    async def stored_response(request: Request) -> Response:
        """GET, DELETE and the cancellation of a stored response."""
        _, bad = await accepted(request, stream=False)
        if bad is not None:
            return bad
        response_id = request.path_params["response_id"]
        response = state.stored(response_id)
        if response is None:
            return _error(404, f"Response with id '{response_id}' not found.", "invalid_request_error")
        if request.method == "DELETE":
            state.forget(response_id)
            return JSONResponse({"id": response_id, "object": "response.deleted", "deleted": True})
        if request.method == "POST":
            if response["status"] not in ("queued", "in_progress"):
                return _error(
                    400, "Only responses created with background=true can be cancelled", "invalid_request_error"
                )
            response = {**response, "status": "cancelled"}
            state.remember(response)
        return JSONResponse(response)

    async def models(request: Request) -> Response:
        await record(request)
        faulted = await apply_fault(False)
        if faulted is not None:
            return faulted
        entry = {"id": state.model, "object": "model", "created": 0, "owned_by": "fake"}
        return JSONResponse({"object": "list", "data": [entry]})

    async def set_fault(request: Request) -> Response:
        try:
            state.fault = Fault.parse(await request.json())
        except (ValueError, TypeError) as exc:
            return _error(400, str(exc), "invalid_request_error")
        return JSONResponse({"fault": state.fault.__dict__})

    async def received(request: Request) -> Response:
        return JSONResponse(state.received())

    async def reset(request: Request) -> Response:
        state.reset()
        return JSONResponse({"reset": True})

    routes = [
        Route("/v1/chat/completions", generation(_chat_chunks, _chat_response), methods=["POST"]),
        Route("/v1/completions", generation(_completion_chunks, _completion_response), methods=["POST"]),
        Route(
            "/v1/responses", generation(created_response_events, created_response, _response_sse, b""), methods=["POST"]
        ),
        Route("/v1/responses/{response_id}", stored_response, methods=["GET", "DELETE"]),
        Route("/v1/responses/{response_id}/cancel", stored_response, methods=["POST"]),
        Route("/v1/embeddings", embeddings, methods=["POST"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/_fake/fault", set_fault, methods=["POST"]),
        Route("/_fake/received", received, methods=["GET"]),
        Route("/_fake/reset", reset, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.fake = state
    return app


def _fmt_seconds(value: float | int) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


# ---------------------------------------------------------------------------------------------------------
# Running it.


class FakeOpenAIServer:
    """The fake on ``127.0.0.1`` and a free port, served by uvicorn in a daemon thread. A context manager."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, model: str = "fake", record: bool = True) -> None:
        self.state = FakeState(model=model, record=record)
        self._host = host
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(2048)
        self.port: int = self._sock.getsockname()[1]
        config = uvicorn.Config(
            create_app(self.state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=1,
            timeout_keep_alive=30,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    @property
    def url(self) -> str:
        """The root URL (for the ``/_fake`` control endpoints)."""
        return f"http://{self._host}:{self.port}"

    @property
    def received(self) -> list[dict[str, Any]]:
        """A snapshot of every ``/v1`` request received: method, path, headers (lower-case), parsed body."""
        return self.state.received()

    def set_fault(self, mode: FaultMode, **kw: Any) -> None:
        self.state.fault = Fault.parse({"mode": mode, **kw})

    def reset(self) -> None:
        """Forget what was received and go back to ``ok``."""
        self.state.reset()

    def start(self, timeout_s: float = 10.0) -> FakeOpenAIServer:
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name="fake-openai", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake OpenAI server did not start")
            time.sleep(0.01)
        with socket.create_connection((self._host, self.port), timeout=timeout_s):
            pass
        return self

    def stop(self) -> None:
        if self._thread is None:
            self._sock.close()
            return
        self.state.closing = True
        self._server.should_exit = True
        self._thread.join(timeout=5)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout=5)
        self._thread = None
        self._sock.close()

    def __enter__(self) -> FakeOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fake_openai", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--model", default="fake")
    parser.add_argument("--no-record", action="store_true", help="keep nothing (long benchmark runs)")
    args = parser.parse_args(argv)
    app = create_app(FakeState(model=args.model, record=not args.no_record))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False, lifespan="off")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
