"""Spent budgets, refused by Envoy on the fast path (envoy/spent.lua).

The fast path charges budgets after the response (`ledger.after_the_fact`); once one is spent, the
workers (`extproc.spent`) write the scopes it covers — gateway key and provider — into a file Envoy
watches (ECDS, like the gate's), and Envoy refuses the next fast-path requests of those scopes with the
429 the workers would write, in the client's dialect, naming the budget and its reset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ..answers import error_bodies
from ..config import Config
from ..wire import SPENT_FILTER, lua_names
from .common import T, envoy_source, lua_literal
from .fast_path import FAST_PATHS, fast_settings
from .gate import gate_discovery

SPENT_FILE = "lunaroute-spent.yaml"

# The error envelope each fast path's clients read (answers.error_bodies' keys).
_ERROR_DIALECT = {"anthropic": "anthropic", "openai": "openai", "openai-responses": "openai"}


@dataclass(frozen=True, slots=True)
class SpentScope:
    """A gateway key ("" without keys) and provider whose requests a spent budget refuses."""

    key: str
    provider: str
    budget: str  # the spent budget's name
    message: str  # what the 429 says (budgets.Refusal.message)
    resets: float  # epoch seconds


def refuses(cfg: Config) -> bool:
    """Whether the bootstrap has the spent filter: budgets, and a fast path they could concern."""
    return bool(cfg.budgets.all_limits()) and bool(fast_settings(cfg)["paths"])


def spent_settings(scopes: list[SpentScope]) -> dict[str, Any]:
    return {
        "empty": not scopes,
        "names": lua_names(),
        "dialects": {path: _ERROR_DIALECT[dialect] for path, dialect in FAST_PATHS.items()},
        "scopes": {f"{s.key}|{s.provider}": {
            "budget": s.budget, "resets": int(s.resets),
            "bodies": {d: b.decode() for d, b in error_bodies(429, s.message).items()}} for s in scopes},
    }


def render_spent(scopes: list[SpentScope]) -> dict[str, Any]:
    code = ("-- Rendered by the gateway's workers from its budgets; the code below SPENT is envoy/spent.lua.\n"
            f"local SPENT = {lua_literal(spent_settings(scopes))}\n\n{envoy_source('spent.lua')}")
    return {"resources": [{"@type": T + "envoy.config.core.v3.TypedExtensionConfig", "name": SPENT_FILTER,
                           "typed_config": {"@type": T + "envoy.extensions.filters.http.lua.v3.Lua",
                                            "default_source_code": {"inline_string": code}}}]}


def write_spent(path: Path, scopes: list[SpentScope]) -> None:
    """Atomically (Envoy reloads on the rename); a temporary name per process, as every worker writes."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(yaml.safe_dump(render_spent(scopes), sort_keys=False, width=120), encoding="utf-8")
    os.replace(tmp, path)


def spent_discovery(spent_path: str) -> dict[str, Any]:
    return {**gate_discovery(spent_path), "name": SPENT_FILTER}
