"""Every place the project goes past a third-party package's public API: the patches of its classes, the overrides
of its private methods and the imports from its private modules. Each was written for the versions in
``WRITTEN_FOR`` (the pins in pyproject.toml, which a test keeps equal); ``require`` checks the installed version
before the patch is applied or the private name is used, and raises ``UnsupportedVersion`` naming the package, the
version found and the versions expected. A new release is adopted by re-reading the code here against it, then
moving the pin in both places.

What is here:

- uvicorn: ``release_reset_connections``, a patch of both HTTP protocols' ``connection_lost``.
- openai: ``openai_client_class``, the async client less the ``_build_headers`` it adds ``x-stainless-*`` with.
- ray: ``own_batching``, which routes Ray Serve LLM's private ``LLMServer._batch_output_stream`` to a subclass's
  own method; ``default_batch_interval_ms`` and ``raw_request_info`` from ``ray.llm._internal``;
  ``init_ray_on_loopback``, ``ray.init``'s private ``_node_ip_address``; ``serve_replica_states``, Serve's
  private client for the controller's details as a plain dict; for the tests' fake engine,
  ``llm_engine_protocol`` (Ray Serve LLM's ``LLMEngine``, not exported) and ``llm_server_without_a_cluster``.
- google-re2: ``re2_extension``, the pybind11 module ``re2._re2`` (the routing package's scanners call it directly).
- opentelemetry: ``genai_attributes`` (semantic conventions still ``_incubating``) and ``otlp_logs`` (the logs
  signal: ``opentelemetry._logs``, ``opentelemetry.sdk._logs``, the OTLP/HTTP ``_log_exporter``).

Nothing is imported before it is asked for: Ray and vLLM take seconds to import, and the classifier needs neither.
This module imports nothing of the project, so every package may import it.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.metadata
from collections.abc import AsyncGenerator, Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from packaging.specifiers import SpecifierSet
from packaging.version import InvalidVersion, Version

if TYPE_CHECKING:
    import openai

S = TypeVar("S")
T = TypeVar("T")

# Distribution name -> the versions the code below was written for (pyproject.toml pins the same).
WRITTEN_FOR: dict[str, str] = {
    "google-re2": ">=1.1.20251105,<1.2",
    "openai": ">=3.57,<4",
    # opentelemetry-sdk pins opentelemetry-api and opentelemetry-semantic-conventions to exact versions, so its
    # version fixes theirs (the `_logs` API and the `_incubating` GenAI attributes).
    "opentelemetry-exporter-otlp-proto-http": ">=1.45,<1.46",
    "opentelemetry-sdk": ">=1.45,<1.46",
    "ray": "==2.60.0",
    "uvicorn": ">=0.55,<0.56",
}


class UnsupportedVersion(RuntimeError):
    """An installed package is not a version the code that goes past its public API was written for."""


@functools.cache
def require(distribution: str) -> str:
    """The installed version of ``distribution`` if it is one ``WRITTEN_FOR`` names; raises ``UnsupportedVersion``
    otherwise (or when it is not installed)."""
    expected = WRITTEN_FOR[distribution]
    try:
        found = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise UnsupportedVersion(
            f"{distribution} is not installed; this server needs {distribution}{expected}"
        ) from None
    try:
        supported = SpecifierSet(expected).contains(Version(found), prereleases=True)
    except InvalidVersion:
        supported = False
    if not supported:
        raise UnsupportedVersion(
            f"{distribution} {found} is installed, but this server was written for {distribution}{expected}: it "
            f"patches or imports private parts of it (serving/thirdparty.py). Install {distribution}{expected}, "
            f"or review serving/thirdparty.py against {found} and move the pin in it and in pyproject.toml."
        )
    return found


# -- uvicorn ------------------------------------------------------------------------------------------------------


def release_reset_connections() -> None:
    """Make uvicorn let go of a connection closed by a reset as it does of one closed cleanly. Idempotent.

    uvicorn arms a keep-alive timer after every response and cancels it in ``connection_lost`` only when the
    close was clean (``exc is None``). A reset leaves the timer holding the connection's whole request graph
    (protocol, transport, scope, ASGI state) for the keep-alive timeout: 90 s in a Ray Serve replica. HAProxy
    resets its connection to the replica whenever a client leaves before a response has ended, so without this
    the router replica grows by about 6 KB per such request until the timers run out.
    """
    require("uvicorn")
    from uvicorn.protocols.http.h11_impl import H11Protocol
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    for protocol in (HttpToolsProtocol, H11Protocol):
        original = protocol.connection_lost
        if getattr(original, "_releases_on_reset", False):
            continue
        protocol.connection_lost = _releasing(original)  # type: ignore[assignment]  # the patch itself


def _releasing(original: Callable[[Any, Exception | None], None]) -> Callable[[Any, Exception | None], None]:
    def connection_lost(self: Any, exc: Exception | None) -> None:
        original(self, exc)
        self._unset_keepalive_if_required()  # a no-op when the clean path has done it

    connection_lost._releases_on_reset = True  # type: ignore[attr-defined]  # the mark that makes the patch idempotent
    return connection_lost


# -- openai -------------------------------------------------------------------------------------------------------


@functools.cache
def openai_client_class() -> type[openai.AsyncOpenAI]:
    """``openai.AsyncOpenAI`` without the SDK's ``x-stainless-*`` headers (its version, the host's OS, architecture
    and Python runtime, its retry count and read timeout), which it adds in its private ``_build_headers``."""
    require("openai")
    import openai

    class AsyncOpenAIWithoutFingerprint(openai.AsyncOpenAI):
        def _build_headers(self, options: Any, *, retries_taken: int = 0) -> Any:
            headers = super()._build_headers(options, retries_taken=retries_taken)
            for name in [name for name in headers if name.lower().startswith("x-stainless-")]:
                del headers[name]
            return headers

    return AsyncOpenAIWithoutFingerprint


# -- ray ----------------------------------------------------------------------------------------------------------


def own_batching(cls: type[S]) -> type[S]:
    """Class decorator for a subclass of Ray Serve LLM's ``LLMServer``: the engine's output stream is grouped into
    the batches Serve sends by the class's own ``batch_output_stream(generator)``, not by Ray's batching (what
    ``LLMServer`` calls for it is its private ``_batch_output_stream``)."""
    require("ray")

    def _batch_output_stream(self: Any, generator: AsyncGenerator[T, None]) -> AsyncGenerator[list[T], None]:
        return self.batch_output_stream(generator)

    cls._batch_output_stream = _batch_output_stream  # type: ignore[attr-defined]  # the private hook, routed
    return cls


def default_batch_interval_ms() -> float:
    """How long Ray Serve LLM's own batching waits to fill a batch (``ray.llm._internal``)."""
    require("ray")
    from ray.llm._internal.serve.constants import MODEL_RESPONSE_BATCH_TIMEOUT_MS

    return float(MODEL_RESPONSE_BATCH_TIMEOUT_MS)


