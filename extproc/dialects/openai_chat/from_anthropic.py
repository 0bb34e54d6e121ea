"""Chat Completions from Anthropic Messages: the request of an Anthropic client for a Chat provider (Claude
Code → GPT, DeepSeek…), and the response and errors of an Anthropic provider for a Chat client.

Request: built field by field from a whitelist, so Anthropic-only fields (`cache_control`,
`context_management`, `output_config`, betas…) never reach the provider. The Anthropic provider's stream
is `from_anthropic_stream`; the other direction is `extproc.dialects.anthropic.from_chat`.

Choices made here (each a place where the two APIs differ):
- text-only user/system content becomes one string (blocks joined with a blank line): several
  OpenAI-compatible servers reject content-part arrays; images switch to the parts form.
- `tool_result` → `role: "tool"` messages right after the assistant turn; images inside a tool result
  (OpenAI tool messages are text only) move to a user message after the tool messages; `is_error`
  results get an ``Error: `` prefix because OpenAI has no error flag.
- `metadata.user_id` longer than OpenAI's 64 characters is replaced by its SHA-256 hex (stable, 64 chars).
- `thinking` enabled → `reasoning_effort` by budget (<4k low, <16k medium, else high); `adaptive` takes
  `output_config.effort` when given, otherwise leaves the provider's default; `disabled` sends nothing.
- a response's `tool_use` of the forced `RESPONSE_TOOL` (a Chat client's `response_format` answered by
  an Anthropic provider) is the message's JSON text again.
- errors: Anthropic 529 `overloaded_error` → OpenAI 503 (a status every OpenAI client knows as retryable);
  Anthropic's "prompt is too long: N tokens > M maximum" → OpenAI `context_length_exceeded`.
"""

from __future__ import annotations

import re
import time
from typing import Any

import orjson

from extproc.dialects.base import ClientTools, Target, TranslationError
from extproc.dialects.body_checks import (
    body_excerpt,
    check_list,
    check_number,
    check_positive_int,
    check_strings,
    malformed_as,
    not_understood,
)
from extproc.dialects.openai_chat.spec import CACHE_WRITE_TOKENS, error_body, user_field
from extproc.dialects.tools import RESPONSE_TOOL, short_tool_name
from extproc.dialects.usage import dict_of, tokens

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"

_EFFORT: dict[object, str] = {"low": "low", "medium": "medium", "high": "high", "max": "high", "minimal": "low"}
_TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+) maximum")
STOP_TO_FINISH = {
    "end_turn": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "stop_sequence": "stop",
    "refusal": "content_filter",
    "pause_turn": "stop",
    "model_context_window_exceeded": "length",
}


# ----------------------------------------------------------------------------------------------- request


