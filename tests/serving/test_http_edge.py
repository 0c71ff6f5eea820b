"""The serving edge: an event stream's ``[DONE]`` travels with the end of its body (so a client that stops at
``[DONE]`` keeps its connection), and uvicorn lets go of a connection closed by a reset (HAProxy's way)."""

from __future__ import annotations

import asyncio
import gc
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI
from starlette.types import Message
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from serving.http_edge import DONE_EVENT, EventStreamResponse
from serving.thirdparty import release_reset_connections

TOKEN = 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
DONE = DONE_EVENT.decode()


def _messages(*chunks: str) -> list[dict[str, Any]]:
    async def body() -> AsyncIterator[str]:
        for chunk in chunks:
            yield chunk

    sent: list[dict[str, Any]] = []

    async def send(message: Message) -> None:
        sent.append(dict(message))

    asyncio.run(EventStreamResponse(body(), media_type="text/event-stream").stream_response(send))
    return [{k: v for k, v in m.items() if k in ("body", "more_body")} for m in sent[1:]]


def test_done_goes_out_with_the_end_of_the_body_and_nothing_before_it_waits() -> None:
    assert _messages(TOKEN, TOKEN + DONE) == [
        {"body": TOKEN.encode(), "more_body": True},
        {"body": TOKEN.encode(), "more_body": True},  # the last tokens at once, without [DONE]
        {"body": DONE_EVENT, "more_body": False},
    ]
    assert _messages(DONE) == [{"body": DONE_EVENT, "more_body": False}]


def test_a_stream_without_done_ends_as_before_and_order_is_kept_after_done() -> None:
    error = 'data: {"error": {"code": "stream_interrupted"}}\n\n'
    assert _messages(TOKEN, error) == [
        {"body": TOKEN.encode(), "more_body": True},
        {"body": error.encode(), "more_body": True},
        {"body": b"", "more_body": False},
    ]
    assert _messages(DONE, TOKEN) == [  # never expected; if it happens, the order stays
        {"body": DONE_EVENT, "more_body": True},
        {"body": TOKEN.encode(), "more_body": True},
        {"body": b"", "more_body": False},
    ]


@contextmanager
def _server(app: FastAPI) -> Iterator[tuple[int, uvicorn.Server]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    # httptools and a long keep-alive, as in a Ray Serve replica (90 s there).
    server = uvicorn.Server(
        uvicorn.Config(app, http="httptools", timeout_keep_alive=90, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1], server
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _stream_app() -> FastAPI:
    app = FastAPI()

    @app.get("/stream")
    async def stream() -> EventStreamResponse:
        async def events() -> AsyncIterator[str]:
            yield TOKEN
            await asyncio.sleep(0.01)
            yield TOKEN + DONE

        return EventStreamResponse(events(), media_type="text/event-stream")

    return app


def _request(conn: socket.socket) -> bytes:
    """Send one request and read until ``[DONE]`` has arrived, as a client that stops there does."""
    conn.sendall(b"GET /stream HTTP/1.1\r\nhost: test\r\n\r\n")
    received = b""
    while DONE_EVENT not in received:
        data = conn.recv(65536)
        assert data, received
        received += data
    return received


def test_a_stream_is_closed_however_the_response_ends_even_before_its_first_chunk() -> None:
    """A client gone as the response starts (the start cannot be sent): the body's stream is still closed, so the
    router cancels the generation and records the request (serving/backends/base.py: GuardedStream)."""

    class Stream:
        closed, read = False, 0

        def __aiter__(self) -> Stream:
            return self

        async def __anext__(self) -> str:
            self.read += 1
            return "data: {}\n\n"

        async def aclose(self) -> None:
            self.closed = True

    async def gone(message: Message) -> None:
        raise OSError("the client has gone")

    stream = Stream()
    with pytest.raises(OSError):
        asyncio.run(EventStreamResponse(stream, media_type="text/event-stream").stream_response(gone))
    assert stream.closed and stream.read == 0


def test_a_client_that_stops_at_done_has_the_whole_response_and_keeps_its_connection() -> None:
    with _server(_stream_app()) as (port, _), socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        for _ in range(3):  # the same connection serves again: nothing of the last response was left unread
            received = _request(conn)
            assert received.startswith(b"HTTP/1.1 200")
            assert received.endswith(DONE_EVENT + b"\r\n0\r\n\r\n")  # [DONE], then the body's end, one write


def _protocols() -> int:
    gc.collect()
    return sum(type(o) is HttpToolsProtocol for o in gc.get_objects())  # type(): no attribute lookups on torch


def test_uvicorn_releases_a_connection_closed_by_a_reset() -> None:
    release_reset_connections()
    release_reset_connections()  # idempotent
    with _server(_stream_app()) as (port, server):
        before = _protocols()
        for _ in range(20):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
                _request(conn)
                time.sleep(0.02)  # the response has completed: the keep-alive timer is armed
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close = reset
        deadline = time.monotonic() + 5
        while server.server_state.connections and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not server.server_state.connections
        assert _protocols() <= before  # nothing held for the 90 s keep-alive


@pytest.mark.parametrize("module", ["httptools_impl", "h11_impl"])
def test_the_fix_wraps_the_protocols_uvicorn_has(module: str) -> None:
    import importlib

    release_reset_connections()
    protocol = importlib.import_module(f"uvicorn.protocols.http.{module}")
    cls = protocol.HttpToolsProtocol if module == "httptools_impl" else protocol.H11Protocol
    assert getattr(cls.connection_lost, "_releases_on_reset", False)
    assert hasattr(cls, "_unset_keepalive_if_required")  # what the fix calls: still there in this uvicorn


# -- request ids and the headers that steer Ray Serve ---------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "3fa85f64-5717-4562-b3fc-2c963f66afa6",
        "3FA85F64-5717-4562-B3FC-2C963F66AFA6",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "deadbeefcafe0123",
        "0123456789abcdef",
    ],
)
def test_uuids_and_hex_tokens_are_kept(value: str) -> None:
    from serving.http_edge import safe_request_id

    assert safe_request_id(value) == value


