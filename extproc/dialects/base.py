"""The vocabulary every dialect shares: the `Dialect` names, the provider `Target`, `Usage`, and the
small interfaces a dialect (`DialectSpec`) and a dialect pair (`Translator`) implement.

A `Translator` converts between the dialect the *client* speaks and the dialect the *provider*
speaks. It is pure: dicts and bytes in, dicts and bytes out, no I/O, so golden fixtures and
property tests drive it directly. The gRPC servicer never looks inside a body itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal, NamedTuple, Protocol

from extproc.errors import ClientError

# The API dialects, written once: config (`providers.*.type`), markers and paths import this.
Dialect = Literal["anthropic", "openai", "openai-responses"]


class TranslationError(ClientError):
    """The request cannot be translated faithfully; becomes a 400 in the client's dialect.

    `param` names the offending field (e.g. ``"n"``, ``"response_format.type"``).
    """


@dataclass(frozen=True, slots=True)
class Target:
    """What a translator needs to know about the provider it writes for.

    No model: the request phase decides the model (marker, rule, provider override) and sets it in the
    body before translating; translators keep the body's `model`, so every attempt sends that one."""

    name: str
    dialect: Dialect
    max_tokens_field: str = "max_tokens"  # OpenAI-type: max_tokens | max_completion_tokens
    max_tokens: int | None = None  # clamp the output cap to this
    # Per-model caps: (glob pattern, cap) pairs tried in order against the outgoing model, first match
    # wins; a model matching none falls back to `max_tokens`.
    max_tokens_by_model: tuple[tuple[str, int], ...] = ()
    # Anthropic-type providers require max_tokens; used when an OpenAI client sends none.
    default_max_tokens: int = 4096
    # How a provider's `reasoning_content` reaches an Anthropic client: "thinking" blocks without a
    # signature (Anthropic signatures are never invented; a client that re-sends them to real Anthropic
    # will be rejected, which Claude Code recovers from by stripping thinking), "text" blocks, or "drop".
    reasoning: Literal["thinking", "text", "drop"] = "thinking"
    # Send `reasoning_effort` derived from Anthropic `thinking`; off for models that reject the field.
    reasoning_effort: bool = True
    # Prompt caching of translated requests (see `caching`): Anthropic-type providers get automatic
    # `cache_control` breakpoints ("auto") or none ("off"); OpenAI-type ones a `prompt_cache_key` (or none).
    prompt_caching: Literal["auto", "off"] = "auto"
    prompt_cache_key: bool = True

    def max_tokens_for(self, model: object) -> int | None:
        """The output cap for `model` (the model name sent to the provider), or None for no cap."""
        if isinstance(model, str):
            for pattern, cap in self.max_tokens_by_model:
                if fnmatchcase(model, pattern):
                    return cap
        return self.max_tokens

    def output_cap(self, model: object, wanted: int) -> int:
        """The output tokens to ask `model` for when the client wants `wanted`: clamped to the cap."""
        cap = self.max_tokens_for(model)
        return min(wanted, cap) if cap else wanted


class ClientTool(NamedTuple):
    """A tool the client declared, as the provider knows it: a plain function whose calls must go back
    to the client as this tool (a Responses custom tool, or a function inside a tool namespace)."""

    name: str  # the tool's name as the client declared it
    namespace: str | None = None
    custom: bool = False  # a custom (freeform) tool: one string input, wrapped as {"input": "…"}


ClientTools = Mapping[str, ClientTool]  # the function name the provider sees → the client's tool


Usage = dict[str, int]
"""Token usage as the gateway counts it, whatever the dialect: `input` and `output` (both present whenever
the provider reported usage at all), and `cache_read`, `cache_write`, `reasoning` only when above 0; empty:
no usage known. `input` counts the cache reads; it counts the cache writes as the dialect does (Chat's and
Responses' `input` include them, Anthropic's does not), each dialect's `spec.usage` says how."""


class Translated(NamedTuple):
    """A translated JSON response and the usage it reports (normalised from the client's dialect)."""

    body: dict
    usage: Usage


class ResponseStream(Protocol):
    """Translates one SSE response stream, chunk by chunk; chunks may split events anywhere."""

    @property
    def usage(self) -> Usage:
        """The usage known so far (final once `done`); empty while none is known."""
        ...

    @property
    def done(self) -> bool:
        """The client's stream has ended (its final event or an error event went out)."""
        ...

    def feed(self, chunk: bytes) -> bytes:
        """Bytes from the provider in, bytes for the client out (possibly empty)."""
        ...

    def close(self) -> bytes:
        """End of the provider's stream: flush, and finish the client's stream properly."""
        ...


class Translator(Protocol):
    @property
    def client(self) -> Dialect:
        """The dialect the client speaks."""
        ...

    @property
    def provider(self) -> Dialect:
        """The dialect the provider speaks."""
        ...

    def request_path(self, client_path: str) -> str:
        """The provider's API path for the client's path (without query, without base prefix)."""
        ...

    def request_body(self, body: dict, target: Target) -> dict:
        """Client request body → provider request body. Raises TranslationError."""
        ...

    def response_body(self, body: dict, target: Target | None = None,
                      client_tools: ClientTools | None = None) -> Translated:
        """Provider JSON response → client JSON response (non-streaming success), and its usage.

        `target` (optional) carries per-provider output options such as `Target.reasoning`;
        `client_tools` maps the functions the provider saw back to the tools the client declared (a
        Responses client's custom and namespaced tools).
        """
        ...

    def stream(
        self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
        client_tools: ClientTools | None = None,
    ) -> ResponseStream:
        """A fresh stream translator for one SSE response.

        `input_tokens_estimate`: used for Anthropic clients' `message_start.usage.input_tokens` when the
        provider reports usage only at the end (never send 0 there). `include_usage`: OpenAI clients get
        the final usage chunk only when they asked for it (`stream_options.include_usage`).
        `client_tools`: as for `response_body`.
        """
        ...

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        """Provider error response (any status >= 400, any body) → client dialect (status, body)."""
        ...


def _same(param: str) -> str:
    return param


@dataclass(frozen=True, slots=True)
class DialectSpec:
    """What the gateway needs to know to speak one dialect: the bodies it writes itself in it, where its
    requests keep tool schemas, and where its responses report usage. Each dialect package's `spec`
    module holds one; the registry (`extproc.dialects`) adds the translators."""

    name: Dialect
    error_body: Callable[..., bytes]  # (status, message, param=None) → the dialect's error envelope
    stream_error: Callable[[int, str], bytes]  # a mid-stream error event
    models_body: Callable[[list[str]], bytes]  # a `/v1/models` answer
    count_body: Callable[[dict], bytes] | None  # the token-count answer, estimated locally (None: no such API)
    tool_schemas: Callable[[dict], Iterator[tuple[dict, str]]]  # where a request's tool schemas live
    usage: Callable[[object], Usage]  # the dialect's `usage` object → Usage
    usage_in: Callable[[dict], Usage]  # the usage a response body or stream event of the dialect carries
    hub_param: Callable[[str], str] = _same  # a hub request field → the field this dialect's client wrote
    # the client's tools the provider knows by another name or shape, to map their calls back (None: none)
    client_tools: Callable[[dict], ClientTools] | None = None
