"""OpenAI Responses API dialect (`POST /v1/responses`; Codex CLI speaks only this): the whole dialect here.

The gateway's dialects meet in one common form, OpenAI Chat Completions (the *hub*). This module writes
Responses ⇄ Chat once — request, response, stream and errors, both ways — and the registry
(`extproc.dialects`) composes it with the Anthropic ⇄ Chat translators for Responses ⇄ Anthropic.

Responses → Chat (a Responses client such as Codex, a Chat or, composed, an Anthropic provider):
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

Chat → Responses (Chat or, composed, Anthropic clients; a provider that speaks only Responses):
- system/developer, user, assistant and tool messages → input items; assistant `reasoning_content` is
  dropped (a Responses provider accepts reasoning only as its own items); `stop` has no Responses
  equivalent (400). `store: false` always: the gateway is stateless and no one will refer to the
  response later. Function tools are sent `strict: false` unless the client asked for strict (the
  Responses API's default is strict, which rejects ordinary schemas). `max_output_tokens` is at least 16,
  the Responses API's minimum.

Streams: Chat chunks → the Responses event grammar (`response.created`, `response.in_progress`, per item
`response.output_item.added` … `.done`, text and argument deltas, then `response.completed`, or
`response.incomplete` for length/content-filter stops, or `response.failed` for provider errors and
cut-off streams), `sequence_number` counting from 0. Items never interleave: the first function call
streams live, other calls (and text after them) are emitted whole after it; custom tool calls are
buffered, because their string input arrives JSON-encoded. The reverse stream reads those events back
into Chat chunks. Error bodies have the same envelope in both APIs (``{"error": {message, type, param,
code}}``).
"""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator

import orjson

from extproc.dialects import openai as O
from extproc.dialects.base import ClientTool, ClientTools, Target, TranslationError
from extproc.dialects.shapes import (
    CACHE_WRITE_TOKENS,
    MALFORMED,
    ToolCallSlots,
    body_excerpt,
    check_list,
    check_number,
    check_positive_int,
    first_choice,
    is_int,
    malformed_as,
    message_text,
    not_understood,
    reasoning_of,
    short_tool_name,
)
from extproc.sse import SSEEvent, SSEParser, encode, encode_json

DIALECT = "openai-responses"
PATH = "/v1/responses"
INPUT_TOKENS_PATH = "/v1/responses/input_tokens"
CHAT_PATH = "/v1/chat/completions"
OPENAI_USER_MAX = 64
MIN_OUTPUT_TOKENS = 16  # the Responses API rejects a smaller max_output_tokens
CUSTOM_INPUT = "input"  # the one string argument a custom tool becomes as a function tool

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
# Hub (Chat) request fields → the Responses field a client wrote (for errors raised by a later leg).
_HUB_PARAMS = {"response_format": "text.format", "max_tokens": "max_output_tokens",
               "max_completion_tokens": "max_output_tokens", "messages": "input", "reasoning_effort": "reasoning",
               "tools": "tools", "tool_choice": "tool_choice"}
_DONE = encode("[DONE]")
_CUT_OFF = "the provider's stream ended early; the response is incomplete"


# ------------------------------------------------------------------------------ the dialect's own bodies


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """The Responses API's error envelope is Chat Completions' one."""
    return O.error_body(status, message, param, code)


def stream_error_event(status: int, message: str) -> bytes:
    """An ``event: error`` for a stream the gateway itself fails mid-way (the translation broke). The data
    carries the Responses fields (`code`, `message`, `param`) and an ``error`` object, which the OpenAI
    SDKs raise as `APIError` mid-stream. It has no `sequence_number`: this writer knows nothing of the
    stream it ends (provider failures end translated streams with a numbered `response.failed`)."""
    error = O.error_obj(status, message)["error"]
    return encode_json({"type": "error", "code": error["code"] or error["type"], "message": message,
                        "param": None, "error": error}, "error")


