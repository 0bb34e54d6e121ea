"""Client speaks Anthropic Messages, provider speaks OpenAI Chat Completions (Claude Code → GPT, DeepSeek…).

Request: built field by field from a whitelist, so Anthropic-only fields (`cache_control`,
`context_management`, `output_config`, betas…) never reach the provider. Response, stream (see
`openai_stream_to_anthropic`) and errors go the other way.

Choices made here (each a place where the two APIs differ):
- text-only user/system content becomes one string (blocks joined with a blank line): several
  OpenAI-compatible servers reject content-part arrays; images switch to the parts form.
- `tool_result` → `role: "tool"` messages right after the assistant turn; images inside a tool result
  (OpenAI tool messages are text only) move to a user message after the tool messages; `is_error`
  results get an ``Error: `` prefix because OpenAI has no error flag.
- `metadata.user_id` longer than OpenAI's 64 characters is replaced by its SHA-256 hex (stable, 64 chars).
- `thinking` enabled → `reasoning_effort` by budget (<4k low, <16k medium, else high); `adaptive` takes
  `output_config.effort` when given, otherwise leaves the provider's default; `disabled` sends nothing.
- provider tool arguments that are not a JSON object are kept under ``{"raw_arguments": "<text>"}`` so the
  client's schema validation reports the problem to the model instead of the call silently losing input.
"""

from __future__ import annotations

import hashlib
import re

import orjson

from extproc.dialects import anthropic as A
from extproc.dialects.base import ClientTool, ClientTools, Target, TranslationError
from extproc.dialects.openai_stream_to_anthropic import OpenAIToAnthropicStream
from extproc.dialects.shapes import (
    MALFORMED,
    body_excerpt,
    check_list,
    check_number,
    check_positive_int,
    check_strings,
    client_name,
    first_choice,
    malformed_as,
    message_text,
    not_understood,
    parse_arguments,
    reasoning_of,
    short_tool_name,
    stop_reason,
    usage_to_anthropic,
)

BILLING_HEADER_PREFIX = "x-anthropic-billing-header:"
OPENAI_USER_MAX = 64

_EFFORT = {"low": "low", "medium": "medium", "high": "high", "max": "high", "minimal": "low"}

_CTX_MAX = re.compile(r"maximum context length is (\d+)", re.I)
_CTX_USED = re.compile(r"(?:resulted in|requested|you have|prompt has|input has)\s+(\d+)\s+tokens", re.I)
_CTX_HINT = re.compile(r"context[ _]length|context window|prompt is too long|too many tokens", re.I)


# ----------------------------------------------------------------------------------------------- request


def translate_request(body: dict, target: Target) -> dict:
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
        cap = target.max_tokens_for(out["model"])
        out[target.max_tokens_field] = min(max_tokens, cap) if cap else max_tokens
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
        out["user"] = user if len(user) <= OPENAI_USER_MAX else hashlib.sha256(user.encode()).hexdigest()
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


def _part(block: object, where: str) -> dict:
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


def client_tools(body: dict) -> dict[str, ClientTool]:
    """The request's tools whose names reach the provider shortened (`short_tool_name`): their calls go
    back to the client under the name it declared."""
    tools = body.get("tools")
    names = [t.get("name") for t in tools if isinstance(t, dict)] if isinstance(tools, list) else []
    return {short_tool_name(n): ClientTool(n) for n in names if isinstance(n, str) and short_tool_name(n) != n}


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


def translate_response(body: dict, target: Target | None = None, client_tools: ClientTools | None = None) -> dict:
    """OpenAI `chat.completion` → Anthropic `message`. A body of the wrong shape raises `not_understood`."""
    choice, message = first_choice(body)
    content: list[dict] = []
    reasoning = reasoning_of(message)
    mode = target.reasoning if target else "thinking"
    if reasoning and mode == "thinking":
        content.append({"type": "thinking", "thinking": reasoning})
    elif reasoning and mode == "text":
        content.append({"type": "text", "text": reasoning})
    text = message_text(message)
    if text:
        content.append({"type": "text", "text": text})
    refusal = message.get("refusal")
    if refusal and isinstance(refusal, str):
        content.append({"type": "text", "text": refusal})
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise not_understood("tool_calls is not an array of objects")
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise not_understood(f"tool_calls[{n}] has no function name")
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = A.generated_tool_id(str(body.get("id") or ""), n)
        content.append({"type": "tool_use", "id": call_id,
                        "name": client_name(name, client_tools),
                        "input": parse_arguments(function.get("arguments"))})
    reason, sequence = stop_reason(choice.get("finish_reason"), choice.get("stop_reason"), bool(calls))
    raw_id = str(body.get("id") or "")
    return {
        "id": raw_id if raw_id.startswith("msg_") else f"msg_{raw_id}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model"),
        "content": content,
        "stop_reason": reason,
        "stop_sequence": sequence,
        "usage": usage_to_anthropic(body.get("usage")),
    }


# ------------------------------------------------------------------------------------------------ errors


def provider_error(status: int, body: bytes) -> tuple[int, bytes]:
    """Any OpenAI-provider error response (JSON or not) → Anthropic envelope; context overflows reworded."""
    message, code = _error_message(status, body)
    if code == "context_length_exceeded" or _CTX_HINT.search(message):
        return 400, A.error_body(400, context_message(message))
    return status, A.error_body(status, message)


def context_message(message: str) -> str:
    """Claude Code compacts the conversation on exactly this wording."""
    limit = _CTX_MAX.search(message)
    used = _CTX_USED.search(message)
    if limit and used:
        return f"prompt is too long: {used.group(1)} tokens > {limit.group(1)} maximum"
    return f"prompt is too long: {message}"


def _error_message(status: int, body: bytes) -> tuple[str, str | None]:
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    if isinstance(data, list) and data:
        data = data[0]  # some providers wrap the error in a list
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            return err, None
        if isinstance(err, dict):
            msg = err.get("message") or err.get("detail") or err.get("msg")
            code = err.get("code")
            if isinstance(msg, str) and msg:
                return msg, code if isinstance(code, str) else None
    return body_excerpt(status, body), None


# -------------------------------------------------------------------------------------------- translator


class AnthropicToOpenAI:
    """Translator for client=anthropic, provider=openai."""

    client = "anthropic"
    provider = "openai"

    def request_path(self, client_path: str) -> str:
        return "/v1/chat/completions" if client_path.rstrip("/") == "/v1/messages" else client_path

    def request_body(self, body: dict, target: Target) -> dict:
        try:
            return translate_request(body, target)
        except MALFORMED as exc:  # a wrongly shaped field: the client's 400, not the gateway's 500
            raise TranslationError(f"malformed request body: {exc}") from exc

    def response_body(self, body: dict, target: Target | None = None,
                      client_tools: ClientTools | None = None) -> dict:
        try:
            return translate_response(body, target, client_tools)
        except MALFORMED as exc:
            raise not_understood(str(exc)) from exc

    def stream(
        self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
        client_tools: ClientTools | None = None,
    ) -> OpenAIToAnthropicStream:
        return OpenAIToAnthropicStream(target, input_tokens_estimate, client_tools)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return provider_error(status, body)
