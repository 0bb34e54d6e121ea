"""Envoy's clusters: one per provider (TLS with SNI, its key injected by Envoy, circuit breakers,
outlier detection, the per-attempt ext_proc filter), and the ext_proc workers'."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Any

from ..config import Config, Provider
from ..wire import EXTPROC_CLUSTER, METADATA_NAMESPACE, PROVIDER_KEY, cluster_name
from .common import T, duration
from .ext_proc import attempt_ext_proc

DEFAULT_CA_FILE = "/etc/ssl/certs/ca-certificates.crt"


def find_ca_file() -> str:
    """A CA bundle Envoy can read: the system bundle, else certifi's."""
    if os.path.exists(DEFAULT_CA_FILE):
        return DEFAULT_CA_FILE
    try:
        import certifi

        return certifi.where()
    except ImportError:
        return DEFAULT_CA_FILE


def _credential_filter(name: str, p: Provider, secret_name: str | None = None) -> dict[str, Any]:
    """Envoy's credential injector for the secret `secret_name` (default: the provider's one key)."""
    header, prefix = p.auth_header()
    generic: dict[str, Any] = {
        "@type": T + "envoy.extensions.http.injected_credentials.generic.v3.Generic",
        "credential": {"name": secret_name or f"{name}_key"},
        "header": header,
    }
    if prefix:
        generic["header_value_prefix"] = prefix
    return {
        "name": "envoy.filters.http.credential_injector",
        "typed_config": {
            "@type": T + "envoy.extensions.filters.http.credential_injector.v3.CredentialInjector",
            "overwrite": True,
            "credential": {"name": "envoy.http.injected_credentials.generic", "typed_config": generic},
        },
    }


def secret(name: str, p: Provider) -> dict[str, Any]:
    key = p.pool[0]  # a provider with one key (pools: envoy_config.pools.pool_secrets)
    if key.api_key_env:
        source = {"environment_variable": key.api_key_env}
    else:
        source = {"filename": str(Path(key.api_key_file or "").expanduser())}
    return {"name": f"{name}_key", "generic_secret": {"secret": source}}


def provider_cluster(cfg: Config, name: str, p: Provider, ca_file: str) -> dict[str, Any]:
    options: dict[str, Any] = {"@type": T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"}
    if p.tls:
        options["auto_config"] = {"http_protocol_options": {}, "http2_protocol_options": {}}
        options["upstream_http_protocol_options"] = {"auto_sni": True, "auto_san_validation": True}
    else:
        options["explicit_http_config"] = {"http_protocol_options": {}}
    options["common_http_protocol_options"] = {"idle_timeout": "300s"}
    options["http_filters"] = [
        attempt_ext_proc(cfg, name),
        *([_credential_filter(name, p)] if p.keyed else []),
        {"name": "envoy.filters.http.upstream_codec",
         "typed_config": {"@type": T + "envoy.extensions.filters.http.upstream_codec.v3.UpstreamCodec"}},
    ]
    cluster: dict[str, Any] = {
        "name": cluster_name(name),
        "type": "LOGICAL_DNS",
        "dns_lookup_family": "V4_PREFERRED",
        "connect_timeout": duration(cfg.timeouts.connect_s),
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
                "metadata": {"filter_metadata": {METADATA_NAMESPACE: {PROVIDER_KEY: name}}},
            }]}],
        },
    }
    if p.tls:
        cluster["transport_socket"] = {
            "name": "envoy.transport_sockets.tls",
            "typed_config": {
                "@type": T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
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
            "@type": T + "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
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
