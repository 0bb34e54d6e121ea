"""Renders the Envoy bootstrap from the gateway's config: the one source of truth for Envoy.

Envoy owns the networking: one cluster per provider (TLS with SNI, circuit breakers, outlier
detection, retries), the route table that sends intercepted API paths through the ext_proc filter
and everything else straight to the bypass provider with ext_proc disabled, and the provider
keys, which Envoy's credential injector reads from the environment or a file itself — so no key
ever passes through Python or appears in this rendered file.
"""

from __future__ import annotations

import ipaddress
import os
from fnmatch import fnmatchcase
from importlib import resources
from pathlib import Path
from typing import Any

import orjson
import yaml

from .config import Config, GatewayKey, Provider
from .forwarding import ANTHROPIC_ONLY_HEADERS, ANTHROPIC_VERSION
from .local_replies import error_bodies
from .paths import INTERCEPTED_EXACT, INTERCEPTED_PREFIXES
from .routing import Router

INTERNAL_PREFIX = "x-lunaroute-"  # request headers only the gateway itself may set
CLUSTER_HEADER = "x-lunaroute-cluster"
# Attempt N+1 of a fallback chain goes to the cluster named in `x-lunaroute-fallback-N`.
FALLBACK_HEADER = "x-lunaroute-fallback-{}"
# Present only on requests with a fallback chain: switches the per-attempt (upstream) ext_proc on.
CHAIN_HEADER = "x-lunaroute-chain"
ATTEMPT_PROVIDER_METADATA = "x-lunaroute-attempt-provider"
# How many providers a chain has: selects the route whose retry budget fits it.
ATTEMPTS_HEADER = "x-lunaroute-attempts"
CHAIN_PREFIXES = ("/v1/messages", "/v1/chat/completions", "/v1/responses")
# Set by the gate (envoy/gate.lua) after it removed every client-sent internal header: who is calling
# (a gateway key's name) and what that key may use. Removed again before a request leaves Envoy.
CLIENT_HEADER = "x-lunaroute-client"
SCOPE_HEADER = "x-lunaroute-scope"
# gRPC metadata of our own bootstrap's ext_proc streams: the gate ran, internal headers are Envoy's.
# A mesh's proxies (whose filter chain is not ours) do not send it.
GATE_METADATA = "x-lunaroute-gate"
GATE_FILTER = "lunaroute.gate"
GATE_FILE = "lunaroute-gate.yaml"
# Answered without a gateway key: probes, metrics, and Claude Code's credential-less `HEAD /`.
OPEN_PATHS = ("/", "/healthz", "/readyz", "/metrics")
# A POST here must carry JSON: a browser cannot send that cross-site without a CORS preflight.
JSON_PATHS = ("/v1/messages", "/v1/chat/completions", "/v1/responses")
# The fast path (envoy/fast.lua) names the provider here; only the `fast/…` routes read it.
FAST_HEADER = "x-lunaroute-fast"
# Set by the gate on requests the fast path may decide: only these have their body parsed for it.
CANDIDATE_HEADER = "x-lunaroute-candidate"
FAST_FILTER = "lunaroute.fast"
JSON_TO_METADATA = "envoy.filters.http.json_to_metadata"
BODY_METADATA = "lunaroute.body"
# Paths the fast path may decide, and the dialect their clients speak.
FAST_PATHS = {"/v1/messages": "anthropic", "/v1/messages/count_tokens": "anthropic",
              "/v1/chat/completions": "openai", "/v1/responses": "openai-responses",
              "/v1/responses/input_tokens": "openai-responses"}
# On routes through the workers Envoy's idle timeout comes this much after `timeouts.stream_idle_s`, so
# a worker ends a stalled translated stream with an error event first (Envoy would cut the connection).
STALL_GRACE_S = 2.0
EXTPROC_CLUSTER = "lunaroute_extproc"
EXTPROC_FILTER = "envoy.filters.http.ext_proc"
DEFAULT_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"
_T = "type.googleapis.com/"


def cluster_name(provider: str) -> str:
    return f"provider_{provider}"


def find_ca_file() -> str:
    """A CA bundle Envoy can read: the system bundle, else certifi's."""
    if os.path.exists(DEFAULT_CA_FILE):
        return DEFAULT_CA_FILE
    try:
        import certifi

        return certifi.where()
    except ImportError:
        return DEFAULT_CA_FILE


def _duration(seconds: float) -> str:
    return f"{seconds:g}s"


def ext_proc_filter(cfg: Config) -> dict[str, Any]:
    """The ext_proc HTTP filter; shared with the Helm chart's mesh patches (same settings everywhere)."""
    ep = cfg.extproc
    return {
        "name": EXTPROC_FILTER,
        "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": EXTPROC_CLUSTER,
                    "max_receive_message_length": ep.max_message_bytes,
                },
                "timeout": _duration(ep.message_timeout_ms / 1000),
            },
            "failure_mode_allow": False,
            "processing_mode": processing_mode(),
            "allow_mode_override": True,
            "message_timeout": _duration(ep.message_timeout_ms / 1000),
            "max_message_timeout": _duration(max(30.0, ep.message_timeout_ms / 1000)),
            # The body answer re-routes (cluster header + clear_route_cache) and rewrites :path.
            "mutation_rules": {"allow_all_routing": True},
        },
    }


# What a client hears when no ext_proc worker can take its request (all down, or the one holding it died).
PROCESSOR_UNAVAILABLE = ("the gateway's request processor is unavailable (its ext_proc workers are down, "
                         "restarting or not answering); retry shortly")


