"""Shapes shared by both directions: stop reasons, usage, tool arguments, reasoning fields.

Kept apart so the request/response modules and the stream modules can all use them without importing
each other.
"""

from __future__ import annotations

import re

import orjson

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


def usage_to_anthropic(usage: object) -> dict:
    """OpenAI usage → Anthropic usage; `input_tokens` excludes cached prompt tokens, as Anthropic counts."""
    usage = usage if isinstance(usage, dict) else {}
    prompt = usage.get("prompt_tokens") or 0
    details = usage.get("prompt_tokens_details") or {}
    cached = details.get("cached_tokens") or usage.get("prompt_cache_hit_tokens") or 0  # DeepSeek
    return {
        "input_tokens": max(prompt - cached, 0),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
        "output_tokens": usage.get("completion_tokens") or 0,
    }


def stop_reason(
    finish: str | None, matched: object = None, has_tools: bool = False
) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence). vLLM reports the matched stop string in `choice.stop_reason`;
    some providers (Ollama) finish tool calls with "stop", so tool calls win."""
    if has_tools and finish in (None, "stop"):
        return "tool_use", None
    if finish == "stop" and isinstance(matched, str):
        return "stop_sequence", matched
    return FINISH_TO_STOP.get(finish or "stop", "end_turn"), None


def reasoning_of(message: dict) -> str:
    value = message.get("reasoning_content") or message.get("reasoning")  # DeepSeek / OpenRouter
    return value if isinstance(value, str) else ""


def usage_to_openai(usage: object) -> dict:
    """Anthropic usage → OpenAI usage; `prompt_tokens` counts cached and cache-written tokens too."""
    usage = usage if isinstance(usage, dict) else {}
    cached = usage.get("cache_read_input_tokens") or 0
    prompt = (usage.get("input_tokens") or 0) + cached + (usage.get("cache_creation_input_tokens") or 0)
    completion = usage.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


_TAGS = re.compile(r"<[^>]*>")
_SPACES = re.compile(r"\s+")


def body_excerpt(status: int, body: bytes) -> str:
    """A message for a non-JSON error body (an HTML error page, Envoy's plain-text local reply)."""
    text = body.decode("utf-8", "replace")[:2000] if body else ""
    text = _SPACES.sub(" ", _TAGS.sub(" ", text)).strip()[:300]
    return f"upstream error (HTTP {status})" + (f": {text}" if text else "")
