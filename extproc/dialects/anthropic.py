"""Anthropic Messages dialect: error envelopes, stream error events, model lists, token estimates.

These are the bodies the gateway writes *itself* in Anthropic's shape (its own errors, `/v1/models`,
`/v1/messages/count_tokens` for OpenAI-type providers). Translation between dialects lives in the
`*_to_*` modules.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Iterator
from typing import Any

import orjson

from extproc.sse import encode_json

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

# Anthropic's pattern for tool_use ids (and so for the tool_result blocks that answer them).
TOOL_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")
# The cheap byte check before `fit_history` walks a body; envoy/fast.lua counts the same strings. JSON
# writers put `":"` (compact) or `": "` (Python's json, pretty printers) between a key and its value.
_THINKING_TEXT = re.compile(rb'"thinking": ?"')
_SIGNATURE = re.compile(rb'"signature": ?"')
_EMPTY_SIGNATURE = re.compile(rb'"signature": ?""')
_TOOL_RESULT_ID = re.compile(rb'"tool_use_id": ?"')
_TOOLU_RESULT_ID = re.compile(rb'"tool_use_id": ?"toolu_')
# An assistant message left without content after its unsigned thinking is dropped (Anthropic rejects
# empty content; dropping the message would break the user/assistant alternation).
EMPTY_ASSISTANT = "(no text)"

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
    chars = _content_chars(body.get("system"))
    extra = 0
    for message in body.get("messages") or ():
        if not isinstance(message, dict):
            continue
        chars += 8  # role and framing
        content = message.get("content")
        chars += _content_chars(content)
        extra += _media_tokens(content)
    tools = body.get("tools")
    if tools:
        chars += len(orjson.dumps(tools))
    total = chars // 4 + extra
    return max(total, 1)


def count_tokens_body(body: dict) -> bytes:
    """The `/v1/messages/count_tokens` answer, estimated locally."""
    return orjson.dumps({"input_tokens": count_tokens_estimate(body)})


def _content_chars(content: object) -> int:
    if isinstance(content, str):
        return len(content)
    if not isinstance(content, list):
        return 0
    n = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind == "text":
            n += _chars(block.get("text"))
        elif kind == "thinking":
            n += _chars(block.get("thinking"))
        elif kind == "tool_use":
            n += _chars(block.get("name")) + len(orjson.dumps(block.get("input") or {}))
        elif kind == "tool_result":
            n += _content_chars(block.get("content"))
    return n


def _chars(value: object) -> int:
    """An estimate takes any shape a client sends: what is not a string counts as nothing."""
    return len(value) if isinstance(value, str) else 0


def _media_tokens(content: object) -> int:
    if not isinstance(content, list):
        return 0
    n = 0
    for block in content:
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("image", "document"):
            n += _IMAGE_TOKENS
        elif kind == "tool_result":
            n += _media_tokens(block.get("content"))
    return n


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


def fitted_tool_id(tool_id: str) -> str:
    """A tool id Anthropic accepts for one that breaks its pattern (another provider's `functions.Bash:0`):
    derived from the id alone, so a tool_use and its tool_result, and every later turn that resends
    them, get the same one (the provider's prompt cache sees the same history)."""
    return "toolu_" + hashlib.sha256(tool_id.encode()).hexdigest()[:24]


def generated_tool_id(response_id: str | None, n: int) -> str:
    """An id for the `n`th tool call of a response whose provider sent none. Unique per response (from
    the provider's response id, else random), never `toolu_0` again on the next turn: Anthropic rejects
    a history whose tool ids repeat."""
    return fitted_tool_id(f"{response_id}#{n}" if response_id else uuid.uuid4().hex)


def may_need_fit(raw: bytes) -> bool:
    """Whether a raw Anthropic body may hold what `fit_history` changes: a thinking text without as many
    signatures, an empty signature, or a tool_result answering an id that is not Anthropic's own
    (`toolu_…`; every tool_use is answered in the same request). False means the bytes are fine as they
    are, so nearly every request is spared the walk, and the fast path its trip to Python."""
    return (len(_TOOL_RESULT_ID.findall(raw)) > len(_TOOLU_RESULT_ID.findall(raw))
            or _EMPTY_SIGNATURE.search(raw) is not None
            or len(_THINKING_TEXT.findall(raw)) > len(_SIGNATURE.findall(raw)))


def fit_history(body: dict) -> bool:
    """Make a conversation that went through other providers acceptable to an Anthropic-type provider,
    in place; True when anything changed (False: the client's bytes can go as they are).

    After turns served by a reasoning provider, the history holds `thinking` blocks without a signature
    (Anthropic signatures are never invented), which Anthropic rejects (`thinking.signature: Field
    required`): they are dropped. Tool ids that do not fit Anthropic's pattern are mapped with
    `fitted_tool_id`, in tool_use and tool_result blocks alike."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    changed = False
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if not isinstance(content, list):
            continue
        kept: list[Any] = []
        for block in content:
            if isinstance(block, dict):
                kind = block.get("type")
                if kind == "thinking" and not block.get("signature"):
                    continue
                key = "id" if kind == "tool_use" else "tool_use_id" if kind == "tool_result" else None
                value = block.get(key) if key else None
                if key and isinstance(value, str) and not TOOL_ID_RE.fullmatch(value):
                    block = {**block, key: fitted_tool_id(value)}
            kept.append(block)
        if len(kept) != len(content) or any(a is not b for a, b in zip(kept, content, strict=True)):
            message["content"] = kept or [{"type": "text", "text": EMPTY_ASSISTANT}]
            changed = True
    return changed