def input_tokens_estimate(body: dict) -> int:
    """A deliberately rough token count (about 4 characters per token) of a Responses request, for
    `/v1/responses/input_tokens` when the provider cannot count. Never 0 for a request with content."""
    chars = len(body.get("instructions") or "") if isinstance(body.get("instructions"), str) else 0
    items = body.get("input")
    if isinstance(items, str):
        chars += len(items)
    elif isinstance(items, list):
        for item in items:
            chars += 8 + _item_chars(item)
    if body.get("tools"):
        chars += len(orjson.dumps(body["tools"]))
    return max(chars // 4, 1)


def input_tokens_body(body: dict) -> bytes:
    return orjson.dumps({"object": "response.input_tokens", "input_tokens": input_tokens_estimate(body)})


def _item_chars(item: object) -> int:
    if not isinstance(item, dict):
        return 0
    n = 0
    for key in ("content", "output", "arguments", "input", "name", "summary"):
        value = item.get(key)
        if isinstance(value, str):
            n += len(value)
        elif isinstance(value, list):
            n += sum(len(p.get("text") or "") for p in value if isinstance(p, dict) and isinstance(p.get("text"), str))
    return n


def tool_schemas(body: dict) -> Iterator[tuple[dict, str]]:
    """Where a request's tool schemas live (namespaced functions included): (holder, key) pairs."""
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict):
            continue
        for member in (tool.get("tools") or ()) if tool.get("type") == "namespace" else (tool,):
            if isinstance(member, dict) and isinstance(member.get("parameters"), dict):
                yield member, "parameters"


def hub_param(param: str) -> str:
    """The Responses field behind a Chat request field, for a 400 raised by a later translation leg."""
    head = param.split(".", 1)[0].split("[", 1)[0]
    return _HUB_PARAMS.get(head, param)


def client_tools(body: dict) -> dict[str, ClientTool]:
    """The request's tools that reach a Chat provider as functions of another name or shape: custom
    (freeform) tools, the functions inside tool namespaces, and functions whose names are too long
    (`short_tool_name`). Their calls are mapped back with this."""
    out: dict[str, ClientTool] = {}
    tools = body.get("tools")
    for tool in tools if isinstance(tools, list) else ():
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            continue
        if tool.get("type") == "custom":
            out[flat_name(None, tool["name"])] = ClientTool(tool["name"], None, True)
        elif tool.get("type") == "function" and flat_name(None, tool["name"]) != tool["name"]:
            out[flat_name(None, tool["name"])] = ClientTool(tool["name"])
        elif tool.get("type") == "namespace":
            for inner in tool.get("tools") or ():
                if isinstance(inner, dict) and isinstance(inner.get("name"), str):
                    out[flat_name(tool["name"], inner["name"])] = ClientTool(
                        inner["name"], tool["name"], inner.get("type") == "custom")
    return out


def flat_name(namespace: str | None, name: str) -> str:
    """A (namespaced) tool as one function name (`namespace__name`) that Chat and Anthropic accept,
    shortened by `short_tool_name`."""
    return short_tool_name(f"{namespace}__{name}" if namespace else name)


# ------------------------------------------------------------------------------- request: Responses → Chat


def to_chat_request(body: dict, target: Target) -> dict:
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
        cap = target.max_tokens_for(out["model"])
        out[target.max_tokens_field] = min(max_tokens, cap) if cap else max_tokens
    for key in ("temperature", "top_p"):
        if check_number(body, key) is not None:
            out[key] = body[key]
    user = body.get("user") or body.get("safety_identifier")
    if isinstance(user, str) and user:
        out["user"] = user if len(user) <= OPENAI_USER_MAX else hashlib.sha256(user.encode()).hexdigest()
    _cache_key(body, out)
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


def _input_part(part: object, where: str) -> dict:
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


# ------------------------------------------------------------------------------- request: Chat → Responses


def from_chat_request(body: dict, target: Target) -> dict:
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
        cap = target.max_tokens_for(out["model"])
        out["max_output_tokens"] = max(min(wanted, cap) if cap else wanted, MIN_OUTPUT_TOKENS)
    for key in ("temperature", "top_p"):
        if check_number(body, key) is not None:
            out[key] = body[key]
    if isinstance(body.get("user"), str) and body["user"]:
        out["user"] = body["user"]
    _cache_key(body, out)
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


def _cache_key(body: dict, out: dict) -> None:
    """`prompt_cache_key` means the same in both OpenAI APIs: the client's own key goes on."""
    key = body.get("prompt_cache_key")
    if isinstance(key, str) and key:
        out["prompt_cache_key"] = key


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


def _chat_text(content: object, where: str, kinds: tuple[str, ...] = ("text",)) -> str:
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


# ------------------------------------------------------------------------------------------------ usage


