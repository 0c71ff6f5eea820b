"""Diagnostic probes: each answers one question with a JSON document. Not part of the benchmark suite."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def probe_parser(doc: str | None) -> argparse.ArgumentParser:
    """A probe's command line: its docstring's first line as the description, and ``--json OUT``."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--json", type=Path, help="write the result here as well")
    return parser


def report(result: dict[str, Any], json_path: Path | None) -> int:
    """Print the result, and write it to ``json_path`` when one was given; the probe's exit status."""
    from benchmarks.loadgen import write_json

    print(json.dumps(result, indent=2))
    if json_path:
        write_json(json_path, result)
    return 0
