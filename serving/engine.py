"""The engine deployment: Ray Serve LLM's ``LLMServer``, with the changes that matter for a sovereign server.

1. Weights are checked against their SHA-256 manifest inside the replica, before the engine loads them: that is
   where the weights are mounted (a GPU worker pod, say), not where the application is built.
2. Stream pacing adapts to load. ``LLMServer`` batches a stream's chunks to cut per-message cost between
   replicas (every message costs CPU in the engine replica, the ingress and the proxy), but its batcher waits a
   whole interval before sending anything, at any load. Here each stream's pacing interval follows the number
   of streams open in this replica (``pacing_interval``): while few are open every chunk goes straight through,
   so a chat window sees tokens as the engine makes them; as more open, chunks that follow each other closely
   are sent together, up to one message per ``stream_batching_ms``. The pacing is leading-edge: a chunk that
   finds the interval elapsed goes out at once, so time to first token never waits for it.
3. LoRA adapters (``lora``) are taken from the backend's adapters folder and verified against their manifest before
   the engine loads one (serving/lora.py), instead of Ray Serve LLM's download from cloud storage.
4. Under ``sovereign serve`` with CPU engines, the replica spreads itself over the host's CPUs before the engine
   starts, so that vLLM can bind its worker where it chooses (serving/placement.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import Any, TypeVar

from models.manifest import verify_manifest
from serving.lora import ADAPTERS_DIR_KEY, verified_adapter_loader
from serving.placement import spread_for_engine

T = TypeVar("T")

VERIFY_KEY = "sovereign_verify_manifest"


SMOOTH_STREAMS_KEY = "sovereign_stream_smooth_streams"


def pacing_interval(active_streams: int, smooth_streams: int, max_interval_s: float) -> float:
    """Seconds between a stream's messages when ``active_streams`` are open in the replica.

    0 (every chunk at once) up to ``smooth_streams``; beyond, it grows linearly with the streams over that number,
    reaching ``max_interval_s`` at twice ``smooth_streams`` (at once when ``smooth_streams`` is 0).
    """
    excess = active_streams - smooth_streams
    if excess <= 0 or max_interval_s <= 0:
        return 0.0
    return max_interval_s * min(1.0, excess / max(1, smooth_streams))


class StreamPacer:
    """The replica's open streams, and the pacing interval they imply (``pacing_interval``)."""

    def __init__(self, smooth_streams: int, max_interval_s: float) -> None:
        self.smooth_streams = smooth_streams
        self.max_interval_s = max_interval_s
        self.active = 0

    def interval(self) -> float:
        return pacing_interval(self.active, self.smooth_streams, self.max_interval_s)

    async def batches(self, source: AsyncIterator[T]) -> AsyncGenerator[list[T], None]:
        """``leading_edge_batches`` of ``source``, counted as open from the first read to the last. Closing this
        closes the batches at once, which cancels their reader (a client gone: the engine's generation is aborted)."""
        self.active += 1
        try:
            async with contextlib.aclosing(leading_edge_batches(source, self.interval)) as batches:
                async for batch in batches:
                    yield batch
        finally:
            self.active -= 1


async def leading_edge_batches(
    source: AsyncIterator[T], interval_s: float | Callable[[], float], burst: int = 2
) -> AsyncGenerator[list[T], None]:
    """Group items from ``source`` into lists: up to ``burst`` lists at once, then one per ``interval_s``.

    A token bucket (``burst`` tokens, one more per ``interval_s``) paces the sends: an item that finds a token
    goes out at once with whatever queued behind it; otherwise it waits for the next token. A burst of two lets
    a chat stream's role-only first chunk and its first token both go without delay. ``interval_s`` may be a
    function, read at every refill: the interval then follows the load (``StreamPacer``); 0 sends every item
    as soon as it is read.
    """
    current_interval = interval_s if callable(interval_s) else (lambda: interval_s)
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
        now, interval = time.monotonic(), current_interval()
        tokens = min(float(burst), tokens + (now - refilled) / interval) if interval > 0 else float(burst)
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
            wait = (1 - refill()) * current_interval()
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
    from ray.serve.llm import LLMServer

    from serving.thirdparty import (
        default_batch_interval_ms,
        own_batching,
        vllm_rerank,
        vllm_responses,
        vllm_stored_response,
    )

    @own_batching
    class SovereignLLMServer(LLMServer):
        async def __init__(self, llm_config: Any, **kwargs: Any) -> None:  # type: ignore[misc]  # Serve awaits LLMServer's async __init__
            if llm_config.experimental_configs.get(VERIFY_KEY, True):
                verify_manifest(Path(llm_config.model_loading_config.model_source))
            spread_for_engine()  # under `sovereign serve` with CPU engines; see serving/placement.py
            experimental = llm_config.experimental_configs
            if experimental.get(ADAPTERS_DIR_KEY):  # LoRA adapters from lora.adapters_dir, verified before loading
                kwargs.setdefault("model_downloader", verified_adapter_loader(Path(experimental[ADAPTERS_DIR_KEY])))
            self._pacer = StreamPacer(
                int(experimental.get(SMOOTH_STREAMS_KEY, 0)),
                float(experimental.get("stream_batching_interval_ms", default_batch_interval_ms())) / 1000,
            )
            await super().__init__(llm_config, **kwargs)

        def batch_output_stream(self, generator: AsyncGenerator[T, None]) -> AsyncGenerator[list[T], None]:
            return self._pacer.batches(generator)

        async def rerank(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
            """vLLM's rerank, as its own ``/rerank`` route serves it. ``LLMServer`` has ``score`` but no rerank, and
            its engine's ``score`` casts every answer to a ``ScoreResponse``, which a rerank answer is not."""
            await self._maybe_add_request_id_to_request(request)
            return vllm_rerank(self.engine, request, raw_request_info)

        async def responses(self, request: Any, raw_request_info: Any = None) -> AsyncGenerator[Any, None]:
            """vLLM's Responses API, as its own ``/v1/responses`` route serves it (``LLMServer`` has none). A
            stream's events are batched as chat chunks are."""
            await self._maybe_add_request_id_to_request(request)
            answer = vllm_responses(self.engine, request, raw_request_info)
            return self.batch_output_stream(answer) if request.stream else answer

        async def stored_response(self, action: str, response_id: str) -> Any:
            """A response in this replica's Responses API store: retrieved, cancelled or deleted."""
            return await vllm_stored_response(self.engine, action, response_id)

    return SovereignLLMServer
