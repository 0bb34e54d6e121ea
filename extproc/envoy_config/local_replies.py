"""Envoy's own error replies (no healthy upstream, connect failure, timeout, body too large, a
failed ext_proc stream) rewritten in the dialect of the path, with the envelopes Python answers with."""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..answers import error_bodies
from ..config import Config
from ..endpoints import REPLY_SHAPES, Shape
from .common import T

# What a client hears when no ext_proc worker can take its request (all down, or the one holding it died).
PROCESSOR_UNAVAILABLE = ("the gateway's request processor is unavailable (its ext_proc workers are down, "
                         "restarting or not answering); retry shortly")


# Envoy's own error replies (no healthy upstream, connect failure, timeout, body too large) in the
# dialect of the path: an Anthropic or OpenAI SDK then raises its usual error instead of choking on
# plain text. Only replies Envoy generated itself (a response flag is set) are rewritten; the gateway's
# own answers and providers' errors pass untouched. A translated request's path is the provider's, so
# its reply is written in the provider's dialect and translated back like any provider error. The
# envelopes come from the dialect modules' tables (`answers.error_bodies`), the ones Python answers
# with: one shape per status, whoever produced it.
_ENVOY_STATUSES = (404, 408, 413, 429, 502, 503, 504)
# Envoy could not connect to the provider (UF) or had no host for it (UH): a 502 that names the provider's
# cluster, instead of a 503 "no healthy upstream" that reads as if the provider were overloaded.
UNREACHABLE = "the gateway could not reach the provider behind cluster %UPSTREAM_CLUSTER%: %LOCAL_REPLY_BODY%"
_UNREACHABLE_FLAGS = ["UF", "UH"]


# Statuses on API paths that only Envoy produces (the gateway's own answers there are 400/404/500).
_ENVOY_ONLY = frozenset({413, 502, 503, 504})


def _envelope(status: int, message: str, shape: str) -> dict[str, Any]:
    return orjson.loads(error_bodies(status, message)[shape])


def reply_paths(cfg: Config) -> list[tuple[dict[str, Any], Shape]]:
    """Which envelope a local reply gets, by the request's path as Envoy holds it then: an API family
    of the endpoint table (`endpoints.REPLY_SHAPES`), as the client sent it or as the workers rewrote
    it for a provider (its base path in front: the reply is then in the provider's dialect, and
    translated back like any provider error); every other path the envelope both SDKs read. Matched
    as a prefix, never as a fragment: `/v1/organizations/o/responses` is not the Responses API."""
    out: list[tuple[dict[str, Any], Shape]] = []
    for family, shape in REPLY_SHAPES:
        prefixes = dict.fromkeys([family, *(p.upstream_path(family) for p in cfg.providers.values())])
        alternatives = "|".join(re.escape(p) for p in prefixes)
        out.append(({"safe_regex": {"regex": f"^(?:{alternatives})(?:[/?].*)?$"}}, shape))
    out.append(({"prefix": "/"}, "both"))
    return out


def _path_filter(match: dict[str, Any]) -> dict[str, Any]:
    return {"header_filter": {"header": {"name": ":path", "string_match": match}}}


def _local_reply_mapper(status: int | None, path: dict[str, Any], body: dict[str, Any]) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"status_code_filter": {"comparison": {"op": "EQ" if status else "GE", "value": {
            "default_value": status or 400, "runtime_key": f"lunaroute.local_reply.{status or 'min'}"}}}},
        _path_filter(path),
    ]
    if status not in _ENVOY_ONLY:
        filters.append({"response_flag_filter": {}})  # any flag: Envoy failed, not the gateway answering
    return {"filter": {"and_filter": {"filters": filters}}, "body_format_override": {"json_format": body}}


def _unreachable_mappers(shapes: list[tuple[dict[str, Any], Shape]]) -> list[dict[str, Any]]:
    return [{
        "filter": {"and_filter": {"filters": [{"response_flag_filter": {"flags": _UNREACHABLE_FLAGS}},
                                              _path_filter(path)]}},
        "status_code": 502,
        "body_format_override": {"json_format": _envelope(502, UNREACHABLE, shape)},
    } for path, shape in shapes]


def _cel(expression: str) -> dict[str, Any]:
    """A local-reply filter on a CEL expression (the only filter that reads response code details)."""
    return {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
        "@type": T + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter", "expression": expression}}}


def _processor_unavailable_mappers(shapes: list[tuple[dict[str, Any], Shape]]) -> list[dict[str, Any]]:
    """The ext_proc stream failed (no worker reachable, the one holding the request died, or it did not
    answer within `message_timeout`): a 503 in each path's dialect saying what is down. Told apart from
    other local replies by Envoy's response code details (`ext_proc_error_gRPC_error_…`,
    `ext_proc_error_per-message_timeout_exceeded`), which only a CEL filter can read."""
    failed = _cel("response.code_details.startsWith('ext_proc_error')")
    openai = {"error": {"message": PROCESSOR_UNAVAILABLE, "type": "server_error", "param": None,
                        "code": "processor_unavailable"}}
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": PROCESSOR_UNAVAILABLE}}
    both = {"type": "error", "error": {**anthropic["error"], "param": None, "code": "processor_unavailable"}}
    bodies = {"openai": openai, "anthropic": anthropic, "both": both}
    return [{
        "filter": {"and_filter": {"filters": [failed, _path_filter(path)]}},
        "status_code": 503,
        "body_format_override": {"json_format": bodies[shape]},
    } for path, shape in shapes]


def local_reply_config(cfg: Config) -> dict[str, Any]:
    """Chat and Responses paths get OpenAI's envelope, Messages paths Anthropic's, every other path
    (bypassed APIs of either vendor) Anthropic's envelope carrying OpenAI's fields too, which both SDKs
    read (see `reply_paths`)."""
    shapes = reply_paths(cfg)
    mappers: list[dict[str, Any]] = [{
        # no ext_proc worker answers: not ready (503, what probes and load balancers expect), not a 500
        "filter": {"and_filter": {"filters": [
            {"status_code_filter": {"comparison": {"op": "GE", "value": {
                "default_value": 500, "runtime_key": "lunaroute.local_reply.readyz"}}}},
            {"header_filter": {"header": {"name": ":path", "string_match": {"exact": "/readyz"}}}},
        ]}},
        "status_code": 503,
        "body_format_override": {"json_format": {"status": "unavailable", "reason": "%LOCAL_REPLY_BODY%"}},
    }, *_processor_unavailable_mappers(shapes), *_unreachable_mappers(shapes)]
    for path, shape in shapes:
        for status in (*_ENVOY_STATUSES, None):
            mappers.append(_local_reply_mapper(status, path, _envelope(status or 500, "%LOCAL_REPLY_BODY%", shape)))
    mappers.append(_codec_error_mapper())
    return {"mappers": mappers}


def _codec_error_mapper() -> dict[str, Any]:
    """A request Envoy's codec rejected (headers too large, conflicting framing) has no path to pick a
    dialect by: the envelope both SDKs read."""
    return {"filter": _cel("response.code_details.startsWith('http1.')"), "body_format_override": {"json_format": {
        "type": "error", "error": {"type": "invalid_request_error", "message": "%LOCAL_REPLY_BODY%",
                                   "param": None, "code": "%RESPONSE_CODE%"}}}}
