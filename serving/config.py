"""The one configuration schema: YAML file, ``SOVEREIGN_*`` environment overrides, validated at start.

The Helm chart renders this same YAML, and the Ray Serve config for ``serve deploy`` is generated from it, so
the three cannot drift. Secrets never live here: the OpenAI key is named by ``api_key_env`` or ``api_key_file``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from routing.audit_ship import AnchorConfig, ShippingConfig
from routing.levels import LEVEL_LABELS, Level

ENV_PREFIX = "SOVEREIGN_"


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in a security setting must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _level(value: Any) -> Level:
    if isinstance(value, Level):
        return value
    if isinstance(value, str):
        return Level.parse(value)
    raise ValueError("must be a classification level string")


LevelField = Annotated[
    Level,
    BeforeValidator(_level),
    PlainSerializer(lambda level: level.label, return_type=str),
    WithJsonSchema({"type": "string", "enum": list(LEVEL_LABELS)}),
]


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    max_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_concurrency: int = Field(256, ge=1, description="requests in flight per ingress replica; more get 503")
    response_ids_key_env: str | None = Field(
        None,
        description="the environment variable holding the key (16 characters or more) that signs the Responses "
        "API ids the router issues, shared by every router replica (serving/response_ids.py). Unset: a key made "
        "when the application is deployed, so ids issued before a redeployment no longer resolve (404)",
    )
    ingress_replicas: int = Field(1, ge=1)
    proxy: Literal["serve", "haproxy"] = Field(
        "haproxy",
        description="HTTP front of Ray Serve: `haproxy` (Ray 2.60's HAProxy mode with direct ingress; far less "
        "per-request overhead, see benchmarks/RESULTS.md) or `serve` (the Python proxy actor)",
    )
    request_timeout_s: float = Field(
        600.0,
        gt=0,
        description="the longest a request may take, from its first byte in to its last byte out (streams "
        "included), local and commercial alike: past it the caller gets a 504 `request_timeout` (or, mid-stream, "
        "an error event), the backend's work is cancelled and the audit record says so. A model may set a "
        "shorter one (models[].request_timeout_s)",
    )
    classification_deadline_ms: float = Field(
        250.0,
        gt=0,
        le=60_000,
        description="the classifier's time limit per request; past it the request is TOP SECRET (fail closed). "
        "`sovereign bench classify-worst` measures the costliest bodies of a given size against it (on a 2-vCPU VM "
        "the default covers every shape up to about 350 KB: benchmarks/RESULTS.md)",
    )
    metrics_host: str = Field(
        "127.0.0.1",
        description="address of the Prometheus metrics listener, kept off the API port (the chart sets the pod's)",
    )
    metrics_port: int | None = Field(
        9464,
        ge=1,
        le=65535,
        description="port of the Prometheus metrics listener (GET /metrics); with several router replicas on one "
        "host each takes the next free one up to metrics_port + ingress_replicas - 1. null: no listener",
    )
    api_docs: Literal["off", "authenticated", "public"] = Field(
        "authenticated",
        description="the OpenAPI document at /openapi.json: `authenticated` (an API key is needed), `off`, or "
        "`public` (also the interactive /docs and /redoc pages; development only)",
    )
    drain_timeout_s: float = Field(
        20.0,
        gt=0,
        le=3600,
        description="when the server stops or a replica is replaced, how long requests in flight (streams "
        "included) may take to finish before they are cut off: Ray Serve's graceful_shutdown_timeout_s for the "
        "router and engine replicas (Ray's default is 20 s; long generations want more)",
    )
    ingress_ray_resources: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources the ingress (router) replicas require, e.g. to pin them to the only "
        "pods whose NetworkPolicy allows egress to the commercial endpoint",
    )
    ray_metrics_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="under `sovereign serve` (its own local Ray): the port of Ray's Prometheus endpoint, where the "
        "engines' vLLM metrics (`ray_vllm_*`) and Ray's own are exported (Ray's metrics agent, on every interface "
        "like Ray's other ports). null: a port Ray picks. On a Ray cluster `ray start --metrics-export-port` sets "
        "it (the chart: 8080)",
    )
    isolate_cpu_engines: bool = Field(
        True,
        description="under `sovereign serve` with CPU engines only: keep Ray, the router and the engines' "
        "schedulers off the cores vLLM binds its workers to (serving/placement.py, benchmarks/RESULTS.md)",
    )


def _custom_ray_resources(value: dict[str, float]) -> dict[str, float]:
    """Custom Ray resources: names Ray does not reserve, amounts above zero."""
    reserved = sorted(
        name
        for name in value
        if name in {"CPU", "GPU", "memory", "object_store_memory"}
        or name.startswith("node:")
        or name.startswith("accelerator_type:")
    )
    if reserved:
        raise ValueError(
            f"{reserved}: Ray's own resources are not custom resources (the accelerator and engine "
            "settings decide them)"
        )
    bad = sorted(name for name, amount in value.items() if not amount > 0)
    if bad:
        raise ValueError(f"{bad}: a resource amount must be above zero")
    return value


class AuditConfig(_Strict):
    """The local hash-chained log (always), and where its records and head also go (routing/audit_ship.py)."""

    path: Path = Path("var/audit.jsonl")
    shipping: ShippingConfig | None = Field(
        None, description="every record also goes, in order and without loss, to the SIEM (OTLP logs or syslog)"
    )
    anchors: AnchorConfig | None = Field(
        None, description="the chain's head written at an interval to a second place (`audit verify --anchors`)"
    )

    @model_validator(mode="after")
    def _anchor_sink(self) -> AuditConfig:
        if self.anchors is not None:
            if self.anchors.sink == "shipping" and self.shipping is None:
                raise ValueError("audit.anchors.sink is 'shipping' but audit.shipping is not set")
            if self.anchors.sink == "file" and self.anchors.path is None:
                raise ValueError("audit.anchors.path is required when audit.anchors.sink is 'file'")
        return self


TeamName = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:@+\-]{1,64}$")]
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class ClaimRule(_Strict):
    """When the token's ``claim`` equals ``value`` (or, for a list claim such as ``groups``/``roles``, contains it),
    this rule applies. Rules are read in order; for each of team, floor, ceiling and models the first matching
    rule that sets it decides."""

    claim: str = Field(min_length=1, max_length=128)
    value: str = Field(min_length=1, max_length=256)
    team: TeamName | None = None
    floor: LevelField | None = None
    ceiling: LevelField | None = None
    models: list[str] | None = Field(None, description="public model names the caller may use (null: all)")


class ClaimsConfig(_Strict):
    """How a verified token's claims become a caller."""

    caller: list[str] = Field(
        default_factory=lambda: ["oid", "sub"],
        min_length=1,
        description="claims naming the caller, first present wins (Entra ID's `oid`, then the standard `sub`); "
        "the value must be a short identifier (letters, digits, _ . : @ + -), else the token is refused",
    )
    caller_prefix: str = Field(
        "oidc:",
        max_length=16,
        pattern=r"^[A-Za-z0-9_.:@+\-]*$",
        description="put before the caller name, so a token's subject can never pose as an API key's caller",
    )
    rules: list[ClaimRule] = Field(default_factory=list)
    default_team: TeamName | None = Field(
        None, description="the team of a token that matches rules but none that names a team (null: `default`)"
    )
    require_rule: bool = Field(
        True, description="a token that no rule matches is refused (403): only mapped groups or roles get in"
    )


