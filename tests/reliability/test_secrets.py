"""A canary sent in prompts appears nowhere we keep: server and Ray logs, audit, metrics, error bodies, traces.

API keys never appear in any of those either, and the keys file holds only hashes. The search covers every file
of this app's Ray session (found through the app's own processes, not "the latest session", since others may run
Ray here) and its working folder (server log, audit, keys, anything a trace exporter wrote).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from pathlib import Path

import httpx
import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from tests.reliability.procs import descendants, files_containing, ray_session_dir
from tests.support.app import RunningApp
from tests.support.otlp import OTLPCollector

pytestmark = pytest.mark.engine

NHS = "943 476 5919"


def _send_everything(app: RunningApp, canary: str) -> list[httpx.Response]:
    """The canary through every path: served locally, streamed, refused, invalid, too large, unauthorised."""
    url, h = app.base_url, app.headers()
    sensitive = f"OFFICIAL-SENSITIVE {canary} NHS {NHS}"
    calls = [
        (
            "chat/completions",
            h,
            {
                "model": "default",
                "max_tokens": 4,
                "messages": [{"role": "system", "content": canary}, {"role": "user", "content": sensitive}],
            },
        ),
        (
            "chat/completions",
            h,
            {
                "model": "local-only",
                "max_tokens": 4,
                "stream": True,
                "stream_options": {"include_usage": True},
                "messages": [{"role": "user", "content": canary}],
            },
        ),
        ("completions", h, {"model": "local-only", "max_tokens": 4, "prompt": canary}),
        ("completions", h, {"model": "local-only", "max_tokens": 4, "prompt": canary, "stream": True}),
        ("embeddings", h, {"model": "embeddings", "input": [canary, sensitive]}),
        # refusals and errors
        ("chat/completions", h, {"model": "commercial-only", "messages": [{"role": "user", "content": sensitive}]}),
        (
            "chat/completions",
            h,
            {"model": "local-only", "messages": [{"role": "user", "content": canary}], "temperature": canary},
        ),
        (
            "chat/completions",
            h,
            {"model": "local-only", "messages": [{"role": "user", "content": canary}], "max_tokens": 100_000},
        ),
        ("chat/completions", h, {"model": "local-only", "messages": [{"role": canary, "content": canary}]}),
        ("chat/completions", h, {"model": "no-such-model", "messages": [{"role": "user", "content": canary}]}),
        (
            "chat/completions",
            {"Authorization": f"Bearer {canary}"},
            {"model": "local-only", "messages": [{"role": "user", "content": canary}]},
        ),
        (
            "chat/completions",
            h,
            {
                "model": "local-only",
                "messages": [
                    {"role": "user", "content": canary * (app.config["server"]["max_body_bytes"] // len(canary) + 1)}
                ],
            },
        ),
        ("completions", h, {"model": "local-only", "prompt": canary, "logit_bias": {canary: 5}}),
        # keys and names the caller chose, in bodies that fail validation: described in errors, never quoted
        ("completions", h, {"model": "local-only", "prompt": "x", "logit_bias": {f"{canary} {NHS}": "high"}}),
        (
            "chat/completions",
            h,
            {"model": "local-only", "messages": [{"role": "user", "content": "x"}], "logit_bias": {canary: [1]}},
        ),
        (
            "chat/completions",
            h,
            {"model": "local-only", "messages": [{"role": "user", "content": "x"}], "vllm_xargs": {canary: {"a": 1}}},
        ),
        ("chat/completions", h, {"model": "local-only", "messages": [{"role": "user", "content": "x"}], canary: 1}),
        (
            "chat/completions",
            h,
            {
                "model": "local-only",
                "messages": [{"role": "user", "content": "x"}],
                "metadata": {canary: {"nested": canary}},
            },
        ),
        (
            "chat/completions",
            h,
            {
                "model": "local-only",
                "messages": [{"role": "user", "content": "x"}],
                "response_format": {"type": canary},
            },
        ),
        (
            "chat/completions",
            h,
            {
                "model": "local-only",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {"name": "f"}}],
                "tool_choice": {"type": "function", "function": {"name": canary}},
            },
        ),
        (
            "chat/completions",
            h,
            {
                "model": "local-only",
                "messages": [{"role": "user", "content": "x"}],
                "tools": [{"type": "function", "function": {}}],
                "tool_choice": {"type": "function", "function": {"name": canary}},
            },
        ),
        # a request id that could carry data: replaced, so it reaches no log, span or audit record
        (
            "chat/completions",
            {**h, "x-request-id": f"{canary}@example.com"},
            {"model": "local-only", "max_tokens": 2, "messages": [{"role": "user", "content": "x"}]},
        ),
        (
            "chat/completions",
            {**h, "x-request-id": f"{canary} {NHS}"},
            {"model": "local-only", "messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
        ),
    ]
    responses = [httpx.post(f"{url}/{path}", json=body, headers=headers, timeout=120) for path, headers, body in calls]
    raw = httpx.post(
        f"{url}/chat/completions",
        timeout=60,
        content=f'{{"model": "local-only", "messages": [{canary}'.encode(),
        headers={**h, "content-type": "application/json"},
    )
    responses.append(raw)
    declared = httpx.post(
        f"{url}/chat/completions",
        timeout=60,
        json={"model": "local-only", "messages": []},
        headers={**h, "X-Sovereign-Classification": canary},
    )
    responses.append(declared)
    return responses


def test_canary_and_keys_appear_nowhere(
    app: RunningApp, commercial: FakeOpenAIServer, otlp_collector: OTLPCollector
) -> None:
    canary = f"canary{uuid.uuid4().hex}"
    responses = _send_everything(app, canary)
    statuses = sorted({r.status_code for r in responses})
    assert 200 in statuses and any(s >= 400 for s in statuses)
    for response in responses:  # error bodies never echo the prompt
        assert canary not in response.text, (response.status_code, response.text[:300])
        assert response.status_code < 500, response.text[:300]
    assert commercial.received == []  # every canary request was sensitive, invalid or refused

    metrics = httpx.get(app.metrics_url, timeout=30).text
    assert canary not in metrics
    time.sleep(7)  # let the audit writer and Ray's log writers flush, and the span exporters' batches go out
    spans = b"".join(otlp_collector.raw)  # every span the router, Ray Serve and vLLM exported
    assert canary.encode() not in spans and not any(k.encode() in spans for k in app.keys.values())

    session = ray_session_dir(app.process.pid)
    assert session is not None, "cannot find this app's Ray session folder"
    needles = [canary.encode(), *(k.encode() for k in app.keys.values())]
    for root in (session, app.log_path.parent):
        found = files_containing(root, needles)
        leaks = {needle[:16]: files for needle, files in found.items() if files}
        assert not leaks, f"found under {root}: {leaks}"


def test_keys_at_rest_are_hashes(app: RunningApp) -> None:
    keys_file = app.log_path.parent / "keys.json"
    text = keys_file.read_text()
    stored = {row["key_sha256"] for row in json.loads(text)}
    for key in app.keys.values():
        assert key not in text
        assert hashlib.sha256(key.encode()).hexdigest() in stored
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"


def test_haproxy_admin_socket_is_out_of_other_users_reach(app: RunningApp) -> None:
    """Ray's HAProxy opens its admin socket mode 666; the folder holding it must be closed to other users (else
    any local user could re-point the backend and receive every request)."""
    haproxy = [p for p in descendants(app.process.pid) if "haproxy" in p.name()]
    assert haproxy, "the app runs in HAProxy mode: where is HAProxy?"
    cmdline = haproxy[0].cmdline()
    config = Path(cmdline[cmdline.index("-f") + 1])
    sockets = [line.split()[2] for line in config.read_text().splitlines() if line.strip().startswith("stats socket")]
    assert sockets
    for sock in map(Path, sockets):
        assert not str(sock).startswith("/tmp/haproxy-serve/")
        closed = [d for d in sock.parents if d.is_dir() and d.stat().st_mode & 0o077 == 0]
        assert closed and closed[0].stat().st_uid == os.getuid(), f"{sock}: every folder above it is open to others"
