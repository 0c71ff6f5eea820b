"""A real RFC 5424 syslog collector on loopback, over TCP (RFC 6587 octet counting) or TLS (RFC 5425).

It keeps every message it read, parsed into header fields, structured data and body. ``stop()`` behaves like a
collector shutting down gracefully: it reads what its connections already hold, then closes them; ``start()``
listens again on the same port.
"""

from __future__ import annotations

import re
import socket
import ssl
import threading
from dataclasses import dataclass

_HEADER = re.compile(rb"^<(\d{1,3})>1 (\S+) (\S+) (\S+) (\S+) (\S+) (-|\[.*?\](?:\[.*?\])*) ?(.*)$", re.S)
_SD = re.compile(rb'\[(\S+)((?: [^ =\]]+="[^"]*")*)\]')
_PARAM = re.compile(rb'([^ =\]]+)="([^"]*)"')


@dataclass(frozen=True)
class SyslogMessage:
    pri: int
    timestamp: str
    hostname: str
    app_name: str
    msgid: str
    sd_id: str
    params: dict[str, str]
    body: bytes


def parse(message: bytes) -> SyslogMessage:
    match = _HEADER.match(message)
    if match is None:
        raise ValueError("not an RFC 5424 message")
    pri, ts, host, app, _procid, msgid, sd, body = match.groups()
    sd_match = _SD.match(sd)
    sd_id = sd_match.group(1).decode() if sd_match else "-"
    params = {k.decode(): v.decode() for k, v in _PARAM.findall(sd_match.group(2))} if sd_match else {}
    return SyslogMessage(int(pri), ts.decode(), host.decode(), app.decode(), msgid.decode(), sd_id, params, body)


class SyslogServer:
    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self.tls = tls
        self.messages: list[SyslogMessage] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self.port = 0
        self._listener: socket.socket | None = None
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.start()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.05)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._stopping = threading.Event()
        thread = threading.Thread(target=self._accept, args=(listener, self._stopping), daemon=True)
        thread.start()
        self._threads = [thread]

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(10)

    def received(self, msgid: str = "audit") -> list[SyslogMessage]:
        with self._lock:
            return [m for m in self.messages if m.msgid == msgid]

    def _accept(self, listener: socket.socket, stopping: threading.Event) -> None:
        while not stopping.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            if self.tls is not None:
                try:
                    conn.settimeout(5)
                    conn = self.tls.wrap_socket(conn, server_side=True)
                except (OSError, ssl.SSLError) as exc:
                    self.errors.append(f"tls: {exc}")
                    conn.close()
                    continue
            thread = threading.Thread(target=self._read, args=(conn, stopping), daemon=True)
            thread.start()
            self._threads.append(thread)
        listener.close()

    def _read(self, conn: socket.socket, stopping: threading.Event) -> None:
        conn.settimeout(0.05)
        buffer = b""
        with conn:
            while True:
                try:
                    chunk = conn.recv(65536)
                except (TimeoutError, ssl.SSLWantReadError):
                    if stopping.is_set():
                        return  # everything this connection held has been read
                    continue
                except OSError:
                    return
                if not chunk:
                    return
                buffer += chunk
                while True:
                    space = buffer.find(b" ")
                    if space < 0:
                        break
                    length = int(buffer[:space])
                    if len(buffer) < space + 1 + length:
                        break
                    message = buffer[space + 1 : space + 1 + length]
                    buffer = buffer[space + 1 + length :]
                    try:
                        parsed = parse(message)
                    except ValueError as exc:
                        self.errors.append(str(exc))
                        continue
                    with self._lock:
                        self.messages.append(parsed)