def _n(value: object) -> int:
    return value if is_int(value) and value > 0 else 0


def _d(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def usage_from_chat(usage: object) -> dict:
    """Chat usage → Responses usage (`input_tokens` counts cached tokens, as both OpenAI APIs do)."""
    usage = _d(usage)
    prompt, completion = _n(usage.get("prompt_tokens")), _n(usage.get("completion_tokens"))
    cached = _n(_d(usage.get("prompt_tokens_details")).get("cached_tokens")) or _n(usage.get("prompt_cache_hit_tokens"))
    written = _n(_d(usage.get("prompt_tokens_details")).get(CACHE_WRITE_TOKENS))
    reasoning = _n(_d(usage.get("completion_tokens_details")).get("reasoning_tokens"))
    details = {"cached_tokens": cached, **({CACHE_WRITE_TOKENS: written} if written else {})}
    return {"input_tokens": prompt, "input_tokens_details": details,
            "output_tokens": completion, "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": prompt + completion}


def usage_to_chat(usage: object) -> dict:
    """Responses usage → Chat usage."""
    usage = _d(usage)
    prompt, completion = _n(usage.get("input_tokens")), _n(usage.get("output_tokens"))
    cached = _n(_d(usage.get("input_tokens_details")).get("cached_tokens"))
    out: dict = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
                 "prompt_tokens_details": {"cached_tokens": cached}}
    reasoning = _n(_d(usage.get("output_tokens_details")).get("reasoning_tokens"))
    if reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    return out


# --------------------------------------------------------------------------- response: Chat → Responses


def _status(finish: object) -> tuple[str, dict | None]:
    """(status, incomplete_details) for a Chat finish reason."""
    if finish == "length":
        return "incomplete", {"reason": "max_output_tokens"}
    if finish == "content_filter":
        return "incomplete", {"reason": "content_filter"}
    return "completed", None


def _response(rid: str, model: object, created: int, status: str, output: list[dict], usage: dict | None,
              incomplete: dict | None = None, error: dict | None = None) -> dict:
    return {"id": rid, "object": "response", "created_at": created, "status": status, "error": error,
            "incomplete_details": incomplete, "model": model, "output": output, "usage": usage}


def _response_id(raw: object) -> str:
    raw = str(raw or "gateway").removeprefix("chatcmpl-")
    return raw if raw.startswith("resp_") else f"resp_{raw}"


def _call_item(call_id: str, name: str, arguments: str, tools: ClientTools | None,
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


def response_from_chat(body: dict, target: Target | None = None, tools: ClientTools | None = None) -> dict:
    """Chat `chat.completion` → Responses `response`. A body of the wrong shape raises `not_understood`."""
    choice, message = first_choice(body)
    rid = _response_id(body.get("id"))
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
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list) or not all(isinstance(c, dict) for c in calls):
        raise not_understood("tool_calls is not an array of objects")
    for n, call in enumerate(calls):
        function = call.get("function") or {}
        name = function.get("name")
        if not isinstance(name, str) or not name:
            raise not_understood(f"tool_calls[{n}] has no function name")
        call_id = call.get("id") if isinstance(call.get("id"), str) and call.get("id") else f"call_{n}"
        arguments = function.get("arguments")
        output.append(_call_item(call_id, name, arguments if isinstance(arguments, str) else "{}", tools))
    status, incomplete = _status(choice.get("finish_reason"))
    created = body.get("created") if is_int(body.get("created")) else int(time.time())
    return _response(rid, body.get("model"), created, status, output, usage_from_chat(body.get("usage")), incomplete)


# --------------------------------------------------------------------------- response: Responses → Chat


def response_to_chat(body: dict, target: Target | None = None) -> dict:
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
    finish = _finish(body, bool(calls))
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


def _finish(response: dict, has_calls: bool) -> str:
    if response.get("status") == "incomplete":
        reason = _d(response.get("incomplete_details")).get("reason")
        return "content_filter" if reason == "content_filter" else "length"
    return "tool_calls" if has_calls else "stop"


# ------------------------------------------------------------------------------------------------ errors


def _keep(param: str) -> str:
    return param