def init_ray_on_loopback(**kwargs: Any) -> Any:
    """``ray.init(**kwargs)`` with this node's address fixed to 127.0.0.1 (its private ``_node_ip_address``), so
    that a local benchmark's traffic stays on loopback."""
    require("ray")
    import ray

    return ray.init(_node_ip_address="127.0.0.1", **kwargs)


def init_ray_with_metrics_port(metrics_export_port: int | None, **kwargs: Any) -> Any:
    """``ray.init(**kwargs)`` with the port of this node's Prometheus endpoint fixed (its private
    ``_metrics_export_port``; None: a port Ray picks)."""
    require("ray")
    import ray

    return ray.init(_metrics_export_port=metrics_export_port, **kwargs)


def serve_replica_states(app_name: str) -> dict[str, dict[str, int]] | None:
    """How many replicas of each deployment of the Serve application ``app_name`` are in each state (deployment name
    -> {"RUNNING": 1, ...}), or None where Serve has no such application. The controller's details are read as the
    plain dict it sends (Serve's private client): ``serve.status()`` builds Serve's pydantic models of them first,
    which cloudpickles each deployment's request-router class, ~14 ms of CPU and of the GIL a call, where this takes
    ~0.6 ms."""
    require("ray")
    from ray.serve.context import _get_global_client

    client = _get_global_client(raise_if_no_controller_running=False)
    if client is None:
        return None
    app = client.get_serve_details().get("applications", {}).get(app_name)
    if app is None:
        return None
    states: dict[str, dict[str, int]] = {}
    for name, deployment in (app.get("deployments") or {}).items():
        counts = states.setdefault(name, {})
        for replica in deployment.get("replicas") or ():
            state = str(getattr(replica.get("state"), "value", replica.get("state")))
            counts[state] = counts.get(state, 0) + 1
    return states


