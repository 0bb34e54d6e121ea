"""Switching providers mid-conversation never breaks the next turn: a history that went through other
providers (unsigned thinking, foreign tool ids) is fitted for an Anthropic-type provider, and a history
that needs nothing reaches it byte for byte — in Python and on Envoy's fast path (envoy/fast.lua) alike.
Tool names longer than a provider accepts are shortened on the way there and mapped back."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from hypothesis import given
from hypothesis import strategies as st
from lupa import luajit21

from extproc import config
from extproc.attempts import AttemptExchange
from extproc.dialects import DIALECTS, translator_for
from extproc.dialects.anthropic import TOOL_ID_RE, fit_history, fitted_tool_id, may_need_fit
from extproc.dialects.base import Target
from extproc.exchange import Exchange
from extproc.gateway import Gateway
from extproc.wire import CHAIN_HEADER, Chain, encode_chain

CFG = config.parse({
    "providers": {
        "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com"},
        "deep": {"type": "openai", "base_url": "https://api.deepseek.com/v1", "api_key_env": "K"},
    },
}, env={})
MESSAGES = {":method": "POST", ":path": "/v1/messages", "x-api-key": "sk-ant-user"}
FAST_LUA = (Path(__file__).parent.parent / "envoy" / "fast.lua").read_text()
LUA_MAY_NEED_FIT = luajit21.LuaRuntime().execute(f"FAST = {{names = {{}}}}\n{FAST_LUA}\nreturn may_need_fit")


def _after_a_reasoning_provider(tool_id: str = "functions.Bash:0") -> dict:
    """The next turn Claude Code sends after a marked turn served by a DeepSeek-style provider."""
    return {"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": True, "messages": [
        {"role": "user", "content": [{"type": "text", "text": "list files"}]},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "I should run ls"},
            {"type": "text", "text": "Running ls."},
            {"type": "tool_use", "id": tool_id, "name": "Bash", "input": {"command": "ls"}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "a.txt"}]},
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "", "signature": ""},
                                          {"type": "text", "text": "One file."}]},
        {"role": "user", "content": "thanks, now without a marker"}]}


def test_unsigned_thinking_is_dropped_and_foreign_tool_ids_are_mapped_on_both_sides() -> None:
    body = _after_a_reasoning_provider()
    assert fit_history(body)
    tool_use, answer = body["messages"][1]["content"][-1], body["messages"][2]["content"][0]
    assert [b["type"] for b in body["messages"][1]["content"]] == ["text", "tool_use"]
    assert body["messages"][3]["content"] == [{"type": "text", "text": "One file."}]
    assert tool_use["id"] == answer["tool_use_id"] == fitted_tool_id("functions.Bash:0")
    assert TOOL_ID_RE.fullmatch(tool_use["id"])
    again = _after_a_reasoning_provider()
    fit_history(again)
    assert again == body  # stable across turns: the next request maps the same id the same way


def test_a_history_anthropic_accepts_is_left_alone() -> None:
    body = {"model": "m", "messages": [
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "sig"},
                                          {"type": "redacted_thinking", "data": "d"},
                                          {"type": "tool_use", "id": "call_abc-1", "name": "x", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_abc-1", "content": "ok"}]}]}
    before = orjson.dumps(body)
    assert not fit_history(body) and orjson.dumps(body) == before


def test_the_next_unmarked_turn_to_anthropic_gets_a_history_it_accepts() -> None:
    ex = Exchange(Gateway(CFG))
    ex.on_request_headers(MESSAGES, end_of_stream=False)
    reply = ex.on_request_body(orjson.dumps(_after_a_reasoning_provider()))
    sent = orjson.loads(reply.body)
    assert b'"thinking"' not in reply.body.replace(b'"thinking":{', b"")
    assert sent["messages"][2]["content"][0]["tool_use_id"] == fitted_tool_id("functions.Bash:0")


def test_a_passthrough_that_needs_nothing_stays_byte_exact() -> None:
    raw = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [
        {"role": "assistant", "content": [{"type": "thinking", "thinking": "t", "signature": "s"}]},
        {"role": "user", "content": "hi"}]})
    ex = Exchange(Gateway(CFG))
    ex.on_request_headers(MESSAGES, end_of_stream=False)
    assert ex.on_request_body(raw).body is None


def test_a_fallback_attempt_to_anthropic_fits_the_history_too() -> None:
    chain = Chain(client="anthropic", path="/v1/messages", query="", providers=("deep", "anthropic"))
    attempt = AttemptExchange(Gateway(CFG), "anthropic")
    attempt.on_request_headers({CHAIN_HEADER: encode_chain(chain), "x-envoy-attempt-count": "2"}, False)
    reply = attempt.on_request_body(orjson.dumps(_after_a_reasoning_provider()))
    assert orjson.loads(reply.body)["messages"][2]["content"][0]["tool_use_id"].startswith("toolu_")


ids = st.sampled_from(["toolu_01", "call_1", "functions.Bash:0", "a b", "toolu_x"])
blocks = st.one_of(
    st.builds(lambda t, s: {"type": "thinking", "thinking": t, **({"signature": s} if s is not None else {})},
              st.text(max_size=5), st.one_of(st.none(), st.sampled_from(["", "sig"]))),
    st.builds(lambda i: {"type": "tool_use", "id": i, "name": "n", "input": {}}, ids),
    st.builds(lambda t: {"type": "text", "text": t}, st.sampled_from(["hi", '"thinking": "x"', "signature"])),
)


@given(st.lists(st.lists(blocks, min_size=1, max_size=4), min_size=1, max_size=4), st.booleans())
def test_property_the_byte_checks_in_python_and_lua_catch_every_body_that_needs_fitting(
        turns: list[list[dict]], spaced: bool) -> None:
    messages = []
    for content in turns:
        messages.append({"role": "assistant", "content": content})
        answers = [{"type": "tool_result", "tool_use_id": b["id"], "content": "r"}
                   for b in content if b["type"] == "tool_use"]
        messages.append({"role": "user", "content": answers or "go on"})
    body = {"model": "m", "messages": messages}
    raw = orjson.dumps(body)
    if spaced:  # a client that writes `"key": "value"` (Python's json)
        raw = json.dumps(body).encode()
    needs = fit_history(orjson.loads(raw))
    if needs:
        assert may_need_fit(raw)
    assert LUA_MAY_NEED_FIT(raw) == may_need_fit(raw)


def _tool_ids_of_a_reply_without_ids(response_id: str | None) -> tuple[str, str]:
    """(non-streamed id, streamed id) an Anthropic client gets for a provider's id-less tool call."""
    translator = translator_for("anthropic", "openai")
    call = {"index": 0, "type": "function", "function": {"name": "Bash", "arguments": "{}"}}
    body = {"id": response_id, "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls",
            "message": {"role": "assistant", "content": None, "tool_calls": [call]}}]}
    plain = translator.response_body(body).body["content"][0]["id"]
    stream = translator.stream()
    chunk = {"id": response_id, "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
    out = stream.feed(b"data: " + orjson.dumps(chunk) + b"\n\ndata: [DONE]\n\n") + stream.close()
    start = next(e for e in out.split(b"\n\n") if b"content_block_start" in e)
    return plain, orjson.loads(start.split(b"data: ", 1)[1])["content_block"]["id"]


def test_generated_tool_ids_never_repeat_across_turns() -> None:
    first, second = _tool_ids_of_a_reply_without_ids("r1"), _tool_ids_of_a_reply_without_ids("r2")
    assert not set(first) & set(second) and all(TOOL_ID_RE.fullmatch(i) for i in (*first, *second))
    assert _tool_ids_of_a_reply_without_ids("r1") == first  # derived from the response: fixtures stay stable
    assert _tool_ids_of_a_reply_without_ids(None) != _tool_ids_of_a_reply_without_ids(None)


# -- tool names over 64 characters (Claude Code's MCP tools) ------------------------------------------------

MCP_TOOL = "mcp__claude_in_chrome__computer_use_browser_automation_take_screenshot_of_tab"


def _long_named_tool_turn(stream: bool) -> dict:
    return {"model": "claude-x", "max_tokens": 100, "stream": stream,
            "tools": [{"name": MCP_TOOL, "input_schema": {"type": "object"}}],
            "tool_choice": {"type": "tool", "name": MCP_TOOL},
            "messages": [{"role": "user", "content": "[LUNAROUTE:deep] shoot"},
                         {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": MCP_TOOL,
                                                            "input": {}}]},
                         {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                                       "content": "png"}]}]}


