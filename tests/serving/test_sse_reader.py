"""The upstream SSE reader after ``[DONE]``: it reads on a little (so the connection can be pooled), never
forwards what follows, never lets an upstream hold the stream open, and a failure there is not a failure."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx

from serving.backends.base import Usage
from serving.backends.openai_http import _sse_events

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'


def _events(body: AsyncIterator[bytes]) -> list[str]:
    async def collect() -> list[str]:
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return [event async for event in _sse_events(response, Usage(), forward_usage=True)]

    return asyncio.run(collect())


def test_an_upstream_that_keeps_sending_after_done_is_cut_off() -> None:
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        yield CHUNK + b"data: [DONE]\n\n"
        while sent < 10_000:  # an upstream that never ends its response
            sent += 1
            yield CHUNK

    events = _events(body())
    assert events[-1] == "data: [DONE]\n\n" and len(events) == 2
    assert sent < 10


def test_a_read_failure_after_done_is_not_a_broken_stream() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield CHUNK + b"data: [DONE]\n\n"
        raise httpx.ReadError("connection reset after the answer")

    assert _events(body())[-1] == "data: [DONE]\n\n"
