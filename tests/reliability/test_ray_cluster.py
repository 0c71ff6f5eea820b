"""`sovereign serve --address` on a multi-node Ray cluster on this machine (Ray's own ``cluster_utils.Cluster``, every
node on 127.0.0.1): one module-scoped application, so one engine start-up for every test here.

- The cluster has a router node (the head, custom resource ``router: 2``, where Serve's proxy runs) and an engine
  node (``engine: 1``). The configuration asks for those resources (``server.ingress_ray_resources``,
  ``backends[].ray_resources``): Ray's state API shows the engine replica on the engine node and both router
  replicas on the router node, and the application answers through the openai SDK.
- Two router replicas share one caller's request rate: a key limited to 20 requests a minute sends 40 at once and
  gets at most 21 answers (20, plus the permit that refills while they run), the rest 429 with ``retry-after``.
- A router replica killed (SIGKILL) under load: requests are answered or fail cleanly, none hangs, the other
  replica keeps serving, Serve replaces the dead one, and every answered request is audited.
- The ledger actor killed for good: requests are still served, each router replica limiting the caller to half
  its rate (the fail-safe of routing/ratelimit.py).
- The engine node removed: a request with personal data gets 503 ``no_cleared_backend_available``, never the commercial
  fake; an OFFICIAL one falls back to it.
- Ctrl-C to `sovereign serve --address`: it exits 0, the application and its ledger actor are gone, and the
  cluster (the nodes it still has, Serve's controller) keeps running. Then the cluster is shut down here.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from benchmarks.fake_openai import FakeOpenAIServer
from models.registry import OFFLINE_ENV
from serving.http_edge import RAY_HTTP_CALLBACK
from serving.ports import free_port
from tests.support.app import TEST_ENGINE, RunningApp, _start, _wait_ready, stop_app
from tests.support.audit import audit_records

pytestmark = pytest.mark.engine

LIMIT = 20  # requests a minute of the key "limited"
NODE_ENV = {
    # What the cluster's nodes pass on to Serve's processes and the replicas (an operator sets these before
    # `ray start`; README "Running on a Ray cluster").
    "RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH": RAY_HTTP_CALLBACK,
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_LOG_TO_STDERR": "0",
    **OFFLINE_ENV,
    "FAKE_COMMERCIAL_KEY": "sk-fake-commercial",  # the router reads its backend's key from its node's environment
}


class Loopback:
    """The cluster and where to ask Ray's state API about it."""

    def __init__(self, cluster: Any, engine_node: Any, dashboard: str) -> None:
        self.cluster = cluster
        self.engine_node = engine_node
        self.dashboard = dashboard

    def actors(self, alive: bool = True) -> list[Any]:
        from ray.util.state import list_actors

        return list_actors(
            address=self.dashboard,
            filters=[("state", "=", "ALIVE")] if alive else None,
            limit=10_000,
            raise_on_missing_output=False,
        )

    def nodes(self) -> dict[str, Any]:
        """Alive nodes by id."""
        from ray.util.state import list_nodes

        return {
            n.node_id: n
            for n in list_nodes(address=self.dashboard, raise_on_missing_output=False)
            if n.state == "ALIVE"
        }

    def node_with(self, resource: str) -> str:
        (node,) = [i for i, n in self.nodes().items() if resource in (n.resources_total or {})]
        return node


@pytest.fixture(scope="module")
def loopback() -> Iterator[Loopback]:
    from ray.cluster_utils import Cluster

    dashboard_port = free_port()
    saved = {k: os.environ.get(k) for k in NODE_ENV}
    os.environ.update(NODE_ENV)  # the nodes' processes inherit this process's environment as they start
    try:
        cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "node_ip_address": "127.0.0.1",
                "num_cpus": 2,
                "resources": {"router": 2},
                "include_dashboard": True,
                "dashboard_host": "127.0.0.1",
                "dashboard_port": dashboard_port,
                "gcs_server_port": free_port(),
                # Ray's fixed defaults would collide with another Ray on this shared host.
                "dashboard_agent_listen_port": free_port(),
            },
        )
        try:
            engine_node = cluster.add_node(node_ip_address="127.0.0.1", num_cpus=4, resources={"engine": 1})
            cluster.wait_for_nodes()
        except BaseException:
            cluster.shutdown()
            raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield Loopback(cluster, engine_node, f"http://127.0.0.1:{dashboard_port}")
    finally:
        cluster.shutdown()