def request(body: dict, target: Target) -> dict:
    """Anthropic `/v1/messages` body → OpenAI `/v1/chat/completions` body."""
    out: dict = {"model": body.get("model")}
    messages: list[dict] = []
    system = _system_text(_check_system(body.get("system")), drop_billing=True)
    if system:
        messages.append({"role": "system", "content": system})
    for i, message in enumerate(check_list(body, "messages")):
        if not isinstance(message, dict):
            raise TranslationError("each message must be an object", f"messages[{i}]")
        with malformed_as(f"messages[{i}]"):
            _message(message, i, messages)
    out["messages"] = messages

    max_tokens = check_positive_int(body, "max_tokens")
    if max_tokens is not None:
        out[target.max_tokens_field] = target.output_cap(out["model"], max_tokens)
    for key in ("temperature", "top_p"):
        if check_number(body, key) is not None:
            out[key] = body[key]
    stop = body.get("stop_sequences")
    if stop is not None and check_strings(stop, "stop_sequences"):
        out["stop"] = list(stop)
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise TranslationError("metadata must be an object", "metadata")
    user = (metadata or {}).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user_field(user)
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    tools = check_list(body, "tools")
    if tools:
        with malformed_as("tools"):
            out["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    with malformed_as("tool_choice"):
        _tool_choice(body.get("tool_choice"), out)
    if "tools" not in out:  # OpenAI rejects tool_choice (and parallel_tool_calls) without tools
        out.pop("tool_choice", None)
    if target.reasoning_effort:
        with malformed_as("thinking"):
            effort = _reasoning_effort(body.get("thinking"), body.get("output_config"))
        if effort:
            out["reasoning_effort"] = effort
    if body.get("mcp_servers"):
        raise TranslationError("MCP servers are only available on Anthropic providers", "mcp_servers")
    return out


def _check_system(system: object) -> object:
    """`system` is a string or an array of text blocks."""
    if system is None or isinstance(system, str):
        return system
    if not isinstance(system, list):
        raise TranslationError("system must be a string or an array of text blocks", "system")
    for n, block in enumerate(system):
        if not isinstance(block, dict) or not isinstance(block.get("text"), str):
            raise TranslationError("system blocks must be text blocks", f"system[{n}]")
    return system


def _system_text(system: object, drop_billing: bool = False) -> str:
    """System prompt (string or text blocks) as one string, minus Claude Code's per-request billing block."""
    if isinstance(system, str):
        return system
    if not isinstance(system, list):
        return ""
    parts = []
    for n, block in enumerate(system):
        text = block.get("text") if isinstance(block, dict) else None
        if not isinstance(text, str):
            continue
        if drop_billing and n == 0 and text.startswith(BILLING_HEADER_PREFIX):
            continue
        parts.append(text)
    return "\n\n".join(parts)


def _message(message: dict, i: int, out: list[dict]) -> None:
    role = message.get("role")
    content = message.get("content")
    if role == "system":  # Claude Code's mid-conversation system entries keep their position
        out.append({"role": "system", "content": _system_text(content)})
    elif role == "assistant":
        out.append(_assistant(content, i))
    elif role == "user":
        _user(content, i, out)
    else:
        raise TranslationError(f"unsupported message role {role!r}", f"messages[{i}].role")


def _assistant(content: object, i: int) -> dict:
    msg: dict = {"role": "assistant"}
    if isinstance(content, str):
        msg["content"] = content
        return msg
    if not isinstance(content, list):
        raise TranslationError("assistant message content must be a string or an array of content blocks",
                               f"messages[{i}].content")
    texts: list[str] = []
    calls: list[dict] = []
    reasoning: list[str] = []
    has_thinking = False
    for j, block in enumerate(content or ()):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {"id": block.get("id"), "type": "function",
                 "function": {"name": _provider_name(block.get("name")), "arguments": arguments}}
            )
        elif kind == "thinking":
            has_thinking = True
            reasoning.append(block.get("thinking") or "")
        elif kind == "redacted_thinking":
            continue
        else:
            raise TranslationError(f"assistant block type {kind!r} has no OpenAI equivalent",
                                   f"messages[{i}].content[{j}].type")
    msg["content"] = "".join(texts) if texts or not calls else None
    if calls:
        msg["tool_calls"] = calls
    if has_thinking:  # DeepSeek rejects tool-call turns whose assistant message lacks it
        msg["reasoning_content"] = "".join(reasoning)
    return msg


