"""The pieces of fast-path metering and rate limits that need no Envoy: reading an access-log entry
(the provider's usage fields as Envoy lifted them), the `rate_limits` config and its teaching errors,
and what the renderer puts in Envoy's config for them."""

from __future__ import annotations

import pytest

from extproc import config, envoy_config
from extproc._proto import access_log_pb2 as pb
from extproc.envoy_config.spent import SpentScope, spent_settings
from extproc.metering import fast_routes, read_entry
from extproc.wire import BODY_METADATA, METADATA_NAMESPACE, USAGE_METADATA

PROVIDERS = {"anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
             "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K"},
             "resp": {"type": "openai-responses", "base_url": "https://api.openai.com/v1", "api_key_env": "K"}}
KEYS = {"keys": [{"name": "alice", "key_sha256": "a" * 64}]}


def _cfg(**extra: object) -> config.Config:
    return config.parse({"providers": PROVIDERS, "routing": {"rules": [{"model": "gpt-*", "provider": "gpt"},
                                                                     {"model": "o*", "provider": "resp"}]},
                         **extra}, env={})


def _entry(route: str, usage: dict[str, float], model: object = "claude-x", key: str | None = "alice",
           status: int = 200) -> pb.HTTPAccessLogEntry:
    e = pb.HTTPAccessLogEntry()
    c = e.common_properties
    c.route_name, c.upstream_cluster = route, "provider_anthropic"
    c.time_to_last_upstream_tx_byte.FromMilliseconds(2)
    c.time_to_first_upstream_rx_byte.FromMilliseconds(12)
    c.time_to_last_upstream_rx_byte.FromMilliseconds(52)
    c.metadata.filter_metadata[USAGE_METADATA].update(usage)
    c.metadata.filter_metadata[BODY_METADATA].update({"model": model})
    if key is not None:
        c.metadata.filter_metadata[METADATA_NAMESPACE].update({"client": key})
    e.response.response_code.value = status
    e.response.response_headers["retry-after"] = "3"
    return e


@pytest.mark.parametrize(("route", "usage", "expected"), [
    ("fast/anthropic/v1/messages",
     {"input_tokens": 21, "output_tokens": 7, "cache_read_input_tokens": 5, "cache_creation_input_tokens": 2},
     {"input": 28, "output": 7, "cache_read": 5, "cache_write": 2}),  # Anthropic: cache reads and writes join the input
    ("fast/gpt/v1/chat/completions", {"prompt_tokens": 30, "completion_tokens": 9, "cached_tokens": 10},
     {"input": 30, "output": 9, "cache_read": 10}),
    ("fast/resp/v1/responses", {"input_tokens": 40, "output_tokens": 11, "cached_tokens": 8},
     {"input": 40, "output": 11, "cache_read": 8}),
    ("fast/anthropic/v1/messages", {"input_tokens": -5, "output_tokens": 1e30},
     {"input": 0, "output": 1 << 40}),  # clamped, never negative
])
def test_an_entry_reads_back_as_the_python_path_would_read_the_body(route, usage, expected) -> None:
    routes = fast_routes(_cfg())
    entry = read_entry(_entry(route, usage), routes)
    assert entry is not None
    assert entry.usage == expected
    assert (entry.key, entry.model, entry.status) == ("alice", "claude-x", 200)
    assert entry.provider == route.split("/")[1]
    assert entry.ttft_s == pytest.approx(0.010) and entry.duration_s == pytest.approx(0.050)
    assert entry.headers == {"retry-after": "3"}


def test_nothing_in_an_entry_picks_a_provider_or_a_label() -> None:
    routes = fast_routes(_cfg())
    assert read_entry(_entry("intercept/v1/messages", {}), routes) is None  # not a fast route of this config
    assert read_entry(_entry("fast/evil/v1/messages", {}), routes) is None
    odd = read_entry(_entry("fast/gpt/v1/chat/completions", {}, model=["x"], key=None), routes)
    assert odd is not None and odd.model is None and odd.key == "" and odd.usage == {}
    long = read_entry(_entry("fast/anthropic/v1/messages", {}, model="m" * 5000), routes)
    assert long is not None and len(long.model or "") == 256


