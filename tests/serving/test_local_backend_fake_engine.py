"""LocalBackend over the engine deployment, without vLLM: ``LocalBackend -> InProcessHandle -> SovereignLLMServer ->
FakeEngine`` (tests/support/fake_engine.py), all in the test's process. The real server class paces the streams
(``StreamPacer``); the fake engine answers as Ray Serve LLM's vLLM engine does and records what happened to each
generation, so the fault paths (errors before and after the first byte, a client gone, a request cancelled while
the engine hangs) are checked at the engine, not guessed from outside.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

from models.manifest import ManifestError, write_manifest
from serving.backends.base import BackendFailure, BackendRefusal, Endpoint, Opened
from serving.backends.local import LocalBackend
from serving.config import VLLMBackendConfig, load_settings
from tests.support.fake_engine import EngineError, FakeEngine, InProcessHandle, Script, in_process_server

CHAT = {"model": "d", "messages": [{"role": "user", "content": "three words here"}]}
STREAM = {**CHAT, "stream": True}
PROMPT_TOKENS = 3  # the fake engine counts the prompt's words


@dataclass
class Stack:
    backend: LocalBackend
    engine: FakeEngine
    handle: InProcessHandle
    server: Any

    async def open(self, body: dict[str, Any], endpoint: Endpoint = Endpoint.CHAT) -> Opened:
        return await self.backend.open(endpoint, body, request_id="req-1", trace_headers={})

    async def until(self, condition: Callable[[], bool], timeout_s: float = 10) -> None:
        """Wait (in turns of the loop) until ``condition`` holds: no sleep of a guessed length."""
        async with asyncio.timeout(timeout_s):
            while not condition():
                await asyncio.sleep(0.005)


def _backend_config(folder: Path, **fields: Any) -> VLLMBackendConfig:
    local = {"name": "local", "kind": "vllm", "model_source": str(folder), "served_model_name": "m", **fields}
    backend = load_settings(data={"backends": [local], "models": [{"name": "d", "route": ["local"]}]}).backends[0]
    assert isinstance(backend, VLLMBackendConfig)
    return backend


@contextlib.asynccontextmanager
async def stack(folder: Path, script: Script | None = None, **fields: Any) -> AsyncIterator[Stack]:
    from serving.app import llm_config, served_model_name

    config = _backend_config(folder, **{"verify_manifest": False, **fields})
    async with in_process_server(llm_config(config)) as server:
        engine = server.engine
        assert isinstance(engine, FakeEngine) and engine.started
        engine.script = script or Script()
        handle = InProcessHandle(server)
        yield Stack(LocalBackend(config, handle, served_model_name(config)), engine, handle, server)


def run(
    tmp_path: Path, scenario: Callable[[Stack], Awaitable[None]], script: Script | None = None, **fields: Any
) -> None:
    async def main() -> None:
        async with stack(tmp_path, script, **fields) as s:
            await scenario(s)

    asyncio.run(main())


async def read_all(opened: Opened) -> list[str]:
    assert opened.chunks is not None
    return [chunk async for chunk in opened.chunks]


def events(chunks: list[str]) -> list[dict[str, Any] | str]:
    """The SSE events in the body, each a JSON object (or the ``[DONE]`` marker)."""
    out: list[dict[str, Any] | str] = []
    for event in "".join(chunks).split("\n\n"):
        if event:
            assert event.startswith("data: ")
            data = event.removeprefix("data: ")
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def text(chunks: list[str]) -> str:
    """What the stream said (chat deltas or completion texts), in order."""
    said = []
    for event in events(chunks):
        if isinstance(event, dict):
            for choice in event["choices"]:
                said.append(choice.get("text") or (choice.get("delta") or {}).get("content") or "")
    return "".join(said)


# -- answers ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("caller_wants_usage", [False, True])
def test_a_stream_arrives_whole_and_in_order_with_its_usage_recorded(tmp_path: Path, caller_wants_usage: bool) -> None:
    """The engine is always asked for usage (the audit record's token counts); its usage-only chunk reaches the
    caller only if the caller asked for it."""
    body = {**STREAM, "stream_options": {"include_usage": True}} if caller_wants_usage else STREAM

    async def scenario(s: Stack) -> None:
        opened = await s.open(body)
        chunks = await read_all(opened)
        got = events(chunks)
        assert text(chunks) == " t0 t1 t2 t3 t4"
        assert got[-1] == "[DONE]"
        assert got[0]["choices"][0]["delta"]["role"] == "assistant"  # type: ignore[index]  # a chunk, not [DONE]
        usage_chunks = [e for e in got if isinstance(e, dict) and e.get("usage")]
        assert len(usage_chunks) == (1 if caller_wants_usage else 0)
        assert (opened.usage.prompt_tokens, opened.usage.completion_tokens) == (PROMPT_TOKENS, 5)
        [call] = s.engine.calls
        assert call.request.stream_options.include_usage and call.outcome == "finished"
        assert s.backend.in_flight == 0

    run(tmp_path, scenario, Script(tokens=5))


def test_a_completions_stream_and_the_request_id_reach_the_engine(tmp_path: Path) -> None:
    async def scenario(s: Stack) -> None:
        opened = await s.open({"model": "d", "prompt": "one two", "stream": True}, Endpoint.COMPLETIONS)
        chunks = await read_all(opened)
        assert text(chunks) == " t0 t1 t2"
        assert (opened.usage.prompt_tokens, opened.usage.completion_tokens) == (2, 3)
        [call] = s.engine.calls
        assert call.method == "completions" and call.request.model == "m"  # the served name, not the caller's
        assert call.raw_request_info.headers["x-request-id"] == "req-1"  # vLLM's request id and trace context

    run(tmp_path, scenario, Script(tokens=3))


def test_a_non_streamed_answer_is_one_body(tmp_path: Path) -> None:
    async def scenario(s: Stack) -> None:
        opened = await s.open({**CHAT, "max_tokens": 2})
        assert opened.chunks is None and opened.body is not None
        assert opened.body["choices"][0]["message"]["content"] == " t0 t1"
        assert opened.body["choices"][0]["finish_reason"] == "length"
        assert (opened.usage.prompt_tokens, opened.usage.completion_tokens) == (PROMPT_TOKENS, 2)
        assert s.backend.in_flight == 0 and s.engine.calls[0].outcome == "finished"

    run(tmp_path, scenario)


def test_an_embedding_is_one_body(tmp_path: Path) -> None:
    async def scenario(s: Stack) -> None:
        assert s.backend.serves(Endpoint.EMBEDDINGS) and not s.backend.serves(Endpoint.CHAT)
        opened = await s.open({"model": "d", "input": ["a b", "c"]}, Endpoint.EMBEDDINGS)
        assert opened.body is not None
        assert [item["index"] for item in opened.body["data"]] == [0, 1]
        assert opened.usage.prompt_tokens == 3

    run(tmp_path, scenario, task="embed")


# -- faults -----------------------------------------------------------------------------------------------------


def test_an_engine_refusal_before_the_first_byte_is_sanitised(tmp_path: Path) -> None:
    """A 4xx ``ErrorResponse`` is a refusal for the caller, with the status kept and the engine's text dropped (it
    may quote the prompt); the generation is over and the request no longer counts as in flight."""

    async def scenario(s: Stack) -> None:
        with pytest.raises(BackendRefusal) as refused:
            await s.open(STREAM)
        assert refused.value.status == 400
        assert "three words here" not in json.dumps(refused.value.envelope)
        assert refused.value.envelope["error"]["message"] == "the model backend rejected the request"
        assert s.backend.in_flight == 0

    run(tmp_path, scenario, Script(error=EngineError(400, "cannot do 'three words here'")))


@pytest.mark.parametrize("code", [429, 500, 503])
def test_an_engine_error_before_the_first_byte_is_a_failure(tmp_path: Path, code: int) -> None:
    """A 429 or 5xx may be retried on the next candidate: a ``BackendFailure`` before any byte went out."""

    async def scenario(s: Stack) -> None:
        with pytest.raises(BackendFailure, match=f"http_{code}"):
            await s.open(STREAM)
        with pytest.raises(BackendFailure, match=f"http_{code}"):
            await s.open(CHAT)
        assert s.backend.in_flight == 0

    run(tmp_path, scenario, Script(error=EngineError(code, "engine trouble", "InternalServerError")))


def test_an_engine_that_answers_nothing_is_a_failure(tmp_path: Path) -> None:
    async def scenario(s: Stack) -> None:
        for body in (STREAM, CHAT):
            with pytest.raises(BackendFailure, match="empty_response"):
                await s.open(body)
        assert s.backend.in_flight == 0

    run(tmp_path, scenario, Script(silent=True))


def test_a_stream_serve_cancelled_is_the_clients_cancellation_not_a_failure(tmp_path: Path) -> None:
    """Serve cancels a handle's request when the HTTP request that made it is cancelled (the client left), and
    that can reach the relay before the HTTP edge's own cancellation does: it is a cancellation (recorded 499),
    not a failure of the engine (502)."""

    async def scenario(s: Stack) -> None:
        opened = await s.open(STREAM)
        assert opened.chunks is not None
        received: list[str] = []
        with pytest.raises(asyncio.CancelledError):
            async for chunk in opened.chunks:
                received.append(chunk)
        assert text(received) == " t0 t1"
        assert s.backend.in_flight == 0

    run(tmp_path, scenario, Script(tokens=6, fail_after=2, fail_with="serve_cancelled"))


@pytest.mark.parametrize("fail_with", ["event", "exception"])
def test_an_engine_failure_mid_stream_ends_it_after_the_bytes_sent(
    tmp_path: Path, fail_with: Literal["event", "exception"]
) -> None:
    """vLLM answers a failure inside a stream with an error event (its exception's text) and ``[DONE]``; an engine
    that dies raises instead. Either way the caller has the chunks sent before it, then a ``BackendFailure``, and
    never the engine's text."""

    async def scenario(s: Stack) -> None:
        opened = await s.open(STREAM)
        assert opened.chunks is not None
        received: list[str] = []
        with pytest.raises(BackendFailure) as failed:
            async for chunk in opened.chunks:
                received.append(chunk)
        assert failed.value.reason == ("engine_error" if fail_with == "event" else "unavailable")
        assert text(received) == " t0 t1"
        assert "fake engine" not in "".join(received)
        assert s.backend.in_flight == 0
        await s.handle.drain()
        assert s.engine.calls[0].outcome == "failed"

    run(tmp_path, scenario, Script(tokens=6, fail_after=2, fail_with=fail_with))


@pytest.mark.parametrize("reads", [0, 2])
def test_a_consumer_that_stops_early_aborts_the_generation(tmp_path: Path, reads: int) -> None:
    """A client gone closes the stream: the request leaves the in-flight count at once, and the engine's generation
    is cancelled (vLLM aborts it) long before its end; also when the stream is closed before its first read."""

    async def scenario(s: Stack) -> None:
        opened = await s.open(STREAM)
        assert opened.chunks is not None
        for _ in range(reads):
            await anext(opened.chunks)
        assert s.backend.in_flight == 1
        await opened.chunks.aclose()
        assert s.backend.in_flight == 0
        await s.handle.drain()
        [call] = s.engine.calls
        assert call.outcome == "aborted" and call.tokens_sent < 1000
        assert s.server._pacer.active == 0

    run(tmp_path, scenario, Script(tokens=1000, delay_s=0.01))


def test_a_cancelled_open_aborts_a_hanging_engine(tmp_path: Path) -> None:
    """The request's deadline (or a client gone) cancels ``open`` while the engine has sent nothing: the call is
    cancelled in the replica, which aborts the generation."""

    async def scenario(s: Stack) -> None:
        opening = asyncio.ensure_future(s.open(STREAM))
        await s.until(lambda: len(s.engine.calls) == 1)
        assert s.backend.in_flight == 1
        opening.cancel()
        with pytest.raises(asyncio.CancelledError):
            await opening
        assert s.backend.in_flight == 0
        await s.handle.drain()
        assert s.engine.calls[0].outcome == "aborted"

    run(tmp_path, scenario, Script(hang=True))


def test_overloaded_at_max_queue_depth(tmp_path: Path) -> None:
    """Requests in flight from this router count until their stream ends; at ``max_queue_depth`` the backend says
    it is overloaded (the routing policy may overflow), and no longer once one ends."""

    async def scenario(s: Stack) -> None:
        first = await s.open(STREAM)
        assert not s.backend.overloaded
        second = await s.open(STREAM)
        assert s.backend.overloaded and s.backend.queue_depth == 2
        assert first.chunks is not None and second.chunks is not None
        for _ in range(3):
            s.engine.calls[0].gate.release()
        assert text(await read_all(first)) == " t0 t1 t2"
        assert not s.backend.overloaded and s.backend.queue_depth == 1
        await second.chunks.aclose()
        assert s.backend.queue_depth == 0

    run(tmp_path, scenario, Script(tokens=3, gated=True), max_queue_depth=2)


def test_readiness_follows_the_engines_health(tmp_path: Path) -> None:
    async def scenario(s: Stack) -> None:
        assert await s.backend.ready()
        s.engine.script.healthy = False
        assert not await s.backend.ready()

    run(tmp_path, scenario)


def test_a_stored_response_where_the_engine_keeps_none_is_refused(tmp_path: Path) -> None:
    async def scenario(s: Stack) -> None:
        with pytest.raises(BackendRefusal) as refused:
            await s.backend.stored("retrieve", "resp_1", request_id="req-1")
        assert refused.value.status == 400

    run(tmp_path, scenario)


def test_the_replica_verifies_the_weights_before_its_engine_starts(tmp_path: Path) -> None:
    from serving.app import llm_config

    (tmp_path / "model.safetensors").write_bytes(b"weights")
    write_manifest(tmp_path, "test")
    config = llm_config(_backend_config(tmp_path))

    async def start() -> None:
        async with in_process_server(config) as server:
            assert server.engine.started

    asyncio.run(start())
    (tmp_path / "model.safetensors").write_bytes(b"tampered")
    with pytest.raises(ManifestError):
        asyncio.run(start())


# -- stream pacing ----------------------------------------------------------------------------------------------


def test_up_to_smooth_streams_every_token_is_its_own_message(tmp_path: Path) -> None:
    """Three streams open under a replica smooth up to three, with a pacing interval that would hold chunks for
    5 s: each token, let out of the engine one at a time, reaches the caller as a message of its own (the last
    one may carry ``[DONE]`` with it)."""
    streams, tokens = 3, 4

    async def scenario(s: Stack) -> None:
        opened = [await s.open(STREAM) for _ in range(streams)]
        received: list[list[str]] = [[] for _ in opened]
        for i in range(tokens + 1):  # the role chunk, which the engine sent without waiting, then each token
            for n, (call, stream) in enumerate(zip(s.engine.calls, opened, strict=True)):
                assert stream.chunks is not None
                if i:
                    call.gate.release()
                received[n].append(await anext(stream.chunks))
                assert text(received[n][-1:]) == (f" t{i - 1}" if i else "")
            if i < tokens:
                assert s.server._pacer.active == streams  # all open, none beyond the smooth count
        for n, stream in enumerate(opened):
            assert stream.chunks is not None
            received[n] += [chunk async for chunk in stream.chunks]
            assert events(received[n])[-1] == "[DONE]"
        assert s.server._pacer.active == 0

    run(tmp_path, scenario, Script(tokens=tokens, gated=True), stream_smooth_streams=streams, stream_batching_ms=5000)


def test_beyond_smooth_streams_chunks_travel_together(tmp_path: Path) -> None:
    """Six streams open at once in a replica smooth up to one, with a 5 s pacing interval (reached at two streams):
    after its first messages, each stream's chunks wait for the interval or the stream's end (0.2 s here), so the
    streams arrive whole in far fewer messages than they have events."""
    streams, tokens = 6, 10

    async def one(s: Stack) -> list[str]:
        return await read_all(await s.open(STREAM))

    async def scenario(s: Stack) -> None:
        bodies = await asyncio.gather(*(one(s) for _ in range(streams)))
        expected = "".join(f" t{i}" for i in range(tokens))
        assert [text(body) for body in bodies] == [expected] * streams
        event_count = sum(len(events(body)) for body in bodies)  # role, tokens, [DONE]
        assert event_count == streams * (tokens + 2)
        assert sum(len(body) for body in bodies) <= event_count // 2
        assert s.server._pacer.active == 0

    run(tmp_path, scenario, Script(tokens=tokens, delay_s=0.02), stream_smooth_streams=1, stream_batching_ms=5000)


def test_a_local_request_is_parsed_once_and_the_engine_gets_a_copy(tmp_path: Path) -> None:
    """The gateway's ``validate`` result goes to ``open`` (``parsed``), which sends it on as it is: not validated
    again. As through Serve, the engine sees a copy of it: what the replica changes stays there."""

    async def scenario(s: Stack) -> None:
        parsed = s.backend.validate(Endpoint.CHAT, STREAM)
        validations: list[Any] = []
        s.backend.validate = lambda *args: validations.append(args)  # type: ignore[method-assign,assignment]  # counts calls
        opened = await s.backend.open(Endpoint.CHAT, STREAM, request_id="r", trace_headers={}, parsed=parsed)
        await read_all(opened)
        [call] = s.engine.calls
        assert call.request == parsed and call.request is not parsed
        assert validations == []

    run(tmp_path, scenario)
