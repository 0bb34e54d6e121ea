"""Tools across dialects: names a provider accepts, the client's own names back, tool-call arguments,
and JSON Schemas cleaned for strict providers.

Every translator declares the client's tools to the provider and maps the provider's calls back; these
are the pieces they share.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import orjson

from extproc.dialects.base import ClientTool

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


def complete_object(text: str) -> bool:
    """Tool-call arguments that are a whole JSON object (or nothing at all, which means ``{}``)."""
    if not text.strip():
        return True
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


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
