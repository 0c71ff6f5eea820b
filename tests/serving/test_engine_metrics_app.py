"""The engines' vLLM metrics reach Ray's Prometheus endpoint (the one the chart's ServiceMonitor scrapes on 8080),
and the engines' dashboard reads only series that the running engines export."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest

from tests.support.app import RunningApp
from tests.support.engine_metrics import dashboard_metrics, scraped_metrics

pytestmark = pytest.mark.engine

CANARY = "metricscanary5521"
DASHBOARD = Path(__file__).resolve().parents[2] / "helm" / "dashboards" / "sovereign-engines-dashboard.json"
# Counted only when the event happens (Ray's counters take no zero increments): absent from a short quiet run.
EVENT_COUNTERS = {"ray_vllm_num_preemptions_total"}


def _scrape_until(app: RunningApp, wanted: set[str], timeout_s: float = 60) -> str:
    """Ray's endpoint once it shows every series in ``wanted`` (Ray's metrics agent exports every few seconds)."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(app.ray_metrics_url, timeout=10).text
        if wanted <= scraped_metrics(text) or time.monotonic() > deadline:
            return text
        time.sleep(2)


def test_engine_metrics_reach_rays_endpoint_and_the_dashboard_reads_only_those(app: RunningApp) -> None:
    client = app.client()
    for _ in range(2):  # the same prompt twice: the second finds its prefix in the cache
        client.chat.completions.create(
            model="local-only", max_tokens=8, stream=True, messages=[{"role": "user", "content": f"{CANARY} " * 40}]
        ).close()
    wanted = set(dashboard_metrics(json.loads(DASHBOARD.read_text()))) - EVENT_COUNTERS
    text = _scrape_until(app, wanted)
    found = scraped_metrics(text)
    assert wanted <= found, sorted(wanted - found)
    running = [line for line in text.splitlines() if line.startswith("ray_vllm_num_requests_running{")]
    assert any('model_name="tiny"' in line for line in running)
    assert all('ReplicaId="' in line for line in running)  # per replica: the dashboard's by-replica panels
    assert CANARY not in text  # metrics carry no prompt text
