"""The audit file failing, the writer crashing, the classifier failing: fail closed, never unaudited egress.

Real failures, no mocks: an audit path whose parent is a regular file (unwritable, even as root), ``/dev/full``
(every write is ENOSPC), a writer process killed with SIGKILL mid-stream of records, a body the classifier
cannot walk.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from routing.audit import AuditLog, AuditRecord, verify
from routing.classify import classify_request
from routing.levels import Level
from tests.reliability.harness import Harness, running_harness

NHS = "943 476 5919"


def _chat(h: Harness, model: str, content: str, **extra: object) -> httpx.Response:
    body = {"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{h.base_url}/chat/completions", json=body, headers=h.headers, timeout=30)


def _unwritable(tmp_path: Path) -> Path:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the audit directory should be\n")
    return blocker / "audit.jsonl"


@pytest.mark.parametrize("where", ["unwritable", "disk_full"])
def test_audit_failure_refuses_egress_and_sends_nothing(tmp_path: Path, where: str) -> None:
    if where == "disk_full" and not Path("/dev/full").exists():
        pytest.skip("/dev/full is not available")
    audit_path = _unwritable(tmp_path) if where == "unwritable" else Path("/dev/full")
    with running_harness(tmp_path, audit_path=audit_path) as h:
        for model, stream in (("commercial-only", False), ("commercial-only", True), ("commercial-first", False)):
            response = _chat(h, model, "What does a magistrate do?", stream=stream)
            assert response.status_code == 503, response.text
            assert response.json()["error"]["code"] == "audit_unavailable"
        assert h.commercial.received == []  # nothing left the sovereign boundary unaudited
        # Sovereign traffic needs no egress record and is still served.
        local = _chat(h, "commercial-first", f"NHS number {NHS}")
        assert local.status_code == 200
        assert local.headers["x-sovereign-backend"] == "uk"
        assert h.commercial.received == []
        metrics = httpx.get(h.metrics_url).text
        failures = [line for line in metrics.splitlines() if line.startswith("sovereign_audit_failures_total")]
        assert failures and float(failures[0].split()[-1]) >= 3


_WRITER = """
import asyncio, sys
from routing.audit import AuditLog, AuditRecord, Attempt

async def main():
    log = AuditLog(sys.argv[1])
    i = 0
    while True:
        i += 1
        common = dict(request_id=f"r{i}", caller="c", endpoint="/v1/chat/completions", model="m",
                      declared_level=None, detected_level="OFFICIAL", level="OFFICIAL", policy_sha256="0" * 64,
                      latency_ms=1.0)
        await log.append(AuditRecord(event="egress", backend="commercial", status=200, **common), durable=True)
        if i == 50:
            print("writing", flush=True)
        await log.append(AuditRecord(event="request", backend="commercial", status=200,
                                     attempts=(Attempt(backend="commercial", outcome="ok", ms=1.0),), **common),
                         durable=False)

asyncio.run(main())
"""


def test_writer_killed_mid_stream_leaves_a_verifiable_chain_that_continues(tmp_path: Path) -> None:
    """SIGKILL between an egress record and its request record (or anywhere): the file still verifies."""
    path = tmp_path / "audit.jsonl"
    for _ in range(3):  # three crashes at arbitrary points, each followed by a restart
        proc = subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path)], stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2]
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"writing"
        time.sleep(0.3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        result = verify(path)
        assert result.ok, f"line {result.first_bad_line}: {result.reason}"
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert records[-1]["event"] in {"egress", "request"}
    # A fresh writer continues the same chain.
    log = AuditLog(path)
    import asyncio

    asyncio.run(
        log.append(
            AuditRecord(
                event="request",
                request_id="after-crash",
                caller="c",
                endpoint="/v1/chat/completions",
                model="m",
                declared_level=None,
                detected_level=None,
                level=None,
                policy_sha256="0" * 64,
                backend=None,
                status=401,
                latency_ms=0.1,
            ),
            durable=True,
        )
    )
    log.close()
    final = verify(path)
    assert final.ok and final.records == len(records) + 1


def _nested(depth: int) -> dict:
    node: dict = {"leaf": "x"}
    for _ in range(depth):
        node = {"n": node}
    return node


def test_classifier_error_is_top_secret_and_stays_sovereign(tmp_path: Path) -> None:
    """A body the classifier cannot walk (nesting far deeper than any real request) is treated as TOP SECRET."""
    with running_harness(tmp_path) as h:
        h.commercial.set_fault("ok")
        response = _chat(h, "commercial-first", "What does a magistrate do?", metadata=_nested(80))
        assert response.status_code == 200, response.text
        assert response.headers["x-sovereign-classification"] == "TOP SECRET"
        assert response.headers["x-sovereign-backend"] == "uk"
        refused = _chat(h, "commercial-only", "What does a magistrate do?", metadata=_nested(80))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "classification_not_permitted"
        assert h.commercial.received == []
        record = h.final_record(response.headers["x-request-id"])
        assert record["level"] == "TOP SECRET"
        assert {"type": "classification_error", "count": 1} in record["signals"]


def test_classifier_timeout_is_top_secret() -> None:
    """Running past the deadline fails closed the same way (the router cannot tell a slow scan from a safe one)."""
    # Many identifier-shaped candidates, all with a wrong check digit: only the deadline can make this sensitive.
    body = {"model": "m", "messages": [{"role": "user", "content": "ref 943 476 5910, " * 20000}]}
    assert classify_request(body, deadline_s=30).level is Level.OFFICIAL
    result = classify_request(body, deadline_s=0.0)
    assert result.level is Level.TOP_SECRET
    assert [s.type for s in result.signals] == ["classification_timeout"]
