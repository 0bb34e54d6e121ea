"""The whole bootstrap: listener, HTTP connection manager with its filters, clusters, admin,
runtime and overload manager; and the copy `envoy --mode validate` checks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import Config
from ..wire import CLIENT_KEY, METADATA_NAMESPACE, POOLS_FILTER, SPENT_FILTER
from .clusters import extproc_cluster, find_ca_file, provider_cluster, secret
from .common import T, duration
from .ext_proc import ext_proc_enabled, gateway_ext_proc_filter, runtime_layers
from .fast_path import fast_filters
from .gate import GATE_FILE, gate_discovery, inline_gate, keyless_gate
from .local_replies import local_reply_config
from .metering import usage_access_log, usage_filters
from .pools import (
    attempts_log,
    internal_listener_extension,
    pool_clusters,
    pool_listeners,
    pool_secrets,
    pools_filter,
    without_file_sds,
)
from .rate_limits import key_filter, provider_filter, rate_limit_replies
from .routes import route_table, virtual_hosts
from .spent import SPENT_FILE, refuses, render_spent, spent_discovery
from .tracing import hcm_tracing, otlp_cluster


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
                "@type": T + "envoy.extensions.resource_monitors.fixed_heap.v3.FixedHeapConfig",
                "max_heap_size_bytes": cfg.limits.envoy_max_heap_bytes}},
            {"name": "envoy.resource_monitors.global_downstream_max_connections", "typed_config": {
                "@type": T + "envoy.extensions.resource_monitors.downstream_connections.v3."
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
    64 MiB cap, heap at 149 % with nothing reset)."""
    return [{"name": "envoy.load_shed_points.http1_server_abort_dispatch", "triggers": trigger}]


