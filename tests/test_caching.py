"""Prompt caching of translated requests (`extproc.dialects.caching`), and the mocks' model of the
providers' caches that the end-to-end tests measure with."""

from __future__ import annotations

import copy

import orjson

from extproc.dialects import caching, translator_for
from extproc.dialects.base import Target
from extproc.markers import take_marker
from tests.mock_providers import AnthropicPromptCache, OpenAIPromptCache
from tests.replay import SESSION_ID, SYSTEM, ClaudeCodeSession

GPT = Target(name="gpt", dialect="openai")
CLAUDE = Target(name="claude", dialect="anthropic")
LONG = "x " * 4000  # about 2000 tokens


def _to_claude(body: dict, target: Target = CLAUDE, client: str = "openai") -> dict:
    out = translator_for(client, "anthropic").request_body(copy.deepcopy(body), target)  # type: ignore[arg-type]
    caching.prepare(out, body, client, target, {})  # type: ignore[arg-type]
    return out


def _marks(body: dict) -> list[str]:
    """Where the breakpoints are: tool names, "system", "messages[i]"."""
    out = [t["name"] for t in body.get("tools", []) if "cache_control" in t]
    out += ["system" for b in body.get("system", []) if "cache_control" in b]
    out += [f"messages[{i}]" for i, m in enumerate(body["messages"]) for b in m["content"] if "cache_control" in b]
    return out


# -- OpenAI-type providers: one key per conversation --------------------------------------------------


def test_the_session_header_names_the_conversation_then_claude_codes_metadata_then_the_user_id() -> None:
    claude_code = {"metadata": {"user_id": orjson.dumps({"device_id": "d", "session_id": "s-1"}).decode()}}
    assert caching.conversation_of({"x-claude-code-session-id": "h-1"}, claude_code) == "h-1"
    assert caching.conversation_of({"session-id": "codex-1"}, {}) == "codex-1"
    assert caching.conversation_of({}, claude_code) == "s-1"
    assert caching.conversation_of({}, {"metadata": {"user_id": "alice"}}) == "alice"
    assert caching.conversation_of({}, {"metadata": {"user_id": "{not json"}}) == "{not json"
    assert caching.conversation_of({}, {"messages": []}) is None


def test_the_key_is_stable_per_conversation_and_provider_and_hides_the_session() -> None:
    key = caching.cache_key("gpt", SESSION_ID)
    assert key == caching.cache_key("gpt", SESSION_ID) and len(key) <= 64
    assert SESSION_ID not in key and SESSION_ID.replace("-", "") not in key
    assert key != caching.cache_key("deepseek", SESSION_ID) != caching.cache_key("gpt", "another-session")


def test_a_translated_request_gets_the_key_unless_the_client_sent_one_or_the_provider_refuses_it() -> None:
    out: dict = {"messages": []}
    caching.prepare(out, {}, "anthropic", GPT, {"x-claude-code-session-id": "s"})
    assert out["prompt_cache_key"] == caching.cache_key("gpt", "s")
    own = {"prompt_cache_key": "codex-conversation"}
    caching.prepare(own, {}, "openai-responses", GPT, {"session-id": "s"})
    assert own["prompt_cache_key"] == "codex-conversation"
    caching.prepare(own, {}, "openai-responses", Target(name="vllm", dialect="openai", prompt_cache_key=False), {})
    assert "prompt_cache_key" not in own
    anonymous: dict = {"messages": []}
    caching.prepare(anonymous, {}, "anthropic", GPT, {})
    assert "prompt_cache_key" not in anonymous


def test_ten_turns_of_claude_code_translate_to_prompts_that_only_ever_grow_at_the_end() -> None:
    """Nothing in the translated prefix changes from turn to turn: each request's tools and messages
    start with the previous request's, byte for byte, and the key stays the same."""
    session = ClaudeCodeSession()
    translator = translator_for("anthropic", "openai")
    previous: dict | None = None
    for turn in range(10):
        body = session.request()
        out = translator.request_body(copy.deepcopy(body), GPT)
        caching.prepare(out, body, "anthropic", GPT, session.headers)
        if previous is not None:
            assert out["tools"] == previous["tools"]
            assert out["messages"][: len(previous["messages"])] == previous["messages"], f"turn {turn + 1}"
            assert out["prompt_cache_key"] == previous["prompt_cache_key"]
        assert "x-anthropic-billing-header" not in orjson.dumps(out).decode()
        previous = out
        content = [{"type": "tool_use", "id": "call_1", "name": "Read",
                    "input": {"file_path": "/home/user/project/notes.txt"}}] if turn == 0 else [
            {"type": "text", "text": f"answer {turn}"}]
        session.answered(content)


def _unmarked(messages: list[dict]) -> list[dict]:
    return [{**m, "content": [{k: v for k, v in b.items() if k != "cache_control"} for b in m["content"]]}
            for m in messages]


def test_a_marked_prompt_is_stripped_the_same_way_when_it_is_history_so_the_prefix_stays() -> None:
    session = ClaudeCodeSession()
    session.answered([{"type": "text", "text": "hi"}], prompt="<system-reminder>[LUNAROUTE:gpt]</system-reminder>")
    turn_2 = session.request()
    assert take_marker(turn_2, "anthropic", {"gpt"})[0].name == "gpt"
    session.answered([{"type": "text", "text": "from gpt"}], prompt="back home")
    turn_3 = session.request()
    assert take_marker(turn_3, "anthropic", {"gpt"})[0].kind == "none"
    assert _unmarked(turn_3["messages"][: len(turn_2["messages"])]) == _unmarked(turn_2["messages"])