def _user(content: object, i: int, out: list[dict]) -> None:
    if isinstance(content, str):
        _push_user(out, [{"type": "text", "text": content}])
        return
    if not isinstance(content, list):  # dropping it would make the request end in an assistant prefill
        raise TranslationError("user message content must be a string or an array of content blocks",
                               f"messages[{i}].content")
    parts: list[dict] = []
    for j, block in enumerate(content or ()):
        where = f"messages[{i}].content[{j}]"
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "tool_result":
            text, images = _tool_result(block, where)
            out.append({"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text})
            parts.extend(images)
        else:
            parts.append(_part(block, where))
    if parts:
        _push_user(out, parts)


def _push_user(out: list[dict], parts: list[dict]) -> None:
    """Append user content, merged into a directly preceding user message (strict chat templates)."""
    if out and out[-1]["role"] == "user":
        prev = out[-1]["content"]
        parts = (prev if isinstance(prev, list) else [{"type": "text", "text": prev}]) + parts
        out.pop()
    if all(p["type"] == "text" for p in parts):
        out.append({"role": "user", "content": "\n\n".join(p["text"] for p in parts)})
    else:
        out.append({"role": "user", "content": parts})


def _tool_result(block: dict, where: str) -> tuple[str, list[dict]]:
    content = block.get("content")
    images: list[dict] = []
    if isinstance(content, str) or content is None:
        text = content or ""
    else:
        texts = []
        for k, sub in enumerate(content):
            part = _part(sub, f"{where}.content[{k}]")
            if part["type"] == "text":
                texts.append(part["text"])
            else:
                images.append(part)
        text = "\n\n".join(texts)
    if block.get("is_error"):
        text = "Error: " + text
    return text, images


def _part(block: Any, where: str) -> dict:
    """One Anthropic content block (text, image, document) → an OpenAI content part."""
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        return {"type": "text", "text": block.get("text") or ""}
    if kind == "image":
        return {"type": "image_url", "image_url": {"url": _source_url(block.get("source") or {}, where)}}
    if kind == "document":
        return _document(block, where)
    raise TranslationError(f"content block type {kind!r} has no OpenAI equivalent", f"{where}.type")


def _source_url(source: dict, where: str) -> str:
    if source.get("type") == "base64":
        return f"data:{source.get('media_type')};base64,{source.get('data')}"
    if source.get("type") == "url":
        return source.get("url") or ""
    raise TranslationError(f"source type {source.get('type')!r} cannot be sent to an OpenAI provider",
                           f"{where}.source.type")


def _document(block: dict, where: str) -> dict:
    source = block.get("source") or {}
    kind = source.get("type")
    if kind == "text":
        return {"type": "text", "text": source.get("data") or ""}
    if kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return {"type": "text", "text": inner}
        texts = [b.get("text") or "" for b in inner or () if isinstance(b, dict) and b.get("type") == "text"]
        return {"type": "text", "text": "\n\n".join(texts)}
    if kind == "base64" and source.get("media_type") == "application/pdf":
        name = (block.get("title") or "document") + ".pdf"
        data = f"data:application/pdf;base64,{source.get('data')}"
        return {"type": "file", "file": {"filename": name, "file_data": data}}
    raise TranslationError(f"document source {kind!r} has no OpenAI equivalent", f"{where}.source")


def _tool(tool: object, i: int) -> dict:
    if not isinstance(tool, dict):
        raise TranslationError("each tool must be an object", f"tools[{i}]")
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise TranslationError(f"Anthropic server tool {kind!r} is not available on OpenAI providers",
                               f"tools[{i}].type")
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise TranslationError("each tool needs a name", f"tools[{i}].name")
    function: dict = {"name": short_tool_name(name)}
    if tool.get("description"):
        function["description"] = tool["description"]
    function["parameters"] = tool.get("input_schema") or {"type": "object", "properties": {}}
    return {"type": "function", "function": function}


def _provider_name(name: object) -> object:
    return short_tool_name(name) if isinstance(name, str) else name


def _tool_choice(choice: object, out: dict) -> None:
    if choice is None:
        return
    if not isinstance(choice, dict):
        raise TranslationError('tool_choice must be an object such as {"type": "auto"}', "tool_choice")
    kind = choice.get("type")
    if kind == "auto":
        out["tool_choice"] = "auto"
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "none":
        out["tool_choice"] = "none"
    elif kind == "tool":
        out["tool_choice"] = {"type": "function", "function": {"name": _provider_name(choice.get("name"))}}
    else:
        raise TranslationError(f"unknown tool_choice type {kind!r}", "tool_choice.type")
    if choice.get("disable_parallel_tool_use") and "tools" in out:
        out["parallel_tool_calls"] = False


def _reasoning_effort(thinking: object, output_config: object) -> str | None:
    if not isinstance(thinking, dict):
        return None
    kind = thinking.get("type")
    if kind == "enabled":
        budget = thinking.get("budget_tokens") or 0
        return "low" if budget < 4000 else "medium" if budget < 16000 else "high"
    if kind == "adaptive" and isinstance(output_config, dict):
        return _EFFORT.get(output_config.get("effort"))
    return None


# ---------------------------------------------------------------------------------------------- response


def response(body: dict, target: Target | None = None, client_tools: ClientTools | None = None) -> dict:
    """Anthropic `message` → OpenAI `chat.completion`. A body of the wrong shape raises `not_understood`."""
    if not isinstance(body, dict):
        raise not_understood("not a JSON object")
    content = body.get("content")
    if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
        raise not_understood("content is not an array of blocks")
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict] = []
    answer: str | None = None
    for n, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            texts.append(_text(block.get("text"), n))
        elif kind == "thinking":
            thinking.append(_text(block.get("thinking"), n))
        elif kind == "tool_use" and block.get("name") == RESPONSE_TOOL:
            answer = orjson.dumps(block.get("input") or {}).decode()  # the structured answer
        elif kind == "tool_use":
            name = block.get("name")
            if not isinstance(name, str) or not name:
                raise not_understood(f"content[{n}] tool_use has no name")
            calls.append({"id": block.get("id"), "type": "function",
                          "function": {"name": name,
                                       "arguments": orjson.dumps(block.get("input") or {}).decode()}})
    if answer is not None:  # the JSON alone is the message, as the client's response_format asked
        texts = [answer]
    message: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if thinking:
        message["reasoning_content"] = "".join(thinking)
    reason = body.get("stop_reason")
    finish = STOP_TO_FINISH.get(reason, "stop") if isinstance(reason, str) else "stop"
    if answer is not None and not calls:  # only the structured answer's tool was called
        finish = "stop"
    return {
        "id": f"chatcmpl-{body.get('id')}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model"),
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage_to_openai(body.get("usage")),
    }


