"""``sovereign audit verify PATH [--head HASH] [--anchors SOURCE]``: check an audit log's hash chain offline."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from routing.audit import verify


def main(argv: list[str]) -> int:
    """``sovereign audit verify PATH [--head HASH] [--anchors SOURCE]``: 0 intact, 1 broken, 2 usage/missing."""
    parser = argparse.ArgumentParser(prog="sovereign audit", description="Tamper-evident audit log tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("verify", help="check the hash chain of an audit log")
    check.add_argument("path", type=Path)
    check.add_argument("--head", help="a head hash recorded earlier; it must still be in the chain")
    check.add_argument(
        "--anchors",
        type=Path,
        metavar="SOURCE",
        help="anchors written while the log grew (the anchor file, or an export of the SIEM's anchor "
        "messages): every anchored record must still be in the log, unchanged",
    )
    check.add_argument(
        "--anchor-log", metavar="NAME", help="the log's name in the anchors (default: the file name of PATH)"
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    if args.head is not None and (len(args.head) != 64 or set(args.head) - set("0123456789abcdef")):
        print("sovereign audit verify: --head must be 64 lowercase hex digits", file=sys.stderr)
        return 2
    anchors: dict[int, str] | None = None
    latest: str | None = None
    if args.anchors is not None:
        from routing.audit_ship import load_anchors

        name = args.anchor_log or args.path.name
        try:
            anchors, latest = load_anchors(args.anchors, name)
        except OSError as exc:
            print(f"sovereign audit verify: cannot read {args.anchors}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        except ValueError as exc:
            print(f"FAILED: {args.anchors}: {exc}")
            return 1
        if not anchors:
            print(f"FAILED: {args.anchors}: no anchors for {name!r}: nothing proves this log against them")
            return 1
    try:
        result = verify(args.path, expect_head=args.head, anchors=anchors, progress=True)
    except OSError as exc:
        print(f"sovereign audit verify: cannot read {args.path}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if result.ok:
        proof = f"; {result.anchors_checked} anchors match (latest {latest})" if anchors else ""
        print(f"OK: {args.path}: {result.records} records, chain intact, head {result.head}{proof}")
        return 0
    print(f"FAILED: {args.path}: line {result.first_bad_line}: {result.reason}")
    return 1
