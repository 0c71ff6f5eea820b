"""Behind HAProxy, a client that stops reading at ``[DONE]`` (the openai SDK's synchronous client does) keeps its
connection, and so does HAProxy's connection to the router replica: no new connection per request."""

from __future__ import annotations

import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from benchmarks.probes.replica_connections import haproxy_counters
from tests.reliability.procs import descendants
from tests.support.app import RunningApp

pytestmark = pytest.mark.engine


def _replica_counters(app: RunningApp) -> dict[str, int]:
    haproxy = next(p for p in descendants(app.process.pid) if "haproxy" in p.name())
    cmdline = haproxy.cmdline()
    return haproxy_counters(cmdline[cmdline.index("-x") + 1])


@pytest.mark.parametrize("model", ["local-only", "commercial-only"])
def test_sync_sdk_streams_reuse_every_connection(
    app: RunningApp, fake_commercial: FakeOpenAIServer, model: str
) -> None:
    fake_commercial.set_fault("ok")
    client = app.client()
    before = _replica_counters(app)
    for _ in range(8):
        stream = client.chat.completions.create(
            model=model, max_tokens=2, stream=True, messages=[{"role": "user", "content": "Say hi."}]
        )
        assert [chunk for chunk in stream]  # the SDK stops at [DONE] and closes the response
    after = _replica_counters(app)
    assert after["reuse"] - before["reuse"] >= 7, (before, after)
    assert after["connect"] - before["connect"] <= 1, (before, after)
    client.close()
