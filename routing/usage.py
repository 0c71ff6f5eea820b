"""``sovereign usage report``: requests and tokens from the audit log, grouped for chargeback.

Only ``event: request`` records count (each request has exactly one; ``egress`` records announce a send and would
count it twice). Tokens are what the backend reported (prompt plus completion); a request that never reached a
backend has none. A field a record does not carry (``team`` before teams existed, ``backend`` of a refused
request) is grouped as ``_none``. The log is read as a stream, with a progress bar on a terminal.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from routing.audit import audit_lines

DIMENSIONS = ("team", "model", "backend", "level", "day", "caller")
DEFAULT_BY = ("team", "model")
NONE = "_none"


@dataclass
class Totals:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def add(self, record: dict[str, Any]) -> None:
        self.requests += 1
        self.prompt_tokens += int(record.get("prompt_tokens") or 0)
        self.completion_tokens += int(record.get("completion_tokens") or 0)

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass
class Report:
    by: tuple[str, ...]
    groups: dict[tuple[str, ...], Totals]
    totals: Totals
    skipped_lines: int = 0

    def rows(self) -> list[dict[str, Any]]:
        return [
            {**dict(zip(self.by, key, strict=True)), **totals.as_dict()} for key, totals in sorted(self.groups.items())
        ]


def _key(record: dict[str, Any], by: tuple[str, ...]) -> tuple[str, ...]:
    out = []
    for dim in by:
        value = str(record.get("ts", ""))[:10] if dim == "day" else record.get(dim)
        out.append(str(value) if value else NONE)
    return tuple(out)


def usage_report(
    lines: Iterable[bytes | str],
    *,
    by: tuple[str, ...] = DEFAULT_BY,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
) -> Report:
    """Group the request records of ``lines`` by ``by``; ``since``/``until``: only records at or after / before."""
    unknown = [d for d in by if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; choose from {', '.join(DIMENSIONS)}")
    since_ts = _ts(since) if since else None
    until_ts = _ts(until) if until else None
    groups: dict[tuple[str, ...], Totals] = {}
    totals, skipped = Totals(), 0
    for raw in lines:
        try:
            record = json.loads(raw)
        except ValueError:
            skipped += 1  # a torn last line; `sovereign audit verify` says more
            continue
        if not isinstance(record, dict) or record.get("event") != "request":
            continue
        ts = record.get("ts")
        if not isinstance(ts, str) or (since_ts and ts < since_ts) or (until_ts and ts >= until_ts):
            continue
        groups.setdefault(_key(record, by), Totals()).add(record)
        totals.add(record)
    return Report(tuple(by), groups, totals, skipped)


def _ts(when: dt.datetime) -> str:
    """The audit log's timestamp form (RFC 3339 UTC, sortable as text)."""
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_when(text: str) -> dt.datetime:
    """A date (midnight UTC) or an RFC 3339 time."""
    if len(text) == 10:
        return dt.datetime.combine(dt.date.fromisoformat(text), dt.time(), dt.UTC)
    when = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


def write_report(report: Report, fmt: str, out: TextIO) -> None:
    if fmt == "json":
        json.dump(
            {
                "by": list(report.by),
                "rows": report.rows(),
                "totals": report.totals.as_dict(),
                "skipped_lines": report.skipped_lines,
            },
            out,
            indent=2,
        )
        out.write("\n")
        return
    writer = csv.DictWriter(
        out,
        fieldnames=[*report.by, "requests", "prompt_tokens", "completion_tokens", "total_tokens"],
        lineterminator="\n",
    )
    writer.writeheader()
    writer.writerows(report.rows())


def main(argv: list[str]) -> int:
    """``sovereign usage report --audit PATH [--since DATE] [--until DATE] [--by DIMS] [--format csv|json]``."""
    parser = argparse.ArgumentParser(prog="sovereign usage", description="Usage (requests, tokens) from the audit log.")
    sub = parser.add_subparsers(dest="command", required=True)
    rep = sub.add_parser("report", help="requests and tokens grouped by team, model, backend, level, day, caller")
    rep.add_argument("--audit", type=Path, required=True, help="the audit log (JSON lines)")
    rep.add_argument("--since", type=parse_when, help="records at or after this date (UTC) or RFC 3339 time")
    rep.add_argument("--until", type=parse_when, help="records before this date (UTC) or RFC 3339 time")
    rep.add_argument(
        "--by",
        default=",".join(DEFAULT_BY),
        help=f"comma-separated dimensions ({', '.join(DIMENSIONS)}); default {','.join(DEFAULT_BY)}",
    )
    rep.add_argument("--format", choices=("csv", "json"), default="csv")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    by = tuple(d.strip() for d in args.by.split(",") if d.strip())
    try:
        report = usage_report(
            audit_lines(args.audit, progress=not args.no_progress, desc="usage"),
            by=by,
            since=args.since,
            until=args.until,
        )
    except ValueError as exc:
        print(f"sovereign usage: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"sovereign usage: cannot read {args.audit}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    write_report(report, args.format, sys.stdout)
    return 0
