"""Session-wide resources: one fake commercial API and one running application with real engines.

The application is expensive (two vLLM engines under Ray Serve), so every test that needs it shares this one.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import uuid
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from benchmarks.fake_idp import FakeIdP
from benchmarks.fake_openai import FakeOpenAIServer
from benchmarks.tiny_model import CHAT_TEMPLATE
from models.registry import OFFLINE_ENV
from serving.ports import free_port
from tests.support.app import TEST_ENGINE, RunningApp, post_mortem, start_app, stop_app, wait_for_every_backend
from tests.support.otlp import OTLPCollector

for _name, _value in OFFLINE_ENV.items():
    os.environ.setdefault(_name, _value)
# Every process this test session starts inherits this (servers, Ray, engines, HAProxy), so that the check at the
# end finds what the session left running, and only that: other sessions may run servers on the same host.
TEST_SESSION_ENV = "SOVEREIGN_TEST_SESSION"
os.environ[TEST_SESSION_ENV] = uuid.uuid4().hex
LEFTOVER_TITLES = ("VLLM::", "haproxy", "ray::", "raylet", "gcs_server", "serving.cli serve")

CALLERS: dict[str, dict[str, Any]] = {
    "tester": {},
    "ceiling-official": {"ceiling": "OFFICIAL"},
    "floor-secret": {"floor": "SECRET"},
    "slow-rate": {"rate_per_minute": 2},
    # Teams, expiry, model lists and a shared team budget (tests/serving/test_identity_app.py).
    "team-a1": {"team": "app-shared"},
    "team-a2": {"team": "app-shared"},
    "expired-key": {"expires": "2020-01-01"},
    "local-models-only": {"models": ["local-only"]},
}
TOOLS_CHAT_TEMPLATE = "{% if tools %}<|im_start|>system\n{{ tools | tojson }}<|im_end|>\n{% endif %}" + CHAT_TEMPLATE
"""The shared app's chat template for the tiny model: its own, after a system turn listing the tools, if any."""
APP_SHARED_TOKENS_PER_DAY = 5000
"""The daily token budget of team app-shared (callers team-a1 and team-a2; no other caller is in it)."""


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from benchmarks.tiny_model import build_tiny_llama
    from models.manifest import write_manifest

    folder = build_tiny_llama(tmp_path_factory.mktemp("models") / "tiny-llama")
    write_manifest(folder, "test fixture")
    return folder


@pytest.fixture(scope="session")
def embedding_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from models.prepare import prepare

    return prepare("minilm", tmp_path_factory.mktemp("models") / "minilm")


@pytest.fixture(scope="session")
def fake_commercial() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture(scope="session")
def otlp_collector() -> Iterator[OTLPCollector]:
    """Where the shared app's processes (Serve, router, vLLM) export their spans."""
    collector = OTLPCollector()
    try:
        yield collector
    finally:
        collector.close()


@pytest.fixture
def commercial(fake_commercial: FakeOpenAIServer) -> FakeOpenAIServer:
    """The shared fake, reset to healthy and empty for each test."""
    fake_commercial.reset()
    fake_commercial.set_fault("ok")
    return fake_commercial


@pytest.fixture(scope="session")
def idp(tmp_path_factory: pytest.TempPathFactory) -> FakeIdP:
    """The identity provider the shared app trusts: RS256 and ES256 keys made here, their JWKS in a file."""
    return FakeIdP.create(tmp_path_factory.mktemp("idp") / "jwks.json")


