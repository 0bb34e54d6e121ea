"""Chat Completions from the Responses API: the request of a Responses client (Codex) for a Chat provider
(or, composed, an Anthropic one), and the response of a Responses provider for a Chat client. The
Responses provider's stream is `from_responses_stream`; the other direction is
`extproc.dialects.openai_responses.from_chat`.

Request:
- `instructions` → the first system message; `input` (a string, or items) → messages: `message` items
  by role (system/developer → system), `function_call` / `custom_tool_call` items → `tool_calls` of one
  assistant message, `function_call_output` / `custom_tool_call_output` → `role: "tool"` messages
  (images in an output move to a user message after them), `reasoning` items → `reasoning_content` of
  the next assistant message (summary text; DeepSeek-style providers want it back). `encrypted_content`
  is dropped: only the provider that issued it can read it, and the gateway never invents one.
- function tools stay function tools (`strict` only when the client asked for it). Custom (freeform)
  tools, e.g. Codex's `apply_patch`, become function tools taking one string, ``{"input": "…"}``, with
  their grammar (if any) quoted in the description; their calls come back as `custom_tool_call` items
  holding the string again.
- `max_output_tokens`, `temperature`, `top_p`, `parallel_tool_calls`, `tool_choice`, `reasoning.effort`
  (→ `reasoning_effort`), `text.format` (→ `response_format`; a provider without structured output
  answers a 400 naming `text.format`), `user` and `prompt_cache_key` (Codex's per-conversation key; Chat
  has the same field) map; `store`, `include`, `metadata`, `service_tier`, `text.verbosity`,
  `reasoning.summary` are hints without a Chat counterpart: dropped.
- tool namespaces (Codex groups sub-agent tools so) become their functions, named `namespace__name`;
  calls come back with the tool's own name and `namespace`. Tools OpenAI runs itself (web search, file
  search, code interpreter, image generation, remote MCP; Codex always declares `web_search`) are left
  out: no other provider can run them, and the model simply does not see them.
- stateful features and tools without a Chat equivalent are a 400 naming the field:
  `previous_response_id` and `conversation` (the provider keeps no stored responses: send the whole
  conversation, as `store: false` clients do), `background`, `prompt`, `truncation: "auto"`,
  `item_reference` items, client-run built-in tools (computer use, local shell), `top_logprobs`,
  `max_tool_calls`.

Response: output items back into one assistant message — `message` text (and refusals), `reasoning`
summaries as `reasoning_content`, `function_call` / `custom_tool_call` items as `tool_calls` (a custom
call's string input wrapped as ``{"input": "…"}`` again); `status: "incomplete"` → finish reason
`length` (or `content_filter`).
"""

from __future__ import annotations

import time
from typing import Any

import orjson

from extproc.dialects.base import ClientTools, Target, TranslationError
from extproc.dialects.body_checks import (
    check_list,
    check_number,
    check_positive_int,
    is_int,
    malformed_as,
    not_understood,
)
from extproc.dialects.openai_chat.spec import keep_prompt_cache_key, user_field
from extproc.dialects.openai_responses.spec import CUSTOM_INPUT, flat_name
from extproc.dialects.usage import dict_of, tokens

# Tools OpenAI runs on its side (the client never sees their calls): left out for other providers. Built-in
# tools the *client* runs (computer use, local shell…) have call items without a Chat equivalent: a 400.
_HOSTED_TOOLS = ("web_search", "web_search_preview", "file_search", "code_interpreter", "image_generation", "mcp")
_STATEFUL = {
    "previous_response_id": "the provider keeps no stored responses; send the whole conversation in input "
                            "(store: false), or route to a provider of type openai-responses",
    "conversation": "the provider keeps no conversations; send the whole conversation in input, or route to a "
                    "provider of type openai-responses",
    "prompt": "stored prompt templates exist only on OpenAI's Responses API; send instructions instead",
    "background": "background responses exist only on OpenAI's Responses API",
}


# ------------------------------------------------------------------------------- request: Responses → Chat