@pytest.fixture(scope="module")
def joined(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, loopback: Loopback, fake_commercial: FakeOpenAIServer
) -> Iterator[RunningApp]:
    from routing.keys import create_key

    workdir = tmp_path_factory.mktemp("joined")
    port = free_port()
    config = {
        "server": {
            "host": "127.0.0.1",
            "port": port,
            "proxy": "serve",
            "metrics_port": free_port(),
            "ingress_replicas": 2,
            "ingress_ray_resources": {"router": 1},
            "drain_timeout_s": 5,
        },
        "audit": {"path": str(workdir / "audit.jsonl")},
        "auth": {"keys_file": str(workdir / "keys.json"), "default_rate_per_minute": 100_000},
        "backends": [
            {
                "name": "local",
                "kind": "vllm",
                "model_source": str(tiny_model),
                "served_model_name": "tiny",
                "max_classification": "SECRET",
                "cpu_threads": 1,
                "ray_resources": {"engine": 1},
                "engine": {**TEST_ENGINE, "dtype": "bfloat16", "max_model_len": 512, "max_num_seqs": 8},
            },
            {
                "name": "commercial",
                "kind": "openai",
                "sovereign": False,
                "max_classification": "OFFICIAL",
                "base_url": fake_commercial.base_url,
                "api_key_env": "FAKE_COMMERCIAL_KEY",
                "model": "gpt-fake",
                "timeout_s": 5,
                "connect_timeout_s": 2,
            },
        ],
        "models": [
            {"name": "default", "route": ["local"]},
            {"name": "mixed", "route": ["local", "commercial"], "request_timeout_s": 20},
        ],
        "egress_review": {"enabled": False},  # no MiniLM to load here: this module is about placement and faults
    }
    keys = {
        "tester": create_key(workdir / "keys.json", "tester"),
        "limited": create_key(workdir / "keys.json", "limited", rate_per_minute=LIMIT),
        "limited-b": create_key(workdir / "keys.json", "limited-b", rate_per_minute=LIMIT),
    }
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    process = _start(
        ["--config", str(config_path), "--address", loopback.cluster.address],
        workdir,
        {"VLLM_CPU_KVCACHE_SPACE": "1"},
        own_session=False,
    )
    root = f"http://127.0.0.1:{port}"
    running = RunningApp(f"{root}/v1", root, keys, workdir / "audit.jsonl", workdir / "server.log", config, process)
    try:
        _wait_ready(process, port, workdir / "server.log", timeout_s=900)
        yield running
    finally:
        stop_app(process)


def _ask(app: RunningApp, caller: str = "tester") -> Any:
    return app.client(caller).chat.completions.with_raw_response.create(
        model="default", max_tokens=2, messages=[{"role": "user", "content": "Hello"}]
    )


def test_engines_on_the_engine_node_routers_on_the_router_node(joined: RunningApp, loopback: Loopback) -> None:
    raw = _ask(joined)
    assert raw.http_response.status_code == 200
    assert raw.headers["x-sovereign-backend"] == "local"
    assert raw.parse().choices[0].message is not None
    router_node, engine_node = loopback.node_with("router"), loopback.node_with("engine")
    assert router_node != engine_node
    replicas = [a for a in loopback.actors() if a.class_name.startswith("ServeReplica:sovereign:")]
    where = sorted((a.class_name.rsplit(":", 1)[1], a.node_id) for a in replicas)
    assert where == [("engine-local", engine_node), ("ingress", router_node), ("ingress", router_node)], where


