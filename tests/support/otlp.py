"""A real OTLP/HTTP collector on loopback: every process of the app (Ray's proxy and replicas, the router,
vLLM's engine) exports traces to it, and tests read the spans back decoded, or search the raw bytes for a canary.
It also accepts logs (``POST /v1/logs``: shipped audit records and anchors)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest


@dataclass(frozen=True)
class CollectedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)
    events: tuple[str, ...] = ()  # event names ("exception" when an exception was recorded)
    status_code: int = 0  # 0 unset, 1 ok, 2 error
    status_message: str = ""


@dataclass(frozen=True)
class CollectedLog:
    event_name: str
    body: Any
    time_unix_nano: int
    service: str
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(any_value: Any) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [_value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class OTLPCollector:
    """Accepts ``POST /v1/traces`` and ``POST /v1/logs`` (protobuf, as the OTLP/HTTP exporters send them) and
    keeps every span and log record. ``port`` reuses a port (a collector restarted at the same address)."""

    def __init__(self, port: int = 0) -> None:
        self.spans: list[CollectedSpan] = []
        self.logs: list[CollectedLog] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                if self.path.rstrip("/").endswith("/v1/logs"):
                    collector._add_logs(body)
                else:
                    collector._add(body)
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.endpoint = f"http://127.0.0.1:{self._server.server_port}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def _add(self, body: bytes) -> None:
        request = ExportTraceServiceRequest.FromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans.append(
                        CollectedSpan(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_span_id=span.parent_span_id.hex(),
                            name=span.name,
                            service=str(resource.get("service.name", "")),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            events=tuple(e.name for e in span.events),
                            status_code=span.status.code,
                            status_message=span.status.message,
                        )
                    )
        with self._lock:
            self.raw.append(body)
            self.spans.extend(spans)

    def _add_logs(self, body: bytes) -> None:
        request = ExportLogsServiceRequest.FromString(body)
        records = []
        for resource_logs in request.resource_logs:
            resource = {a.key: _value(a.value) for a in resource_logs.resource.attributes}
            for scope_logs in resource_logs.scope_logs:
                for record in scope_logs.log_records:
                    records.append(
                        CollectedLog(
                            event_name=record.event_name,
                            body=_value(record.body),
                            time_unix_nano=record.time_unix_nano,
                            service=str(resource.get("service.name", "")),
                            attributes={a.key: _value(a.value) for a in record.attributes},
                        )
                    )
        with self._lock:
            self.logs.extend(records)

    def received_logs(self, event_name: str | None = None) -> list[CollectedLog]:
        with self._lock:
            return [r for r in self.logs if event_name is None or r.event_name == event_name]

    def trace(self, trace_id: str) -> list[CollectedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def wait_for(self, trace_id: str, names: set[str], timeout_s: float = 30) -> list[CollectedSpan]:
        """The trace's spans once every name in ``names`` has arrived (exporters batch: up to a few seconds)."""
        deadline = time.monotonic() + timeout_s
        while True:
            spans = self.trace(trace_id)
            if names <= {s.name for s in spans} or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
