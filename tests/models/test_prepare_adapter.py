"""`sovereign models prepare-adapter`: a PEFT LoRA adapter copied with its SHA-256 manifest; anything else refused.
The configuration of adapters (backends of kind `adapter` on a base with `lora`) is checked at start."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from models.manifest import MANIFEST_NAME, ManifestError, verify_manifest
from models.prepare import prepare_adapter
from serving.config import ConfigError, load_settings
from serving.lora import adapter_folder, multiplexed_model_id


@pytest.fixture(scope="module")
def peft_adapter(tmp_path_factory: pytest.TempPathFactory, tiny_model: Path) -> Path:
    from benchmarks.tiny_model import build_tiny_lora

    return build_tiny_lora(tiny_model, tmp_path_factory.mktemp("peft") / "adapter")


def test_prepare_adapter_cli_writes_a_manifest_that_verifies(peft_adapter: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "serving.cli",
            "models",
            "prepare-adapter",
            "probation",
            "--source",
            str(peft_adapter),
            "--dest-root",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "probation" / MANIFEST_NAME).read_text())
    assert set(manifest["files"]) == {"adapter_config.json", "adapter_model.safetensors", "README.md"}
    assert verify_manifest(tmp_path / "probation") == 3


def test_a_changed_or_added_adapter_file_fails_verification(peft_adapter: Path, tmp_path: Path) -> None:
    folder = prepare_adapter("probation", peft_adapter, tmp_path)
    (folder / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ManifestError, match="not in the manifest"):
        verify_manifest(folder)
    (folder / "adapter_model.bin").unlink()
    weights = folder / "adapter_model.safetensors"
    _flip_last_byte(weights)
    with pytest.raises(ManifestError, match="does not match"):
        verify_manifest(folder)


def test_prepare_adapter_refuses_what_is_not_a_lora_adapter(peft_adapter: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        prepare_adapter("empty", tmp_path, tmp_path / "out")
    pickled = tmp_path / "pickled"
    shutil.copytree(peft_adapter, pickled)
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    with pytest.raises(FileNotFoundError):  # safetensors only: a pickle could run code when loaded
        prepare_adapter("pickled", pickled, tmp_path / "out")
    other = tmp_path / "other"
    shutil.copytree(peft_adapter, other)
    config = json.loads((other / "adapter_config.json").read_text())
    (other / "adapter_config.json").write_text(json.dumps({**config, "peft_type": "IA3"}))
    with pytest.raises(ValueError, match="not a LoRA adapter"):
        prepare_adapter("other", other, tmp_path / "out")


def test_adapter_names_cannot_leave_the_adapters_folder(tmp_path: Path) -> None:
    assert adapter_folder(tmp_path, multiplexed_model_id("tiny", "probation")) == tmp_path / "probation"
    for bad in ("tiny:..", "tiny:", "tiny:a/b"):
        with pytest.raises(ValueError):
            adapter_folder(tmp_path, bad)


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x01
    path.write_bytes(bytes(data))


def _config(**adapter: object) -> dict:
    return {
        "backends": [
            {
                "name": "local",
                "kind": "vllm",
                "model_source": "/m",
                "max_classification": "SECRET",
                "lora": {"adapters_dir": "/a"},
            },
            {"name": "plain", "kind": "vllm", "model_source": "/m"},
            {"name": "probation-lora", "kind": "adapter", "base": "local", "adapter": "probation", **adapter},
        ],
        "models": [{"name": "probation", "route": ["probation-lora"]}],
    }


def test_adapter_configuration_is_checked() -> None:
    settings = load_settings(data=_config(max_classification="OFFICIAL-SENSITIVE"))
    assert settings.backend("probation-lora").max_classification.label == "OFFICIAL-SENSITIVE"
    with pytest.raises(ConfigError, match="cannot be cleared above its base"):
        load_settings(data=_config(max_classification="TOP SECRET"))
    with pytest.raises(ConfigError, match="with lora set"):
        load_settings(data=_config(base="plain"))
    with pytest.raises(ConfigError, match="must be sovereign"):
        load_settings(data=_config(sovereign=False))
    with pytest.raises(ConfigError, match="adapter"):
        load_settings(data=_config(adapter="../escape"))


def test_the_engines_loader_verifies_an_adapter_every_time_it_loads_it(peft_adapter: Path, tmp_path: Path) -> None:
    """What an engine replica runs when Serve's multiplexing loads an adapter (its first request, or again after it
    was unloaded): the manifest is checked each time, and a changed adapter is never handed to vLLM."""
    import asyncio

    from serving.lora import verified_adapter_loader

    prepare_adapter("probation", peft_adapter, tmp_path)
    loader = verified_adapter_loader(tmp_path)(download_timeout_s=None, max_tries=1)
    model_id = multiplexed_model_id("tiny", "probation")
    loaded = asyncio.run(loader.load_model_from_config(model_id, llm_config=None))
    assert (loaded.model_id, loaded.local_path) == (model_id, str(tmp_path / "probation"))
    weights = tmp_path / "probation" / "adapter_model.safetensors"
    _flip_last_byte(weights)
    with pytest.raises(ManifestError, match="does not match"):
        asyncio.run(loader.load_model_from_config(model_id, llm_config=None))
    with pytest.raises(ManifestError, match="no manifest"):
        asyncio.run(loader.load_model_from_config(multiplexed_model_id("tiny", "absent"), llm_config=None))


def test_serve_refuses_to_start_on_an_adapter_manifest_mismatch(
    peft_adapter: Path, tiny_model: Path, tmp_path: Path
) -> None:
    folder = prepare_adapter("probation", peft_adapter, tmp_path / "adapters")
    _flip_last_byte(folder / "adapter_model.safetensors")
    config = _config()
    config["backends"][0] |= {"model_source": str(tiny_model), "lora": {"adapters_dir": str(tmp_path / "adapters")}}
    config["backends"][1]["model_source"] = str(tiny_model)
    config["audit"] = {"path": str(tmp_path / "a.jsonl")}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "serving.cli", "serve", "--config", str(tmp_path / "config.yaml")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "adapter_model.safetensors" in result.stderr and "manifest" in result.stderr
