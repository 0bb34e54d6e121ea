"""The gateway's configuration: one YAML file, a typed schema, env overrides, errors that teach.

Every mistake stops startup with one line that names the key, the bad value and the fix
(`ConfigError`). Secrets are never read into this model: a provider names *where* its key lives
(`api_key_env` / `api_key_file`) and Envoy reads it from there itself.

One module per part, each read top to bottom: `runtime` (listener, workers, limits, timeouts),
`providers` (providers, rules, bypass), `pools` (credential pools' keys), `rate_limits`, `observe`
(budgets, recording, PII, prices, tracing), `access` (gateway and admin keys), `root` (the whole
`Config`, loading, env overrides, warnings). Everything is importable from here.
"""

from __future__ import annotations

from .access import LOCAL_HOSTS, MIN_KEY_CHARS, Access, AdminKey, ConsoleConfig, GatewayKey, is_loopback
from .base import CONFIG_ENV, ConfigError
from .observe import BudgetLimit, BudgetsConfig, ModelPrice, Pii, Recording, Tracing
from .pools import PoolKey, Pools
from .providers import Bypass, Pricing, Provider, Routing, Rule, ToolSchema
from .rate_limits import RateLimit
from .root import Config, load, parse, warnings
from .runtime import Admin, ExtProc, ExtProcTLS, Limits, Listen, Retries, Timeouts

__all__ = [
    "Access",
    "Admin",
    "AdminKey",
    "BudgetLimit",
    "BudgetsConfig",
    "Bypass",
    "CONFIG_ENV",
    "Config",
    "ConfigError",
    "ConsoleConfig",
    "ExtProc",
    "ExtProcTLS",
    "GatewayKey",
    "LOCAL_HOSTS",
    "Limits",
    "Listen",
    "MIN_KEY_CHARS",
    "ModelPrice",
    "Pii",
    "PoolKey",
    "Pools",
    "Pricing",
    "Provider",
    "RateLimit",
    "Recording",
    "Retries",
    "Routing",
    "Rule",
    "Timeouts",
    "ToolSchema",
    "Tracing",
    "is_loopback",
    "load",
    "parse",
    "warnings",
]
