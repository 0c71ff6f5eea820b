"""`sovereign classify --egress-review`: the same review offline, in today's output format."""

from __future__ import annotations

import io
import json
from pathlib import Path

from routing.classify_cli import main
from tests.support import wheel_minilm

SENSITIVE = (
    "The prisoner in cell 14 attempted suicide last night. What should his medication be while he is on constant watch?"
)
BENIGN = "Explain what a CHIS is under RIPA."


def _run(argv: list[str], stdin: str = "") -> tuple[int, list[dict]]:
    out = io.StringIO()
    status = main(argv, stdin=io.StringIO(stdin), stdout=out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


def test_text_is_raised_with_semantic_signals_in_the_usual_format() -> None:
    status, [line] = _run(["--egress-review", "--model", wheel_minilm(), SENSITIVE])
    assert status == 0
    assert set(line) == {"id", "level", "local_only", "signals"}
    assert line["level"] == "OFFICIAL-SENSITIVE" and line["local_only"] is True
    types = [s["type"] for s in line["signals"]]
    assert "semantic_health" in types and any(t.startswith("semantic_score_0.") for t in types)
    assert all(s["count"] == 1 for s in line["signals"])


def test_without_the_flag_the_rules_alone_decide() -> None:
    _, [line] = _run([SENSITIVE])
    assert line["level"] == "OFFICIAL" and line["signals"] == []


def test_jsonl_texts_and_requests() -> None:
    lines = "\n".join(
        json.dumps(x)
        for x in [
            {"id": "a", "input": {"text": BENIGN}},
            {"id": "b", "input": {"request": {"model": "m", "messages": [{"role": "user", "content": SENSITIVE}]}}},
            {"id": "c", "input": {"text": "OFFICIAL-SENSITIVE\nminutes of the meeting"}},
        ]
    )
    status, out = _run(["--egress-review", "--model", wheel_minilm(), "--jsonl", "-"], stdin=lines)
    assert status == 0
    by_id = {line["id"]: line for line in out}
    assert by_id["a"]["level"] == "OFFICIAL" and by_id["a"]["signals"] == []
    assert by_id["b"]["level"] == "OFFICIAL-SENSITIVE"
    # Already above OFFICIAL by the rules: the review does not run (as in the server), no semantic signal.
    assert not any(s["type"].startswith("semantic_") for s in by_id["c"]["signals"])


def test_a_threshold_of_almost_one_lets_everything_pass() -> None:
    _, [line] = _run(["--egress-review", "--model", wheel_minilm(), "--threshold", "0.9999", SENSITIVE])
    assert line["level"] == "OFFICIAL"


def test_a_model_that_does_not_verify_is_an_error(tmp_path: Path, capsys) -> None:
    status, out = _run(["--egress-review", "--model", str(tmp_path / "missing"), BENIGN])
    assert status == 2 and out == []
    assert "egress review model" in capsys.readouterr().err
