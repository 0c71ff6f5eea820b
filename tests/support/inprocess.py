"""The gateway in this process, without Ray: both backends are loopback fakes, so faults are fully controllable.

The "uk" fake stands for a sovereign OpenAI-compatible endpoint (say, a vLLM server in a UK data centre), the
"commercial" fake for OpenAI. Used for the fault-schedule property test, the reliability suite (with its own
configuration, tests/reliability/harness.py), tracing and metrics tests. It can count the server loop's tasks and
this process's sockets to each fake: the evidence that nothing leaks.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import uvicorn

from benchmarks.fake_openai import FakeOpenAIServer
from routing.audit import AuditLog
from routing.budgets import Ledger
from routing.keys import KeyStore, create_key
from serving.api import create_app
from serving.backends.openai_http import OpenAIBackend
from serving.config import OpenAIBackendConfig, load_settings
from serving.gateway import Gateway
from serving.metrics import serve_metrics
from tests.support import wheel_minilm
from tests.support.audit import audit_records, final_record

# A configuration for the gateway: (working folder, the uk fake's URL, the commercial fake's URL) -> config data.
ConfigFor = Callable[[Path, str, str], dict[str, Any]]


@dataclass
class InProcessGateway:
    base_url: str
    key: str
    gateway: Gateway
    uk: FakeOpenAIServer
    commercial: FakeOpenAIServer
    audit_path: Path
    metrics_url: str  # the metrics listener, off the API port as in the app
    loop: asyncio.AbstractEventLoop  # the server's
    keys: dict[str, str] = field(default_factory=dict)  # the extra callers' API keys
    baseline_tasks: int = 0  # the server loop's tasks at rest, as a test counted them (``tasks``)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def tasks(self) -> int:
        """Tasks alive on the server's event loop (the counting coroutine itself excluded)."""

        async def count() -> int:
            return len(asyncio.all_tasks()) - 1

        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(timeout=5)

    def sockets_to(self, fake: FakeOpenAIServer) -> int:
        """Open TCP connections from this process to ``fake`` (the backend client's pool)."""
        port = int(fake.base_url.rsplit(":", 1)[1].split("/")[0])
        return sum(
            1
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        )

    def records(self) -> list[dict[str, Any]]:
        return audit_records(self.audit_path)

    def final_record(self, request_id: str, timeout_s: float = 5) -> dict[str, Any]:
        """The one ``request`` record of ``request_id`` (a stream's is written just after its last byte)."""
        return final_record(self.audit_path, request_id, timeout_s)


def gateway_config(
    workdir: Path, uk_url: str, commercial_url: str, egress_review: dict[str, Any] | None = None
) -> dict[str, Any]:
    fake = {
        "kind": "openai",
        "api_key_env": "FAKE_KEY",
        "model": "fake",
        "embedding_model": "fake-embed",
        "timeout_s": 2,
        "connect_timeout_s": 1,
    }
    return {
        "server": {"max_body_bytes": 65536},
        "audit": {"path": str(workdir / "audit.jsonl")},
        "auth": {"keys_file": str(workdir / "keys.json"), "default_rate_per_minute": 100000},
        "backends": [
            {"name": "uk", "sovereign": True, "max_classification": "SECRET", "base_url": uk_url, **fake},
            {
                "name": "commercial",
                "sovereign": False,
                "max_classification": "OFFICIAL",
                "base_url": commercial_url,
                **fake,
            },
        ],
        "models": [
            {"name": "default", "route": ["uk", "commercial"]},
            {"name": "commercial-first", "route": ["commercial", "uk"]},
            {"name": "deadline", "route": ["uk", "commercial"], "request_timeout_s": 1.0},
            {"name": "commercial-only", "route": ["commercial"]},
        ],
        # On, as it is by default with a non-sovereign backend configured; the model from its wheel.
        "egress_review": {"model": wheel_minilm(), **(egress_review or {})},
    }


@contextmanager
def running_gateway(
    workdir: Path,
    *,
    auth: dict[str, Any] | None = None,
    ledger: Ledger | None = None,
    keys: dict[str, dict[str, Any]] | None = None,
    egress_review: dict[str, Any] | None = None,
    config_for: ConfigFor | None = None,
    audit_path: Path | None = None,
) -> Iterator[InProcessGateway]:
    """``auth``: settings added to the config's ``auth`` section (OIDC, budgets); ``ledger``: the budgets' ledger
    (e.g. an ``InProcessLedger`` with a test clock); ``keys``: more API keys, caller -> ``create_key`` arguments
    (their keys are in ``InProcessGateway.keys``); ``egress_review``: settings of the egress review;
    ``config_for``: another configuration than ``gateway_config``; ``audit_path``: where the audit log goes."""
    import os

    os.environ.setdefault("FAKE_KEY", "sk-fake")
    with FakeOpenAIServer() as uk, FakeOpenAIServer() as commercial:
        if config_for is None:
            config = gateway_config(workdir, uk.base_url, commercial.base_url, egress_review)
        else:
            config = config_for(workdir, uk.base_url, commercial.base_url)
        config["auth"].update(auth or {})
        if audit_path is not None:
            config["audit"]["path"] = str(audit_path)
        settings = load_settings(data=config)
        keys_file = settings.auth.keys_file
        assert keys_file is not None  # gateway_config names one
        key = create_key(keys_file, "tester")
        extra_keys = {name: create_key(keys_file, name, **args) for name, args in (keys or {}).items()}
        backends = {b.name: OpenAIBackend(b) for b in settings.backends if isinstance(b, OpenAIBackendConfig)}
        gateway = Gateway(
            settings, backends, audit=AuditLog(settings.audit.path), keys=KeyStore.load(keys_file), ledger=ledger
        )
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(create_app(gateway), log_level="warning", lifespan="off"))
        metrics = serve_metrics(gateway.metrics.registry, "127.0.0.1", 0)
        assert metrics is not None
        loops: list[asyncio.AbstractEventLoop] = []

        async def serve() -> None:
            loops.append(asyncio.get_running_loop())
            await server.serve(sockets=[sock])
            await gateway.close()  # in the loop that used the backends' clients, as a replica's shutdown does

        thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            yield InProcessGateway(
                f"http://127.0.0.1:{port}/v1",
                key,
                gateway,
                uk,
                commercial,
                Path(settings.audit.path),
                f"http://127.0.0.1:{metrics[1]}/metrics",
                loops[0],
                extra_keys,
            )
        finally:
            metrics[0].shutdown()
            server.should_exit = True
            thread.join(timeout=15)
            gateway.audit.close()  # idempotent: done already unless the server thread hung
            sock.close()