# -- Anthropic-type providers: breakpoints -----------------------------------------------------------


def _conversation(system: str = SYSTEM) -> dict:
    return {"model": "claude-sonnet-4-5", "max_tokens": 100,
            "tools": [{"type": "function", "function": {"name": "find_book", "parameters": {"type": "object"}}}],
            "messages": [{"role": "system", "content": system}, {"role": "user", "content": "Dune?"},
                         {"role": "assistant", "content": "Shelf 4."}, {"role": "user", "content": "Sequel?"}]}


def test_a_long_prompt_gets_four_breakpoints_tools_system_this_turn_and_the_last_one() -> None:
    out = _to_claude(_conversation())
    assert _marks(out) == ["find_book", "system", "messages[0]", "messages[2]"]
    assert out["tools"][0]["cache_control"] == out["system"][0]["cache_control"] == {"type": "ephemeral"}


def test_a_prompt_below_the_models_minimum_gets_no_breakpoint() -> None:
    assert _marks(_to_claude(_conversation(system="Be brief."))) == []
    sonnet = _conversation(system=LONG)  # ~2000 tokens: enough for Sonnet 4.5 (1024), not for Haiku 4.5 (4096)
    assert _marks(_to_claude(sonnet)) != []
    assert _marks(_to_claude({**sonnet, "model": "claude-haiku-4-5"})) == []
    assert caching.min_cacheable_tokens("claude-opus-4-5-20251101") == 4096
    assert caching.min_cacheable_tokens("claude-3-5-haiku-latest") == 2048
    assert caching.min_cacheable_tokens(None) == 1024


def test_prompt_caching_off_sends_no_breakpoint() -> None:
    assert _marks(_to_claude(_conversation(), Target(name="claude", dialect="anthropic", prompt_caching="off"))) == []


def test_a_clients_own_hint_wins_over_ours() -> None:
    body = _conversation()
    body["messages"][1]["content"] = [{"type": "text", "text": "Dune?", "cache_control": {"type": "ephemeral"}}]
    assert _marks(_to_claude(body)) == ["messages[0]"]
    message_level = _conversation()
    message_level["messages"][2]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
    out = _to_claude(message_level)
    assert _marks(out) == ["messages[1]"] and out["messages"][1]["content"][-1]["cache_control"]["ttl"] == "1h"


def test_a_responses_client_on_anthropic_gets_breakpoints_and_its_key_is_dropped() -> None:
    body = {"model": "claude-sonnet-4-5", "instructions": SYSTEM, "prompt_cache_key": "codex-1", "store": False,
            "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Dune?"}]}]}
    out = _to_claude(body, client="openai-responses")
    assert _marks(out) == ["system", "messages[0]"] and "prompt_cache_key" not in out


def test_breakpoints_skip_blocks_anthropic_cannot_mark_and_same_dialect_requests_are_untouched() -> None:
    body = {"model": "claude-sonnet-4-5", "system": [{"type": "text", "text": SYSTEM}], "messages": [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "thinking", "thinking": "t"}]}]}
    caching.add_breakpoints(body)
    assert "cache_control" in body["messages"][1]["content"][0] and "cache_control" not in body["messages"][1][
        "content"][1]
    native = copy.deepcopy(_to_claude(_conversation(system="short")))
    native["system"][0]["text"] = SYSTEM
    before = copy.deepcopy(native)
    caching.prepare(native, native, "anthropic", CLAUDE, {})
    assert native == before


# -- the mocks' caches, which the end-to-end measurements rely on -------------------------------------


def test_the_anthropic_mock_reads_what_an_earlier_request_wrote_at_a_breakpoint() -> None:
    cache = AnthropicPromptCache()
    first = _to_claude(_conversation())
    cold = cache.usage(first)
    assert cold["cache_read_input_tokens"] == 0 and cold["cache_creation_input_tokens"] > 1024
    longer = _conversation()
    longer["messages"] += [{"role": "assistant", "content": "Yes."}, {"role": "user", "content": "Price?"}]
    warm = cache.usage(_to_claude(longer))
    assert warm["cache_read_input_tokens"] == sum(cold.values())  # the whole previous prompt
    unmarked = _to_claude(longer, Target(name="claude", dialect="anthropic", prompt_caching="off"))
    assert cache.usage(unmarked)["cache_read_input_tokens"] == 0  # no breakpoint, no cache


def test_the_openai_mock_caches_shared_prefixes_of_1024_tokens_and_more_per_key() -> None:
    cache = OpenAIPromptCache()
    long_body = {"model": "m", "prompt_cache_key": "k", "messages": [{"role": "system", "content": LONG * 2}]}
    assert cache.usage(long_body)["prompt_tokens_details"]["cached_tokens"] == 0
    more = {**long_body, "messages": [*long_body["messages"], {"role": "user", "content": "hi"}]}
    cached = cache.usage(more)["prompt_tokens_details"]["cached_tokens"]
    assert cached >= 1024 and (cached - 1024) % 128 == 0
    assert cache.usage({**more, "prompt_cache_key": "other"})["prompt_tokens_details"]["cached_tokens"] == 0
    short = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    cache.usage(short)
    assert cache.usage(short)["prompt_tokens_details"]["cached_tokens"] == 0
