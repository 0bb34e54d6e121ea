"""Metering the fast path without Python on the request's path.

Envoy reads the usage of a fast-path response itself: `json_to_metadata` (`response_rules`) for JSON
bodies and `sse_to_metadata` (the JSON content parser) for streams write the provider's usage fields
into the `lunaroute.usage` dynamic metadata namespace, unchanged (`wire.USAGE_FIELDS`: Anthropic's
`input_tokens`…, OpenAI's `prompt_tokens`…; the workers normalise them as they do bodies they read).
After the response, Envoy's `http_grpc` access logger ships one entry per fast-path request — with that
metadata, the gate's `client`, the body's `model`, the route, the upstream cluster, the status, the
timings and the rate-limit response headers — in batches to the AccessLogService every worker serves
(`extproc.metering`), which settles it through the ledger. Only requests the fast path picked run the usage
filters, and only their entries are logged: the Python path settles its own requests.
"""

from __future__ import annotations

from typing import Any

from ..wire import (
    EXTPROC_CLUSTER,
    FAST_HEADER,
    FAST_ROUTE_PREFIX,
    USAGE_JSON_FILTER,
    USAGE_LOG,
    USAGE_METADATA,
    USAGE_SSE_FILTER,
)
from .common import T, only_with_header

# Where each usage field sits: JSON bodies (Anthropic, OpenAI Chat, OpenAI Responses) and SSE events
# (Anthropic's message_start / message_delta, OpenAI's final chunk with `include_usage`, Responses'
# `response.completed`). A field written twice keeps the last value: Anthropic's message_delta carries
# the cumulative counts.
_JSON_PATHS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("usage", "input_tokens"), "input_tokens"),
    (("usage", "output_tokens"), "output_tokens"),
    (("usage", "cache_read_input_tokens"), "cache_read_input_tokens"),
    (("usage", "cache_creation_input_tokens"), "cache_creation_input_tokens"),
    (("usage", "prompt_tokens"), "prompt_tokens"),
    (("usage", "completion_tokens"), "completion_tokens"),
    (("usage", "prompt_tokens_details", "cached_tokens"), "cached_tokens"),
    (("usage", "prompt_tokens_details", "cache_write_tokens"), "cache_write_tokens"),
    (("usage", "input_tokens_details", "cached_tokens"), "cached_tokens"),
)
_SSE_PATHS = (
    *_JSON_PATHS,
    *((("message", *path), key) for path, key in _JSON_PATHS[:4]),
    *((("response", *path), key) for path, key in _JSON_PATHS if path[1].startswith(("input", "output"))),
)

# Response headers the access log carries for whoever subscribes (the key pool learns providers' 429s).
RATE_LIMIT_HEADERS = (
    "retry-after", "anthropic-ratelimit-requests-reset", "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-reset", "anthropic-ratelimit-output-tokens-reset",
    "anthropic-ratelimit-unified-reset", "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens",
)


# A compressed body is unreadable to both readers: fast-path requests ask providers for plain bytes (as the
# Python path does when it reads a response); the client gets them uncompressed.
PLAIN_RESPONSE = {"header": {"key": "accept-encoding", "value": "identity"},
                  "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}


def _rule(path: tuple[str, ...], key: str) -> dict[str, Any]:
    return {"selectors": [{"key": part} for part in path],
            "on_present": {"metadata_namespace": USAGE_METADATA, "key": key, "type": "NUMBER"}}


def usage_filters() -> list[dict[str, Any]]:
    """The two usage readers, skipped unless the fast path picked the request (its header, which only
    fast.lua can set: the gate removes a client's)."""
    # compared whole, parameters included: frameworks add a charset
    json_rules = {"rules": [_rule(path, key) for path, key in _JSON_PATHS],
                  "allow_content_types": ["application/json", "application/json; charset=utf-8"]}
    sse_rules = [{"rule": _rule(path, key)} for path, key in _SSE_PATHS]
    return [
        only_with_header(FAST_HEADER, USAGE_JSON_FILTER, {
            "@type": T + "envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "response_rules": json_rules}),
        only_with_header(FAST_HEADER, USAGE_SSE_FILTER, {
            "@type": T + "envoy.extensions.filters.http.sse_to_metadata.v3.SseToMetadata",
            "response_rules": {
                "content_parser": {"name": "envoy.content_parsers.json", "typed_config": {
                    "@type": T + "envoy.extensions.content_parsers.json.v3.JsonContentParser",
                    "rules": sse_rules}},
                "max_event_size": 1 << 20}}),  # a tool-use delta can be long
    ]


def usage_access_log(flush_s: float = 1.0) -> dict[str, Any]:
    """Fast-path entries (by route name) to the workers' AccessLogService, batched, after the response."""
    return {
        "name": "envoy.access_loggers.http_grpc",
        "filter": {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
            "@type": T + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
            "expression": f"xds.route_name.startsWith('{FAST_ROUTE_PREFIX}')"}}},
        "typed_config": {
            "@type": T + "envoy.extensions.access_loggers.grpc.v3.HttpGrpcAccessLogConfig",
            "common_config": {
                "log_name": USAGE_LOG,
                "transport_api_version": "V3",
                "grpc_service": {"envoy_grpc": {"cluster_name": EXTPROC_CLUSTER}},
                "buffer_flush_interval": f"{flush_s:g}s",
                "buffer_size_bytes": 16384,
            },
            "additional_response_headers_to_log": list(RATE_LIMIT_HEADERS),
        },
    }