def gateway_ext_proc_filter(cfg: Config) -> dict[str, Any]:
    """The bootstrap's ext_proc filter: `ext_proc_filter`, answering 503 (not 500) when the stream to a
    worker fails, which `local_reply_config` writes in the client's dialect. (A `retry_policy` on the
    gRPC service made no measurable difference when a worker was killed under load — about 300 failed
    requests without outlier detection either way, 3-6 with it: `extproc_cluster`'s outlier detection
    is what routes around a dead worker.)"""
    ext = ext_proc_filter(cfg)
    ext["typed_config"]["status_on_error"] = {"code": 503}
    # behind the gate, so it says so (see GATE_METADATA)
    grpc = ext["typed_config"]["grpc_service"]
    grpc["initial_metadata"] = [*grpc.get("initial_metadata", []), {"key": GATE_METADATA, "value": "sealed"}]
    # Off unless a route enables it (`ext_proc_enabled`, on the whole route table): a request Envoy's
    # codec rejects (headers too large, bad framing) has no route, and its 400/431 would otherwise
    # wait in this filter for a worker while the codec closes the connection — the client got nothing.
    ext["disabled"] = True
    return ext


def ext_proc_enabled() -> dict[str, Any]:
    """Per-filter config of the route table that switches `gateway_ext_proc_filter` on for every
    route (routes that bypass it still turn it off with `_ext_proc_off`)."""
    return {EXTPROC_FILTER: {
        "@type": _T + "envoy.config.route.v3.FilterConfig", "disabled": False,
        "config": {"@type": _T + "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute", "overrides": {}}}}


def processing_mode() -> dict[str, str]:
    """Headers and the buffered request body always; response bodies only when Python asks for them."""
    return {
        "request_header_mode": "SEND",
        "request_body_mode": "BUFFERED",
        "request_trailer_mode": "SKIP",
        "response_header_mode": "SEND",
        "response_body_mode": "NONE",
        "response_trailer_mode": "SKIP",
    }


def _ext_proc_off() -> dict[str, Any]:
    return {
        EXTPROC_FILTER: {
            "@type": _T + "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute",
            "disabled": True,
        }
    }