def test_two_router_replicas_share_a_callers_request_rate(joined: RunningApp) -> None:
    """40 requests at once from a key limited to 20 a minute, spread by Serve's proxy over both router replicas:
    at most the limit answered, and what refilled while they ran (a permit every 3 s), every other one 429 with
    retry-after."""
    began = time.monotonic()
    results = _burst(joined, "limited", 40)
    refills = _refills(time.monotonic() - began)
    answered = [r for r in results if r[0] == 200]
    limited = [r for r in results if r[0] == 429]
    assert len(answered) + len(limited) == 40, results
    assert 0 < len(answered) <= LIMIT + refills, (refills, results)
    assert all(retry is not None and int(retry) >= 1 for _, retry in limited), limited
    # Each router replica served some of them (each has its own metrics listener: metrics_port and the next).
    served = [_requests_counted(joined.config["server"]["metrics_port"] + i) for i in range(2)]
    assert all(n > 0 for n in served), served


def _refills(elapsed_s: float) -> int:
    """Permits the key's bucket can have refilled while a burst ran (LIMIT a minute), and one in progress: on a
    quiet machine 40 requests take a few seconds (one refill); on a loaded one, tens of seconds."""
    return int(elapsed_s * LIMIT / 60) + 1


def _burst(app: RunningApp, caller: str, n: int) -> list[tuple[int, str | None]]:
    """``n`` requests at once: (status, retry-after) of each."""

    def one(_: int) -> tuple[int, str | None]:
        try:
            return _ask(app, caller).http_response.status_code, None
        except openai.APIStatusError as exc:
            return exc.status_code, exc.response.headers.get("retry-after")

    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _requests_counted(port: int, missing: float | None = None) -> float:
    """Requests a router replica counted; ``missing`` where nothing listens on ``port`` (else the error)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    except httpx.ConnectError:
        if missing is None:
            raise
        return missing
    return sum(
        s.value
        for f in text_string_to_metric_families(text)
        if f.name == "sovereign_requests"
        for s in f.samples
        if s.name.endswith("_total")
    )


def _gauge(port: int, name: str, **labels: str) -> float | None:
    """A sample of a gauge on a router replica's metrics listener (None when it has none with those labels)."""
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    return next(
        (
            s.value
            for f in text_string_to_metric_families(text)
            if f.name == name
            for s in f.samples
            if s.labels == labels
        ),
        None,
    )


def test_a_router_replica_killed_under_load(joined: RunningApp, loopback: Loopback) -> None:
    """SIGKILL to one of the two router replicas while eight clients send requests: each request is answered or
    fails cleanly (an error status or a closed connection, never a hang), the other replica keeps serving, Serve
    replaces the dead one, and every request answered 200 has its audit record."""
    victim = next(a for a in loopback.actors() if a.class_name == "ServeReplica:sovereign:ingress")
    stop_at = time.monotonic() + 12
    outcomes: list[tuple[str, str | None]] = []

    def client(_: int) -> None:
        api = joined.client(timeout=60)
        while time.monotonic() < stop_at:
            try:
                raw = api.chat.completions.with_raw_response.create(
                    model="default", max_tokens=2, messages=[{"role": "user", "content": "Hello"}]
                )
                outcomes.append(("200", raw.headers["x-request-id"]))
            except openai.APITimeoutError:
                outcomes.append(("timeout", None))
            except openai.APIStatusError as exc:
                outcomes.append((str(exc.status_code), None))
            except openai.APIConnectionError:
                outcomes.append(("connection", None))

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        running = [pool.submit(client, i) for i in range(8)]
        time.sleep(3)
        os.kill(victim.pid, signal.SIGKILL)
        for future in running:
            future.result()
    kinds = {kind for kind, _ in outcomes}
    assert "timeout" not in kinds, outcomes
    assert kinds <= {"200", "connection"} | {str(s) for s in range(500, 600)}, outcomes
    answered = [rid for kind, rid in outcomes if kind == "200"]
    assert len(answered) > 8, outcomes  # the surviving replica kept serving
    deadline = time.monotonic() + 120  # Serve replaces the dead replica: two router replicas alive again
    while len([a for a in loopback.actors() if a.class_name == "ServeReplica:sovereign:ingress"]) < 2:
        assert time.monotonic() < deadline, "the killed router replica was not replaced"
        time.sleep(2)
    # The new replica serves its metrics too, on the port the dead one left.
    ports = [joined.config["server"]["metrics_port"] + i for i in range(2)]
    while (counted := [_requests_counted(port, missing=-1) for port in ports]).count(-1):
        assert time.monotonic() < deadline, counted
        time.sleep(2)
    audited = {record.get("request_id") for record in audit_records(joined.audit_path)}
    assert not set(answered) - audited


