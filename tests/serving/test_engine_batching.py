"""Leading-edge stream batching: the first chunk goes at once; later chunks at most one message per interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from serving.engine import StreamPacer, leading_edge_batches, pacing_interval


async def _source(gaps: list[float], fail_at: int | None = None) -> AsyncIterator[int]:
    for i, gap in enumerate(gaps):
        await asyncio.sleep(gap)
        if i == fail_at:
            raise RuntimeError("engine died")
        yield i


async def _collect(gaps: list[float], interval: float) -> list[tuple[float, list[int]]]:
    start = time.monotonic()
    return [(time.monotonic() - start, batch) async for batch in leading_edge_batches(_source(gaps), interval)]


def test_order_and_completeness() -> None:
    batches = asyncio.run(_collect([0.0] * 51, 0.5))
    assert [i for _, batch in batches for i in batch] == list(range(51))
    assert len(batches) < 51  # close chunks travelled together


def test_first_chunk_is_not_held_back() -> None:
    """With a 5 s interval, a trailing-edge batcher would hold chunk 0 until the source ends (0.5 s)."""

    async def run() -> tuple[list[int], int]:
        produced: list[int] = []

        async def source() -> AsyncIterator[int]:
            for i, gap in enumerate([0.0, 0.5]):
                await asyncio.sleep(gap)
                produced.append(i)
                yield i

        batches = leading_edge_batches(source(), 5.0)
        first = await anext(batches)
        seen_when_first_arrived = len(produced)
        rest = [b async for b in batches]
        return first + [i for b in rest for i in b], seen_when_first_arrived

    items, produced_by_then = asyncio.run(run())
    assert items == [0, 1]
    assert produced_by_then == 1  # chunk 0 went out before chunk 1 existed


def test_a_burst_of_two_goes_unpaced_then_one_batch_per_interval() -> None:
    """Role chunk and first token both go at once; the third chunk waits for the (5 s) interval or the end."""

    async def run() -> list[tuple[list[int], int]]:
        produced: list[int] = []

        async def source() -> AsyncIterator[int]:
            for i, gap in enumerate([0.0, 0.2, 0.2, 0.0, 0.4]):
                await asyncio.sleep(gap)
                produced.append(i)
                yield i

        return [(batch, len(produced)) async for batch in leading_edge_batches(source(), 5.0)]

    batches = asyncio.run(run())
    assert batches[0] == ([0], 1)
    assert batches[1] == ([1], 2)  # sent before chunk 2 existed
    assert batches[2] == ([2, 3, 4], 5)  # held until the source ended, well inside the interval


def test_source_error_propagates_after_what_was_read() -> None:
    async def run() -> list[list[int]]:
        seen = []
        async for batch in leading_edge_batches(_source([0.0, 0.0, 0.0], fail_at=2), 0.01):
            seen.append(batch)
        return seen

    with pytest.raises(RuntimeError, match="engine died"):
        asyncio.run(run())


def test_pacing_interval_follows_the_open_streams() -> None:
    assert [pacing_interval(n, 4, 0.15) for n in (0, 1, 4)] == [0.0, 0.0, 0.0]  # smooth: every chunk at once
    assert pacing_interval(5, 4, 0.15) == pytest.approx(0.0375)
    assert pacing_interval(6, 4, 0.15) == pytest.approx(0.075)
    assert pacing_interval(8, 4, 0.15) == pytest.approx(0.15)  # the longest interval at twice the smooth count
    assert pacing_interval(64, 4, 0.15) == pytest.approx(0.15)  # and never longer
    assert pacing_interval(1, 0, 0.15) == pytest.approx(0.15)  # 0 smooth streams: always paced
    assert pacing_interval(64, 4, 0.0) == 0.0  # a 0 ms interval never paces


def test_few_streams_get_every_chunk_unbatched() -> None:
    """One open stream under a pacer that would batch at 5 s beyond one stream: each chunk is its own message."""

    async def run() -> list[list[int]]:
        pacer = StreamPacer(smooth_streams=1, max_interval_s=5.0)
        return [batch async for batch in pacer.batches(_source([0.0] + [0.02] * 5))]

    assert asyncio.run(run()) == [[i] for i in range(6)]


def test_more_streams_than_smooth_are_paced_and_counted() -> None:
    """Three streams open under a pacer smooth up to one: 2 excess streams reach the (5 s) interval, so after the
    first two messages the rest of each stream waits for its end; the count is back to 0 afterwards."""

    async def run() -> tuple[list[list[list[int]]], int, int]:
        pacer = StreamPacer(smooth_streams=1, max_interval_s=5.0)
        peak = 0

        async def one() -> list[list[int]]:
            nonlocal peak
            out = []
            async for batch in pacer.batches(_source([0.0] + [0.02] * 5)):
                peak = max(peak, pacer.active)
                out.append(batch)
            return out

        streams = await asyncio.gather(one(), one(), one())
        return list(streams), peak, pacer.active

    streams, peak, after = asyncio.run(run())
    assert peak == 3 and after == 0
    for batches in streams:
        assert batches == [[0], [1], [2, 3, 4, 5]]


def test_interval_read_at_every_send() -> None:
    """A load that rises mid-stream paces the stream's later chunks: chunk 3 takes the token left after chunk 2."""

    async def run() -> list[list[int]]:
        load = {"interval": 0.0}

        async def source() -> AsyncIterator[int]:
            for i in range(8):
                await asyncio.sleep(0.02)
                if i == 3:
                    load["interval"] = 5.0
                yield i

        return [batch async for batch in leading_edge_batches(source(), lambda: load["interval"])]

    assert asyncio.run(run()) == [[0], [1], [2], [3], [4, 5, 6, 7]]


def test_closing_a_paced_stream_stops_reading_its_source_at_once() -> None:
    """A consumer that goes away (client disconnected) closes the stream: its reader is cancelled, so the source
    is closed on the loop's next turn (the engine's generation is aborted), and the stream no longer counts."""

    async def run() -> tuple[bool, int]:
        closed = False

        async def source() -> AsyncIterator[int]:
            nonlocal closed
            try:
                for i in range(1000):
                    await asyncio.sleep(0.01)
                    yield i
            finally:
                closed = True

        pacer = StreamPacer(smooth_streams=0, max_interval_s=5.0)
        stream = pacer.batches(source())
        await anext(stream)
        await stream.aclose()
        await asyncio.sleep(0.005)  # well before the source's next item (10 ms), let alone its end (10 s)
        return closed, pacer.active

    assert asyncio.run(run()) == (True, 0)
