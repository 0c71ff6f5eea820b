"""The engine deployment: Ray Serve LLM's ``LLMServer``, with the changes that matter for a sovereign server.

1. Weights are checked against their SHA-256 manifest inside the replica, before the engine loads them: that is
   where the weights are mounted (a GPU worker pod, say), not where the application is built.
2. Stream batching is leading-edge. ``LLMServer`` batches a stream's chunks to cut per-message cost between
   replicas, but its batcher waits a whole interval before sending anything, so every stream's first token is
   late by up to the interval (50 ms by default). Here a chunk that arrives after a quiet interval goes out at
   once, and only chunks that follow it closely wait to be sent together: the same message rate under load,
   without the added time to first token.
3. Under ``sovereign serve`` with CPU engines, the replica spreads itself over the host's CPUs before the engine
   starts, so that vLLM can bind its worker where it chooses (serving/placement.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any, TypeVar

from models.manifest import verify_manifest
from serving.placement import spread_for_engine

T = TypeVar("T")

VERIFY_KEY = "sovereign_verify_manifest"


async def leading_edge_batches(source: AsyncIterator[T], interval_s: float,
                               burst: int = 2) -> AsyncGenerator[list[T], None]:
    """Group items from ``source`` into lists: up to ``burst`` lists at once, then one per ``interval_s``.

    A token bucket (``burst`` tokens, one more per ``interval_s``) paces the sends: an item that finds a token
    goes out at once with whatever queued behind it; otherwise it waits for the next token. A burst of two lets
    a chat stream's role-only first chunk and its first token both go without delay.
    """
    queue: asyncio.Queue[T] = asyncio.Queue()
    done = asyncio.Event()

    async def read() -> None:
        try:
            async for item in source:
                queue.put_nowait(item)
        finally:
            done.set()

    reader = asyncio.create_task(read())
    tokens, refilled = float(burst), time.monotonic()

    def refill() -> float:
        nonlocal tokens, refilled
        now = time.monotonic()
        tokens = min(float(burst), tokens + (now - refilled) / interval_s) if interval_s > 0 else float(burst)
        refilled = now
        return tokens

    try:
        while True:
            batch: list[T] = []
            if queue.empty() and not done.is_set():
                getter = asyncio.ensure_future(queue.get())
                finished = asyncio.ensure_future(done.wait())
                await asyncio.wait({getter, finished}, return_when=asyncio.FIRST_COMPLETED)
                finished.cancel()
                if getter.done():
                    batch.append(getter.result())
                else:
                    getter.cancel()
            wait = (1 - refill()) * interval_s
            if wait > 0 and not done.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(done.wait(), timeout=wait)
            while not queue.empty():
                batch.append(queue.get_nowait())
            if batch:
                refill()
                tokens -= 1
                yield batch
            if done.is_set() and queue.empty():
                reader.result()  # re-raise the source's error, if any
                return
    finally:
        if not reader.done():
            reader.cancel()


def sovereign_server_cls() -> type:
    """The ``LLMServer`` subclass used for every local model (imported lazily: Ray Serve LLM imports vLLM)."""
    from ray.llm._internal.serve.constants import MODEL_RESPONSE_BATCH_TIMEOUT_MS
    from ray.serve.llm import LLMServer

    class SovereignLLMServer(LLMServer):
        async def __init__(self, llm_config: Any, **kwargs: Any) -> None:
            if llm_config.experimental_configs.get(VERIFY_KEY, True):
                verify_manifest(Path(llm_config.model_loading_config.model_source))
            spread_for_engine()  # under `sovereign serve` with CPU engines; see serving/placement.py
            await super().__init__(llm_config, **kwargs)

        def _batch_output_stream(self, generator: AsyncGenerator[T, None]) -> AsyncGenerator[list[T], None]:
            interval_ms = self._llm_config.experimental_configs.get("stream_batching_interval_ms",
                                                                    MODEL_RESPONSE_BATCH_TIMEOUT_MS)
            return leading_edge_batches(generator, interval_ms / 1000)

    return SovereignLLMServer
