"""Audit records leave the box: shipped to the department's SIEM, and the chain's head anchored elsewhere.

How it works, and why:

* The local audit file (``routing.audit.AuditLog``) is already the durable, ordered backlog: a shipper thread
  tails it and sends every complete line, in order, to one sink (OTLP logs, or RFC 5424 syslog over TCP or
  TLS). Its position (byte offset, line count, head hash) is kept in a cursor file beside the log, replaced
  atomically and fsynced after every batch the sink accepted. A sink that is down therefore never blocks a
  request and never loses a record: the records wait in the audit file and go out when it returns; the backlog
  is reported as a metric. Delivery is at least once (a crash between "accepted" and "cursor saved" resends a
  batch); every record carries its own ``hash``, which lets the SIEM drop duplicates.
* Only one shipper ships a given file: it holds an exclusive ``flock`` on the cursor file. Other router
  replicas on the same host (sharing the file) stay idle and take over if the holder goes away.
* "Accepted" means: OTLP/HTTP answered 2xx; for syslog, TCP has no application acknowledgement, so a batch
  counts as sent once the kernel reports that the peer acknowledged every byte (``SIOCOUTQ`` is 0) and the
  peer has not closed the connection. A collector that reads what it acknowledged before it exits loses nothing.
* Anchors: at an interval, the head of the chain (the last complete line's hash, the number of lines and the
  time) is written to a second place, the shipping sink or a JSON-lines file on another volume.
  ``sovereign audit verify PATH --anchors SOURCE`` then proves that no anchored record was altered, removed or
  truncated away, even by someone who can rewrite the whole local volume.

The sinks see exactly the bytes of each audit line (codes, levels, counts and names; never content).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import logging
import os
import socket
import ssl
import stat
import struct
import termios
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from routing.audit import GENESIS, utc_now

log = logging.getLogger(__name__)

ANCHOR_TYPE = "sovereign.audit.anchor"
RECORD_EVENT = "sovereign.audit.record"
# RFC 5424 structured-data ID: 32473 is the private enterprise number reserved for documentation (RFC 5612);
# a department that owns a number can set its own with ``audit.shipping.syslog_sd_id``.
DEFAULT_SD_ID = "sovereign@32473"


# --------------------------------------------------------------------------------------------- configuration


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ShippingConfig(_Strict):
    """Where every audit record also goes (``audit.shipping``)."""

    kind: Literal["otlp", "syslog"] = Field(description="otlp: OTLP/HTTP logs (protobuf); syslog: RFC 5424 over TCP")
    endpoint: str = Field(
        min_length=1,
        description="otlp: the full logs URL (https://collector:4318/v1/logs); syslog: HOST:PORT",
    )
    tls: bool = Field(False, description="syslog only: RFC 5425 (TLS); OTLP uses TLS when the URL is https")
    ca_file: Path | None = Field(None, description="CA bundle that signs the sink's certificate (default: system)")
    client_cert_file: Path | None = Field(None, description="client certificate for mutual TLS")
    client_key_file: Path | None = None
    timeout_s: float = Field(5.0, gt=0, le=120, description="one send, including the sink's acknowledgement")
    batch_records: int = Field(500, ge=1, le=100_000)
    poll_s: float = Field(0.2, gt=0, le=60, description="how often the audit file is checked for new records")
    retry_max_s: float = Field(30.0, gt=0, le=3600, description="longest wait between tries while the sink is down")
    cursor_path: Path | None = Field(None, description="default: the audit file's path + '.cursor'")
    syslog_facility: int = Field(13, ge=0, le=23, description="13 is 'log audit'")
    syslog_sd_id: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,32}$")] = DEFAULT_SD_ID
    app_name: Annotated[str, StringConstraints(pattern=r"^[!-~]{1,48}$")] = "sovereign"


class AnchorConfig(_Strict):
    """Where the chain's head is written at an interval (``audit.anchors``)."""

    interval_s: float = Field(300.0, ge=1, description="seconds between anchors (one more when the server stops)")
    sink: Literal["shipping", "file"] = "file"
    path: Path | None = Field(None, description="sink=file: a JSON-lines file, on another volume than the log")


# --------------------------------------------------------------------------------------------- items and sinks


@dataclass(frozen=True)
class Item:
    """One audit line to ship: its exact bytes (without the newline), its 1-based line number and hash."""

    line: bytes
    number: int
    digest: str
    ts: str


@dataclass(frozen=True)
class Anchor:
    lines: int
    head: str
    ts: str
    log: str

    def to_json(self) -> str:
        return json.dumps(
            {"type": ANCHOR_TYPE, "log": self.log, "lines": self.lines, "head": self.head, "ts": self.ts},
            sort_keys=True,
            separators=(",", ":"),
        )


