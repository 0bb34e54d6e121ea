"""The whole configuration (`Config`), read from YAML with env overrides, and the checks that warn."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import Field, ValidationError, model_validator

from .access import Access, ConsoleConfig, GatewayKey, is_loopback
from .base import _NAME, CONFIG_ENV, ConfigError, _Model
from .observe import BudgetLimit, BudgetsConfig, ModelPrice, Pii, Recording, Tracing
from .pools import PoolKey, Pools
from .providers import Bypass, Pricing, Provider, Routing, Rule, ToolSchema
from .rate_limits import RateLimit
from .runtime import Admin, ExtProc, Limits, Listen, Retries, Timeouts


class Config(_Model):
    listen: Listen = Listen()
    admin: Admin = Admin()
    extproc: ExtProc = ExtProc()
    limits: Limits = Limits()
    timeouts: Timeouts = Timeouts()
    retries: Retries = Retries()
    default_provider: str = ""  # empty: the first provider listed
    providers: dict[str, Provider] = Field(default_factory=dict)
    routing: Routing = Routing()
    bypass: Bypass = Bypass()
    pools: Pools = Pools()
    recording: Recording = Recording()
    pricing: dict[str, ModelPrice] = {}  # model glob → price, before the shipped defaults
    pii: Pii = Pii()
    budgets: BudgetsConfig = BudgetsConfig()
    access: Access = Access()
    rate_limits: list[RateLimit] = []  # see rate_limit_config
    tracing: Tracing = Tracing()
    console: ConsoleConfig = ConsoleConfig()
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    @model_validator(mode="after")
    def _references(self) -> Config:
        if not self.providers:
            raise ValueError("providers: no provider is configured; add one, e.g. providers: {anthropic: "
                             "{type: anthropic, base_url: https://api.anthropic.com}}")
        for name in self.providers:
            if not _NAME.match(name):
                raise ValueError(f"providers.{name}: invalid name {name!r}; use lowercase letters, digits, "
                                 "'-' and '_' (it appears in markers and cluster names)")
        if not self.default_provider:
            object.__setattr__(self, "default_provider", next(iter(self.providers)))
        self._known("default_provider", self.default_provider)
        if self.bypass.provider is not None:
            self._known("bypass.provider", self.bypass.provider)
        for name in self.budgets.daily_tokens:
            self._known(f"budgets.daily_tokens.{name}", name)
        names = [b.name for b in self.budgets.limits]
        for dup in {n for n in names if names.count(n) > 1}:
            raise ValueError(f"budgets.limits: the name {dup!r} is used twice; give each limit its own name")
        for key in self.access.keys:
            for j, name in enumerate(key.providers):
                self._known(f"access.keys[{key.name}].providers[{j}]", name)
        if not is_loopback(self.listen.host) and not self.access.keys and not self.access.allow_anonymous:
            raise ValueError(
                f"listen.host: {self.listen.host} is reachable from other machines and access.keys is empty, so "
                "anyone who reaches it would spend your providers' keys; add access.keys (README: Security), "
                "or set access.allow_anonymous: true if a firewall or a loopback-only port mapping protects it")
        key_names = {k.name for k in self.access.keys}
        for i, lim in enumerate(self.rate_limits):
            if lim.provider is not None:
                self._known(f"rate_limits[{i}].provider", lim.provider)
            elif lim.key != "*" and lim.key not in key_names:
                hint = difflib.get_close_matches(lim.key or "", key_names, n=1)
                raise ValueError(f"rate_limits[{i}].key: no gateway key is named {lim.key!r}; " + (
                    f"did you mean {hint[0]!r}?" if hint else "name one of access.keys, or \"*\" for each key"))
        if self.console.enabled and not is_loopback(self.console.host) and not self.console.admin_keys:
            raise ValueError(f"console.host: {self.console.host} is reachable from other machines and "
                             "console.admin_keys is empty, so anyone who reaches it would read every recorded "
                             "prompt; add an admin key (`lunaroute keys new --admin`) or bind 127.0.0.1")
        for i, rule in enumerate(self.routing.rules):
            self._known(f"routing.rules[{i}].provider", rule.provider)
            for j, fb in enumerate(rule.fallbacks):
                self._known(f"routing.rules[{i}].fallbacks[{j}]", fb)
        return self

    def _known(self, key: str, name: str) -> None:
        if name not in self.providers:
            hint = difflib.get_close_matches(name, self.providers, n=1)
            fix = f"did you mean {hint[0]!r}?" if hint else f"use one of {sorted(self.providers)}"
            raise ValueError(f"{key}: unknown provider {name!r}; {fix}")

    @property
    def bypass_provider(self) -> str:
        return self.bypass.provider or self.default_provider

    def check_secrets(self) -> None:
        """Fail early when a provider's key is not where the config says; never reads the key."""
        for name, p in self.providers.items():
            for key in p.pool:
                where = f"providers.{name}.keys[{key.name}]" if p.keys else f"providers.{name}"
                if key.api_key_env and not os.environ.get(key.api_key_env):
                    raise ConfigError(f"{where}.api_key_env: environment variable {key.api_key_env} is "
                                      f"not set; export it, or use api_key_file")
                if key.api_key_file and not os.access(os.path.expanduser(key.api_key_file), os.R_OK):
                    raise ConfigError(f"{where}.api_key_file: {key.api_key_file!r} is not a readable "
                                      f"file; create it with the key as its only content")
        self.pii.secret(dict(os.environ))
        self.key_digests()
        if self.console.enabled:
            self.console.admin_digests()

    def key_digests(self, env: dict[str, str] | None = None) -> dict[str, GatewayKey]:
        """Each gateway key's SHA-256 digest → its entry; reads key_env / key_file now."""
        out: dict[str, GatewayKey] = {}
        for key in self.access.keys:
            digest = key.digest(env)
            if digest in out:
                raise ConfigError(f"access.keys[{key.name}]: the same key as access.keys[{out[digest].name}]; "
                                  "give every key its own key")
            out[digest] = key
        return out

    @property
    def secret_env_vars(self) -> frozenset[str]:
        """Environment variables that hold keys: for Envoy (providers) and the renderer (gateway keys)
        only, never for the Python workers."""
        names = {k.api_key_env for p in self.providers.values() for k in p.pool if k.api_key_env}
        names |= {k.key_env for k in (*self.access.keys, *self.console.admin_keys) if k.key_env}
        return frozenset(names)


