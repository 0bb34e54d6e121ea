"""Anthropic Messages: what the gateway writes itself in this dialect (error envelopes, stream error
events, model lists, `/v1/messages/count_tokens` estimates for OpenAI-type providers), where its requests
keep tool schemas, and how its usage reads.

Translation lives in `from_chat` (Anthropic from Chat) and `extproc.dialects.openai_chat.from_anthropic`
(Chat from Anthropic); a conversation that went through other providers is fitted in `history`.
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from extproc.dialects.base import ClientTool, DialectSpec, Usage
from extproc.dialects.tools import short_tool_name
from extproc.dialects.usage import dict_of, normalised, tokens
from extproc.sse import encode_json

PATH = "/v1/messages"

STATUS_TO_TYPE: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}
TYPE_TO_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}
# A fixed date: the gateway does not know when a provider published a model, and clients only need a value.
_MODELS_CREATED_AT = "2025-01-01T00:00:00Z"
# Rough cost of one image/PDF page in tokens when estimating (Anthropic bills ~1.6k for a large image).
_IMAGE_TOKENS = 1600


def error_type(status: int) -> str:
    """Anthropic error type for an HTTP status (unknown 4xx → invalid_request_error, 5xx → api_error)."""
    known = STATUS_TO_TYPE.get(status)
    if known:
        return known
    return "invalid_request_error" if status < 500 else "api_error"


def error_obj(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": error_type(status), "message": message}}


def error_body(status: int, message: str, param: str | None = None) -> bytes:
    """The error envelope for `status`. Anthropic has no `param` field: it is named in the message."""
    if param and param not in message:
        message = f"{param}: {message}"
    return orjson.dumps(error_obj(status, message))


def stream_error_event(status: int, message: str) -> bytes:
    """An ``event: error`` SSE event, what Anthropic sends when a stream fails after it started."""
    return encode_json(error_obj(status, message), "error")


def models_body(ids: list[str]) -> bytes:
    """`GET /v1/models` answer in Anthropic's paginated shape (one page holding everything)."""
    data = [
        {"type": "model", "id": i, "display_name": i, "created_at": _MODELS_CREATED_AT} for i in ids
    ]
    return orjson.dumps(
        {
            "data": data,
            "has_more": False,
            "first_id": ids[0] if ids else None,
            "last_id": ids[-1] if ids else None,
        }
    )


def count_tokens_estimate(body: dict) -> int:
    """A fast, deliberately rough token count (about 4 characters per token) of a Messages request.

    Used for `/v1/messages/count_tokens` when the provider cannot count, and as the `input_tokens` of a
    translated stream's `message_start`. Never 0 for a request with any content.
    """
    chars, extra = _content_size(body.get("system"))[0], 0
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        text, media = _content_size(message.get("content"))
        chars += 8 + text  # role and framing
        extra += media
    tools = body.get("tools")
    if tools:
        chars += len(orjson.dumps(tools))
    total = chars // 4 + extra
    return max(total, 1)


def count_tokens_body(body: dict) -> bytes:
    """The `/v1/messages/count_tokens` answer, estimated locally."""
    return orjson.dumps({"input_tokens": count_tokens_estimate(body)})


def _content_size(content: object) -> tuple[int, int]:
    """(characters, tokens of images and documents) of a message's content, tool results included."""
    if isinstance(content, str):
        return len(content), 0
    if not isinstance(content, list):
        return 0, 0
    chars = media = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            chars += _chars(block.get("text"))
        elif kind == "thinking":
            chars += _chars(block.get("thinking"))
        elif kind == "tool_use":
            chars += _chars(block.get("name")) + len(orjson.dumps(block.get("input") or {}))
        elif kind == "tool_result":
            inner_chars, inner_media = _content_size(block.get("content"))
            chars, media = chars + inner_chars, media + inner_media
        elif kind in ("image", "document"):
            media += _IMAGE_TOKENS
    return chars, media


def _chars(value: object) -> int:
    """An estimate takes any shape a client sends: what is not a string counts as nothing."""
    return len(value) if isinstance(value, str) else 0


# Hub (Chat) request fields → the Anthropic field a client wrote (for errors raised by a later leg).
_HUB_PARAMS = {"messages": "messages", "max_tokens": "max_tokens", "max_completion_tokens": "max_tokens",
               "stop": "stop_sequences", "reasoning_effort": "thinking", "user": "metadata.user_id"}


def hub_param(param: str) -> str:
    """The Anthropic field behind a Chat request field, for a 400 raised by a later translation leg."""
    head = param.split(".", 1)[0].split("[", 1)[0]
    return _HUB_PARAMS.get(head, param)


def tool_schemas(body: dict) -> Iterator[tuple[dict, str]]:
    """Where a request's tool schemas live: (holder, key) pairs, `holder[key]` being a schema."""
    for tool in body.get("tools") or ():
        if isinstance(tool, dict) and isinstance(tool.get("input_schema"), dict):
            yield tool, "input_schema"


def client_tools(body: dict) -> dict[str, ClientTool]:
    """The request's tools whose names reach the provider shortened (`short_tool_name`): their calls go
    back to the client under the name it declared."""
    tools = body.get("tools")
    names = [t.get("name") for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    return {short_tool_name(n): ClientTool(n) for n in names if isinstance(n, str) and short_tool_name(n) != n}


def usage(value: object) -> Usage:
    """Anthropic usage (`input_tokens` without the cache reads and writes) → Usage, whose `input` counts
    the cache reads; reasoning is the `output_tokens_details.thinking_tokens` the gateway writes."""
    if not isinstance(value, dict):
        return {}
    cache_read = tokens(value.get("cache_read_input_tokens"))
    return normalised(tokens(value.get("input_tokens")) + cache_read, tokens(value.get("output_tokens")), cache_read,
                      tokens(value.get("cache_creation_input_tokens")),
                      tokens(dict_of(value.get("output_tokens_details")).get("thinking_tokens")))


def usage_in(doc: dict) -> Usage:
    """The usage of a `message`, or of a stream event: `message_start` holds it in its message,
    `message_delta` (the output count) at the top."""
    holder = doc.get("message") if doc.get("type") == "message_start" else doc
    return usage(holder.get("usage")) if isinstance(holder, dict) else {}


SPEC = DialectSpec("anthropic", error_body, stream_error_event, models_body, count_tokens_body, tool_schemas, usage,
                   usage_in, hub_param, client_tools)