class ShipError(RuntimeError):
    """The sink did not accept the batch (down, refused, timed out): keep it and try again later."""


class Sink(Protocol):
    def send(self, items: Sequence[Item], log_name: str) -> None: ...
    def send_anchor(self, anchor: Anchor) -> None: ...
    def close(self) -> None: ...


def _ts_ns(ts: str) -> int:
    try:
        parsed = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return time.time_ns()
    return int(parsed.timestamp()) * 1_000_000_000 + parsed.microsecond * 1000


class SyslogSink:
    """RFC 5424 messages over TCP (RFC 6587 octet counting) or TLS (RFC 5425), one connection kept open."""

    def __init__(self, config: ShippingConfig) -> None:
        host, sep, port = config.endpoint.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError("audit.shipping.endpoint: syslog needs HOST:PORT")
        self.host, self.port = host.strip("[]"), int(port)
        self.config = config
        self.hostname = (socket.gethostname() or "-")[:255]
        self._sock: socket.socket | None = None
        self._context: ssl.SSLContext | None = None
        if config.tls:
            self._context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
            if config.client_cert_file:
                self._context.load_cert_chain(
                    str(config.client_cert_file), str(config.client_key_file) if config.client_key_file else None
                )

    def message(self, msgid: str, ts: str, sd: dict[str, str], body: bytes) -> bytes:
        pri = self.config.syslog_facility * 8 + 6  # severity 6: informational
        params = " ".join(f'{k}="{v}"' for k, v in sd.items())  # values are hex, digits and names: no escaping
        sd_id = self.config.syslog_sd_id
        header = f"<{pri}>1 {ts} {self.hostname} {self.config.app_name} - {msgid} [{sd_id} {params}] "
        msg = header.encode() + body
        return str(len(msg)).encode() + b" " + msg

    def send(self, items: Sequence[Item], log_name: str) -> None:
        data = b"".join(
            self.message("audit", i.ts, {"log": log_name, "line": str(i.number), "hash": i.digest}, i.line)
            for i in items
        )
        self._transmit(data)

    def send_anchor(self, anchor: Anchor) -> None:
        sd = {"log": anchor.log, "line": str(anchor.lines), "hash": anchor.head}
        self._transmit(self.message("anchor", anchor.ts, sd, anchor.to_json().encode()))

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection((self.host, self.port), timeout=self.config.timeout_s)
            try:
                if self._context is not None:
                    sock = self._context.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
            self._sock = sock
        return self._sock

    def _transmit(self, data: bytes) -> None:
        try:
            sock = self._connect()
            sock.sendall(data)
            self._wait_acknowledged(sock)
        except (OSError, ShipError) as exc:
            self.close()
            raise ShipError(f"syslog {self.host}:{self.port}: {type(exc).__name__}: {exc}") from None

    def _wait_acknowledged(self, sock: socket.socket) -> None:
        """Until the peer's TCP acknowledged every byte we sent; fail if it closed the connection instead."""
        deadline = time.monotonic() + self.config.timeout_s
        while True:
            if _peer_closed(sock):
                raise ShipError("connection closed by the sink")
            unacked = struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0"))[0]
            if unacked == 0:
                return
            if time.monotonic() > deadline:
                raise ShipError(f"{unacked} bytes not acknowledged within {self.config.timeout_s}s")
            time.sleep(0.002)

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None


def _peer_closed(sock: socket.socket) -> bool:
    """True when the peer closed (EOF or reset). Peeks at the raw socket (under TLS too) without blocking."""
    raw = socket.socket(fileno=os.dup(sock.fileno()))
    try:
        return raw.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True
    finally:
        raw.close()  # closes the duplicate descriptor only


