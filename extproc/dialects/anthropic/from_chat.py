"""Anthropic Messages from Chat Completions: the request of a Chat client for an Anthropic provider (OpenAI
SDK apps → Claude), and the response and errors of a Chat provider for an Anthropic client. The Chat
provider's stream is `from_chat_stream`; the other direction is `extproc.dialects.openai_chat.from_anthropic`.

Choices made here:
- `system`/`developer` messages are hoisted, in order, into the top-level `system` blocks (Anthropic
  has no general mid-conversation system role).
- `role: "tool"` messages become `tool_result` blocks; they and a following user message are merged into
  one user message, because Anthropic wants all results of a turn right after the `tool_use` turn.
- assistant `reasoning_content` is dropped: Anthropic rejects thinking blocks without a signature.
- a client's own cache hints (`cache_control` on content parts, messages or tools, as some OpenAI-SDK
  apps send for Claude) stay on the blocks they mark; without any, `caching` adds breakpoints.
- `max_tokens` is required by Anthropic: `max_completion_tokens`, else `max_tokens`, else
  `Target.default_max_tokens`, clamped to `Target.max_tokens`.
- `temperature` above Anthropic's maximum 1 is clamped to 1; with thinking on, temperature/top_p are
  dropped (Anthropic only accepts defaults there).
- `reasoning_effort` → `thinking.budget_tokens` (minimal/low 1024, medium 4096, high 16384, xhigh 32768), raising
  `max_tokens` above the budget when needed; not inside a tool loop (the last assistant turn holds tool
  calls), where Anthropic demands the turn's signed thinking block, which no OpenAI client has.
- rejected with a 400 naming the field (no faithful mapping): `n` > 1, `logprobs`/`top_logprobs`,
  `response_format` other than text and JSON (json_schema/json_object: a forced tool, see
  `_structured_output`; not together with tools), `audio`, `modalities` other than text, legacy `functions`,
  non-function tools. Silently dropped (hints without an Anthropic counterpart): `seed`,
  `frequency_penalty`, `presence_penalty`, `logit_bias`, `store`, `service_tier`, `prompt_cache_key`…
- response: provider tool arguments that are not a JSON object are kept under ``{"raw_arguments": "<text>"}``
  so the client's schema validation reports the problem to the model instead of the call silently losing
  input; a call without an id gets one Anthropic accepts (`history.generated_tool_id`).
- errors: a provider's context overflow is reworded as Anthropic's "prompt is too long", on which Claude
  Code compacts the conversation.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from extproc.dialects.anthropic.history import generated_tool_id
from extproc.dialects.anthropic.spec import error_body
from extproc.dialects.base import ClientTools, Target, TranslationError
from extproc.dialects.body_checks import (
    body_excerpt,
    check_list,
    check_number,
    check_positive_int,
    check_strings,
    malformed_as,
)
from extproc.dialects.caching import client_hint
from extproc.dialects.openai_chat.read import first_choice, message_text, reasoning_of, tool_calls_of
from extproc.dialects.openai_chat.spec import CACHE_WRITE_TOKENS
from extproc.dialects.tools import RESPONSE_TOOL, client_name, parse_arguments
from extproc.dialects.usage import dict_of, tokens

_DATA_URL = re.compile(r"^data:([^;,]+);base64,(.*)$", re.S)
_BUDGET = {"minimal": 1024, "low": 1024, "medium": 4096, "high": 16384, "xhigh": 32768}
_MIN_BUDGET = 1024
_CTX_MAX = re.compile(r"maximum context length is (\d+)", re.I)
_CTX_USED = re.compile(r"(?:resulted in|requested|you have|prompt has|input has)\s+(\d+)\s+tokens", re.I)
_CTX_HINT = re.compile(r"context[ _]length|context window|prompt is too long|too many tokens", re.I)
FINISH_TO_STOP = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}

# ----------------------------------------------------------------------------------------------- request


def request(body: dict, target: Target) -> dict:
    """OpenAI `/v1/chat/completions` body → Anthropic `/v1/messages` body."""
    _reject_unfaithful(body)
    out: dict = {"model": body.get("model")}
    system: list[dict] = []
    messages: list[dict] = []
    for i, message in enumerate(check_list(body, "messages")):
        if not isinstance(message, dict):
            raise TranslationError("each message must be an object", f"messages[{i}]")
        with malformed_as(f"messages[{i}]"):
            _message(message, i, system, messages)
    if system:
        out["system"] = system
    out["messages"] = messages

    wanted = check_positive_int(body, "max_completion_tokens"), check_positive_int(body, "max_tokens")
    max_tokens = wanted[0] or wanted[1] or target.default_max_tokens
    out["max_tokens"] = target.output_cap(out["model"], max_tokens)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str):
        check_strings(stop, "stop")
    if stop:
        out["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise TranslationError("user must be a string", "user")
    if user:
        out["metadata"] = {"user_id": user}
    if body.get("stream"):
        out["stream"] = True
    tools = check_list(body, "tools")
    if tools:
        with malformed_as("tools"):
            out["tools"] = [_tool(t, i) for i, t in enumerate(tools)]
    with malformed_as("tool_choice"):
        _tool_choice(body, out)
    with malformed_as("response_format"):
        structured = _structured_output(body.get("response_format"), out)
    temperature, top_p = check_number(body, "temperature"), check_number(body, "top_p")
    # Anthropic refuses thinking while tool_choice forces a tool
    thinking = not structured and _may_think(messages) and _thinking(body.get("reasoning_effort"), out, target)
    if not thinking:
        if temperature is not None:
            out["temperature"] = min(temperature, 1)
        if top_p is not None:
            out["top_p"] = top_p
    return out


def _reject_unfaithful(body: dict) -> None:
    if (body.get("n") or 1) != 1:
        raise TranslationError("n > 1 is not supported by Anthropic providers", "n")
    if body.get("logprobs") or body.get("top_logprobs"):
        raise TranslationError("logprobs are not available from Anthropic providers", "logprobs")
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type", "text") not in ("text", "json_schema", "json_object"):
        raise TranslationError(f"response_format {fmt.get('type')!r} is not supported by Anthropic providers",
                               "response_format.type")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_schema", "json_object") and body.get("tools"):
        raise TranslationError("response_format json_schema/json_object cannot be combined with tools on Anthropic "
                               "providers (it is answered through a forced tool)", "response_format")
    if body.get("audio"):
        raise TranslationError("audio output is not supported by Anthropic providers", "audio")
    modalities = body.get("modalities")
    if modalities and modalities != ["text"]:
        raise TranslationError("only text output is supported by Anthropic providers", "modalities")
    if body.get("functions") or body.get("function_call"):
        raise TranslationError("legacy functions are not supported; use tools", "functions")


def _message(message: dict, i: int, system: list[dict], out: list[dict]) -> None:
    role = message.get("role")
    content = message.get("content")
    parts = content if isinstance(content, list) else ()
    if role in ("system", "developer"):
        text = _text_of(content, f"messages[{i}].content")
        if text:
            system.append(_hinted({"type": "text", "text": text}, message, *parts))
    elif role == "user":
        _push(out, "user", _hinted_last(_user_blocks(content, i), message))
    elif role == "tool":
        text = _text_of(content, f"messages[{i}].content")
        result = {"type": "tool_result", "tool_use_id": message.get("tool_call_id"), "content": text}
        _push(out, "user", [_hinted(result, message, *parts)])
    elif role == "assistant":
        _push(out, "assistant", _hinted_last(_assistant_blocks(message, i), message))
    else:
        raise TranslationError(f"unsupported message role {role!r}", f"messages[{i}].role")


def _hinted(block: dict, *holders: object) -> dict:
    """`block` with the client's cache hint found on any of `holders` (a part, its message, a tool)."""
    hint = client_hint(*holders)
    if hint:
        block["cache_control"] = hint
    return block


