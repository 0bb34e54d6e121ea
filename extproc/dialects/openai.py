"""OpenAI Chat Completions dialect: error envelopes, stream error chunks, model lists.

Stream errors: the OpenAI Python SDK raises `APIError` for any SSE ``data:`` line (without an ``event:``
name) whose JSON has an ``error`` key, so a failed stream ends with ``data: {"error": {...}}`` and no
``data: [DONE]`` (the missing [DONE] tells line-oriented clients the stream did not finish normally).
"""

from __future__ import annotations

from collections.abc import Iterator

import orjson

from extproc.sse import encode_json

# (type, code) per HTTP status; OpenAI SDKs pick the exception class from the status alone.
STATUS_TO_TYPE: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    402: ("insufficient_quota", "insufficient_quota"),
    403: ("permission_error", None),
    404: ("not_found_error", "not_found"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", "overloaded"),
    504: ("server_error", "timeout"),
}

_MODELS_CREATED = 1735689600  # 2025-01-01, fixed: the gateway cannot know a provider's model dates


def error_type(status: int) -> tuple[str, str | None]:
    known = STATUS_TO_TYPE.get(status)
    if known:
        return known
    return ("invalid_request_error", None) if status < 500 else ("server_error", None)


def error_obj(status: int, message: str, param: str | None = None, code: str | None = None) -> dict:
    kind, default_code = error_type(status)
    return {"error": {"message": message, "type": kind, "param": param, "code": code or default_code}}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """The error envelope for `status`, with `param` naming the offending field when known."""
    return orjson.dumps(error_obj(status, message, param, code))


def stream_error_chunk(status: int, message: str, code: str | None = None) -> bytes:
    """A ``data: {"error": …}`` SSE chunk: what the OpenAI SDK surfaces as `APIError` mid-stream."""
    return encode_json(error_obj(status, message, None, code))


def models_body(ids: list[str], owned_by: str = "lunaroute") -> bytes:
    """`GET /v1/models` answer in OpenAI's list shape."""
    data = [{"id": i, "object": "model", "created": _MODELS_CREATED, "owned_by": owned_by} for i in ids]
    return orjson.dumps({"object": "list", "data": data})


def tool_schemas(body: dict) -> Iterator[tuple[dict, str]]:
    """Where a request's tool schemas live: (holder, key) pairs, `holder[key]` being a schema."""
    for tool in body.get("tools") or ():
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("parameters"), dict):
            yield function, "parameters"
