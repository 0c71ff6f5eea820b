"""The one module that goes past third-party packages' public APIs (serving/thirdparty.py): its versions are the
pins of pyproject.toml, the installed ones pass, any other is refused with an error that names the package, the
version found and the versions expected; and nothing else in the product reaches into a private module."""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from benchmarks.fake_openai import FakeOpenAIServer
from serving import thirdparty

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("serving", "routing", "models", "deploy", "benchmarks")


@pytest.fixture(autouse=True)
def _fresh_checks() -> Iterator[None]:
    thirdparty.require.cache_clear()
    yield
    thirdparty.require.cache_clear()


def _pins() -> dict[str, str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    return {req.name: str(req.specifier) for req in requirements}


def test_written_for_is_what_pyproject_pins() -> None:
    pins = _pins()
    for distribution, expected in thirdparty.WRITTEN_FOR.items():
        assert distribution in pins, f"{distribution} is not a dependency in pyproject.toml"
        assert set(pins[distribution].split(",")) == set(expected.split(",")), distribution


@pytest.mark.parametrize("distribution", sorted(thirdparty.WRITTEN_FOR))
def test_the_installed_versions_are_accepted(distribution: str) -> None:
    assert thirdparty.require(distribution) == importlib.metadata.version(distribution)


def test_another_version_is_refused_naming_package_found_and_expected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.54.9" if name == "uvicorn" else "0")
    with pytest.raises(thirdparty.UnsupportedVersion) as caught:
        thirdparty.release_reset_connections()
    message = str(caught.value)
    assert "uvicorn 0.54.9 is installed" in message
    assert "uvicorn>=0.55,<0.56" in message or "uvicorn<0.56,>=0.55" in message
    assert "serving/thirdparty.py" in message


def test_a_missing_package_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(thirdparty.UnsupportedVersion, match="google-re2 is not installed"):
        thirdparty.re2_extension()


def test_an_unparsable_version_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "not-a-version")
    with pytest.raises(thirdparty.UnsupportedVersion, match="openai not-a-version is installed"):
        thirdparty.require("openai")


def test_the_openai_client_sends_no_stainless_headers(commercial: FakeOpenAIServer) -> None:
    import openai

    async def ask() -> None:
        client = thirdparty.openai_client_class()(api_key="sk-test", base_url=commercial.base_url, max_retries=0)
        assert isinstance(client, openai.AsyncOpenAI)
        async with client:
            await client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])

    asyncio.run(ask())
    headers = commercial.received[-1]["headers"]
    assert headers["authorization"] == "Bearer sk-test"
    assert not [name for name in headers if name.startswith("x-stainless-")]


def test_own_batching_routes_the_private_hook() -> None:
    @thirdparty.own_batching
    class Server:
        def batch_output_stream(self, generator: object) -> object:
            return ("mine", generator)

    assert Server()._batch_output_stream("stream") == ("mine", "stream")  # type: ignore[attr-defined]  # routed


def test_the_private_apis_resolve_on_the_installed_versions() -> None:
    import inspect

    import ray

    # init_ray_on_loopback starts Ray (not here): ray.init reads the private keyword from its **kwargs.
    assert "_node_ip_address" in inspect.getsource(inspect.unwrap(ray.init))
    assert thirdparty.default_batch_interval_ms() > 0
    assert thirdparty.raw_request_info({"x-request-id": "abc"}).headers == {"x-request-id": "abc"}
    assert hasattr(thirdparty.re2_extension(), "RE2")
    assert thirdparty.genai_attributes().GEN_AI_OPERATION_NAME == "gen_ai.operation.name"
    logs = thirdparty.otlp_logs()
    assert logs.severity.INFO and logs.export_result.SUCCESS


_PRIVATE_IMPORT = re.compile(
    r"^\s*(?:from\s+(?:ray|uvicorn|openai|opentelemetry|re2|vllm)\S*\._\w+\S*\s+import"
    r"|from\s+(?:ray|uvicorn|openai|opentelemetry|re2|vllm)\S*\s+import\s+_\w+"
    r"|import\s+(?:ray|uvicorn|openai|opentelemetry|re2|vllm)\S*\._\w+)",
    re.MULTILINE,
)
# The classifier's scanners import re2._re2 themselves until they take it from serving.thirdparty.
_NOT_YET: set[str] = set()


def test_no_other_product_module_imports_a_private_api() -> None:
    offenders = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name == "serving/thirdparty.py" or name in _NOT_YET:
                continue
            offenders += [f"{name}: {m.group(0).strip()}" for m in _PRIVATE_IMPORT.finditer(path.read_text())]
    assert offenders == []
