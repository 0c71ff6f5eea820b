"""Per-request measurements and their aggregation, named as vLLM's ``vllm bench serve`` names them.

Pure functions over plain data, so the maths (percentiles, TPOT, goodput) is tested on synthetic inputs and a
result from this tool sits next to one from ``vllm bench serve`` field by field (``output_throughput``,
``median_ttft_ms``, ``p99_itl_ms``, ...).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PERCENTILES: tuple[float, ...] = (50, 90, 99)
GOODPUT_METRICS = ("ttft", "tpot", "e2el")
# Token-bearing events that reach the client less than this apart came in one delivery (one network write, as a
# batching server sends them); a client shows them at once, as one event carrying several tokens.
BURST_GAP_S = 0.001


@dataclass
class RequestResult:
    """One request as the client saw it. Times in seconds; token counts from the server's ``usage``."""

    success: bool = False
    start_time: float = 0.0
    ttft: float = 0.0
    itl: list[float] = field(default_factory=list)
    latency: float = 0.0
    prompt_tokens: int = 0
    output_tokens: int = 0
    usage_reported: bool = False
    error_kind: str | None = None
    http_status: int | None = None

    @property
    def tpot(self) -> float:
        """Time per output token after the first; 0 for one-token answers (as vLLM counts it for goodput)."""
        if self.output_tokens > 1:
            return (self.latency - self.ttft) / (self.output_tokens - 1)
        return 0.0


def percentile(values: Sequence[float], p: float) -> float:
    """Linear-interpolated percentile (numpy's default method); 0.0 for no values, as vLLM reports it."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def _std(values: Sequence[float]) -> float:
    if not values:
        return 0.0
    m = _mean(values)
    return math.sqrt(sum((v - m) ** 2 for v in values) / len(values))


def parse_goodput(items: Iterable[str]) -> dict[str, float]:
    """``["ttft:500", "tpot:50"]`` -> ``{"ttft": 500.0, "tpot": 50.0}`` (milliseconds), as vLLM's ``--goodput``."""
    slos: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition(":")
        if not sep or name not in GOODPUT_METRICS:
            raise ValueError(f"goodput SLO {item!r}: expected NAME:MS with NAME one of {', '.join(GOODPUT_METRICS)}")
        ms = float(value)
        if ms < 0:
            raise ValueError(f"goodput SLO {item!r} must not be negative")
        slos[name] = ms
    return slos


def is_good(result: RequestResult, slos: dict[str, float]) -> bool:
    """A successful request that met every SLO (each in ms)."""
    if not result.success:
        return False
    observed = {"ttft": result.ttft, "tpot": result.tpot, "e2el": result.latency}
    return all(observed[name] * 1000.0 <= limit for name, limit in slos.items())


def delivery_sizes(itl: Sequence[float], burst_gap_s: float = BURST_GAP_S) -> list[int]:
    """Token events per delivery for one stream, from its inter-token gaps (the first event opens the first
    delivery; a gap under ``burst_gap_s`` joins the event to the one before). ``[]`` for a stream without tokens
    is the caller's case: a stream with one token event has ``itl == []`` and one delivery of one."""
    sizes = [1]
    for gap in itl:
        if gap < burst_gap_s:
            sizes[-1] += 1
        else:
            sizes.append(1)
    return sizes


def burst_fields(results: Sequence[RequestResult]) -> dict[str, float]:
    """How bunched the streams were: the share of deliveries that carried more than one token event, and the
    mean tokens per delivery (from ``usage``, so an event whose text holds several tokens counts them all)."""
    sizes = [n for r in results for n in delivery_sizes(r.itl)]
    tokens = sum(r.output_tokens for r in results)
    return {
        "deliveries": len(sizes),
        "multi_token_event_share": sum(n > 1 for n in sizes) / len(sizes) if sizes else 0.0,
        "mean_tokens_per_event": tokens / len(sizes) if sizes else 0.0,
    }


def _metric_fields(name: str, values_s: Sequence[float], percentiles: Sequence[float]) -> dict[str, float]:
    ms = [v * 1000.0 for v in values_s]
    out = {f"mean_{name}_ms": _mean(ms), f"median_{name}_ms": percentile(ms, 50), f"std_{name}_ms": _std(ms)}
    for p in percentiles:
        word = str(int(p)) if int(p) == p else str(p)
        out[f"p{word}_{name}_ms"] = percentile(ms, p)
    return out


def aggregate(
    results: Sequence[RequestResult],
    duration_s: float,
    goodput: dict[str, float] | None = None,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
) -> dict[str, Any]:
    """The summary of one run, with vLLM's field names for every figure vLLM also reports."""
    ok = [r for r in results if r.success]
    failed = [r for r in results if not r.success]
    total_in = sum(r.prompt_tokens for r in ok)
    total_out = sum(r.output_tokens for r in ok)
    dur = duration_s if duration_s > 0 else float("nan")
    summary: dict[str, Any] = {
        "duration": duration_s,
        "completed": len(ok),
        "failed": len(failed),
        "total_input_tokens": total_in,
        "total_output_tokens": total_out,
        "request_throughput": len(ok) / dur,
        "request_goodput": (sum(is_good(r, goodput) for r in ok) / dur) if goodput else None,
        "output_throughput": total_out / dur,
        "total_token_throughput": (total_in + total_out) / dur,
        "failures_by_kind": dict(Counter(r.error_kind or "unknown" for r in failed)),
        "usage_missing": sum(not r.usage_reported for r in ok),
    }
    summary |= _metric_fields("ttft", [r.ttft for r in ok], percentiles)
    summary |= _metric_fields("tpot", [r.tpot for r in ok if r.output_tokens > 1], percentiles)
    summary |= _metric_fields("itl", [x for r in ok for x in r.itl], percentiles)
    summary |= _metric_fields("e2el", [r.latency for r in ok], percentiles)
    summary |= burst_fields(ok)
    return summary


def per_request_rows(results: Sequence[RequestResult]) -> list[dict[str, Any]]:
    """One CSV row per request (times in ms); no prompt or completion text."""
    rows = []
    for i, r in enumerate(results):
        rows.append(
            {
                "index": i,
                "success": r.success,
                "start_time": round(r.start_time, 6),
                "ttft_ms": round(r.ttft * 1000, 3),
                "tpot_ms": round(r.tpot * 1000, 3),
                "mean_itl_ms": round(_mean(r.itl) * 1000, 3),
                "e2el_ms": round(r.latency * 1000, 3),
                "prompt_tokens": r.prompt_tokens,
                "output_tokens": r.output_tokens,
                "error_kind": r.error_kind or "",
                "http_status": r.http_status if r.http_status is not None else "",
            }
        )
    return rows
