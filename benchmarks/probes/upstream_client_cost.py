"""What the ``openai`` SDK costs the router per streamed request, by transport, and against httpx directly. A
probe, not the suite.

    python -m benchmarks.probes.upstream_client_cost --json OUT

``bench overhead`` reaches its upstream through ``serving/backends/openai_http.py``, which sends with the SDK's
``AsyncOpenAI.post`` (DESIGN.md names the SDK for the commercial side). This measures, in one process, the
backend's own ``open`` and SSE reader with each of the SDK's transports (``http_client``: aiohttp, the default,
and httpx), against the same request built and sent with a bare ``httpx.AsyncClient`` and read with the same
reader: against the fake upstream in its own process, one request at a time, in alternating blocks, on uvloop (as
in a Ray Serve replica). CPU time is this process's (the fake's is not counted).
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import uvloop  # Ray's workers run on it (ray[serve] brings uvicorn[standard])

from benchmarks.compare import machine_info
from benchmarks.probes import probe_parser, report
from benchmarks.targets import start_fake
from serving.backends.base import Endpoint, Usage
from serving.backends.openai_http import OpenAIBackend, _ChatFrames, _sse_events
from serving.config import OpenAIBackendConfig

KEY_ENV = "SOVEREIGN_PROBE_FAKE_KEY"
BODY = {"model": "default", "stream": True, "max_tokens": 8, "messages": [{"role": "user", "content": "hi " * 60}]}


async def _measure(blocks: int, per_block: int, base_url: str) -> dict[str, list[tuple[float, float]]]:
    os.environ[KEY_ENV] = "fake-upstream-key"
    backends = {
        transport: OpenAIBackend(
            OpenAIBackendConfig(
                name="upstream",
                kind="openai",
                sovereign=True,
                max_classification="SECRET",
                base_url=base_url,
                api_key_env=KEY_ENV,
                model="fake",
                http_client=transport,
            )
        )
        for transport in ("aiohttp", "httpx")
    }
    raw = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(600, connect=5))
    headers = {
        "authorization": "Bearer fake-upstream-key",
        "user-agent": "sovereign-inference",
        "content-type": "application/json",
    }

    def via_sdk(backend: OpenAIBackend) -> Callable[[], Awaitable[None]]:
        async def send() -> None:
            opened = await backend.open(Endpoint.CHAT, BODY, request_id="probe", trace_headers={})
            assert opened.chunks is not None
            async for _ in opened.chunks:
                pass

        return send

    async def via_httpx() -> None:
        payload = {**BODY, "model": "fake", "stream_options": {"include_usage": True}}
        request = raw.build_request("POST", "/chat/completions", content=json.dumps(payload).encode(), headers=headers)
        response = await raw.send(request, stream=True)
        try:
            async for _ in _sse_events(response, _ChatFrames(Usage(), forward_usage=False)):
                pass
        finally:
            await response.aclose()

    ways: dict[str, Callable[[], Awaitable[None]]] = {
        "sdk_aiohttp": via_sdk(backends["aiohttp"]),
        "sdk_httpx": via_sdk(backends["httpx"]),
        "httpx": via_httpx,
    }
    try:
        for way in ways.values():  # warm both connection pools and code paths
            for _ in range(100):
                await way()
        samples: dict[str, list[tuple[float, float]]] = {name: [] for name in ways}
        for _ in range(blocks):
            for name, way in ways.items():
                cpu, wall = time.process_time(), time.perf_counter()
                for _ in range(per_block):
                    await way()
                samples[name].append(
                    ((time.process_time() - cpu) / per_block * 1000, (time.perf_counter() - wall) / per_block * 1000)
                )
        return samples
    finally:
        for backend in backends.values():
            await backend.close()
        await raw.aclose()


def run(blocks: int = 5, per_block: int = 400) -> dict[str, Any]:
    fake = start_fake(Path(tempfile.mkdtemp(prefix="upstream-cost-")))
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            samples = runner.run(_measure(blocks, per_block, fake.base_url))
    finally:
        fake.stop()
    result: dict[str, Any] = {"blocks": blocks, "requests_per_block": per_block, "machine": machine_info()}
    for name, rows in samples.items():
        result[name] = {
            "cpu_ms_per_request": [round(c, 4) for c, _ in rows],
            "wall_ms_per_request": [round(w, 4) for _, w in rows],
            "median_cpu_ms": round(statistics.median(c for c, _ in rows), 4),
        }
    bare = result["httpx"]["median_cpu_ms"]
    for name in ("sdk_aiohttp", "sdk_httpx"):
        result[f"{name}_minus_httpx_cpu_ms"] = round(result[name]["median_cpu_ms"] - bare, 4)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = probe_parser(__doc__)
    parser.add_argument("--blocks", type=int, default=5)
    parser.add_argument("--per-block", type=int, default=400)
    args = parser.parse_args(argv)
    return report(run(args.blocks, args.per_block), args.json)


if __name__ == "__main__":
    raise SystemExit(main())
