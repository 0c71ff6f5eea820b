"""The ``sovereign`` command. Each sub-command lives beside the code it drives and owns its own arguments."""

from __future__ import annotations

import importlib
import sys

# sub-command -> (module, one-line help). Imported lazily: `sovereign classify` must not pay for Ray or vLLM.
COMMANDS: dict[str, tuple[str, str]] = {
    "serve": ("serving.serve", "start Ray and the Serve application (default model when no --config)"),
    "classify": ("routing.classify_cli", "classify text or OpenAI request bodies offline"),
    "audit": ("routing.audit_cli", "audit log tools: `audit verify PATH`"),
    "keys": ("routing.keys_cli", "API keys: `keys create --caller NAME [--team T --expires DATE --models a,b]`"),
    "usage": ("routing.usage", "usage for chargeback: `usage report --audit PATH [--by team,model,day]`"),
    "models": ("models.cli", "model weights: `models prepare [NAME]`, `models train-egress-review`"),
    "config": ("serving.serve_config", "render the Ray Serve config for `serve deploy` from a config file"),
    "transparency": ("serving.transparency", "an Algorithmic Transparency Recording Standard record of the config"),
    "bench": ("benchmarks.cli", "benchmarks: `bench serve|compare|overhead|classify|...` (`bench --help`)"),
}


def _usage() -> str:
    lines = ["usage: sovereign COMMAND [ARGS...]", "", "commands:"]
    lines += [f"  {name:<10} {helptext}" for name, (_, helptext) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"sovereign: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