def _json_reply(status: int, body: str) -> dict[str, Any]:
    return {
        "direct_response": {"status": status, "body": {"inline_string": body}},
        "response_headers_to_add": [
            {"header": {"key": "content-type", "value": "application/json"},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"}
        ],
        "typed_per_filter_config": _ext_proc_off(),
    }


def _retry_policy(cfg: Config) -> dict[str, Any]:
    r = cfg.retries
    return {
        "retry_on": "connect-failure,refused-stream,reset-before-request,retriable-status-codes",
        "retriable_status_codes": r.retry_on_status,
        "num_retries": r.num_retries,
        "retry_back_off": {
            "base_interval": _duration(r.base_interval_ms / 1000),
            "max_interval": _duration(r.max_interval_ms / 1000),
        },
        # Providers say when to come back; Envoy honours it (capped) instead of hammering them.
        "rate_limited_retry_back_off": {
            "reset_headers": [{"name": "retry-after", "format": "SECONDS"}],
            "max_interval": "60s",
        },
    }


def _provider_action(cfg: Config) -> dict[str, Any]:
    return {
        "timeout": "0s",  # no whole-request deadline: SSE streams run for minutes
        "idle_timeout": _duration(cfg.timeouts.stream_idle_s),
        "auto_host_rewrite": True,
        "retry_policy": _retry_policy(cfg),
    }


def _header_input(name: str) -> dict[str, Any]:
    return {"name": name, "typed_config": {
        "@type": _T + "envoy.type.matcher.v3.HttpRequestHeaderMatchInput", "header_name": name}}


def _cluster_by_header(cfg: Config, header: str, otherwise: dict[str, Any] | None) -> dict[str, Any]:
    """A matcher picking the provider cluster named by `header`."""
    tree: dict[str, Any] = {"matcher_tree": {
        "input": _header_input(header),
        "exact_match_map": {"map": {
            cluster_name(n): {"action": {"name": "cluster", "typed_config": {
                "@type": _T + "envoy.extensions.router.cluster_specifiers.matcher.v3.ClusterAction",
                "cluster": cluster_name(n)}}}
            for n in cfg.providers
        }},
    }}
    if otherwise is not None:
        tree["on_no_match"] = {"matcher": otherwise}
    return tree


def _cluster_matcher(cfg: Config) -> dict[str, Any]:
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
    return {"matcher_tree": {"input": _header_input("x-envoy-attempt-count"),
                             "exact_match_map": {"map": retries}},
            "on_no_match": {"matcher": first}}


# Internal headers Envoy sets for its own filters and routes; removed before a request leaves it.
GATE_HEADERS = [CLUSTER_HEADER, CLIENT_HEADER, SCOPE_HEADER, FAST_HEADER, CANDIDATE_HEADER]


def _routes(cfg: Config) -> list[dict[str, Any]]:
    routes: list[dict[str, Any]] = [
        {"name": "healthz", "match": {"path": "/healthz"}, **_json_reply(200, '{"status":"ok"}')},
        {
            # Claude Code probes HEAD / at every start, without credentials.
            "name": "root",
            "match": {
                "path": "/",
                "headers": [{"name": ":method", "string_match": {"safe_regex": {"regex": "GET|HEAD"}}}],
            },
            **_json_reply(200, '{"name":"lunaroute","status":"ok"}'),
        },
    ]
    intercepted = {
        "inline_cluster_specifier_plugin": {"extension": {
            "name": "envoy.router.cluster_specifier_plugin.matcher",
            "typed_config": {
                "@type": _T + "envoy.extensions.router.cluster_specifiers.matcher.v3.MatcherClusterSpecifier",
                "cluster_matcher": _cluster_matcher(cfg),
            },
        }},
        **_provider_action(cfg),
    }
    intercepted["retry_policy"] = {**intercepted["retry_policy"], "refresh_cluster_on_retry": True}
    intercepted["idle_timeout"] = _duration(cfg.timeouts.stream_idle_s + STALL_GRACE_S)
    # Tells the client which provider answered (from the endpoint's metadata; empty for local answers).
    provider_header = [{"header": {"key": "x-lunaroute-provider", "value": "%UPSTREAM_METADATA(lunaroute:provider)%"},
                        "append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "keep_empty_value": False}]
    # A fallback chain of n providers: n - 1 retries, each re-selecting its cluster (x-envoy-max-retries
    # is honoured only for internal clients, so the retry budget comes from the route).
    routes += _fast_routes(cfg, provider_header)
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
    routes.append({"name": "routed", "match": {"prefix": "/", "headers": [
        {"name": CLUSTER_HEADER, "present_match": True}]}, "route": intercepted,
        "request_headers_to_remove": GATE_HEADERS, "response_headers_to_add": provider_header})
    for name, match in [(p, {"path": p}) for p in INTERCEPTED_EXACT] + [
            (p, {"path_separated_prefix": p}) for p in INTERCEPTED_PREFIXES]:
        routes.append({"name": f"intercept{name}", "match": match, "route": intercepted,
                       "request_headers_to_remove": GATE_HEADERS,
                       "response_headers_to_add": provider_header})
    if not (cfg.bypass.enabled and cfg.providers[cfg.bypass_provider].type == "anthropic"):
        # Claude Code's own side calls (start-up probe, telemetry) must never fail its session; with
        # no Anthropic bypass provider to take them, the gateway answers them itself.
        routes.append({"name": "claude_code_side_calls", "match": {"prefix": "/api/"},
                       **_json_reply(200, "{}")})
    if cfg.bypass.enabled:
        bypass = cfg.providers[cfg.bypass_provider]
        action: dict[str, Any] = {"cluster": cluster_name(cfg.bypass_provider), **_provider_action(cfg)}
        if bypass.path_prefix:
            action["prefix_rewrite"] = bypass.path_prefix + "/"
        route: dict[str, Any] = {
            "name": "bypass", "match": {"prefix": "/"}, "route": action,
            "typed_per_filter_config": _ext_proc_off(),
            "request_headers_to_remove": list(GATE_HEADERS),
            # the gate checks a key's provider allow-list against this (bypassed requests skip Python)
            "metadata": {"filter_metadata": {GATE_FILTER: {"provider": cfg.bypass_provider}}},
        }
        if not bypass.uses_client_key:
            # The client's own credentials are not for this provider; Envoy injects the provider's.
            route["request_headers_to_remove"] += ["x-api-key", "authorization"]
        if bypass.versioned_base:  # its base path replaces the client's /v1 (see Provider.upstream_path)
            routes.append({**route, "name": "bypass_v1", "match": {"prefix": "/v1/"},
                           "route": {**action, "prefix_rewrite": bypass.path_prefix + "/"}})
        routes.append(route)
    else:
        routes.append({
            "name": "not_found",
            "match": {"prefix": "/"},
            # readable by both SDKs: Anthropic's envelope with OpenAI's fields
            **_json_reply(404, '{"type":"error","error":{"type":"not_found_error","code":"not_found","param":null,'
                               '"message":"This path is not served by the gateway (bypass is disabled)."}}'),
        })
    return routes


# -- the fast path (envoy/fast.lua): no Python for requests that need no decision ---------------------


def glob_to_lua(glob: str) -> str | None:
    """The Lua pattern matching exactly what `fnmatch.fnmatchcase(model, glob)` matches (for ASCII
    models: fast.lua leaves others to Python), or None when the glob has a character class."""
    out = ["^"]
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            return None
        elif ch in "^$()%.]+-":
            out.append("%" + ch)
        else:
            out.append(ch)
    return "".join(out) + "$"


def _fast_target(cfg: Config, chain: list[str], dialect: str) -> str:
    """The provider the fast path may send to directly, or "" when Python must see the request:
    a fallback chain, another dialect (translation), a budget to reserve and settle (one not limited
    to gateway keys, which the gate handles), recording, PII redaction of requests, or a provider whose
    headers or tool schemas Python rewrites (`forward_headers`, `tool_schema`)."""
    if len(chain) != 1 or cfg.recording.enabled or cfg.pii.redact_requests:
        return ""
    name = chain[0]
    p = cfg.providers[name]
    budgeted = any(lim.key is None and fnmatchcase(name, lim.provider or "*") for lim in cfg.budgets.all_limits())
    if p.type != dialect or budgeted:
        return ""
    if p.forward_headers is not None or p.tool_schema.drop_keys:
        return ""  # Python filters this provider's headers or cleans its tool schemas
    return name


def fast_settings(cfg: Config) -> dict[str, Any]:
    """What fast.lua decides with, per path: the routing rules in the Python router's own order (each
    a Lua pattern and a target, or `python` for one only Python can evaluate), then the default.
    Paths where nothing could go fast are left out."""
    router = Router(cfg)
    paths: dict[str, Any] = {}
    for path, dialect in FAST_PATHS.items():
        rules: list[dict[str, Any]] = []
        for index, chain in router.ordered_rules():
            eligible = router.eligible_chain(chain, path)
            if not eligible:
                continue  # the router skips a rule whose providers do not serve the path
            glob = cfg.routing.rules[index].model
            pattern = glob_to_lua(glob) if glob is not None else None
            if pattern is None:
                rules.append({"python": True})
                break  # nothing after it can be decided without Python
            rules.append({"pattern": pattern, "target": _fast_target(cfg, eligible, dialect)})
        default = router.eligible_chain((cfg.default_provider, *cfg.providers), path)[:1]
        entry = {"rules": rules, "default": _fast_target(cfg, default, dialect) if default else ""}
        if entry["default"] or any(r.get("target") for r in rules):
            paths[path] = entry
    return {"paths": paths, "max_bytes": cfg.limits.fast_path_max_bytes}


def _fast_filters(cfg: Config) -> list[dict[str, Any]]:
    """json_to_metadata lifts the body's top-level `model` into metadata; fast.lua decides with it."""
    settings = fast_settings(cfg)
    if not settings["paths"]:
        return []
    model = {"selectors": [{"key": "model"}],
             "on_present": {"metadata_namespace": BODY_METADATA, "key": "model", "type": "PROTOBUF_VALUE"},
             "on_error": {"metadata_namespace": BODY_METADATA, "key": "error", "value": "1"}}

    code = ("-- Rendered by `lunaroute` from the gateway's config; the code below FAST is envoy/fast.lua.\n"
            f"local FAST = {lua_literal(settings)}\n\n{_envoy_source('fast.lua')}")
    return [
        _only_with_header(CANDIDATE_HEADER, JSON_TO_METADATA, {
            "@type": _T + "envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": {"rules": [model]}}),
        _only_with_header(CANDIDATE_HEADER, FAST_FILTER, {
            "@type": _T + "envoy.extensions.filters.http.lua.v3.Lua", "default_source_code": {"inline_string": code}}),
    ]


def _only_with_header(header: str, name: str, typed_config: dict[str, Any]) -> dict[str, Any]:
    """The filter `name`, skipped (ExtensionWithMatcher → SkipFilter) unless the request has `header`."""
    return {"name": name, "typed_config": {
        "@type": _T + "envoy.extensions.common.matching.v3.ExtensionWithMatcher",
        "extension_config": {"name": name, "typed_config": typed_config},
        "xds_matcher": {"matcher_list": {"matchers": [{
            "predicate": {"not_matcher": {"single_predicate": {
                "input": _header_input(header),
                "value_match": {"safe_regex": {"regex": ".+", "google_re2": {}}}}}},
            "on_match": {"action": {"name": "skip", "typed_config": {
                "@type": _T + "envoy.extensions.filters.common.matcher.action.v3.SkipFilter"}}},
        }]}},
    }}


def _fast_routes(cfg: Config, provider_header: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One route per (path, provider) the fast path can pick: the request goes as the Python path
    would send it untranslated (path prefix, credentials, Anthropic-only headers), with ext_proc off."""
    routes = []
    for path, entry in fast_settings(cfg)["paths"].items():
        targets = dict.fromkeys(t for t in [*(r.get("target") for r in entry["rules"]), entry["default"]] if t)
        for name in targets:
            p = cfg.providers[name]
            action: dict[str, Any] = {"cluster": cluster_name(name), **_provider_action(cfg)}
            if p.path_prefix:
                action["prefix_rewrite"] = p.upstream_path(path)
            remove = [*GATE_HEADERS]
            if not p.uses_client_key:
                remove += ["x-api-key", "authorization"]  # Envoy injects the provider's own key, or none
            route: dict[str, Any] = {
                "name": f"fast/{name}{path}",
                "match": {"path": path, "headers": [{"name": FAST_HEADER, "string_match": {"exact": name}}]},
                "route": action, "stat_prefix": "fast",
                "typed_per_filter_config": _ext_proc_off(),
                "response_headers_to_add": provider_header,
            }
            if p.type == "anthropic":
                route["request_headers_to_add"] = [{"header": {"key": "anthropic-version", "value": ANTHROPIC_VERSION},
                                                    "append_action": "ADD_IF_ABSENT"}]
            else:
                remove += list(ANTHROPIC_ONLY_HEADERS)
            route["request_headers_to_remove"] = remove
            routes.append(route)
    return routes


def _attempt_ext_proc(cfg: Config, provider: str) -> dict[str, Any]:
    """The per-attempt ext_proc of a provider cluster: re-translates and re-authenticates each attempt
    of a fallback chain for *this* provider. It only runs when the request carries a chain header, so
    requests without fallbacks cost nothing here. gRPC metadata names the provider to the server."""
    ext = gateway_ext_proc_filter(cfg)["typed_config"]
    ext["grpc_service"] = {**ext["grpc_service"], "initial_metadata": [
        {"key": ATTEMPT_PROVIDER_METADATA, "value": provider}, {"key": GATE_METADATA, "value": "sealed"}]}
    ext["processing_mode"] = {**ext["processing_mode"], "request_header_mode": "SEND"}
    flt = _only_with_header(CHAIN_HEADER, EXTPROC_FILTER, ext)  # skip unless the chain header is there
    return {**flt, "name": "lunaroute.attempt_ext_proc"}


def _credential_filter(name: str, p: Provider) -> dict[str, Any]:
    header, prefix = p.auth_header()
    generic: dict[str, Any] = {
        "@type": _T + "envoy.extensions.http.injected_credentials.generic.v3.Generic",
        "credential": {"name": f"{name}_key"},
        "header": header,
    }
    if prefix:
        generic["header_value_prefix"] = prefix
    return {
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": _T + "envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": True,
            "credential": {"name": "envoy.http.injected_credentials.generic", "typed_config": generic},
        },
    }


def _secret(name: str, p: Provider) -> dict[str, Any]:
    if p.api_key_env:
        source = {"environment_variable": p.api_key_env}
    else:
        source = {"filename": str(Path(p.api_key_file or "").expanduser())}
    return {"name": f"{name}_key", "generic_secret": {"secret": source}}


def _provider_cluster(cfg: Config, name: str, p: Provider, ca_file: str) -> dict[str, Any]:
    options: dict[str, Any] = {"@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"}
    if p.tls:
        options["auto_config"] = {"http_protocol_options": {}, "http2_protocol_options": {}}
        options["upstream_http_protocol_options"] = {"auto_sni": True, "auto_san_validation": True}
    else:
        options["explicit_http_config"] = {"http_protocol_options": {}}
    options["common_http_protocol_options"] = {"idle_timeout": "300s"}
    options["http_filters"] = [
        _attempt_ext_proc(cfg, name),
        *([_credential_filter(name, p)] if p.keyed else []),
        {"name": "envoy.filters.http.upstream_codec",
         "typed_config": {"@type": _T + "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}},
    ]
    cluster: dict[str, Any] = {
        "name": cluster_name(name),
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": _duration(cfg.timeouts.connect_s),
        "per_connection_buffer_limit_bytes": cfg.limits.max_request_bytes,
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": options},
        "circuit_breakers": {"thresholds": [{
            "priority": "DEFAULT", "max_connections": 1024, "max_pending_requests": 1024,
            "max_requests": 1024, "max_retries": 16,
        }]},
        "outlier_detection": {
            "consecutive_5xx": 5, "consecutive_gateway_failure": 3, "interval": "10s",
            "base_ejection_time": "30s", "max_ejection_percent": 100,
        },
        "load_assignment": {
            "cluster_name": cluster_name(name),
            "endpoints": [{"lb_endpoints": [{
                "endpoint": {"address": {"socket_address": {"address": p.host, "port_value": p.port}},
                             "hostname": p.host},
                "metadata": {"filter_metadata": {"lunaroute": {"provider": name}}},
            }]}],
        },
    }
    if p.tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": _T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                "sni": p.host,
                "common_tls_context": {
                    "alpn_protocols": ["h2", "http/1.1"],
                    "validation_context": {"trusted_ca": {"filename": ca_file}},
                },
            },
        }
    return cluster


def _worker_address(cfg: Config, index: int) -> dict[str, Any]:
    ep = cfg.extproc
    if ep.socket_dir:
        return {"pipe": {"path": ep.socket_path(index)}}
    return {"socket_address": {"address": ep.host, "port_value": ep.port + index}}


def _discovery(cfg: Config) -> dict[str, Any]:
    """Unix sockets and IP addresses are static; a service name (compose, Kubernetes) is resolved,
    with every address it has."""
    if cfg.extproc.socket_dir:
        return {"type": "STATIC"}
    try:
        ipaddress.ip_address(cfg.extproc.host)
    except ValueError:
        return {"type": "STRICT_DNS", "dns_lookup_family": "V4_PREFERRED"}
    return {"type": "STATIC"}


def extproc_cluster(cfg: Config) -> dict[str, Any]:
    ep = cfg.extproc
    return {
        "name": EXTPROC_CLUSTER,
        **_discovery(cfg),
        "connect_timeout": "1s",
        # Whole bodies travel in one gRPC message: a connection buffer smaller than one (Envoy's 1 MiB
        # default) keeps crossing its watermark under large requests (see SIDE_STREAM_FLOW_CONTROL).
        "per_connection_buffer_limit_bytes": ep.max_message_bytes,
        "lb_policy": "ROUND_ROBIN",
        "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
            "@type": _T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
            "explicit_http_config": {"http2_protocol_options": {
                "connection_keepalive": {"interval": "30s", "timeout": "5s"},
            }},
        }},
        # A draining or dead worker leaves the rotation; /readyz fails only when none is left.
        "health_checks": [{
            "timeout": "1s", "interval": "0.5s", "unhealthy_threshold": 2, "healthy_threshold": 1,
            "no_traffic_interval": "0.5s", "grpc_health_check": {},
        }],
        # A killed worker refuses connections at once: eject it on the first failure, before the next
        # health check notices (a restarted one is back when its ejection ends or a check passes).
        "outlier_detection": {
            "split_external_local_origin_errors": True, "consecutive_local_origin_failure": 1,
            "enforcing_consecutive_local_origin_failure": 100, "consecutive_5xx": 1000000,
            "consecutive_gateway_failure": 1000000, "enforcing_success_rate": 0,
            "interval": "0.5s", "base_ejection_time": "1s", "max_ejection_time": "2s",
            "max_ejection_percent": 100,
        },
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        # every request the workers hold has its body buffered in Envoy: cap them (a 503 beyond)
        "circuit_breakers": {"thresholds": [{
            "priority": "DEFAULT", "max_requests": cfg.limits.max_concurrent_requests,
            "max_pending_requests": cfg.limits.max_concurrent_requests}]},
        "load_assignment": {
            "cluster_name": EXTPROC_CLUSTER,
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": _worker_address(cfg, i)}}
                                            for i in range(ep.workers)]}],
        },
    }


# Envoy's own error replies (no healthy upstream, connect failure, timeout, body too large) in the
# dialect of the path: an Anthropic or OpenAI SDK then raises its usual error instead of choking on
# plain text. Only replies Envoy generated itself (a response flag is set) are rewritten; the gateway's
# own answers and providers' errors pass untouched. A translated request's path is the provider's, so
# its reply is written in the provider's dialect and translated back like any provider error. The
# envelopes come from the dialect modules' tables (`local_replies.error_bodies`), the ones Python answers
# with: one shape per status, whoever produced it.
_ENVOY_STATUSES = (404, 408, 413, 429, 502, 503, 504)
# The path fragment a local reply is matched by, and the envelope it gets (the Responses API shares
# Chat's; every other path — bypassed APIs of either vendor — the envelope both SDKs read).
_REPLY_SHAPES = (("/chat/completions", "openai"), ("/responses", "openai"), ("/messages", "anthropic"), ("/", "both"))
# Envoy could not connect to the provider (UF) or had no host for it (UH): a 502 that names the provider's
# cluster, instead of a 503 "no healthy upstream" that reads as if the provider were overloaded.
UNREACHABLE = "the gateway could not reach the provider behind cluster %UPSTREAM_CLUSTER%: %LOCAL_REPLY_BODY%"
_UNREACHABLE_FLAGS = ["UF", "UH"]


# Statuses on API paths that only Envoy produces (the gateway's own answers there are 400/404/500).
_ENVOY_ONLY = frozenset({413, 502, 503, 504})


def _envelope(status: int, message: str, shape: str) -> dict[str, Any]:
    return orjson.loads(error_bodies(status, message)[shape])


def _path_filter(path_contains: str) -> dict[str, Any]:
    return {"header_filter": {"header": {"name": ":path", "string_match": {"contains": path_contains}}}}


def _local_reply_mapper(status: int | None, path_contains: str, body: dict[str, Any]) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [
        {"status_code_filter": {"comparison": {"op": "EQ" if status else "GE", "value": {
            "default_value": status or 400, "runtime_key": f"lunaroute.local_reply.{status or 'min'}"}}}},
        _path_filter(path_contains),
    ]
    if status not in _ENVOY_ONLY:
        filters.append({"response_flag_filter": {}})  # any flag: Envoy failed, not the gateway answering
    return {"filter": {"and_filter": {"filters": filters}}, "body_format_override": {"json_format": body}}


def _unreachable_mappers() -> list[dict[str, Any]]:
    return [{
        "filter": {"and_filter": {"filters": [{"response_flag_filter": {"flags": _UNREACHABLE_FLAGS}},
                                              _path_filter(path)]}},
        "status_code": 502,
        "body_format_override": {"json_format": _envelope(502, UNREACHABLE, shape)},
    } for path, shape in _REPLY_SHAPES]


def _cel(expression: str) -> dict[str, Any]:
    """A local-reply filter on a CEL expression (the only filter that reads response code details)."""
    return {"extension_filter": {"name": "envoy.access_loggers.extension_filters.cel", "typed_config": {
        "@type": _T + "envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter", "expression": expression}}}


def _processor_unavailable_mappers() -> list[dict[str, Any]]:
    """The ext_proc stream failed (no worker reachable, the one holding the request died, or it did not
    answer within `message_timeout`): a 503 in each path's dialect saying what is down. Told apart from
    other local replies by Envoy's response code details (`ext_proc_error_gRPC_error_…`,
    `ext_proc_error_per-message_timeout_exceeded`), which only a CEL filter can read."""
    failed = _cel("response.code_details.startsWith('ext_proc_error')")
    openai = {"error": {"message": PROCESSOR_UNAVAILABLE, "type": "server_error", "param": None,
                        "code": "processor_unavailable"}}
    anthropic = {"type": "error", "error": {"type": "overloaded_error", "message": PROCESSOR_UNAVAILABLE}}
    both = {"type": "error", "error": {**anthropic["error"], "param": None, "code": "processor_unavailable"}}
    return [{
        "filter": {"and_filter": {"filters": [
            failed, {"header_filter": {"header": {"name": ":path", "string_match": {"contains": path}}}}]}},
        "status_code": 503,
        "body_format_override": {"json_format": body},
    } for path, body in (("/chat/completions", openai), ("/responses", openai), ("/messages", anthropic),
                         ("/", both))]


def local_reply_config() -> dict[str, Any]:
    """Chat paths get OpenAI's envelope, Messages paths Anthropic's, every other path (bypassed APIs
    of either vendor) Anthropic's envelope carrying OpenAI's fields too, which both SDKs read."""
    mappers: list[dict[str, Any]] = [{
        # no ext_proc worker answers: not ready (503, what probes and load balancers expect), not a 500
        "filter": {"and_filter": {"filters": [
            {"status_code_filter": {"comparison": {"op": "GE", "value": {
                "default_value": 500, "runtime_key": "lunaroute.local_reply.readyz"}}}},
            {"header_filter": {"header": {"name": ":path", "string_match": {"exact": "/readyz"}}}},
        ]}},
        "status_code": 503,
        "body_format_override": {"json_format": {"status": "unavailable", "reason": "%LOCAL_REPLY_BODY%"}},
    }, *_processor_unavailable_mappers(), *_unreachable_mappers()]
    for path, shape in _REPLY_SHAPES:
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


# Envoy 1.40 crashes (SIGSEGV) when the gRPC side stream of an ext_proc filter running in a cluster's
# upstream filter chain (our per-attempt filter) crosses a write-buffer watermark: concurrent
# fallback-chain requests of about 1 MB and more did it (README: Known issues). Side-stream flow
# control only pauses reading the client while the gRPC stream is backed up; request bodies are
# buffered whole and capped by `limits.max_request_bytes` anyway, so turning it off costs nothing.
SIDE_STREAM_FLOW_CONTROL = "envoy.reloadable_features.grpc_side_stream_flow_control"


def runtime_layers() -> dict[str, Any]:
    """Envoy runtime overrides the gateway depends on (see SIDE_STREAM_FLOW_CONTROL)."""
    return {"layers": [{"name": "lunaroute", "static_layer": {SIDE_STREAM_FLOW_CONTROL: False}}]}



# -- the gate (envoy/gate.lua): sealing, cross-site refusals, gateway keys --------------------------

_GATE_REPLIES: dict[str, tuple[int, str]] = {
    "no_key": (401, "This gateway needs a key: send it in x-lunaroute-key, x-api-key or Authorization: Bearer."),
    "bad_key": (401, "The gateway key is not valid."),
    "models_only": (403, "This gateway key is limited to some models; %DETAIL% is not a model API it may use."),
    "provider": (403, "This gateway key may not use provider %DETAIL%."),
    "origin": (403, "Requests from the browser origin %DETAIL% are refused; add it to access.allowed_origins."),
    "content_type": (415, "Send the request body as JSON (content-type: application/json)."),
}


def _envoy_source(name: str) -> str:
    """A file of envoy/, from the source tree (a checkout) or the installed package (a wheel)."""
    tree = Path(__file__).resolve().parent.parent / "envoy" / name
    if tree.is_file():
        return tree.read_text(encoding="utf-8")
    return resources.files("extproc._envoy").joinpath(name).read_text(encoding="utf-8")


def gate_source() -> str:
    return _envoy_source("gate.lua")


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


def _key_entry(key: GatewayKey, cfg: Config) -> dict[str, Any]:
    scope = {"providers": key.providers, "models": key.models} if key.providers or key.models else None
    budgeted = any(lim.key is not None and fnmatchcase(key.name, lim.key) for lim in cfg.budgets.all_limits())
    return {"name": key.name, "scope": orjson.dumps(scope).decode() if scope else None,
            "providers": dict.fromkeys(key.providers, True) if key.providers else None,
            "provider_list": "," + ",".join(key.providers) + "," if key.providers else None,
            # the fast path cannot check model allow-lists, nor reserve a key's budget
            "models_limited": bool(key.models) or budgeted}


def gate_settings(cfg: Config, digests: dict[str, GatewayKey]) -> dict[str, Any]:
    """What the gate needs from the config: key digests (never keys), origins, error replies."""
    origins = cfg.access.allowed_origins
    return {
        "keys_required": bool(cfg.access.keys),
        "keys": {digest: _key_entry(key, cfg) for digest, key in digests.items()},
        "origins": {o.lower().rstrip("/"): True for o in origins if o != "*"},
        "any_origin": "*" in origins,
        "probes": dict.fromkeys(OPEN_PATHS, True),
        "json_paths": list(JSON_PATHS),
        "fast_paths": dict.fromkeys(fast_settings(cfg)["paths"], True),
        "fast_max_bytes": cfg.limits.fast_path_max_bytes,
        "record_peer": cfg.recording.enabled,
        "replies": {reason: {"status": str(status),
                             "bodies": {d: b.decode() for d, b in error_bodies(status, message).items()}}
                    for reason, (status, message) in _GATE_REPLIES.items()},
    }


def gate_filter_config(cfg: Config, digests: dict[str, GatewayKey]) -> dict[str, Any]:
    code = ("-- Rendered by `lunaroute` from the gateway's config; the code below CONFIG is envoy/gate.lua.\n"
            f"local CONFIG = {lua_literal(gate_settings(cfg, digests))}\n\n{gate_source()}")
    return {"@type": _T + "envoy.extensions.filters.http.lua.v3.Lua", "default_source_code": {"inline_string": code}}


def render_gate(cfg: Config, digests: dict[str, GatewayKey] | None = None) -> dict[str, Any]:
    """The gate's config as the file Envoy watches (an ECDS discovery response): rewriting the file
    (atomically) swaps the gate on every Envoy worker without a restart — that is key rotation."""
    digests = cfg.key_digests() if digests is None else digests
    return {"resources": [{"@type": _T + "envoy.config.core.v3.TypedExtensionConfig", "name": GATE_FILTER,
                           "typed_config": gate_filter_config(cfg, digests)}]}


def write_gate(cfg: Config, path: Path, digests: dict[str, GatewayKey] | None = None) -> None:
    """Write the gate file atomically (Envoy reloads it on the rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(render_gate(cfg, digests), sort_keys=False, width=120), encoding="utf-8")
    os.replace(tmp, path)


def _gate_discovery(gate_path: str) -> dict[str, Any]:
    return {"name": GATE_FILTER, "config_discovery": {
        "config_source": {"path_config_source": {
            "path": gate_path, "watched_directory": {"path": os.path.dirname(gate_path) or "."}}},
        "type_urls": [_T + "envoy.extensions.filters.http.lua.v3.Lua"],
    }}


def inline_gate(boot: dict[str, Any], gate: dict[str, Any]) -> dict[str, Any]:
    """A copy of the bootstrap with the gate's config in place of its file (one self-contained file:
    for `envoy --mode validate`, which then compiles the Lua too, and for reading)."""
    boot = yaml.safe_load(yaml.safe_dump(boot))
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [
        {"name": GATE_FILTER, "typed_config": gate["resources"][0]["typed_config"]} if f["name"] == GATE_FILTER
        else f for f in hcm["http_filters"]]
    return boot


def _virtual_hosts(cfg: Config, routes: list[dict[str, Any]]) -> list[dict[str, Any]]:
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
                *probes, {"name": "host_not_allowed", "match": {"prefix": "/"}, **_json_reply(403, body)}]}]