def llm_engine_protocol() -> Any:
    """Ray Serve LLM's engine protocol (``LLMEngine``, in ``ray.llm._internal``), which an engine given to
    ``LLMServer`` as ``engine_cls`` implements: the tests' fake engine subclasses it."""
    require("ray")
    from ray.llm._internal.serve.core.engine.protocol import LLMEngine

    return LLMEngine


@contextlib.contextmanager
def llm_server_without_a_cluster() -> Iterator[None]:
    """Build and run Ray Serve LLM's ``LLMServer`` in this process with no Ray cluster (the tests' fake engine):
    its report of the models it starts to Ray's telemetry actor is skipped, and no remote call starts a local
    cluster (``ray._private``'s auto-connect)."""
    require("ray")
    from unittest import mock

    with (
        mock.patch("ray.llm._internal.serve.core.server.llm_server.push_telemetry_report_for_all_models"),
        mock.patch("ray._private.auto_init_hook.enable_auto_connect", False),
    ):
        yield


def ray_lora_loading() -> tuple[Any, Any, Any]:
    """Ray Serve LLM's LoRA loading (``ray.llm._internal``): the loader base class (``LoraModelLoader``, what
    ``LLMServer`` takes as its ``model_downloader``), the configuration a loader returns (``DiskMultiplexConfig``)
    and the counter that numbers adapters for vLLM (``global_id_manager``)."""
    require("ray")
    from ray.llm._internal.common.models import global_id_manager
    from ray.llm._internal.serve.core.configs.llm_config import DiskMultiplexConfig
    from ray.llm._internal.serve.utils.lora_serve_utils import LoraModelLoader

    return LoraModelLoader, DiskMultiplexConfig, global_id_manager


def raw_request_info(headers: dict[str, str]) -> Any:
    """The request metadata Ray Serve LLM's engine deployment takes beside a request (``RawRequestInfo``): vLLM
    reads its request id and W3C trace context from these headers."""
    require("ray")
    from ray.llm._internal.serve.core.protocol import RawRequestInfo

    return RawRequestInfo(headers=headers)


async def vllm_rerank(engine: Any, request: Any, raw_request_info: Any) -> AsyncGenerator[Any, None]:
    """One ``RerankResponse`` or ``ErrorResponse`` for a vLLM ``RerankRequest``, from the handler vLLM builds for a
    pooling model's scores (Ray's engine's ``_oai_serving_scores``: the same object that answers ``score``; Ray
    Serve LLM's ``LLMServer`` has no rerank of its own, and its ``score`` casts every answer to a ``ScoreResponse``)."""
    require("ray")
    from ray.llm._internal.serve.core.configs.openai_api_models import ErrorInfo, ErrorResponse
    from ray.llm._internal.serve.core.protocol import RawRequestInfo
    from vllm.entrypoints.pooling.scoring.protocol import RerankResponse
    from vllm.exceptions import VLLMClientError

    serving = getattr(engine, "_oai_serving_scores", None)
    if serving is None:
        yield ErrorResponse(
            error=ErrorInfo(message="this model does not serve rerank", type="invalid_request_error", code=400)
        )
        return
    try:  # the headers carry the router's request id and trace context, as for every other request
        response = await serving(request, raw_request=RawRequestInfo.to_starlette_request_optional(raw_request_info))
    except (ValueError, VLLMClientError) as exc:
        yield engine._make_error_response(serving, exc)
        return
    yield RerankResponse.model_validate_json(response.body)


def _vllm_responses_handler(engine: Any) -> Any:
    """vLLM's Responses API handler for a generating model (``OpenAIServingResponses``), from the front-end state
    Ray's engine builds with vLLM's own ``init_app_state`` (its private ``_app_state``); None where there is none."""
    return getattr(getattr(engine, "_app_state", None), "openai_serving_responses", None)


