"""A recorded turn as a person reads it: what was newly said (prompt, tool results), what came back
(thinking, text, tool calls), in each of the three dialects, as a flat list of parts the session
page renders. Claude Code and the SDKs resend the whole conversation every turn, so a turn shows only
the messages its request added after the previous turn's request; the first turn shows the system
prompt too (folded away on the page).
"""

from __future__ import annotations

from typing import Any, TypedDict

import orjson


class Part(TypedDict):
    role: str  # system, user, assistant, tool
    kind: str  # text, thinking, tool_call, tool_result, image, error
    text: str
    name: str | None


def _part(role: str, kind: str, text: Any, name: Any = None) -> Part:
    if not isinstance(text, str):
        text = orjson.dumps(text, option=orjson.OPT_INDENT_2).decode() if text is not None else ""
    return {"role": role, "kind": kind, "text": text, "name": None if name is None else str(name)}


def _blocks(role: str, content: Any) -> list[Part]:
    """Anthropic/OpenAI content: a string, or blocks/parts of text, thinking, tool use and results."""
    if isinstance(content, str):
        return [_part(role, "text", content)] if content else []
    out: list[Part] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        kind = block.get("type")
        if kind in ("text", "input_text", "output_text") and isinstance(block.get("text"), str):
            out.append(_part(role, "text", block["text"]))
        elif kind == "thinking":
            out.append(_part(role, "thinking", block.get("thinking", "")))
        elif kind == "redacted_thinking":
            out.append(_part(role, "thinking", "(redacted by the provider)"))
        elif kind == "tool_use":
            out.append(_part(role, "tool_call", block.get("input"), block.get("name")))
        elif kind == "tool_result":
            inner = block.get("content")
            text = "\n".join(p["text"] for p in _blocks(role, inner)) if isinstance(inner, list) else inner
            out.append(_part("tool", "tool_result", text, block.get("tool_use_id")))
        elif kind in ("image", "image_url", "input_image", "document", "input_file"):
            out.append(_part(role, "image", f"({kind})"))
    return out


def _chat_message(message: dict) -> list[Part]:
    role = str(message.get("role") or "user")
    if role == "tool":
        content = message.get("content")
        text = "\n".join(p["text"] for p in _blocks(role, content)) if isinstance(content, list) else content
        return [_part("tool", "tool_result", text, message.get("tool_call_id"))]
    out = []
    if message.get("reasoning_content"):
        out.append(_part(role, "thinking", message["reasoning_content"]))
    out += _blocks("system" if role == "developer" else role, message.get("content"))
    for call in message.get("tool_calls") or ():
        fn = (call.get("function") or {}) if isinstance(call, dict) else {}
        out.append(_part(role, "tool_call", _arguments(fn.get("arguments")), fn.get("name")))
    return out


def _arguments(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _responses_item(item: Any) -> list[Part]:
    if not isinstance(item, dict):
        return []
    kind = item.get("type")
    if kind == "function_call":
        return [_part("assistant", "tool_call", _arguments(item.get("arguments")), item.get("name"))]
    if kind == "function_call_output":
        return [_part("tool", "tool_result", item.get("output"), item.get("call_id"))]
    if kind == "reasoning":
        summary = "\n".join(s.get("text", "") for s in item.get("summary") or () if isinstance(s, dict))
        return [_part("assistant", "thinking", summary or "(reasoning)")]
    role = str(item.get("role") or "assistant")
    return _blocks("system" if role == "developer" else role, item.get("content"))


def _messages(request: Any) -> tuple[list[Part], list[Any]]:
    """(system parts, the conversation's messages) of a request in any dialect."""
    if not isinstance(request, dict):
        return [], ([request] if request else [])
    system: list[Part] = []
    if "system" in request:
        system = _blocks("system", request["system"])
    if isinstance(request.get("instructions"), str):
        system.append(_part("system", "text", request["instructions"]))
    if isinstance(request.get("messages"), list):
        return system, request["messages"]
    items = request.get("input")
    if isinstance(items, str):
        return system, [{"role": "user", "content": items}]
    return system, items if isinstance(items, list) else []


def _message_parts(message: Any, dialect: str) -> list[Part]:
    if isinstance(message, str):
        return [_part("user", "text", message)]
    if not isinstance(message, dict):
        return []
    if dialect == "openai-responses" or "type" in message and "role" not in message:
        return _responses_item(message)
    if dialect == "openai":
        return _chat_message(message)
    role = str(message.get("role") or "user")
    return _blocks(role, message.get("content"))


def request_parts(request: Any, previous: Any, dialect: str, first: bool | None = None) -> list[Part]:
    """What this turn's request added to the conversation since `previous` (the last turn's request,
    None for the first): new user messages and tool results; the system prompt on the session's
    `first` turn (default: when there is no previous one)."""
    system, messages = _messages(request)
    _old_system, old = _messages(previous) if previous is not None else ([], [])
    if previous is not None and len(messages) > len(old) and messages[:len(old)] == old:
        new = messages[len(old):]
    elif messages:
        new = _from_last_user(messages)
    else:
        new = []
    parts = [p for m in new for p in _message_parts(m, dialect) if p["role"] != "assistant"]
    return (system if (previous is None if first is None else first) else []) + parts


def _from_last_user(messages: list[Any]) -> list[Any]:
    """A request that does not extend the previous one: from its last assistant message on."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, dict) and (m.get("role") == "assistant" or m.get("type") == "function_call"):
            return messages[i + 1:] or messages[-1:]
    return messages


def response_parts(response: Any, dialect: str) -> list[Part]:
    """The answer: thinking, text and tool calls, or the error the client got."""
    if not isinstance(response, dict):
        return [_part("assistant", "text", response)] if response else []
    if response.get("error"):
        err = response["error"]
        return [_part("assistant", "error", err.get("message", err) if isinstance(err, dict) else err)]
    if isinstance(response.get("choices"), list) and response["choices"]:
        choice = response["choices"][0]
        return _chat_message({"role": "assistant", **(choice.get("message") or {})}) if isinstance(choice, dict) else []
    if isinstance(response.get("output"), list):
        return [p for item in response["output"] for p in _responses_item(item)]
    return _blocks("assistant", response.get("content"))
