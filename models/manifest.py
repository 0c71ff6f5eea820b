"""SHA-256 manifests of model folders: written when weights are prepared, checked before an engine loads them.

A manifest pins every weight, tokenizer and config file, so weights swapped or corrupted on a shared volume are
refused at start with the name of the offending file, instead of being served.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

MANIFEST_NAME = "manifest.sha256.json"
_CHUNK = 1 << 20


class ManifestError(Exception):
    """The folder does not match its manifest (or has none); the message names the file."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _model_files(folder: Path) -> list[Path]:
    def hidden(p: Path) -> bool:
        return any(part.startswith(".") for part in p.relative_to(folder).parts)

    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME and not hidden(p))


def write_manifest(folder: Path, source: str) -> Path:
    """Hash every file in ``folder`` and write the manifest beside them."""
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in _model_files(folder)}
    manifest = {"version": 1, "source": source, "files": files}
    path = folder / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return path


def verify_manifest(folder: Path) -> int:
    """Check ``folder`` against its manifest; return the number of files checked or raise ``ManifestError``.

    Extra files are refused too: an added ``*.safetensors`` shard would be loaded by the engine.
    """
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(f"{folder}: no {MANIFEST_NAME}; run `sovereign models prepare` for this model")
    try:
        expected: dict[str, str] = json.loads(path.read_text())["files"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(f"{path}: unreadable manifest ({exc.__class__.__name__})") from None
    present = {p.relative_to(folder).as_posix() for p in _model_files(folder)}
    for name in sorted(present - expected.keys()):
        raise ManifestError(f"{folder / name}: file not in the manifest")
    for name, digest in sorted(expected.items()):
        file = folder / name
        if not file.is_file():
            raise ManifestError(f"{file}: listed in the manifest but missing")
        if sha256_file(file) != digest:
            raise ManifestError(f"{file}: SHA-256 does not match the manifest")
    return len(expected)
