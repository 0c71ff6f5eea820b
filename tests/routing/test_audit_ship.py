"""Audit shipping to a SIEM: every record arrives in order at a loopback syslog server (TCP and TLS) and OTLP
collector, a sink stopped and restarted mid-run loses nothing, the backlog is kept on disk and measured."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from routing.audit import AuditLog, verify
from routing.audit_ship import (
    ANCHOR_TYPE,
    RECORD_EVENT,
    AnchorConfig,
    ShippingConfig,
    load_cursor,
    start_shipper,
)
from tests.routing.test_audit import make_record
from tests.support.otlp import OTLPCollector
from tests.support.syslog import SyslogServer


class Writer:
    """Appends audit records from a background event loop, as the router does."""

    def __init__(self, path: Path) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.log = AuditLog(path)
        self.count = 0

    def write(self, n: int, *, pause_s: float = 0.0) -> None:
        for _ in range(n):
            self.count += 1
            coro = self.log.append(make_record(self.count), durable=True)
            asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)
            if pause_s:
                time.sleep(pause_s)

    def close(self) -> None:
        self.log.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def wait_until(condition: Callable[[], bool], timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


def lines_of(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line]


def in_order_without_gaps(bodies: list[bytes], expected: list[bytes]) -> None:
    """At least once and in order: duplicates are allowed (a resent batch), gaps and reordering are not."""
    unique: list[bytes] = []
    for body in bodies:
        if not unique or body != unique[-1]:
            if body in unique:
                continue  # a batch resent after a reconnect
            unique.append(body)
    assert unique == expected


def syslog_config(server: SyslogServer, tmp_path: Path, **extra: object) -> ShippingConfig:
    return ShippingConfig(
        kind="syslog",
        endpoint=server.endpoint,
        poll_s=0.05,
        retry_max_s=0.3,
        timeout_s=2,
        batch_records=7,
        cursor_path=tmp_path / "audit.cursor",
        **extra,
    )


def test_syslog_receives_every_record_in_order_as_rfc5424(tmp_path: Path) -> None:
    server = SyslogServer()
    path = tmp_path / "audit.jsonl"
    writer = Writer(path)
    backlog: list[int] = []
    shipper = start_shipper(path, syslog_config(server, tmp_path), None, on_backlog=backlog.append)
    assert shipper is not None
    try:
        writer.write(40)
        wait_until(lambda: len(server.received()) >= 40)
    finally:
        shipper.close()
        writer.close()
        server.stop()
    messages = server.received()
    assert [m.body for m in messages] == lines_of(path)
    first = messages[0]
    assert first.pri == 13 * 8 + 6 and first.app_name == "sovereign" and first.sd_id == "sovereign@32473"
    record = json.loads(first.body)
    assert first.params == {"log": "audit.jsonl", "line": "1", "hash": record["hash"]}
    assert first.timestamp == record["ts"]
    assert [m.params["line"] for m in messages] == [str(i) for i in range(1, 41)]
    assert backlog[-1] == 0
    assert load_cursor(tmp_path / "audit.cursor").lines == 40
    assert verify(path).ok


def test_syslog_stopped_and_restarted_mid_run_loses_nothing(tmp_path: Path) -> None:
    server = SyslogServer()
    path = tmp_path / "audit.jsonl"
    writer = Writer(path)
    backlog: list[int] = []
    failures: list[str] = []
    shipper = start_shipper(
        path, syslog_config(server, tmp_path), None, on_backlog=backlog.append, on_failure=failures.append
    )
    assert shipper is not None
    try:
        writer.write(30, pause_s=0.005)
        server.stop()
        writer.write(30, pause_s=0.005)  # the sink is down: requests are not blocked
        wait_until(lambda: bool(failures) and backlog[-1] >= 30)  # all written during the outage wait
        held = backlog[-1]
        server.start()
        writer.write(30, pause_s=0.005)
        wait_until(lambda: len({m.body for m in server.received()}) >= 90, timeout_s=30)
    finally:
        shipper.close()
        writer.close()
        server.stop()
    assert held > 0 and failures
    in_order_without_gaps([m.body for m in server.received()], lines_of(path))
    assert backlog[-1] == 0


def test_backlog_survives_a_restart_of_the_shipper(tmp_path: Path) -> None:
    """Records written while no shipper ran (or the sink was down across a restart) go out from the cursor."""
    server = SyslogServer()
    server.stop()
    path = tmp_path / "audit.jsonl"
    writer = Writer(path)
    config = syslog_config(server, tmp_path)
    shipper = start_shipper(path, config, None)
    assert shipper is not None
    writer.write(10)
    shipper.close(timeout_s=0.5)
    writer.write(10)
    server.start()
    shipper = start_shipper(path, config, None)
    assert shipper is not None
    try:
        wait_until(lambda: len(server.received()) >= 20)
    finally:
        shipper.close()
        writer.close()
        server.stop()
    assert [m.body for m in server.received()] == lines_of(path)


def _tls_pair(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context, cert_file


def test_syslog_over_tls_verifies_the_collector(tmp_path: Path) -> None:
    context, cert_file = _tls_pair(tmp_path)
    server = SyslogServer(tls=context)
    path = tmp_path / "audit.jsonl"
    writer = Writer(path)
    shipper = start_shipper(path, syslog_config(server, tmp_path, tls=True, ca_file=cert_file), None)
    assert shipper is not None
    try:
        writer.write(15)
        wait_until(lambda: len(server.received()) >= 15)
    finally:
        shipper.close()
        writer.close()
        server.stop()
    assert [m.body for m in server.received()] == lines_of(path)


def test_syslog_over_tls_refuses_an_unknown_certificate(tmp_path: Path) -> None:
    context, _ = _tls_pair(tmp_path)
    server = SyslogServer(tls=context)
    path = tmp_path / "audit.jsonl"
    writer = Writer(path)
    failures: list[str] = []
    shipper = start_shipper(path, syslog_config(server, tmp_path, tls=True), None, on_failure=failures.append)
    assert shipper is not None
    try:
        writer.write(3)
        wait_until(lambda: bool(failures))
    finally:
        shipper.close(timeout_s=0.2)
        writer.close()
        server.stop()
    assert server.received() == []


def otlp_config(collector: OTLPCollector, tmp_path: Path) -> ShippingConfig:
    return ShippingConfig(
        kind="otlp",
        endpoint=f"{collector.endpoint}/v1/logs",
        poll_s=0.05,
        retry_max_s=0.3,
        timeout_s=1,
        batch_records=9,
        cursor_path=tmp_path / "audit.cursor",
    )


def test_otlp_logs_receive_every_record_in_order_and_survive_a_restart(tmp_path: Path) -> None:
    collector = OTLPCollector()
    port = int(collector.endpoint.rsplit(":", 1)[1])
    path = tmp_path / "audit.jsonl"
    writer = Writer(path)
    backlog: list[int] = []
    anchors = AnchorConfig(interval_s=1, sink="shipping")
    shipper = start_shipper(
        path, otlp_config(collector, tmp_path), anchors, on_backlog=backlog.append, service_name="sovereign-test"
    )
    assert shipper is not None
    restarted = None
    try:
        writer.write(25, pause_s=0.005)
        wait_until(lambda: len(collector.received_logs(RECORD_EVENT)) >= 25)
        before = collector.received_logs(RECORD_EVENT)
        collector.close()
        writer.write(25, pause_s=0.005)
        wait_until(lambda: backlog[-1] >= 25)
        restarted = OTLPCollector(port=port)
        writer.write(10)
        wait_until(lambda: len(restarted.received_logs(RECORD_EVENT)) >= 35, timeout_s=30)
    finally:
        shipper.close()
        writer.close()
        (restarted or collector).close()
    after = restarted.received_logs(RECORD_EVENT)
    bodies = [r.body.encode() for r in before + after]
    in_order_without_gaps(bodies, lines_of(path))
    first = before[0]
    record = json.loads(first.body)
    assert first.service == "sovereign-test"
    assert first.attributes == {
        "sovereign.audit.log": "audit.jsonl",
        "sovereign.audit.line": 1,
        "sovereign.audit.hash": record["hash"],
    }
    ts = dt.datetime.strptime(record["ts"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    assert first.time_unix_nano // 1000 == int(ts.timestamp() * 1_000_000)
    # the final anchor (written when the shipper stops) names the whole chain
    final = json.loads(restarted.received_logs(ANCHOR_TYPE)[-1].body)
    assert final["lines"] == 60 and final["head"] == verify(path).head


@pytest.mark.parametrize("count", [0, 5])
def test_anchor_file_gets_the_head_at_an_interval(tmp_path: Path, count: int) -> None:
    path = tmp_path / "audit.jsonl"
    anchors_path = tmp_path / "other-volume" / "anchors.jsonl"
    writer = Writer(path)
    shipper = start_shipper(path, None, AnchorConfig(interval_s=1, sink="file", path=anchors_path))
    assert shipper is not None
    try:
        writer.write(count)
        if count:
            wait_until(anchors_path.exists)
    finally:
        shipper.close()
        writer.close()
    if not count:
        assert not anchors_path.exists()  # an empty log has no head to anchor
        return
    anchor = json.loads(anchors_path.read_text().splitlines()[-1])
    assert anchor["type"] == ANCHOR_TYPE and anchor["log"] == "audit.jsonl"
    assert anchor["lines"] == 5 and anchor["head"] == verify(path).head


def test_audit_configuration_checks_the_anchor_sink() -> None:
    from pydantic import ValidationError

    from serving.config import AuditConfig

    with pytest.raises(ValidationError, match=r"audit\.shipping is not set"):
        AuditConfig.model_validate({"anchors": {"sink": "shipping"}})
    with pytest.raises(ValidationError, match=r"audit\.anchors\.path is required"):
        AuditConfig.model_validate({"anchors": {"sink": "file"}})
    with pytest.raises(ValidationError):
        AuditConfig.model_validate({"shipping": {"kind": "kafka", "endpoint": "x:1"}})
    config = AuditConfig.model_validate(
        {
            "shipping": {"kind": "syslog", "endpoint": "siem.example:6514", "tls": True},
            "anchors": {"sink": "shipping", "interval_s": 60},
        }
    )
    assert config.shipping is not None and config.shipping.tls
    assert config.anchors is not None and config.anchors.interval_s == 60
