"""The `sovereign` command: sub-commands load lazily; `bench` runs from a checkout, since benchmarks/ is not part of
the installed package."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from serving import cli

REPO = Path(__file__).resolve().parents[2]


def test_benchmarks_are_not_packaged_and_bench_finds_them_in_the_checkout(tmp_path: Path) -> None:
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert not any(p.startswith("benchmarks") or p.startswith("tests") for p in packages["include"])
    # From another folder and without PYTHONPATH: the installed (editable) package alone, as the console script runs.
    result = subprocess.run(
        [sys.executable, "-c", "import sys; from serving.cli import main; sys.exit(main(['bench', '--help']))"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: sovereign bench" in result.stdout


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
