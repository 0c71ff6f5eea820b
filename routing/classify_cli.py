"""``sovereign classify [--jsonl FILE | TEXT...]``: offline classification, one JSON result per input.

With ``--jsonl FILE`` (``-`` for standard input, also the default when no TEXT is given) each input line is
``{"id": ..., "input": {"text": "..."}}`` or ``{"id": ..., "input": {"request": <OpenAI request body>}}``
and each output line is ``{"id", "level", "local_only", "signals": [{"type", "count"}]}``, ``id`` copied
through. TEXT arguments are joined with spaces and classified as one text (``id`` null). A line that is not
such an object is classified TOP SECRET with a ``classification_error`` signal (fail closed), gets an
``error`` field that says why (never its content) and makes the exit status 1.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

from routing.classify import ERROR_SIGNAL, Classification, classify_request, classify_text
from routing.levels import Level


def _result(item_id: Any, c: Classification) -> dict[str, Any]:
    return {
        "id": item_id,
        "level": c.level.label,
        "local_only": c.local_only,
        "signals": [{"type": s.type, "count": s.count} for s in c.signals],
    }


def _error(item_id: Any, why: str) -> dict[str, Any]:
    return {
        "id": item_id,
        "level": Level.TOP_SECRET.label,
        "local_only": True,
        "signals": [{"type": ERROR_SIGNAL, "count": 1}],
        "error": why,
    }


def _classify_line(number: int, line: str) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except ValueError:
        return _error(None, f"line {number}: not valid JSON")
    if not isinstance(item, dict):
        return _error(None, f"line {number}: not a JSON object")
    item_id = item.get("id")
    spec = item.get("input")
    if isinstance(spec, dict) and isinstance(spec.get("text"), str):
        return _result(item_id, classify_text(spec["text"]))
    if isinstance(spec, dict) and isinstance(spec.get("request"), dict):
        return _result(item_id, classify_request(spec["request"]))
    return _error(item_id, f"line {number}: expected input.text (string) or input.request (object)")


def classify_lines(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """One result per non-blank input line (blank lines are skipped)."""
    for number, line in enumerate(lines, 1):
        if line.strip():
            yield _classify_line(number, line)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sovereign classify",
        description="Classify text or OpenAI request bodies offline (no model, no network).",
    )
    parser.add_argument("--jsonl", metavar="FILE", help="JSON Lines input ('-' for standard input)")
    parser.add_argument("text", nargs="*", metavar="TEXT", help="text to classify (joined with spaces)")
    return parser


def main(argv: list[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = stdout or sys.stdout
    if args.jsonl is not None and args.text:
        _parser().error("give --jsonl FILE or TEXT, not both")
    if args.text:
        out.write(json.dumps(_result(None, classify_text(" ".join(args.text)))) + "\n")
        return 0
    source = args.jsonl or "-"
    if source == "-":
        return _run(stdin or sys.stdin, out)
    try:
        with open(source, encoding="utf-8", errors="surrogateescape") as handle:
            return _run(handle, out)
    except OSError as exc:
        print(f"sovereign classify: cannot read {source}: {exc.strerror}", file=sys.stderr)
        return 2


def _run(lines: Iterable[str], out: TextIO) -> int:
    status = 0
    for result in classify_lines(lines):
        status = 1 if "error" in result else status
        out.write(json.dumps(result) + "\n")
    return status
