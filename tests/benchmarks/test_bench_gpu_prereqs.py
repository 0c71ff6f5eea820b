"""The GPU script's prerequisite checks run on a CPU-only machine and say plainly what is missing."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from benchmarks.gpu.prereqs import check_gpus, check_weights
from benchmarks.gpu.run_gpu_bench import EXIT_PREREQUISITES, main

needs_no_gpu = pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this machine has nvidia-smi")


@needs_no_gpu
def test_no_gpu_visible():
    problem = check_gpus()
    assert problem is not None and "no GPU visible" in problem.message


def test_nvidia_smi_listing_nothing(tmp_path):
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    fake.chmod(0o755)
    problem = check_gpus(str(fake))
    assert problem is not None and "no GPU visible" in problem.message


def test_weights_checks(tmp_path):
    assert "no weights folder" in check_weights(tmp_path / "missing").message
    assert "config.json" in check_weights(tmp_path).message
    (tmp_path / "config.json").write_text("{}")
    assert "manifest" in check_weights(tmp_path).message


@needs_no_gpu
def test_script_exits_cleanly_naming_what_is_missing(tmp_path, capsys):
    assert main(["--model-source", str(tmp_path / "w"), "--out", str(tmp_path / "out")]) == EXIT_PREREQUISITES
    err = capsys.readouterr().err
    assert "no GPU visible" in err and "no weights folder" in err
    assert not (tmp_path / "out").exists()  # nothing started, nothing written


@needs_no_gpu
def test_script_as_a_process(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu.run_gpu_bench", "--model-source", str(tmp_path), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == EXIT_PREREQUISITES and "Traceback" not in out.stderr
