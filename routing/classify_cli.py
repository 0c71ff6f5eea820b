"""``sovereign classify [--jsonl FILE | TEXT...]``: offline classification, one JSON result per input.

With ``--jsonl FILE`` (``-`` for standard input, also the default when no TEXT is given) each input line is
``{"id": ..., "input": {"text": "..."}}`` or ``{"id": ..., "input": {"request": <OpenAI request body>}}``
and each output line is ``{"id", "level", "local_only", "signals": [{"type", "count"}]}``, ``id`` copied
through. TEXT arguments are joined with spaces and classified as one text (``id`` null). A line that is not
such an object is classified TOP SECRET with a ``classification_error`` signal (fail closed), gets an
``error`` field that says why (never its content) and makes the exit status 1.

``--egress-review`` adds the semantic second opinion (``routing/egress_review.py``) exactly as the server applies
it before a request leaves: to every input the rules call OFFICIAL, with the same artefact and model (``--model``,
``--artefact``, ``--threshold``; no server, no network). A flagged input is raised to OFFICIAL-SENSITIVE with its
``semantic_*`` signals; one the review cannot answer gets ``semantic_review_unavailable`` and is raised too. An
artefact or model that does not verify is an error (exit status 2).

``--score`` checks the results against labels a department put on its own corpus: each line's ``"expect"``
(``"sensitive"``: must not leave, so it must be classified above OFFICIAL; ``"benign"``: may leave) and optional
``"category"``. Recall and the false-positive rate, overall and per category, go to standard error after the
results (which keep their format); lines without a label are counted apart.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

from routing.classify import ERROR_SIGNAL, Classification, classify_request, classify_text, warm
from routing.levels import Level

REVIEW_DEADLINE_S = 10.0  # offline: generous, so a slow machine does not turn answers into "unavailable"


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


Reviewer = Any  # routing.egress_review.EgressReviewer, imported only with --egress-review


def _reviewed(
    c: Classification, reviewer: Reviewer | None, *, text: str | None = None, request: dict[str, Any] | None = None
) -> Classification:
    """``c`` after the egress review, where the server would run it (the rules said OFFICIAL)."""
    if reviewer is None or c.level > Level.OFFICIAL:
        return c
    from routing.egress_review import UNAVAILABLE_SIGNAL, ReviewError, raise_level

    try:
        review = (
            reviewer.review_request(request, REVIEW_DEADLINE_S)
            if request is not None
            else reviewer.review_texts([text or ""], REVIEW_DEADLINE_S)
        )
    except ReviewError:
        signals: tuple[str, ...] = (UNAVAILABLE_SIGNAL,)
    else:
        if not review.sensitive:
            return c
        signals = review.signals
    return raise_level(c, signals)


class Score:
    """Results against the labels on their input lines: per ``(expect, category)``, how many lines there were
    (``total``) and how many of them the classifier kept local (``flagged``)."""

    LABELS = ("sensitive", "benign")

    def __init__(self) -> None:
        self.flagged: Counter[tuple[str, str]] = Counter()
        self.total: Counter[tuple[str, str]] = Counter()
        self.unlabelled = 0

    def add(self, line: str, result: dict[str, Any]) -> None:
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        expect = item.get("expect") if isinstance(item, dict) else None
        if expect not in self.LABELS:
            self.unlabelled += 1
            return
        category = item.get("category") if isinstance(item, dict) else None
        key = (str(expect), str(category) if category is not None else "")
        self.total[key] += 1
        self.flagged[key] += bool(result["local_only"])

    def lines(self) -> list[str]:
        def rate(expect: str, category: str | None = None) -> str:
            keys = [k for k in self.total if k[0] == expect and (category is None or k[1] == category)]
            flagged, total = sum(self.flagged[k] for k in keys), sum(self.total[k] for k in keys)
            share = f" ({100 * flagged / total:.1f}%)" if total else ""
            return f"{flagged}/{total}{share}"

        out = [f"score: sensitive kept local {rate('sensitive')}; benign kept local {rate('benign')}"]
        for category in sorted({k[1] for k in self.total if k[1]}):
            out.append(f"  {category}: sensitive {rate('sensitive', category)}, benign {rate('benign', category)}")
        if self.unlabelled:
            out.append(f"  {self.unlabelled} line(s) without expect: sensitive|benign, not scored")
        return out


def _classify_line(number: int, line: str, reviewer: Reviewer | None = None) -> dict[str, Any]:
    try:
        item = json.loads(line)
    except ValueError:
        return _error(None, f"line {number}: not valid JSON")
    if not isinstance(item, dict):
        return _error(None, f"line {number}: not a JSON object")
    item_id = item.get("id")
    spec = item.get("input")
    if isinstance(spec, dict) and isinstance(spec.get("text"), str):
        return _result(item_id, _reviewed(classify_text(spec["text"]), reviewer, text=spec["text"]))
    if isinstance(spec, dict) and isinstance(spec.get("request"), dict):
        return _result(item_id, _reviewed(classify_request(spec["request"]), reviewer, request=spec["request"]))
    return _error(item_id, f"line {number}: expected input.text (string) or input.request (object)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sovereign classify",
        description="Classify text or OpenAI request bodies offline (no network; a local model only with "
        "--egress-review).",
    )
    parser.add_argument("--jsonl", metavar="FILE", help="JSON Lines input ('-' for standard input)")
    parser.add_argument("text", nargs="*", metavar="TEXT", help="text to classify (joined with spaces)")
    parser.add_argument(
        "--score",
        action="store_true",
        help="score the results against each line's expect (sensitive|benign) and category, on standard error",
    )
    review = parser.add_argument_group("egress review (the semantic second opinion)")
    review.add_argument(
        "--egress-review",
        action="store_true",
        help="apply the review the server runs before an OFFICIAL request leaves",
    )
    review.add_argument(
        "--model",
        type=Path,
        default=None,
        help="MiniLM folder (default: var/models/minilm when prepared, else its wheel's)",
    )
    review.add_argument("--artefact", type=Path, default=None, help="trained head (default: the packaged one)")
    review.add_argument("--threshold", type=float, default=None, help="default: the artefact's")
    return parser


def main(argv: list[str], stdin: TextIO | None = None, stdout: TextIO | None = None) -> int:
    args = _parser().parse_args(argv)
    out = stdout or sys.stdout
    if args.jsonl is not None and args.text:
        _parser().error("give --jsonl FILE or TEXT, not both")
    reviewer = None
    if args.egress_review:
        from routing.egress_review import DEFAULT_ARTEFACT, ArtefactError, EgressReviewer, default_model_dir

        try:
            reviewer = EgressReviewer.load(
                args.artefact or DEFAULT_ARTEFACT, args.model or default_model_dir(), threshold=args.threshold
            )
        except ArtefactError as exc:
            print(f"sovereign classify: {exc}", file=sys.stderr)
            return 2
    warm()  # the first input's deadline must not pay for compiling the table
    if args.text:
        text = " ".join(args.text)
        out.write(json.dumps(_result(None, _reviewed(classify_text(text), reviewer, text=text))) + "\n")
        return 0
    source = args.jsonl or "-"
    if source == "-":
        return _run(stdin or sys.stdin, out, reviewer, args.score)
    try:
        with open(source, encoding="utf-8", errors="surrogateescape") as handle:
            return _run(handle, out, reviewer, args.score)
    except OSError as exc:
        print(f"sovereign classify: cannot read {source}: {exc.strerror}", file=sys.stderr)
        return 2


def _run(lines: Iterable[str], out: TextIO, reviewer: Reviewer | None = None, score: bool = False) -> int:
    status = 0
    tally = Score() if score else None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        result = _classify_line(number, line, reviewer)
        status = 1 if "error" in result else status
        out.write(json.dumps(result) + "\n")
        if tally is not None:
            tally.add(line, result)
    if tally is not None:
        print("\n".join(tally.lines()), file=sys.stderr)
    return status
