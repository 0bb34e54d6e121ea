"""Shapes shared by both directions: stop reasons, usage, tool arguments, reasoning fields.

Kept apart so the request/response modules and the stream modules can all use them without importing
each other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import orjson

from extproc.dialects.base import ClientTool, TranslationError

FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
STOP_TO_FINISH = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}


# Cache-written prompt tokens in OpenAI-shaped usage (`prompt_tokens_details` / `input_tokens_details`).
CACHE_WRITE_TOKENS = "cache_write_tokens"

# What a body of the wrong shape (a number where a list belongs…) raises inside a translator.
MALFORMED = (TypeError, AttributeError, KeyError, ValueError)


def parse_arguments(raw: object) -> dict:
    """Tool-call arguments (a JSON string from the provider) → Anthropic `input` object."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"raw_arguments": raw}
    return value if isinstance(value, dict) else {"raw_arguments": raw}


# The forced tool that carries an OpenAI client's `response_format` JSON answer from an Anthropic-type
# provider (no client tool sits beside it): its input is the answer, sent back as the message's text.
RESPONSE_TOOL = "json_response"
TOOL_NAME_MAX = 64  # OpenAI's limit on function names (Chat and Responses), and Anthropic's


def short_tool_name(name: str) -> str:
    """A function name a provider accepts: at most 64 characters, a hash of the whole name standing in
    for the tail of a longer one (Claude Code's MCP tools, `mcp__<server>__<tool>`, exceed it). The same
    name always shortens the same way, so declarations, history and tool_choice agree without state; the
    client's own name comes back through the request's `ClientTools`."""
    if len(name) <= TOOL_NAME_MAX:
        return name
    return name[:TOOL_NAME_MAX - 7] + "_" + hashlib.sha256(name.encode()).hexdigest()[:6]


def client_name(name: str, client_tools: Mapping[str, ClientTool] | None) -> str:
    """The name the client declared for a function the provider called (see `short_tool_name`)."""
    tool = (client_tools or {}).get(name)
    return tool.name if tool is not None else name


class ToolCallSlots:
    """Which tool call a streamed Chat Completions delta belongs to. Peers key parallel calls by `index`;
    some providers send every call with `index: 0` and tell them apart only by `id`. A new id at an index
    already in use starts a new call, and later id-less deltas at that index continue the newest one.
    Keys count calls in the order they appeared, so sorting by key keeps the provider's order."""

    def __init__(self) -> None:
        self._current: dict[int, int] = {}  # provider index → key of the newest call there
        self._ids: dict[int, str] = {}  # key → the call's id, once known
        self._next = 0

    def key(self, index: int, call_id: object) -> int:
        key = self._current.get(index)
        named = isinstance(call_id, str) and bool(call_id)
        if key is None or (named and key in self._ids and self._ids[key] != call_id):
            key = self._current[index] = self._next
            self._next += 1
        if named and key not in self._ids:
            self._ids[key] = call_id  # type: ignore[assignment]
        return key


def _count(value: object) -> int:
    """A token count from a provider: a non-negative int, anything else (null, "12", a dict) counts 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _dict(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def usage_to_anthropic(usage: object) -> dict:
    """OpenAI usage → Anthropic usage; `input_tokens` excludes cached prompt tokens, as Anthropic counts.

    Cache writes, which providers relaying Claude report as `prompt_tokens_details.cache_write_tokens`,
    become `cache_creation_input_tokens` (and leave `input_tokens` too).

    Reasoning tokens (`completion_tokens_details.reasoning_tokens`, part of `completion_tokens`) are kept
    as ``output_tokens_details: {"thinking_tokens": N}``, where Anthropic reports its own.
    """
    usage = _dict(usage)
    prompt = _count(usage.get("prompt_tokens"))
    details = _dict(usage.get("prompt_tokens_details"))
    cached = _count(details.get("cached_tokens")) or _count(
        usage.get("prompt_cache_hit_tokens")  # DeepSeek
    )
    written = _count(details.get(CACHE_WRITE_TOKENS))
    out = {
        "input_tokens": max(prompt - cached - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": _count(usage.get("completion_tokens")),
    }
    reasoning = _count(_dict(usage.get("completion_tokens_details")).get("reasoning_tokens"))
    if reasoning:
        out["output_tokens_details"] = {"thinking_tokens": reasoning}
    return out


def stop_reason(
    finish: str | None, matched: object = None, has_tools: bool = False
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence). vLLM reports the matched stop string in `choice.stop_reason`;
    some providers (Ollama) finish tool calls with "stop", so tool calls win."""
    finish = finish if isinstance(finish, str) else None
    if has_tools and finish in (None, "stop"):
        return "tool_use", None
    if finish == "stop" and isinstance(matched, str):
        return "stop_sequence", matched
    return FINISH_TO_STOP.get(finish or "stop", "end_turn"), None


def reasoning_of(message: dict) -> str:
    value = message.get("reasoning_content") or message.get("reasoning")  # DeepSeek / OpenRouter
    return value if isinstance(value, str) else ""