@pytest.mark.parametrize(
    "value",
    [
        "",
        "jo.bloggs@example.com",
        "9434765919",
        "4111111111111111",
        "1234567890123456789012",
        "943-476-5919",
        "Jo Bloggs",
        "abc",
        "deadbeef",
        "a" * 65,
        "3fa85f64-5717-4562-b3fc-2c963f66afa6 ",
        "req_1234",
    ],
)
def test_anything_else_is_not_kept(value: str) -> None:
    from serving.http_edge import safe_request_id

    assert safe_request_id(value) is None


def _through_guard(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    from serving.http_edge import RequestIdGuard

    seen: list[list[tuple[bytes, bytes]]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["headers"])

    async def receive() -> Message:
        raise AssertionError("the guard reads no body")

    async def send(message: Message) -> None:
        raise AssertionError("the guard sends nothing")

    asyncio.run(RequestIdGuard(app)({"type": "http", "headers": headers}, receive, send))
    return seen[0]


def test_guard_drops_unsafe_ids_and_ray_control_headers_only() -> None:
    keep = [(b"host", b"x"), (b"authorization", b"Bearer k")]
    unsafe = [
        (b"x-request-id", b"jo.bloggs@example.com"),
        (b"X-Request-Timeout-Seconds", b"0"),
        (b"x-request-disconnect-disabled", b"?1"),
        (b"serve_multiplexed_model_id", b"m"),
        (b"x-session-id", b"Jo Bloggs"),
    ]
    assert _through_guard(keep + unsafe) == keep
    safe = [*keep, (b"x-request-id", b"4bf92f3577b34da6a3ce929d0e0e4736")]
    assert _through_guard(safe) is not None and _through_guard(safe) == safe
    twice = [*keep, (b"x-request-id", b"4bf92f3577b34da6a3ce929d0e0e4736"), (b"x-request-id", b"deadbeefcafe0123")]
    assert _through_guard(twice) == keep  # which one would Serve take? Neither: it generates one


def test_guard_is_what_the_ray_callback_installs() -> None:
    from serving.http_edge import RAY_HTTP_CALLBACK, RequestIdGuard, serve_http_middlewares

    module, name = RAY_HTTP_CALLBACK.split(":")
    assert module == "serving.http_edge" and name == serve_http_middlewares.__name__
    (middleware,) = serve_http_middlewares()
    assert middleware.cls is RequestIdGuard