def test_without_the_ledger_each_router_replica_keeps_its_share(joined: RunningApp, loopback: Loopback) -> None:
    """The ledger actor gone for good: requests are still served, and each of the two replicas limits the caller to
    half its rate on its own, so together they still let through no more than the limit (plus a refill)."""
    import subprocess
    import sys

    kill = (
        "import ray, sys; ray.init(address=sys.argv[1], log_to_driver=False); "
        "ray.kill(ray.get_actor('sovereign-ledger-sovereign', namespace='sovereign'), no_restart=True)"
    )
    # (Ray would replace the loopback address by this host's outward one without that setting: serving/serve.py)
    subprocess.run(
        [sys.executable, "-c", kill, loopback.cluster.address],
        check=True,
        timeout=120,
        capture_output=True,
        env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
    )
    began = time.monotonic()
    results = _burst(joined, "limited-b", 40)
    refills = _refills(time.monotonic() - began)
    answered = [r for r in results if r[0] == 200]
    assert {r[0] for r in results} <= {200, 429}, results
    assert 0 < len(answered) <= LIMIT + refills + 1, (refills, results)  # each replica's half rounds up


def test_the_engine_node_lost_gives_503_or_a_cleared_fallback_never_a_leak(
    joined: RunningApp, loopback: Loopback, commercial: FakeOpenAIServer
) -> None:
    """The engine node removed: a request with an NHS number (OFFICIAL-SENSITIVE) routed [local, commercial] gets
    503 no_cleared_backend_available
    (once the routers see no running engine replica: serving/availability.py), never the commercial side; an
    OFFICIAL one on the same route falls back to it, as the policy allows."""
    loopback.cluster.remove_node(loopback.engine_node, allow_graceful=False)
    personal = {
        "model": "mixed",
        "max_tokens": 2,
        "messages": [{"role": "user", "content": "enginegone NHS number 943 476 5919"}],
    }
    deadline, seen = time.monotonic() + 120, []
    while True:
        try:
            response = httpx.post(
                f"{joined.base_url}/chat/completions", json=personal, headers=joined.headers(), timeout=60
            )
            seen.append(response.status_code)
            if response.status_code == 503 and response.json()["error"]["code"] == "no_cleared_backend_available":
                break
        except httpx.TimeoutException:
            seen.append(0)
        assert time.monotonic() < deadline, seen
        time.sleep(1)
    assert set(seen) <= {200, 503, 504, 0}, seen  # before the loss is seen: answered, failed or timed out
    # That answer came from one router replica; the other sees the loss on its own next look at Serve's status
    # (until then an OFFICIAL request it takes still waits for the engine, up to the model's request_timeout_s).
    ports = [joined.config["server"]["metrics_port"] + i for i in range(2)]
    while (up := [_gauge(port, "sovereign_backend_available", backend="local") for port in ports]) != [0, 0]:
        assert time.monotonic() < deadline, up
        time.sleep(1)
    official = joined.client().chat.completions.with_raw_response.create(
        model="mixed", max_tokens=2, messages=[{"role": "user", "content": "What time is it?"}]
    )
    assert official.http_response.status_code == 200
    assert official.headers["x-sovereign-backend"] == "commercial"
    assert "enginegone" not in json.dumps(commercial.received)


def test_stopping_serve_address_leaves_the_cluster_running(joined: RunningApp, loopback: Loopback) -> None:
    # The engine node an earlier test removed may still be listed alive until the GCS notices: not counted.
    removed = {loopback.engine_node.node_id}
    nodes_before = set(loopback.nodes()) - removed
    assert stop_app(joined.process) == 0, joined.log_path.read_text()[-3000:]
    assert set(loopback.nodes()) - removed == nodes_before  # no node stopped
    alive = loopback.actors()
    assert any(a.class_name == "ServeController" for a in alive)  # Serve stays for the cluster's other apps
    assert not [a for a in alive if a.class_name.startswith("ServeReplica:sovereign:")]
    assert not [a for a in alive if a.name == "sovereign-ledger-sovereign"]