@pytest.mark.parametrize(("limit", "message"), [
    ({"rpm": 5}, "give exactly one of key"),
    ({"key": "alice", "provider": "gpt", "rpm": 5}, "give exactly one of key"),
    ({"key": "bob", "rpm": 5}, "rate_limits[0].key: no gateway key is named 'bob'"),
    ({"key": "alicia", "rpm": 5}, "did you mean 'alice'?"),
    ({"provider": "gtp", "tpm": 5}, "rate_limits[0].provider: unknown provider 'gtp'; did you mean 'gpt'?"),
    ({"key": "alice"}, "give rpm (requests per minute) or tpm"),
    ({"key": "alice", "model": "gpt-5*", "tpm": 5}, "needs a provider"),
    ({"provider": "gpt", "model": "gpt-5*", "rpm": 5}, "use tpm for a model"),
    ({"key": "alice", "concurrent": 8}, "concurrency per key or provider is not enforced"),
    ({"key": "alice", "rpm": 0}, "rate_limits.0.rpm"),
])
def test_rate_limit_mistakes_are_named_with_their_fix(limit: dict, message: str) -> None:
    with pytest.raises(config.ConfigError) as err:
        config.parse({"providers": PROVIDERS, "access": KEYS, "rate_limits": [limit]}, env={})
    assert message in str(err.value)


def _filters(cfg: config.Config) -> dict[str, dict]:
    hcm = envoy_config.render(cfg)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return {f["name"]: f for f in hcm["typed_config"]["http_filters"]}


def test_rpm_limits_become_local_rate_limit_descriptors() -> None:
    cfg = _cfg(access=KEYS, rate_limits=[{"key": "alice", "rpm": 60}, {"key": "*", "rpm": 120},
                                         {"provider": "gpt", "rpm": 30}])
    filters = _filters(cfg)
    names = list(filters)
    assert names.index("lunaroute.rpm_keys") == names.index("lunaroute.gate") + 1  # before anything else
    assert names.index("lunaroute.rpm_providers") == names.index("envoy.filters.http.router") - 1
    keys = filters["lunaroute.rpm_keys"]["typed_config"]
    assert [d["entries"] for d in keys["descriptors"]] == [[{"key": "lunaroute_key", "value": "alice"}],
                                                           [{"key": "lunaroute_any_key"}]]
    assert keys["descriptors"][0]["token_bucket"] == {"max_tokens": 60, "tokens_per_fill": 60, "fill_interval": "60s"}
    assert keys["enable_retry_after_header"] is True and keys["enable_x_ratelimit_headers"] == "DRAFT_VERSION_03"
    providers = filters["lunaroute.rpm_providers"]["typed_config"]
    assert providers["descriptors"] == [{"entries": [{"key": "destination_cluster", "value": "provider_gpt"}],
                                         "token_bucket": {"max_tokens": 30, "tokens_per_fill": 30,
                                                          "fill_interval": "60s"}}]
    assert "lunaroute.rpm_keys" not in _filters(_cfg())


def test_the_spent_file_lists_scopes_and_model_patterns() -> None:
    settings = spent_settings([
        SpentScope("alice", "*", "tpm", "full", 1_800_000_060.0, limit=60),
        SpentScope("*", "gpt", "tpm", "full", 1_800_000_060.0, model="gpt-5*", limit=100),
        SpentScope("", "anthropic", "daily", "spent", 1_800_086_400.0)])
    assert set(settings["scopes"]) == {"alice|*", "|anthropic"}
    assert settings["scopes"]["alice|*"]["limit"] == "60"
    assert settings["models"]["gpt"][0]["pattern"] == "^gpt%-5.*$"
    assert settings["dialects"]["/v1/chat/completions"] == "openai"
    assert '"rate_limit_error"' in settings["scopes"]["|anthropic"]["bodies"]["anthropic"]
    assert spent_settings([])["empty"] is True
