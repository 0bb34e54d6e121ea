"""Requests per minute, counted by Envoy itself: its `local_ratelimit` filter, right after the gate.

Descriptors come from the gate's `x-lunaroute-client` header (the key's name, set after the gate
removed whatever a client sent) and, for provider limits, from the provider cluster the route picked
(the fast path's route, or the one the workers named): a second filter, after the ext_proc filter.
One token bucket per limit (and per key for `key: "*"`), refilled every minute. A refused request gets
Envoy's 429 with `retry-after` and `x-ratelimit-limit/remaining/reset`, its body in the client's
dialect (`rate_limit_replies`). The counts are per Envoy process: each replica counts its own (tokens
per minute are shared through the store).
"""

from __future__ import annotations

from typing import Any

import orjson

from ..answers import error_bodies
from ..config import Config
from ..wire import CLIENT_HEADER, cluster_name
from .common import T

KEY_FILTER = "lunaroute.rpm_keys"
PROVIDER_FILTER = "lunaroute.rpm_providers"
_KEY, _ANY_KEY = "lunaroute_key", "lunaroute_any_key"

RATE_LIMITED = ("a rate limit of this gateway (per key or per provider) is reached; retry after the number "
                "of seconds in the retry-after header (x-ratelimit-limit, -remaining and -reset tell more)")


def _bucket(per_minute: int) -> dict[str, Any]:
    return {"max_tokens": per_minute, "tokens_per_fill": per_minute, "fill_interval": "60s"}


def _header(header: str, key: str) -> dict[str, Any]:
    return {"actions": [{"request_headers": {"header_name": header, "descriptor_key": key, "skip_if_absent": True}}]}


def _filter(name: str, descriptors: list[dict[str, Any]], rate_limits: list[dict[str, Any]]) -> dict[str, Any]:
    everyone = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}, "runtime_key": f"{name}.enabled"}
    return {"name": name, "typed_config": {
        "@type": T + "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit",
        "stat_prefix": name.replace(".", "_"),
        "filter_enabled": everyone,
        "filter_enforced": {**everyone, "runtime_key": f"{name}.enforced"},
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
        "enable_retry_after_header": True,
        "max_dynamic_descriptors": 4096,
        "descriptors": descriptors,
        "rate_limits": rate_limits,
    }}


def key_filter(cfg: Config) -> list[dict[str, Any]]:
    """rpm per gateway key (`key: name`, and `key: "*"`: each key its own bucket), before anything else."""
    limits = [lim for lim in cfg.rate_limits if lim.key is not None and lim.rpm]
    if not limits:
        return []
    descriptors = [{"entries": [{"key": _ANY_KEY} if lim.key == "*" else {"key": _KEY, "value": lim.key}],
                    "token_bucket": _bucket(lim.rpm or 0)} for lim in limits]
    return [_filter(KEY_FILTER, descriptors, [_header(CLIENT_HEADER, _KEY), _header(CLIENT_HEADER, _ANY_KEY)])]


def provider_filter(cfg: Config) -> list[dict[str, Any]]:
    """rpm per provider, once the provider is known (after the fast path and ext_proc, before the router)."""
    limits = [lim for lim in cfg.rate_limits if lim.provider is not None and lim.rpm]
    if not limits:
        return []
    descriptors = [{"entries": [{"key": "destination_cluster", "value": cluster_name(lim.provider or "")}],
                    "token_bucket": _bucket(lim.rpm or 0)} for lim in limits]
    # the cluster the route picked: the fast route's own, or the one the workers named (one bucket for both)
    return [_filter(PROVIDER_FILTER, descriptors, [{"actions": [{"destination_cluster": {}}]}])]


def rate_limit_replies() -> list[dict[str, Any]]:
    """Local-reply mappers for Envoy's rate-limit 429s: the dialect's envelope naming the limit, before
    the generic ones (`local_replies`). Matched by the reply's details, which local_ratelimit sets before
    the mappers run (its response flag comes after them)."""
    shapes = (("/chat/completions", "openai"), ("/responses", "openai"), ("/messages", "anthropic"), ("/", "both"))
    return [{
        "filter": {"and_filter": {"filters": [
            {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
                "@type": T + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "response.code_details == 'local_rate_limited'"}}},
            {"header_filter": {"header": {"name": ":path", "string_match": {"contains": path}}}}]}},
        "body_format_override": {"json_format": orjson.loads(error_bodies(429, RATE_LIMITED)[shape])},
    } for path, shape in shapes]