def _overload_manager(cfg: Config) -> dict[str, Any]:
    """Bounded memory under hostile clients: Envoy watches its heap; past 85 % it resets the streams
    holding the most buffered memory, past 90 % it returns memory to the OS, past 95 % it answers new
    requests with a 503 (in the client's dialect, via local replies) and stops keep-alive."""
    heap = "envoy.resource_monitors.fixed_heap"

    def at(value: float) -> list[dict[str, Any]]:
        return [{"name": heap, "threshold": {"value": value}}]

    return {
        "refresh_interval": "0.25s",
        # per-stream memory accounting (streams buffering 1 MiB or more), for reset_high_memory_stream
        "buffer_factory_config": {"minimum_account_to_track_power_of_two": 20},
        "resource_monitors": [
            {"name": heap, "typed_config": {
                "@type": _T + "envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
                "max_heap_size_bytes": cfg.limits.envoy_max_heap_bytes}},
            {"name": "envoy.resource_monitors.global_downstream_max_connections", "typed_config": {
                "@type": _T + "envoy.extensions.resource_monitors.downstream_connections.v3."
                              "DownstreamConnectionsConfig",
                "max_active_downstream_connections": cfg.limits.max_connections}},
        ],
        "actions": [
            {"name": "envoy.overload_actions.shrink_heap", "triggers": at(0.90)},
            {"name": "envoy.overload_actions.stop_accepting_requests", "triggers": at(0.95)},
            {"name": "envoy.overload_actions.disable_http_keepalive", "triggers": at(0.95)},
            {"name": "envoy.overload_actions.reset_high_memory_stream", "triggers": [
                {"name": heap, "scaled": {"scaling_threshold": 0.85, "saturation_threshold": 0.95}}]},
        ],
        "loadshed_points": http1_body_shedding(at(0.95)),
    }