def request(body: dict, target: Target) -> dict:
    """Responses `/v1/responses` body → Chat Completions body."""
    for key, why in _STATEFUL.items():
        if body.get(key):
            raise TranslationError(f"{key} is not supported here: {why}", key)
    if body.get("truncation") not in (None, "disabled"):
        raise TranslationError("truncation 'auto' is not supported by this provider; trim the input yourself",
                               "truncation")
    for key in ("top_logprobs", "max_tool_calls"):
        if body.get(key):
            raise TranslationError(f"{key} has no equivalent on this provider", key)
    out: dict = {"model": body.get("model")}
    messages: list[dict] = []
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise TranslationError("instructions must be a string", "instructions")
    if instructions:
        messages.append({"role": "system", "content": instructions})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    else:
        turn = _Turn(messages)
        for i, item in enumerate(check_list(body, "input")):
            if not isinstance(item, dict):
                raise TranslationError("each input item must be an object", f"input[{i}]")
            with malformed_as(f"input[{i}]"):
                turn.item(item, i)
        turn.flush()
    out["messages"] = messages

    max_tokens = check_positive_int(body, "max_output_tokens")
    if max_tokens is not None:
        out[target.max_tokens_field] = target.output_cap(out["model"], max_tokens)
    for key in ("temperature", "top_p"):
        if check_number(body, key) is not None:
            out[key] = body[key]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["user"] = user_field(user)
    keep_prompt_cache_key(body, out)
    if body.get("stream"):
        out["stream"] = True
        out["stream_options"] = {"include_usage": True}
    with malformed_as("tools"):
        tools = [chat for i, t in enumerate(check_list(body, "tools")) for chat in _tools(t, i)]
    with malformed_as("tool_choice"):
        choice = _tool_choice(body.get("tool_choice"))
    if tools:  # Chat providers reject tool_choice and parallel_tool_calls without tools
        out["tools"] = tools
        if isinstance(body.get("parallel_tool_calls"), bool):
            out["parallel_tool_calls"] = body["parallel_tool_calls"]
        if choice is not None:
            out["tool_choice"] = choice
    reasoning = body.get("reasoning")
    if reasoning is not None and not isinstance(reasoning, dict):
        raise TranslationError("reasoning must be an object such as {\"effort\": \"medium\"}", "reasoning")
    effort = (reasoning or {}).get("effort")
    if target.reasoning_effort and isinstance(effort, str) and effort != "none":
        out["reasoning_effort"] = effort
    with malformed_as("text.format"):
        fmt = _response_format(body.get("text"))
    if fmt is not None:
        out["response_format"] = fmt
    return out


class _Turn:
    """Builds Chat messages from input items: calls of one assistant turn share one assistant message,
    reasoning waits for the assistant message it belongs to."""

    def __init__(self, out: list[dict]) -> None:
        self.out = out
        self.assistant: dict | None = None  # the assistant message still taking calls
        self.reasoning: list[str] = []
        self.images: list[dict] = []  # images from tool outputs, for a user message after the tool messages

    def item(self, item: dict, i: int) -> None:
        kind = item.get("type") or ("message" if "role" in item else None)
        where = f"input[{i}]"
        if kind == "message":
            self._message(item, where)
        elif kind in ("function_call", "custom_tool_call"):
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise TranslationError(f"{kind} needs a call_id", f"{where}.call_id")
            if kind == "function_call":
                arguments = item.get("arguments")
                arguments = arguments if isinstance(arguments, str) and arguments else "{}"
            else:
                arguments = orjson.dumps({CUSTOM_INPUT: item.get("input") or ""}).decode()
            name = flat_name(item.get("namespace"), item.get("name"))
            call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
            self._open_assistant().setdefault("tool_calls", []).append(call)
        elif kind in ("function_call_output", "custom_tool_call_output"):
            self.assistant = None
            text, images = _tool_output(item.get("output"), f"{where}.output")
            self.out.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": text})
            self.images += images
        elif kind == "reasoning":
            self.reasoning += _reasoning_texts(item)
        elif kind == "item_reference":
            raise TranslationError("item references point at stored items, which this provider does not have; "
                                   "send the items themselves", f"{where}.type")
        else:
            raise TranslationError(f"input item type {kind!r} has no equivalent on this provider", f"{where}.type")

    def flush(self) -> None:
        self._images()
        if self.reasoning and self.assistant is not None and "reasoning_content" not in self.assistant:
            self.assistant["reasoning_content"] = "\n\n".join(self.reasoning)

    def _images(self) -> None:
        if self.images and (not self.out or self.out[-1]["role"] == "tool"):
            self.out.append({"role": "user", "content": self.images})
            self.images = []

    def _open_assistant(self) -> dict:
        if self.assistant is None:
            self._images()
            self.assistant = {"role": "assistant", "content": None}
            if self.reasoning:
                self.assistant["reasoning_content"] = "\n\n".join(self.reasoning)
                self.reasoning = []
            self.out.append(self.assistant)
        return self.assistant

    def _message(self, item: dict, where: str) -> None:
        role = item.get("role")
        content = item.get("content")
        if role == "assistant":
            text = _text_parts(content, f"{where}.content", ("output_text", "input_text", "refusal"))
            message = self._open_assistant()
            if text:
                message["content"] = (message["content"] or "") + text
            return
        self.assistant = None
        self._images()
        if role in ("system", "developer"):
            self.out.append({"role": "system",
                             "content": _text_parts(content, f"{where}.content", ("input_text", "text"))})
        elif role == "user":
            self.out.append({"role": "user", "content": _user_content(content, f"{where}.content")})
        else:
            raise TranslationError(f"unsupported message role {role!r}", f"{where}.role")


