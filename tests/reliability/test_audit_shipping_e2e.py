"""Audit shipping beside a real gateway: records of real requests (egress and final) reach a loopback syslog server
in order while it is stopped and restarted mid-run, anchors prove the log; a full disk still refuses egress."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from routing.audit_cli import main as audit_main
from routing.audit_ship import AnchorConfig, ShippingConfig, start_shipper
from tests.reliability.harness import running_harness
from tests.routing.test_audit_ship import in_order_without_gaps, lines_of, wait_until
from tests.support.syslog import SyslogServer


def _chat(base_url: str, headers: dict[str, str], model: str) -> httpx.Response:
    body = {"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "What does a magistrate do?"}]}
    return httpx.post(f"{base_url}/chat/completions", json=body, headers=headers, timeout=30)


def test_gateway_records_are_shipped_in_order_through_a_sink_restart(tmp_path: Path) -> None:
    server = SyslogServer()
    anchors = tmp_path / "anchors" / "anchors.jsonl"
    with running_harness(tmp_path) as h:
        shipping = ShippingConfig(
            kind="syslog", endpoint=server.endpoint, poll_s=0.05, retry_max_s=0.3, timeout_s=2, batch_records=5
        )
        shipper = start_shipper(h.audit_path, shipping, AnchorConfig(interval_s=1, sink="file", path=anchors))
        assert shipper is not None
        try:
            for phase in range(3):
                for _ in range(6):
                    assert _chat(h.base_url, h.headers, "commercial-only").status_code == 200
                if phase == 0:
                    wait_until(lambda: len(server.received()) >= 12)
                    server.stop()
                elif phase == 1:
                    server.start()
            wait_until(lambda: len({m.body for m in server.received()}) >= len(lines_of(h.audit_path)))
        finally:
            shipper.close()
            server.stop()
        shipped = [m.body for m in server.received()]
        in_order_without_gaps(shipped, lines_of(h.audit_path))
        events = [json.loads(b)["event"] for b in dict.fromkeys(shipped)]
        assert events.count("egress") == 18 and events.count("request") == 18
        assert audit_main(["verify", str(h.audit_path), "--anchors", str(anchors)]) == 0


def test_full_disk_with_shipping_configured_still_refuses_egress(tmp_path: Path) -> None:
    server = SyslogServer()
    with running_harness(tmp_path, audit_path=Path("/dev/full")) as h:
        shipping = ShippingConfig(
            kind="syslog", endpoint=server.endpoint, poll_s=0.05, retry_max_s=0.2, cursor_path=tmp_path / "audit.cursor"
        )
        shipper = start_shipper("/dev/full", shipping, None)
        assert shipper is not None
        try:
            response = _chat(h.base_url, h.headers, "commercial-only")
            assert response.status_code == 503 and response.json()["error"]["code"] == "audit_unavailable"
            assert h.commercial.received == []
        finally:
            shipper.close(timeout_s=0.5)
            server.stop()
    assert server.received() == []