def _not_served(what: str) -> Any:
    from ray.llm._internal.serve.core.configs.openai_api_models import ErrorInfo, ErrorResponse

    return ErrorResponse(
        error=ErrorInfo(message=f"this model does not serve {what}", type="invalid_request_error", code=400)
    )


async def vllm_responses(engine: Any, request: Any, raw_request_info: Any) -> AsyncGenerator[Any, None]:
    """A Responses API answer for a vLLM ``ResponsesRequest``: one JSON object (the response) or
    ``ErrorResponse``, or the stream's events as OpenAI frames them (``event: <type>\ndata: {...}``), one string
    each. Ray Serve LLM's ``LLMServer`` has no Responses API of its own."""
    require("ray")
    from ray.llm._internal.serve.core.protocol import RawRequestInfo
    from vllm.entrypoints.openai.responses.protocol import ResponsesResponse
    from vllm.exceptions import VLLMClientError

    handler = _vllm_responses_handler(engine)
    if handler is None:
        yield _not_served("the Responses API")
        return
    try:  # the headers carry the router's request id and trace context, as for every other request
        result = await handler.create_responses(
            request, raw_request=RawRequestInfo.to_starlette_request_optional(raw_request_info)
        )
    except (ValueError, VLLMClientError) as exc:
        yield engine._make_error_response(handler, exc)
        return
    if isinstance(result, ResponsesResponse):
        yield result.model_dump(mode="json", by_alias=True)
        return
    if type(result).__name__ == "ErrorResponse":
        yield result
        return
    async for event in result:
        yield f"event: {event.type}\ndata: {event.model_dump_json(indent=None, by_alias=True)}\n\n"


async def vllm_stored_response(engine: Any, action: str, response_id: str) -> Any:
    """A stored response of vLLM's Responses API store (``VLLM_ENABLE_RESPONSES_API_STORE``): retrieved,
    cancelled, or deleted (vLLM serves no delete: the response and its messages are dropped from the handler's
    private in-memory stores). A JSON object, or ``ErrorResponse``."""
    require("ray")
    handler = _vllm_responses_handler(engine)
    if handler is None:
        return _not_served("the Responses API")
    if action == "retrieve":
        result = await handler.retrieve_responses(response_id, starting_after=None, stream=False)
    elif action == "cancel":
        result = await handler.cancel_responses(response_id)
    else:
        async with handler.response_store_lock:
            found = handler.response_store.pop(response_id, None)
            handler.msg_store.pop(response_id, None)
        if found is None:
            return handler._make_not_found_error(response_id)
        return {"id": response_id, "object": "response.deleted", "deleted": True}
    if type(result).__name__ == "ErrorResponse":
        return result
    return result.model_dump(mode="json", by_alias=True)


# -- google-re2 ---------------------------------------------------------------------------------------------------


def re2_extension() -> ModuleType:
    """``re2._re2``, the pybind11 module under google-re2's Python wrapper: compiled patterns and sets matched
    over a byte range without the wrapper's per-call conversions."""
    require("google-re2")
    from re2 import _re2

    return _re2


# -- opentelemetry ------------------------------------------------------------------------------------------------


def genai_attributes() -> ModuleType:
    """The GenAI semantic-convention attribute names (``opentelemetry.semconv._incubating``)."""
    require("opentelemetry-sdk")
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes

    return gen_ai_attributes


@dataclass(frozen=True)
class OTLPLogs:
    """OpenTelemetry's logs signal, whose Python API is still private: the OTLP/HTTP log exporter, the log record
    and its severities, the SDK's record with resource and scope, and the export result."""

    exporter: type
    log_record: type
    severity: Any
    readable_log_record: type
    export_result: Any


@functools.cache
def otlp_logs() -> OTLPLogs:
    require("opentelemetry-sdk")
    require("opentelemetry-exporter-otlp-proto-http")
    from opentelemetry._logs import LogRecord, SeverityNumber
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs import ReadableLogRecord
    from opentelemetry.sdk._logs.export import LogRecordExportResult

    return OTLPLogs(
        exporter=OTLPLogExporter,
        log_record=LogRecord,
        severity=SeverityNumber,
        readable_log_record=ReadableLogRecord,
        export_result=LogRecordExportResult,
    )
