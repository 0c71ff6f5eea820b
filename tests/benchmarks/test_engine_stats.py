"""Engine metrics read from a Prometheus exposition as vLLM and Ray serve it (benchmarks/engine_stats.py)."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Iterator

import pytest

from benchmarks.engine_stats import EngineSampler, parse

RAY = """# TYPE ray_vllm_prefix_cache_queries_total counter
ray_vllm_prefix_cache_queries_total{replica="a"} 100.0
ray_vllm_prefix_cache_queries_total{replica="b"} 50.0
# TYPE ray_vllm_prefix_cache_hits_total counter
ray_vllm_prefix_cache_hits_total{replica="a"} 60.0
ray_vllm_prefix_cache_hits_total{replica="b"} 0.0
# TYPE ray_vllm_kv_cache_usage_perc gauge
ray_vllm_kv_cache_usage_perc{replica="a"} 0.5
ray_vllm_kv_cache_usage_perc{replica="b"} 0.1
# TYPE ray_vllm_num_requests_waiting gauge
ray_vllm_num_requests_waiting{replica="a"} 3.0
# TYPE ray_serve_num_http_requests_total counter
ray_serve_num_http_requests_total 7.0
"""

VLLM = """# TYPE vllm:prefix_cache_hits counter
vllm:prefix_cache_hits_total{engine="0"} 42.0
vllm:prefix_cache_hits_created{engine="0"} 1.7e9
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0"} 0.25
"""


def test_ray_series_are_summed_over_replicas_and_kv_use_averaged() -> None:
    values = parse(RAY)
    assert values["prefix_cache_queries"] == 150 and values["prefix_cache_hits"] == 60
    assert values["kv_cache_usage_perc"] == 0.3 and values["num_requests_waiting"] == 3
    assert set(values) == {"prefix_cache_queries", "prefix_cache_hits", "kv_cache_usage_perc", "num_requests_waiting"}


def test_plain_vllm_series_and_no_created_samples() -> None:
    assert parse(VLLM) == {"prefix_cache_hits": 42.0, "kv_cache_usage_perc": 0.25}


class _Exposition(http.server.BaseHTTPRequestHandler):
    """Serves RAY, with the gauges a busy engine shows, on every GET."""

    def do_GET(self) -> None:
        body = RAY.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def exposition_url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Exposition)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()


def test_by_default_the_sampler_reads_before_and_after_only_and_reports_no_peaks(exposition_url: str) -> None:
    with EngineSampler(exposition_url) as sampler:
        time.sleep(0.3)
    stats = sampler.result()
    assert stats["samples"] == 2 and stats["prefix_cache_queries_tokens"] == 0
    assert not any(key.startswith("peak_") for key in stats), stats


def test_with_an_interval_the_peaks_come_from_readings_during_the_run(exposition_url: str) -> None:
    with EngineSampler(exposition_url, interval_s=0.05) as sampler:
        time.sleep(0.4)
    stats = sampler.result()
    assert stats["samples"] > 2
    assert stats["peak_kv_cache_usage_perc"] == 0.3 and stats["peak_num_requests_waiting"] == 3
