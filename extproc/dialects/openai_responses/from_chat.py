"""The Responses API from Chat Completions: the request of a Chat client (or, composed, an Anthropic one)
for a provider that speaks only Responses, and the response of a Chat provider for a Responses client
(Codex). The Chat provider's stream is `from_chat_stream`; the other direction is
`extproc.dialects.openai_chat.from_responses`.

Request:
- system/developer, user, assistant and tool messages → input items; assistant `reasoning_content` is
  dropped (a Responses provider accepts reasoning only as its own items); `stop` has no Responses
  equivalent (400). `store: false` always: the gateway is stateless and no one will refer to the
  response later. Function tools are sent `strict: false` unless the client asked for strict (the
  Responses API's default is strict, which rejects ordinary schemas). `max_output_tokens` is at least 16,
  the Responses API's minimum.

Response: the message → output items (`reasoning` with summary text unless the provider's reasoning is
dropped, `message` with output text and refusal, one call item per tool call, as the tool the client
declared: `call_item`); finish reasons `length` and `content_filter` → `status: "incomplete"`.
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from extproc.dialects.base import ClientTool, ClientTools, Target, TranslationError
from extproc.dialects.body_checks import (
    check_list,
    check_number,
    check_positive_int,
    is_int,
    malformed_as,
)
from extproc.dialects.openai_chat.read import first_choice, message_text, reasoning_of, tool_calls_of
from extproc.dialects.openai_chat.spec import CACHE_WRITE_TOKENS, keep_prompt_cache_key
from extproc.dialects.openai_responses.spec import CUSTOM_INPUT
from extproc.dialects.usage import dict_of, tokens

MIN_OUTPUT_TOKENS = 16  # the Responses API rejects a smaller max_output_tokens


def request(body: dict, target: Target) -> dict:
    """Chat Completions body → Responses `/v1/responses` body (stateless: `store: false`)."""
    if (body.get("n") or 1) != 1:
        raise TranslationError("n > 1 is not supported by Responses providers", "n")
    for key in ("logprobs", "top_logprobs", "audio"):
        if body.get(key):
            raise TranslationError(f"{key} is not supported by Responses providers", key)
    if body.get("modalities") not in (None, ["text"]):
        raise TranslationError("only text output is supported by Responses providers", "modalities")
    if body.get("functions") or body.get("function_call"):
        raise TranslationError("legacy functions are not supported; use tools", "functions")
    if body.get("stop"):
        raise TranslationError("stop sequences have no equivalent on Responses providers", "stop")
    out: dict = {"model": body.get("model"), "store": False}
    items: list[dict] = []
    for i, message in enumerate(check_list(body, "messages")):
        if not isinstance(message, dict):
            raise TranslationError("each message must be an object", f"messages[{i}]")
        with malformed_as(f"messages[{i}]"):
            _chat_message(message, i, items)
    out["input"] = items
    wanted = check_positive_int(body, "max_completion_tokens") or check_positive_int(body, "max_tokens")
    if wanted is not None:
        out["max_output_tokens"] = max(target.output_cap(out["model"], wanted), MIN_OUTPUT_TOKENS)
    for key in ("temperature", "top_p"):
        if check_number(body, key) is not None:
            out[key] = body[key]
    if isinstance(body.get("user"), str) and body["user"]:
        out["user"] = body["user"]
    keep_prompt_cache_key(body, out)
    if body.get("stream"):
        out["stream"] = True
    tools = check_list(body, "tools")
    if tools:
        with malformed_as("tools"):
            out["tools"] = [_chat_tool(t, i) for i, t in enumerate(tools)]
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        if not name:
            raise TranslationError("tool_choice needs function.name", "tool_choice")
        out["tool_choice"] = {"type": "function", "name": name}
    elif choice in ("auto", "none", "required"):
        out["tool_choice"] = choice
    elif choice is not None:
        raise TranslationError(f"unknown tool_choice {choice!r}", "tool_choice")
    if "tools" not in out:  # a tool_choice without tools is refused by the provider
        out.pop("tool_choice", None)
    effort = body.get("reasoning_effort")
    if isinstance(effort, str) and target.reasoning_effort:
        out["reasoning"] = {"effort": effort, "summary": "auto"}
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        out["text"] = {"format": {"type": "json_object"}}
    elif isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        schema = fmt.get("json_schema") or {}
        out["text"] = {"format": {"type": "json_schema", **schema}}
    return out


def _chat_message(message: dict, i: int, items: list[dict]) -> None:
    role = message.get("role")
    content = message.get("content")
    where = f"messages[{i}].content"
    if role in ("system", "developer"):
        items.append({"type": "message", "role": role, "content": _chat_text(content, where)})
    elif role == "user":
        items.append({"type": "message", "role": "user", "content": _chat_user(content, where)})
    elif role == "assistant":
        text = _chat_text(content, where, ("text", "refusal"))
        if text:
            items.append({"type": "message", "role": "assistant",
                          "content": [{"type": "output_text", "text": text}]})
        for j, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            if not isinstance(call.get("id"), str) or not function.get("name"):
                raise TranslationError("a tool call needs an id and a function name",
                                       f"messages[{i}].tool_calls[{j}]")
            items.append({"type": "function_call", "call_id": call["id"], "name": function["name"],
                          "arguments": function.get("arguments") or "{}"})
    elif role == "tool":
        items.append({"type": "function_call_output", "call_id": message.get("tool_call_id"),
                      "output": _chat_text(content, where)})
    else:
        raise TranslationError(f"unsupported message role {role!r}", f"messages[{i}].role")


def _chat_text(content: Any, where: str, kinds: tuple[str, ...] = ("text",)) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") not in kinds:
            raise TranslationError("only text parts are allowed here", f"{where}[{j}].type")
        texts.append(part.get("text") or part.get("refusal") or "")
    return "\n\n".join(texts)


def _chat_user(content: object, where: str) -> str | list[dict]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):  # dropping it would make the request end in an assistant prefill
        raise TranslationError("user message content must be a string or an array of content parts", where)
    parts = []
    for j, part in enumerate(content or ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append({"type": "input_text", "text": part.get("text") or ""})
        elif kind == "image_url":
            image = part.get("image_url") or {}
            converted = {"type": "input_image", "image_url": image.get("url") or "", "detail": image.get("detail")
                         or "auto"}
            parts.append(converted)
        elif kind == "file":
            file = part.get("file") or {}
            if not file.get("file_data"):
                raise TranslationError("only inline file_data can be sent to Responses providers", f"{where}[{j}]")
            parts.append({"type": "input_file", "filename": file.get("filename") or "document.pdf",
                          "file_data": file["file_data"]})
        else:
            raise TranslationError(f"content part {kind!r} is not supported by Responses providers",
                                   f"{where}[{j}].type")
    return parts


def _chat_tool(tool: object, i: int) -> dict:
    if not isinstance(tool, dict) or tool.get("type") != "function":
        kind = tool.get("type") if isinstance(tool, dict) else None
        raise TranslationError(f"tool type {kind!r} is not supported by Responses providers", f"tools[{i}].type")
    function = tool.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raise TranslationError("each function tool needs a function object with a name", f"tools[{i}].function")
    out: dict = {"type": "function", "name": function["name"]}
    if function.get("description"):
        out["description"] = function["description"]
    out["parameters"] = function.get("parameters") or {"type": "object", "properties": {}}
    out["strict"] = function.get("strict") is True
    return out


def usage_from_chat(usage: object) -> dict:
    """Chat usage → Responses usage (`input_tokens` counts cached tokens, as both OpenAI APIs do)."""
    usage = dict_of(usage)
    prompt, completion = tokens(usage.get("prompt_tokens")), tokens(usage.get("completion_tokens"))
    details = dict_of(usage.get("prompt_tokens_details"))
    cached = tokens(details.get("cached_tokens")) or tokens(usage.get("prompt_cache_hit_tokens"))  # DeepSeek's
    written = tokens(details.get(CACHE_WRITE_TOKENS))
    reasoning = tokens(dict_of(usage.get("completion_tokens_details")).get("reasoning_tokens"))
    details = {"cached_tokens": cached, **({CACHE_WRITE_TOKENS: written} if written else {})}
    return {"input_tokens": prompt, "input_tokens_details": details,
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion}


# --------------------------------------------------------------------------- response: Chat → Responses


def status_of(finish: object) -> tuple[str, dict | None]:
    """(status, incomplete_details) for a Chat finish reason."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def response_object(rid: str, model: object, created: int, status: str, output: list[dict], usage: dict | None,
                    incomplete: dict | None = None, error: dict | None = None) -> dict:
    return {"id": rid, "object": "response", "created_at": created, "status": status, "error": error,
            "incomplete_details": incomplete, "model": model, "output": output, "usage": usage}