class OTLPSink:
    """OTLP/HTTP logs through the SDK's exporter: one log record per audit line, body = the exact line."""

    def __init__(self, config: ShippingConfig, service_name: str = "sovereign-inference") -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope

        from serving.thirdparty import otlp_logs

        self._logs = otlp_logs()
        self._exporter = self._logs.exporter(
            endpoint=config.endpoint,
            timeout=config.timeout_s,
            certificate_file=str(config.ca_file) if config.ca_file else None,
            client_certificate_file=str(config.client_cert_file) if config.client_cert_file else None,
            client_key_file=str(config.client_key_file) if config.client_key_file else None,
        )
        self._resource = Resource.create({"service.name": service_name})
        self._scope = InstrumentationScope("routing.audit_ship")

    def _record(self, body: str, event: str, ts: str, attributes: dict[str, str | int]):
        logs = self._logs
        ns = _ts_ns(ts)
        record = logs.log_record(
            timestamp=ns,
            observed_timestamp=ns,
            severity_text="INFO",
            severity_number=logs.severity.INFO,
            body=body,
            attributes=attributes,
            event_name=event,
        )
        return logs.readable_log_record(log_record=record, resource=self._resource, instrumentation_scope=self._scope)

    def _export(self, records: list) -> None:
        if self._exporter.export(records) is not self._logs.export_result.SUCCESS:
            raise ShipError("OTLP collector did not accept the batch")

    def send(self, items: Sequence[Item], log_name: str) -> None:
        self._export(
            [
                self._record(
                    i.line.decode(),
                    RECORD_EVENT,
                    i.ts,
                    {
                        "sovereign.audit.log": log_name,
                        "sovereign.audit.line": i.number,
                        "sovereign.audit.hash": i.digest,
                    },
                )
                for i in items
            ]
        )

    def send_anchor(self, anchor: Anchor) -> None:
        self._export(
            [
                self._record(
                    anchor.to_json(),
                    ANCHOR_TYPE,
                    anchor.ts,
                    {
                        "sovereign.audit.log": anchor.log,
                        "sovereign.audit.line": anchor.lines,
                        "sovereign.audit.hash": anchor.head,
                    },
                )
            ]
        )

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._exporter.shutdown()


class FileAnchorSink:
    """Anchors appended to a JSON-lines file (put it on another volume, or a WORM bucket's mount), fsynced."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def send(self, items: Sequence[Item], log_name: str) -> None:  # pragma: no cover - anchors only
        raise NotImplementedError

    def send_anchor(self, anchor: Anchor) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                os.write(fd, anchor.to_json().encode() + b"\n")
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise ShipError(f"anchor file {self.path}: {exc.strerror or exc}") from None

    def close(self) -> None:
        pass


def make_sink(config: ShippingConfig, service_name: str = "sovereign-inference") -> Sink:
    return SyslogSink(config) if config.kind == "syslog" else OTLPSink(config, service_name)


def load_anchors(source: Path | str, log_name: str) -> tuple[dict[int, str], str | None]:
    """{line: head} of the anchors of ``log_name`` in ``source``, and the time of the latest.

    ``source`` holds one anchor per line: the anchor file itself, or an export of the shipping sink's anchor
    messages (a syslog file: the JSON object is found after the header). Other lines are skipped. Two anchors
    naming the same line with different heads raise ``ValueError`` (the log was rewritten between them, or two
    logs share a name). Raises ``OSError`` when the source cannot be read.
    """
    anchors: dict[int, str] = {}
    latest: str | None = None
    with open(source, "rb") as fh:
        for raw in fh:
            start = raw.find(b"{")
            if start < 0:
                continue
            try:
                obj = json.loads(raw[start:])
            except ValueError:
                continue
            if not isinstance(obj, dict) or obj.get("type") != ANCHOR_TYPE or obj.get("log") != log_name:
                continue
            lines, head = obj.get("lines"), obj.get("head")
            if not isinstance(lines, int) or lines < 1 or not isinstance(head, str) or len(head) != 64:
                continue
            if anchors.setdefault(lines, head) != head:
                raise ValueError(f"two anchors name line {lines} with different heads")
            ts = obj.get("ts")
            if isinstance(ts, str) and (latest is None or ts > latest):
                latest = ts
    return anchors, latest


# --------------------------------------------------------------------------------------------- cursor


@dataclass(frozen=True)
class Position:
    """A point in the audit file: bytes read, complete lines before it, hash of the last of them."""

    offset: int = 0
    lines: int = 0
    head: str = GENESIS


def load_cursor(path: Path) -> Position:
    try:
        data = json.loads(path.read_text())
        return Position(int(data["offset"]), int(data["lines"]), str(data["head"]))
    except FileNotFoundError:
        return Position()
    except (ValueError, KeyError, TypeError, OSError):
        # A damaged cursor must not drop records: start again from the beginning (the SIEM sees duplicates).
        log.error("audit shipping cursor %s is unreadable; shipping again from the first record", path)
        return Position()


def save_cursor(path: Path, position: Position) -> None:
    tmp = path.with_name(path.name + ".tmp")
    data = json.dumps({"offset": position.offset, "lines": position.lines, "head": position.head}).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def read_items(fh, position: Position, limit: int, end: int) -> tuple[list[Item], Position]:
    """Up to ``limit`` complete lines between ``position`` and byte ``end`` (a line still being written is left
    for later)."""
    fh.seek(position.offset)
    items: list[Item] = []
    offset, lines, head = position.offset, position.lines, position.head
    while len(items) < limit and offset < end:
        raw = fh.readline(end - offset)
        if not raw.endswith(b"\n"):
            break
        offset += len(raw)
        lines += 1
        line = raw.rstrip(b"\n")
        if not line:  # the newline `_resume` adds after a torn line: the torn part is shipped as it is
            continue
        digest, ts = _hash_and_ts(line)
        head = digest or head
        items.append(Item(line, lines, digest or "-", ts))
    return items, Position(offset, lines, head)


def _hash_and_ts(line: bytes) -> tuple[str, str]:
    try:
        obj = json.loads(line)
        return str(obj["hash"]), str(obj["ts"])
    except (ValueError, KeyError, TypeError):
        return "", utc_now()  # a torn or foreign line: shipped as it is, `audit verify` names it


def count_lines(fh, start: Position, end: int) -> Position:
    """The position at byte ``end`` (a line boundary), counting newlines from ``start``; head = last line's hash."""
    fh.seek(start.offset)
    remaining, lines = end - start.offset, start.lines
    while remaining > 0:
        chunk = fh.read(min(remaining, 1 << 20))
        if not chunk:
            break
        lines += chunk.count(b"\n")
        remaining -= len(chunk)
    head = start.head
    if end > start.offset:
        fh.seek(max(start.offset, end - 65536))
        tail = fh.read(end - fh.tell()).rstrip(b"\n").rsplit(b"\n", 1)[-1]
        digest, _ = _hash_and_ts(tail)
        head = digest or head
    return Position(end, lines, head)