def _hinted_last(blocks: list[dict], message: dict) -> list[dict]:
    """A message-level hint marks the message's last block."""
    if blocks:
        _hinted(blocks[-1], message)
    return blocks


def _push(out: list[dict], role: str, blocks: list[dict]) -> None:
    """Append blocks, merged into a preceding message of the same role (keeps tool results together)."""
    if not blocks:
        return
    if out and out[-1]["role"] == role:
        out[-1]["content"].extend(blocks)
    else:
        out.append({"role": role, "content": blocks})


def _text_of(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    texts = []
    for j, part in enumerate(content or ()):
        if not isinstance(part, dict) or part.get("type") != "text":
            raise TranslationError("only text parts are allowed here", f"{where}[{j}].type")
        texts.append(part.get("text") or "")
    return "\n\n".join(texts)


def _user_blocks(content: object, i: int) -> list[dict]:
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    if not isinstance(content, list):  # dropping it would make the request end in an assistant prefill
        raise TranslationError("user message content must be a string or an array of content parts",
                               f"messages[{i}].content")
    blocks = []
    for j, part in enumerate(content or ()):
        where = f"messages[{i}].content[{j}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                blocks.append(_hinted({"type": "text", "text": part["text"]}, part))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url") or ""
            blocks.append(_hinted({"type": "image", "source": _source(url)}, part))
        elif kind == "file":
            blocks.append(_hinted(_file(part.get("file") or {}, where), part))
        else:
            raise TranslationError(f"content part {kind!r} is not supported by Anthropic providers",
                                   f"{where}.type")
    return blocks


