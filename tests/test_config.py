"""The config schema: defaults, every key, env overrides, and one teaching line per mistake."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from extproc import config
from extproc.config import ConfigError

CONFIGS = Path(__file__).parent / "fixtures" / "configs"


def test_no_config_gives_anthropic_passthrough_on_8080() -> None:
    cfg = config.load(env={})
    assert (cfg.listen.host, cfg.listen.port) == ("127.0.0.1", 8080)
    assert cfg.default_provider == "anthropic"
    p = cfg.providers["anthropic"]
    assert (p.type, p.base_url, p.auth) == ("anthropic", "https://api.anthropic.com", "passthrough")
    assert p.uses_client_key
    assert cfg.bypass.enabled and cfg.bypass_provider == "anthropic"


def test_full_config_loads_every_key() -> None:
    cfg = config.load(CONFIGS / "full.yaml", env={})
    assert cfg.extproc.workers == 3
    gpt = cfg.providers["gpt"]
    assert gpt.api_key_env == "OPENAI_API_KEY" and gpt.keyed and not gpt.uses_client_key
    assert gpt.max_tokens_field == "max_completion_tokens"
    assert cfg.routing.rules[0].fallbacks == ["gpt"]
    assert cfg.bypass_provider == "gpt"
    assert cfg.providers["anthropic"].prompt_caching == "off" and not cfg.providers["local"].prompt_cache_key
    assert gpt.prompt_cache_key and cfg.providers["gemini"].prompt_caching == "auto"


@pytest.mark.parametrize(("provider", "fix"), [
    ({"type": "anthropic", "prompt_cache_key": False}, "use prompt_caching: auto | off"),
    ({"type": "openai", "prompt_caching": "off"}, "use prompt_cache_key: true | false"),
])
def test_a_caching_key_of_the_other_vendor_is_an_error_that_names_the_right_one(provider: dict, fix: str) -> None:
    with pytest.raises(config.ConfigError, match=fix):
        config.parse({"providers": {"p": {"base_url": "https://example.com", **provider}}}, env={})


def test_config_path_from_env_variable() -> None:
    cfg = config.load(env={"LUNAROUTE_CONFIG": str(CONFIGS / "full.yaml")})
    assert cfg.listen.port == 8181


@pytest.mark.parametrize(
    ("base_url", "prefix", "host_port", "tls"),
    [
        ("https://api.openai.com/v1", "", "api.openai.com", True),
        ("https://api.openai.com/v1/", "", "api.openai.com", True),
        ("https://api.anthropic.com", "", "api.anthropic.com", True),
        ("https://openrouter.ai/api/v1", "/api", "openrouter.ai", True),
        ("http://127.0.0.1:11434/v1", "", "127.0.0.1:11434", False),
    ],
)
def test_base_url_trailing_v1_is_never_doubled_and_prefix_is_kept(base_url, prefix, host_port, tls) -> None:
    p = config.Provider(type="openai", base_url=base_url)
    assert p.path_prefix == prefix
    assert f"{p.host}:{p.port}".removesuffix(":443" if tls else ":80") == host_port
    assert p.tls is tls
    assert p.upstream_path("/v1/chat/completions") == prefix + "/v1/chat/completions"


@pytest.mark.parametrize(("kind", "path"), [("openai", "/chat/completions"), ("openai-responses", "/responses")])
def test_an_openai_style_base_path_without_v1_is_the_api_root(kind: str, path: str) -> None:
    """Gemini's OpenAI endpoint is /v1beta/openai/chat/completions: the base path names the version."""
    p = config.Provider(type=kind, base_url="https://generativelanguage.googleapis.com/v1beta/openai/")
    assert p.upstream_path("/v1" + path) == "/v1beta/openai" + path
    gateway = config.Provider(type=kind, base_url="https://gw.example.com:8443/llm/openai")
    assert gateway.upstream_path("/v1/models") == "/llm/openai/models"


def test_an_anthropic_base_path_stays_a_prefix() -> None:
    p = config.Provider(type="anthropic", base_url="https://openrouter.ai/api")
    assert p.upstream_path("/v1/messages") == "/api/v1/messages"


def test_env_overrides_bypass() -> None:
    env = {"LUNAROUTE_BYPASS_ENABLED": "false", "LUNAROUTE_BYPASS_PROVIDER": "anthropic"}
    cfg = config.load(CONFIGS / "full.yaml", env=env)
    assert cfg.bypass.enabled is False
    assert cfg.bypass_provider == "anthropic"


def test_env_override_with_a_non_boolean_is_an_error() -> None:
    with pytest.raises(ConfigError, match="LUNAROUTE_BYPASS_ENABLED='maybe' is not a boolean"):
        config.load(env={"LUNAROUTE_BYPASS_ENABLED": "maybe"})


def test_default_provider_is_the_first_listed_when_not_set() -> None:
    cfg = config.parse({"providers": {"local": {"type": "openai", "base_url": "http://127.0.0.1:1/v1"}}}, env={})
    assert cfg.default_provider == "local"


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("bad_unknown_key.yaml", "providers.gpt.bas_url: unknown key; did you mean 'base_url'?"),
        ("bad_url.yaml", "providers.gpt.base_url: 'api.openai.com/v1' is not an http(s) URL; write it like"),
        ("bad_type.yaml",
         "providers.gpt.type: Input should be 'anthropic', 'openai' or 'openai-responses' (got 'gemini')"),
        ("bad_default.yaml", "default_provider: unknown provider 'claude'; use one of ['anthropic']"),
        ("bad_rule.yaml", "routing.rules[0].provider: unknown provider 'openai'"),
        ("bad_yaml.yaml", "not valid YAML at line"),
        ("bad_two_auths.yaml", "providers.gpt: sets api_key_env and api_key_file; choose one"),
        ("bad_port.yaml", "listen.port: Input should be a valid integer"),
        ("bad_bypass.yaml", "bypass.provider: unknown provider 'openai'"),
    ],
)
def test_each_mistake_is_one_line_naming_key_value_and_fix(fixture: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        config.load(CONFIGS / fixture, env={})
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_missing_file_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="cannot read the config file"):
        config.load("/nonexistent/lunaroute.yaml", env={})


