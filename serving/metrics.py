"""Prometheus metrics of the router. Labels are bounded: configured names and levels only, never caller input.

They are served on a listener of their own (``server.metrics_host``/``metrics_port``), never on the API port: they
show traffic by level and how much goes to commercial backends, which is for the operator's Prometheus alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("sovereign.metrics")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_FAST_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "sovereign_requests",
            "Requests by public model, level, backend and HTTP status",
            ["model", "level", "backend", "status"],
            registry=r,
        )
        self.egress = Counter(
            "sovereign_commercial_egress",
            "Requests sent to non-sovereign backends, by level",
            ["level", "backend"],
            registry=r,
        )
        self.fallbacks = Counter(
            "sovereign_fallbacks",
            "Fallbacks to the next candidate, by reason",
            ["model", "from_backend", "reason"],
            registry=r,
        )
        self.overflows = Counter(
            "sovereign_overflows", "Requests moved off a full local queue", ["model", "backend"], registry=r
        )
        self.tokens = Counter(
            "sovereign_tokens",
            "Tokens used (type: prompt or completion) by team, public model, "
            "backend and level; teams and models are configured names, any other is `other`",
            ["team", "model", "backend", "level", "type"],
            registry=r,
        )
        self.classification = Histogram(
            "sovereign_classification_seconds", "Time to classify a request", buckets=_FAST_BUCKETS, registry=r
        )
        self.ttft = Histogram(
            "sovereign_ttft_seconds",
            "Time to first token (streams) or response",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.itl = Histogram(
            "sovereign_itl_seconds",
            "Mean inter-token (inter-chunk) latency per stream",
            ["backend"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "sovereign_request_seconds", "End-to-end request latency", ["backend"], buckets=_LATENCY_BUCKETS, registry=r
        )
        self.queue_depth = Gauge(
            "sovereign_local_queue_depth",
            "Requests in flight to a local backend from this router replica",
            ["backend"],
            registry=r,
        )
        self.backend_available = Gauge(
            "sovereign_backend_available",
            "1 while this router replica sends requests "
            "to a local engine, 0 while it skips it (no running replica: a lost node)",
            ["backend"],
            registry=r,
        )
        self.audit_write = Histogram(
            "sovereign_audit_write_seconds", "Audit append latency (durable or not)", buckets=_FAST_BUCKETS, registry=r
        )
        self.audit_failures = Counter("sovereign_audit_failures", "Audit writes that failed", registry=r)
        self.egress_reviews = Counter(
            "sovereign_egress_reviews",
            "Egress reviews before a request would leave, by outcome (passed, flagged, unavailable)",
            ["outcome"],
            registry=r,
        )
        self.egress_review_time = Histogram(
            "sovereign_egress_review_seconds",
            "Time the egress review added to a request about to leave",
            buckets=_FAST_BUCKETS,
            registry=r,
        )
        self.classification_failures = Counter(
            "sovereign_classification_failures",
            "Requests the classifier could not finish (reason: error or timeout); "
            "they were treated as TOP SECRET (fail closed)",
            ["reason"],
            registry=r,
        )
        self.audit_ship_backlog = Gauge(
            "sovereign_audit_ship_backlog_records",
            "Audit records written locally and not yet accepted by the shipping sink (SIEM)",
            registry=r,
        )
        self.audit_ship_failures = Counter(
            "sovereign_audit_ship_failures",
            "Failed sends to the audit shipping sink (what: ship) or the anchor sink (what: anchor)",
            ["what"],
            registry=r,
        )
        self.audit_anchor_time = Gauge(
            "sovereign_audit_anchor_last_timestamp_seconds",
            "Unix time of the last anchor of the audit chain's head",
            registry=r,
        )

    def on_classification(self, signal_types: Iterable[str]) -> None:
        """Count a classification that failed closed (its ``classification_error``/``_timeout`` signal)."""
        for signal in signal_types:
            if signal in ("classification_error", "classification_timeout"):
                self.classification_failures.labels(signal.removeprefix("classification_")).inc()

    def on_audit_write(self, seconds: float, ok: bool) -> None:
        self.audit_write.observe(seconds)
        if not ok:
            self.audit_failures.inc()


def serve_metrics(registry: CollectorRegistry, host: str, port: int, *, tries: int = 1) -> tuple[Any, int] | None:
    """Serve ``registry`` at ``http://host:PORT/metrics`` on the first free port of ``port .. port + tries - 1``
    (one per router replica on a host) from a daemon thread. Returns ``(server, port)``; ``None``, with a warning
    in the log, when none is free: the API keeps serving without metrics rather than failing to start."""
    from prometheus_client import start_http_server

    for candidate in range(port, port + max(1, tries)):
        try:
            server, _thread = start_http_server(candidate, addr=host, registry=registry)
        except OSError:
            continue
        return server, server.server_port  # port 0: the one the kernel chose
    log.warning("metrics listener not started: no free port")
    return None
