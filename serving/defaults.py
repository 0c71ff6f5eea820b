"""The embedded default configuration of `sovereign serve` with no --config: local models on the CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from models.registry import DEFAULT_EMBEDDING_MODEL, DEFAULT_MODEL, KNOWN_MODELS
from serving.config import OPENAI_API_BASE_URL

VAR = Path("var")


def default_config(var: Path = VAR) -> dict[str, Any]:
    """SmolLM2 for chat and completions, MiniLM for embeddings; OpenAI only when ``OPENAI_API_KEY`` is set."""
    chat, embed = KNOWN_MODELS[DEFAULT_MODEL], KNOWN_MODELS[DEFAULT_EMBEDDING_MODEL]
    threads = max(1, os.cpu_count() or 1)
    backends: list[dict[str, Any]] = [
        {
            "name": "local",
            "kind": "vllm",
            "model_source": str(var / "models" / chat.name),
            "served_model_name": chat.served_name,
            "max_classification": "SECRET",
            "accelerator": "cpu",
            "cpu_threads": threads,
            "engine": {"dtype": "bfloat16", "max_model_len": 2048, "max_num_seqs": 64},
        },
        {
            "name": "local-embed",
            "kind": "vllm",
            "task": "embed",
            "model_source": str(var / "models" / embed.name),
            "served_model_name": embed.served_name,
            "max_classification": "SECRET",
            "accelerator": "cpu",
            "cpu_threads": 1,
            "engine": {"dtype": "float32", "max_model_len": 256},
        },
    ]
    chat_route = ["local"]
    if os.environ.get("OPENAI_API_KEY"):
        backends.append(
            {
                "name": "openai",
                "kind": "openai",
                "sovereign": False,
                "max_classification": "OFFICIAL",
                "base_url": os.environ.get("OPENAI_BASE_URL", OPENAI_API_BASE_URL),
                "api_key_env": "OPENAI_API_KEY",
                "model": "gpt-4.1-mini",
                "embedding_model": "text-embedding-3-small",
            }
        )
        chat_route.append("openai")
    return {
        "server": {"host": "127.0.0.1", "port": 8000},
        "audit": {"path": str(var / "audit.jsonl")},
        "auth": {"keys_file": str(var / "keys.json")},
        "backends": backends,
        "models": [
            {"name": "default", "route": chat_route, "description": chat.description},
            {"name": chat.served_name, "route": chat_route},
            {"name": embed.served_name, "route": ["local-embed"], "description": embed.description},
        ],
        "dev_mode": True,
    }
