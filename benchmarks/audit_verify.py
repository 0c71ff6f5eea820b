"""``sovereign bench audit-verify``: time ``sovereign audit verify`` (streamed) on a generated log of N records.

The log is written with the real chain encoder (``routing.audit.encode_line``) from varied, realistic records
(levels, signals, attempts, tokens), with an anchor every ``--anchor-every`` records, then verified with and
without the anchors. Memory is reported too: verify streams, so it must not grow with the log.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from routing.audit import GENESIS, AuditRecord, encode_line, verify
from routing.audit_ship import ANCHOR_TYPE, load_anchors

_LEVELS = ("official", "official sensitive", "secret", None)


def _fields(i: int) -> dict[str, object]:
    level = _LEVELS[i % 4]
    egress = i % 7 == 0
    return AuditRecord.model_validate(
        {
            "event": "egress" if egress else "request",
            "request_id": f"req-{i:010d}",
            "caller": f"team-{i % 13}",
            "endpoint": "/v1/chat/completions",
            "model": "default",
            "declared_level": None,
            "detected_level": level,
            "level": level,
            "signals": [{"type": "nhs_number", "count": 1 + i % 3}] if i % 5 == 0 else [],
            "policy_sha256": "ab" * 32,
            "classifier_sha256": "cd" * 32,
            "candidates": ["local", "openai"],
            "attempts": [{"backend": "local", "outcome": "ok", "reason": None, "ms": 12.5 + i % 100}],
            "backend": "openai" if egress else "local",
            "status": 200,
            "prompt_tokens": 10 + i % 500,
            "completion_tokens": 5 + i % 300,
            "latency_ms": 13.0 + i % 1000,
        }
    ).model_dump(mode="json")


def generate(path: Path, anchors: Path, records: int, anchor_every: int) -> None:
    templates = [_fields(i) for i in range(1000)]  # validated once; request ids and ts made unique below
    prev = GENESIS
    with open(path, "wb", buffering=1 << 22) as out, open(anchors, "w") as anchor_out:
        for i in range(1, records + 1):
            fields = dict(
                templates[i % 1000],
                request_id=f"req-{i:010d}",
                ts=f"2026-12-06T{(i // 3_600_000_000) % 24:02d}:{(i // 60_000_000) % 60:02d}:"
                f"{(i // 1_000_000) % 60:02d}.{i % 1_000_000:06d}Z",
            )
            line, prev = encode_line(fields, prev)
            out.write(line)
            if i % anchor_every == 0 or i == records:
                anchor_out.write(
                    json.dumps({"type": ANCHOR_TYPE, "log": path.name, "lines": i, "head": prev, "ts": fields["ts"]})
                    + "\n"
                )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sovereign bench audit-verify", description=__doc__)
    parser.add_argument("--records", type=int, default=10_000_000)
    parser.add_argument("--anchor-every", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None, help="where the log is written (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the generated log")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path, anchors_path = Path(tmp) / "audit.jsonl", Path(tmp) / "anchors.jsonl"
        started = time.perf_counter()
        generate(path, anchors_path, args.records, args.anchor_every)
        wrote = time.perf_counter() - started
        size = path.stat().st_size
        print(f"generated {args.records:,} records ({size / 2**30:.2f} GiB) in {wrote:.1f} s", flush=True)
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        started = time.perf_counter()
        anchors, _ = load_anchors(anchors_path, path.name)
        result = verify(path, anchors=anchors, progress=True)
        took = time.perf_counter() - started
        rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        if not result.ok:
            print(f"FAILED: {result.reason} at line {result.first_bad_line}", file=sys.stderr)
            return 1
        print(
            f"verify --anchors: {result.records:,} records, {result.anchors_checked} anchors, {took:.1f} s, "
            f"{result.records / took:,.0f} records/s, {size / took / 2**20:.1f} MiB/s; "
            f"max RSS {rss_before / 1024:.0f} -> {rss_after / 1024:.0f} MiB"
        )
        if args.keep:
            kept = Path.cwd() / "audit-bench.jsonl"
            path.rename(kept)
            print(f"kept {kept}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
