"""A fake engine at Ray Serve LLM's engine seam, and a stand-in for the Serve handle that reaches it.

``FakeEngine`` implements Ray Serve LLM's ``LLMEngine`` protocol (chat, completions, embeddings, health) the way its
vLLM engine answers: a stream is ``data: {chunk}`` strings in vLLM's chunk shape, a final usage-only chunk when the
request asks for usage, then ``data: [DONE]``; a non-streamed answer is one response object; an error is one
``ErrorResponse``. ``LLMServer`` takes an engine class (``engine_cls``), which is how Ray's own tests run it over a
mock vLLM engine: here it runs ``serving/engine.py``'s ``SovereignLLMServer`` (stream pacing included) in the test's
process, in well under a second, with neither vLLM's engine nor a Ray cluster. What the engine does is set per test
(``Script``); what it saw is recorded (``Call``).

``InProcessHandle`` stands in for the Serve ``DeploymentHandle`` that ``LocalBackend`` holds, over that server
object, so that ``LocalBackend -> handle -> SovereignLLMServer -> FakeEngine`` is the production path less Ray's
transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import json
import pickle
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Generator, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ray.serve.exceptions import RequestCancelledError
from ray.serve.llm.openai_api_models import (
    ChatCompletionResponse,
    CompletionResponse,
    EmbeddingResponse,
    ErrorResponse,
)

from serving.thirdparty import llm_engine_protocol, llm_server_without_a_cluster

if TYPE_CHECKING:  # for the type checker only; at run time through serving/thirdparty.py, which checks Ray's version
    from ray.llm._internal.serve.core.engine.protocol import LLMEngine
else:
    LLMEngine = llm_engine_protocol()


@dataclass(frozen=True)
class EngineError:
    """An ``ErrorResponse`` as vLLM's front end builds one (``create_error_response``)."""

    code: int
    message: str = "the engine refused the request"
    type: str = "BadRequestError"
    param: str | None = None

    def response(self) -> Any:
        return ErrorResponse(error=self.body())

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "type": self.type, "param": self.param, "code": self.code}


@dataclass
class Script:
    """What the engine does with each request (a test sets ``engine.script``)."""

    tokens: int = 4
    """Completion tokens per answer (fewer when the request's ``max_tokens`` is lower: ``finish_reason`` "length")."""
    delay_s: float = 0.0
    """Before each token."""
    gated: bool = False
    """Each token first waits for one release of its call's ``gate`` (a test lets tokens out one by one)."""
    fail_after: int | None = None
    """Stream this many tokens, then fail as ``fail_with`` says."""
    fail_with: Literal["event", "exception", "serve_cancelled"] = "event"
    """"event": what vLLM's stream generators do with an exception, an error event (``data: {"error": ...}``) and
    ``[DONE]``; "exception": the generator raises (an engine that died under it); "serve_cancelled": Serve's
    ``RequestCancelledError``, as a handle raises it when Serve cancelled the request (its HTTP caller left)."""
    error: EngineError | None = None
    """Answer with this ``ErrorResponse`` before anything else."""
    hang: bool = False
    """Never answer (until the generation is cancelled)."""
    silent: bool = False
    """End without answering anything."""
    healthy: bool = True
    """``check_health`` raises when False."""


@dataclass
class Call:
    """One request the engine saw, and how its generation ended."""

    method: str
    request: Any
    raw_request_info: Any
    tokens_sent: int = 0
    outcome: Literal["running", "finished", "failed", "aborted"] = "running"
    """"aborted": the generator was cancelled or closed before its end (vLLM aborts the request in the engine)."""
    gate: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(0))


