"""`sovereign models prepare [NAME] [--source DIR] [--dest DIR]`, `sovereign models prepare-adapter NAME --source DIR
[--dest-root DIR]`, `sovereign models verify DIR`, `sovereign models train-egress-review [...]`
(models/egress_train.py) and `sovereign models score-egress-review [...]` (models/egress_fresh.py)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from models.manifest import ManifestError, verify_manifest
from models.registry import DEFAULT_MODEL, KNOWN_MODELS

DEFAULT_ROOT = Path("var/models")
DEFAULT_ADAPTERS_ROOT = Path("var/adapters")


def main(argv: list[str]) -> int:
    if argv[:1] == ["train-egress-review"]:  # its own arguments; torch and transformers only when training
        from models.egress_train import main as train_main

        return train_main(argv[1:])
    if argv[:1] == ["score-egress-review"]:
        from models.egress_fresh import main as score_main

        return score_main(argv[1:])
    parser = argparse.ArgumentParser(prog="sovereign models", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    prep = sub.add_parser("prepare", help="convert or copy weights and write their SHA-256 manifest")
    prep.add_argument(
        "name",
        nargs="?",
        default=DEFAULT_MODEL,
        help=f"model name (known: {', '.join(KNOWN_MODELS)}); any name with --source",
    )
    prep.add_argument("--source", type=Path, help="local Hugging Face folder (e.g. from an approved UK mirror)")
    prep.add_argument("--dest", type=Path, help="output folder (default var/models/NAME)")
    prep.add_argument("--force", action="store_true", help="prepare again even if the folder verifies")
    adapter = sub.add_parser("prepare-adapter", help="copy a PEFT LoRA adapter and write its SHA-256 manifest")
    adapter.add_argument("name", help="the adapter's name (its folder under the backend's lora.adapters_dir)")
    adapter.add_argument("--source", type=Path, required=True, help="the adapter's folder (PEFT save_pretrained)")
    adapter.add_argument(
        "--dest-root",
        type=Path,
        default=DEFAULT_ADAPTERS_ROOT,
        help=f"the adapters folder (default {DEFAULT_ADAPTERS_ROOT}; lora.adapters_dir in the config)",
    )
    adapter.add_argument("--force", action="store_true", help="prepare again even if the folder verifies")
    ver = sub.add_parser("verify", help="check a prepared folder against its manifest")
    ver.add_argument("folder", type=Path)
    sub.add_parser(
        "train-egress-review",
        add_help=False,
        help="train and evaluate the egress review's head; write its artefact (see its --help)",
    )
    sub.add_parser(
        "score-egress-review",
        add_help=False,
        help="the egress review on the fresh held-out set, alone and after the rules (see its --help)",
    )
    args = parser.parse_args(argv)

    if args.action == "verify":
        try:
            count = verify_manifest(args.folder)
        except ManifestError as exc:
            print(f"sovereign models verify: {exc}", file=sys.stderr)
            return 1
        print(f"{args.folder}: {count} files match the manifest")
        return 0

    if args.action == "prepare-adapter":
        from models.prepare import prepare_adapter

        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", args.name):
            print("sovereign models prepare-adapter: NAME: letters, digits, _ . - (at most 64)", file=sys.stderr)
            return 1
        try:
            folder = prepare_adapter(args.name, args.source, args.dest_root, force=args.force)
        except (FileNotFoundError, ValueError, ManifestError) as exc:
            print(f"sovereign models prepare-adapter: {exc}", file=sys.stderr)
            return 1
        print(f"prepared adapter {args.name} in {folder}")
        return 0

    from models.prepare import prepare  # heavy imports (torch, transformers) only when preparing

    dest = args.dest or DEFAULT_ROOT / args.name
    try:
        folder = prepare(args.name, dest, source=args.source, force=args.force)
    except (KeyError, FileNotFoundError, ManifestError) as exc:
        print(f"sovereign models prepare: {exc}", file=sys.stderr)
        return 1
    print(f"prepared {args.name} in {folder}")
    return 0
