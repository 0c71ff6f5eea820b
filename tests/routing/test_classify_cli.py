"""``sovereign classify``: DESIGN.md's CLI contract."""

from __future__ import annotations

import io
import json
import subprocess
import sys

from routing.classify_cli import main


def run(argv: list[str], stdin: str = "") -> tuple[int, list[dict]]:
    out = io.StringIO()
    status = main(argv, stdin=io.StringIO(stdin), stdout=out)
    return status, [json.loads(line) for line in out.getvalue().splitlines()]


def test_text_arguments_are_one_text():
    status, results = run(["Patient", "NHS", "943", "476", "5919"])
    assert status == 0
    assert results == [
        {
            "id": None,
            "level": "OFFICIAL-SENSITIVE",
            "local_only": True,
            "signals": [{"type": "nhs_number", "count": 1}],
        }
    ]


def test_jsonl_file_ids_copied_through(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(
        json.dumps({"id": "a", "input": {"text": "SECRET\nplan"}})
        + "\n\n"
        + json.dumps({"id": 7, "input": {"request": {"messages": [{"role": "user", "content": "hello"}]}}})
        + "\n"
    )
    status, results = run(["--jsonl", str(path)])
    assert status == 0
    assert [(r["id"], r["level"], r["local_only"]) for r in results] == [
        ("a", "SECRET", True),
        (7, "OFFICIAL", False),
    ]
    assert results[1]["signals"] == []


def test_stdin_by_default_and_with_dash():
    line = json.dumps({"id": 1, "input": {"text": "jane.doe@gmail.com"}}) + "\n"
    for argv in ([], ["--jsonl", "-"]):
        status, results = run(argv, stdin=line)
        assert status == 0 and results[0]["signals"] == [{"type": "email", "count": 1}]


def test_bad_lines_fail_closed_and_set_the_status():
    lines = "not json\n[1]\n" + json.dumps({"id": "x", "input": {"text": 3}}) + "\n"
    status, results = run([], stdin=lines)
    assert status == 1
    assert [r["id"] for r in results] == [None, None, "x"]
    assert all(r["level"] == "TOP SECRET" and r["local_only"] for r in results)
    assert all("not json" not in r["error"] for r in results)  # errors never echo content


def test_missing_file(tmp_path, capsys):
    assert main(["--jsonl", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_console_script_dispatch():
    proc = subprocess.run(
        [sys.executable, "-m", "serving.cli", "classify", "TOP SECRET"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(proc.stdout)["level"] == "TOP SECRET"


def test_score_counts_labelled_lines_by_category_and_keeps_the_results(capsys):
    lines = [
        {"id": 1, "expect": "sensitive", "category": "marking", "input": {"text": "SECRET\nthe plan"}},
        {"id": 2, "expect": "sensitive", "category": "marking", "input": {"text": "the plan, unmarked"}},
        {"id": 3, "expect": "benign", "category": "marking", "input": {"text": "explain what SECRET means"}},
        {"id": 4, "expect": "benign", "input": {"text": "jane.doe@gmail.com"}},
        {"id": 5, "input": {"text": "no label"}},
    ]
    status, results = run(["--score"], stdin="".join(json.dumps(line) + "\n" for line in lines))
    assert status == 0 and [r["id"] for r in results] == [1, 2, 3, 4, 5]
    assert set(results[0]) == {"id", "level", "local_only", "signals"}  # the results keep their format
    err = capsys.readouterr().err.splitlines()
    assert err == [
        "score: sensitive kept local 1/2 (50.0%); benign kept local 1/2 (50.0%)",
        "  marking: sensitive 1/2 (50.0%), benign 0/1 (0.0%)",
        "  1 line(s) without expect: sensitive|benign, not scored",
    ]


def test_the_classifier_is_warmed_before_the_first_input(monkeypatch):
    """The table's compile and the views' first-use costs are paid before the first input's 250 ms deadline: a
    cold first input (a Word-pasted letter naming a person, on a loaded machine) timed out and came back TOP
    SECRET with ``classification_timeout``."""
    import routing.classify_cli as cli

    calls: list[str] = []
    monkeypatch.setattr(cli, "warm", lambda: calls.append("warm"))
    real = cli.classify_text
    monkeypatch.setattr(cli, "classify_text", lambda text: calls.append("classify") or real(text))
    status, _ = run(["--jsonl", "-"], stdin=json.dumps({"id": 1, "input": {"text": "Zo\u00eb was remanded"}}) + "\n")
    assert status == 0 and calls == ["warm", "classify"]


def test_warm_takes_every_views_first_use_costs():
    """After ``warm``, the views' first uses cost what later uses do: no first classification of these shapes
    comes near the deadline (each is timed with a generous deadline, and must not have failed closed)."""
    from routing.classify import TIMEOUT_SIGNAL, classify_text, warm

    warm()
    for text in (
        "\u0141ukasz Wi\u015bniewski was remanded at HMP Pentonville",
        "<div>Prisoner&nbsp;A1234BC</div>",
        "Call 07911 123456, born 12/03/1990",
        "Content-Transfer-Encoding: base64\n\nU0VDUkVUIGJyaWVmaW5nIG9uIEpvaG4gU21pdGgsIE5IUyA5NDMgNDc2IDU5MTkK",
    ):
        result = classify_text(text, deadline_s=0.25)
        assert result.local_only and TIMEOUT_SIGNAL not in {s.type for s in result.signals}