class FakeEngine(LLMEngine):
    """A text engine that answers tokens " t0", " t1", ... as ``script`` says, recording every call in ``calls``."""

    def __init__(self, llm_config: Any) -> None:
        self.llm_config = llm_config
        self.script = Script()
        self.calls: list[Call] = []
        self.started = False
        self.shut_down = False

    # -- the protocol's lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.started = True

    def routing_stats(self) -> dict[str, Any]:
        return {}

    async def resolve_lora(self, lora_model: Any) -> None:
        raise NotImplementedError("the fake engine serves no LoRA adapters")

    async def reset_prefix_cache(self) -> None:
        return None

    async def check_health(self) -> None:
        if not self.script.healthy:
            raise RuntimeError("the fake engine is unhealthy")

    async def shutdown(self) -> None:
        self.shut_down = True

    # -- requests ----------------------------------------------------------------------------------------------
    # ``LLMEngine`` declares these as coroutines that return a generator (its bodies are ``pass``); its engines are
    # async generators, which is how ``LLMServer`` calls them, so each override differs from the declared type.

    async def chat(  # type: ignore[override]  # an async generator: see above
        self, request: Any, raw_request_info: Any = None
    ) -> AsyncGenerator[Any, None]:
        async for item in self._generate("chat", request, raw_request_info):
            yield item

    async def completions(  # type: ignore[override]  # an async generator: see above
        self, request: Any, raw_request_info: Any = None
    ) -> AsyncGenerator[Any, None]:
        async for item in self._generate("completions", request, raw_request_info):
            yield item

    async def embeddings(  # type: ignore[override]  # an async generator: see above
        self, request: Any, raw_request_info: Any = None
    ) -> AsyncGenerator[Any, None]:
        call = self._record("embeddings", request, raw_request_info)
        with _outcome(call):
            if self.script.error is not None:
                yield self.script.error.response()
                return
            inputs = request.input if isinstance(request.input, list) else [request.input]
            data = [
                {"object": "embedding", "index": i, "embedding": _vector(str(text))} for i, text in enumerate(inputs)
            ]
            prompt_tokens = sum(len(str(text).split()) for text in inputs)
            yield EmbeddingResponse.model_validate(
                {
                    "object": "list",
                    "model": request.model,
                    "data": data,
                    "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
                }
            )

    async def transcriptions(  # type: ignore[override]  # an async generator: see above
        self, request: Any, raw_request_info: Any = None
    ) -> AsyncGenerator[Any, None]:
        self._record("transcriptions", request, raw_request_info).outcome = "finished"
        yield EngineError(400, "the fake engine does not transcribe").response()

    def _record(self, method: str, request: Any, raw_request_info: Any) -> Call:
        call = Call(method, request, raw_request_info)
        self.calls.append(call)
        return call

    async def _generate(self, method: str, request: Any, raw_request_info: Any) -> AsyncGenerator[Any, None]:
        call = self._record(method, request, raw_request_info)
        script = self.script
        with _outcome(call):
            if script.hang:
                await asyncio.Event().wait()
            if script.silent:
                return
            if script.error is not None:
                yield script.error.response()
                return
            # Chat's max_tokens is deprecated for max_completion_tokens (read through the attribute, it warns).
            limit = request.max_completion_tokens if method == "chat" else None
            limit = limit or vars(request).get("max_tokens")
            count = min(script.tokens, limit) if limit else script.tokens
            finish = "length" if count < script.tokens else "stop"
            shape = _Shape(method, request, prompt_tokens=len(_prompt_text(request).split()))
            if not request.stream:
                for _ in range(count):
                    await self._next_token(call)
                yield shape.response([_token(i) for i in range(count)], finish)
                return
            if method == "chat":
                yield shape.chunk({"role": "assistant", "content": ""}, None)
            for i in range(count):
                await self._next_token(call)
                if script.fail_after is not None and i >= script.fail_after:
                    if script.fail_with == "exception":
                        raise RuntimeError("the fake engine died")
                    if script.fail_with == "serve_cancelled":
                        from ray.serve.exceptions import RequestCancelledError

                        call.outcome = "aborted"
                        raise RequestCancelledError("fake")
                    failure = EngineError(500, "the fake engine failed", "InternalServerError")
                    yield f"data: {json.dumps({'error': failure.body()})}\n\n"
                    yield "data: [DONE]\n\n"
                    call.outcome = "failed"
                    return
                yield shape.chunk(_token(i), finish if i == count - 1 else None)
            options = request.stream_options
            if options is not None and options.include_usage:
                yield shape.usage_chunk(count)
            yield "data: [DONE]\n\n"

    async def _next_token(self, call: Call) -> None:
        if self.script.gated:
            await call.gate.acquire()
        await asyncio.sleep(self.script.delay_s)  # 0: still a turn of the loop, as a real engine's await is
        call.tokens_sent += 1


