"""Recording, request redaction and budgets must see the requests they concern: the rendered fast
path (envoy/fast.lua) and the gate's candidate marking leave exactly those to Python."""

from __future__ import annotations

from pathlib import Path

from extproc import config, envoy_config
from extproc.supervisor import find_envoy, validate_bootstrap

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


def test_a_provider_budget_turns_it_off_for_that_provider_only() -> None:
    limits = {"limits": [{"name": "gpt", "provider": "gpt", "tokens": 100}]}
    assert _targets(_cfg(default_provider="gpt", budgets=limits)) == {}
    assert _targets(_cfg(default_provider="anthropic", budgets=limits))["/v1/messages"] == "anthropic"
    sessions = {"limits": [{"name": "s", "session": "*", "usd": 1}]}
    assert _targets(_cfg(budgets=sessions)) == {}  # any request may belong to a budgeted session


def test_a_key_budget_turns_it_off_for_that_keys_requests_only() -> None:
    cfg = _cfg(access=KEYS, budgets={"limits": [{"name": "a", "key": "alice", "usd": 1}]})
    assert _targets(cfg)["/v1/messages"] == "anthropic"
    entries = {e["name"]: e for e in envoy_config.gate_settings(cfg, cfg.key_digests(env={}))["keys"].values()}
    assert entries["alice"]["models_limited"] is True and entries["bob"]["models_limited"] is False


def test_the_bootstrap_with_recording_and_budgets_passes_envoy_validate(tmp_path: Path) -> None:
    cfg = _cfg(access=KEYS, recording={"enabled": True, "dir": str(tmp_path)},
               budgets={"limits": [{"name": "a", "key": "*", "usd": 1}]})
    path = tmp_path / "envoy.yaml"
    path.write_text(envoy_config.render_yaml(cfg))
    ok, last = validate_bootstrap(find_envoy(), path)
    assert ok, last