class OIDCConfig(_Strict):
    """OIDC bearer tokens (JWTs) from the department's identity provider, accepted beside API keys."""

    issuer: str = Field(min_length=1, description="the `iss` every token must carry, exactly")
    audience: str | list[str] = Field(description="the `aud` a token must be for (one of these)")
    jwks_file: Path | None = Field(None, description="the provider's signing keys as a JWKS file (re-read on change)")
    jwks_url: str | None = Field(None, pattern=r"^https?://", description="the provider's JWKS endpoint (cached)")
    jwks_cache_s: int = Field(300, ge=0, description="how long keys fetched from jwks_url are kept")
    algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"],
        min_length=1,
        description=f"accepted signing algorithms; asymmetric only ({', '.join(ASYMMETRIC_ALGORITHMS)})",
    )
    leeway_s: int = Field(30, ge=0, le=300, description="clock skew allowed on exp/nbf/iat")
    claims: ClaimsConfig = Field(default_factory=ClaimsConfig)

    @model_validator(mode="after")
    def _one_source(self) -> OIDCConfig:
        if (self.jwks_file is None) == (self.jwks_url is None):
            raise ValueError("auth.oidc: set exactly one of jwks_file and jwks_url")
        bad = [a for a in self.algorithms if a not in ASYMMETRIC_ALGORITHMS]
        if bad:
            raise ValueError(
                f"auth.oidc.algorithms: {bad} not accepted: asymmetric algorithms only "
                f"({', '.join(ASYMMETRIC_ALGORITHMS)}); `none` and HMAC never"
            )
        return self


