"""What the API port serves beside the OpenAI routes, per ``server.api_docs``: never metrics, the OpenAPI document
behind an API key by default, the interactive pages only when asked for. No backend is called."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from routing.audit import AuditLog
from routing.keys import KeyStore, create_key
from serving.api import create_app
from serving.backends.openai_http import OpenAIBackend
from serving.config import OpenAIBackendConfig, load_settings
from serving.gateway import Gateway


def _client(tmp_path: Path, api_docs: str | None) -> tuple[TestClient, str]:
    key = create_key(tmp_path / "keys.json", "tester")
    server = {"api_docs": api_docs} if api_docs else {}
    settings = load_settings(
        data={
            "server": server,
            "audit": {"path": str(tmp_path / "audit.jsonl")},
            "auth": {"keys_file": str(tmp_path / "keys.json")},
            "backends": [
                {
                    "name": "remote",
                    "kind": "openai",
                    "sovereign": True,
                    "max_classification": "SECRET",
                    "base_url": "http://127.0.0.1:9/v1",
                    "api_key_env": None,
                    "model": "m",
                }
            ],
            "models": [{"name": "default", "route": ["remote"]}],
        }
    )
    backend = settings.backends[0]
    assert isinstance(backend, OpenAIBackendConfig)
    gateway = Gateway(
        settings,
        {"remote": OpenAIBackend(backend)},
        audit=AuditLog(settings.audit.path),
        keys=KeyStore.load(tmp_path / "keys.json"),
    )
    return TestClient(create_app(gateway)), key


@pytest.mark.parametrize(
    ("api_docs", "anonymous", "with_key", "pages"),
    [(None, 401, 200, 404), ("authenticated", 401, 200, 404), ("off", 404, 404, 404), ("public", 200, 200, 200)],
)
def test_docs_follow_the_setting_and_metrics_are_never_on_the_api(
    tmp_path: Path, api_docs: str | None, anonymous: int, with_key: int, pages: int
) -> None:
    client, key = _client(tmp_path, api_docs)
    auth = {"Authorization": f"Bearer {key}"}
    assert client.get("/openapi.json").status_code == anonymous
    document = client.get("/openapi.json", headers=auth)
    assert document.status_code == with_key
    if with_key == 200:
        assert "/v1/chat/completions" in document.json()["paths"]
    assert client.get("/docs").status_code == pages and client.get("/redoc").status_code == pages
    metrics = client.get("/metrics", headers=auth)
    assert metrics.status_code == 404 and metrics.json()["error"]["code"] == "not_found"
