"""`sovereign usage report`: grouping, filters, formats, from audit records written by the real writer."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from routing.audit import AuditLog, AuditRecord, verify
from routing.usage import main, usage_report

POLICY = "0" * 64


def _record(
    ts: str,
    team: str | None,
    model: str,
    backend: str | None,
    prompt: int | None,
    completion: int | None,
    event: str = "request",
) -> AuditRecord:
    return AuditRecord(
        ts=ts,
        event=event,
        request_id=f"r{ts[-9:-1].replace(':', '')}",
        caller="c",
        team=team,
        endpoint="/v1/chat/completions",
        model=model,
        declared_level=None,
        detected_level="OFFICIAL",
        level="OFFICIAL",
        policy_sha256=POLICY,
        backend=backend,
        status=200,
        prompt_tokens=prompt,
        completion_tokens=completion,
        latency_ms=1.0,
    )


@pytest.fixture
def log(tmp_path: Path) -> Path:
    path = tmp_path / "audit.jsonl"
    records = [
        _record("2026-12-01T10:00:00.000001Z", "finance", "default", "local", 10, 5),
        _record("2026-12-01T11:00:00.000002Z", "finance", "default", "openai", 7, 3, event="egress"),
        _record("2026-12-01T11:00:00.000003Z", "finance", "default", "openai", 7, 3),
        _record("2026-12-02T09:00:00.000004Z", "analysts", "default", "local", 20, 8),
        _record("2026-12-02T09:30:00.000005Z", None, "default", None, None, None),  # refused before a backend
    ]

    async def write() -> None:
        audit = AuditLog(path)
        for r in records:
            await audit.append(r, durable=False)
        await audit.aclose()

    asyncio.run(write())
    assert verify(path).ok
    return path


def test_groups_and_totals(log: Path) -> None:
    report = usage_report(log.read_bytes().splitlines(), by=("team", "backend"))
    assert report.rows() == [
        {
            "team": "_none",
            "backend": "_none",
            "requests": 1,
            "prompt_tokens": 0,
            "completion_tokens": 0,
            "total_tokens": 0,
        },
        {
            "team": "analysts",
            "backend": "local",
            "requests": 1,
            "prompt_tokens": 20,
            "completion_tokens": 8,
            "total_tokens": 28,
        },
        {
            "team": "finance",
            "backend": "local",
            "requests": 1,
            "prompt_tokens": 10,
            "completion_tokens": 5,
            "total_tokens": 15,
        },
        {
            "team": "finance",
            "backend": "openai",
            "requests": 1,
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "total_tokens": 10,
        },  # the egress record is not counted again
    ]
    assert report.totals.as_dict() == {"requests": 4, "prompt_tokens": 37, "completion_tokens": 16, "total_tokens": 53}


def test_cli_since_day_and_formats(log: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(
            [
                "report",
                "--audit",
                str(log),
                "--since",
                "2026-12-02",
                "--by",
                "day,team",
                "--format",
                "json",
                "--no-progress",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["totals"]["total_tokens"] == 28 and {r["day"] for r in doc["rows"]} == {"2026-12-02"}
    assert main(["report", "--audit", str(log), "--by", "model", "--no-progress"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows == [
        {"model": "default", "requests": "4", "prompt_tokens": "37", "completion_tokens": "16", "total_tokens": "53"}
    ]
    assert main(["report", "--audit", str(log), "--by", "prompt"]) == 2
    assert main(["report", "--audit", str(log.parent / "missing.jsonl")]) == 2


def test_registered_in_the_cli() -> None:
    from serving.cli import COMMANDS

    assert COMMANDS["usage"][0] == "routing.usage"
