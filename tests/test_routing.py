"""Behaviour spec for routing: preferences parsing, eligibility, rules, sorting and precedence."""

from __future__ import annotations

from typing import Any

import pytest

from extproc.config import parse
from extproc.markers import Marker
from extproc.routing import (
    Decision,
    Observed,
    Preferences,
    Router,
    RoutingError,
    pop_preferences,
    provider_path,
    request_model,
)

MESSAGES = "/v1/messages?beta=true"
CHAT = "/v1/chat/completions"
NONE = Marker("none")

PROVIDERS: dict[str, Any] = {
    "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough",
                  "pricing": {"input_per_mtok": 3, "output_per_mtok": 15}},
    "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "OPENAI_API_KEY",
            "model": "gpt-5.1", "models": ["gpt-5.1", "gpt-5-mini"],
            "endpoint_prefixes": ["/v1/chat/completions", "/v1/embeddings"],
            "pricing": {"input_per_mtok": 1.25, "output_per_mtok": 10}},
    "kimi": {"type": "openai", "base_url": "https://api.moonshot.ai/v1", "api_key_env": "KIMI_KEY",
             "model": "kimi-k2"},
    "local": {"type": "openai", "base_url": "http://127.0.0.1:11434/v1", "model": "qwen3",
              "pricing": {"input_per_mtok": 0, "output_per_mtok": 0},
              "endpoint_prefixes": ["/v1/embeddings"]},
}


def router(rules: list[dict[str, Any]] | None = None, **extra: Any) -> Router:
    raw = {"default_provider": "anthropic", "providers": PROVIDERS, "routing": {"rules": rules or []}}
    raw.update(extra)
    return Router(parse(raw, env={}))


def decide(r: Router, marker: Marker = NONE, prefs: Preferences | None = None, model: str | None = "claude-x",
           path: str = MESSAGES) -> Decision:
    return r.decide(marker, prefs, model, path)


# -- preference parsing --------------------------------------------------------------------------------


def test_preferences_from_the_body_object() -> None:
    body = {"only": ["gpt", "kimi"], "sort": "price", "allow_fallbacks": False}
    prefs = router().parse_preferences(body, None)
    assert prefs == Preferences(only=("gpt", "kimi"), sort="price", allow_fallbacks=False)


def test_preferences_from_the_x_provider_header_json() -> None:
    prefs = router().parse_preferences(None, b'{"order": ["Kimi", "gpt"], "ignore": ["anthropic"]}')
    assert prefs == Preferences(order=("kimi", "gpt"), ignore=("anthropic",))


def test_body_preferences_win_over_the_header_whole() -> None:
    prefs = router().parse_preferences({"order": ["gpt"]}, '{"ignore": ["gpt"]}')
    assert prefs == Preferences(order=("gpt",))


def test_absent_or_empty_preferences_are_none() -> None:
    r = router()
    assert r.parse_preferences(None, None) is None
    assert r.parse_preferences(None, "  ") is None
    assert r.parse_preferences({}, None) is None
    assert r.parse_preferences({"allow_fallbacks": True, "only": []}, None) is None


@pytest.mark.parametrize(
    ("body", "header", "param", "words"),
    [
        (None, "{not json", "X-Provider", "not valid JSON"),
        (None, '["gpt"]', "X-Provider", "must be a JSON object"),
        ("gpt", None, "provider", "must be a JSON object"),
        ({"only": "gpt"}, None, "provider.only", "must be a list"),
        ({"only": [1]}, None, "provider.only", "must be a provider name"),
        ({"order": ["gtp"]}, None, "provider.order", "did you mean 'gpt'"),
        (None, '{"ignore": ["nope"]}', "X-Provider.ignore", "unknown provider 'nope'"),
        ({"allow_fallbacks": "no"}, None, "provider.allow_fallbacks", "true or false"),
        ({"sort": "cheapest"}, None, "provider.sort", "price, latency, throughput"),
        ({"data_collection": "deny"}, None, "provider.data_collection", "not supported"),
    ],
)
def test_invalid_preferences_are_a_400_naming_the_field(body: Any, header: str | None, param: str,
                                                        words: str) -> None:
    with pytest.raises(RoutingError) as err:
        router().parse_preferences(body, header)
    assert err.value.status == 400
    assert err.value.param == param
    assert words in err.value.message


def test_pop_preferences_takes_the_provider_field_out_of_the_body() -> None:
    body: dict[str, Any] = {"model": "m", "provider": {"only": ["gpt"]}}
    assert pop_preferences(body) == ({"only": ["gpt"]}, True)
    assert body == {"model": "m"}
    assert pop_preferences(body) == (None, False)
    body = {"provider": None}
    assert pop_preferences(body) == (None, True)  # a null still has to leave the body
    assert body == {}


# -- preferences routing -------------------------------------------------------------------------------


def test_only_filters_without_reordering() -> None:
    r = router()
    d = decide(r, prefs=Preferences(only=("kimi", "anthropic")))
    assert d.chain == ("anthropic", "kimi")
    assert d.reason == "preferences"