class BudgetLimits(_Strict):
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)
    tokens_per_day: int | None = Field(None, ge=1)


class BudgetsConfig(_Strict):
    """Budgets per caller and per team (routing/budgets.py); a request must fit both its caller's and its team's.
    Tokens are prompt plus completion; a request is refused (429) before any backend when its prompt's estimate
    would exceed a budget."""

    callers: dict[str, BudgetLimits] = Field(default_factory=dict, description="caller name -> budget")
    teams: dict[TeamName, BudgetLimits] = Field(default_factory=dict, description="team name -> budget")
    default_caller: BudgetLimits | None = Field(None, description="the budget of a caller not in `callers`")
    default_team: BudgetLimits | None = Field(None, description="the budget of a team not in `teams`")
    ledger: Literal["auto", "local", "ray"] = Field(
        "auto",
        description="where the counters live: `ray` (one actor shared by every router replica), `local` "
        "(each replica its own), `auto` (ray under Ray Serve, else local). The per-caller request rate "
        "(auth.default_rate_per_minute, a key's rate_per_minute) is shared the same way when there are several "
        "router replicas (leases drawn from that actor; each replica on rate/replicas of its own while it is "
        "unreachable: routing/ratelimit.py)",
    )


class AuthConfig(_Strict):
    keys_file: Path | None = None
    default_rate_per_minute: int = Field(600, ge=1)
    oidc: OIDCConfig | None = Field(None, description="accept OIDC bearer tokens (JWTs) beside API keys")
    teams: list[TeamName] = Field(
        default_factory=list,
        description="team names shown in the usage metric (besides those named by budgets and OIDC rules); any "
        "other team is counted as `other`, so a label never comes from a caller",
    )
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)

    def known_teams(self) -> frozenset[str]:
        teams = {*self.teams, *self.budgets.teams, "default"}
        if self.oidc is not None:
            teams |= {r.team for r in self.oidc.claims.rules if r.team}
            if self.oidc.claims.default_team:
                teams.add(self.oidc.claims.default_team)
        return frozenset(teams)


class TelemetryConfig(_Strict):
    """Spans are exported only when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set in the server's environment."""

    service_name: str = "sovereign-inference"
    log_level: str = "INFO"
    # Share of traces kept when the caller sends no sampled ``traceparent`` (a caller's decision always wins).
    trace_sampling_ratio: float = Field(1.0, ge=0.0, le=1.0)


def _vllm_parser_names(kind: Literal["tool", "reasoning"]) -> list[str] | None:
    """The parser names vLLM registers (imported only when a parser is configured: importing vLLM takes seconds);
    None where vLLM is not installed (a router-only image), and the engine checks the name when it starts."""
    try:
        if kind == "tool":
            from vllm.tool_parsers import ToolParserManager

            return list(ToolParserManager.list_registered())
        from vllm.reasoning import ReasoningParserManager

        return list(ReasoningParserManager.list_registered())
    except ImportError:
        return None


_PARSER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_JINJA_MARKUP = ("{{", "{%", "{#")


