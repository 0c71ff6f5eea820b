"""Hostile headers: bad Authorization, spoofed X-Sovereign-* response headers, declared levels that are not levels."""

from __future__ import annotations

from collections.abc import Mapping

import httpx
import pytest

from benchmarks.fake_openai import FakeOpenAIServer
from tests.support.app import RunningApp

pytestmark = pytest.mark.engine

NHS = "943 476 5919"
BODY = {"model": "commercial-first", "max_tokens": 2, "messages": [{"role": "user", "content": "What is bail?"}]}


def _post(app: RunningApp, headers: dict[str, str], body: dict | None = None) -> httpx.Response:
    return httpx.post(f"{app.base_url}/chat/completions", json=body or BODY, headers=headers, timeout=180)


def _raw_post(app: RunningApp, headers: Mapping[str, bytes | str]) -> httpx.Response:
    """Send header values byte for byte (trailing spaces, UTF-8), which httpx's own checks would refuse."""
    import json
    import socket

    host, port = app.root.removeprefix("http://").split(":")
    body = json.dumps(BODY).encode()
    lines = [
        b"POST /v1/chat/completions HTTP/1.1",
        b"Host: x",
        b"Content-Type: application/json",
        b"Connection: close",
        b"Content-Length: %d" % len(body),
    ]
    lines += [k.encode() + b": " + (v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]
    with socket.create_connection((host, int(port)), timeout=180) as sock:
        sock.sendall(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, payload = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    parsed = [line.split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line]
    if b"chunked" in head.lower():  # de-chunk
        out, rest = b"", payload
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                break
            out, rest = out + rest[:size], rest[size + 2 :]
        payload = out
    return httpx.Response(status, headers=[(k.strip(), v.strip()) for k, v in parsed], content=payload)


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer  ",
        "bearer",
        "Token abc",
        "Basic Zm9vOmJhcg==",
        "Bearer sk-sov-" + "A" * 43,
        "Bearer " + "x" * 6000,
        "Bearer sk-sov-\u00e9\u00e9",
        "Bearer a b c",
    ],
    ids=lambda v: "none" if v is None else repr(v[:20]),
)
def test_bad_authorization_is_401_envelope(
    app: RunningApp, commercial: FakeOpenAIServer, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization.encode("utf-8")}
    response = _raw_post(app, headers)
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and error["code"] == "invalid_api_key"
    assert commercial.received == []


def test_near_miss_keys_are_401(app: RunningApp) -> None:
    key = app.keys["tester"]
    assert _post(app, {"Authorization": f"Bearer {key}x"}).status_code == 401
    assert _post(app, {"Authorization": f"Bearer {key[:-1]}"}).status_code == 401
    assert _post(app, {"Authorization": f"Bearer {key.upper()}"}).status_code == 401


def test_spoofed_sovereign_response_headers_are_ignored(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    """A caller cannot pick the backend or pre-set the answer's headers; each header appears once, ours."""
    spoof = {
        **app.headers(),
        "X-Sovereign-Backend": "commercial",
        "X-Sovereign-Route": "commercial",
        "X-Sovereign-Local-Only": "false",
    }
    sensitive = {**BODY, "messages": [{"role": "user", "content": f"NHS number {NHS}"}]}
    response = _post(app, spoof, sensitive)
    assert response.status_code == 200
    assert response.headers.get_list("x-sovereign-backend") == ["local"]
    assert response.headers.get_list("x-sovereign-classification") == ["OFFICIAL-SENSITIVE"]
    assert commercial.received == []
    plain = _post(app, {**app.headers(), "X-Sovereign-Backend": "local"})
    assert plain.headers.get_list("x-sovereign-backend") == ["commercial"]


@pytest.mark.parametrize(
    "declared", ["VERY SECRET", "", "0", "OFFICIAL,SECRET", "SECRET\u00a0", "TOP_SECRET_X", "x" * 2000]
)
def test_declared_level_that_is_not_a_level_is_400(
    app: RunningApp, commercial: FakeOpenAIServer, declared: str
) -> None:
    headers: dict[str, bytes | str] = {**app.headers(), "X-Sovereign-Classification": declared.encode("utf-8")}
    response = _raw_post(app, headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_classification"
    assert commercial.received == []


@pytest.mark.parametrize(
    ("declared", "label"),
    [("secret", "SECRET"), ("OFFICIAL-SENSITIVE", "OFFICIAL-SENSITIVE"), ("TOP SECRET", "TOP SECRET")],
)
def test_declared_level_raises_and_stays_local(
    app: RunningApp, commercial: FakeOpenAIServer, declared: str, label: str
) -> None:
    response = _post(app, {**app.headers(), "X-Sovereign-Classification": declared})
    if label == "TOP SECRET":  # nothing in this config is cleared for TOP SECRET: refused, never downgraded
        assert response.status_code == 403
        assert response.json()["error"]["code"] == "classification_not_permitted"
    else:
        assert response.status_code == 200
        assert response.headers["x-sovereign-classification"] == label
        assert response.headers["x-sovereign-backend"] == "local"
    assert commercial.received == []


def test_duplicate_declared_headers_take_the_highest_or_refuse(app: RunningApp, commercial: FakeOpenAIServer) -> None:
    """Two X-Sovereign-Classification headers must never let the lower one win."""
    for first, second in (("SECRET", "OFFICIAL"), ("OFFICIAL", "SECRET")):
        headers = [
            ("Authorization", f"Bearer {app.keys['tester']}"),
            ("X-Sovereign-Classification", first),
            ("X-Sovereign-Classification", second),
        ]
        response = httpx.post(f"{app.base_url}/chat/completions", json=BODY, headers=headers, timeout=180)
        if response.status_code == 200:
            assert response.headers["x-sovereign-classification"] == "SECRET"
            assert response.headers["x-sovereign-backend"] == "local"
        else:
            assert response.status_code == 400
        assert commercial.received == []
