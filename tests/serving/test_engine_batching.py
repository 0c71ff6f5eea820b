"""Leading-edge stream batching: the first chunk goes at once; later chunks at most one message per interval."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from serving.engine import leading_edge_batches


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
