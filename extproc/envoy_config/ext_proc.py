"""The ext_proc filter: the request phase's (on the listener) and the per-attempt one (on each
provider cluster), with the settings the Helm chart's mesh patches share."""

from __future__ import annotations

from typing import Any

from ..config import Config
from ..wire import (
    ATTEMPT_FILTER,
    ATTEMPT_PROVIDER_METADATA,
    CHAIN_HEADER,
    EXTPROC_CLUSTER,
    EXTPROC_FILTER,
    GATE_METADATA,
    GATE_SEALED,
)
from .common import T, duration, only_with_header


def ext_proc_filter(cfg: Config) -> dict[str, Any]:
    """The ext_proc HTTP filter; shared with the Helm chart's mesh patches (same settings everywhere)."""
    ep = cfg.extproc
    return {
        "name": EXTPROC_FILTER,
        "typed_config": {
            "@type": T + "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
            "grpc_service": {
                "envoy_grpc": {
                    "cluster_name": EXTPROC_CLUSTER,
                    "max_receive_message_length": ep.max_message_bytes,
                },
                "timeout": duration(ep.message_timeout_ms / 1000),
            },
            "failure_mode_allow": False,
            "processing_mode": processing_mode(),
            "allow_mode_override": True,
            "message_timeout": duration(ep.message_timeout_ms / 1000),
            "max_message_timeout": duration(max(30.0, ep.message_timeout_ms / 1000)),
            # The body answer re-routes (cluster header + clear_route_cache) and rewrites :path.
            "mutation_rules": {"allow_all_routing": True},
        },
    }


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
    grpc["initial_metadata"] = [*grpc.get("initial_metadata", []), {"key": GATE_METADATA, "value": GATE_SEALED}]
    # Off unless a route enables it (`ext_proc_enabled`, on the whole route table): a request Envoy's
    # codec rejects (headers too large, bad framing) has no route, and its 400/431 would otherwise
    # wait in this filter for a worker while the codec closes the connection — the client got nothing.
    ext["disabled"] = True
    return ext


def ext_proc_enabled() -> dict[str, Any]:
    """Per-filter config of the route table that switches `gateway_ext_proc_filter` on for every
    route (routes that bypass it still turn it off with `ext_proc_off`)."""
    return {EXTPROC_FILTER: {
        "@type": T + "envoy.config.route.v3.FilterConfig", "disabled": False,
        "config": {"@type": T + "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute", "overrides": {}}}}


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


def attempt_ext_proc(cfg: Config, provider: str) -> dict[str, Any]:
    """The per-attempt ext_proc of a provider cluster: re-translates and re-authenticates each attempt
    of a fallback chain for *this* provider. It only runs when the request carries a chain header, so
    requests without fallbacks cost nothing here. gRPC metadata names the provider to the server."""
    ext = gateway_ext_proc_filter(cfg)["typed_config"]
    ext["grpc_service"] = {**ext["grpc_service"], "initial_metadata": [
        {"key": ATTEMPT_PROVIDER_METADATA, "value": provider}, {"key": GATE_METADATA, "value": GATE_SEALED}]}
    ext["processing_mode"] = {**ext["processing_mode"], "request_header_mode": "SEND"}
    flt = only_with_header(CHAIN_HEADER, EXTPROC_FILTER, ext)  # skip unless the chain header is there
    return {**flt, "name": ATTEMPT_FILTER}

# Envoy 1.40 crashes (SIGSEGV) when the gRPC side stream of an ext_proc filter running in a cluster's
# upstream filter chain (our per-attempt filter) crosses a write-buffer watermark: concurrent
# fallback-chain requests of about 1 MB and more did it (README: Known issues). Side-stream flow
# control only pauses reading the client while the gRPC stream is backed up; request bodies are
# buffered whole and capped by `limits.max_request_bytes` anyway, so turning it off costs nothing.
SIDE_STREAM_FLOW_CONTROL = "envoy.reloadable_features.grpc_side_stream_flow_control"


def runtime_layers() -> dict[str, Any]:
    """Envoy runtime overrides the gateway depends on (see SIDE_STREAM_FLOW_CONTROL)."""
    return {"layers": [{"name": "lunaroute", "static_layer": {SIDE_STREAM_FLOW_CONTROL: False}}]}
