"""Malformed and hostile bodies, by hand, against the real app: each gets a clear 4xx and the server keeps serving.

"Clear" means: the OpenAI error envelope, a 4xx status, a message that names the problem (never echoes the
body), and no traceback. After each case a normal request still succeeds.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.app import RunningApp

pytestmark = pytest.mark.engine

CANARY = "hostilecanary93f1"


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}, body
    assert "Traceback" not in response.text and CANARY not in response.text
    return body["error"]


def _still_serving(app: RunningApp) -> None:
    response = httpx.post(
        f"{app.base_url}/chat/completions",
        headers=app.headers(),
        timeout=180,
        json={"model": "local-only", "max_tokens": 2, "messages": [{"role": "user", "content": "hi"}]},
    )
    assert response.status_code == 200, response.text


def _msg(content: object = f"hello {CANARY}") -> list[dict]:
    return [{"role": "user", "content": content}]


def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


# (name, path, raw body bytes) -> expected 4xx
RAW_CASES: list[tuple[str, str, bytes, int]] = [
    ("truncated_json", "chat/completions", b'{"model": "local-only", "messages": [', 400),
    ("not_an_object", "chat/completions", b'"just a string"', 400),
    ("empty_body", "chat/completions", b"", 400),
    (
        "nan",
        "chat/completions",
        b'{"model": "local-only", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
        400,
    ),
    (
        "infinity",
        "chat/completions",
        b'{"model": "local-only", "messages": [{"role": "user", "content": "x"}], "top_p": Infinity}',
        400,
    ),
    (
        "invalid_utf8",
        "chat/completions",
        b'{"model": "local-only", "messages": [{"role": "user", "content": "\xff\xfe\xc3("}]}',
        400,
    ),
    (
        "lone_surrogate",
        "chat/completions",
        b'{"model": "local-only", "messages": [{"role": "user", "content": "a \\ud800 b"}]}',
        400,
    ),
    ("lone_surrogate_completions", "completions", b'{"model": "local-only", "prompt": "x \\udfff y"}', 400),
    (
        "deep_array_recursion",
        "chat/completions",
        b'{"model": "local-only", "messages": ' + _deep(20_000).encode() + b"}",
        400,
    ),
    # json.loads would guess these encodings (and skip the surrogate check): UTF-8 only, as the OpenAI API.
    (
        "utf16",
        "chat/completions",
        '{"model": "local-only", "messages": [{"role": "user", "content": "a \\ud800 b"}]}'.encode("utf-16"),
        400,
    ),
    ("utf32_le", "completions", '{"model": "local-only", "prompt": "x"}'.encode("utf-32-le"), 400),
]


@pytest.mark.parametrize(("name", "path", "raw", "status"), RAW_CASES, ids=[c[0] for c in RAW_CASES])
def test_raw_malformed_bodies(app: RunningApp, name: str, path: str, raw: bytes, status: int) -> None:
    response = httpx.post(
        f"{app.base_url}/{path}",
        content=raw,
        timeout=180,
        headers={**app.headers(), "content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    _error(response)


JSON_CASES: list[tuple[str, str, dict]] = [
    ("messages_not_list", "chat/completions", {"model": "local-only", "messages": {"role": "user"}}),
    ("messages_empty", "chat/completions", {"model": "local-only", "messages": []}),
    ("content_number", "chat/completions", {"model": "local-only", "messages": _msg(12345)}),
    ("max_tokens_string", "chat/completions", {"model": "local-only", "messages": _msg(), "max_tokens": "ten"}),
    ("max_tokens_negative", "chat/completions", {"model": "local-only", "messages": _msg(), "max_tokens": -1}),
    ("max_tokens_over_window", "chat/completions", {"model": "local-only", "messages": _msg(), "max_tokens": 5000}),
    ("max_tokens_absurd", "chat/completions", {"model": "local-only", "messages": _msg(), "max_tokens": 10**18}),
    ("temperature_negative", "chat/completions", {"model": "local-only", "messages": _msg(), "temperature": -1}),
    ("temperature_absurd", "chat/completions", {"model": "local-only", "messages": _msg(), "temperature": 1e308}),
    ("top_p_over_one", "chat/completions", {"model": "local-only", "messages": _msg(), "top_p": 2}),
    ("top_k_absurd", "chat/completions", {"model": "local-only", "messages": _msg(), "top_k": -50}),
    ("n_absurd", "chat/completions", {"model": "local-only", "messages": _msg(), "n": 10**9}),
    ("presence_penalty", "chat/completions", {"model": "local-only", "messages": _msg(), "presence_penalty": 1e9}),
    (
        "logprobs_absurd",
        "chat/completions",
        {"model": "local-only", "messages": _msg(), "logprobs": True, "top_logprobs": 10**6},
    ),
    ("stream_not_bool", "chat/completions", {"model": "local-only", "messages": _msg(), "stream": [1]}),
    # Each of these was coerced by vLLM's models (and served): the OpenAI API refuses them.
    ("stream_yes", "chat/completions", {"model": "local-only", "messages": _msg(), "stream": "yes"}),
    ("max_tokens_bool", "chat/completions", {"model": "local-only", "messages": _msg(), "max_tokens": True}),
    ("temperature_string", "chat/completions", {"model": "local-only", "messages": _msg(), "temperature": "0.5"}),
    (
        "stream_yes_commercial_only",
        "chat/completions",
        {"model": "commercial-only", "messages": _msg(), "stream": "yes"},
    ),
    ("unknown_field", "chat/completions", {"model": "local-only", "messages": _msg(), "frobnicate": True}),
    (
        "unknown_field_odd_name",
        "chat/completions",
        {"model": "local-only", "messages": _msg(), f"{CANARY} free text as a key": 1},
    ),
    ("model_wrong_type", "chat/completions", {"model": ["local-only"], "messages": _msg()}),
    ("model_missing", "chat/completions", {"messages": _msg()}),
    (
        "thousands_of_messages",
        "chat/completions",
        {"model": "local-only", "messages": [{"role": "user", "content": "x"}] * 1800},
    ),
    (
        "deep_metadata",
        "chat/completions",
        {"model": "local-only", "messages": _msg(), "metadata": json.loads('{"a":' * 80 + "1" + "}" * 80)},
    ),
    ("prompt_wrong_type", "completions", {"model": "local-only", "prompt": {"text": "x"}}),
    ("prompt_token_ids_out_of_vocab", "completions", {"model": "local-only", "prompt": [[10**9, -3]]}),
    ("embeddings_input_wrong_type", "embeddings", {"model": "embeddings", "input": {"text": "x"}}),
    ("embeddings_on_chat_model", "embeddings", {"model": "local-only", "input": "x"}),
    ("chat_on_embedding_model", "chat/completions", {"model": "embeddings", "messages": _msg()}),
    # vLLM's validator raised KeyError (a 500) for a named tool_choice whose tool has no name.
    (
        "tool_choice_named_tool_without_name",
        "chat/completions",
        {
            "model": "local-only",
            "messages": _msg(),
            "tools": [{"type": "function", "function": {}}],
            "tool_choice": {"type": "function", "function": {"name": "lookup"}},
        },
    ),
    (
        "metadata_not_strings",
        "chat/completions",
        {"model": "local-only", "messages": _msg(), "metadata": {"k": {"nested": CANARY}}},
    ),
]


@pytest.mark.parametrize(("name", "path", "body"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
def test_invalid_requests_are_clear_4xx(app: RunningApp, name: str, path: str, body: dict) -> None:
    started = time.monotonic()
    response = httpx.post(f"{app.base_url}/{path}", json=body, headers=app.headers(), timeout=120)
    assert 400 <= response.status_code < 500, f"{response.status_code}: {response.text}"
    assert response.status_code != 429
    _error(response)
    assert time.monotonic() - started < 60


def test_empty_content_is_served_not_an_error(app: RunningApp) -> None:
    """Empty strings are valid in the OpenAI API (the official server accepts them): served, not a 5xx."""
    response = httpx.post(
        f"{app.base_url}/chat/completions",
        headers=app.headers(),
        timeout=180,
        json={"model": "local-only", "max_tokens": 2, "messages": [{"role": "user", "content": ""}]},
    )
    assert response.status_code == 200, response.text
    response = httpx.post(
        f"{app.base_url}/completions",
        headers=app.headers(),
        timeout=60,
        json={"model": "local-only", "max_tokens": 2, "prompt": ""},
    )
    assert response.status_code in {200, 400}, response.text  # vLLM refuses an empty prompt: a 400, not a 500
    if response.status_code != 200:
        _error(response)


def _raw_http(app: RunningApp, head: bytes, body_parts: Iterator[bytes], read_timeout: float = 20) -> bytes:
    """Send a request by hand and return the response bytes the server sent without waiting for the rest."""
    host, port = app.root.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=read_timeout) as sock:
        sock.sendall(head)
        for part in body_parts:
            try:
                sock.sendall(part)
            except OSError:  # the server closed the connection after answering: that is the point
                break
        chunks = []
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
                if b"\r\n\r\n" in b"".join(chunks) and b"request_too_large" in b"".join(chunks):
                    break
        except (TimeoutError, OSError):
            pass
        return b"".join(chunks)


def test_declared_huge_body_is_413_before_it_is_sent(app: RunningApp) -> None:
    """Content-Length far over the limit: the answer comes although only 1 KiB of 100 MiB was ever sent."""
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {app.keys['tester']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {100 * 1024 * 1024}\r\n\r\n"
    ).encode()
    answer = _raw_http(app, head, iter([b'{"model": "local-only", "messages": [' + b" " * 1024]))
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"request_too_large" in answer
    _still_serving(app)


def test_chunked_body_over_limit_is_413_without_reading_it_all(app: RunningApp) -> None:
    """No Content-Length: the body is counted as it arrives and refused once past the limit, not at its end."""
    limit = app.config["server"]["max_body_bytes"]
    head = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {app.keys['tester']}\r\n"
        "Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    piece = b" " * 8192
    sent_chunks = (limit // len(piece)) + 4  # a little over the limit, then the client stalls (never ends)

    def parts() -> Iterator[bytes]:
        yield b"%x\r\n%s\r\n" % (1, b"{")
        for _ in range(sent_chunks):
            yield b"%x\r\n%s\r\n" % (len(piece), piece)

    answer = _raw_http(app, head, parts())
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    _still_serving(app)


def test_server_still_serves_after_the_barrage(app: RunningApp) -> None:
    _still_serving(app)
    assert httpx.get(f"{app.root}/ready", timeout=10).status_code == 200
