"""Engine metrics read from a Prometheus exposition as vLLM and Ray serve it (benchmarks/engine_stats.py)."""

from __future__ import annotations

from benchmarks.engine_stats import parse

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