def test_ignore_removes_providers() -> None:
    d = decide(router(), prefs=Preferences(ignore=("anthropic",)))
    assert d.chain == ("gpt", "kimi")  # local does not serve /v1/messages


def test_order_moves_named_providers_first() -> None:
    d = decide(router(), prefs=Preferences(order=("kimi", "gpt")))
    assert d.chain == ("kimi", "gpt", "anthropic")


def test_allow_fallbacks_false_keeps_only_the_ordered_providers_or_the_first() -> None:
    r = router()
    assert decide(r, prefs=Preferences(order=("kimi", "gpt"), allow_fallbacks=False)).chain == ("kimi", "gpt")
    assert decide(r, prefs=Preferences(ignore=("anthropic",), allow_fallbacks=False)).chain == ("gpt",)


def test_sort_price_cheapest_first_unpriced_last() -> None:
    d = decide(router(), prefs=Preferences(sort="price"), path=CHAT)
    assert d.chain == ("gpt", "anthropic", "kimi")  # local serves only embeddings
    d = decide(router(), prefs=Preferences(sort="price"), path="/v1/embeddings")
    assert d.chain == ("local", "gpt", "anthropic", "kimi")


def test_sort_latency_uses_observed_time_to_first_byte_unobserved_last() -> None:
    r = router()
    r.observed.observe("kimi", ttfb_s=0.3, tokens=100, duration_s=2.0)
    r.observed.observe("gpt", ttfb_s=0.9, tokens=100, duration_s=1.0)
    assert decide(r, prefs=Preferences(sort="latency")).chain == ("kimi", "gpt", "anthropic")


def test_sort_throughput_uses_observed_tokens_per_second_unobserved_last() -> None:
    r = router()
    r.observed.observe("kimi", ttfb_s=0.3, tokens=100, duration_s=2.3)  # 50 tok/s
    r.observed.observe("gpt", ttfb_s=0.9, tokens=100, duration_s=1.4)  # 200 tok/s
    assert decide(r, prefs=Preferences(sort="throughput")).chain == ("gpt", "kimi", "anthropic")


def test_order_goes_before_sort() -> None:
    d = decide(router(), prefs=Preferences(sort="price", order=("kimi",)), path=CHAT)
    assert d.chain == ("kimi", "gpt", "anthropic")


def test_preferences_leaving_nothing_are_a_400() -> None:
    with pytest.raises(RoutingError) as err:
        decide(router(), prefs=Preferences(only=("local",)))
    assert err.value.param == "provider"


def test_preferences_override_the_model_unless_the_provider_serves_it() -> None:
    r = router()
    d = decide(r, prefs=Preferences(order=("gpt", "kimi")), model="claude-x")
    assert d.overrides == ("gpt-5.1", "kimi-k2", None)  # anthropic is the natural provider
    d = decide(r, prefs=Preferences(order=("gpt",)), model="gpt-5-mini")
    assert d.overrides[0] is None


def test_observed_is_a_moving_average() -> None:
    obs = Observed(alpha=0.5)
    obs.observe("p", ttfb_s=1.0, tokens=10, duration_s=2.0)
    obs.observe("p", ttfb_s=3.0, tokens=0, duration_s=3.0)  # no tokens: throughput untouched
    assert obs.ttfb("p") == 2.0
    assert obs.throughput("p") == 10.0
    assert obs.ttfb("q") is None


# -- eligibility -------------------------------------------------------------------------------------------


def test_endpoint_prefixes_are_checked_against_the_path_the_provider_receives() -> None:
    r = router()
    assert provider_path(MESSAGES, "openai") == CHAT
    assert provider_path(CHAT, "anthropic") == "/v1/messages"
    assert r.eligible("gpt", MESSAGES)  # translated to /v1/chat/completions
    assert not r.eligible("gpt", "/v1/audio/speech")
    assert r.eligible("gpt", "/v1/embeddings")
    assert not r.eligible("local", MESSAGES)
    assert r.eligible("anthropic", "/v1/anything")  # no prefixes: every path


def test_prefixes_match_whole_path_segments() -> None:
    r = router()
    assert r.eligible("local", "/v1/embeddings/batch")
    assert not r.eligible("local", "/v1/embeddingsx")


# -- rules -------------------------------------------------------------------------------------------------