def usage_to_openai(usage: object) -> dict:
    """Anthropic usage → OpenAI usage; `prompt_tokens` counts cached and cache-written tokens too.

    OpenAI has no field for cache writes (they cost more than plain input at Anthropic): when there are
    any they go in ``prompt_tokens_details.cache_write_tokens``, an extra field OpenAI SDKs keep.

    ``output_tokens_details.thinking_tokens`` (Anthropic's name; when present) →
    ``completion_tokens_details.reasoning_tokens``.
    """
    usage = _dict(usage)
    cached = _count(usage.get("cache_read_input_tokens"))
    written = _count(usage.get("cache_creation_input_tokens"))
    prompt = _count(usage.get("input_tokens")) + cached + written
    completion = _count(usage.get("output_tokens"))
    out: dict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    if written:
        out["prompt_tokens_details"][CACHE_WRITE_TOKENS] = written
    reasoning = _count(_dict(usage.get("output_tokens_details")).get("thinking_tokens"))
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


def complete_object(text: str) -> bool:
    """Tool-call arguments that are a whole JSON object (or nothing at all, which means ``{}``)."""
    if not text.strip():
        return True
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


# ------------------------------------------------------------------------------- request field checks
# Cheap type checks on top-level request fields: a wrongly typed field is the client's 400 naming the
# field, never iterated character by character or forwarded for the provider to choke on.


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_list(body: dict, key: str) -> list:
    """`body[key]` as a list ([] when absent or null); anything else is a 400 naming `key`."""
    value = body.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise TranslationError(f"{key} must be an array, not {_kind(value)}", key)
    return value


def check_positive_int(body: dict, key: str) -> int | None:
    value = body.get(key)
    if value is not None and not (is_int(value) and value > 0):
        raise TranslationError(f"{key} must be a positive integer, not {_short(value)}", key)
    return value


def check_number(body: dict, key: str) -> float | int | None:
    value = body.get(key)
    if value is not None and not is_number(value):
        raise TranslationError(f"{key} must be a number, not {_kind(value)}", key)
    return value


def check_strings(value: object, key: str) -> list[str]:
    """A list of strings (a bare string is an error: it would be split into characters)."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TranslationError(f"{key} must be an array of strings", key)
    return value


@contextmanager
def malformed_as(param: str) -> Iterator[None]:
    """Inside: a wrongly shaped value (a number where an object belongs…) is a 400 naming `param`."""
    try:
        yield
    except MALFORMED as exc:
        raise TranslationError(f"{param} is malformed: {exc}", param) from exc


def not_understood(detail: str) -> TranslationError:
    """A provider response of a shape the translator cannot read: a 502 in the client's dialect."""
    return TranslationError(f"the provider's response was not understood ({detail[:200]})", status=502)


def first_choice(body: object) -> tuple[dict, dict]:
    """The first choice of a Chat Completions `chat.completion`, and its message (every translator from
    the hub reads these); a body of the wrong shape raises `not_understood`."""
    if not isinstance(body, dict):
        raise not_understood("not a JSON object")
    choices = body.get("choices")
    if not isinstance(choices, list) or not all(isinstance(c, dict) for c in choices):
        raise not_understood("choices is not an array of objects")
    choice = choices[0] if choices else {}
    message = choice.get("message")
    if message is None:
        message = {}
    if not isinstance(message, dict):
        raise not_understood("choices[0].message is not an object")
    return choice, message


def message_text(message: dict) -> str | None:
    """A Chat message's text content (a string, or the text of its parts); None when it has none."""
    text = message.get("content")
    if isinstance(text, list):
        text = "".join(p.get("text") or "" for p in text if isinstance(p, dict))
    if text is not None and not isinstance(text, str):
        raise not_understood("message.content is not text")
    return text


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else _kind(value)


def _kind(value: object) -> str:
    return {str: "a string", dict: "an object", list: "an array", bool: "a boolean"}.get(
        type(value), "a number" if is_number(value) else type(value).__name__
    )


_TAGS = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")


def body_excerpt(status: int, body: bytes) -> str:
    """A message for a non-JSON error body (an HTML error page, Envoy's plain-text local reply)."""
    text = body.decode("utf-8", "replace")[:2000] if body else ""
    text = _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()[:300]
    return f"upstream error (HTTP {status})" + (f": {text}" if text else "")


# JSON Schema keywords whose value is a map of names to subschemas, a subschema, or a list of them.
_SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SCHEMA_ONE = ("items", "additionalProperties", "additionalItems", "unevaluatedProperties", "unevaluatedItems",
               "not", "if", "then", "else", "contains", "propertyNames")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems", "items")


def clean_schema(schema: object, drop: frozenset[str]) -> object:
    """A copy of a JSON Schema without the keywords in `drop`, at every level. Property names are never
    touched: a property called `const` survives dropping the `const` keyword."""
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key in drop:
            continue
        if key in _SCHEMA_MAPS and isinstance(value, dict):
            value = {name: clean_schema(sub, drop) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS and isinstance(value, list):
            value = [clean_schema(sub, drop) for sub in value]
        elif key in _SCHEMA_ONE:
            value = clean_schema(value, drop)
        out[key] = value
    return out
