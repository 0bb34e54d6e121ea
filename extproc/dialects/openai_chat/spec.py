"""OpenAI Chat Completions, the hub dialect: what the gateway writes itself in it (error envelopes, stream
error chunks, model lists), where its requests keep tool schemas, and how its usage reads.

Every other dialect translates to and from this one (see `extproc.dialects`); the Responses API shares
its error envelope.

Stream errors: the OpenAI Python SDK raises `APIError` for any SSE ``data:`` line (without an ``event:``
name) whose JSON has an ``error`` key, so a failed stream ends with ``data: {"error": {...}}`` and no
``data: [DONE]`` (the missing [DONE] tells line-oriented clients the stream did not finish normally).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator

import orjson

from extproc.dialects.base import DialectSpec, Usage
from extproc.dialects.body_checks import body_excerpt
from extproc.dialects.usage import dict_of, normalised, tokens
from extproc.sse import encode_json

PATH = "/v1/chat/completions"
USER_MAX = 64  # OpenAI's limit on `user`
# Cache-written prompt tokens in OpenAI-shaped usage (`prompt_tokens_details` / `input_tokens_details`): OpenAI
# has no field for them, providers relaying Claude report them so, and the gateway writes them so.
CACHE_WRITE_TOKENS = "cache_write_tokens"

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


def user_field(user: str) -> str:
    """A client's user id as OpenAI's `user` (at most 64 characters: a longer one becomes its SHA-256 hex,
    stable and 64 characters long)."""
    return user if len(user) <= USER_MAX else hashlib.sha256(user.encode()).hexdigest()


def keep_prompt_cache_key(body: dict, out: dict) -> None:
    """`prompt_cache_key` means the same in both OpenAI APIs: the client's own key goes on."""
    key = body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        out["prompt_cache_key"] = key


def usage(value: object) -> Usage:
    """Chat usage (`prompt_tokens` counts cached and cache-written tokens too) → Usage."""
    if not isinstance(value, dict):
        return {}
    details_in = dict_of(value.get("prompt_tokens_details"))
    details_out = dict_of(value.get("completion_tokens_details"))
    return normalised(tokens(value.get("prompt_tokens")), tokens(value.get("completion_tokens")),
                      tokens(details_in.get("cached_tokens")), tokens(details_in.get(CACHE_WRITE_TOKENS)),
                      tokens(details_out.get("reasoning_tokens")))


def usage_in(doc: dict) -> Usage:
    """The usage of a `chat.completion` or of a stream chunk (the last one, or every one for some providers)."""
    return usage(doc.get("usage"))


def same_param(param: str) -> str:
    return param


def relay_error(status: int, body: bytes, param_of: Callable[[str], str] = same_param) -> tuple[int, bytes]:
    """Any OpenAI-style provider error (Chat or Responses, JSON or not) → the envelope both OpenAI APIs
    share, keeping the provider's message, type and code; `param_of` renames the field for the client."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]:
        kind, code = error_type(status)
        out = {"message": err["message"], "type": err.get("type") if isinstance(err.get("type"), str) else kind,
               "param": param_of(err["param"]) if isinstance(err.get("param"), str) else None,
               "code": err.get("code") if isinstance(err.get("code"), str) else code}
        return status, orjson.dumps({"error": out})
    if isinstance(err, str) and err:
        return status, error_body(status, err)
    return status, error_body(status, body_excerpt(status, body))


SPEC = DialectSpec("openai", error_body, stream_error_chunk, models_body, None, tool_schemas, usage, usage_in)
