"""The load generator behind ``sovereign bench serve``: streamed OpenAI requests at a chosen arrival pattern.

Why it is built this way: the client must never be the bottleneck. One event loop (uvloop when present),
aiohttp with a connection pool sized to the concurrency, no blocking work on the loop (SSE lines are parsed
as they arrive; nothing is tokenized, token counts come from the server's ``usage``), and each request's clock
starts when it is actually sent, after any wait for a concurrency slot.
"""

from __future__ import annotations

import asyncio
import csv
import json
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import aiohttp

from benchmarks.datasets import Prompt
from benchmarks.metrics import RequestResult, aggregate, per_request_rows

Arrival = Literal["poisson", "fixed"]
Endpoint = Literal["chat", "completions"]


@dataclass(frozen=True)
class LoadConfig:
    """What to send, where, and how fast. ``request_rate=inf`` sends everything at once (bounded by
    ``max_concurrency``)."""

    base_url: str
    model: str
    endpoint: Endpoint = "chat"
    api_key: str | None = None
    request_rate: float = math.inf
    arrival: Arrival = "poisson"
    max_concurrency: int | None = None
    warmup: int = 0
    ignore_eos: bool = False
    timeout_s: float = 600.0
    seed: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    extra_body: dict[str, Any] = field(default_factory=dict)


def arrival_offsets(n: int, rate: float, arrival: Arrival, seed: int = 0) -> list[float]:
    """Seconds after the start at which each request becomes due: all 0 at infinite rate, evenly spaced for
    ``fixed``, exponential gaps for ``poisson`` (vLLM's default, burstiness 1)."""
    if n <= 0:
        return []
    if math.isinf(rate):
        return [0.0] * n
    if rate <= 0:
        raise ValueError("request rate must be positive")
    if arrival == "fixed":
        return [i / rate for i in range(n)]
    rng = random.Random(seed)
    offsets, t = [], 0.0
    for _ in range(n):
        offsets.append(t)
        t += rng.expovariate(rate)
    return offsets


def build_request(cfg: LoadConfig, prompt: Prompt) -> tuple[str, dict[str, Any]]:
    """URL and JSON body of one streamed request, usage included."""
    body: dict[str, Any] = {
        "model": cfg.model,
        "max_tokens": prompt.output_len,
        "stream": True,
        "stream_options": {"include_usage": True},
        "temperature": 0.0,
    }
    if cfg.endpoint == "chat":
        url = cfg.base_url.rstrip("/") + "/chat/completions"
        body["messages"] = [{"role": "user", "content": prompt.text}]
    else:
        url = cfg.base_url.rstrip("/") + "/completions"
        body["prompt"] = prompt.text
    if cfg.ignore_eos:
        body["ignore_eos"] = True  # vLLM's extension; OpenAI-compatible servers that lack it ignore or refuse it
    body |= cfg.extra_body
    return url, body


def _chunk_has_token(data: dict[str, Any]) -> bool:
    for choice in data.get("choices") or ():
        delta = choice.get("delta")
        text = delta.get("content") if isinstance(delta, dict) else choice.get("text")
        if text:
            return True
    return False


