"""The Envoy fast path (envoy/fast.lua, rendered with the config) and the Python router decide alike.

The rendered Lua runs here in LuaJIT (lupa; Envoy's Lua is LuaJIT too) against the same config the
Python `Router` is built from: for any config and request, when the fast path picks a provider, the
Python path would send that request to that same provider untranslated, alone; when it cannot say,
it leaves the request to Python. The gate's SHA-256 is checked against hashlib the same way.
"""

from __future__ import annotations

import fnmatch
import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import luajit21

from extproc import config as config_mod
from extproc import envoy_config
from extproc.envoy_config.fast_path import FAST_PATHS
from extproc.markers import NO_MARKER
from extproc.routing import Router, RoutingError

NAMES = ["anthropic", "gpt", "deep", "local"]
MODEL_CHARS = "abcdegptclaude-.*5?_/"


def _lua_function(source: str, name: str):
    """A local function of an envoy/*.lua file, loaded into LuaJIT."""
    return luajit21.LuaRuntime(unpack_returned_tuples=True).execute(f"{source}\nreturn {name}")


@st.composite
def configs(draw) -> config_mod.Config:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    providers = {}
    for n in names:
        kind = draw(st.sampled_from(["anthropic", "openai"]))
        p = {"type": kind, "base_url": draw(st.sampled_from(["https://a.example", "https://b.example/v1",
                                                            "https://c.example/prefix/v1"]))}
        if draw(st.booleans()):
            p["api_key_env"] = "K"
        if draw(st.integers(0, 4)) == 0:
            p["endpoint_prefixes"] = [draw(st.sampled_from(["/v1/messages", "/v1/chat/completions"]))]
        providers[n] = p
    globs = st.text(alphabet="clauegpt-*?.[]5", min_size=1, max_size=8)
    rules = []
    for _ in range(draw(st.integers(0, 4))):
        rule = {"provider": draw(st.sampled_from(names)), "priority": draw(st.integers(0, 2))}
        if draw(st.integers(0, 5)) == 0:
            rule["model_regex"] = draw(st.sampled_from(["gpt-.*", "claude-[0-9]+", "x|y"]))
        else:
            rule["model"] = draw(globs)
        if draw(st.integers(0, 3)) == 0:
            rule["fallbacks"] = [draw(st.sampled_from(names))]
        rules.append(rule)
    raw = {"providers": providers, "default_provider": draw(st.sampled_from(names)),
           "routing": {"rules": rules}}
    if draw(st.integers(0, 5)) == 0:
        raw["budgets"] = {"daily_tokens": {draw(st.sampled_from(names)): 1000}}
    if draw(st.integers(0, 8)) == 0:
        raw["recording"] = {"enabled": True}
    return config_mod.parse(raw, env={})


def _python_fast_target(cfg: config_mod.Config, path: str, model: str | None) -> str | None:
    """What the Python path does with a request without marker or preferences: the provider, when it
    alone gets the request untranslated and unrecorded (what the fast path may do); "" otherwise; None
    when the router refuses the request (the fast path must then leave it to Python)."""
    try:
        decision = Router(cfg).decide(NO_MARKER, None, model, path)
    except RoutingError:
        return None
    chain = decision.chain
    dialect = FAST_PATHS[path]
    if len(chain) != 1 or cfg.recording.enabled or cfg.providers[chain[0]].type != dialect:
        return ""
    if dialect == "openai" and chain[0] in cfg.budgets.daily_tokens:
        return ""  # Python asks a budgeted Chat Completions stream for its usage (others are charged after)
    return chain[0]


@settings(max_examples=300, deadline=None)
@given(cfg=configs(), path=st.sampled_from(sorted(FAST_PATHS)),
       model=st.one_of(st.none(), st.text(alphabet=MODEL_CHARS, max_size=10)))
def test_the_fast_path_picks_what_the_python_router_picks(cfg, path: str, model: str | None) -> None:
    fast = envoy_config.fast_settings(cfg)
    expected = _python_fast_target(cfg, path, model)
    routes = fast["paths"].get(path)
    if routes is None:  # the gate never marks this path a candidate: Python decides everything
        return
    runtime = luajit21.LuaRuntime(unpack_returned_tuples=True)
    decide, paths = runtime.execute(f"local FAST = {envoy_config.lua_literal(fast)}\n"
                                    f"{envoy_config.envoy_source('fast.lua')}\nreturn decide, FAST.paths")
    got = decide(paths[path], model)
    if got:  # whatever the fast path decides, Python would have decided too
        assert got == expected, (got, expected)
    if expected is not None and not any(r.get("python") for r in routes["rules"]):
        assert got == expected, (got, expected)  # and it decides whenever Python's answer allows it


@pytest.mark.parametrize("glob", ["claude-*", "gpt-5.1", "gpt-?", "a*b*c", "-x+y%", "(x)", "^$", "*"])
@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "gpt-5.1", "gpt-5x1", "gpt-5", "aXbYc", "-x+y%",
                                   "(x)", "^$", "", "abc"])
def test_globs_become_lua_patterns_that_match_what_fnmatch_matches(glob: str, model: str) -> None:
    pattern = envoy_config.glob_to_lua(glob)
    find = luajit21.LuaRuntime().eval("function(s, p) return s:find(p) ~= nil end")
    assert find(model, pattern) == fnmatch.fnmatchcase(model, glob)


def test_a_glob_with_a_character_class_is_left_to_python() -> None:
    assert envoy_config.glob_to_lua("claude-[0-9]*") is None


@settings(max_examples=200, deadline=None)
@given(key=st.binary(max_size=300))
def test_the_gates_sha256_is_sha256(key: bytes) -> None:
    cfg = config_mod.parse({}, env={})
    sha = _lua_function(f"local CONFIG = {envoy_config.lua_literal(envoy_config.gate_settings(cfg, {}))}\n"
                        + envoy_config.gate_source(), "sha256_hex")
    assert sha(key) == hashlib.sha256(key).hexdigest()


def test_providers_whose_headers_or_schemas_python_rewrites_never_go_fast() -> None:
    for quirk in ({"forward_headers": ["x-request-id"]}, {"tool_schema": {"drop_keys": ["$schema"]}}):
        cfg = config_mod.parse({"providers": {"gem": {"type": "openai", "base_url": "https://g.example/v1",
                                                      **quirk}}}, env={})
        assert envoy_config.fast_settings(cfg)["paths"] == {}
