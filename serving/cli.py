"""The ``sovereign`` command. Each sub-command lives beside the code it drives and owns its own arguments."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

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
    module = _command_module(COMMANDS[name][0])
    if module is None:
        print(
            f"sovereign {name}: this command runs from a checkout of the repository (its benchmarks/ folder is "
            "not part of the installed package)",
            file=sys.stderr,
        )
        return 2
    return int(module.main(rest) or 0)


def _command_module(name: str) -> ModuleType | None:
    """The sub-command's module. ``benchmarks`` is not installed with the package: it is taken from the checkout this
    package runs from (an editable install, or ``python -m serving.cli`` in the repository), or None."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != "benchmarks":
            raise
    checkout = Path(__file__).resolve().parent.parent
    if not (checkout / "benchmarks" / "__init__.py").is_file():
        return None
    sys.path.append(str(checkout))
    return importlib.import_module(name)


if __name__ == "__main__":
    sys.exit(main())
