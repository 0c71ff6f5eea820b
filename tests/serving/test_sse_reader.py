"""The upstream SSE reader: events re-framed and passed on as they arrive (those of one read together), lines
split across reads put back together, any SSE line ending; after ``[DONE]`` it reads on a little (so the
connection can be pooled), never forwards what follows, never lets an upstream hold the stream open, and a
failure there is not a failure."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from serving.backends.base import BackendFailure, Usage
from serving.backends.openai_http import _ChatFrames, _sse_events

CHUNK = b'data: {"choices":[{"index":0,"delta":{"content":"hi"}}]}\n\n'
DONE = "data: [DONE]\n\n"


async def _reads(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


def _events(body: AsyncIterator[bytes]) -> list[str]:
    async def collect() -> list[str]:
        response = httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)
        return [event async for event in _sse_events(response, _ChatFrames(Usage(), forward_usage=True))]

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
    assert events == [CHUNK.decode() + DONE]  # what one read brought, as one string
    assert sent < 10


def test_a_read_failure_after_done_is_not_a_broken_stream() -> None:
    async def body() -> AsyncIterator[bytes]:
        yield CHUNK + b"data: [DONE]\n\n"
        raise httpx.ReadError("connection reset after the answer")

    assert _events(body())[-1].endswith(DONE)


def test_events_of_one_read_go_on_together_and_each_read_goes_on_at_once() -> None:
    events = _events(_reads(CHUNK * 3, CHUNK, CHUNK + DONE.encode()))
    assert events == [CHUNK.decode() * 3, CHUNK.decode(), CHUNK.decode() + DONE]


def test_lines_split_across_reads_and_any_line_ending() -> None:
    crlf, cr = CHUNK.replace(b"\n", b"\r\n"), CHUNK.replace(b"\n", b"\r")
    body = CHUNK[:7], CHUNK[7:30], CHUNK[30:] + crlf[:-1], crlf[-1:] + cr + b": comment\nevent: x\ndata: [DONE]"
    assert "".join(_events(_reads(*body))) == CHUNK.decode() * 3 + DONE


def test_lines_sent_in_small_pieces_are_put_together_and_bounded() -> None:
    started = time.perf_counter()
    events = _events(_reads(*[bytes([c]) for c in CHUNK * 2000], DONE.encode()))
    assert "".join(events) == CHUNK.decode() * 2000 + DONE
    with pytest.raises(BackendFailure):
        _events(_reads(b"data: ", *[b"x" * 100] * 20_000))  # 2 MB of one line
    assert time.perf_counter() - started < 30  # generous (a busy machine): it takes well under a second


def test_a_line_that_never_ends_after_done_ends_the_stream_cleanly() -> None:
    assert _events(_reads(CHUNK + DONE.encode(), *[b"x" * 100_000] * 40)) == [CHUNK.decode() + DONE]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ((CHUNK, b"data: " + b"x" * (2 << 20)), "bad_stream"),  # a line that never ends
        ((b'data: {"a": "\xff"}\n\n',), "bad_stream"),  # not UTF-8
        ((CHUNK, b"<html>\n"), "bad_stream"),
        ((CHUNK, b'data: {"error": {"message": "x"}}\n\n'), "upstream_stream_error"),
        ((CHUNK,), "stream_truncated"),
    ],
)
def test_garbage_and_truncation_are_failures(body: tuple[bytes, ...], reason: str) -> None:
    with pytest.raises(BackendFailure) as failure:
        _events(_reads(*body))
    assert failure.value.reason == reason
