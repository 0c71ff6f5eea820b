"""The in-process gateway of tests/support/inprocess.py, configured for the fault tests: a backend whose port
refuses connections, a short commercial timeout (so "slow" and "hang" are past it), and a sovereign backend cleared
for TOP SECRET (so a request the classifier could not read is still served, locally).
"""

from __future__ import annotations

import socket
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from tests.support import wheel_minilm
from tests.support.inprocess import InProcessGateway, running_gateway

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
            {
                "name": "uk",
                "sovereign": True,
                "max_classification": "TOP SECRET",
                "base_url": uk_url,
                "timeout_s": 10,
                "connect_timeout_s": 2,
                **fake,
            },
            {
                "name": "commercial",
                "sovereign": False,
                "max_classification": "OFFICIAL",
                "base_url": commercial_url,
                "timeout_s": COMMERCIAL_TIMEOUT_S,
                "connect_timeout_s": 0.5,
                **fake,
            },
            {
                "name": "refused",
                "sovereign": False,
                "max_classification": "OFFICIAL",
                "base_url": f"http://127.0.0.1:{closed_port()}/v1",
                "timeout_s": 2,
                "connect_timeout_s": 0.5,
                **fake,
            },
        ],
        "egress_review": {"model": wheel_minilm()},
        "models": [
            {"name": "commercial-first", "route": ["commercial", "uk"]},
            {"name": "commercial-only", "route": ["commercial"]},
            {"name": "refused-first", "route": ["refused", "uk"]},
            {"name": "refused-only", "route": ["refused"]},
        ],
    }


Harness = InProcessGateway


def running_harness(workdir: Path, audit_path: Path | None = None) -> AbstractContextManager[Harness]:
    """The in-process gateway (tests/support/inprocess.py) with this suite's configuration."""
    return running_gateway(
        workdir, config_for=lambda w, uk, commercial: harness_config(w, uk, commercial, audit_path or w / "audit.jsonl")
    )
