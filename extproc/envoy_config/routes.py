"""The route table: probes, the fast path's routes, fallback chains, requests the workers routed,
the intercepted API paths (through ext_proc), and the bypass provider (ext_proc off)."""

from __future__ import annotations

import re
from typing import Any

from ..answers import error_bodies
from ..config import Config
from ..endpoints import ANTHROPIC_SIGNS, CHAIN_PREFIXES, ENDPOINTS, INTERCEPTED_EXACT, INTERCEPTED_PREFIXES, refusal
from ..prepare import HeaderEdits, as_sent_edits
from ..wire import (
    ATTEMPT_COUNT_HEADER,
    ATTEMPTS_HEADER,
    CLUSTER_HEADER,
    DROP_ANTHROPIC_CREDENTIALS_KEY,
    FALLBACK_HEADER,
    FAST_HEADER,
    FAST_ROUTE_PREFIX,
    GATE_FILTER,
    GATE_HEADERS,
    METADATA_NAMESPACE,
    PROVIDER_HEADER,
    PROVIDER_KEY,
    cluster_name,
)
from .common import T, duration, ext_proc_off, header_input, json_reply
from .fast_path import fast_settings
from .metering import PLAIN_RESPONSE
from .pools import fast_pool_routes, pool_retry_policy, pooled_routes

# On routes through the workers Envoy's idle timeout comes this much after `timeouts.stream_idle_s`, so
# a worker ends a stalled translated stream with an error event first (Envoy would cut the connection).
STALL_GRACE_S = 2.0


def retry_policy(cfg: Config) -> dict[str, Any]:
    r = cfg.retries
    return {
        "retry_on": "connect-failure,refused-stream,reset-before-request,retriable-status-codes",
        "retriable_status_codes": r.retry_on_status,
        "num_retries": r.num_retries,
        "retry_back_off": {
            "base_interval": duration(r.base_interval_ms / 1000),
            "max_interval": duration(r.max_interval_ms / 1000),
        },
        # Providers say when to come back; Envoy honours it (capped) instead of hammering them.
        "rate_limited_retry_back_off": {
            "reset_headers": [{"name": "retry-after", "format": "SECONDS"}],
            "max_interval": "60s",
        },
    }


def provider_action(cfg: Config) -> dict[str, Any]:
    return {
        "timeout": "0s",  # no whole-request deadline: SSE streams run for minutes
        "idle_timeout": duration(cfg.timeouts.stream_idle_s),
        "auto_host_rewrite": True,
        "retry_policy": retry_policy(cfg),
    }


def _cluster_by_header(cfg: Config, header: str, otherwise: dict[str, Any] | None) -> dict[str, Any]:
    """A matcher picking the provider cluster named by `header`."""
    tree: dict[str, Any] = {"matcher_tree": {
        "input": header_input(header),
        "exact_match_map": {"map": {
            cluster_name(n): {"action": {"name": "cluster", "typed_config": {
                "@type": T + "envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction",
                "cluster": cluster_name(n)}}}
            for n in cfg.providers
        }},
    }}
    if otherwise is not None:
        tree["on_no_match"] = {"matcher": otherwise}
    return tree


def cluster_matcher(cfg: Config) -> dict[str, Any]:
    """Which cluster an attempt goes to. The first selection (no attempt count yet) reads the cluster
    header the ext_proc server set; a retry re-selects (`refresh_cluster_on_retry`) seeing the previous
    attempt's number N, and reads `x-lunaroute-fallback-N`, else stays on the first provider."""
    first = _cluster_by_header(cfg, CLUSTER_HEADER, None)
    retries = {
        str(n): {"matcher": _cluster_by_header(cfg, FALLBACK_HEADER.format(n), first)}
        for n in range(1, len(cfg.providers))
    }
    if not retries:
        return first
    return {"matcher_tree": {"input": header_input(ATTEMPT_COUNT_HEADER),
                             "exact_match_map": {"map": retries}},
            "on_no_match": {"matcher": first}}


