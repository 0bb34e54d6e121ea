"""Reads Envoy's rendered `local_reply_config` the way Envoy applies it, for tests: the first mapper
whose filter matches a reply Envoy generated itself (a response flag set) with this status and path."""

from __future__ import annotations

import re
from typing import Any


def _path_matches(match: dict[str, Any], path: str) -> bool:
    if "exact" in match:
        return path == match["exact"]
    if "prefix" in match:
        return path.startswith(match["prefix"])
    if "contains" in match:
        return match["contains"] in path
    return re.fullmatch(match["safe_regex"]["regex"], path) is not None


def _matches(flt: dict[str, Any], status: int, path: str) -> bool:
    if "and_filter" in flt:
        return all(_matches(f, status, path) for f in flt["and_filter"]["filters"])
    if "status_code_filter" in flt:
        comparison = flt["status_code_filter"]["comparison"]
        value = comparison["value"]["default_value"]
        return status == value if comparison["op"] == "EQ" else status >= value
    if "header_filter" in flt:
        header = flt["header_filter"]["header"]
        return header["name"] == ":path" and _path_matches(header["string_match"], path)
    if "response_flag_filter" in flt:
        return not flt["response_flag_filter"].get("flags")  # any flag; specific ones (UF, UH) are not set
    return False  # CEL filters: ext_proc failures and codec errors, not these replies


def local_reply_body(config: dict[str, Any], status: int, path: str) -> dict[str, Any]:
    for mapper in config["mappers"]:
        if _matches(mapper["filter"], status, path):
            return mapper["body_format_override"]["json_format"]
    raise AssertionError(f"no local reply mapper for {status} {path}")


def envelope_shape(body: dict[str, Any]) -> str:
    """anthropic, openai or both, from an error body's keys."""
    if "type" not in body:
        return "openai"
    return "both" if "code" in body["error"] else "anthropic"
