"""Reading a running server's audit log in tests."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def audit_records(path: Path) -> list[dict[str, Any]]:
    """Every complete record of the audit log at ``path`` (none before its first write; a line still being written,
    without its newline yet, is left for the next read)."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().split("\n")[:-1] if line]


def final_record(path: Path, request_id: str, timeout_s: float = 10) -> dict[str, Any]:
    """The one ``request`` record of ``request_id``, waiting up to ``timeout_s`` for it (a stream's is written just
    after its last byte)."""
    deadline = time.monotonic() + timeout_s
    while True:
        finals = [r for r in audit_records(path) if r["request_id"] == request_id and r["event"] == "request"]
        if finals or time.monotonic() > deadline:
            assert len(finals) == 1, f"{len(finals)} request records for {request_id}"
            return finals[0]
        time.sleep(0.02)