class EngineConfig(_Strict):
    """vLLM engine arguments that operators tune. ``extra`` passes any other engine argument through.

    Tools and structured outputs: ``response_format`` (a JSON schema) and a named or ``required`` ``tool_choice``
    are decoded under a grammar by vLLM's structured-output backend, with no setting here. ``tool_call_parser`` is
    what lets a model take ``tools`` at all: vLLM refuses any ``tool_choice`` but ``none`` without one.
    ``reasoning_parser`` splits a reasoning model's thinking into ``reasoning_content``."""

    dtype: str = "bfloat16"
    max_model_len: int = Field(4096, ge=16)
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1)
    max_num_seqs: int | None = Field(None, ge=1)
    enforce_eager: bool = False
    tool_call_parser: str | None = Field(
        None,
        pattern=_PARSER_NAME,
        description="vLLM's tool-call parser for this model's output format (`hermes`, `llama3_json`, `mistral`, "
        "`qwen3_xml`...: the model's card names it). Set, requests may carry `tools` with any `tool_choice` "
        "(`auto`, `required`, a named function); unset, only `none`. It is passed to vLLM with "
        "`enable_auto_tool_choice`, which vLLM 0.32 needs before it uses a parser at all",
    )
    reasoning_parser: str | None = Field(
        None,
        pattern=_PARSER_NAME,
        description="vLLM's reasoning parser (`deepseek_r1`, `qwen3`...): a reasoning model's thinking is returned "
        "apart, as `reasoning_content`",
    )
    chat_template: str | None = Field(
        None,
        min_length=1,
        description="the Jinja chat template, inline or as a file path on the engine's node, instead of the one "
        "in the model's tokenizer_config.json (a tool-calling template, say). Callers cannot send their own",
    )
    extra: dict[str, Any] = Field(default_factory=dict)

    @field_validator("tool_call_parser")
    @classmethod
    def _known_tool_parser(cls, value: str | None) -> str | None:
        return _known_parser("tool", value)

    @field_validator("reasoning_parser")
    @classmethod
    def _known_reasoning_parser(cls, value: str | None) -> str | None:
        return _known_parser("reasoning", value)

    @field_validator("chat_template")
    @classmethod
    def _template_compiles(cls, value: str | None) -> str | None:
        if value is not None and any(markup in value for markup in _JINJA_MARKUP):
            from jinja2 import TemplateSyntaxError
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            try:  # vLLM renders chat templates in this same sandbox
                ImmutableSandboxedEnvironment().parse(value)
            except TemplateSyntaxError as exc:
                raise ValueError(f"not a valid Jinja template (line {exc.lineno}: {exc.message})") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> EngineConfig:
        typed = sorted(self.extra.keys() & (type(self).model_fields.keys() | {"runner", "enable_auto_tool_choice"}))
        if typed:
            raise ValueError(f"extra: {typed} are typed settings of engine (or set by task): set them there")
        return self

    def tool_kwargs(self) -> dict[str, Any]:
        """The tool, reasoning and template settings as vLLM's engine (and frontend) arguments."""
        return {
            **(
                {"tool_call_parser": self.tool_call_parser, "enable_auto_tool_choice": True}
                if self.tool_call_parser
                else {}
            ),
            **({"reasoning_parser": self.reasoning_parser} if self.reasoning_parser else {}),
            **({"chat_template": self.chat_template} if self.chat_template else {}),
        }


def _known_parser(kind: Literal["tool", "reasoning"], value: str | None) -> str | None:
    if value is None:
        return None
    names = _vllm_parser_names(kind)
    if names is not None and value not in names:
        raise ValueError(f"{value!r} is not one of vLLM's {kind} parsers: {', '.join(sorted(names))}")
    return value


class AutoscalingConfig(_Strict):
    min_replicas: int = Field(1, ge=0)
    max_replicas: int = Field(1, ge=1)
    target_ongoing_requests: int = Field(32, ge=1)

    @model_validator(mode="after")
    def _order(self) -> AutoscalingConfig:
        if self.min_replicas > self.max_replicas:
            raise ValueError("min_replicas must not exceed max_replicas")
        return self


class LoraConfig(_Strict):
    """LoRA adapters served on a local backend's engines through Ray Serve LLM's multiplexing; each adapter is a
    backend of its own (``kind: adapter``) that models route to."""

    adapters_dir: Path = Field(
        description="folder with one subfolder per adapter (a PEFT adapter: adapter_config.json and its weights), "
        "each prepared by `sovereign models prepare-adapter NAME --source DIR`, which records its SHA-256 "
        "manifest; an adapter whose files do not match their manifest is refused before it is loaded"
    )
    max_adapters_per_replica: int = Field(
        4,
        ge=1,
        description="adapters an engine replica keeps loaded at once (vLLM's max_loras; Serve's multiplexed "
        "models per replica, the least recently used beyond this is unloaded)",
    )
    max_lora_rank: int = Field(
        16, ge=1, description="the highest adapter rank the engine accepts (vLLM's max_lora_rank)"
    )


