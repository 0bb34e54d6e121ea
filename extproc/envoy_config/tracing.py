"""Envoy's own OpenTelemetry tracer on the listener (`tracing:` in the config; off by default).

Spans go over OTLP/HTTP to the collector's `/v1/traces`, sampled at `sample_rate`. Envoy names the span
after the route; custom tags add the GenAI attributes the gateway knows without Python: the provider
that answered (its endpoint's metadata), the model the body named, the gateway key's name, and the
usage Envoy read from the response (fast-path requests; `envoy_config.metering`). Tags are set when the
span ends, so response-time metadata is there.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..config import Config
from ..wire import BODY_METADATA, CLIENT_KEY, METADATA_NAMESPACE, MODEL_KEY, PROVIDER_KEY, USAGE_METADATA
from .common import T

OTLP_CLUSTER = "lunaroute_otlp"


def _request_metadata(tag: str, namespace: str, key: str) -> dict[str, Any]:
    return {"tag": tag, "metadata": {"kind": {"request": {}},
                                     "metadata_key": {"key": namespace, "path": [{"key": key}]}}}


def gen_ai_tags() -> list[dict[str, Any]]:
    return [
        {"tag": "gen_ai.provider.name", "metadata": {
            "kind": {"host": {}}, "metadata_key": {"key": METADATA_NAMESPACE, "path": [{"key": PROVIDER_KEY}]}}},
        _request_metadata("gen_ai.request.model", BODY_METADATA, MODEL_KEY),
        _request_metadata("lunaroute.key", METADATA_NAMESPACE, CLIENT_KEY),
        # Anthropic and OpenAI Responses name them so; OpenAI Chat's prompt/completion tokens keep their names
        _request_metadata("gen_ai.usage.input_tokens", USAGE_METADATA, "input_tokens"),
        _request_metadata("gen_ai.usage.output_tokens", USAGE_METADATA, "output_tokens"),
        _request_metadata("gen_ai.usage.prompt_tokens", USAGE_METADATA, "prompt_tokens"),
        _request_metadata("gen_ai.usage.completion_tokens", USAGE_METADATA, "completion_tokens"),
        _request_metadata("gen_ai.usage.cache_read_input_tokens", USAGE_METADATA, "cache_read_input_tokens"),
    ]


def hcm_tracing(cfg: Config) -> dict[str, Any] | None:
    """The HTTP connection manager's `tracing`, or None when no collector is configured."""
    t = cfg.tracing
    if not t.otlp_endpoint:
        return None
    return {
        "random_sampling": {"value": t.sample_rate * 100},
        "spawn_upstream_span": True,
        "custom_tags": gen_ai_tags(),
        "provider": {"name": "envoy.tracers.opentelemetry", "typed_config": {
            "@type": T + "envoy.config.trace.v3.OpenTelemetryConfig",
            "service_name": t.service_name,
            "http_service": {
                "http_uri": {"uri": t.otlp_endpoint.rstrip("/") + "/v1/traces", "cluster": OTLP_CLUSTER,
                             "timeout": "2s"},
            },
        }},
    }


def otlp_cluster(cfg: Config, ca_file: str) -> list[dict[str, Any]]:
    """The collector's cluster (TLS for https), when tracing is on."""
    if not cfg.tracing.otlp_endpoint:
        return []
    url = urlsplit(cfg.tracing.otlp_endpoint)
    tls = url.scheme == "https"
    host = url.hostname or ""
    cluster: dict[str, Any] = {
        "name": OTLP_CLUSTER, "type": "STRICT_DNS", "connect_timeout": "2s", "dns_lookup_family": "V4_PREFERRED",
        "load_assignment": {"cluster_name": OTLP_CLUSTER, "endpoints": [{"lb_endpoints": [{"endpoint": {
            "address": {"socket_address": {"address": host, "port_value": url.port or (443 if tls else 80)}}}}]}]},
    }
    if tls:
        cluster["transport_socket"] = {"name": "envoy.transport_sockets.tls", "typed_config": {
            "@type": T + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext", "sni": host,
            "common_tls_context": {"validation_context": {"trusted_ca": {"filename": ca_file}}}}}
    return [cluster]
