"""Structured logs: one JSON object per line, built from explicit fields only (never message arguments)."""

from __future__ import annotations

import json
import logging
import sys
import time

_FIELDS = ("request_id", "caller", "model", "level", "backend", "status", "latency_ms")


class JSONFormatter(logging.Formatter):
    """Formats the message template and whitelisted ``extra`` fields; exceptions keep their type, not their text.

    Exception messages can quote data (a JSON decode error shows the body), so only the exception class is logged.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "event": record.msg if isinstance(record.msg, str) else type(record.msg).__name__,
        }
        for key in _FIELDS:
            if key in record.__dict__:
                entry[key] = record.__dict__[key]
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = record.exc_info[0].__name__
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Route the ``sovereign`` loggers to stderr as JSON lines (idempotent)."""
    logger = logging.getLogger("sovereign")
    logger.setLevel(level.upper())
    if not any(isinstance(h.formatter, JSONFormatter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(JSONFormatter())
        logger.addHandler(handler)
    logger.propagate = False


def configure_tracing(service_name: str) -> bool:
    """Export spans over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; otherwise export nothing.

    Returns whether an exporter was installed. Without one, the API's no-op tracer keeps the cost near zero.
    """
    import os

    if not os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return False
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    return True