def render(cfg: Config, ca_file: str | None = None, gate_path: str | None = None) -> dict[str, Any]:
    """The whole bootstrap as a dict (yaml-dumpable). The gate's config lives in its own file
    (`gate_path`, as Envoy sees it; `render_gate` writes what goes there)."""
    ca = ca_file or find_ca_file()
    gate_path = gate_path or str(Path(GATE_FILE).resolve())
    fast = fast_filters(cfg)  # with a fast path, its usage is read and logged for the workers (`metering`)
    # spent budgets, refused on the fast path (`spent`): a file beside the gate's, which the workers write
    spent = [spent_discovery(str(Path(gate_path).with_name(SPENT_FILE)))] if refuses(cfg) else []
    hcm = {
        "@type": T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "lunaroute",
        "codec_type": "AUTO",
        "stream_idle_timeout": duration(cfg.timeouts.stream_idle_s),
        # the whole request, headers and body, must arrive within this (408); the response may take longer
        "request_timeout": duration(cfg.timeouts.request_s),
        "request_headers_timeout": "10s",  # a client that never finishes its headers holds nothing long
        "common_http_protocol_options": {"idle_timeout": duration(cfg.timeouts.idle_connection_s)},
        "http2_protocol_options": {"max_concurrent_streams": cfg.limits.max_streams_per_connection},
        "normalize_path": True,
        "local_reply_config": {"mappers": [*rate_limit_replies(), *local_reply_config(cfg)["mappers"]]},
        "merge_slashes": True,
        "route_config": {
            "name": "lunaroute",
            "typed_per_filter_config": ext_proc_enabled(),
            "virtual_hosts": virtual_hosts(cfg, route_table(cfg)),
        },
        "http_filters": [
            gate_discovery(gate_path),
            *key_filter(cfg),  # requests per minute per gateway key (`rate_limits`)
            *fast,
            *spent,
            *pools_filter(cfg),  # credential pools: the fast path's start key (`pools`)
            *(usage_filters() if fast else []),
            gateway_ext_proc_filter(cfg),
            *provider_filter(cfg),  # requests per minute per provider, once it is known
            {"name": "envoy.filters.http.router", "typed_config": {
                "@type": T + "envoy.extensions.filters.http.router.v3.Router",
                "suppress_envoy_headers": True,
                **({"upstream_log": attempts_log(cfg)} if attempts_log(cfg) else {}),
            }},
        ],
        "access_log": [{
            "name": "envoy.access_loggers.stdout",
            # probes are not news
            "filter": {"header_filter": {"header": {
                "name": ":path", "string_match": {"safe_regex": {"regex": "^/(readyz|healthz)$"}},
                "invert_match": True}}},
            "typed_config": {
                "@type": T + "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                "log_format": {
                    # never the query string: some APIs take keys there
                    "formatters": [{"name": "envoy.formatter.req_without_query", "typed_config": {
                        "@type": T + "envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery"}}],
                    "text_format_source": {"inline_string":
                    "[%START_TIME%] \"%REQ(:METHOD)% %REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
                    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION%ms "
                    f"cluster=%UPSTREAM_CLUSTER% key=%DYNAMIC_METADATA({METADATA_NAMESPACE}:{CLIENT_KEY})%\n"}},
            },
        }, *([usage_access_log()] if fast else [])],
    }
    tracing = hcm_tracing(cfg)
    if tracing is not None:
        hcm["tracing"] = tracing
    clusters = [extproc_cluster(cfg)] + [
        c for name, p in cfg.providers.items()
        for c in (pool_clusters(cfg, name, p, ca) if p.pooled else [provider_cluster(cfg, name, p, ca)])
    ] + otlp_cluster(cfg, ca)
    secrets = [secret(name, p) for name, p in cfg.providers.items() if p.keyed and not p.pooled] + pool_secrets(cfg)
    static: dict[str, Any] = {
        "listeners": [{
            "name": "lunaroute",
            "address": {"socket_address": {"address": cfg.listen.host, "port_value": cfg.listen.port}},
            # Claude Code's requests are large (75 KB - several MB); Envoy's 1 MiB default gives 413.
            "per_connection_buffer_limit_bytes": cfg.limits.max_request_bytes,
            "filter_chains": [{"filters": [{
                "name": "envoy.filters.network.http_connection_manager", "typed_config": hcm,
            }]}],
        }, *pool_listeners(cfg)],
        "clusters": clusters,
    }
    if secrets:
        static["secrets"] = secrets
    extensions = {"bootstrap_extensions": [internal_listener_extension()]} if pool_listeners(cfg) else {}
    return {
        "node": {"id": "lunaroute", "cluster": "lunaroute"},
        **extensions,
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
        boot = inline_gate(boot, gate or keyless_gate())
        boot = inline_spent(boot)
    boot = without_file_sds(inline_pools(boot))
    static = dict(boot["static_resources"])
    static["secrets"] = [
        {**s, "generic_secret": {"secret": {"inline_string": "placeholder"}}} for s in static.get("secrets", [])
    ]
    if not static["secrets"]:
        del static["secrets"]
    return {**boot, "static_resources": static}


def inline_pools(boot: dict[str, Any]) -> dict[str, Any]:
    """The pools filter's default config in place of its file (see `envoy_config.pools`)."""
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    filters = [{"name": f["name"], "typed_config": f["config_discovery"]["default_config"]}
               if f["name"] == POOLS_FILTER and "config_discovery" in f else f for f in hcm["http_filters"]]
    if filters == hcm["http_filters"]:
        return boot
    boot = yaml.safe_load(yaml.safe_dump(boot))
    boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]["http_filters"] = filters
    return boot


def inline_spent(boot: dict[str, Any]) -> dict[str, Any]:
    """The spent-limits filter inlined with nothing spent, in place (give it a copy: `inline_gate` returns one)."""
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    empty = render_spent([])["resources"][0]["typed_config"]
    hcm["http_filters"] = [{"name": SPENT_FILTER, "typed_config": empty} if f["name"] == SPENT_FILTER else f
                           for f in hcm["http_filters"]]
    return boot


def _has_gate_file(boot: dict[str, Any]) -> bool:
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return any("config_discovery" in f for f in hcm["http_filters"])