def _source(url: str) -> dict:
    match = _DATA_URL.match(url)
    if match:
        return {"type": "base64", "media_type": match.group(1), "data": match.group(2)}
    return {"type": "url", "url": url}


def _file(file: dict, where: str) -> dict:
    match = _DATA_URL.match(file.get("file_data") or "")
    if not match:
        raise TranslationError("only inline file_data can be sent to Anthropic providers", f"{where}.file")
    block: dict = {"type": "document",
                   "source": {"type": "base64", "media_type": match.group(1), "data": match.group(2)}}
    name = file.get("filename")
    if name:
        block["title"] = name.removesuffix(".pdf")
    return block


def _assistant_blocks(message: dict, i: int) -> list[dict]:
    content = message.get("content")
    blocks: list[dict] = []
    if isinstance(content, str):
        if content:
            blocks.append({"type": "text", "text": content})
    else:
        for part in content or ():
            if isinstance(part, dict) and part.get("type") in ("text", "refusal"):
                text = part.get("text") or part.get("refusal")
                if text:
                    blocks.append(_hinted({"type": "text", "text": text}, part))
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            raise TranslationError("tool call arguments are not valid JSON",
                                   f"messages[{i}].tool_calls[{j}].function.arguments") from None
        if not isinstance(arguments, dict):
            arguments = {"raw_arguments": function.get("arguments")}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": function.get("name"),
                       "input": arguments})
    return blocks


