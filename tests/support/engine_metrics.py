"""vLLM's engine metrics as Ray exports them, read from the installed vLLM's source, and what a dashboard reads.

Ray Serve LLM hands vLLM's ``RayPrometheusStatLogger`` to the engine (``log_engine_metrics``): each ``vllm:NAME``
metric becomes a Ray metric ``vllm_NAME`` (``:`` is not allowed there), which Ray's Prometheus endpoint serves with
its ``ray_`` prefix; counters gain ``_total``, histograms are ``_bucket``, ``_sum`` and ``_count``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

_DEFINITION = re.compile(r'self\._(counter|gauge|histogram)_cls\(\s*name="vllm:([a-z0-9_]+)"')
_SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_sum", "_count")}


@functools.cache
def vllm_metrics() -> frozenset[str]:
    """Every Prometheus series name the installed vLLM's stat logger can export through Ray. The module's source is
    found without importing vLLM (seconds)."""
    spec = importlib.util.find_spec("vllm")
    assert spec is not None and spec.submodule_search_locations, "vLLM is not installed"
    loggers = Path(next(iter(spec.submodule_search_locations))) / "v1" / "metrics" / "loggers.py"
    names: set[str] = set()
    for kind, name in _DEFINITION.findall(loggers.read_text()):
        names.update(f"ray_vllm_{name}{suffix}" for suffix in _SUFFIXES[kind])
    assert names, "no vLLM metric definitions found: has vLLM's metrics module changed shape?"
    return frozenset(names)


def dashboard_metrics(dashboard: dict[str, Any]) -> frozenset[str]:
    """The ``ray_vllm_*`` series a Grafana dashboard's queries and variables read."""
    return frozenset(re.findall(r"\bray_vllm_[a-z0-9_]+", json.dumps(dashboard)))


def scraped_metrics(text: str) -> frozenset[str]:
    """The series names in a Prometheus text exposition."""
    return frozenset(
        line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines() if line and not line.startswith("#")
    )
