"""``sovereign bench classify-worst``: how long the classifier takes on the costliest bodies the server accepts.

Every body under ``server.max_body_bytes`` should classify inside ``server.classification_deadline_ms`` (250 ms by
default), so that failing closed on a timeout (TOP SECRET) is a guard and not what a large, ordinary document gets.
``worst_case_bodies(size)`` builds, deterministically, one OpenAI request body of about ``size`` bytes (as JSON) of
each shape that costs the classifier most per byte:

- digits: one long run of digits, digits in NHS-like groups, and text dense with valid identifiers (every
  candidate passes its check digit and is counted);
- token ids: a completions prompt of token ids (small and identifier-sized integers), and batches of them;
- many short strings and many short keys (the walk's cost per node, and one separator per string);
- deep nesting (objects 60 deep, over and over) and many small messages;
- tool-call arguments that are JSON with escapes (each is decoded and scanned again);
- lines that are all tables' headers and rows, and lines that are all prosecutions' titles;
- numbers as OCR reads them (``l29O``) all through the body.

``main`` times ``classify_request`` on each (with a deadline far away, so the time is the whole cost, then once
with the configured deadline for the verdict) and writes ``{shape: {bytes, p50_ms, max_ms, cpu_p50_ms, level,
signals, timed_out}}``. Run it on the machine that serves, idle: the figures are one core's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DEFAULT_SIZE = 4 * 1024 * 1024  # server.max_body_bytes' default
MAX_DEPTH = 60  # below the classifier's MAX_DEPTH (64): deeper is refused outright, not scanned


def _nhs(rng: random.Random) -> str:
    while True:
        body = str(rng.choice((4, 6, 7))) + "".join(rng.choice("0123456789") for _ in range(8))
        check = (11 - sum(int(c) * (10 - i) for i, c in enumerate(body)) % 11) % 11
        if check < 10:
            return body + str(check)


def _fill(size: int, piece: Callable[[], str]) -> str:
    """Concatenate ``piece()`` until the text is ``size`` characters (ASCII: bytes)."""
    parts, total = [], 0
    while total < size:
        text = piece()
        parts.append(text)
        total += len(text)
    return "".join(parts)[:size]


def _chat(content: str) -> dict[str, Any]:
    return {"model": "default", "max_tokens": 1, "messages": [{"role": "user", "content": content}]}


def _items(room: int, make: Callable[[int], Any]) -> list[Any]:
    """``make(0)``, ``make(1)``... while the JSON list of them stays within ``room`` bytes."""
    items: list[Any] = []
    total = 2
    while True:
        item = make(len(items))
        total += len(json.dumps(item)) + 2
        if total > room:
            return items
        items.append(item)


def worst_case_bodies(size: int = DEFAULT_SIZE, seed: int = 11) -> dict[str, tuple[str, dict[str, Any]]]:
    """``{shape: (endpoint, body)}``: each body at most ``size`` bytes of JSON (``json.dumps``), and close to it."""
    rng = random.Random(seed)
    room = max(256, size - 200)  # the envelope (model, role, ...) around the payload
    digits = "0123456789"
    bodies: dict[str, tuple[str, dict[str, Any]]] = {}

    bodies["digits_run"] = ("chat", _chat("".join(rng.choices(digits, k=room))))
    bodies["digit_groups"] = (
        "chat",
        _chat(_fill(room, lambda: " ".join("".join(rng.choices(digits, k=n)) for n in (3, 3, 4)) + " ")),
    )
    bodies["valid_nhs_numbers"] = ("chat", _chat(_fill(room, lambda: _nhs(rng) + " ")))
    mixed = (
        lambda: f"{_nhs(rng)} ",
        lambda: f"jo{rng.randint(0, 999)}@example.gov.uk ",
        lambda: f"07700 {rng.randint(100000, 999999)} ",
        lambda: "SW1A 1AA ",
        lambda: f"4111 1111 1111 {rng.randint(1000, 9999)} ",
        lambda: "AB 12 34 56 C ",
    )
    bodies["dense_identifiers"] = ("chat", _chat(_fill(room, lambda: rng.choice(mixed)())))
    # every line a table's header or a row under one (routing.tables reads up to 40 rows under each header), and
    # every line a prosecution's title (each a candidate the case rules check)
    table = (
        lambda: "name,offence,sort_code,account_number,classification\n",
        lambda: f"Kieran Faulkner,burglary,{rng.randint(100000, 999999)},{rng.randint(10**7, 10**8 - 1)},SECRET\n",
    )
    # numbers as OCR reads them (O for 0, l for 1), all through the body: the decoded view's digit step is bounded
    bodies["ocr_digits"] = ("chat", _chat(_fill(room, lambda: "".join(rng.choices("0123456789Ol", k=4)) + " ")))
    lines = room * 95 // 100  # each line break is two bytes of JSON ("\\n")
    bodies["table_lines"] = ("chat", _chat(_fill(lines, lambda: rng.choice(table)())))
    bodies["case_titles"] = ("chat", _chat(_fill(lines, lambda: f"R v Okonkwo{rng.randint(0, 999)} - sentence\n")))
    # every line an identifier broken at its end after a label, or spaced out a character at a time (the rejoined
    # view reads a bounded number of each)
    bodies["wrapped_lines"] = (
        "chat",
        _chat(
            _fill(lines, lambda: f"NHS no. {rng.randint(100, 999)} {rng.randint(100, 999)}\n{rng.randint(1000, 9999)} ")
        ),
    )
    # a page of accented Latin letters: the non-ASCII runs are normalised and folded in pieces between deadline checks
    accented = "Zażółć gęślą jaźń; café, déjà vu, naïve façade, smörgåsbord, Ærøskøbing, Ŵyŷ ŝŀ. "
    per_piece = len(json.dumps(accented)) - 2  # JSON escapes each non-ASCII letter (\u00e9: six bytes)
    bodies["accented_text"] = ("chat", _chat(accented * (room // per_piece)))
    # a page of another script (Cyrillic): every letter goes through both translation tables. Sized, like every
    # shape, by its escaped JSON (six bytes a letter); a client that sends UTF-8 fits three times the letters in the
    # same limit (RESULTS.md has that figure)
    cyrillic = "Прошу перевести письмо заключённого его матери, дело номер семь. "
    bodies["other_script_text"] = ("chat", _chat(cyrillic * (room // (len(json.dumps(cyrillic)) - 2))))
    # quoted-printable without its header all through the body (soft breaks, escapes, a subject's encoded words):
    # every line is read once more as quoted-printable, beside the text as it is
    quoted = (
        lambda: f"NHS no. {rng.randint(100, 999)} =\n{rng.randint(100, 999)} {rng.randint(1000, 9999)} =E2=80=93 ",
        lambda: "classification =3D OFFICIAL=E2=80=91SENSITIVE=20\n",
        lambda: f"Subject: =?utf-8?Q?case_{rng.randint(0, 9999)}_=E2=80=93_notes?= ",
    )
    bodies["quoted_printable"] = ("chat", _chat(_fill(lines, lambda: rng.choice(quoted)())))
    bodies["spaced_out"] = ("chat", _chat(_fill(room, lambda: " ".join(rng.choices("0123456789ABC", k=9)) + " | ")))

    def completions(prompt: list[Any]) -> tuple[str, dict[str, Any]]:
        return "completions", {"model": "default", "max_tokens": 1, "prompt": prompt}

    bodies["token_ids_small"] = completions(_items(room, lambda _: rng.randint(0, 99_999)))
    bodies["token_ids_long"] = completions(_items(room, lambda _: int(_nhs(rng))))
    bodies["token_id_batches"] = completions(_items(room, lambda _: [rng.randint(0, 99_999) for _ in range(64)]))

    bodies["short_strings"] = ("embeddings", {"model": "default", "input": _items(room, lambda _: rng.choice(digits))})
    keys: dict[str, str] = {}
    total = 2
    while total + len(f"{len(keys):x}") + 8 <= room:  # '"k": "", ' costs the key and 8 bytes
        total += len(f"{len(keys):x}") + 8
        keys[f"{len(keys):x}"] = ""
    bodies["short_keys"] = ("chat", {**_chat("hi"), "metadata": keys})

    def deep(depth: int) -> Any:
        node: Any = "x"
        for i in range(depth):
            node = {"a": node} if i % 2 else [node]
        return node

    bodies["deep_nesting"] = ("chat", {**_chat("hi"), "vllm_xargs": {"n": _items(room, lambda _: deep(MAX_DEPTH - 4))}})
    bodies["many_messages"] = (
        "chat",
        {"model": "default", "max_tokens": 1, "messages": _items(room, lambda _: {"role": "user", "content": "ok"})},
    )

    def call(i: int) -> dict[str, Any]:
        # ensure_ascii writes the accent as an escape, which sends the classifier through its decoding path
        arguments = json.dumps({"note": "r\u00e9f " + _nhs(rng), "n": [1, 2, 3]})
        return {"id": f"c{i}", "type": "function", "function": {"name": "f", "arguments": arguments}}

    bodies["escaped_tool_arguments"] = (
        "chat",
        {
            "model": "default",
            "max_tokens": 1,
            "messages": [
                {"role": "user", "content": "go"},
                {"role": "assistant", "content": None, "tool_calls": _items(room, call)},
            ],
        },
    )
    return bodies


def measure(body: dict[str, Any], runs: int, deadline_ms: float) -> dict[str, Any]:
    from routing.classify import classify_request

    wall, cpu = [], []
    for _ in range(runs):
        started, started_cpu = time.perf_counter(), time.process_time()
        classify_request(body, deadline_s=60)
        wall.append((time.perf_counter() - started) * 1000)
        cpu.append((time.process_time() - started_cpu) * 1000)
    verdict = classify_request(body, deadline_s=deadline_ms / 1000)
    return {
        "p50_ms": round(statistics.median(wall), 2),
        "max_ms": round(max(wall), 2),
        "cpu_p50_ms": round(statistics.median(cpu), 2),
        "level": verdict.level.label,
        "signals": {s.type: s.count for s in verdict.signals},
        "timed_out": any(s.type == "classification_timeout" for s in verdict.signals),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sovereign bench classify-worst", description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="OUT", help="also write the figures here")
    parser.add_argument(
        "--size-bytes",
        type=int,
        action="append",
        help=f"body size to build (repeatable; default {DEFAULT_SIZE}, server.max_body_bytes' default)",
    )
    parser.add_argument("--runs", type=int, default=3, help="timed classifications per body (the median counts)")
    parser.add_argument("--deadline-ms", type=float, default=250.0, help="for the verdict (server default 250)")
    parser.add_argument("--shape", action="append", help="only these shapes (repeatable)")
    args = parser.parse_args(argv)

    from routing.classify import classify_text

    classify_text("warm up 943 476 5919")  # compile the detector table outside the timing
    results: dict[str, dict[str, Any]] = {}
    for size in args.size_bytes or [DEFAULT_SIZE]:
        for shape, (endpoint, body) in worst_case_bodies(size).items():
            if args.shape and shape not in args.shape:
                continue
            figures = {
                "size": size,
                "endpoint": endpoint,
                "bytes": len(json.dumps(body).encode()),
                **measure(body, args.runs, args.deadline_ms),
            }
            results[f"{shape}@{size}"] = figures
            print(
                f"{shape:>24} {figures['bytes']:>9} B  p50 {figures['p50_ms']:>9.2f} ms  "
                f"max {figures['max_ms']:>9.2f} ms  cpu {figures['cpu_p50_ms']:>9.2f} ms  {figures['level']}"
                f"{'  TIMED OUT' if figures['timed_out'] else ''}",
                flush=True,
            )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