def _text_parts(content: object, where: str, kinds: tuple[str, ...]) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise TranslationError("content must be a string or an array of parts", where)
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in kinds:
            raise TranslationError(f"content part {kind!r} is not allowed here", f"{where}[{j}].type")
        texts.append(part.get("text") or part.get("refusal") or "")
    return "".join(texts) if "output_text" in kinds else "\n\n".join(texts)


def _user_content(content: object, where: str) -> str | list[dict]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise TranslationError("content must be a string or an array of parts", where)
    parts = [_input_part(p, f"{where}[{j}]") for j, p in enumerate(content)]
    if all(p["type"] == "text" for p in parts):
        return "\n\n".join(p["text"] for p in parts)
    return parts


def _input_part(part: Any, where: str) -> dict:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise TranslationError("only image_url images (URLs or data: URLs) can be sent to this provider; "
                                   "file_id needs OpenAI's own file store", f"{where}.image_url")
        image: dict = {"url": url}
        if part.get("detail") in ("low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise TranslationError("only inline file_data files can be sent to this provider", f"{where}.file_data")
        return {"type": "file", "file": {"filename": part.get("filename") or "document.pdf", "file_data": data}}
    raise TranslationError(f"content part {kind!r} has no equivalent on this provider", f"{where}.type")


def _tool_output(output: object, where: str) -> tuple[str, list[dict]]:
    """A tool output (a string, or input parts) → the tool message's text and any images."""
    if output is None or isinstance(output, str):
        return output or "", []
    if not isinstance(output, list):
        return orjson.dumps(output).decode(), []
    texts, images = [], []
    for j, part in enumerate(output):
        converted = _input_part(part, f"{where}[{j}]")
        if converted["type"] == "text":
            texts.append(converted["text"])
        else:
            images.append(converted)
    return "\n\n".join(texts), images


def _reasoning_texts(item: dict) -> list[str]:
    texts = []
    for key in ("summary", "content"):
        for part in item.get(key) or ():
            if isinstance(part, dict) and isinstance(part.get("text"), str) and part["text"]:
                texts.append(part["text"])
        if texts:
            break  # the summary, else the full reasoning text; never both (the same thought twice)
    return texts


def _tools(tool: object, i: int) -> list[dict]:
    """One Responses tool → Chat function tools: a namespace expands to its functions (named
    `namespace__name`), a hosted tool (web search…, which only OpenAI can run) is left out."""
    if not isinstance(tool, dict):
        raise TranslationError("each tool must be an object", f"tools[{i}]")
    kind = tool.get("type")
    if kind in _HOSTED_TOOLS:
        return []
    if kind != "namespace":
        return [_tool(tool, f"tools[{i}]")]
    namespace = tool.get("name")
    if not isinstance(namespace, str) or not namespace:
        raise TranslationError("a tool namespace needs a name", f"tools[{i}].name")
    inner = tool.get("tools")
    if not isinstance(inner, list):
        raise TranslationError("a tool namespace needs its tools", f"tools[{i}].tools")
    out = []
    for j, member in enumerate(inner):
        chat = _tool(member, f"tools[{i}].tools[{j}]")
        function = chat["function"]
        function["name"] = flat_name(namespace, function["name"])
        if tool.get("description"):
            function["description"] = f"{tool['description']}\n\n{function.get('description') or ''}".strip()
        out.append(chat)
    return out


def _tool(tool: object, where: str) -> dict:
    if not isinstance(tool, dict):
        raise TranslationError("each tool must be an object", where)
    kind = tool.get("type")
    name = tool.get("name")
    if kind in ("function", "custom") and (not isinstance(name, str) or not name):
        raise TranslationError("a tool needs a name", f"{where}.name")
    if kind == "function":
        function: dict = {"name": flat_name(None, name)}
        if tool.get("description"):
            function["description"] = tool["description"]
        function["parameters"] = tool.get("parameters") or {"type": "object", "properties": {}}
        if tool.get("strict") is True:
            function["strict"] = True
        return {"type": "function", "function": function}
    if kind == "custom":
        description = tool.get("description") or ""
        fmt = tool.get("format")
        if isinstance(fmt, dict) and fmt.get("type") == "grammar":
            description += (f"\n\nThe input must follow this {fmt.get('syntax') or ''} grammar:\n"
                            f"{fmt.get('definition') or ''}")
        schema = {"type": "object", "properties": {CUSTOM_INPUT: {"type": "string", "description": "the raw input"}},
                  "required": [CUSTOM_INPUT], "additionalProperties": False}
        function = {"name": flat_name(None, name), "description": description.strip(), "parameters": schema}
        return {"type": "function", "function": function}
    raise TranslationError(f"tool type {kind!r} is only available on OpenAI's Responses API; route to a provider of "
                           "type openai-responses or drop the tool", f"{where}.type")


def _tool_choice(choice: object) -> object:
    if choice is None or choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, dict) and choice.get("type") in ("function", "custom") and choice.get("name"):
        return {"type": "function", "function": {"name": flat_name(choice.get("namespace"), choice["name"])}}
    raise TranslationError(f"tool_choice {choice!r} has no equivalent on this provider; use auto, none, required or "
                           'a {"type": "function", "name": …}', "tool_choice")


