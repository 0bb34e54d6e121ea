"""The fast path (envoy/fast.lua): no Python for requests that need no decision. Its settings come
from the same config and the same router code the Python path decides with."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from ..config import Config
from ..endpoints import FAST_PATHS
from ..routing import Router
from ..wire import (
    BODY_METADATA,
    CACHE_KEY_KEY,
    CANDIDATE_HEADER,
    ERROR_KEY,
    FAST_FILTER,
    JSON_TO_METADATA,
    MODEL_KEY,
    USER_ID_KEY,
    lua_names,
)
from .common import T, envoy_source, lua_literal, only_with_header


def glob_to_lua(glob: str) -> str | None:
    """The Lua pattern matching exactly what `fnmatch.fnmatchcase(model, glob)` matches (for ASCII
    models: fast.lua leaves others to Python), or None when the glob has a character class."""
    out = ["^"]
    for ch in glob:
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            return None
        elif ch in "^$()%.]+-":
            out.append("%" + ch)
        else:
            out.append(ch)
    return "".join(out) + "$"


def _fast_target(cfg: Config, chain: list[str], dialect: str) -> str:
    """The provider the fast path may send to directly, or "" when Python must see the request:
    a fallback chain, another dialect (translation), a per-session budget not limited to gateway keys
    (Envoy does not know sessions; the gate handles a key's), any budget on Chat Completions (below),
    recording, PII redaction of requests, or a provider whose headers or tool schemas Python rewrites
    (`forward_headers`, `tool_schema`). Key and provider budgets do not: the fast path is charged after
    the response (`ledger.after_the_fact`) and Envoy refuses spent ones (`spent`)."""
    if len(chain) != 1 or cfg.recording.enabled or cfg.pii.redact_requests:
        return ""
    name = chain[0]
    p = cfg.providers[name]
    limits = cfg.budgets.all_limits()
    budgeted = any(lim.session is not None and lim.key is None and fnmatchcase(name, lim.provider or "*")
                   for lim in limits)  # (a key's: the gate sends that key's to Python)
    if dialect == "openai":
        # Chat Completions streams report usage only when the client asks (`stream_options`); under a
        # budget Python asks for it, so a stream cannot go uncharged
        budgeted = budgeted or any(fnmatchcase(name, lim.provider or "*") for lim in limits)
    if p.type != dialect or budgeted:
        return ""
    if p.forward_headers is not None or p.tool_schema.drop_keys:
        return ""  # Python filters this provider's headers or cleans its tool schemas
    return name


def fast_settings(cfg: Config) -> dict[str, Any]:
    """What fast.lua decides with, per path: the routing rules in the Python router's own order (each
    a Lua pattern and a target, or `python` for one only Python can evaluate), then the default.
    Paths where nothing could go fast are left out."""
    router = Router(cfg)
    paths: dict[str, Any] = {}
    for path, dialect in FAST_PATHS.items():
        rules: list[dict[str, Any]] = []
        for index, chain in router.ordered_rules():
            eligible = router.eligible_chain(chain, path)
            if not eligible:
                continue  # the router skips a rule whose providers do not serve the path
            glob = cfg.routing.rules[index].model
            pattern = glob_to_lua(glob) if glob is not None else None
            if pattern is None:
                rules.append({"python": True})
                break  # nothing after it can be decided without Python
            rules.append({"pattern": pattern, "target": _fast_target(cfg, eligible, dialect)})
        default = router.eligible_chain((cfg.default_provider, *cfg.providers), path)[:1]
        entry = {"rules": rules, "default": _fast_target(cfg, default, dialect) if default else ""}
        if entry["default"] or any(r.get("target") for r in rules):
            paths[path] = entry
    return {"paths": paths, "max_bytes": cfg.limits.fast_path_max_bytes, "names": lua_names()}


def fast_filters(cfg: Config) -> list[dict[str, Any]]:
    """json_to_metadata lifts the body's top-level `model` into metadata; fast.lua decides with it."""
    settings = fast_settings(cfg)
    if not settings["paths"]:
        return []
    model = {"selectors": [{"key": "model"}],
             "on_present": {"metadata_namespace": BODY_METADATA, "key": MODEL_KEY, "type": "PROTOBUF_VALUE"},
             "on_error": {"metadata_namespace": BODY_METADATA, "key": ERROR_KEY, "value": "1"}}

    rules = [model]
    if any(p.pooled for p in cfg.providers.values()):  # pools.lua's conversation id (envoy_config.pools)
        rules += [{"selectors": selectors, "on_present": {"metadata_namespace": BODY_METADATA, "key": key,
                                                          "type": "PROTOBUF_VALUE"}}
                  for key, selectors in ((USER_ID_KEY, [{"key": "metadata"}, {"key": "user_id"}]),
                                         (CACHE_KEY_KEY, [{"key": "prompt_cache_key"}]))]
    code = ("-- Rendered by `lunaroute` from the gateway's config; the code below FAST is envoy/fast.lua.\n"
            f"local FAST = {lua_literal(settings)}\n\n{envoy_source('fast.lua')}")
    return [
        only_with_header(CANDIDATE_HEADER, JSON_TO_METADATA, {
            "@type": T + "envoy.extensions.filters.http.json_to_metadata.v3.JsonToMetadata",
            "request_rules": {"rules": rules}}),
        only_with_header(CANDIDATE_HEADER, FAST_FILTER, {
            "@type": T + "envoy.extensions.filters.http.lua.v3.Lua", "default_source_code": {"inline_string": code}}),
    ]