def provider_error(status: int, body: bytes, param_of: Callable[[str], str]) -> tuple[int, bytes]:
    """Any OpenAI-style provider error (Chat or Responses, JSON or not) → the shared OpenAI envelope,
    keeping the provider's message, type and code; `param_of` renames the field for the client."""
    try:
        data = orjson.loads(body) if body else None
    except orjson.JSONDecodeError:
        data = None
    err = data.get("error") if isinstance(data, dict) else None
    if isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"]:
        kind, code = O.error_type(status)
        out = {"message": err["message"], "type": err.get("type") if isinstance(err.get("type"), str) else kind,
               "param": param_of(err["param"]) if isinstance(err.get("param"), str) else None,
               "code": err.get("code") if isinstance(err.get("code"), str) else code}
        return status, orjson.dumps({"error": out})
    if isinstance(err, str) and err:
        return status, O.error_body(status, err)
    return status, O.error_body(status, body_excerpt(status, body))


# ---------------------------------------------------------------------------- stream: Chat → Responses


class _Call:
    __slots__ = ("call_id", "name", "args", "index")

    def __init__(self, index: int) -> None:
        self.index = index
        self.call_id = ""
        self.name = ""
        self.args: list[str] = []


class ChatToResponsesStream:
    """Chat Completions chunks → Responses stream events. `feed` provider bytes, `close` at the end."""

    def __init__(self, target: Target | None = None, input_tokens_estimate: int = 0,
                 client_tools: ClientTools | None = None) -> None:
        self._parser = SSEParser()
        self._drop_reasoning = target is not None and target.reasoning == "drop"
        self._tools = client_tools or {}
        self._estimate = input_tokens_estimate
        self._out: list[bytes] = []
        self._seq = 0
        self._rid = "resp_stream"
        self._model: object = None
        self._created = 0
        self._started = False
        self._done = False
        self._output: list[dict] = []  # finished items, for the final response
        self._open: dict | None = None  # the item streaming now: reasoning | message | function_call
        self._text: list[str] = []  # the open item's text or arguments so far
        self._calls: dict[int, _Call] = {}  # by ToolCallSlots key
        self._slots = ToolCallSlots()
        self._live: int | None = None  # the provider index of the call streaming live
        self._later: list[tuple[str, list[str]]] = []  # text/reasoning that came after the calls began
        self._finish: str | None = None
        self._usage: dict | None = None
        self._usage_early = False
        self._chars = 0
        self.usage: dict | None = None  # final Responses usage, once the stream has ended

    def feed(self, chunk: bytes) -> bytes:
        self._handle(self._parser.feed(chunk))
        return self._flush()

    def close(self) -> bytes:
        self._handle(self._parser.close())
        if not self._done:
            if self._finish:
                self._finalize()
            else:
                self._fail("server_error", _CUT_OFF if self._started else "the provider's stream ended without data")
        return self._flush()

    def _flush(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def _emit(self, kind: str, payload: dict) -> None:
        self._out.append(encode_json({"type": kind, "sequence_number": self._seq, **payload}, kind))
        self._seq += 1

    def _handle(self, events: list[SSEEvent]) -> None:
        for event in events:
            if self._done:
                return
            if event.data.strip() == "[DONE]":
                if self._started or self._finish:
                    self._finalize()
                continue
            try:
                chunk = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(chunk, dict):
                with contextlib.suppress(*MALFORMED):  # a chunk of the wrong shape is skipped
                    self._chunk(chunk)

    def _chunk(self, chunk: dict) -> None:
        if "error" in chunk:
            error = _d(chunk["error"]) or {"message": str(chunk["error"])}
            code = error.get("code") if isinstance(error.get("code"), str) else "server_error"
            self._fail(code, str(error.get("message") or "provider stream error"))
            return
        if not self._started:
            self._start(chunk)
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._usage = usage
            if not self._finish and not any(_d(c).get("finish_reason") for c in chunk.get("choices") or ()):
                self._usage_early = True
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and not choice.get("index"):
                self._choice(choice)
        if self._finish and self._usage and not self._usage_early:
            self._finalize()

    def _start(self, chunk: dict) -> None:
        self._started = True
        self._rid = _response_id(chunk.get("id"))
        self._model = chunk.get("model")
        self._created = chunk.get("created") if is_int(chunk.get("created")) else int(time.time())
        response = _response(self._rid, self._model, self._created, "in_progress", [], None)
        self._emit("response.created", {"response": response})
        self._emit("response.in_progress", {"response": response})

    def _choice(self, choice: dict) -> None:
        delta = _d(choice.get("delta"))
        reasoning = reasoning_of(delta)
        if reasoning and not self._drop_reasoning:
            self._content("reasoning", reasoning)
        content = delta.get("content")
        if isinstance(content, str) and content:
            self._content("message", content)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._call(call)
        finish = choice.get("finish_reason")
        if isinstance(finish, str) and finish:
            self._finish = finish

    # -- items -----------------------------------------------------------------------------------

    def _content(self, kind: str, text: str) -> None:
        self._chars += len(text)
        if self._calls:  # items never interleave: after the calls
            if not self._later or self._later[-1][0] != kind:
                self._later.append((kind, []))
            self._later[-1][1].append(text)
            return
        if self._open is None or self._open["type"] != kind:
            self._open_item(kind)
        self._delta(text)

    def _open_item(self, kind: str, call: _Call | None = None) -> None:
        self._close_item()
        index = len(self._output)
        base = f"{self._rid[5:]}_{index}"
        if kind == "reasoning":
            item: dict = {"type": "reasoning", "id": f"rs_{base}", "summary": []}
        elif kind == "message":
            item = {"type": "message", "id": f"msg_{base}", "status": "in_progress", "role": "assistant",
                    "content": []}
        else:
            assert call is not None
            item = _call_item(call.call_id, call.name, "", self._tools, "in_progress")
        self._open = item
        self._text = []
        self._emit("response.output_item.added", {"output_index": index, "item": item})
        ids = {"item_id": item["id"], "output_index": index}
        if kind == "reasoning":
            self._emit("response.reasoning_summary_part.added",
                       {**ids, "summary_index": 0, "part": {"type": "summary_text", "text": ""}})
        elif kind == "message":
            self._emit("response.content_part.added",
                       {**ids, "content_index": 0, "part": {"type": "output_text", "text": "", "annotations": []}})

    def _delta(self, text: str) -> None:
        item = self._open
        assert item is not None
        self._text.append(text)
        ids = {"item_id": item["id"], "output_index": len(self._output)}
        if item["type"] == "reasoning":
            self._emit("response.reasoning_summary_text.delta", {**ids, "summary_index": 0, "delta": text})
        elif item["type"] == "message":
            self._emit("response.output_text.delta", {**ids, "content_index": 0, "delta": text, "logprobs": []})
        else:
            self._emit("response.function_call_arguments.delta", {**ids, "delta": text})

    def _close_item(self) -> None:
        item = self._open
        if item is None:
            return
        text = "".join(self._text)
        ids = {"item_id": item["id"], "output_index": len(self._output)}
        if item["type"] == "reasoning":
            part = {"type": "summary_text", "text": text}
            self._emit("response.reasoning_summary_text.done", {**ids, "summary_index": 0, "text": text})
            self._emit("response.reasoning_summary_part.done", {**ids, "summary_index": 0, "part": part})
            item = {**item, "summary": [part]}
        elif item["type"] == "message":
            part = {"type": "output_text", "text": text, "annotations": []}
            self._emit("response.output_text.done", {**ids, "content_index": 0, "text": text, "logprobs": []})
            self._emit("response.content_part.done", {**ids, "content_index": 0, "part": part})
            item = {**item, "status": "completed", "content": [part]}
        else:
            self._emit("response.function_call_arguments.done", {**ids, "name": item["name"], "arguments": text})
            item = {**item, "status": "completed", "arguments": text}
        self._emit("response.output_item.done", {"output_index": len(self._output), "item": item})
        self._output.append(item)
        self._open = None

    def _call(self, delta: dict) -> None:
        index = delta.get("index") if is_int(delta.get("index")) else len(self._calls)
        index = self._slots.key(index, delta.get("id"))
        function = _d(delta.get("function"))
        call = self._calls.get(index)
        if call is None:
            call = self._calls[index] = _Call(index)
            call_id = delta.get("id")
            call.call_id = call_id if isinstance(call_id, str) and call_id else f"call_{self._rid[5:]}_{index}"
        name = function.get("name")
        if isinstance(name, str) and name and not call.name:
            call.name = name
        args = function.get("arguments")
        if isinstance(args, str) and args:
            self._chars += len(args)
            call.args.append(args)
        custom = call.name in self._tools and self._tools[call.name].custom
        if self._live is None and call.name and len(self._calls) == 1 and not custom:
            self._live = index
            self._open_item("function_call", call)
        if self._live == index and call.args:
            text = "".join(call.args)
            call.args = []
            self._delta(text)

    def _finalize(self) -> None:
        self._close_item()
        for index in sorted(self._calls):
            call = self._calls[index]
            if index == self._live:
                continue
            self._whole_call(call)
        for kind, parts in self._later:
            self._open_item(kind)
            self._delta("".join(parts))
            self._close_item()
        usage = self.usage = self._final_usage()
        status, incomplete = _status(self._finish)
        response = _response(self._rid, self._model, self._created, status, self._output, usage, incomplete)
        self._emit("response.completed" if status == "completed" else "response.incomplete", {"response": response})
        self._done = True

    def _whole_call(self, call: _Call) -> None:
        """A buffered call: added, its whole arguments (or custom input) at once, done."""
        arguments = "".join(call.args)
        index = len(self._output)
        done = _call_item(call.call_id, call.name or "unknown", arguments, self._tools)
        item = {**done, "status": "in_progress", **({"input": ""} if "input" in done else {"arguments": ""})}
        ids = {"item_id": item["id"], "output_index": index}
        self._emit("response.output_item.added", {"output_index": index, "item": item})
        if done["type"] == "custom_tool_call":
            self._emit("response.custom_tool_call_input.delta", {**ids, "delta": done["input"]})
            self._emit("response.custom_tool_call_input.done", {**ids, "input": done["input"]})
        else:
            self._emit("response.function_call_arguments.delta", {**ids, "delta": arguments})
            self._emit("response.function_call_arguments.done", {**ids, "name": done["name"], "arguments": arguments})
        self._emit("response.output_item.done", {"output_index": index, "item": done})
        self._output.append(done)

    def _final_usage(self) -> dict:
        if self._usage:
            return usage_from_chat(self._usage)
        out = (self._chars + 3) // 4
        return {"input_tokens": self._estimate, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": out,
                "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": self._estimate + out}

    def _fail(self, code: str, message: str) -> None:
        """`response.failed`: what a Responses client reads as a failed response; nothing follows it."""
        if not self._started:
            self._start({})
        self.usage = self._final_usage()
        response = _response(self._rid, self._model, self._created, "failed", self._output, self.usage,
                             error={"code": code, "message": message})
        self._emit("response.failed", {"response": response})
        self._done = True


# ---------------------------------------------------------------------------- stream: Responses → Chat


class ResponsesToChatStream:
    """Responses stream events → Chat Completions chunks. `feed` provider bytes, `close` at the end."""

    def __init__(self, include_usage: bool = False) -> None:
        self._parser = SSEParser()
        self._include_usage = include_usage
        self._out: list[bytes] = []
        self._id = "chatcmpl-stream"
        self._model: object = None
        self._created = int(time.time())
        self._calls: dict[int, int] = {}  # output_index → Chat tool_calls index
        self._streamed: set[int] = set()  # output indexes whose arguments came as deltas
        self._started = False
        self._done = False
        self.usage: dict | None = None

    def feed(self, chunk: bytes) -> bytes:
        self._handle(self._parser.feed(chunk))
        return self._flush()

    def close(self) -> bytes:
        self._handle(self._parser.close())
        if not self._done:
            message = _CUT_OFF if self._started else "the provider's stream ended without data"
            self.usage = usage_to_chat(None)
            self._out.append(O.stream_error_chunk(502, message))
            self._done = True
        return self._flush()

    def _flush(self) -> bytes:
        out, self._out = b"".join(self._out), []
        return out

    def _handle(self, events: list[SSEEvent]) -> None:
        for event in events:
            if self._done:
                return
            try:
                data = orjson.loads(event.data)
            except orjson.JSONDecodeError:
                continue
            if isinstance(data, dict):
                with contextlib.suppress(*MALFORMED):
                    self._event(data.get("type") or event.event, data)

    def _chunk(self, delta: dict | None, finish: str | None = None, usage: dict | None = None) -> None:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]
        payload: dict = {"id": self._id, "object": "chat.completion.chunk", "created": self._created,
                         "model": self._model, "choices": choices}
        if usage is not None:
            payload["usage"] = usage
        self._out.append(encode_json(payload))

    def _event(self, kind: object, data: dict) -> None:
        if kind == "response.created":
            response = _d(data.get("response"))
            self._started = True
            self._id = f"chatcmpl-{response.get('id') or 'stream'}"
            self._model = response.get("model")
            if is_int(response.get("created_at")):
                self._created = response["created_at"]
            self._chunk({"role": "assistant", "content": ""})
        elif kind in ("response.output_text.delta", "response.refusal.delta") and data.get("delta"):
            self._chunk({"content": data["delta"]})
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta") and data.get("delta"):
            self._chunk({"reasoning_content": data["delta"]})
        elif kind == "response.output_item.added":
            item = _d(data.get("item"))
            if item.get("type") == "function_call":
                index = self._calls[data.get("output_index")] = len(self._calls)
                call = {"index": index, "id": item.get("call_id"), "type": "function",
                        "function": {"name": item.get("name"), "arguments": ""}}
                self._chunk({"tool_calls": [call]})
        elif kind == "response.function_call_arguments.delta" and data.get("delta"):
            index = self._calls.get(data.get("output_index"))
            if index is not None:
                self._streamed.add(data["output_index"])
                self._chunk({"tool_calls": [{"index": index, "function": {"arguments": data["delta"]}}]})
        elif kind == "response.output_item.done":
            item = _d(data.get("item"))
            index = self._calls.get(data.get("output_index"))
            if index is not None and data.get("output_index") not in self._streamed and item.get("arguments"):
                self._chunk({"tool_calls": [{"index": index, "function": {"arguments": item["arguments"]}}]})
        elif kind in ("response.completed", "response.incomplete"):
            response = _d(data.get("response"))
            self.usage = usage_to_chat(response.get("usage"))
            self._chunk({}, _finish(response, bool(self._calls)))
            if self._include_usage:
                self._chunk(None, usage=self.usage)
            self._out.append(_DONE)
            self._done = True
        elif kind in ("response.failed", "error"):
            error = _d(_d(data.get("response")).get("error")) if kind == "response.failed" else data
            error = _d(error.get("error")) or error
            self.usage = usage_to_chat(_d(data.get("response")).get("usage"))
            self._out.append(O.stream_error_chunk(500, str(error.get("message") or "provider stream error"),
                                                  error.get("code") if isinstance(error.get("code"), str) else None))
            self._done = True


