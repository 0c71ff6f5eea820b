"""Spans leave the process over OTLP only when OTEL_EXPORTER_OTLP_ENDPOINT is set (a loopback collector here)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SCRIPT = """
from opentelemetry import trace
from serving.telemetry import configure_tracing
print(configure_tracing("sovereign-test"))
with trace.get_tracer("t").start_as_current_span("sovereign.request"):
    pass
provider = trace.get_tracer_provider()
getattr(provider, "shutdown", lambda: None)()
"""


def _run(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env={**{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}, **env},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_otlp_export_only_when_configured() -> None:
    received: list[tuple[str, int]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", 0))
            received.append((self.path, len(self.rfile.read(length))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        assert _run({}) == "False"
        assert received == []
        assert _run({"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}"}) == "True"
        assert [path for path, size in received] == ["/v1/traces"] and received[0][1] > 0
    finally:
        server.shutdown()
