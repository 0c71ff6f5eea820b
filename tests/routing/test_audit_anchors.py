"""Anchored heads: `sovereign audit verify PATH --anchors SOURCE` passes an untouched log and fails one that was
truncated, or rewritten with a recomputed chain (which the chain alone cannot show)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from routing.audit import encode_line, verify
from routing.audit_cli import main
from routing.audit_ship import AnchorConfig, load_anchors, start_shipper
from tests.routing.test_audit_ship import Writer, wait_until


@pytest.fixture
def anchored(tmp_path: Path) -> tuple[Path, Path]:
    """A 50-record log with anchors at line 20 (mid-run) and 50 (when the shipper stopped), in another folder."""
    path = tmp_path / "audit.jsonl"
    anchors = tmp_path / "elsewhere" / "anchors.jsonl"
    writer = Writer(path)
    shipper = start_shipper(path, None, AnchorConfig(interval_s=1, sink="file", path=anchors))
    assert shipper is not None
    try:
        writer.write(20)
        wait_until(lambda: anchors.exists() and '"lines":20' in anchors.read_text())
        writer.write(30)
    finally:
        shipper.close()
        writer.close()
    return path, anchors


def rechain(lines: list[bytes]) -> bytes:
    """What someone who controls the volume could do: recompute every hash after changing records."""
    out, prev = [], "0" * 64
    for raw in lines:
        fields = json.loads(raw)
        del fields["prev"], fields["hash"]
        line, prev = encode_line(fields, prev)
        out.append(line)
    return b"".join(out)


def run_cli(*args: str | Path) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "serving.cli", "audit", "verify", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_untouched_log_passes_against_its_anchors(anchored: tuple[Path, Path]) -> None:
    path, anchors = anchored
    assert sorted(load_anchors(anchors, "audit.jsonl")[0]) == [20, 50]
    code, out = run_cli(path, "--anchors", anchors)
    assert code == 0, out
    assert "50 records, chain intact" in out and "2 anchors match" in out


@pytest.mark.parametrize("keep", [30, 10])
def test_truncated_log_fails(anchored: tuple[Path, Path], keep: int) -> None:
    path, anchors = anchored
    path.write_bytes(b"".join(path.read_bytes().splitlines(keepends=True)[:keep]))
    assert verify(path).ok  # the chain alone cannot tell
    code, out = run_cli(path, "--anchors", anchors)
    assert code == 1 and "truncated away" in out, out


def test_rewritten_log_with_a_recomputed_chain_fails(anchored: tuple[Path, Path]) -> None:
    path, anchors = anchored
    lines = path.read_bytes().splitlines(keepends=True)
    record = json.loads(lines[4])
    record["backend"] = "somewhere-else"
    lines[4] = json.dumps(record).encode() + b"\n"
    path.write_bytes(rechain(lines))
    assert verify(path).ok
    code, out = run_cli(path, "--anchors", anchors)
    assert code == 1 and "line 20: record differs from the anchored head" in out, out


@pytest.mark.parametrize(("removed", "reason"), [(5, "line 20: record differs"), (30, "truncated away")])
def test_removed_record_with_a_recomputed_chain_fails(anchored: tuple[Path, Path], removed: int, reason: str) -> None:
    path, anchors = anchored
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[removed]
    path.write_bytes(rechain(lines))
    assert verify(path).ok
    code, out = run_cli(path, "--anchors", anchors)
    assert code == 1 and reason in out, out


def test_anchors_exported_from_syslog_are_read(anchored: tuple[Path, Path], tmp_path: Path) -> None:
    path, anchors = anchored
    export = tmp_path / "siem-export.log"
    export.write_text(
        "".join(
            f'<110>1 2026-01-01T00:00:00.000000Z host sovereign - anchor [sovereign@32473 log="audit.jsonl"] {line}\n'
            for line in anchors.read_text().splitlines()
        )
        + "unrelated line\n"
    )
    assert main(["verify", str(path), "--anchors", str(export)]) == 0


def test_no_anchors_for_this_log_or_conflicting_anchors_fail(anchored: tuple[Path, Path], tmp_path: Path) -> None:
    path, anchors = anchored
    renamed = tmp_path / "other.jsonl"
    renamed.write_bytes(path.read_bytes())
    assert main(["verify", str(renamed), "--anchors", str(anchors)]) == 1
    assert main(["verify", str(renamed), "--anchors", str(anchors), "--anchor-log", "audit.jsonl"]) == 0
    first = json.loads(anchors.read_text().splitlines()[0])
    first["head"] = "f" * 64
    with anchors.open("a") as fh:
        fh.write(json.dumps(first) + "\n")
    assert main(["verify", str(path), "--anchors", str(anchors)]) == 1
    assert main(["verify", str(path), "--anchors", str(tmp_path / "missing.jsonl")]) == 2


def test_head_option_still_works(anchored: tuple[Path, Path]) -> None:
    path, _ = anchored
    head = verify(path).head
    code, out = run_cli(path, "--head", head)
    assert code == 0 and head in out


def test_fast_and_slow_paths_agree_on_reserialised_lines(anchored: tuple[Path, Path]) -> None:
    """A line re-serialised (spaces, another key order) is the same record: it still verifies, via the slow path."""
    path, anchors = anchored
    lines = path.read_bytes().splitlines(keepends=True)
    lines[7] = json.dumps(dict(reversed(json.loads(lines[7]).items())), ensure_ascii=False).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    assert verify(path, progress=True).ok
    assert main(["verify", str(path), "--anchors", str(anchors)]) == 0
    record = json.loads(lines[7])
    record["status"] = 500
    lines[7] = json.dumps(record).encode() + b"\n"
    path.write_bytes(b"".join(lines))
    result = verify(path)
    assert not result.ok and result.first_bad_line == 8 and "altered" in result.reason