def _tool(tool: object, i: int) -> dict:
    if not isinstance(tool, dict):
        raise TranslationError("each tool must be an object", f"tools[{i}]")
    if tool.get("type") != "function":
        raise TranslationError(f"tool type {tool.get('type')!r} is not supported by Anthropic providers",
                               f"tools[{i}].type")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise TranslationError("each function tool needs a function object with a name", f"tools[{i}].function")
    out: dict = {"name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    out["input_schema"] = function.get("parameters") or {"type": "object", "properties": {}}
    return _hinted(out, tool)


def _tool_choice(body: dict, out: dict) -> None:
    choice = body.get("tool_choice")
    result: dict | None = None
    if choice == "auto":
        result = {"type": "auto"}
    elif choice == "required":
        result = {"type": "any"}
    elif choice == "none":
        result = {"type": "none"}
    elif isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise TranslationError("tool_choice needs function.name", "tool_choice")
        result = {"type": "tool", "name": name}
    elif choice is not None:
        raise TranslationError(f"unknown tool_choice {choice!r}", "tool_choice")
    if body.get("parallel_tool_calls") is False and "tools" in out:
        result = result or {"type": "auto"}
        if result["type"] != "none":
            result["disable_parallel_tool_use"] = True
    if result and "tools" in out:  # Anthropic rejects tool_choice without tools
        out["tool_choice"] = result


def _structured_output(fmt: object, out: dict) -> bool:
    """`response_format` json_schema / json_object → one forced tool whose input is the answer: works on
    every Anthropic model. Its call comes back as the message's JSON text (`RESPONSE_TOOL`)."""
    if not isinstance(fmt, dict) or fmt.get("type") not in ("json_schema", "json_object"):
        return False
    spec = fmt.get("json_schema") if fmt["type"] == "json_schema" else None
    schema = (spec or {}).get("schema") if isinstance(spec, dict) else None
    if fmt["type"] == "json_object":
        schema = {"type": "object"}
    elif not isinstance(schema, dict) or schema.get("type") != "object":  # a tool's input is an object
        raise TranslationError("response_format.json_schema.schema must be an object schema for Anthropic "
                               "providers", "response_format.json_schema.schema")
    description = "Give the answer as this tool's input: it is the response, in the required JSON shape."
    if isinstance(spec, dict) and isinstance(spec.get("description"), str):
        description += " " + spec["description"]
    out["tools"] = [{"name": RESPONSE_TOOL, "description": description, "input_schema": schema}]
    out["tool_choice"] = {"type": "tool", "name": RESPONSE_TOOL}
    return True


def _may_think(messages: list[dict]) -> bool:
    """Anthropic accepts thinking in a tool loop only when the last assistant turn starts with its signed
    thinking block, which a translated conversation never has (reasoning is dropped): such a request is
    answered without thinking; the next turn thinks again."""
    for message in reversed(messages):
        if message["role"] == "assistant":
            return not any(b.get("type") == "tool_use" for b in message["content"])
    return True


def _thinking(effort: object, out: dict, target: Target) -> bool:
    budget = _BUDGET.get(effort) if isinstance(effort, str) else None
    if not budget:
        return False
    if out["max_tokens"] <= budget:
        wanted = out["max_tokens"] + budget
        out["max_tokens"] = target.output_cap(out["model"], wanted)
        budget = min(budget, out["max_tokens"] - 1)
    if budget < _MIN_BUDGET:
        return False  # the cap leaves no room for thinking: answer without it
    out["thinking"] = {"type": "enabled", "budget_tokens": budget}
    return True


# ---------------------------------------------------------------------------------------------- response


def response(body: dict, target: Target | None = None, client_tools: ClientTools | None = None) -> dict:
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
    calls = tool_calls_of(message)
    for n, (call, name, arguments) in enumerate(calls):
        call_id = call.get("id")
        if not isinstance(call_id, str) or not call_id:
            call_id = generated_tool_id(str(body.get("id") or ""), n)
        content.append({"type": "tool_use", "id": call_id, "name": client_name(name, client_tools),
                        "input": parse_arguments(arguments)})
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


def stop_reason(finish: str | None, matched: object = None, has_tools: bool = False) -> tuple[str, str | None]:
    """(stop_reason, stop_sequence). vLLM reports the matched stop string in `choice.stop_reason`;
    some providers (Ollama) finish tool calls with "stop", so tool calls win."""
    finish = finish if isinstance(finish, str) else None
    if has_tools and finish in (None, "stop"):
        return "tool_use", None
    if finish == "stop" and isinstance(matched, str):
        return "stop_sequence", matched
    return FINISH_TO_STOP.get(finish or "stop", "end_turn"), None


def usage_to_anthropic(usage: object) -> dict:
    """OpenAI usage → Anthropic usage; `input_tokens` excludes cached prompt tokens, as Anthropic counts.

    Cache writes, which providers relaying Claude report as `prompt_tokens_details.cache_write_tokens`,
    become `cache_creation_input_tokens` (and leave `input_tokens` too).

    Reasoning tokens (`completion_tokens_details.reasoning_tokens`, part of `completion_tokens`) are kept
    as ``output_tokens_details: {"thinking_tokens": N}``, where Anthropic reports its own.
    """
    usage = dict_of(usage)
    prompt = tokens(usage.get("prompt_tokens"))
    details = dict_of(usage.get("prompt_tokens_details"))
    cached = tokens(details.get("cached_tokens")) or tokens(usage.get("prompt_cache_hit_tokens"))  # DeepSeek's
    written = tokens(details.get(CACHE_WRITE_TOKENS))
    out: dict = {
        "input_tokens": max(prompt - cached - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": cached,
        "output_tokens": tokens(usage.get("completion_tokens")),
    }
    reasoning = tokens(dict_of(usage.get("completion_tokens_details")).get("reasoning_tokens"))
    if reasoning:
        out["output_tokens_details"] = {"thinking_tokens": reasoning}
    return out


# ------------------------------------------------------------------------------------------------ errors


def provider_error(status: int, body: bytes) -> tuple[int, bytes]:
    """Any OpenAI-provider error response (JSON or not) → Anthropic envelope; context overflows reworded."""
    message, code = _error_message(status, body)
    if code == "context_length_exceeded" or _CTX_HINT.search(message):
        return 400, error_body(400, context_message(message))
    return status, error_body(status, message)


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
