"""Pieces every part of the rendered Envoy config uses: type URLs, durations, header matchers,
per-route filter switches, inline JSON answers, and the Lua sources with their rendered settings."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from ..wire import EXTPROC_FILTER

T = "type.googleapis.com/"


def duration(seconds: float) -> str:
    return f"{seconds:g}s"


def header_input(name: str) -> dict[str, Any]:
    return {"name": name, "typed_config": {
        "@type": T + "envoy.type.matcher.v3.HttpRequestHeaderMatchInput", "header_name": name}}


def only_with_header(header: str, name: str, typed_config: dict[str, Any]) -> dict[str, Any]:
    """The filter `name`, skipped (ExtensionWithMatcher → SkipFilter) unless the request has `header`."""
    return {"name": name, "typed_config": {
        "@type": T + "envoy.extensions.common.matching.v3.ExtensionWithMatcher",
        "extension_config": {"name": name, "typed_config": typed_config},
        "xds_matcher": {"matcher_list": {"matchers": [{
            "predicate": {"not_matcher": {"single_predicate": {
                "input": header_input(header),
                "value_match": {"safe_regex": {"regex": ".+", "google_re2": {}}}}}},
            "on_match": {"action": {"name": "skip", "typed_config": {
                "@type": T + "envoy.extensions.filters.common.matcher.action.v3.SkipFilter"}}},
        }]}},
    }}


def ext_proc_off() -> dict[str, Any]:
    return {
        EXTPROC_FILTER: {
            "@type": T + "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
            "disabled": True,
        }
    }


def json_reply(status: int, body: str, headers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "direct_response": {"status": status, "body": {"inline_string": body}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": "application/json"},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
            *(headers or []),
        ],
        "typed_per_filter_config": ext_proc_off(),
    }


def envoy_source(name: str) -> str:
    """A file of envoy/, from the source tree (a checkout) or the installed package (a wheel)."""
    tree = Path(__file__).resolve().parents[2] / "envoy" / name
    if tree.is_file():
        return tree.read_text(encoding="utf-8")
    return resources.files("extproc._envoy").joinpath(name).read_text(encoding="utf-8")


def lua_literal(value: Any) -> str:
    """A Lua expression for a JSON-like value (the gate's CONFIG table)."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        # JSON string escapes are Lua escapes too, except \uXXXX, which orjson emits only below 0x20.
        return orjson.dumps(value).decode().replace("\\u00", "\\x")
    if isinstance(value, list | tuple):
        return "{" + ", ".join(lua_literal(v) for v in value) + "}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"[{lua_literal(str(k))}] = {lua_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Lua literal for {type(value).__name__}")