class _BackendBase(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    sovereign: bool
    max_classification: LevelField


class VLLMBackendConfig(_BackendBase):
    """A local model served by vLLM inside this Ray cluster: sovereign by construction."""

    kind: Literal["vllm"]
    sovereign: bool = True
    max_classification: LevelField = Level.SECRET
    model_source: Path = Field(description="folder of weights prepared by `sovereign models prepare`")
    served_model_name: str | None = None
    task: Literal["generate", "embed"] = "generate"
    accelerator: Literal["cpu", "gpu"] = "cpu"
    cpu_threads: int | None = Field(None, ge=1, description="OMP threads for a CPU engine")
    engine: EngineConfig = Field(default_factory=EngineConfig)
    autoscaling: AutoscalingConfig = Field(default_factory=AutoscalingConfig)
    max_queue_depth: int = Field(64, ge=1, description="requests waiting beyond which low-risk traffic overflows")
    ray_resources: dict[str, float] = Field(
        default_factory=dict,
        description="custom Ray resources a node must offer to host this backend's engine replicas, e.g. "
        '{"sovereign-engine": 1} (nodes offer them with `ray start --resources`), as server.ingress_ray_resources '
        "does for the router: required by the replica's bundle, the first of its placement group, which the "
        "engine's other workers are packed beside. CPU, GPU and memory come from `accelerator` and the engine, "
        "not from here",
    )
    verify_manifest: bool = True
    request_router: Literal["default", "prefix_aware"] = Field(
        "default",
        description="how the router picks one of this backend's engine replicas: `default` (Serve's power of two "
        "choices, by queue length) or `prefix_aware` (Ray Serve LLM's PrefixCacheAffinityRouter: a request goes to "
        "the replica that already saw the longest part of its prompt while the replicas' loads are even, so long "
        "shared system prompts hit that replica's prefix cache). Generation backends only; the prompts' prefixes "
        "are then kept in memory, in a Ray actor of this cluster, to match against (bounded by eviction)",
    )
    lora: LoraConfig | None = Field(
        None,
        description="LoRA adapters on this backend's engines (null: none); each adapter is routed to through a "
        "backend of kind `adapter` that names this backend as its base",
    )
    store_responses: bool = Field(
        False,
        description="keep Responses API responses (`store`, the API's default) in the engine's memory, so a "
        "response can be continued (`previous_response_id`), fetched, cancelled and deleted: vLLM's own store "
        "(VLLM_ENABLE_RESPONSES_API_STORE). It lives in each engine replica's memory, is never evicted (it grows "
        "until the replica restarts) and is per replica: with several replicas a continuation that reaches another "
        "one is a 404. Off (vLLM's default): `store` is ignored and every response stands alone",
    )
    engine_metrics: bool = Field(
        True,
        description="export vLLM's engine metrics (KV-cache use, running and waiting requests, prefix-cache hits, "
        "TTFT and ITL histograms) through Ray's metrics endpoint as `ray_vllm_*` (Ray Serve LLM's "
        "log_engine_metrics); false turns them off for this backend",
    )
    stream_smooth_streams: int = Field(
        8,
        ge=0,
        description="while at most this many streams are open in an engine replica, every stream chunk travels "
        "from the engine at once; beyond, chunks that follow each other closely are sent together, the pacing "
        "interval growing with the streams open (serving/engine.py: pacing_interval)",
    )
    stream_batching_ms: float = Field(
        25.0,
        ge=0,
        description="the longest pacing interval (reached at twice stream_smooth_streams open streams), so the "
        "most a chunk waits to travel with the next: each message costs CPU in the engine replica, the ingress "
        "and the proxy, and where tokens come faster than this (a GPU) pacing halves the messages or more; "
        "0 sends every chunk at once at any load",
    )

    @field_validator("ray_resources")
    @classmethod
    def _custom_resources(cls, value: dict[str, float]) -> dict[str, float]:
        return _custom_ray_resources(value)

    @model_validator(mode="after")
    def _router_for_generation(self) -> VLLMBackendConfig:
        if self.request_router == "prefix_aware" and self.task != "generate":
            raise ValueError("request_router prefix_aware needs prompts to match: generation backends only")
        return self

    @field_validator("sovereign")
    @classmethod
    def _local_is_sovereign(cls, value: bool) -> bool:
        if not value:
            raise ValueError("a vllm backend runs inside this cluster and must be sovereign: true")
        return value


class AdapterBackendConfig(_BackendBase):
    """A LoRA adapter of a local (vllm) backend, served by that backend's engines under Ray Serve LLM's LoRA
    multiplexing: a backend like any other for routing, with its own clearance (at most its base's)."""

    kind: Literal["adapter"]
    sovereign: bool = True
    max_classification: LevelField = Level.SECRET
    base: str = Field(min_length=1, description="the vllm backend whose engines serve this adapter (its `lora` set)")
    adapter: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
        description="the adapter's folder under the base's lora.adapters_dir",
    )

    @field_validator("sovereign")
    @classmethod
    def _local_is_sovereign(cls, value: bool) -> bool:
        if not value:
            raise ValueError("an adapter runs on a local engine inside this cluster and must be sovereign: true")
        return value


