"""Structured logs: one JSON object per line, built from explicit fields only (never message arguments)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any

# "classification", not "level": that key is the record's severity.
_FIELDS = ("request_id", "caller", "model", "classification", "backend", "status", "latency_ms")


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


# Ray Serve imports this (``TracingConfig.exporter_import_path``) in its proxy and every replica.
RAY_SPAN_PROCESSORS = "serving.telemetry:ray_serve_span_processors"


def otlp_configured() -> bool:
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def ray_tracing_config(sampling_ratio: float) -> dict[str, object]:
    """Ray Serve's own tracing (proxy, replica and handle spans), exported where the router's spans go.

    With it, one trace runs caller -> Serve replica -> ``sovereign.request`` -> handle call -> engine replica ->
    vLLM's request span. Sampling is parent-based: a caller's sampled ``traceparent`` is always honoured.
    """
    return {"enabled": True, "exporter_import_path": RAY_SPAN_PROCESSORS, "sampling_ratio": sampling_ratio}


def ray_serve_span_processors() -> list[Any]:
    """The OTLP/HTTP span export, for Ray Serve's tracer provider and the router's own alike."""
    if not otlp_configured():
        return []
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    return [BatchSpanProcessor(OTLPSpanExporter())]


def configure_tracing(service_name: str, sampling_ratio: float = 1.0) -> bool:
    """Export spans over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set; otherwise export nothing.

    Inside a Ray Serve replica with Serve's tracing on, Serve has already installed a provider exporting to the
    same endpoint (``ray_serve_span_processors``): it is kept, so the router's spans and Serve's share one
    pipeline. Returns whether spans are exported. Without an exporter the API's no-op tracer costs next to nothing.
    """
    if not otlp_configured():
        return False
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.sampling import ParentBasedTraceIdRatio

    if isinstance(trace.get_tracer_provider(), TracerProvider):
        return True
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}), sampler=ParentBasedTraceIdRatio(sampling_ratio)
    )
    for processor in ray_serve_span_processors():
        provider.add_span_processor(processor)
    trace.set_tracer_provider(provider)
    return True