def _response_format(text: object) -> dict | None:
    if text is None:
        return None
    if not isinstance(text, dict):
        raise TranslationError("text must be an object", "text")
    fmt = text.get("format")
    if fmt is None or fmt.get("type") == "text":
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {k: fmt[k] for k in ("name", "description", "schema", "strict") if k in fmt}
        return {"type": "json_schema", "json_schema": schema}
    raise TranslationError(f"text.format type {fmt.get('type')!r} is unknown", "text.format.type")


def usage_to_chat(usage: object) -> dict:
    """Responses usage → Chat usage."""
    usage = dict_of(usage)
    prompt, completion = tokens(usage.get("input_tokens")), tokens(usage.get("output_tokens"))
    cached = tokens(dict_of(usage.get("input_tokens_details")).get("cached_tokens"))
    out: dict = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": cached}}
    reasoning = tokens(dict_of(usage.get("output_tokens_details")).get("reasoning_tokens"))
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out



# --------------------------------------------------------------------------- response: Responses → Chat


def response(body: dict, target: Target | None = None, client_tools: ClientTools | None = None) -> dict:
    """Responses `response` → Chat `chat.completion`. A body of the wrong shape raises `not_understood`."""
    if not isinstance(body, dict):
        raise not_understood("not a JSON object")
    output = body.get("output")
    if not isinstance(output, list) or not all(isinstance(i, dict) for i in output):
        raise not_understood("output is not an array of items")
    texts: list[str] = []
    reasoning: list[str] = []
    refusal: list[str] = []
    calls: list[dict] = []
    for n, item in enumerate(output):
        kind = item.get("type")
        if kind == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and part.get("type") == "output_text":
                    texts.append(_str(part.get("text"), n))
                elif isinstance(part, dict) and part.get("type") == "refusal":
                    refusal.append(_str(part.get("refusal"), n))
        elif kind == "reasoning":
            reasoning += _reasoning_texts(item)
        elif kind in ("function_call", "custom_tool_call"):
            name = item.get("name")
            if not isinstance(name, str) or not name:
                raise not_understood(f"output[{n}] has no name")
            arguments = item.get("arguments") if kind == "function_call" else orjson.dumps(
                {CUSTOM_INPUT: item.get("input") or ""}).decode()
            calls.append({"id": item.get("call_id") or item.get("id"), "type": "function",
                          "function": {"name": name, "arguments": arguments if isinstance(arguments, str) else "{}"}})
    message: dict = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if refusal:
        message["refusal"] = "".join(refusal)
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "\n\n".join(reasoning)
    finish = finish_reason(body, bool(calls))
    created = body.get("created_at") if is_int(body.get("created_at")) else int(time.time())
    return {"id": f"chatcmpl-{body.get('id')}", "object": "chat.completion", "created": created,
            "model": body.get("model"),
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage_to_chat(body.get("usage"))}


def _str(value: object, n: int) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise not_understood(f"output[{n}] text is not a string")
    return value


def finish_reason(response: dict, has_calls: bool) -> str:
    if response.get("status") == "incomplete":
        reason = dict_of(response.get("incomplete_details")).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"
