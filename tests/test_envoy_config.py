"""The rendered Envoy bootstrap: valid for the real Envoy, and saying what the gateway promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from extproc import config, envoy_config, wire
from extproc.dialects import anthropic, openai_chat
from extproc.envoy_config.routes import cluster_matcher
from extproc.supervisor import find_envoy, validate_bootstrap
from tests.envoy_local_replies import envelope_shape, local_reply_body

CONFIGS = Path(__file__).parent / "fixtures" / "configs"


def _routes(boot: dict) -> list[dict]:
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    return hcm["route_config"]["virtual_hosts"][0]["routes"]


def _by_name(boot: dict, name: str) -> dict:
    return next(r for r in _routes(boot) if r["name"] == name)


@pytest.mark.parametrize(("name", "bypass"), [("defaults", None), ("full.yaml", None), ("full.yaml", "gemini")])
def test_rendered_bootstrap_passes_envoy_validate(tmp_path: Path, name: str, bypass: str | None) -> None:
    env = {"LUNAROUTE_BYPASS_PROVIDER": bypass} if bypass else {}
    cfg = config.load(None if name == "defaults" else CONFIGS / name, env=env)
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy_config.render_yaml(cfg))
    ok, last = validate_bootstrap(find_envoy(), path)
    assert ok, last


def test_bypass_disabled_renders_a_json_404_and_still_validates(tmp_path: Path) -> None:
    cfg = config.load(CONFIGS / "full.yaml", env={"LUNAROUTE_BYPASS_ENABLED": "0"})
    boot = envoy_config.render(cfg)
    route = _by_name(boot, "not_found")
    assert route["direct_response"]["status"] == 404
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy_config.render_yaml(cfg))
    assert validate_bootstrap(find_envoy(), path)[0]


def test_bypass_route_skips_ext_proc_and_rewrites_to_the_provider_prefix() -> None:
    cfg = config.parse({"providers": {
        "a": {"type": "anthropic", "base_url": "https://api.anthropic.com"},
        "or": {"type": "openai", "base_url": "https://openrouter.ai/api/v1", "api_key_env": "K"}},
        "bypass": {"provider": "or"}}, env={})
    route = _by_name(envoy_config.render(cfg), "bypass")
    assert route["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["disabled"] is True
    assert route["route"]["cluster"] == "provider_or"
    assert route["route"]["prefix_rewrite"] == "/api/"
    # the client's own credentials never reach a provider that has its own key, nor the gate's headers
    assert set(route["request_headers_to_remove"]) == {"x-api-key", "authorization", *wire.GATE_HEADERS}
    # the gate checks a gateway key's provider allow-list against the bypass provider
    assert route["metadata"]["filter_metadata"][wire.GATE_FILTER] == {"provider": "or"}


def test_bypass_to_a_versioned_base_path_replaces_the_clients_v1() -> None:
    cfg = config.parse({"providers": {"gemini": {"type": "openai", "api_key_env": "K",
                                                 "base_url": "https://generativelanguage.googleapis.com/v1beta/openai"}}},
                       env={})
    routes = envoy_config.render(cfg)
    assert _by_name(routes, "bypass_v1")["match"] == {"prefix": "/v1/"}
    assert _by_name(routes, "bypass_v1")["route"]["prefix_rewrite"] == "/v1beta/openai/"
    assert _by_name(routes, "bypass")["route"]["prefix_rewrite"] == "/v1beta/openai/"


def test_intercepted_paths_run_ext_proc_and_pick_the_cluster_from_its_header() -> None:
    boot = envoy_config.render(config.load(env={}))
    names = {r["name"] for r in _routes(boot)}
    assert {"intercept/v1/messages", "intercept/v1/chat/completions", "intercept/v1/models",
            "intercept/v1/responses", "intercept/readyz", "intercept/metrics"} <= names
    route = _by_name(boot, "intercept/v1/messages")
    plugin = route["route"]["inline_cluster_specifier_plugin"]["extension"]
    assert plugin["name"] == "envoy.router.cluster_specifier_plugin.matcher"
    assert route["route"]["retry_policy"]["refresh_cluster_on_retry"] is True
    assert "typed_per_filter_config" not in route
    assert route["route"]["timeout"] == "0s"  # SSE streams run long; idle timeouts cut dead ones


def test_provider_keys_never_appear_in_the_rendered_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-very-secret-value")
    text = envoy_config.render_yaml(config.load(CONFIGS / "full.yaml"))
    assert "sk-very-secret-value" not in text
    assert "environment_variable: OPENAI_API_KEY" in text
    assert "filename: /run/secrets/local-key" in text


def test_large_claude_code_bodies_and_slow_python_are_allowed_for() -> None:
    cfg = config.load(env={})
    boot = envoy_config.render(cfg)
    listener = boot["static_resources"]["listeners"][0]
    assert listener["per_connection_buffer_limit_bytes"] >= 32 * 1024 * 1024
    ext = envoy_config.ext_proc_filter(cfg)["typed_config"]
    assert ext["grpc_service"]["envoy_grpc"]["max_receive_message_length"] >= 32 * 1024 * 1024
    assert float(ext["message_timeout"].rstrip("s")) >= 5
    assert ext["allow_mode_override"] is True


def test_https_providers_get_tls_with_sni_and_plain_http_does_not() -> None:
    boot = envoy_config.render(config.load(CONFIGS / "full.yaml", env={}))
    clusters = {c["name"]: c for c in boot["static_resources"]["clusters"]}
    tls = clusters["provider_gpt"]["transport_socket"]["typed_config"]
    assert tls["sni"] == "api.openai.com"
    assert "transport_socket" not in clusters["provider_local"]
    assert clusters["provider_gpt"]["outlier_detection"]["consecutive_5xx"] > 0
    assert boot["admin"]["address"]["socket_address"]["address"] == "127.0.0.1"


def test_each_attempt_picks_its_cluster_from_the_headers_the_ext_proc_server_set() -> None:
    cfg = config.load(CONFIGS / "full.yaml", env={})
    matcher = cluster_matcher(cfg)
    assert matcher["matcher_tree"]["input"]["typed_config"]["header_name"] == "x-envoy-attempt-count"
    retry_1 = matcher["matcher_tree"]["exact_match_map"]["map"]["1"]["matcher"]["matcher_tree"]
    assert retry_1["input"]["typed_config"]["header_name"] == "x-lunaroute-fallback-1"
    first = matcher["on_no_match"]["matcher"]["matcher_tree"]
    assert first["input"]["typed_config"]["header_name"] == wire.CLUSTER_HEADER
    assert set(first["exact_match_map"]["map"]) == {"provider_anthropic", "provider_gpt", "provider_local",
                                                     "provider_gemini", "provider_codex"}


def test_provider_clusters_run_the_per_attempt_ext_proc_only_for_chains() -> None:
    boot = envoy_config.render(config.load(CONFIGS / "full.yaml", env={}))
    gpt = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "provider_gpt")
    filters = gpt["typed_extension_protocol_options"]["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "http_filters"]
    assert [f["name"] for f in filters] == ["lunaroute.attempt_ext_proc", "envoy.filters.http.credential_injector",
                                            "envoy.filters.http.upstream_codec"]
    wrapped = filters[0]["typed_config"]
    skip_unless_chain = wrapped["xds_matcher"]["matcher_list"]["matchers"][0]
    assert skip_unless_chain["on_match"]["action"]["name"] == "skip"
    assert "not_matcher" in skip_unless_chain["predicate"]
    metadata = wrapped["extension_config"]["typed_config"]["grpc_service"]["initial_metadata"]
    assert metadata == [{"key": wire.ATTEMPT_PROVIDER_METADATA, "value": "gpt"},
                        {"key": wire.GATE_METADATA, "value": "sealed"}]


def test_a_chain_of_n_providers_gets_a_route_with_n_minus_1_retries() -> None:
    boot = envoy_config.render(config.load(CONFIGS / "full.yaml", env={}))
    routes = {r["name"]: r for r in _routes(boot)}
    assert routes["chain3/v1/messages"]["route"]["retry_policy"]["num_retries"] == 2
    assert routes["chain2/v1/chat/completions"]["match"]["headers"][0]["name"] == wire.ATTEMPTS_HEADER
    names = list(routes)
    assert names.index("chain2/v1/messages") < names.index("intercept/v1/messages")
    assert routes["chain2/v1/responses"]["match"]["path_separated_prefix"] == "/v1/responses"


@pytest.mark.parametrize("status", [404, 408, 413, 429, 500, 502, 503, 504])
def test_envoys_local_replies_have_the_shape_python_answers_with(status: int) -> None:
    """One error shape per status, whoever produced it: Envoy's mappers are rendered from the dialect
    modules' tables; a provider's base path in front of an API path keeps the API's envelope."""
    cfg = config.load(CONFIGS / "full.yaml", env={})
    replies = envoy_config.local_reply_config(cfg)
    message = "%LOCAL_REPLY_BODY%"
    assert local_reply_body(replies, status, "/v1/messages?beta=true") == json.loads(
        anthropic.error_body(status, message))
    for path in ("/v1/chat/completions", "/v1/responses/abc", "/v1beta/openai/chat/completions"):
        assert local_reply_body(replies, status, path) == json.loads(openai_chat.error_body(status, message)), path
    assert envelope_shape(local_reply_body(replies, status, "/v1/organizations/o/responses")) == "both"


def test_render_is_plain_yaml_round_trip() -> None:
    cfg = config.load(env={})
    assert yaml.safe_load(envoy_config.render_yaml(cfg)) == envoy_config.render(cfg)
