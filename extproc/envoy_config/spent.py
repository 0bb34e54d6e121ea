"""Spent budgets and full token windows, refused by Envoy itself (envoy/spent.lua).

The fast path charges budgets and tokens-per-minute windows after the response (`ledger.after_the_fact`);
once one is spent, the workers (`extproc.spent`) write the scopes it covers — gateway key, provider,
model pattern — into a file Envoy watches (ECDS, like the gate's), and Envoy refuses the next requests
of those scopes with the 429 the workers would write, in the client's dialect, naming the limit and its
reset. A key's full token window refuses all its requests; budgets and provider windows refuse fast-path
requests (the workers check their own before they forward).
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
from .fast_path import FAST_PATHS, fast_settings, glob_to_lua
from .gate import gate_discovery

SPENT_FILE = "lunaroute-spent.yaml"

# The error envelope each fast path's clients read (answers.error_bodies' keys).
_ERROR_DIALECT = {"anthropic": "anthropic", "openai": "openai", "openai-responses": "openai"}


@dataclass(frozen=True, slots=True)
class SpentScope:
    """Whose requests a spent budget or a full token window refuses: a gateway key ("" without keys,
    "*" any) and a provider ("*": any, for a key's window), or a provider's model glob."""

    key: str
    provider: str
    budget: str  # the spent budget's name, or TPM for a token window (the refusal's metric label)
    message: str  # what the 429 says
    resets: float  # epoch seconds
    model: str | None = None  # a model glob (a provider's window)
    limit: int | None = None  # a token window's size (x-ratelimit-limit)




def _entry(s: SpentScope) -> dict[str, Any]:
    entry: dict[str, Any] = {"budget": s.budget, "resets": int(s.resets),
                             "bodies": {d: b.decode() for d, b in error_bodies(429, s.message).items()}}
    if s.limit is not None:
        entry["limit"] = str(s.limit)
    if s.model is not None:
        entry["pattern"] = glob_to_lua(s.model) or "^$"  # (a glob with a class matches nothing here)
    return entry


def refuses(cfg: Config) -> bool:
    """Whether the bootstrap has the spent filter: token windows, or budgets with a fast path."""
    return any(lim.tpm for lim in cfg.rate_limits) or (
        bool(cfg.budgets.all_limits()) and bool(fast_settings(cfg)["paths"]))


def spent_settings(scopes: list[SpentScope]) -> dict[str, Any]:
    models: dict[str, list[dict[str, Any]]] = {}
    for s in scopes:
        if s.model is not None:
            models.setdefault(s.provider, []).append(_entry(s))
    return {
        "empty": not scopes,
        "names": lua_names(),
        "dialects": {path: _ERROR_DIALECT[dialect] for path, dialect in FAST_PATHS.items()},
        "scopes": {f"{s.key}|{s.provider}": _entry(s) for s in scopes if s.model is None},
        "models": models,
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