async def send_one(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> RequestResult:
    """One streamed request. TTFT is the first chunk that carries generated text; every later such chunk
    adds an inter-token latency. A failure is classified by kind; no response text is kept.

    After ``[DONE]`` the body is read to its end, as the openai SDK's async client and vLLM's own benchmark do:
    a response left unread closes its connection, so every request would pay for a new one (behind a proxy,
    two), which is not what a keep-alive client sees."""
    result = RequestResult()
    start = time.perf_counter()
    result.start_time = start
    last = start
    done = False
    try:
        async with session.post(url, json=body, headers=headers) as resp:
            result.http_status = resp.status
            if resp.status != 200:
                await resp.read()
                result.error_kind = f"http_{resp.status}"
                return result
            async for raw in resp.content:
                line = raw.strip()
                if done or not line or line.startswith(b":"):
                    continue  # after [DONE], read on to the end of the body, so the connection is reused
                if not line.startswith(b"data:"):
                    result.error_kind = "invalid_response"
                    return result
                payload = line[5:].strip()
                if payload == b"[DONE]":
                    done = True
                    continue
                data = json.loads(payload)
                if "error" in data:
                    result.error_kind = "stream_error"
                    return result
                now = time.perf_counter()
                if _chunk_has_token(data):
                    if result.ttft == 0.0:
                        result.ttft = now - start
                    else:
                        result.itl.append(now - last)
                    last = now
                usage = data.get("usage")
                if usage:
                    result.output_tokens = int(usage.get("completion_tokens") or 0)
                    result.prompt_tokens = int(usage.get("prompt_tokens") or 0)
                    result.usage_reported = True
    except TimeoutError:
        result.error_kind = "timeout"
        return result
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError):
        result.error_kind = "broken_stream" if result.ttft else "disconnected"
        return result
    except aiohttp.ClientConnectionError:
        result.error_kind = "connection"
        return result
    except (ValueError, UnicodeDecodeError):
        result.error_kind = "invalid_response"
        return result
    if not done:
        result.error_kind = "broken_stream"
    elif result.ttft == 0.0:
        result.error_kind = "no_tokens"
    else:
        if not result.usage_reported:  # the server ignored include_usage: count token-bearing chunks
            result.output_tokens = len(result.itl) + 1
        result.latency = last - start
        result.success = True
    return result


@dataclass
class RunOutcome:
    results: list[RequestResult]
    duration_s: float
    warmup_failures: int = 0


def _connector(concurrency: int) -> aiohttp.TCPConnector:
    return aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, ttl_dns_cache=300, keepalive_timeout=60)


async def run_load_async(
    cfg: LoadConfig, prompts: Sequence[Prompt], on_done: Callable[[RequestResult], object] | None = None
) -> RunOutcome:
    """Warm up, then send every prompt at its arrival time, at most ``max_concurrency`` in flight."""
    n = len(prompts)
    concurrency = min(cfg.max_concurrency or n or 1, 10_000)
    headers = {"Content-Type": "application/json", **cfg.headers}
    if cfg.api_key:
        headers["Authorization"] = f"Bearer {cfg.api_key}"
    timeout = aiohttp.ClientTimeout(total=cfg.timeout_s, sock_connect=min(cfg.timeout_s, 30.0))
    async with aiohttp.ClientSession(connector=_connector(concurrency), timeout=timeout) as session:
        warmup_failures = 0
        if cfg.warmup and prompts:
            warm = [build_request(cfg, prompts[i % n]) for i in range(cfg.warmup)]
            sem = asyncio.Semaphore(concurrency)

            async def warm_one(url: str, body: dict[str, Any]) -> RequestResult:
                async with sem:
                    return await send_one(session, url, body, headers)

            warm_results = await asyncio.gather(*(warm_one(u, b) for u, b in warm))
            warmup_failures = sum(not r.success for r in warm_results)

        requests = [build_request(cfg, p) for p in prompts]
        offsets = arrival_offsets(n, cfg.request_rate, cfg.arrival, cfg.seed)
        sem = asyncio.Semaphore(concurrency)
        results: list[RequestResult | None] = [None] * n

        async def one(i: int) -> None:
            async with sem:
                url, body = requests[i]
                result = results[i] = await send_one(session, url, body, headers)
            if on_done is not None:
                on_done(result)

        t0 = time.perf_counter()
        tasks = []
        for i, offset in enumerate(offsets):
            delay = t0 + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        duration = time.perf_counter() - t0
    return RunOutcome([r for r in results if r is not None], duration, warmup_failures)


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop]:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop ships with uvicorn[standard] here
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run_load(cfg: LoadConfig, prompts: Sequence[Prompt], progress: bool = False) -> RunOutcome:
    """Run a load from synchronous code, with an optional live progress bar."""
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(prompts), unit="req", desc="requests", dynamic_ncols=True)
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(run_load_async(cfg, prompts, on_done=(lambda _: bar.update(1)) if bar else None))
    finally:
        if bar is not None:
            bar.close()