OPENAI_API_BASE_URL = "https://api.openai.com/v1"  # OpenAI's own API: the default of an `openai` backend


class OpenAIBackendConfig(_BackendBase):
    """An OpenAI-compatible HTTP endpoint: OpenAI itself (non-sovereign) or a UK-hosted one (sovereign)."""

    kind: Literal["openai"]
    sovereign: bool = False
    max_classification: LevelField = Level.OFFICIAL
    base_url: str = OPENAI_API_BASE_URL
    api_key_env: str | None = "OPENAI_API_KEY"
    api_key_file: Path | None = None
    model: str = Field(min_length=1)
    embedding_model: str | None = None
    timeout_s: float = Field(60.0, gt=0)
    connect_timeout_s: float = Field(5.0, gt=0)
    accept_unscanned: list[Literal["image", "audio", "video", "file", "token_ids", "script"]] = Field(
        default_factory=list,
        description="kinds of content the classifier cannot read (images, audio, video, files, token ids, text in a "
        "script its rules have no words for) that "
        "this backend may still receive when the readable rest of the request is cleared for it. Empty by "
        "default: such content is OFFICIAL-SENSITIVE and never leaves the sovereign boundary. Allowing a kind to "
        "a non-sovereign backend is a decision for the department's information risk owner",
    )
    store_responses: bool = Field(
        False,
        description="whether Responses API requests to this endpoint may ask the provider to store the response "
        "(`store`, the API's default, true). Off: the router sends `store: false` whatever the caller asked, so "
        "nothing a caller sends stays at the provider after the answer, and such a response cannot be continued by "
        "`previous_response_id` or fetched again. Allowing provider-side storage is a decision for the "
        "department's information risk owner",
    )
    http_client: Literal["aiohttp", "httpx"] = Field(
        "aiohttp",
        description="the openai SDK's HTTP transport to this endpoint: aiohttp (the SDK's DefaultAioHttpClient, "
        "less of the router's CPU per request: benchmarks/RESULTS.md, 'Gateway overhead') or httpx (the SDK's "
        "default)",
    )

    def api_key(self) -> str | None:
        """Read the key at start from the mounted file or the environment; never from the YAML."""
        if self.api_key_file is not None:
            return self.api_key_file.read_text().strip() or None
        if self.api_key_env:
            return os.environ.get(self.api_key_env) or None
        return None


BackendConfig = Annotated[VLLMBackendConfig | OpenAIBackendConfig | AdapterBackendConfig, Field(discriminator="kind")]


class EgressReviewConfig(_Strict):
    """The semantic second opinion before an OFFICIAL request leaves for a non-sovereign backend
    (``routing/egress_review.py``). It can only raise the level; when it cannot answer, nothing leaves."""

    enabled: bool | None = Field(
        None,
        description="run the review before any request goes to a non-sovereign backend; unset means on whenever a "
        "non-sovereign backend is configured",
    )
    model: Path = Field(
        Path("var/models/minilm"),
        description="folder of the MiniLM embedding model (`sovereign models prepare minilm`) whose static token "
        "embeddings the artefact was distilled from; its tokenizer is used and its files are checked against the "
        "artefact's digests",
    )
    artefact: Path | None = Field(
        None,
        description="folder of the trained head (`sovereign models train-egress-review`); default: the one "
        "that ships in the package (routing/data/egress_review)",
    )
    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="score at or above which a request is kept local; default: the artefact's, chosen from the "
        "cross-validated precision/recall curve (README, 'Egress review')",
    )
    deadline_ms: float = Field(
        250.0,
        gt=0,
        le=10_000,
        description="longest the review may take (queueing included); past it the request does not leave",
    )


class ModelRouteConfig(_Strict):
    name: str = Field(min_length=1, max_length=128)
    route: list[str] = Field(min_length=1)
    description: str | None = None
    request_timeout_s: float | None = Field(
        None, gt=0, description="a shorter time limit than server.request_timeout_s for this model's requests"
    )


