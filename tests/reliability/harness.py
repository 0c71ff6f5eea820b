"""The gateway in this process (no Ray) with loopback fakes, plus the probes the fault tests need.

Unlike ``tests/support/inprocess.py`` this one also configures a backend whose port refuses connections, a short
commercial timeout (so "slow" and "hang" are past it), a sovereign backend cleared for TOP SECRET (so a request the
classifier could not read is still served, locally), and it can count the server loop's tasks and this process's
sockets to each fake: the evidence that nothing leaks.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import uvicorn

from benchmarks.fake_openai import FakeOpenAIServer
from routing.audit import AuditLog
from routing.keys import KeyStore, create_key
from serving.api import create_app
from serving.backends.openai_http import OpenAIBackend
from serving.config import OpenAIBackendConfig, load_settings
from serving.gateway import Gateway
from serving.metrics import serve_metrics
from tests.support import wheel_minilm
from tests.support.audit import audit_records, final_record

COMMERCIAL_TIMEOUT_S = 1.0


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def harness_config(workdir: Path, uk_url: str, commercial_url: str, audit_path: Path) -> dict[str, Any]:
    fake = {"kind": "openai", "api_key_env": "FAKE_KEY", "model": "fake", "embedding_model": "fake-embed"}
    return {
        "server": {"max_body_bytes": 65536},
        "audit": {"path": str(audit_path)},
        "auth": {"keys_file": str(workdir / "keys.json"), "default_rate_per_minute": 100000},
        "backends": [
            {"name": "uk", "sovereign": True, "max_classification": "TOP SECRET", "base_url": uk_url,
             "timeout_s": 10, "connect_timeout_s": 2, **fake},
            {"name": "commercial", "sovereign": False, "max_classification": "OFFICIAL", "base_url": commercial_url,
             "timeout_s": COMMERCIAL_TIMEOUT_S, "connect_timeout_s": 0.5, **fake},
            {"name": "refused", "sovereign": False, "max_classification": "OFFICIAL",
             "base_url": f"http://127.0.0.1:{closed_port()}/v1", "timeout_s": 2, "connect_timeout_s": 0.5, **fake},
        ],
        "egress_review": {"model": wheel_minilm()},
        "models": [
            {"name": "commercial-first", "route": ["commercial", "uk"]},
            {"name": "commercial-only", "route": ["commercial"]},
            {"name": "refused-first", "route": ["refused", "uk"]},
            {"name": "refused-only", "route": ["refused"]},
        ],
    }


@dataclass
class Harness:
    base_url: str
    key: str
    gateway: Gateway
    uk: FakeOpenAIServer
    commercial: FakeOpenAIServer
    audit_path: Path
    loop: asyncio.AbstractEventLoop
    metrics_url: str = ""  # the metrics listener, off the API port as in the app
    baseline_tasks: int = 0

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
        return sum(1 for c in psutil.Process().net_connections(kind="tcp")
                   if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)

    def records(self) -> list[dict[str, Any]]:
        return audit_records(self.audit_path)

    def final_record(self, request_id: str, timeout_s: float = 5) -> dict[str, Any]:
        """The one ``request`` record of ``request_id`` (a stream's is written just after its last byte)."""
        return final_record(self.audit_path, request_id, timeout_s)


@contextmanager
def running_harness(workdir: Path, audit_path: Path | None = None) -> Iterator[Harness]:
    os.environ.setdefault("FAKE_KEY", "sk-fake")
    with FakeOpenAIServer() as uk, FakeOpenAIServer() as commercial:
        settings = load_settings(data=harness_config(workdir, uk.base_url, commercial.base_url,
                                                     audit_path or workdir / "audit.jsonl"))
        key = create_key(workdir / "keys.json", "tester")
        backends = {b.name: OpenAIBackend(b) for b in settings.backends if isinstance(b, OpenAIBackendConfig)}
        gateway = Gateway(settings, backends, audit=AuditLog(settings.audit.path),
                          keys=KeyStore.load(workdir / "keys.json"))
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
            await gateway.close()

        thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.01)
        try:
            yield Harness(f"http://127.0.0.1:{port}/v1", key, gateway, uk, commercial,
                          Path(settings.audit.path), loops[0], f"http://127.0.0.1:{metrics[1]}/metrics")
        finally:
            metrics[0].shutdown()
            server.should_exit = True
            thread.join(timeout=15)
            sock.close()