def summarize(
    cfg: LoadConfig,
    outcome: RunOutcome,
    goodput: dict[str, float] | None = None,
    percentiles: Sequence[float] = (50, 90, 99),
    label: str | None = None,
) -> dict[str, Any]:
    """The result JSON: vLLM's names for the run description and every figure, plus our failure breakdown."""
    summary = {
        "date": datetime.now(UTC).strftime("%Y%m%d-%H%M%S"),
        "label": label,
        "backend": "openai-chat" if cfg.endpoint == "chat" else "openai",
        "endpoint_type": "openai-chat" if cfg.endpoint == "chat" else "openai",
        "base_url": cfg.base_url,
        "model_id": cfg.model,
        "num_prompts": len(outcome.results),
        "request_rate": "inf" if math.isinf(cfg.request_rate) else cfg.request_rate,
        "burstiness": 1.0 if cfg.arrival == "poisson" else None,
        "arrival": "all_at_once" if math.isinf(cfg.request_rate) else cfg.arrival,
        "max_concurrency": cfg.max_concurrency,
        "warmup": cfg.warmup,
        "warmup_failures": outcome.warmup_failures,
        "ignore_eos": cfg.ignore_eos,
        "goodput_slos_ms": goodput or None,
    }
    return summary | aggregate(outcome.results, outcome.duration_s, goodput, percentiles)


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_json_default) + "\n", encoding="utf-8")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return asdict(obj)
    if isinstance(obj, float) and math.isnan(obj):
        return None
    return str(obj)


def write_requests_csv(path: Path, results: Sequence[RequestResult]) -> None:
    """Per-request rows (times in ms, no text)."""
    rows = per_request_rows(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) if rows else ["index"])
        writer.writeheader()
        writer.writerows(rows)


SCALAR_TABLE = (
    ("Successful requests", "completed", "{:d}"),
    ("Failed requests", "failed", "{:d}"),
    ("Benchmark duration (s)", "duration", "{:.2f}"),
    ("Total input tokens", "total_input_tokens", "{:d}"),
    ("Total generated tokens", "total_output_tokens", "{:d}"),
    ("Request throughput (req/s)", "request_throughput", "{:.2f}"),
    ("Request goodput (req/s)", "request_goodput", "{:.2f}"),
    ("Output token throughput (tok/s)", "output_throughput", "{:.2f}"),
    ("Total token throughput (tok/s)", "total_token_throughput", "{:.2f}"),
)


def format_table(summary: dict[str, Any], percentiles: Sequence[float] = (50, 90, 99)) -> str:
    """The final table, laid out like vLLM's so the two read side by side."""
    lines = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=56, c="=")]
    for title, key, fmt in SCALAR_TABLE:
        value = summary.get(key)
        if value is None:
            continue
        lines.append(f"{title + ':':<44}{fmt.format(value)}")
    if summary.get("failures_by_kind"):
        kinds = ", ".join(f"{k}={v}" for k, v in sorted(summary["failures_by_kind"].items()))
        lines.append(f"{'Failures by kind:':<44}{kinds}")
    for name, header in (
        ("ttft", "Time to First Token"),
        ("tpot", "Time per Output Token (excl. 1st token)"),
        ("itl", "Inter-token Latency"),
        ("e2el", "End-to-end Latency"),
    ):
        lines.append("{s:{c}^{n}}".format(s=header, n=56, c="-"))
        label = name.upper()
        lines.append(f"{f'Mean {label} (ms):':<44}{summary[f'mean_{name}_ms']:.2f}")
        lines.append(f"{f'Median {label} (ms):':<44}{summary[f'median_{name}_ms']:.2f}")
        for p in percentiles:
            word = str(int(p)) if int(p) == p else str(p)
            lines.append(f"{f'P{word} {label} (ms):':<44}{summary[f'p{word}_{name}_ms']:.2f}")
    if summary.get("deliveries"):
        lines.append("{s:{c}^{n}}".format(s="Stream Smoothness", n=56, c="-"))
        lines.append(f"{'Deliveries with >1 token event (share):':<44}{summary['multi_token_event_share']:.3f}")
        lines.append(f"{'Mean tokens per delivery:':<44}{summary['mean_tokens_per_event']:.2f}")
    lines.append("=" * 56)
    return "\n".join(lines)
