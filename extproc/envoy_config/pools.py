"""Credential pools in Envoy: every key injected by Envoy, a conversation's start key picked in Envoy
(fast path) or by the workers, and a 429/529/401/403 retried on the pool's next key within the same
client request.

Per pooled provider `X` with keys k1…kn (the recipe measured on Envoy 1.40, DESIGN.md):
- `provider_X#k`: the provider itself (TLS, SNI), one per key so its endpoint names the key;
- `pool_X_k`: an internal listener whose own HTTP connection manager injects key k (overwriting
  whatever key came with the request) and sends the request on to `provider_X#k`; `provider_X~k` is
  the cluster whose endpoint is that listener;
- the start clusters (`wire.pool_cluster`), one per key: a composite cluster walking
  [`provider_X#k`, then `provider_X~j` for the keys after k, in ring order], carrying key k's
  credential injector as its own upstream filter (filters of the clusters behind a composite never
  run). A retry moves the composite to its next entry, so the route retries 429/529/401/403 up to
  n - 1 times, without waiting for the refusing key's `retry-after`: the next key is ready now.

Which key starts: `extproc.pools.pick` (Python path) and envoy/pools.lua (fast path), the same
rendezvous function over the keys that are not cooling. Cooldowns reach Envoy in the pool file
(`render_pools`), a filter config Envoy watches (ECDS) and reloads without a restart. Each refused
attempt (the ones Envoy absorbed too) is written to Envoy's upstream log, which the workers read to
learn cooldowns (`extproc.pools.state`).
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from ..config import Config, PoolKey, Provider
from ..pools.cooldown import RATE_HEADERS
from ..wire import (
    CLUSTER_HEADER,
    FAST_HEADER,
    GATE_HEADERS,
    METADATA_NAMESPACE,
    POOL_HEADER,
    POOL_KEY,
    POOL_KEY_HEADER,
    POOLS_FILTER,
    PROVIDER_KEY,
    cluster_name,
    lua_names,
    pool_cluster,
)
from .clusters import _credential_filter, provider_cluster
from .common import T, duration, envoy_source, lua_literal
from .ext_proc import attempt_ext_proc

POOLS_FILE = "lunaroute-pools.yaml"
ATTEMPTS_LOG = "lunaroute-pool-attempts.log"
# Statuses that move a request to the pool's next key (401/403: this key is revoked, not the request).
POOL_RETRY_STATUSES = (401, 403, 429, 529)
_CODEC = {"name": "envoy.filters.http.upstream_codec",
          "typed_config": {"@type": T + "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}}


def pooled(cfg: Config) -> dict[str, Provider]:
    return {name: p for name, p in cfg.providers.items() if p.pooled}


def key_names(p: Provider) -> list[str]:
    return [k.name for k in p.pool]


def secret_name(provider: str, key: str) -> str:
    return f"{provider}_key_{key}"


def direct_cluster(provider: str, key: str) -> str:
    """The cluster that reaches the provider with `key` (its Envoy stats count the key's requests)."""
    return f"{cluster_name(provider)}#{key}"


def _via(provider: str, key: str) -> str:
    return f"{cluster_name(provider)}~{key}"


def _listener(provider: str, key: str) -> str:
    return f"pool_{provider}_{key}"


def _source(key: PoolKey) -> dict[str, Any]:
    if key.api_key_env:
        return {"environment_variable": key.api_key_env}
    return {"filename": str(Path(key.api_key_file or "").expanduser())}


def _rotated(cfg: Config, key: PoolKey) -> bool:
    """A key file Envoy re-reads when it is replaced (needs the state dir for its SDS file)."""
    return bool(key.api_key_file) and cfg.pools.state_dir is not None


def _sds_path(cfg: Config, provider: str, key: str) -> Path:
    return Path(cfg.pools.state_dir or ".") / f"lunaroute-secret-{provider}-{key}.yaml"


def pool_secrets(cfg: Config) -> list[dict[str, Any]]:
    """One secret per key of every pooled provider: where Envoy reads it (never the key itself).
    Keys in files are served by file SDS instead (`write_secret_sources`), so rotation needs no restart."""
    return [{"name": secret_name(name, k.name), "generic_secret": {"secret": _source(k)}}
            for name, p in pooled(cfg).items() for k in p.pool if not _rotated(cfg, k)]


def _sds_credential(cfg: Config, provider: str, key: PoolKey) -> dict[str, Any] | None:
    """The credential injector's secret for a key file: SDS from a file naming the key file (never
    its content), reloaded when the key file's directory sees a file moved in (an atomic rewrite)."""
    if not _rotated(cfg, key):
        return None
    folder = str(Path(key.api_key_file or "").expanduser().resolve().parent)
    return {"name": secret_name(provider, key.name), "sds_config": {"path_config_source": {
        "path": str(_sds_path(cfg, provider, key.name)), "watched_directory": {"path": folder}}}}


def write_secret_sources(cfg: Config) -> None:
    """The SDS files of pooled keys kept in files: each names its key file (Envoy reads the key)."""
    for name, p in pooled(cfg).items():
        for k in p.pool:
            if _rotated(cfg, k):
                doc = {"resources": [{"@type": T + "envoy.extensions.transport_sockets.tls.v3.Secret",
                                      "name": secret_name(name, k.name), "generic_secret": {"secret": _source(k)}}]}
                _sds_path(cfg, name, k.name).write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def _key_filter(cfg: Config, provider: str, p: Provider, key: PoolKey) -> dict[str, Any]:
    flt = _credential_filter(provider, p, secret_name(provider, key.name))
    sds = _sds_credential(cfg, provider, key)
    if sds is not None:
        flt["typed_config"]["credential"]["typed_config"]["credential"] = sds
    return flt


def _key_metadata(provider: str, key: str) -> dict[str, Any]:
    return {"filter_metadata": {METADATA_NAMESPACE: {PROVIDER_KEY: provider, POOL_KEY: key}}}


def pool_clusters(cfg: Config, name: str, p: Provider, ca_file: str) -> list[dict[str, Any]]:
    """The provider's clusters per key, the clusters of its internal listeners, and its start clusters."""
    bare = provider_cluster(cfg, name, p.model_copy(update={"keys": []}), ca_file)  # no key of its own
    keys = key_names(p)
    out: list[dict[str, Any]] = []
    for key in keys:
        direct = copy.deepcopy(bare)
        direct["name"] = direct["load_assignment"]["cluster_name"] = direct_cluster(name, key)
        direct["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
            "http_filters"] = [_CODEC]
        direct["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["metadata"] = _key_metadata(name, key)
        out.append(direct)
        out.append({
            "name": _via(name, key), "type": "STATIC", "connect_timeout": "1s",
            "per_connection_buffer_limit_bytes": cfg.limits.max_request_bytes,
            "circuit_breakers": bare["circuit_breakers"],
            "load_assignment": {"cluster_name": _via(name, key), "endpoints": [{"lb_endpoints": [{
                # `hostname`: the route's auto_host_rewrite gives the provider's own Host
                "endpoint": {"address": {"envoy_internal_address": {"server_listener_name": _listener(name, key)}},
                             "hostname": p.host},
                "metadata": _key_metadata(name, key)}]}]},
        })
    for i, key in enumerate(keys):
        ring = keys[i:] + keys[:i]
        out.append({
            "name": pool_cluster(name, keys, key), "connect_timeout": duration(cfg.timeouts.connect_s),
            "lb_policy": "CLUSTER_PROVIDED",
            "cluster_type": {"name": "envoy.clusters.composite", "typed_config": {
                "@type": T + "envoy.extensions.clusters.composite.v3.ClusterConfig",
                "clusters": [{"name": direct_cluster(name, key)}] + [{"name": _via(name, k)} for k in ring[1:]]}},
            "per_connection_buffer_limit_bytes": cfg.limits.max_request_bytes,
            "circuit_breakers": bare["circuit_breakers"],
            "typed_extension_protocol_options": {"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                "@type": T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                "explicit_http_config": {"http_protocol_options": {}},
                "http_filters": [attempt_ext_proc(cfg, name), _key_filter(cfg, name, p, p.pool[i]), _CODEC]}},
        })
    return out


def pool_listeners(cfg: Config) -> list[dict[str, Any]]:
    """Per key of every pooled provider, the internal listener that puts that key on a request."""
    out = []
    for name, p in pooled(cfg).items():
        for pool_key in p.pool:
            key = pool_key.name
            hcm = {
                "@type": T + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                "stat_prefix": _listener(name, key),
                "stream_idle_timeout": duration(cfg.timeouts.stream_idle_s),
                "request_timeout": "0s",
                "server_header_transformation": "PASS_THROUGH",  # the provider's Server header, as it was
                "generate_request_id": False,
                "route_config": {"name": _listener(name, key), "virtual_hosts": [{
                    "name": "pool", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {
                        "cluster": direct_cluster(name, key), "timeout": "0s",
                        "idle_timeout": duration(cfg.timeouts.stream_idle_s), "auto_host_rewrite": True}}]}]},
                "http_filters": [
                    _key_filter(cfg, name, p, pool_key),
                    {"name": "envoy.filters.http.router", "typed_config": {
                        "@type": T + "envoy.extensions.filters.http.router.v3.Router", "suppress_envoy_headers": True}},
                ],
            }
            out.append({"name": _listener(name, key), "internal_listener": {},
                        "per_connection_buffer_limit_bytes": cfg.limits.max_request_bytes,
                        "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                                                        "typed_config": hcm}]}]})
    return out


def internal_listener_extension() -> dict[str, Any]:
    return {"name": "envoy.bootstrap.internal_listener", "typed_config": {
        "@type": T + "envoy.extensions.bootstrap.internal_listener.v3.InternalListener"}}


def pool_retry_policy(cfg: Config, keys: int) -> dict[str, Any]:
    """Each retry is the pool's next key (the composite's next entry), at once: the refusing key's
    `retry-after` is its own, not the pool's."""
    return {
        "retry_on": "connect-failure,refused-stream,reset-before-request,retriable-status-codes",
        "retriable_status_codes": sorted({*POOL_RETRY_STATUSES, *cfg.retries.retry_on_status}),
        "num_retries": keys - 1,
        "retry_back_off": {"base_interval": "0.005s", "max_interval": "0.02s"},
    }


def key_response_header() -> list[dict[str, Any]]:
    """Tells the client (and the request phase) which key answered: its name, from the endpoint."""
    return [{"header": {"key": POOL_KEY_HEADER, "value": f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:{POOL_KEY})%"},
             "append_action": "OVERWRITE_IF_EXISTS_OR_ADD", "keep_empty_value": False}]


def pooled_routes(cfg: Config, action: dict[str, Any], provider_header: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Requests the workers sent to a pool's start cluster: that cluster, with the pool's retries."""
    routes = []
    for name, p in pooled(cfg).items():
        keys = key_names(p)
        for key in keys:
            cluster = pool_cluster(name, keys, key)
            route = {k: v for k, v in action.items() if k != "inline_cluster_specifier_plugin"}
            routes.append({
                "name": f"pool/{name}/{key}",
                "match": {"prefix": "/", "headers": [{"name": CLUSTER_HEADER, "string_match": {"exact": cluster}}]},
                "route": {**route, "cluster": cluster, "retry_policy": pool_retry_policy(cfg, len(keys))},
                "request_headers_to_remove": GATE_HEADERS,
                "response_headers_to_add": provider_header + key_response_header()})
    return routes


def fast_pool_routes(cfg: Config, route: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """A fast route of a pooled provider, once per start key pools.lua may pick."""
    p = cfg.providers[name]
    keys = key_names(p)
    out = []
    for key in keys:
        r = copy.deepcopy(route)  # same name: the access log's route name says provider and path
        r["match"]["headers"] = [{"name": FAST_HEADER, "string_match": {"exact": name}},
                                 {"name": POOL_HEADER, "string_match": {"exact": key}}]
        r["route"]["cluster"] = pool_cluster(name, keys, key)
        r["route"]["retry_policy"] = pool_retry_policy(cfg, len(keys))
        r["response_headers_to_add"] = r.get("response_headers_to_add", []) + key_response_header()
        out.append(r)
    return out


def pools_settings(cfg: Config, unusable: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """What pools.lua picks with: each pooled provider's keys and weights in config order, and until
    when each unusable key is out (epoch seconds: cooling, or revoked)."""
    unusable = unusable or {}
    return {"providers": {name: {"keys": [{"name": k.name, "weight": k.weight} for k in p.pool],
                                 "out": {k: until for k, until in unusable.get(name, {}).items()}}
                          for name, p in pooled(cfg).items()},
            "names": lua_names()}


def pools_filter_config(cfg: Config, unusable: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    code = ("-- Rendered by `lunaroute` from the gateway's config and the pools' cooldowns; the code below\n"
            f"-- POOLS is envoy/pools.lua.\nlocal POOLS = {lua_literal(pools_settings(cfg, unusable))}\n\n"
            f"{envoy_source('pools.lua')}")
    return {"@type": T + "envoy.extensions.filters.http.lua.v3.Lua", "default_source_code": {"inline_string": code}}


def render_pools(cfg: Config, unusable: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
    """The pool file Envoy watches (an ECDS discovery response): rewriting it moves fast-path
    conversations off cooling keys on every Envoy worker, without a restart."""
    return {"resources": [{"@type": T + "envoy.config.core.v3.TypedExtensionConfig", "name": POOLS_FILTER,
                           "typed_config": pools_filter_config(cfg, unusable)}]}


def write_pools(cfg: Config, path: Path, unusable: dict[str, dict[str, float]] | None = None) -> bool:
    """Write the pool file atomically when its content changes (Envoy reloads it on the rename)."""
    text = yaml.safe_dump(render_pools(cfg, unusable), sort_keys=False, width=120)
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return True


def pools_filter(cfg: Config) -> list[dict[str, Any]]:
    """pools.lua after the fast path: from the pool file when there is a state dir, else inline."""
    if not pooled(cfg):
        return []
    if cfg.pools.state_dir is None:
        return [{"name": POOLS_FILTER, "typed_config": pools_filter_config(cfg)}]
    path = str(Path(cfg.pools.state_dir) / POOLS_FILE)
    return [{"name": POOLS_FILTER, "config_discovery": {
        "config_source": {"path_config_source": {"path": path, "watched_directory": {"path": cfg.pools.state_dir}}},
        "default_config": pools_filter_config(cfg),
        "type_urls": [T + "envoy.extensions.filters.http.lua.v3.Lua"]}}]


def attempts_log(cfg: Config) -> list[dict[str, Any]]:
    """The router's upstream log of every attempt (also the ones Envoy retried on the next key, and the
    fast path's, which no worker sees): the key's name, the status and the provider's rate-limit
    headers — refusals teach cooldowns, the rest the provider's utilisation (`lunaroute pools`)."""
    if not pooled(cfg) or cfg.pools.state_dir is None:
        return []
    fields = {"provider": f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:{PROVIDER_KEY})%",
              "key": f"%UPSTREAM_METADATA({METADATA_NAMESPACE}:{POOL_KEY})%", "status": "%RESPONSE_CODE%",
              "at": "%START_TIME(%s.%3f)%"}
    fields.update({h: f"%RESP({h})%" for h in RATE_HEADERS})
    return [{"name": "envoy.access_loggers.file",
             "typed_config": {"@type": T + "envoy.extensions.access_loggers.file.v3.FileAccessLog",
                              "path": str(Path(cfg.pools.state_dir) / ATTEMPTS_LOG),
                              "log_format": {"json_format": fields}}}]


def without_file_sds(boot: dict[str, Any]) -> dict[str, Any]:
    """A copy of a bootstrap whose file-SDS key secrets are static placeholders, for `envoy --mode
    validate` on a machine without the SDS files (they are written when the gateway starts)."""
    names: list[str] = []

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if "sds_config" in node and "name" in node and set(node) == {"name", "sds_config"}:
                names.append(node["name"])
                return {"name": node["name"]}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    boot = walk(boot)
    if names:
        static = boot["static_resources"]
        static["secrets"] = static.get("secrets", []) + [
            {"name": n, "generic_secret": {"secret": {"inline_string": "placeholder"}}} for n in dict.fromkeys(names)]
    return boot