class Settings(BaseSettings):
    """The whole server configuration. Field by field, environment beats YAML beats defaults."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    server: ServerConfig = Field(default_factory=ServerConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    telemetry: TelemetryConfig = Field(default_factory=TelemetryConfig)
    backends: list[BackendConfig] = Field(min_length=1)
    models: list[ModelRouteConfig] = Field(min_length=1)
    egress_review: EgressReviewConfig = Field(default_factory=EgressReviewConfig)
    dev_mode: bool = Field(False, description="local development: a generated key under var/ is accepted")

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        names = [b.name for b in self.backends]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"backends: duplicate backend names {dupes}")
        for i, b in enumerate(self.backends):
            if not b.sovereign and b.max_classification > Level.OFFICIAL:
                raise ValueError(
                    f"backends.{i}.max_classification: non-sovereign backend {b.name!r} cannot be cleared "
                    f"above OFFICIAL (got {b.max_classification.label})"
                )
        for i, b in enumerate(self.backends):
            if isinstance(b, AdapterBackendConfig):
                base = next((c for c in self.backends if c.name == b.base), None)
                if not isinstance(base, VLLMBackendConfig) or base.lora is None or base.task != "generate":
                    raise ValueError(f"backends.{i}.base: {b.base!r} is not a generation vllm backend with lora set")
                if b.max_classification > base.max_classification:
                    raise ValueError(
                        f"backends.{i}.max_classification: adapter {b.name!r} cannot be cleared above "
                        f"its base {base.name!r} ({base.max_classification.label})"
                    )
        model_names = [m.name for m in self.models]
        dupes = sorted({n for n in model_names if model_names.count(n) > 1})
        if dupes:
            raise ValueError(f"models: duplicate model names {dupes}")
        known = set(names)
        for i, m in enumerate(self.models):
            unknown = [r for r in m.route if r not in known]
            if unknown:
                raise ValueError(f"models.{i}.route: unknown backend names {unknown} in model {m.name!r}")
            tasks = {
                b.task if isinstance(b, VLLMBackendConfig) else "generate"
                for b in map(self.backend, m.route)
                if not isinstance(b, OpenAIBackendConfig)
            }
            if len(tasks) > 1:
                raise ValueError(f"models.{i}.route: model {m.name!r} mixes embedding and generation backends")
        if self.auth.oidc is not None:
            for i, rule in enumerate(self.auth.oidc.claims.rules):
                unknown = sorted(set(rule.models or ()) - set(model_names))
                if unknown:
                    raise ValueError(f"auth.oidc.claims.rules.{i}.models: unknown model names {unknown}")
                if rule.floor is not None and rule.ceiling is not None and rule.floor > rule.ceiling:
                    raise ValueError(f"auth.oidc.claims.rules.{i}: floor is above ceiling")
        return self

    def backend(self, name: str) -> VLLMBackendConfig | OpenAIBackendConfig | AdapterBackendConfig:
        return next(b for b in self.backends if b.name == name)

    @property
    def egress_review_on(self) -> bool:
        """Whether the egress review runs: as configured, else whenever a non-sovereign backend exists."""
        if self.egress_review.enabled is not None:
            return self.egress_review.enabled
        return any(not b.sovereign for b in self.backends)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # init holds the parsed YAML; the environment overrides it.
        return env_settings, init_settings


class ConfigError(Exception):
    """Start-up configuration is invalid; the message names the offending field(s)."""


def _format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        lines.append(f"  {loc}: {msg}" if loc else f"  {msg}")
    return "invalid configuration:\n" + "\n".join(lines)


def load_settings(path: Path | str | None = None, data: dict[str, Any] | None = None) -> Settings:
    """Load and validate the configuration from a YAML file (or a dict), applying ``SOVEREIGN_*`` overrides.

    Raises ``ConfigError`` with one line per invalid field, so start-up fails naming what is wrong.
    """
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"configuration {path} must be a YAML mapping")
        data = loaded
    try:
        return Settings(**(data or {}))
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc)) from None


def dump_settings(settings: Settings) -> dict[str, Any]:
    """The settings as plain YAML-ready data (levels as labels, paths as strings)."""
    return settings.model_dump(mode="json", exclude_none=True)