def response_id(raw: object) -> str:
    raw = str(raw or "gateway").removeprefix("chatcmpl-")
    return raw if raw.startswith("resp_") else f"resp_{raw}"


def call_item(call_id: str, name: str, arguments: str, tools: ClientTools | None,
              status: str = "completed") -> dict:
    """A provider's function call as a Responses output item, as the tool the client declared: a custom
    tool's call unwrapped to its string input, a namespaced function with its own name and namespace."""
    tool = (tools or {}).get(name) or ClientTool(name)
    item: dict
    if tool.custom:
        parsed = _parsed(arguments)
        value = parsed.get(CUSTOM_INPUT) if isinstance(parsed, dict) else None
        item = {"type": "custom_tool_call", "id": f"ctc_{call_id}", "call_id": call_id, "name": tool.name,
                "input": value if isinstance(value, str) else arguments, "status": status}
    else:
        item = {"type": "function_call", "id": f"fc_{call_id}", "call_id": call_id, "name": tool.name,
                "arguments": arguments, "status": status}
    if tool.namespace:
        item["namespace"] = tool.namespace
    return item


def _parsed(text: str) -> object:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return None


def response(body: dict, target: Target | None = None, client_tools: ClientTools | None = None) -> dict:
    """Chat `chat.completion` → Responses `response`. A body of the wrong shape raises `not_understood`."""
    choice, message = first_choice(body)
    rid = response_id(body.get("id"))
    output: list[dict] = []
    reasoning = reasoning_of(message)
    if reasoning and (target is None or target.reasoning != "drop"):
        output.append({"type": "reasoning", "id": f"rs_{rid[5:]}_0",
                       "summary": [{"type": "summary_text", "text": reasoning}]})
    text = message_text(message)
    parts = [{"type": "output_text", "text": text, "annotations": []}] if text else []
    if isinstance(message.get("refusal"), str) and message["refusal"]:
        parts.append({"type": "refusal", "refusal": message["refusal"]})
    if parts:
        output.append({"type": "message", "id": f"msg_{rid[5:]}_{len(output)}", "status": "completed",
                       "role": "assistant", "content": parts})
    for n, (call, name, arguments) in enumerate(tool_calls_of(message)):
        call_id = value if isinstance(value := call.get("id"), str) and value else f"call_{n}"
        output.append(call_item(call_id, name, arguments if isinstance(arguments, str) else "{}", client_tools))
    status, incomplete = status_of(choice.get("finish_reason"))
    created = value if is_int(value := body.get("created")) else int(time.time())
    usage = usage_from_chat(body.get("usage"))
    return response_object(rid, body.get("model"), created, status, output, usage, incomplete)
