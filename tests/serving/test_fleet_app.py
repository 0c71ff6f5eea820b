"""The model fleet on real engines: two replicas of one local model behind prefix-aware routing, and LoRA adapters
served under their own model names (Ray Serve LLM's multiplexing) after their manifest is verified.

One app of its own for the module (the shared session app runs one replica and no adapters): the tiny Llama on two
CPU engine replicas with LoRA enabled (no embedding model, no commercial backend, so no egress review). Its cost:
the whole module took 117 s and 119 s on the 2-vCPU development VM (start-up, tiny adapter built with peft,
three tests), with other test sessions running beside it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from models.prepare import prepare_adapter
from serving.ports import free_port
from tests.support.app import TEST_ENGINE, RunningApp, start_app, stop_app

pytestmark = pytest.mark.engine

SUCCESS = re.compile(r"^ray_vllm_request_success_total\{(?P<labels>[^}]*)\} (?P<value>\S+)$", re.M)
REPLICA = re.compile(r'ReplicaId="(?P<id>[^"]*)"')


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    """The adapters folder: `probation` and `tampered` (the same adapter; the test changes the second's weights
    after the server has verified it at start, as a swap on a shared volume would)."""
    from benchmarks.tiny_model import build_tiny_lora

    work = tmp_path_factory.mktemp("lora")
    source = build_tiny_lora(tiny_model, work / "peft-out")
    root = work / "adapters"
    for name in ("probation", "tampered"):
        prepare_adapter(name, source, root)
    return root


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path, adapters: Path) -> Iterator[RunningApp]:
    from routing.keys import create_key

    workdir = tmp_path_factory.mktemp("fleet")
    config = {
        "server": {
            "host": "127.0.0.1",
            "port": free_port(),
            "metrics_port": free_port(),
            "ray_metrics_port": free_port(),
        },
        "audit": {"path": str(workdir / "audit.jsonl")},
        "auth": {"keys_file": str(workdir / "keys.json")},
        "backends": [
            {
                "name": "local",
                "kind": "vllm",
                "model_source": str(tiny_model),
                "served_model_name": "tiny",
                "max_classification": "SECRET",
                "cpu_threads": 1,
                "request_router": "prefix_aware",
                "autoscaling": {"min_replicas": 2, "max_replicas": 2},
                "lora": {"adapters_dir": str(adapters), "max_adapters_per_replica": 2, "max_lora_rank": 8},
                "engine": {**TEST_ENGINE, "dtype": "bfloat16", "max_model_len": 1024, "max_num_seqs": 4},
            },
            {
                "name": "probation-lora",
                "kind": "adapter",
                "base": "local",
                "adapter": "probation",
                "max_classification": "OFFICIAL-SENSITIVE",
            },
            {
                "name": "tampered-lora",
                "kind": "adapter",
                "base": "local",
                "adapter": "tampered",
                "max_classification": "OFFICIAL-SENSITIVE",
            },
        ],
        "models": [
            {"name": "base", "route": ["local"]},
            {"name": "probation-letters", "route": ["probation-lora"]},
            {"name": "tampered", "route": ["tampered-lora"]},
        ],
    }
    keys = {"tester": create_key(workdir / "keys.json", "tester")}
    running = start_app(config, workdir, keys)
    try:
        yield running
    finally:
        stop_app(running.process)


def _successes_by_replica(fleet: RunningApp) -> dict[str, float]:
    text = httpx.get(f"http://127.0.0.1:{fleet.config['server']['ray_metrics_port']}/metrics", timeout=10).text
    counts: dict[str, float] = {}
    for match in SUCCESS.finditer(text):
        replica = REPLICA.search(match["labels"])
        if replica:
            counts[replica["id"]] = counts.get(replica["id"], 0.0) + float(match["value"])
    return counts


def _settled(fleet: RunningApp, before: dict[str, float], expected: int, timeout_s: float = 90) -> dict[str, float]:
    """Requests finished per replica since ``before``, once Ray's endpoint counts all ``expected`` of them."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = _successes_by_replica(fleet)
        delta = {r: now.get(r, 0.0) - before.get(r, 0.0) for r in now}
        delta = {r: d for r, d in delta.items() if d}
        if sum(delta.values()) >= expected or time.monotonic() > deadline:
            return delta
        time.sleep(2)


def test_requests_sharing_a_long_prefix_land_on_one_replica(fleet: RunningApp) -> None:
    client = fleet.client()
    groups = {
        "court": "You draft court listings for the clerk. " * 25,
        "prison": "You answer questions about prison visits. " * 25,
    }
    placements = []
    for system in groups.values():
        before = _successes_by_replica(fleet)
        for i in range(5):
            client.chat.completions.create(
                model="base",
                max_tokens=4,
                temperature=0,
                messages=[{"role": "system", "content": system}, {"role": "user", "content": f"Question {i}?"}],
            )
        delta = _settled(fleet, before, 5)
        assert sum(delta.values()) == 5, delta
        assert len(delta) == 1, f"one prefix spread over replicas: {delta}"
        placements.append(next(iter(delta)))
    # The second prefix matched nothing: it went to the replica holding the fewest prefixes, the other one.
    assert placements[0] != placements[1]


def test_adapter_is_served_under_its_own_name_and_changes_the_output(fleet: RunningApp) -> None:
    client = fleet.client()
    messages = [{"role": "user", "content": "The quick brown fox"}]
    base = client.chat.completions.create(model="base", messages=messages, max_tokens=16, temperature=0)
    tuned = client.chat.completions.create(model="probation-letters", messages=messages, max_tokens=16, temperature=0)
    assert base.choices[0].message.content != tuned.choices[0].message.content
    with httpx.Client() as http:
        reply = http.post(
            f"{fleet.base_url}/chat/completions",
            headers=fleet.headers(),
            json={"model": "probation-letters", "messages": messages, "max_tokens": 4},
        )
    assert reply.status_code == 200
    assert reply.headers["x-sovereign-backend"] == "probation-lora"
    # The adapter's own clearance: SECRET content is refused for it, while the base would take it.
    secret = [{"role": "user", "content": "SECRET\nThe quick brown fox"}]
    with httpx.Client() as http:
        refused = http.post(
            f"{fleet.base_url}/chat/completions",
            headers=fleet.headers(),
            json={"model": "probation-letters", "messages": secret, "max_tokens": 4},
        )
    assert refused.status_code == 403


def test_a_tampered_adapter_is_refused(fleet: RunningApp, adapters: Path) -> None:
    weights = adapters / "tampered" / "adapter_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0x01  # one bit in the last tensor's data
    weights.write_bytes(bytes(data))
    with httpx.Client(timeout=120) as http:
        reply = http.post(
            f"{fleet.base_url}/chat/completions",
            headers=fleet.headers(),
            json={
                "model": "tampered",
                "messages": [{"role": "user", "content": "The quick brown fox"}],
                "max_tokens": 4,
            },
        )
    assert reply.status_code >= 500, reply.text
    assert "tampered" not in reply.text or "adapter_model" not in reply.text  # no file paths in the error
