"""The running app ships its audit records (egress and final) and anchors to the loopback OTLP collector as logs,
in order, from the router replica itself (tests/conftest.py configures `audit.shipping` and `audit.anchors`)."""

from __future__ import annotations

import json
import time

import httpx

from routing.audit import verify
from routing.audit_ship import ANCHOR_TYPE, RECORD_EVENT
from tests.support.app import RunningApp
from tests.support.otlp import OTLPCollector


def test_app_ships_every_audit_record_in_order_and_anchors_the_head(
    app: RunningApp, otlp_collector: OTLPCollector
) -> None:
    for model in ("commercial-only", "local-only"):
        response = httpx.post(
            f"{app.base_url}/chat/completions",
            headers=app.headers(),
            timeout=120,
            json={"model": model, "max_tokens": 2, "messages": [{"role": "user", "content": "what is a magistrate"}]},
        )
        assert response.status_code == 200, response.text
    time.sleep(0.5)  # the final record of the last request is written as its response ends
    written = [line.decode() for line in app.audit_path.read_bytes().splitlines()]
    deadline = time.monotonic() + 60
    while True:
        shipped = list(dict.fromkeys(r.body for r in otlp_collector.received_logs(RECORD_EVENT)))
        if shipped[: len(written)] == written or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert shipped[: len(written)] == written
    events = {json.loads(line)["event"] for line in written}
    assert events == {"egress", "request"}
    record = otlp_collector.received_logs(RECORD_EVENT)[0]
    assert record.service == "sovereign-inference"
    assert record.attributes["sovereign.audit.log"] == app.audit_path.name
    # anchors arrive every few seconds; each names a prefix of this log
    deadline = time.monotonic() + 30
    while not otlp_collector.received_logs(ANCHOR_TYPE) and time.monotonic() < deadline:
        time.sleep(0.2)
    anchor = json.loads(otlp_collector.received_logs(ANCHOR_TYPE)[-1].body)
    assert anchor["log"] == app.audit_path.name
    lines = app.audit_path.read_bytes().splitlines(keepends=True)
    assert verify(app.audit_path).ok
    assert json.loads(lines[anchor["lines"] - 1])["hash"] == anchor["head"]
