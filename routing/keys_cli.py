"""``sovereign keys create|list|revoke``: API keys, stored hashed in the keys file (routing/keys.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from routing.keys import (
    DEFAULT_KEYS_FILE,
    DEFAULT_TEAM,
    KeyFileError,
    create_key,
    parse_expiry,
    read_entries,
    revoke_keys,
)
from routing.levels import Level


def _level_arg(text: str) -> Level:
    try:
        return Level.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: list[str]) -> int:
    """``sovereign keys create --caller NAME ...`` (the key alone on the last line), ``sovereign keys list`` and
    ``sovereign keys revoke --caller NAME | --sha256 PREFIX``."""
    parser = argparse.ArgumentParser(prog="sovereign keys", description="Manage API keys (stored hashed).")
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="create a key; it is printed once, on the last line")
    create.add_argument("--caller", required=True, help="caller name (letters, digits, _ . : @ + -)")
    create.add_argument("--floor", type=_level_arg, help="every request of this key is at least this level")
    create.add_argument("--ceiling", type=_level_arg, help="requests above this level are refused (403)")
    create.add_argument("--rate", type=int, help="requests per minute (default: auth.default_rate_per_minute)")
    create.add_argument("--team", help=f"the caller's team, for budgets and usage (default: {DEFAULT_TEAM})")
    create.add_argument(
        "--expires",
        metavar="DATE",
        help="the key stops working after this date (UTC, through its end) or RFC 3339 time",
    )
    create.add_argument(
        "--models",
        type=_models_arg,
        metavar="A,B",
        help="the public model names the key may use (default: every configured model)",
    )
    create.add_argument("--keys-file", type=Path, default=DEFAULT_KEYS_FILE)
    listing = sub.add_parser("list", help="list callers and limits (never the keys)")
    listing.add_argument("--keys-file", type=Path, default=DEFAULT_KEYS_FILE)
    revoke = sub.add_parser("revoke", help="remove keys; a running server stops accepting them within ~1 s")
    which = revoke.add_mutually_exclusive_group(required=True)
    which.add_argument("--caller", help="every key of this caller")
    which.add_argument("--sha256", help="the one key whose SHA-256 starts with this (from `keys list`)")
    revoke.add_argument("--keys-file", type=Path, default=DEFAULT_KEYS_FILE)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)

    if args.command == "revoke":
        try:
            removed = revoke_keys(args.keys_file, caller=args.caller, sha256_prefix=args.sha256)
        except (ValueError, OSError) as exc:
            print(f"sovereign keys: {exc}", file=sys.stderr)
            return 1
        for e in removed:
            print(f"revoked caller {e.caller!r} key sha256:{e.key_sha256[:8]}… (created {e.created})")
        return 0

    if args.command == "list":
        try:
            entries = read_entries(args.keys_file, missing_ok=False)
        except KeyFileError as exc:
            print(f"sovereign keys: {exc}", file=sys.stderr)
            return 1
        print(
            f"{'CALLER':<24} {'TEAM':<16} {'FLOOR':<18} {'CEILING':<18} {'RATE/MIN':>8}  {'CREATED':<20} "
            f"{'EXPIRES':<20} {'MODELS':<16} KEY"
        )
        for e in entries:
            models = ",".join(e.models) if e.models is not None else "*"
            print(
                f"{e.caller:<24} {e.team or DEFAULT_TEAM:<16} {_label(e.floor):<18} {_label(e.ceiling):<18} "
                f"{e.rate_per_minute or '-':>8}  {e.created:<20} {e.expires or '-':<20} {models:<16} "
                f"sha256:{e.key_sha256[:8]}…"
            )
        return 0

    try:
        key = create_key(
            args.keys_file,
            args.caller,
            args.floor,
            args.ceiling,
            args.rate,
            team=args.team,
            expires=args.expires,
            models=args.models,
        )
    except (ValueError, OSError) as exc:
        print(f"sovereign keys: {exc}", file=sys.stderr)
        return 1
    print(
        f"Created an API key for caller {args.caller!r} (team {args.team or DEFAULT_TEAM}, floor "
        f"{_label(args.floor)}, ceiling {_label(args.ceiling)}, rate {args.rate or 'default'}/min, expires "
        f"{parse_expiry(args.expires) if args.expires else 'never'}, models "
        f"{','.join(args.models) if args.models is not None else 'all'}).\n"
        f"Only its SHA-256 is stored, in {args.keys_file}. It is shown once, now; keep it secret:"
    )
    print(key)
    return 0


def _models_arg(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError("name at least one model")
    return names


def _label(level: Level | None) -> str:
    return level.label if level is not None else "-"
