"""A bounded soak on loopback: 64 concurrent streaming clients for 60 s against the CPU model, mixed traffic.

Half the clients send sensitive requests (an NHS number: local only), half low-risk ones (some to a model that
prefers the commercial fake). Each client starts a request at most every ``PACE_S`` seconds, and the two halves use
different API keys, so that the per-caller rate limit (600/min here) is never what the soak measures; streams are
long enough (64 tokens locally, a slow first byte commercially) that all 64 are in flight together.
Afterwards: no unexpected errors, every request audited exactly once, the chain
verifies, nothing sensitive reached the fake, and the ingress replica's memory is flat after warm-up.
The figures are printed (run with ``-s`` to see them) and written to ``soak.json`` beside the server log.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from routing.audit import verify
from tests.reliability.procs import INGRESS_TITLE, find_replica
from tests.support.app import RunningApp
from tests.support.audit import audit_records

pytestmark = [pytest.mark.engine, pytest.mark.soak]

CLIENTS = 64
DURATION_S = float(os.environ.get("SOVEREIGN_SOAK_SECONDS", "60"))
WARMUP_S = 15.0
PACE_S = 6.0
NHS = "943 476 5919"
SENSITIVE_TAG = "soaksensitive"


@dataclass
class Tally:
    ok: int = 0
    errors: Counter[str] = field(default_factory=Counter)
    request_ids: list[str] = field(default_factory=list)
    sensitive_ids: set[str] = field(default_factory=set)
    backends: Counter[str] = field(default_factory=Counter)
    in_flight: int = 0
    peak_in_flight: int = 0


def _body(client: int, n: int) -> tuple[dict, bool]:
    sensitive = client % 2 == 0
    if sensitive:
        content = f"{SENSITIVE_TAG} case {client}-{n}: NHS number {NHS}, summarise the referral."
        model = "default" if n % 2 else "commercial-first"
    else:
        content = f"Explain what a magistrate does, in brief ({client}-{n})."
        model = "commercial-first" if client % 4 == 1 else "default"
    return {
        "model": model,
        "stream": True,
        "max_tokens": 64,
        "ignore_eos": True,
        "messages": [{"role": "user", "content": content}],
    }, sensitive


async def _client(app: RunningApp, http: httpx.AsyncClient, client: int, stop_at: float, tally: Tally) -> None:
    n = 0
    caller = "tester" if client % 2 == 0 else "ceiling-official"  # sensitive / low-risk: one rate budget each
    while time.monotonic() < stop_at:
        n += 1
        began = time.monotonic()
        body, sensitive = _body(client, n)
        tally.in_flight += 1
        tally.peak_in_flight = max(tally.peak_in_flight, tally.in_flight)
        try:
            async with http.stream(
                "POST", f"{app.base_url}/chat/completions", json=body, headers=app.headers(caller)
            ) as response:
                text = (await response.aread()).decode()
                request_id = response.headers.get("x-request-id", "")
                tally.request_ids.append(request_id)
                if sensitive:
                    tally.sensitive_ids.add(request_id)
                if response.status_code != 200:
                    tally.errors[f"http_{response.status_code}"] += 1
                elif not text.rstrip().endswith("data: [DONE]"):
                    tally.errors["stream_not_finished"] += 1
                else:
                    tally.ok += 1
                    tally.backends[response.headers.get("x-sovereign-backend", "?")] += 1
        except httpx.HTTPError as exc:
            tally.errors[type(exc).__name__] += 1
        finally:
            tally.in_flight -= 1
        await asyncio.sleep(max(0.0, PACE_S - (time.monotonic() - began)))


async def _soak(app: RunningApp, rss: list[tuple[float, int]]) -> Tally:
    tally = Tally()
    ingress = find_replica(app.process.pid, INGRESS_TITLE)
    assert ingress is not None, "cannot find this app's ingress replica"
    started = time.monotonic()
    stop_at = started + DURATION_S
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(limits=limits, timeout=httpx.Timeout(120, connect=10)) as http:
        clients = [asyncio.create_task(_client(app, http, i, stop_at, tally)) for i in range(CLIENTS)]
        while time.monotonic() < stop_at:
            rss.append((round(time.monotonic() - started, 1), ingress.memory_info().rss))
            await asyncio.sleep(2)
        await asyncio.gather(*clients)
    rss.append((round(time.monotonic() - started, 1), ingress.memory_info().rss))
    return tally


def test_soak(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    commercial.set_fault("slow", delay_s=1.0)  # a commercial side that answers like a real one: not at once
    before_lines = len(audit_records(app.audit_path))
    rss: list[tuple[float, int]] = []
    tally = asyncio.run(_soak(app, rss))
    time.sleep(1)  # last stream records are written right after the last byte

    warm = [v for t, v in rss if t >= WARMUP_S]
    report = {
        "clients": CLIENTS,
        "duration_s": DURATION_S,
        "requests": len(tally.request_ids),
        "ok": tally.ok,
        "errors": dict(tally.errors),
        "backends": dict(tally.backends),
        "ingress_rss_mib": {
            "start": round(rss[0][1] / 2**20, 1),
            "after_warmup": round(warm[0] / 2**20, 1),
            "end": round(rss[-1][1] / 2**20, 1),
            "max_after_warmup": round(max(warm) / 2**20, 1),
        },
        "requests_per_s": round(len(tally.request_ids) / DURATION_S, 1),
        "peak_concurrent_streams": tally.peak_in_flight,
    }
    (app.log_path.parent / "soak.json").write_text(json.dumps(report, indent=2))
    print("\nsoak:", json.dumps(report))

    assert not tally.errors, report
    assert tally.peak_in_flight == CLIENTS, report
    assert tally.ok >= CLIENTS  # every client completed at least one stream

    records = audit_records(app.audit_path)[before_lines:]
    finals = Counter(r["request_id"] for r in records if r["event"] == "request")
    assert all(finals[rid] == 1 for rid in tally.request_ids), "a request was not audited exactly once"
    assert verify(app.audit_path).ok
    egress = [r for r in records if r["event"] == "egress"]
    assert all(r["level"] == "OFFICIAL" for r in egress)
    assert not {r["request_id"] for r in egress} & tally.sensitive_ids
    received = json.dumps(commercial.received)
    assert SENSITIVE_TAG not in received and NHS not in received

    # Flat after warm-up: the end is within 10% (+16 MiB of allocator slack) of the first warm sample.
    assert rss[-1][1] <= warm[0] * 1.10 + (16 << 20), report
