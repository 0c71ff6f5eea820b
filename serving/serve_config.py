"""The Ray Serve config for ``serve deploy``, generated from the one configuration file.

The Helm chart renders the same structure into the RayService's ``serveConfigV2`` (a test compares the two), so a
plain Ray cluster on VMs and a Kubernetes cluster run the same application with the same configuration.
The configuration travels inline (``args.config``): Serve redeploys when it changes, and there is no second file
on the nodes to drift from it.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import yaml

from serving.config import ConfigError, load_settings
from serving.telemetry import ray_tracing_config

IMPORT_PATH = "serving.app:build_app"
APP_NAME = "sovereign"
# Serve proxies only on the head: the only pods that receive API traffic are the router pods, so model hosts
# accept connections from inside the Ray cluster alone.
PROXY_LOCATION = "HeadOnly"


def serve_config(
    settings_data: dict[str, Any],
    *,
    app_name: str = APP_NAME,
    proxy_location: str = PROXY_LOCATION,
    runtime_env: dict[str, Any] | None = None,
    tracing: bool = False,
) -> dict[str, Any]:
    """Return the Ray Serve config (as data) that deploys ``settings_data``; raise ``ConfigError`` if invalid.

    The configuration is validated here but embedded as given: defaults are filled where the app loads it, so
    the chart (which cannot run pydantic) renders exactly the same document.
    """
    settings = load_settings(data=copy.deepcopy(settings_data))
    application: dict[str, Any] = {
        "name": app_name,
        "route_prefix": "/",
        "import_path": IMPORT_PATH,
        "args": {"config": copy.deepcopy(settings_data)},
    }
    if runtime_env:
        application["runtime_env"] = copy.deepcopy(runtime_env)
    config: dict[str, Any] = {
        "proxy_location": proxy_location,
        "http_options": {"host": settings.server.host, "port": settings.server.port},
        "applications": [application],
    }
    if tracing:  # Serve's own spans; the nodes' OTEL_EXPORTER_OTLP_ENDPOINT says where they go
        config["tracing_config"] = ray_tracing_config(settings.telemetry.trace_sampling_ratio)
    return config


def render_yaml(config: dict[str, Any]) -> str:
    """The serve config as YAML, keys in the order written (readable next to Ray's documentation)."""
    return yaml.safe_dump(config, sort_keys=False, default_flow_style=False)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sovereign config", description="configuration tools")
    sub = parser.add_subparsers(dest="command", required=True)
    render = sub.add_parser("render-serve", help="print the Ray Serve config for `serve deploy`")
    render.add_argument("--config", required=True, type=Path, help="the sovereign configuration YAML")
    render.add_argument("--out", type=Path, help="write here instead of standard output")
    render.add_argument("--name", default=APP_NAME, help="Serve application name (default: %(default)s)")
    render.add_argument(
        "--tracing",
        action="store_true",
        help="turn on Ray Serve's tracing (set OTEL_EXPORTER_OTLP_ENDPOINT on the nodes)",
    )
    render.add_argument(
        "--proxy-location",
        default=PROXY_LOCATION,
        choices=["HeadOnly", "EveryNode", "Disabled"],
        help="default: %(default)s",
    )
    sub.add_parser("check", help="validate a configuration file").add_argument("--config", required=True, type=Path)
    return parser


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"configuration {path} must be a YAML mapping")
    return data


def main(argv: list[str]) -> int:
    """``sovereign config render-serve --config FILE [--out FILE]`` and ``sovereign config check --config FILE``."""
    args = _parser().parse_args(argv)
    try:
        data = _read(args.config)
        if args.command == "check":
            load_settings(data=data)
            print(f"{args.config}: valid")
            return 0
        text = render_yaml(
            serve_config(data, app_name=args.name, proxy_location=args.proxy_location, tracing=args.tracing)
        )
    except ConfigError as exc:
        print(f"sovereign config: {exc}", file=sys.stderr)
        return 2
    if args.out is None:
        sys.stdout.write(text)
    else:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