def _sent_to_openai(stream: bool) -> tuple[Exchange, dict]:
    ex = Exchange(Gateway(CFG))
    ex.on_request_headers(MESSAGES, end_of_stream=False)
    return ex, orjson.loads(ex.on_request_body(orjson.dumps(_long_named_tool_turn(stream))).body)


def test_a_long_tool_name_reaches_an_openai_provider_shortened_the_same_way_everywhere() -> None:
    _, sent = _sent_to_openai(stream=False)
    short = sent["tools"][0]["function"]["name"]
    assert len(short) == 64 and short.startswith(MCP_TOOL[:40])
    assert sent["tool_choice"]["function"]["name"] == short
    assert sent["messages"][1]["tool_calls"][0]["function"]["name"] == short
    assert _sent_to_openai(stream=False)[1]["tools"][0]["function"]["name"] == short  # stable


def test_a_call_of_a_shortened_tool_comes_back_under_the_clients_name() -> None:
    ex, sent = _sent_to_openai(stream=False)
    short = sent["tools"][0]["function"]["name"]
    call = {"id": "call_1", "type": "function", "function": {"name": short, "arguments": "{}"}}
    ex.on_response_headers({":status": "200", "content-type": "application/json"})
    out = ex.on_response_body(orjson.dumps({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason":
                                            "tool_calls", "message": {"role": "assistant", "tool_calls": [call]}}]}),
                              True)
    assert orjson.loads(out.body)["content"][0]["name"] == MCP_TOOL