def route_table(cfg: Config) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = [
        {"name": "healthz", "match": {"path": "/healthz"}, **json_reply(200, '{"status":"ok"}')},
        {
            # Claude Code probes HEAD / at every start, without credentials.
            "name": "root",
            "match": {
                "path": "/",
                "headers": [{"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}],
            },
            **json_reply(200, '{"name":"lunaroute","status":"ok"}'),
        },
    ]
    intercepted = {
        "inline_cluster_specifier_plugin": {"extension": {
            "name": "envoy.router.cluster_specifier_plugin.matcher",
            "typed_config": {
                "@type": T + "envoy.extensions.router.cluster_specifiers.matcher.v3.MatcherClusterSpecifier",
                "cluster_matcher": cluster_matcher(cfg),
            },
        }},
        **provider_action(cfg),
    }
    intercepted["retry_policy"] = {**intercepted["retry_policy"], "refresh_cluster_on_retry": True}
    intercepted["idle_timeout"] = duration(cfg.timeouts.stream_idle_s + STALL_GRACE_S)
    # Tells the client which provider answered (from the endpoint's metadata; empty for local answers).
    answered_by = f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:{PROVIDER_KEY})%"
    provider_header = [{"header": {"key": PROVIDER_HEADER, "value": answered_by},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "keep_empty_value": False}]
    # A fallback chain of n providers: n - 1 retries, each re-selecting its cluster (x-envoy-max-retries
    # is honoured only for internal clients, so the retry budget comes from the route).
    routes += fast_routes(cfg, provider_header)
    for n in range(2, len(cfg.providers) + 1):
        # any 5xx or reset moves on to the next provider (the same provider is retried only on 429/503/529)
        chain_action = {**intercepted, "retry_policy": {
            **intercepted["retry_policy"], "num_retries": n - 1,
            "retry_on": "5xx,reset,connect-failure,refused-stream,retriable-status-codes"}}
        for prefix in CHAIN_PREFIXES:
            routes.append({
                "name": f"chain{n}{prefix}",
                "match": {"path_separated_prefix": prefix, "headers": [
                    {"name": ATTEMPTS_HEADER, "string_match": {"exact": str(n)}}]},
                "route": chain_action, "request_headers_to_remove": GATE_HEADERS,
                "response_headers_to_add": provider_header})
    # A request the workers routed, whatever its path now: they rewrite `:path` for the provider (a base
    # path such as /v1beta/openai, another dialect's path) and re-pick the route, which must then follow
    # their cluster header (only they can set it: the gate removes a client's), never the path.
    routes += pooled_routes(cfg, intercepted, provider_header)  # credential pools (envoy_config.pools)
    routes.append({"name": "routed", "match": {"prefix": "/", "headers": [
        {"name": CLUSTER_HEADER, "present_match": True}]}, "route": intercepted,
        "request_headers_to_remove": GATE_HEADERS, "response_headers_to_add": provider_header})
    routes += not_served_routes()
    for name, match in [(p, {"path": p}) for p in INTERCEPTED_EXACT] + [
            (p, {"path_separated_prefix": p}) for p in INTERCEPTED_PREFIXES]:
        routes.append({"name": f"intercept{name}", "match": match, "route": intercepted,
                       "request_headers_to_remove": GATE_HEADERS,
                       "response_headers_to_add": provider_header})
    if not (cfg.bypass.enabled and cfg.providers[cfg.bypass_provider].type == "anthropic"):
        # Claude Code's own side calls (start-up probe, telemetry) must never fail its session; with
        # no Anthropic bypass provider to take them, the gateway answers them itself.
        routes.append({"name": "claude_code_side_calls", "match": {"prefix": "/api/"},
                       **json_reply(200, "{}")})
    return routes + bypass_routes(cfg)


def bypass_routes(cfg: Config) -> list[dict[str, Any]]:
    """Every path no other route takes: to the bypass provider with ext_proc off — only the paths in
    its `endpoint_prefixes` when it has them — else a 404 both SDKs read."""
    if not cfg.bypass.enabled:
        return [_not_found("This path is not served by the gateway (bypass is disabled).")]
    name = cfg.bypass_provider
    bypass = cfg.providers[name]
    remove = list(GATE_HEADERS)
    if not bypass.uses_client_key:
        # The client's own credentials are not for this provider; Envoy injects the provider's.
        remove += ["x-api-key", "authorization"]
    gate_metadata: dict[str, Any] = {PROVIDER_KEY: name}  # the gate checks a key's provider allow-list
    if bypass.type != "anthropic" and bypass.uses_client_key:
        gate_metadata[DROP_ANTHROPIC_CREDENTIALS_KEY] = True  # the gate removes sk-ant- keys and Claude logins

    def to_bypass(route_name: str, match: dict[str, Any], rewrite: str | None) -> dict[str, Any]:
        action: dict[str, Any] = {"cluster": cluster_name(name), **provider_action(cfg)}
        if bypass.pooled:  # the first key's start cluster, walking the pool (envoy_config.pools)
            action["retry_policy"] = pool_retry_policy(cfg, len(bypass.pool))
        if rewrite is not None:
            action["prefix_rewrite"] = rewrite
        return {"name": route_name, "match": match, "route": action, "typed_per_filter_config": ext_proc_off(),
                "request_headers_to_remove": list(remove),
                "metadata": {"filter_metadata": {GATE_FILTER: dict(gate_metadata)}}}

    prefixes = [p.rstrip("/") for p in bypass.endpoint_prefixes]
    if prefixes and "" not in prefixes:
        routes = [to_bypass(f"bypass{p}", {"path_separated_prefix": p},
                            bypass.upstream_path(p) if bypass.upstream_path(p) != p else None) for p in prefixes]
        return [*routes, _not_found(f"This path is not served by the gateway: the bypass provider {name} "
                                    f"serves only {', '.join(prefixes)} (its endpoint_prefixes).")]
    rewrite = bypass.path_prefix + "/" if bypass.path_prefix else None
    routes = []
    if bypass.versioned_base:  # its base path replaces the client's /v1 (see Provider.upstream_path)
        routes.append(to_bypass("bypass_v1", {"prefix": "/v1/"}, bypass.path_prefix + "/"))
    return [*routes, to_bypass("bypass", {"prefix": "/"}, rewrite)]


def _not_found(message: str) -> dict[str, Any]:
    """A 404 for any path, readable by both SDKs (Anthropic's envelope with OpenAI's fields)."""
    body = error_bodies(404, message)["both"].decode()
    return {"name": "not_found", "match": {"prefix": "/"}, **json_reply(404, body)}


def _in_clients_dialect(name: str, match: dict[str, Any], status: int, message: str,
                        headers: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Direct answers for `match` where either vendor's SDK may call: Anthropic's envelope when the
    request carries one of Anthropic's headers (as `paths.client_dialect` decides), else OpenAI's."""
    bodies = error_bodies(status, message)
    out = []
    for sign in ANTHROPIC_SIGNS:
        signed = {**match, "headers": [*match.get("headers", []), {"name": sign, "present_match": True}]}
        out.append({"name": f"{name}/{sign}", "match": signed,
                    **json_reply(status, bodies["anthropic"].decode(), headers)})
    out.append({"name": name, "match": match, **json_reply(status, bodies["openai"].decode(), headers)})
    return out


def not_served_routes() -> list[dict[str, Any]]:
    """Methods and sub-paths of an intercepted API that the gateway never forwards (`endpoints.refusal`):
    `/v1/models` is read-only and one level deep, so `DELETE /v1/models/{fine-tune}` or `POST
    /v1/models/x/y` never reach a provider with its key. Answered here, in the client's dialect."""
    routes: list[dict[str, Any]] = []
    for row in ENDPOINTS:
        if row.path.endswith("/{id}") and row.intercepted:
            status, message = refusal("GET", row.family + "/x/y") or (404, "")
            below = {"safe_regex": {"regex": f"^{re.escape(row.family)}/[^/]+/.+"}}
            routes += _in_clients_dialect(f"not_served{row.family}/*/*", below, status, message)
    for family in dict.fromkeys(r.family for r in ENDPOINTS if r.methods and r.intercepted and r.path != "/"):
        methods = sorted(next(r.methods for r in ENDPOINTS if r.family == family and r.methods))
        status, message = refusal("_", family) or (405, "")
        other_methods = {"path_separated_prefix": family, "headers": [
            {"name": ":method", "invert_match": True, "string_match": {"safe_regex": {"regex": "|".join(methods)}}}]}
        allow = {"header": {"key": "allow", "value": ", ".join(methods)}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        routes += _in_clients_dialect(f"method_not_allowed{family}", other_methods, status, message, [allow])
    return routes


def route_header_edits(edits: HeaderEdits, path: str) -> dict[str, Any]:
    """`prepare`'s header-independent edits as route config: the path rewrite, headers set or added
    when absent, headers removed. What the fast path sends is what Python would send."""
    out: dict[str, Any] = {}
    if edits.path is not None and edits.path != path:
        out["prefix_rewrite"] = edits.path
    add = [{"header": {"key": k, "value": v}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
           for k, v in edits.set.items()]
    add += [{"header": {"key": k, "value": v}, "append_action": "ADD_IF_ABSENT"}
            for k, v in edits.set_if_absent.items()]
    if add:
        out["request_headers_to_add"] = add
    out["request_headers_to_remove"] = list(edits.remove)
    return out


def fast_routes(cfg: Config, provider_header: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One route per (path, provider) the fast path can pick: the request goes as the Python path
    would send it untranslated (`prepare.as_sent_edits`: path prefix, credentials, Anthropic-only
    headers), with ext_proc off."""
    routes = []
    for path, entry in fast_settings(cfg)["paths"].items():
        targets = dict.fromkeys(t for t in [*(r.get("target") for r in entry["rules"]), entry["default"]] if t)
        for name in targets:
            edits = route_header_edits(as_sent_edits(cfg.providers[name], path, ""), path)
            action: dict[str, Any] = {"cluster": cluster_name(name), **provider_action(cfg)}
            if "prefix_rewrite" in edits:
                action["prefix_rewrite"] = edits.pop("prefix_rewrite")
            route: dict[str, Any] = {
                "name": f"{FAST_ROUTE_PREFIX}{name}{path}",
                "match": {"path": path, "headers": [{"name": FAST_HEADER, "string_match": {"exact": name}}]},
                "route": action, "stat_prefix": "fast",
                "typed_per_filter_config": ext_proc_off(),
                "response_headers_to_add": provider_header,
                **edits,
            }
            route["request_headers_to_remove"] = [*GATE_HEADERS, *edits["request_headers_to_remove"]]
            route["request_headers_to_add"] = [*route.get("request_headers_to_add", []), PLAIN_RESPONSE]
            routes += fast_pool_routes(cfg, route, name) if cfg.providers[name].pooled else [route]
    return routes


def virtual_hosts(cfg: Config, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Without keys the listener answers only Hosts that name it (a DNS-rebinding page cannot reach
    it); any other Host gets probes only, and a 403 naming the fix."""
    hosts = cfg.access.hosts
    main = {"name": "lunaroute", "routes": routes, "include_request_attempt_count": True}
    if "*" in hosts:
        return [{**main, "domains": ["*"]}]
    domains = [d for h in hosts for d in (h.lower(), f"{h.lower()}:*")]
    probes = [r for r in routes if r["name"] in ("healthz", "intercept/readyz")]
    body = error_bodies(403, "This gateway answers only requests for " + ", ".join(hosts)
                       + " (the Host header); add the name you use to access.allowed_hosts.")["both"].decode()
    return [{**main, "domains": domains},
            {"name": "other_hosts", "domains": ["*"], "routes": [
                *probes, {"name": "host_not_allowed", "match": {"prefix": "/"}, **json_reply(403, body)}]}]