def _complete_end(fh, size: int) -> int:
    """Offset just after the last newline at or before ``size``."""
    end = size
    while end > 0:
        start = max(0, end - 65536)
        fh.seek(start)
        chunk = fh.read(end - start)
        at = chunk.rfind(b"\n")
        if at >= 0:
            return start + at + 1
        end = start
    return 0


# --------------------------------------------------------------------------------------------- shipper


class AuditShipper:
    """Tails one audit file; ships it to ``sink`` and writes anchors to ``anchor_sink``, in a daemon thread.

    Callbacks (thread-safe; Prometheus metrics are): ``on_backlog(records)`` after every round,
    ``on_failure(what)`` when a send fails (``what`` is ``"ship"`` or ``"anchor"``), ``on_anchor(unix_time)``.
    """

    def __init__(
        self,
        audit_path: Path | str,
        *,
        sink: Sink | None,
        shipping: ShippingConfig | None = None,
        anchor_sink: Sink | None = None,
        anchors: AnchorConfig | None = None,
        on_backlog: Callable[[int], None] | None = None,
        on_failure: Callable[[str], None] | None = None,
        on_anchor: Callable[[float], None] | None = None,
    ) -> None:
        self.path = Path(audit_path)
        self.sink, self.anchor_sink = sink, anchor_sink
        # Anchors only (no sink): the default timings (poll, retry, cursor beside the log) still apply.
        self.config = shipping or ShippingConfig(kind="syslog", endpoint="-:0")
        self.anchors = anchors
        self.cursor_path = Path(self.config.cursor_path or f"{self.path}.cursor")
        self._on_backlog, self._on_failure, self._on_anchor = on_backlog, on_failure, on_anchor
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._lock_fd: int | None = None
        self.position = Position()  # shipped so far (sink only)
        self._tail = Position()  # counted so far (anchors)
        self._counted = (0, 0)  # (offset, lines) counted so far (backlog)
        self._anchored: tuple[int, str] | None = None
        self._next_anchor = time.monotonic() + (anchors.interval_s if anchors else 0)
        self._thread = threading.Thread(target=self._run, name=f"audit-shipper:{self.path.name}", daemon=True)
        self._thread.start()

    def close(self, timeout_s: float | None = None) -> None:
        """Ship what the sink accepts within ``timeout_s`` (default: the send timeout), anchor, stop. Blocks."""
        self._final_deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.config.timeout_s)
        self._stop.set()
        self._wake.set()
        self._thread.join()
        for s in (self.sink, self.anchor_sink):
            if s is not None:
                s.close()

    # The rest runs in the shipper thread.

    def _run(self) -> None:
        delay = self.config.poll_s
        while True:
            stopping = self._stop.is_set()
            try:
                progressed, failed = self._round(final=stopping)
            except Exception:
                log.exception("audit shipper round failed")
                progressed, failed = False, True
            if stopping:
                if not progressed or failed or time.monotonic() > self._final_deadline:
                    break
                continue
            delay = min(max(delay * 2, 0.5), self.config.retry_max_s) if failed else self.config.poll_s
            if not progressed or failed:
                self._wake.wait(delay)
                self._wake.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    def _acquire(self) -> bool:
        if self._lock_fd is not None:
            return True
        self.cursor_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.cursor_path}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False  # another replica on this host ships this file
        self._lock_fd = fd
        self.position = load_cursor(self.cursor_path)
        self._tail = self.position
        return True

    def _round(self, *, final: bool) -> tuple[bool, bool]:
        """One pass: ship one batch, anchor if due. Returns (anything shipped, any send failed)."""
        if not self._acquire():
            return False, False
        try:
            fh = open(self.path, "rb")  # noqa: SIM115
        except FileNotFoundError:
            return False, False
        progressed = failed = False
        with fh:
            info = os.fstat(fh.fileno())
            if not stat.S_ISREG(info.st_mode):  # e.g. /dev/full: nothing to tail (the writer refuses egress)
                return False, True
            size = info.st_size
            if size < self.position.offset or size < self._tail.offset:
                log.error("audit log %s is shorter than already shipped: it was truncated or replaced", self.path)
                self.position = self._tail = Position()  # ship what is there now; anchors will show the loss
            if self.sink is not None:
                items, after = read_items(fh, self.position, self.config.batch_records, size)
                if items or after != self.position:
                    try:
                        if items:
                            self.sink.send(items, self.path.name)
                        save_cursor(self.cursor_path, after)
                        self.position, progressed = after, True
                    except (ShipError, OSError) as exc:
                        failed = True
                        log.warning("audit shipping failed, %s kept for later: %s", self.path.name, exc)
                        self._failure("ship")
                self._backlog(fh, size)
            if (
                self.anchors is not None
                and self.anchor_sink is not None
                and (final or time.monotonic() >= self._next_anchor)
            ):
                failed = not self._anchor(fh, size, self.anchor_sink, self.anchors) or failed
        return progressed, failed

    def _anchor(self, fh, size: int, sink: Sink, anchors: AnchorConfig) -> bool:
        end = _complete_end(fh, size)
        if end < self._tail.offset:
            self._tail = Position()
        self._tail = count_lines(fh, self._tail, end)
        state = (self._tail.lines, self._tail.head)
        if state == self._anchored or self._tail.lines == 0:
            self._next_anchor = time.monotonic() + anchors.interval_s
            return True
        anchor = Anchor(self._tail.lines, self._tail.head, utc_now(), self.path.name)
        try:
            sink.send_anchor(anchor)
        except (ShipError, OSError) as exc:
            log.warning("audit anchor not written, will retry: %s", exc)
            self._failure("anchor")
            return False
        self._anchored = state
        self._next_anchor = time.monotonic() + anchors.interval_s
        if self._on_anchor is not None:
            self._on_anchor(time.time())
        return True

    def _backlog(self, fh, size: int) -> None:
        """Lines written but not yet shipped; new bytes are counted once (a long outage is not re-read each try)."""
        if self._on_backlog is None:
            return
        offset, lines = self._counted
        if not self.position.offset <= offset <= size:
            offset, lines = self.position.offset, self.position.lines
        fh.seek(offset)
        while offset < size:
            chunk = fh.read(min(size - offset, 1 << 20))
            if not chunk:
                break
            lines += chunk.count(b"\n")
            offset += len(chunk)
        self._counted = (offset, lines)
        self._on_backlog(lines - self.position.lines)

    def _failure(self, what: str) -> None:
        if self._on_failure is not None:
            self._on_failure(what)


def start_shipper(
    audit_path: Path | str,
    shipping: ShippingConfig | None,
    anchors: AnchorConfig | None,
    *,
    service_name: str = "sovereign-inference",
    **callbacks: Callable,
) -> AuditShipper | None:
    """The shipper the configuration asks for, started; None when neither shipping nor anchors are configured."""
    if shipping is None and anchors is None:
        return None
    sink = make_sink(shipping, service_name) if shipping is not None else None
    anchor_sink: Sink | None = None
    if anchors is not None:
        if anchors.sink == "shipping":
            if sink is None:
                raise ValueError("audit.anchors.sink is 'shipping' but audit.shipping is not configured")
            anchor_sink = sink
        else:
            if anchors.path is None:
                raise ValueError("audit.anchors.path is required when audit.anchors.sink is 'file'")
            anchor_sink = FileAnchorSink(anchors.path)
    return AuditShipper(audit_path, sink=sink, shipping=shipping, anchor_sink=anchor_sink, anchors=anchors, **callbacks)