def test_glob_rule_gives_provider_and_fallbacks() -> None:
    r = router([{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt", "kimi"]}])
    d = decide(r, model="claude-sonnet-4-5")
    assert d == Decision(("anthropic", "gpt", "kimi"), "rule", (None, "gpt-5.1", "kimi-k2"))


def test_glob_is_case_sensitive_and_whole_model() -> None:
    r = router([{"model": "claude-*", "provider": "gpt"}])
    assert decide(r, model="Claude-x").reason == "default"
    assert decide(r, model="my-claude-x").reason == "default"


def test_regex_rule_must_match_the_whole_model() -> None:
    r = router([{"model_regex": r"kimi-k2(-\w+)?", "provider": "kimi"}])
    assert decide(r, model="kimi-k2-turbo").chain == ("kimi",)
    assert decide(r, model="kimi-k2-turbo!").reason == "default"


def test_highest_priority_first_ties_in_config_order() -> None:
    rules = [
        {"model": "gpt-*", "provider": "kimi"},
        {"model": "gpt-5*", "provider": "gpt", "priority": 5},
        {"model": "gpt-5.1", "provider": "anthropic", "priority": 5},
    ]
    r = router(rules)
    assert decide(r, model="gpt-5.1").chain == ("gpt",)
    assert decide(r, model="gpt-4o").chain == ("kimi",)


def test_rule_skips_ineligible_providers_and_then_falls_through() -> None:
    r = router([{"model": "x-*", "provider": "local", "fallbacks": ["kimi"]},
                {"model": "y-*", "provider": "local"}])
    assert decide(r, model="x-1").chain == ("kimi",)
    assert decide(r, model="y-1") == Decision(("anthropic",), "default", (None,))


# -- default -----------------------------------------------------------------------------------------------


def test_default_provider_keeps_the_request_model_and_has_no_fallbacks() -> None:
    assert decide(router(), model=None) == Decision(("anthropic",), "default", (None,))


def test_ineligible_default_gives_way_to_the_first_eligible_provider() -> None:
    r = router(default_provider="local")
    assert decide(r).chain == ("anthropic",)


def test_path_no_provider_serves_is_a_404() -> None:
    raw = {"providers": {"local": PROVIDERS["local"]}}
    with pytest.raises(RoutingError) as err:
        Router(parse(raw, env={})).decide(NONE, None, "m", MESSAGES)
    assert err.value.status == 404


# -- model --------------------------------------------------------------------------------------------------


def test_x_model_header_wins_over_the_body_model() -> None:
    assert request_model("claude-x", "gpt-5.1") == "gpt-5.1"
    assert request_model("claude-x", None) == "claude-x"
    assert request_model(None, " ") is None
    with pytest.raises(RoutingError) as err:
        request_model(42, None)
    assert err.value.param == "model"


# -- precedence: marker > preferences > rules > default ------------------------------------------------------


RULES = [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]


def test_marker_beats_preferences_and_rules_and_overrides_the_model() -> None:
    d = decide(router(RULES), marker=Marker("provider", "kimi"), prefs=Preferences(ignore=("kimi",)))
    assert d == Decision(("kimi",), "marker", ("kimi-k2",))


def test_marker_to_a_provider_without_model_keeps_the_request_model() -> None:
    d = decide(router(RULES), marker=Marker("provider", "anthropic"), model="claude-x")
    assert d == Decision(("anthropic",), "marker", (None,))


def test_marker_keeps_a_model_the_provider_advertises() -> None:
    d = decide(router(RULES), marker=Marker("provider", "gpt"), model="gpt-5-mini")
    assert d == Decision(("gpt",), "marker", (None,))
    assert decide(router(RULES), marker=Marker("provider", "gpt"), model="claude-x").overrides == ("gpt-5.1",)


def test_marker_to_a_provider_that_does_not_serve_the_path_is_a_400() -> None:
    with pytest.raises(RoutingError, match="endpoint_prefixes"):
        decide(router(), marker=Marker("provider", "local"))


def test_preferences_beat_rules() -> None:
    d = decide(router(RULES), prefs=Preferences(order=("kimi",), allow_fallbacks=False))
    assert d.chain == ("kimi",)
    assert d.reason == "preferences"


def test_rules_beat_the_default() -> None:
    assert decide(router(RULES), model="claude-x").reason == "rule"
    assert decide(router(RULES), model="other").reason == "default"


@pytest.mark.parametrize("marker", [Marker("clear"), Marker("unknown", "nope"), NONE])
def test_clear_unknown_and_no_marker_fall_through(marker: Marker) -> None:
    r = router(RULES)
    assert decide(r, marker=marker, model="claude-x").reason == "rule"
    assert decide(r, marker=marker, prefs=Preferences(order=("gpt",))).reason == "preferences"


def test_preferences_start_from_the_rule_chain() -> None:
    rules = [{"model": "claude-*", "provider": "kimi", "fallbacks": ["gpt"]}]
    d = decide(router(rules), prefs=Preferences(allow_fallbacks=False), model="claude-x")
    assert d == Decision(("kimi",), "preferences", ("kimi-k2",))  # translated: claude-x means nothing to kimi


def test_the_natural_provider_keeps_the_model_of_its_own_dialect_and_overrides_a_translated_one() -> None:
    rules = [{"model": "*", "provider": "kimi"}]
    assert decide(router(rules), model="moonshot-v1", path="/v1/chat/completions").overrides == (None,)
    assert decide(router(rules), model="claude-x").overrides == ("kimi-k2",)
    assert decide(router(rules), model="gpt-5-mini", path="/v1/chat/completions").overrides == (None,)
    default = router([], default_provider="gpt")
    assert decide(default, model="claude-x", path=MESSAGES).overrides == ("gpt-5.1",)
    assert decide(default, model="gpt-5-mini", path=MESSAGES).overrides == (None,)  # advertised
