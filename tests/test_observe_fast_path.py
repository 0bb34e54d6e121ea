"""Recording, request redaction and per-session budgets must see the requests they concern: the
rendered fast path (envoy/fast.lua) and the gate's candidate marking leave exactly those to Python.
Key and provider budgets keep the fast path: it is charged after the response and Envoy refuses spent
budgets itself (envoy/spent.lua)."""

from __future__ import annotations

from pathlib import Path

from extproc import config, envoy_config
from extproc.supervisor import find_envoy, validate_bootstrap
from extproc.wire import FAST_FILTER, SPENT_FILTER

PROVIDERS = {
    "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
    "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K"},
}
KEYS = {"keys": [{"name": "alice", "key_sha256": "a" * 64}, {"name": "bob", "key_sha256": "b" * 64}]}


def _cfg(**extra: object) -> config.Config:
    return config.parse({"providers": PROVIDERS, **extra}, env={})


def _targets(cfg: config.Config) -> dict[str, str]:
    return {path: entry["default"] for path, entry in envoy_config.fast_settings(cfg)["paths"].items()}


def test_without_them_both_dialects_have_a_fast_path() -> None:
    assert _targets(_cfg(default_provider="anthropic"))["/v1/messages"] == "anthropic"
    assert _targets(_cfg(default_provider="gpt"))["/v1/chat/completions"] == "gpt"


def test_recording_and_request_redaction_turn_the_fast_path_off_for_every_request() -> None:
    for extra in ({"recording": {"enabled": True}}, {"pii": {"redact_requests": True}}):
        cfg = _cfg(**extra)
        assert _targets(cfg) == {}
        assert envoy_config.gate_settings(cfg, {})["fast_paths"] == {}
    assert envoy_config.gate_settings(_cfg(recording={"enabled": True}), {})["record_peer"] is True


def _filters(cfg: config.Config) -> list[str]:
    hcm = envoy_config.render(cfg)["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    return [f["name"] for f in hcm["typed_config"]["http_filters"]]


def test_a_provider_budget_keeps_the_fast_path_and_envoy_refuses_it_once_spent() -> None:
    limits = {"limits": [{"name": "claude", "provider": "anthropic", "tokens": 100}]}
    cfg = _cfg(default_provider="anthropic", budgets=limits)
    assert _targets(cfg)["/v1/messages"] == "anthropic"
    assert _filters(cfg).index(SPENT_FILTER) == _filters(cfg).index(FAST_FILTER) + 1
    assert SPENT_FILTER not in _filters(_cfg(default_provider="anthropic"))  # no budgets, nothing to refuse
    # Chat Completions streams report usage only when asked: budgeted ones go through Python, which asks
    gpt = {"limits": [{"name": "gpt", "provider": "gpt", "tokens": 100}]}
    assert "/v1/chat/completions" not in _targets(_cfg(default_provider="gpt", budgets=gpt))
    sessions = {"limits": [{"name": "s", "session": "*", "usd": 1}]}
    assert _targets(_cfg(budgets=sessions)) == {}  # Envoy does not know sessions


def test_a_key_budget_keeps_the_fast_path_but_a_per_session_one_does_not() -> None:
    cfg = _cfg(access=KEYS, budgets={"limits": [{"name": "a", "key": "alice", "usd": 1},
                                                 {"name": "s", "key": "bob", "session": "*", "usd": 1}]})
    assert _targets(cfg)["/v1/messages"] == "anthropic"
    entries = {e["name"]: e for e in envoy_config.gate_settings(cfg, cfg.key_digests(env={}))["keys"].values()}
    assert entries["alice"]["models_limited"] is False and entries["bob"]["models_limited"] is True


def test_the_bootstrap_with_recording_and_budgets_passes_envoy_validate(tmp_path: Path) -> None:
    cfg = _cfg(access=KEYS, recording={"enabled": True, "dir": str(tmp_path)},
               budgets={"limits": [{"name": "a", "key": "*", "usd": 1}]})
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy_config.render_yaml(cfg))
    ok, last = validate_bootstrap(find_envoy(), path)
    assert ok, last