def http1_body_shedding(trigger: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Past the trigger, an HTTP/1 connection that sends more bytes is closed instead of buffering them.
    reset_high_memory_stream sees only HTTP/2 streams (Envoy accounts no HTTP/1 buffers): without this,
    HTTP/1 bodies admitted before 95 % — the fast path buffers up to `limits.fast_path_max_bytes` each,
    outside `max_concurrent_requests` — kept growing past the cap (measured: 12 stalled 7 MiB bodies,
    64 MiB cap, heap at 149 % with nothing reset; issue 23)."""
    return [{"name": "envoy.load_shed_points.http1_server_abort_dispatch", "triggers": trigger}]


def render(cfg: Config, ca_file: str | None = None, gate_path: str | None = None) -> dict[str, Any]:
    """The whole bootstrap as a dict (yaml-dumpable). The gate's config lives in its own file
    (`gate_path`, as Envoy sees it; `render_gate` writes what goes there)."""
    ca = ca_file or find_ca_file()
    gate_path = gate_path or str(Path(GATE_FILE).resolve())
    hcm = {
        "@type": _T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "lunaroute",
        "codec_type": "AUTO",
        "stream_idle_timeout": _duration(cfg.timeouts.stream_idle_s),
        "request_timeout": "0s",
        "request_headers_timeout": "10s",  # a client that never finishes its headers holds nothing long
        "common_http_protocol_options": {"idle_timeout": "3600s"},
        "http2_protocol_options": {"max_concurrent_streams": cfg.limits.max_streams_per_connection},
        "normalize_path": True,
        "local_reply_config": local_reply_config(),
        "merge_slashes": True,
        "route_config": {
            "name": "lunaroute",
            "typed_per_filter_config": ext_proc_enabled(),
            "virtual_hosts": _virtual_hosts(cfg, _routes(cfg)),
        },
        "http_filters": [
            _gate_discovery(gate_path),
            *_fast_filters(cfg),
            gateway_ext_proc_filter(cfg),
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": _T + "envoy.extensions.filters.http.router.v3.Router",
                "suppress_envoy_headers": True,
            }},
        ],
        "access_log": [{
            "name": "envoy.access_loggers.stdout",
            # probes are not news
            "filter": {"header_filter": {"header": {
                "name": ":path", "string_match": {"safe_regex": {"regex": "^/(readyz|healthz)$"}},
                "invert_match": True}}},
            "typed_config": {
                "@type": _T + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {
                    # never the query string: some APIs take keys there
                    "formatters": [{"name": "envoy.formatter.req_without_query", "typed_config": {
                        "@type": _T + "envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"}}],
                    "text_format_source": {"inline_string":
                    "[%START_TIME%] \"%REQ(:METHOD)% %REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
                    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%ms "
                    "cluster=%UPSTREAM_CLUSTER% key=%DYNAMIC_METADATA(lunaroute:client)%\n"}},
            },
        }],
    }
    clusters = [extproc_cluster(cfg)] + [
        _provider_cluster(cfg, name, p, ca) for name, p in cfg.providers.items()
    ]
    secrets = [_secret(name, p) for name, p in cfg.providers.items() if p.keyed]
    static: dict[str, Any] = {
        "listeners": [{
            "name": "lunaroute",
            "address": {"socket_address": {"address": cfg.listen.host, "port_value": cfg.listen.port}},
            # Claude Code's requests are large (75 KB - several MB); Envoy's 1 MiB default gives 413.
            "per_connection_buffer_limit_bytes": cfg.limits.max_request_bytes,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm,
            }]}],
        }],
        "clusters": clusters,
    }
    if secrets:
        static["secrets"] = secrets
    return {
        "node": {"id": "lunaroute", "cluster": "lunaroute"},
        "admin": {"address": _admin_address(cfg)},
        "static_resources": static,
        "layered_runtime": runtime_layers(),
        "overload_manager": _overload_manager(cfg),
    }


def _admin_address(cfg: Config) -> dict[str, Any]:
    if cfg.admin.socket:
        return {"pipe": {"path": cfg.admin.socket, "mode": 0o600}}
    return {"socket_address": {"address": cfg.admin.host, "port_value": cfg.admin.port}}


def render_yaml(cfg: Config, ca_file: str | None = None, gate_path: str | None = None) -> str:
    return yaml.safe_dump(render(cfg, ca_file, gate_path), sort_keys=False, width=120)


def for_validation(boot: dict[str, Any], gate: dict[str, Any] | None = None) -> dict[str, Any]:
    """A copy whose key sources are placeholders, so `envoy --mode validate` can check a bootstrap
    on a machine that has neither the key variables nor the key files (CI, a laptop rendering for
    Kubernetes), with the gate inlined (`gate`, or one rendered without keys). Whether the keys
    really are there is `Config.check_secrets`' job."""
    if gate is not None or _has_gate_file(boot):
        boot = inline_gate(boot, gate or _keyless_gate())
    static = dict(boot["static_resources"])
    static["secrets"] = [
        {**s, "generic_secret": {"secret": {"inline_string": "placeholder"}}} for s in static.get("secrets", [])
    ]
    if not static["secrets"]:
        del static["secrets"]
    return {**boot, "static_resources": static}


def _has_gate_file(boot: dict[str, Any]) -> bool:
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return any("config_discovery" in f for f in hcm["http_filters"])


def _keyless_gate() -> dict[str, Any]:
    from .config import parse

    return render_gate(parse({}), {})