def _text(value: object, n: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise not_understood(f"content[{n}] text is not a string")
    return value


def usage_to_openai(usage: object) -> dict:
    """Anthropic usage → OpenAI usage; `prompt_tokens` counts cached and cache-written tokens too.

    OpenAI has no field for cache writes (they cost more than plain input at Anthropic): when there are
    any they go in ``prompt_tokens_details.cache_write_tokens``, an extra field OpenAI SDKs keep.

    ``output_tokens_details.thinking_tokens`` (Anthropic's name; when present) →
    ``completion_tokens_details.reasoning_tokens``.
    """
    usage = dict_of(usage)
    cached = tokens(usage.get("cache_read_input_tokens"))
    written = tokens(usage.get("cache_creation_input_tokens"))
    prompt = tokens(usage.get("input_tokens")) + cached + written
    completion = tokens(usage.get("output_tokens"))
    out: dict = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    if written:
        out["prompt_tokens_details"][CACHE_WRITE_TOKENS] = written
    reasoning = tokens(dict_of(usage.get("output_tokens_details")).get("thinking_tokens"))
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


# ------------------------------------------------------------------------------------------------ errors


def provider_error(status: int, body: bytes) -> tuple[int, bytes]:
    """Any Anthropic-provider error response (JSON or not) → OpenAI envelope."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str):
        message = err["message"]
    else:
        message = body_excerpt(status, body)
    if status == 529:
        status = 503
    too_long = _TOO_LONG.search(message)
    if too_long:
        message = (f"This model's maximum context length is {too_long.group(2)} tokens. "
                   f"However, your messages resulted in {too_long.group(1)} tokens.")
        return 400, error_body(400, message, "messages", "context_length_exceeded")
    return status, error_body(status, message)