def test_a_streamed_call_of_a_shortened_tool_comes_back_under_the_clients_name() -> None:
    ex, sent = _sent_to_openai(stream=True)
    short = sent["tools"][0]["function"]["name"]
    ex.on_response_headers({":status": "200", "content-type": "text/event-stream"})
    delta = {"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": short, "arguments": "{}"}}]}
    chunks = [{"id": "c", "model": "m", "choices": [{"index": 0, "delta": delta}]},
              {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}]
    raw = b"".join(b"data: " + orjson.dumps(c) + b"\n\n" for c in chunks) + b"data: [DONE]\n\n"
    out = ex.on_response_body(raw, True).body
    assert MCP_TOOL.encode() in out and short.encode() not in out


def test_a_responses_clients_long_function_name_is_shortened_and_mapped_back() -> None:
    translator = translator_for("openai-responses", "openai")
    body = {"model": "m", "input": "go", "tools": [{"type": "function", "name": MCP_TOOL, "parameters": {}}]}
    sent = translator.request_body(body, Target(name="p", dialect="openai"))
    short = sent["tools"][0]["function"]["name"]
    assert len(short) == 64
    tools = DIALECTS["openai-responses"].client_tools(body)
    call = {"id": "call_1", "type": "function", "function": {"name": short, "arguments": "{}"}}
    out = translator.response_body({"id": "c", "model": "m", "choices": [{"index": 0, "finish_reason": "tool_calls",
                                    "message": {"role": "assistant", "tool_calls": [call]}}]}, None, tools).body
    assert out["output"][0]["name"] == MCP_TOOL