DEFAULTS: dict[str, Any] = {
    "default_provider": "anthropic",
    "providers": {
        "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
    },
}


def _truthy(key: str, value: str) -> bool:
    low = value.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{key}={value!r} is not a boolean; set it to true or false")


def _apply_env(raw: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    bypass = dict(raw.get("bypass") or {})
    if "LUNAROUTE_BYPASS_ENABLED" in env:
        bypass["enabled"] = _truthy("LUNAROUTE_BYPASS_ENABLED", env["LUNAROUTE_BYPASS_ENABLED"])
    if env.get("LUNAROUTE_BYPASS_PROVIDER"):
        bypass["provider"] = env["LUNAROUTE_BYPASS_PROVIDER"]
    if bypass:
        raw = {**raw, "bypass": bypass}
    return raw


def _describe(err: Mapping[str, Any], model_fields: Any) -> str:
    loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after[_references()]",))
    msg = err["msg"].removeprefix("Value error, ")
    kind = err["type"]
    if kind == "extra_forbidden":
        last = str(err["loc"][-1])
        hint = difflib.get_close_matches(last, model_fields, n=1)
        fix = f"did you mean {hint[0]!r}?" if hint else "remove it (see README: configuration reference)"
        return f"{loc}: unknown key; {fix}"
    if kind == "missing":
        return f"{loc}: required key is missing; add it (see README: configuration reference)"
    if kind == "value_error" and not loc:
        return msg
    value = err.get("input")
    shown = "" if kind == "value_error" or isinstance(value, dict | list) else f" (got {value!r})"
    return f"{loc}: {msg}{shown}" if loc else f"{msg}{shown}"


def _all_field_names() -> list[str]:
    names: set[str] = set()
    for m in (Config, Listen, Admin, ExtProc, Limits, Timeouts, Retries, Provider, Rule, Routing, Bypass,
              Recording, Pii, Pricing, ModelPrice, BudgetsConfig, BudgetLimit, ToolSchema, Access, GatewayKey,
              PoolKey, Pools):
        names.update(m.model_fields)
    return sorted(names)


def parse(raw: Any, env: dict[str, str] | None = None, source: str = "config") -> Config:
    """Validate a decoded YAML document; raise ConfigError with one teaching line."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys, got {type(raw).__name__}")
    if "providers" not in raw:
        raw = {**DEFAULTS, **raw}
    raw = _apply_env(raw, dict(os.environ) if env is None else env)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        # An unknown key usually explains a "missing" one next to it: report it first.
        first = min(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        raise ConfigError(f"{source}: {_describe(first, _all_field_names())}") from None


def load(path: str | os.PathLike[str] | None = None, env: dict[str, str] | None = None) -> Config:
    """Load the config file (argument, then $LUNAROUTE_CONFIG), or the embedded defaults."""
    env = dict(os.environ) if env is None else env
    path = path or env.get(CONFIG_ENV) or None
    if path is None:
        return parse({}, env, source="defaults")
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the config file ({exc.strerror}); check the path") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}; fix the syntax there") from None
    return parse(raw, env, source=str(path))


# Model families whose quirks real providers enforce with a 400 (checked by `lunaroute check`).
_OPENAI_HOSTS = ("api.openai.com", ".openai.azure.com")
_REASONING_ONLY_CAP = ("gpt-5*", "o1*", "o3*", "o4*")  # OpenAI: max_completion_tokens, never max_tokens
_NO_REASONING = ("gpt-4*", "gpt-3.5*", "chatgpt-*", "gpt-5*-chat*", "deepseek-chat")  # reject reasoning_effort


def warnings(cfg: Config) -> list[str]:
    """Combinations that validate but that the provider they name rejects at the first request, each
    with its fix: a config that fits its providers prints none."""
    out: list[str] = []
    for name, p in cfg.providers.items():
        if p.type != "openai":
            continue
        models: list[str] = list(dict.fromkeys([*([p.model] if p.model else []), *p.models]))
        host = urlsplit(p.base_url).hostname or ""
        capped = [m for m in models if any(fnmatchcase(m, g) for g in _REASONING_ONLY_CAP)]
        if capped and p.max_tokens_field == "max_tokens" and host.endswith(_OPENAI_HOSTS):
            out.append(f"providers.{name}: OpenAI rejects max_tokens for {', '.join(capped)} ('Use "
                       "max_completion_tokens instead'); set max_tokens_field: max_completion_tokens")
        plain = [m for m in models if any(fnmatchcase(m, g) for g in _NO_REASONING)]
        if plain and p.reasoning_effort:
            out.append(f"providers.{name}: {', '.join(plain)} do(es) not reason and reject reasoning_effort; "
                       "set reasoning_effort: false")
    return out
