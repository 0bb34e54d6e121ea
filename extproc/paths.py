"""Which requests the gateway thinks about, and which go straight through.

The same table drives two things: the Envoy route table (intercepted routes run the ext_proc
filter, everything else goes to the bypass provider with the filter disabled, so bypassed traffic
costs no Python work), and `classify()`. Behind the gateway's own Envoy, `classify()` sees only the
intercepted prefixes; in a mesh, whose route table is not ours, it also sees every other path
(`Kind.BYPASS`), which the headers phase lets through untouched, skipping the bodies.
"""

from __future__ import annotations

from enum import Enum

from .dialects.base import Dialect


class Kind(Enum):
    MESSAGES = "messages"  # POST /v1/messages (Anthropic)
    COUNT_TOKENS = "count_tokens"  # POST /v1/messages/count_tokens (Anthropic)
    MESSAGES_OTHER = "messages_other"  # /v1/messages/batches… (Anthropic-only APIs)
    CHAT = "chat"  # POST /v1/chat/completions (OpenAI)
    CHAT_OTHER = "chat_other"  # /v1/chat/completions/{id}… (OpenAI's stored completions)
    RESPONSES = "responses"  # POST /v1/responses (OpenAI Responses)
    INPUT_TOKENS = "input_tokens"  # POST /v1/responses/input_tokens (OpenAI Responses)
    RESPONSES_OTHER = "responses_other"  # /v1/responses/{id}… (stored responses: Responses providers only)
    MODELS = "models"  # GET /v1/models[/{id}] (either dialect)
    HEALTHZ = "healthz"
    READYZ = "readyz"
    METRICS = "metrics"
    ROOT = "root"  # GET|HEAD /: Claude Code's start-up probe
    BYPASS = "bypass"


# Envoy's route table is rendered from these two tuples (see envoy_config).
INTERCEPTED_EXACT: tuple[str, ...] = ("/readyz", "/metrics")
INTERCEPTED_PREFIXES: tuple[str, ...] = ("/v1/messages", "/v1/chat/completions", "/v1/models", "/v1/responses")

_EXACT = {
    "/v1/messages": Kind.MESSAGES,
    "/v1/messages/count_tokens": Kind.COUNT_TOKENS,
    "/v1/chat/completions": Kind.CHAT,
    "/v1/responses": Kind.RESPONSES,
    "/v1/responses/input_tokens": Kind.INPUT_TOKENS,
    "/v1/models": Kind.MODELS,
    "/healthz": Kind.HEALTHZ,
    "/readyz": Kind.READYZ,
    "/metrics": Kind.METRICS,
}

# Only these kinds carry a request body the gateway must read.
BODY_KINDS = frozenset({Kind.MESSAGES, Kind.COUNT_TOKENS, Kind.CHAT, Kind.RESPONSES, Kind.INPUT_TOKENS})
# Token counting: estimated locally when the provider does not speak the client's dialect.
COUNT_KINDS = frozenset({Kind.COUNT_TOKENS, Kind.INPUT_TOKENS})
# APIs only a provider of the client's own dialect has (batches, stored responses): forwarded as they are.
NATIVE_KINDS = frozenset({Kind.MESSAGES_OTHER, Kind.RESPONSES_OTHER})


def split_path(raw: str) -> tuple[str, str]:
    """`/v1/messages?beta=true` → (`/v1/messages`, `?beta=true`)."""
    path, sep, query = raw.partition("?")
    if len(path) > 1 and path.endswith("/"):
        path = path.rstrip("/") or "/"
    return path, sep + query


def classify(method: str, path: str) -> Kind:
    """`path` without the query string (and without a trailing slash: see `split_path`)."""
    kind = _EXACT.get(path)
    if kind is not None:
        return kind
    if path == "/" and method in ("GET", "HEAD"):
        return Kind.ROOT
    if path.startswith("/v1/messages/"):
        return Kind.MESSAGES_OTHER
    if path.startswith("/v1/chat/completions/"):
        return Kind.CHAT_OTHER
    if path.startswith("/v1/models/"):
        return Kind.MODELS
    if path.startswith("/v1/responses/"):
        return Kind.RESPONSES_OTHER
    return Kind.BYPASS


def client_dialect(kind: Kind, headers: dict[str, str]) -> Dialect:
    """The dialect the client speaks: by path, and for /v1/models by the headers it sent."""
    if kind is Kind.CHAT or kind is Kind.CHAT_OTHER:
        return "openai"
    if kind in (Kind.RESPONSES, Kind.INPUT_TOKENS, Kind.RESPONSES_OTHER):
        return "openai-responses"
    if kind is Kind.MODELS:
        anthropic = "anthropic-version" in headers or "x-api-key" in headers
        return "anthropic" if anthropic else "openai"
    return "anthropic"
