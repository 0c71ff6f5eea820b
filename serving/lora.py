"""LoRA adapters on local engines: their names under Ray Serve LLM's multiplexing, and a loader that verifies.

An adapter backend (``kind: adapter``) is served by its base backend's engines. Requests for it carry the
multiplexed model id ``<base served name>:<adapter>`` (Serve routes them to a replica that has, or will load, the
adapter; vLLM serves them under that name). Ray Serve LLM's own loader downloads adapters from cloud storage; this
one takes them from the base's ``lora.adapters_dir`` on the engine's node and checks each against its SHA-256
manifest (``sovereign models prepare-adapter``) before the engine loads it: a changed, added or missing file is
refused, and the request fails without the adapter ever being loaded.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from models.manifest import ManifestError, verify_manifest

log = logging.getLogger("sovereign.lora")

ADAPTERS_DIR_KEY = "sovereign_lora_adapters_dir"  # LLMConfig.experimental_configs: the base's lora.adapters_dir


def multiplexed_model_id(base_served_name: str, adapter: str) -> str:
    """The model id of ``adapter`` on the engines serving ``base_served_name`` (Ray Serve LLM's ``base:adapter``)."""
    return f"{base_served_name}:{adapter}"


def adapter_folder(adapters_dir: Path, lora_model_id: str) -> Path:
    """The folder of the adapter a multiplexed model id names; refuses anything but a plain folder name."""
    adapter = lora_model_id.rpartition(":")[2]
    if not adapter or adapter in {".", ".."} or "/" in adapter or "\\" in adapter:
        raise ValueError("not an adapter name")
    return adapters_dir / adapter


def verified_adapter_loader(adapters_dir: Path) -> type:
    """A ``LoraModelLoader`` class (what ``LLMServer`` takes as ``model_downloader``) that serves adapters from
    ``adapters_dir`` after verifying their manifest. Imported lazily: Ray Serve LLM imports vLLM."""
    from serving.thirdparty import ray_lora_loading

    loader_base, disk_config, adapter_ids = ray_lora_loading()

    class VerifiedAdapterLoader(loader_base):  # type: ignore[valid-type,misc]  # Ray's private class, typed Any
        async def load_model_from_config(self, lora_model_id: str, llm_config: Any) -> Any:
            """Called by Serve's multiplexing each time the replica loads the adapter (its first request, and again
            after it was unloaded): verified every time, since the engine then reads the files from disk."""
            folder = adapter_folder(adapters_dir, lora_model_id)
            try:
                await asyncio.to_thread(verify_manifest, folder)
            except ManifestError as exc:
                log.error("LoRA adapter refused, not loaded: %s", exc)
                raise
            return disk_config.model_validate(
                {
                    "model_id": lora_model_id,
                    "max_total_tokens": None,
                    "local_path": str(folder),
                    "lora_assigned_int_id": adapter_ids.next(),
                }
            )

    return VerifiedAdapterLoader