def test_missing_key_env_var_stops_startup() -> None:
    cfg = config.load(CONFIGS / "full.yaml", env={})
    with pytest.raises(ConfigError, match="providers.gpt.api_key_env: environment variable OPENAI_API_KEY is not"):
        cfg.check_secrets()


def test_rule_needs_exactly_one_matcher_and_a_valid_regex() -> None:
    base = {"providers": {"a": {"type": "anthropic", "base_url": "https://x"}}}
    with pytest.raises(ConfigError, match="exactly one of model"):
        config.parse({**base, "routing": {"rules": [{"provider": "a"}]}}, env={})
    with pytest.raises(ConfigError, match="model_regex '\\(' is not a valid regex"):
        config.parse({**base, "routing": {"rules": [{"model_regex": "(", "provider": "a"}]}}, env={})


def test_cli_reports_config_errors_in_one_line_and_exit_code_2() -> None:
    proc = subprocess.run([sys.executable, "-m", "extproc.cli", "check", "--config",
                           str(CONFIGS / "bad_url.yaml")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("lunaroute: config error:")
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_retry_statuses_must_be_errors() -> None:
    with pytest.raises(ConfigError, match="retries.retry_on_status: 200 is not an error status"):
        config.parse({"retries": {"retry_on_status": [429, 200]}}, env={})


@pytest.mark.parametrize(("provider", "message"), [
    ({"tool_schema": {"drop_keys": ["properties"]}},
     "providers.p.tool_schema.drop_keys: 'properties' carries the schema's structure and cannot be dropped"),
    ({"tool_schema": {"drop": ["$schema"]}}, "providers.p.tool_schema.drop: unknown key; did you mean 'drop_keys'?"),
    ({"forward_headers": ["authorization"]},
     "providers.p.forward_headers: 'authorization' is decided by the gateway (credentials follow `auth`"),
    ({"forward_headers": ["X-Request-Id"]},
     "providers.p.forward_headers: 'X-Request-Id' is not a lower-case header name; write it like x-request-id"),
])
def test_quirk_keys_fail_with_a_line_that_teaches(provider: dict, message: str) -> None:
    raw = {"providers": {"p": {"type": "openai", "base_url": "https://x.example/v1", **provider}}}
    with pytest.raises(config.ConfigError) as info:
        config.parse(raw, env={})
    assert message in str(info.value)


# -- known-bad combinations: `lunaroute check` warns ---------------------------------------------------------

_REPO = Path(__file__).resolve().parent.parent


def _openai(**extra: object) -> config.Config:
    return config.parse({"providers": {"gpt": {"type": "openai", "base_url": "https://api.openai.com/v1",
                                               **extra}}}, env={})


def test_max_tokens_to_an_openai_reasoning_model_is_warned_about_with_the_fix() -> None:
    [warning] = config.warnings(_openai(model="gpt-5.1"))
    assert warning.startswith("providers.gpt:") and "max_tokens_field: max_completion_tokens" in warning
    assert config.warnings(_openai(model="gpt-5.1", max_tokens_field="max_completion_tokens")) == []


def test_reasoning_effort_to_a_model_that_does_not_reason_is_warned_about() -> None:
    [warning] = config.warnings(_openai(models=["gpt-4.1"]))
    assert "reasoning_effort: false" in warning
    assert config.warnings(_openai(models=["gpt-4.1"], reasoning_effort=False)) == []


def test_other_hosts_that_accept_max_tokens_are_not_warned_about() -> None:
    cfg = config.parse({"providers": {"router": {"type": "openai", "base_url": "https://openrouter.ai/api/v1",
                                                 "model": "openai/gpt-5.1"}}}, env={})
    assert config.warnings(cfg) == []


def _helm_readme_config() -> dict:
    """The values file the chart's README has users write (`cat > my-values.yaml <<'EOF' … EOF`)."""
    text = (_REPO / "helm/lunaroute/README.md").read_text()
    block = text.split("cat > my-values.yaml <<'EOF'\n", 1)[1].split("\nEOF\n", 1)[0]
    return yaml.safe_load(block)["config"]


def test_the_shipped_configs_fit_the_providers_they_name() -> None:
    compose = yaml.safe_load((_REPO / "deploy/compose/config.yaml").read_text())
    assert config.warnings(config.parse(compose, env={})) == []
    helm = _helm_readme_config()
    assert config.warnings(config.parse({k: v for k, v in helm.items() if k != "access"}, env={})) == []


def test_check_prints_the_warnings(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("providers:\n  gpt: {type: openai, base_url: https://api.openai.com/v1, model: gpt-5.1}\n")
    proc = subprocess.run([sys.executable, "-m", "extproc.cli", "check", "--config", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "warning: providers.gpt: OpenAI rejects max_tokens" in proc.stdout
