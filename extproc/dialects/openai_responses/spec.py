"""OpenAI Responses API (`POST /v1/responses`; Codex CLI speaks only this): what the gateway writes itself
in this dialect (errors, stream error events, `/v1/responses/input_tokens` estimates), where its requests
keep tool schemas (namespaced functions included), which of a client's tools a Chat provider knows by
another name or shape, and how its usage reads.

Translation: `from_chat` and `from_chat_stream` (Responses from Chat), and
`extproc.dialects.openai_chat.from_responses` and `from_responses_stream` (Chat from Responses); the
registry (`extproc.dialects`) composes them with the Anthropic ⇄ Chat translators for Responses ⇄
Anthropic. Error bodies have the same envelope in both OpenAI APIs (``{"error": {message, type, param,
code}}``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson

from extproc.dialects.base import ClientTool, DialectSpec, Usage
from extproc.dialects.openai_chat.spec import CACHE_WRITE_TOKENS, error_obj, models_body
from extproc.dialects.openai_chat.spec import error_body as chat_error_body
from extproc.dialects.tools import short_tool_name
from extproc.dialects.usage import dict_of, normalised, tokens
from extproc.sse import encode_json

DIALECT = "openai-responses"
PATH = "/v1/responses"
CUSTOM_INPUT = "input"  # the one string argument a custom tool becomes as a function tool
# Hub (Chat) request fields → the Responses field a client wrote (for errors raised by a later leg).
_HUB_PARAMS = {"response_format": "text.format", "max_tokens": "max_output_tokens",
               "max_completion_tokens": "max_output_tokens", "messages": "input", "reasoning_effort": "reasoning",
               "tools": "tools", "tool_choice": "tool_choice"}


def error_body(status: int, message: str, param: str | None = None, code: str | None = None) -> bytes:
    """The Responses API's error envelope is Chat Completions' one."""
    return chat_error_body(status, message, param, code)


def stream_error_event(status: int, message: str) -> bytes:
    """An ``event: error`` for a stream the gateway itself fails mid-way (the translation broke). The data
    carries the Responses fields (`code`, `message`, `param`) and an ``error`` object, which the OpenAI
    SDKs raise as `APIError` mid-stream. It has no `sequence_number`: this writer knows nothing of the
    stream it ends (provider failures end translated streams with a numbered `response.failed`)."""
    error = error_obj(status, message)["error"]
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


def flat_name(namespace: object, name: Any) -> str:
    """A (namespaced) tool as one function name (`namespace__name`) that Chat and Anthropic accept,
    shortened by `short_tool_name`. A name that is not a string raises TypeError: a malformed tool."""
    return short_tool_name(f"{namespace}__{name}" if namespace else name)



def usage(value: object) -> Usage:
    """Responses usage (`input_tokens` counts cached tokens, as both OpenAI APIs do) → Usage."""
    if not isinstance(value, dict):
        return {}
    details_in, details_out = dict_of(value.get("input_tokens_details")), dict_of(value.get("output_tokens_details"))
    return normalised(tokens(value.get("input_tokens")), tokens(value.get("output_tokens")),
                      tokens(details_in.get("cached_tokens")), tokens(details_in.get(CACHE_WRITE_TOKENS)),
                      tokens(details_out.get("reasoning_tokens")))


_FINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")


def usage_in(doc: dict) -> Usage:
    """The usage of a `response`, or of a stream's final event, which holds it in its `response`."""
    holder = doc.get("response") if doc.get("type") in _FINAL_EVENTS else doc
    return usage(holder.get("usage")) if isinstance(holder, dict) else {}


SPEC = DialectSpec(DIALECT, error_body, stream_error_event, models_body, input_tokens_body, tool_schemas, usage,
                   usage_in, hub_param, client_tools)
