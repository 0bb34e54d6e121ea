"""The gate (envoy/gate.lua): sealing, cross-site refusals, gateway keys. Its settings are rendered
into a file Envoy watches (ECDS), so rotating a key needs no restart."""

from __future__ import annotations

import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import orjson
import yaml

from ..answers import error_bodies
from ..config import Config, GatewayKey, parse
from ..endpoints import JSON_PATHS, OPEN_PATHS, REPLY_SHAPES
from ..prepare import ANTHROPIC_KEY_PREFIX
from ..wire import GATE_FILTER, KEY_HEADER, lua_names
from .common import T, envoy_source, lua_literal
from .fast_path import fast_settings

GATE_FILE = "lunaroute-gate.yaml"


_GATE_REPLIES: dict[str, tuple[int, str]] = {
    "no_key": (401, "This gateway needs a key: send it in " + KEY_HEADER + ", x-api-key or Authorization: Bearer."),
    "bad_key": (401, "The gateway key is not valid."),
    "models_only": (403, "This gateway key is limited to some models; %DETAIL% is not a model API it may use."),
    "provider": (403, "This gateway key may not use provider %DETAIL%."),
    "origin": (403, "Requests from the browser origin %DETAIL% are refused; add it to access.allowed_origins."),
    "content_type": (415, "Send the request body as JSON (content-type: application/json)."),
}


def gate_source() -> str:
    return envoy_source("gate.lua")


def _key_entry(key: GatewayKey, cfg: Config) -> dict[str, Any]:
    scope = {"providers": key.providers, "models": key.models} if key.providers or key.models else None
    # a per-session budget of this key needs Python (Envoy does not know sessions)
    budgeted = any(lim.key is not None and lim.session is not None and fnmatchcase(key.name, lim.key)
                   for lim in cfg.budgets.all_limits())
    return {"name": key.name, "scope": orjson.dumps(scope).decode() if scope else None,
            "providers": dict.fromkeys(key.providers, True) if key.providers else None,
            "provider_list": "," + ",".join(key.providers) + "," if key.providers else None,
            # the fast path cannot check model allow-lists, nor a key's per-session budget
            "models_limited": bool(key.models) or budgeted}


def gate_settings(cfg: Config, digests: dict[str, GatewayKey]) -> dict[str, Any]:
    """What the gate needs from the config: key digests (never keys), origins, error replies."""
    origins = cfg.access.allowed_origins
    return {
        "keys_required": bool(cfg.access.keys),
        "keys": {digest: _key_entry(key, cfg) for digest, key in digests.items()},
        "origins": {o.lower().rstrip("/"): True for o in origins if o != "*"},
        "any_origin": "*" in origins,
        "probes": dict.fromkeys(OPEN_PATHS, True),
        # a body sent there must be JSON: a browser cannot send that cross-site without a CORS preflight
        "json_paths": list(JSON_PATHS),
        # the error envelope of each API family (the path, or below it); "both" elsewhere
        "reply_shapes": [{"prefix": prefix, "shape": shape} for prefix, shape in REPLY_SHAPES],
        "fast_paths": dict.fromkeys(fast_settings(cfg)["paths"], True),
        "fast_max_bytes": cfg.limits.fast_path_max_bytes,
        "record_peer": cfg.recording.enabled,
        "anthropic_key_prefix": ANTHROPIC_KEY_PREFIX,
        "names": lua_names(),
        "replies": {reason: {"status": str(status),
                             "bodies": {d: b.decode() for d, b in error_bodies(status, message).items()}}
                    for reason, (status, message) in _GATE_REPLIES.items()},
    }


def gate_filter_config(cfg: Config, digests: dict[str, GatewayKey]) -> dict[str, Any]:
    code = ("-- Rendered by `lunaroute` from the gateway's config; the code below CONFIG is envoy/gate.lua.\n"
            f"local CONFIG = {lua_literal(gate_settings(cfg, digests))}\n\n{gate_source()}")
    return {"@type": T + "envoy.extensions.filters.http.lua.v3.Lua", "default_source_code": {"inline_string": code}}


def render_gate(cfg: Config, digests: dict[str, GatewayKey] | None = None) -> dict[str, Any]:
    """The gate's config as the file Envoy watches (an ECDS discovery response): rewriting the file
    (atomically) swaps the gate on every Envoy worker without a restart — that is key rotation."""
    digests = cfg.key_digests() if digests is None else digests
    return {"resources": [{"@type": T + "envoy.config.core.v3.TypedExtensionConfig", "name": GATE_FILTER,
                           "typed_config": gate_filter_config(cfg, digests)}]}


def write_gate(cfg: Config, path: Path, digests: dict[str, GatewayKey] | None = None) -> None:
    """Write the gate file atomically (Envoy reloads it on the rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(render_gate(cfg, digests), sort_keys=False, width=120), encoding="utf-8")
    os.replace(tmp, path)


def gate_discovery(gate_path: str) -> dict[str, Any]:
    return {"name": GATE_FILTER, "config_discovery": {
        "config_source": {"path_config_source": {
            "path": gate_path, "watched_directory": {"path": os.path.dirname(gate_path) or "."}}},
        "type_urls": [T + "envoy.extensions.filters.http.lua.v3.Lua"],
    }}


def inline_gate(boot: dict[str, Any], gate: dict[str, Any]) -> dict[str, Any]:
    """A copy of the bootstrap with the gate's config in place of its file (one self-contained file:
    for `envoy --mode validate`, which then compiles the Lua too, and for reading)."""
    boot = yaml.safe_load(yaml.safe_dump(boot))
    hcm = boot["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]["typed_config"]
    hcm["http_filters"] = [
        {"name": GATE_FILTER, "typed_config": gate["resources"][0]["typed_config"]} if f["name"] == GATE_FILTER
        else f for f in hcm["http_filters"]]
    return boot


def keyless_gate() -> dict[str, Any]:
    """The gate of a config without keys, for validating a bootstrap whose gate file is elsewhere."""
    return render_gate(parse({}), {})
