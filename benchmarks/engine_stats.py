"""vLLM's own engine metrics during a benchmark run: KV-cache use, queueing and prefix-cache hits.

Plain vLLM serves them on its ``/metrics`` as ``vllm:NAME``; under Ray Serve LLM (``log_engine_metrics``) Ray's
Prometheus endpoint serves them as ``ray_vllm_NAME``, one series per engine replica. ``EngineSampler`` reads the
endpoint before, during (every ``interval_s``) and after a run: the counters' growth over the run (prefix-cache
queries and hits, in tokens) and the gauges' peaks (KV-cache use, requests running and waiting), summed over the
replicas at each reading. ``interval_s=0`` (the default) takes the readings before and after only, so no peaks: a
reading is not free. Ray's endpoint renders every Ray metric on the same CPUs as the engine (read every second, it
cost the gateway about 10% of its output tokens/s at concurrency 16 on a 2-core CPU; benchmarks/RESULTS.md), and
the parse runs in the load generator's process.
"""

from __future__ import annotations

import threading
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

COUNTERS = ("prefix_cache_queries", "prefix_cache_hits")
GAUGES = ("kv_cache_usage_perc", "num_requests_running", "num_requests_waiting")


def _base_name(name: str) -> str:
    """``vllm:prefix_cache_hits`` and ``ray_vllm_prefix_cache_hits`` alike: ``prefix_cache_hits``."""
    for prefix in ("ray_vllm_", "vllm:", "vllm_"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return ""


def parse(text: str) -> dict[str, float]:
    """The counters (totals) and gauges above from a Prometheus exposition, summed over engine replicas. KV-cache
    use is a fraction per replica, so its sum over replicas is reported as their mean instead. Read by sample name
    (a counter's samples end in ``_total``), whatever the exposition's ``# TYPE`` lines say."""
    values: dict[str, float] = {}
    replicas: dict[str, int] = {}
    # Ray's exposition holds every Ray metric; only vLLM's lines are parsed (a substring test per line is cheap).
    text = "\n".join(line for line in text.splitlines() if "vllm" in line) + "\n"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            base = _base_name(sample.name)
            if base.endswith("_total") and base[: -len("_total")] in COUNTERS:
                base = base[: -len("_total")]
            elif base not in GAUGES:
                continue
            values[base] = values.get(base, 0.0) + sample.value
            replicas[base] = replicas.get(base, 0) + 1
    if "kv_cache_usage_perc" in values:
        values["kv_cache_usage_perc"] /= replicas["kv_cache_usage_perc"]
    return values


class EngineSampler:
    """Samples an engine metrics endpoint while a run goes on (``with EngineSampler(url) as s: ...; s.result()``)."""

    def __init__(self, url: str, interval_s: float = 0.0, settle_s: float = 0.0) -> None:
        """``settle_s``: how long the endpoint lags the engine (Ray's metrics agent exports every few seconds), waited
        before the last reading."""
        self.url = url
        self.interval_s = interval_s
        self.settle_s = settle_s
        self._first: dict[str, float] | None = None
        self._last: dict[str, float] | None = None
        self._peaks: dict[str, float] = {}
        self._samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-sampler", daemon=True)

    def _read(self, during_run: bool = False) -> dict[str, float] | None:
        """One reading; gauges count towards the peaks only from readings during the run (the ones before and after
        see an idle engine)."""
        try:
            values = parse(httpx.get(self.url, timeout=5).text)
        except (httpx.HTTPError, ValueError):
            return None
        self._samples += 1
        for name in GAUGES if during_run else ():
            if name in values:
                self._peaks[name] = max(self._peaks.get(name, 0.0), values[name])
        return values

    def _run(self) -> None:
        if self.interval_s <= 0:
            return
        while not self._stop.wait(self.interval_s):
            self._read(during_run=True)

    def __enter__(self) -> EngineSampler:
        self._first = self._read()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.wait(self.settle_s)  # still sampling meanwhile
        self._stop.set()
        self._thread.join(timeout=10)
        self._last = self._read()

    def result(self) -> dict[str, Any]:
        """Counter growth over the run, the prefix-cache hit rate (hit tokens over queried tokens), gauge peaks."""
        first, last = self._first or {}, self._last or {}
        grown = {name: last[name] - first.get(name, 0.0) for name in COUNTERS if name in last}
        queries = grown.get("prefix_cache_queries")
        return {
            "source": self.url,
            "samples": self._samples,
            **{f"{name}_tokens": round(value) for name, value in grown.items()},
            "prefix_cache_hit_rate": (round(grown.get("prefix_cache_hits", 0.0) / queries, 4) if queries else None),
            **{f"peak_{name}": round(value, 4) for name, value in self._peaks.items()},
        }