def _token(i: int) -> str:
    return f" t{i}"


def _prompt_text(request: Any) -> str:
    messages = getattr(request, "messages", None)
    if messages is not None:
        return " ".join(str(m.get("content") if isinstance(m, dict) else getattr(m, "content", "")) for m in messages)
    return str(getattr(request, "prompt", ""))


def _vector(text: str, dimensions: int = 8) -> list[float]:
    digest = hashlib.sha256(text.encode()).digest()
    return [(b - 127.5) / 127.5 for b in digest[:dimensions]]


@contextlib.contextmanager
def _outcome(call: Call) -> Iterator[None]:
    """Record how a generation ended: a cancellation or a close before its end is an abort."""
    try:
        yield
    except (GeneratorExit, asyncio.CancelledError):
        call.outcome = "aborted"
        raise
    except BaseException:
        call.outcome = "failed"
        raise
    if call.outcome == "running":
        call.outcome = "finished"


@dataclass
class _Shape:
    """vLLM's chat and completions objects for one answer (``created`` and ids as vLLM makes them)."""

    method: str
    request: Any
    prompt_tokens: int
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def _id(self) -> str:
        return f"{'chatcmpl' if self.method == 'chat' else 'cmpl'}-{self.request.request_id}"

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self._id, "object": kind, "created": self.created, "model": self.request.model}

    def chunk(self, delta: dict[str, Any] | str, finish: str | None) -> str:
        if self.method == "chat":
            content = delta if isinstance(delta, dict) else {"content": delta}
            choice = {"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}
            obj = {**self._head("chat.completion.chunk"), "choices": [choice]}
        else:
            choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish, "stop_reason": None}
            obj = {**self._head("text_completion"), "choices": [choice]}
        return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"

    def usage(self, completion_tokens: int) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
            "completion_tokens": completion_tokens,
        }

    def usage_chunk(self, completion_tokens: int) -> str:
        kind = "chat.completion.chunk" if self.method == "chat" else "text_completion"
        obj = {**self._head(kind), "choices": [], "usage": self.usage(completion_tokens)}
        return f"data: {json.dumps(obj, separators=(',', ':'))}\n\n"

    def response(self, tokens: list[str], finish: str) -> Any:
        text = "".join(tokens)
        if self.method == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish,
            }
            return ChatCompletionResponse.model_validate(
                {**self._head("chat.completion"), "choices": [choice], "usage": self.usage(len(tokens))}
            )
        choice = {"index": 0, "text": text, "finish_reason": finish}
        return CompletionResponse.model_validate(
            {**self._head("text_completion"), "choices": [choice], "usage": self.usage(len(tokens))}
        )


# -- the server over it ---------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def in_process_server(llm_config: Any, engine_cls: type[LLMEngine] = FakeEngine) -> AsyncIterator[Any]:
    """``serving/engine.py``'s ``SovereignLLMServer`` over ``engine_cls``, built in this process as Serve builds a
    replica (its async ``__init__`` awaited), without reporting to Ray's telemetry actor and with Ray's implied
    ``ray.init`` off: nothing here may start a cluster. Its engine is ``server.engine``."""
    from serving.engine import sovereign_server_cls

    cls: Any = _collectable(sovereign_server_cls())
    server = cls.__new__(cls)
    with llm_server_without_a_cluster():
        await server.__init__(llm_config, engine_cls=engine_cls)
    try:
        yield server
    finally:
        await server.engine.shutdown()


def _collectable(cls: type) -> type:
    """``cls`` with a plain ``__del__``: ``LLMServer.__del__`` is a coroutine function that shuts the engine down,
    which Serve awaits when it stops a replica; collected outside Serve, Python would drop that coroutine unawaited
    (a warning). ``in_process_server`` shuts the engine down itself."""
    return type(cls.__name__, (cls,), {"__del__": lambda self: None})


# -- the handle -----------------------------------------------------------------------------------------------