def app_config(
    workdir: Path,
    tiny_model: Path,
    embedding_model: Path,
    commercial_url: str,
    otlp_endpoint: str | None = None,
    idp: FakeIdP | None = None,
) -> dict:
    audit: dict = {"path": str(workdir / "audit.jsonl")}
    if otlp_endpoint:  # the audit records and anchors also go to the loopback collector, as OTLP logs
        audit["shipping"] = {"kind": "otlp", "endpoint": f"{otlp_endpoint}/v1/logs", "poll_s": 0.1}
        audit["anchors"] = {"sink": "shipping", "interval_s": 5}
    auth: dict = {
        "keys_file": str(workdir / "keys.json"),
        "budgets": {"teams": {"app-shared": {"tokens_per_day": APP_SHARED_TOKENS_PER_DAY}}},
    }
    if idp is not None:  # OIDC tokens beside the keys: group sg-app-users is team app-oidc
        auth["oidc"] = idp.oidc_config(
            rules=[
                {"claim": "groups", "value": "sg-app-users", "team": "app-oidc", "models": ["default", "local-only"]},
                {"claim": "roles", "value": "Sovereign.Secret", "floor": "SECRET"},
            ]
        )
    return {
        "server": {
            "host": "127.0.0.1",
            "port": free_port(),
            "max_body_bytes": 65536,
            "metrics_port": free_port(),
            "ray_metrics_port": free_port(),
        },
        "audit": audit,
        "auth": auth,
        "backends": [
            # Tools on the tiny model: a tool-call parser, and a chat template that also renders the tools
            # (tests/serving/test_tools_and_pooling.py).
            {
                "name": "local",
                "kind": "vllm",
                "model_source": str(tiny_model),
                "served_model_name": "tiny",
                "max_classification": "SECRET",
                "cpu_threads": 1,
                "max_queue_depth": 4,
                "store_responses": True,  # vLLM's Responses API store (tests/serving/test_responses_api.py)
                "engine": {
                    **TEST_ENGINE,
                    "dtype": "bfloat16",
                    "max_model_len": 1024,
                    "max_num_seqs": 16,
                    "tool_call_parser": "hermes",
                    "chat_template": TOOLS_CHAT_TEMPLATE,
                },
            },
            {
                "name": "embed",
                "kind": "vllm",
                "task": "embed",
                "model_source": str(embedding_model),
                "max_classification": "SECRET",
                "cpu_threads": 1,
                "engine": {**TEST_ENGINE, "dtype": "float32", "max_model_len": 256},
            },
            {
                "name": "commercial",
                "kind": "openai",
                "sovereign": False,
                "max_classification": "OFFICIAL",
                "base_url": commercial_url,
                "api_key_env": "FAKE_COMMERCIAL_KEY",
                "model": "gpt-fake",
                "embedding_model": "embed-fake",
                "timeout_s": 5,
                "connect_timeout_s": 2,
            },
        ],
        "models": [
            {"name": "default", "route": ["local", "commercial"]},
            {"name": "commercial-first", "route": ["commercial", "local"]},
            {"name": "local-only", "route": ["local"]},
            {"name": "commercial-only", "route": ["commercial"]},
            {"name": "embeddings", "route": ["embed"]},
            {"name": "embeddings-commercial-first", "route": ["commercial", "embed"]},
            # Short time limits (server.request_timeout_s stays at its default for everything else).
            {"name": "local-deadline", "route": ["local"], "request_timeout_s": 1.5},
            {"name": "commercial-deadline", "route": ["commercial"], "request_timeout_s": 1.5},
        ],
        # The egress review is on by default (a non-sovereign backend is configured): MiniLM as prepared for the app.
        "egress_review": {"model": str(embedding_model)},
    }


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that uses the running application needs its engines: it is marked ``engine`` whether or not its
    module says so, and the fast tier (``make check``) leaves it out."""
    for item in items:
        if "app" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.engine)


@pytest.fixture(scope="session")
def app(
    tmp_path_factory: pytest.TempPathFactory,
    tiny_model: Path,
    embedding_model: Path,
    fake_commercial: FakeOpenAIServer,
    otlp_collector: OTLPCollector,
    idp: FakeIdP,
) -> Iterator[RunningApp]:
    from routing.keys import create_key

    workdir = tmp_path_factory.mktemp("app")
    config = app_config(workdir, tiny_model, embedding_model, fake_commercial.base_url, otlp_collector.endpoint, idp)
    keys = {name: create_key(workdir / "keys.json", name, **limits) for name, limits in CALLERS.items()}
    running = start_app(
        config,
        workdir,
        keys,
        env={"FAKE_COMMERCIAL_KEY": "sk-fake-commercial", "OTEL_EXPORTER_OTLP_ENDPOINT": otlp_collector.endpoint},
    )
    running.extra["idp"] = idp
    try:
        wait_for_every_backend(running)
        yield running
    finally:
        stop_app(running.process)


_POST_MORTEM_SHOWN: list[str] = []  # the test whose report carries the shared app's post-mortem


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """The first test that fails while using the shared app carries the app's post-mortem in its report (its
    processes and log tails): what went wrong inside the server is then in the CI output, next to the first
    symptom, after the app and its logs are gone."""
    report: pytest.TestReport = yield
    app = getattr(item, "funcargs", {}).get("app")
    if report.failed and report.when == "call" and isinstance(app, RunningApp) and not _POST_MORTEM_SHOWN:
        _POST_MORTEM_SHOWN.append(item.nodeid)
        try:
            report.sections.append(("post-mortem of the shared app", post_mortem(app)))
        except Exception as exc:  # never let the diagnosis hide the failure itself
            report.sections.append(("post-mortem of the shared app", f"could not be taken: {exc!r}"))
    return report


def _leftovers() -> list[psutil.Process]:
    """Engine, HAProxy, Ray and server processes started by this test session that still run."""
    found = []
    for proc in psutil.process_iter():
        try:
            if (
                proc.status() == psutil.STATUS_ZOMBIE
                or proc.environ().get(TEST_SESSION_ENV) != os.environ[TEST_SESSION_ENV]
            ):
                continue
            command = " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if any(title in command for title in LEFTOVER_TITLES):
            found.append(proc)
    return found


def _describe(proc: psutil.Process) -> str:
    """Enough to tell which test started a leftover: its command, age, parent and the server tag it inherited."""
    command = " ".join(proc.cmdline())
    session = next((part for part in proc.cmdline() if "session_" in part), "")
    return (
        f"{command[:80]} (pid {proc.pid}, parent {proc.ppid()}, started {time.time() - proc.create_time():.0f} s "
        f"ago, server {proc.environ().get('SOVEREIGN_SERVER_ID', '-')}, cwd {proc.cwd()}, {session[:160]})"
    )


_RAY_STARTED_BY: list[str] = []  # the test after which Ray was first found running inside this process


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item) -> None:
    """Notice a test that started Ray in the test process itself (a Ray or Serve call outside a Ray worker connects
    a local cluster implicitly), so the session can stop that cluster and name the test."""
    ray = sys.modules.get("ray")
    if not _RAY_STARTED_BY and ray is not None and ray.is_initialized():
        _RAY_STARTED_BY.append(item.nodeid)


def _stop_in_process_ray(session: pytest.Session) -> None:
    """Stop a Ray cluster a test started inside this process: its daemons would otherwise run until the
    interpreter exits, after the leftover check below (Ray's own atexit hook stops them only then)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(
            f"Ray was started inside the test process (first seen after "
            f"{_RAY_STARTED_BY[0] if _RAY_STARTED_BY else 'collection'}); stopping it",
            yellow=True,
        )
    ray.shutdown()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The suite fails if it leaves an engine, HAProxy or Ray process running (after a grace for servers still
    stopping); what it left is named and killed."""
    _stop_in_process_ray(session)
    deadline = time.monotonic() + 30
    left = _leftovers()
    while left and time.monotonic() < deadline:
        time.sleep(1)
        left = _leftovers()
    if not left:
        return
    names = []
    for proc in left:
        with contextlib.suppress(psutil.Error):
            names.append(_describe(proc))
            proc.kill()
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_line(f"the test session left processes running (now killed): {'; '.join(names)}", red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
