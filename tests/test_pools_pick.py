"""The start-key pick: Python's (`extproc.pools.pick`) and Envoy's (envoy/pools.lua, rendered with the
config and run here in LuaJIT as Envoy runs it) agree on every conversation and every set of cooling
keys; and the pick itself spreads conversations by weight and moves only a removed key's."""

from __future__ import annotations

import json
import string
import uuid
from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st
from lupa import luajit21

from extproc.config import parse
from extproc.envoy_config.pools import pools_filter_config
from extproc.pools.pick import conversation_id, fnv1a, start_key

NAMES = ["a", "b", "team-c", "d_4"]
NOW = 1_800_000_000


def config(keys: list[tuple[str, int]]):
    return parse({"default_provider": "p", "providers": {"p": {
        "type": "anthropic", "base_url": "https://api.example",
        "keys": [{"name": n, "api_key_env": f"K{i}", "weight": w} for i, (n, w) in enumerate(keys)]}}})


def lua_pick(cfg, out: dict[str, float]):
    """pools.lua's decision for one request, as Envoy takes it (headers, json_to_metadata's values)."""
    code = pools_filter_config(cfg, {"p": out})["default_source_code"]["inline_string"]
    runtime = luajit21.LuaRuntime(unpack_returned_tuples=True)
    decide = runtime.execute(code + """
return function(hdrs, body, now)
  local headers = {get = function(_, name) return hdrs[name] end}
  local conversation = conversation_of(headers, body)
  if not conversation then return nil end
  return pick(POOLS.providers["p"], conversation, now)
end""")
    return runtime, decide


ids = st.one_of(
    st.uuids().map(str),
    st.text(alphabet=string.ascii_letters + string.digits + "_.:@-", min_size=1, max_size=20),
    st.text(alphabet=string.ascii_letters + " {}\"\n\\_é", max_size=12),
    st.sampled_from(["", "-lead", "x" * 128, "y" * 129, "ok\n"]),
)
user_ids = st.one_of(
    st.none(), st.integers(-2**40, 2**40), ids,
    ids.map(lambda s: f"user_abc_account_def_session_{s}"),
    ids.map(lambda s: f"user_session_x_session_{s}"),
    ids.map(lambda s: json.dumps({"device_id": "d", "session_id": s})),
)


@settings(max_examples=400, deadline=None)
@given(
    weights=st.lists(st.integers(1, 4), min_size=2, max_size=4),
    out_mask=st.lists(st.sampled_from([None, NOW - 5, NOW, NOW + 30]), min_size=4, max_size=4),
    claude=st.one_of(st.none(), ids), x_session=st.one_of(st.none(), ids), codex=st.one_of(st.none(), ids),
    codex_underscore=st.one_of(st.none(), ids),
    user_id=user_ids, cache_key=st.one_of(st.none(), ids, st.integers(-5, 5)),
    text=st.text(max_size=20),
)
def test_lua_and_python_pick_the_same_key(weights, out_mask, claude, x_session, codex, codex_underscore, user_id,
                                          cache_key, text) -> None:
    keys = list(zip(NAMES, weights, strict=False))
    cfg = config(keys)
    out = {name: until for (name, _), until in zip(keys, out_mask, strict=False) if until is not None}
    headers = {h: v for h, v in (("x-claude-code-session-id", claude), ("x-session-id", x_session),
                                 ("session-id", codex), ("session_id", codex_underscore))
               if v is not None and "\n" not in v}
    doc: dict = {"model": "m", "messages": [{"role": "user", "content": text}]}
    body: dict = {}
    if user_id is not None:
        doc["metadata"] = {"user_id": user_id}
        body["user_id"] = user_id
    if cache_key is not None:
        doc["prompt_cache_key"] = cache_key
        body["prompt_cache_key"] = cache_key

    runtime, decide = lua_pick(cfg, out)
    from_lua = decide(runtime.table_from(headers), runtime.table_from(body), NOW)

    usable = [(n, w) for n, w in keys if out.get(n, 0) <= NOW]
    expected = start_key(usable, conversation_id(headers, doc) or "")
    if from_lua is not None:
        assert from_lua == expected
    elif usable and "x-claude-code-session-id" in headers and conversation_id(headers, None) == claude:
        raise AssertionError("pools.lua left a request with Claude Code's session header to Python")
    if not usable:
        assert from_lua is None  # every key out: Python answers the 429


def test_fnv1a_in_lua_equals_python() -> None:
    runtime = luajit21.LuaRuntime(unpack_returned_tuples=True)
    code = pools_filter_config(config([("a", 1), ("b", 1)]))["default_source_code"]["inline_string"]
    fnv = runtime.execute(code + "\nreturn fnv1a")
    for s in ["", "a", "session\0a#0", "x" * 300, "é☃"]:
        assert fnv(s) == fnv1a(s.encode())


def test_conversations_spread_by_weight() -> None:
    keys = [("a", 2), ("b", 1), ("c", 1)]
    picks = Counter(start_key(keys, str(uuid.UUID(int=i))) for i in range(4000))
    for name, weight in keys:
        assert abs(picks[name] / 4000 - weight / 4) < 0.15 * weight / 4


def test_removing_a_key_moves_only_its_conversations() -> None:
    keys = [("a", 2), ("b", 1), ("c", 1)]
    sessions = [str(uuid.UUID(int=i)) for i in range(2000)]
    before = {s: start_key(keys, s) for s in sessions}
    after = {s: start_key([k for k in keys if k[0] != "b"], s) for s in sessions}
    moved = [s for s in sessions if before[s] != after[s]]
    assert moved and all(before[s] == "b" for s in moved)
    assert len(moved) == sum(1 for s in sessions if before[s] == "b")


def test_no_usable_key_picks_none() -> None:
    assert start_key([], "s") is None


def test_conversation_id_ignores_the_request_id_and_falls_back_to_the_first_user_turn() -> None:
    doc = {"messages": [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "x"}]}
    later = {"messages": [*doc["messages"], {"role": "user", "content": "more"}]}
    assert conversation_id({"x-request-id": "r1"}, doc) == conversation_id({"x-request-id": "r2"}, later)
    assert conversation_id({}, {"prompt_cache_key": "k-1", **doc}) == "k-1"
    assert conversation_id({"x-claude-code-session-id": "s-1"}, doc) == "s-1"


def test_mix32_in_lua_equals_python() -> None:
    from extproc.pools.pick import mix32

    runtime = luajit21.LuaRuntime(unpack_returned_tuples=True)
    code = pools_filter_config(config([("a", 1), ("b", 1)]))["default_source_code"]["inline_string"]
    mix = runtime.execute(code + "\nreturn mix32")
    for h in [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x811C9DC5, 123456789]:
        assert mix(h if h < 2**31 else h - 2**32) == mix32(h)