# ------------------------------------------------------------------------------------------ translators


class ResponsesToChat:
    """Translator for client=openai-responses, provider=openai (the hub)."""

    client = DIALECT
    provider = "openai"

    def request_path(self, client_path: str) -> str:
        return CHAT_PATH if client_path.rstrip("/") == PATH else client_path

    def request_body(self, body: dict, target: Target) -> dict:
        try:
            return to_chat_request(body, target)
        except MALFORMED as exc:
            raise TranslationError(f"malformed request body: {exc}") from exc

    def response_body(self, body: dict, target: Target | None = None,
                      client_tools: ClientTools | None = None) -> dict:
        try:
            return response_from_chat(body, target, client_tools)
        except MALFORMED as exc:
            raise not_understood(str(exc)) from exc

    def stream(self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
               client_tools: ClientTools | None = None) -> ChatToResponsesStream:
        return ChatToResponsesStream(target, input_tokens_estimate, client_tools)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return provider_error(status, body, hub_param)


class ChatToResponses:
    """Translator for client=openai (the hub), provider=openai-responses."""

    client = "openai"
    provider = DIALECT

    def request_path(self, client_path: str) -> str:
        return PATH if client_path.rstrip("/") == CHAT_PATH else client_path

    def request_body(self, body: dict, target: Target) -> dict:
        try:
            return from_chat_request(body, target)
        except MALFORMED as exc:
            raise TranslationError(f"malformed request body: {exc}") from exc

    def response_body(self, body: dict, target: Target | None = None,
                      client_tools: ClientTools | None = None) -> dict:
        try:
            return response_to_chat(body, target)
        except MALFORMED as exc:
            raise not_understood(str(exc)) from exc

    def stream(self, target: Target | None = None, *, input_tokens_estimate: int = 0, include_usage: bool = False,
               client_tools: ClientTools | None = None) -> ResponsesToChatStream:
        return ResponsesToChatStream(include_usage)

    def error(self, status: int, body: bytes) -> tuple[int, bytes]:
        return provider_error(status, body, _keep)