class InProcessHandle:
    """Stands in for the Serve ``DeploymentHandle`` to the engine deployment that ``LocalBackend`` holds, over the
    deployment's object (``target``) in this process. What it keeps of Serve's handle:

    - ``options(stream=True)`` is a handle whose calls stream (other options are taken and ignored);
    - ``handle.<method>.remote(*args)`` starts the call at once, in a task of its own (the replica's), with its
      arguments and results copied through pickle on the way, as Serve serialises them;
    - without ``stream`` the answer is awaitable (``DeploymentResponse``); with it, an async iterator over what the
      method's generator yields (``DeploymentResponseGenerator``; a coroutine that returns a generator streams that
      generator, as ``LLMServer.chat`` does under Serve). ``cancel()`` cancels the call in the replica (a
      cancellation reaches the engine's generator) and the next read raises ``RequestCancelledError``.

    Not kept: replicas and routing, Serve's queue limits (``max_queued_requests``: ``BackPressureError``), the
    proxy. ``drain()`` waits for every call started through the handle (or its options) to end.
    """

    def __init__(self, target: Any, *, stream: bool = False, _tasks: list[asyncio.Task[Any]] | None = None) -> None:
        self._target = target
        self._stream = stream
        self._tasks: list[asyncio.Task[Any]] = [] if _tasks is None else _tasks

    def options(self, *, stream: bool | None = None, **_: Any) -> InProcessHandle:
        return InProcessHandle(self._target, stream=self._stream if stream is None else stream, _tasks=self._tasks)

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    async def drain(self, timeout_s: float = 10) -> None:
        """Wait until every call made through this handle has ended (a cancelled one too)."""
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout_s)


@dataclass
class _Method:
    handle: InProcessHandle
    name: str

    def remote(self, *args: Any, **kwargs: Any) -> _Response | _ResponseGenerator:
        target = getattr(self.handle._target, self.name)
        args, kwargs = _copy((args, kwargs))
        if self.handle._stream:
            stream = _ResponseGenerator(target(*args, **kwargs))
            self.handle._tasks.append(stream.task)
            return stream
        response = _Response(target(*args, **kwargs))
        self.handle._tasks.append(response.task)
        return response


class _Response:
    """An answer to await (Serve's ``DeploymentResponse``)."""

    def __init__(self, call: Any) -> None:
        self.task = asyncio.ensure_future(_answer(call))

    def __await__(self) -> Generator[Any, None, Any]:
        return self.task.__await__()

    def cancel(self) -> None:
        self.task.cancel()


async def _answer(call: Any) -> Any:
    return _copy(await call if inspect.isawaitable(call) else call)


class _ResponseGenerator:
    """A streamed answer (Serve's ``DeploymentResponseGenerator``): the call runs in ``task``, which queues what it
    yields for the reader."""

    def __init__(self, call: Awaitable[Any] | AsyncIterator[Any]) -> None:
        self._items: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self._cancelled = False
        self.task = asyncio.ensure_future(self._run(call))

    async def _run(self, call: Awaitable[Any] | AsyncIterator[Any]) -> None:
        try:
            source = await call if inspect.isawaitable(call) else call
            if not inspect.isasyncgen(source):
                raise TypeError(f"a streaming call must return an async generator, not {type(source).__name__}")
            async with contextlib.aclosing(source) as items:
                async for item in items:
                    self._items.put_nowait(("item", _copy(item)))
        except Exception as exc:  # a cancellation (``cancel()``) ends the task instead
            self._items.put_nowait(("error", exc))
        else:
            self._items.put_nowait(("end", None))

    def __aiter__(self) -> _ResponseGenerator:
        return self

    async def __anext__(self) -> Any:
        if self._cancelled:
            raise RequestCancelledError("the request was cancelled")
        kind, value = await self._items.get()
        if kind == "item":
            return value
        if kind == "error":
            raise value
        if kind == "cancelled":
            raise RequestCancelledError("the request was cancelled")
        raise StopAsyncIteration

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            self.task.cancel()
            self._items.put_nowait(("cancelled", None))  # a reader waiting now is answered too


def _copy(value: Any) -> Any:
    """``value`` as the other side of Serve's transport sees it: a copy, through pickle."""
    return pickle.loads(pickle.dumps(value))
