"""Prompt caching survives the gateway, measured through the real Envoy against mocks that cache like the
providers (`AnthropicPromptCache`, `OpenAIPromptCache`), with the official SDKs as clients.

The hit ratio is the share of a turn's input tokens the provider read from its cache, from turn 2 on
(turn 1 is always cold). `-s` prints the measured ratios (README: Prompt caching).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator

import anthropic
import openai
import pytest

from extproc.dialects import caching
from tests.conftest import TEST_OPENAI_KEY, Gateway
from tests.mock_providers import MockAnthropic, MockOpenAI
from tests.replay import QUESTIONS, SESSION_ID, SYSTEM, TOOLS, ClaudeCodeSession

pytestmark = pytest.mark.e2e

TO_GPT = "claude-sonnet-4-5"  # a rule sends Claude Code's model to the OpenAI-type provider
WITH_FALLBACK = "claude-haiku-4-5"  # to Anthropic, falling back to the OpenAI-type provider
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


@pytest.fixture(scope="module")
def caching_anthropic() -> Iterator[MockAnthropic]:
    mock = MockAnthropic(prompt_cache=True).start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def caching_openai() -> Iterator[MockOpenAI]:
    mock = MockOpenAI(prompt_cache=True).start()
    yield mock
    mock.stop()


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory, caching_anthropic: MockAnthropic,
       caching_openai: MockOpenAI) -> Iterator[Gateway]:
    config = {
        "default_provider": "anthropic",
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": caching_anthropic.base_url, "auth": "passthrough"},
            "gpt": {"type": "openai", "base_url": caching_openai.base_url + "/v1", "api_key_env": "LR_TEST_OPENAI_KEY",
                    "model": "gpt-mock"},
        },
        "routing": {"rules": [{"model": TO_GPT, "provider": "gpt"},
                              {"model": WITH_FALLBACK, "provider": "anthropic", "fallbacks": ["gpt"]}]},
        "retries": {"base_interval_ms": 10, "max_interval_ms": 50},
    }
    gateway = Gateway(tmp_path_factory.mktemp("gw_caching"), config, workers=1)
    gateway.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    yield gateway
    gateway.stop()


@pytest.fixture(autouse=True)
def _cold_caches(caching_anthropic: MockAnthropic, caching_openai: MockOpenAI) -> None:
    caching_anthropic.reset()
    caching_openai.reset()


def _stream(base_url: str, body: dict, headers: dict[str, str]) -> anthropic.types.Message:
    """A request body sent as Claude Code sends it (streamed, with its headers); the final message."""
    client = anthropic.Anthropic(base_url=base_url, api_key="sk-ant-user", max_retries=0)
    known = {k: body[k] for k in ("model", "max_tokens", "messages")}
    extra = {k: v for k, v in body.items() if k not in known and k != "stream"}
    with client.messages.stream(**known, extra_body=extra, extra_headers=headers) as stream:
        return stream.get_final_message()


def _claude_code_turn(base_url: str, session: ClaudeCodeSession) -> tuple[dict, list[dict], dict]:
    """Claude Code's next request: (its body, the answer's content, the answer's usage)."""
    body = session.request()
    final = _stream(base_url, body, session.headers)
    return body, [b.model_dump(exclude_none=True) for b in final.content], final.usage.model_dump()


def _ratio(usages: list[dict]) -> float:
    """Cache reads over all input tokens, from turn 2 on (Anthropic-shaped usage)."""
    later = usages[1:]
    read = sum(u["cache_read_input_tokens"] or 0 for u in later)
    return read / sum(u["input_tokens"] + (u["cache_read_input_tokens"] or 0)
                      + (u["cache_creation_input_tokens"] or 0) for u in later)


def _prefix_hash(body: dict, messages: int) -> str:
    """What a provider's cache keys on: tools, system (minus Claude Code's billing block) and the first
    `messages` messages, without the breakpoints that move every turn."""
    def clean(value: object) -> object:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if k != "cache_control"}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    system = [b for b in body.get("system") or [] if not b["text"].startswith("x-anthropic-billing-header:")]
    prefix = clean({"tools": body.get("tools"), "system": system, "messages": body["messages"][:messages]})
    return hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()


# -- Anthropic client → OpenAI-type provider -----------------------------------------------------------


def test_ten_turns_of_claude_code_on_an_openai_provider_hit_its_cache_as_often_as_a_native_client_can(
        gw, caching_anthropic, caching_openai) -> None:
    session = ClaudeCodeSession(model=TO_GPT)
    bodies, usages = [], []
    for _ in range(10):
        body, content, usage = _claude_code_turn(gw.url, session)
        bodies.append(body)
        usages.append(usage)
        session.answered(content)
    sent = [r.json() for r in caching_openai.requests]
    assert len(sent) == 10 and {s["prompt_cache_key"] for s in sent} == {caching.cache_key("gpt", SESSION_ID)}
    # Every turn reads all the previous turn sent, up to OpenAI's 128-token steps: nothing in the
    # translated prefix changed (OpenAI's cached_tokens, as Claude Code reads them).
    prompts = [u["input_tokens"] + u["cache_read_input_tokens"] for u in usages]
    assert usages[0]["cache_read_input_tokens"] == 0
    assert all(u["cache_read_input_tokens"] > previous - 128 for previous, u in zip(prompts, usages[1:], strict=False))
    through = _ratio(usages)

    # Direct: an OpenAI client sending the same conversation itself (no key), and Claude Code on Anthropic.
    caching_openai.reset()
    native = openai.OpenAI(base_url=caching_openai.base_url + "/v1", api_key="sk-user", max_retries=0)
    direct = []
    for body in sent:
        rest = {k: v for k, v in body.items() if k not in ("model", "messages", "stream", "stream_options",
                                                            "prompt_cache_key")}
        usage = native.chat.completions.create(model=body["model"], messages=body["messages"], extra_body=rest).usage
        cached = usage.prompt_tokens_details.cached_tokens
        direct.append({"input_tokens": usage.prompt_tokens - cached, "cache_read_input_tokens": cached,
                       "cache_creation_input_tokens": 0})
    native_ratio = _ratio(direct)
    straight = _ratio([_stream(caching_anthropic.base_url, b, session.headers).usage.model_dump() for b in bodies])
    print(f"\nClaude Code, 10 turns, share of input read from cache (turns 2-10): via the gateway on an OpenAI "
          f"provider {through:.1%}; an OpenAI client sending the same conversation directly {native_ratio:.1%}; "
          f"Claude Code directly on Anthropic {straight:.1%}")
    assert through >= native_ratio and through >= 0.95


# -- OpenAI clients → Anthropic provider ---------------------------------------------------------------


def _chat_turns(gw) -> list[tuple[int, int, int]]:
    """(prompt_tokens, cached_tokens, cache_write_tokens) of a 10-turn streamed Chat conversation."""
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-ant-user", max_retries=0)
    messages: list[dict] = [{"role": "system", "content": SYSTEM}]
    out = []
    for question in QUESTIONS:
        messages.append({"role": "user", "content": question})
        stream = client.chat.completions.create(model="claude-opus-4-1", messages=messages, tools=TOOLS, stream=True,
                                                stream_options={"include_usage": True})
        text, usage = "", None
        for chunk in stream:
            text += "".join(c.delta.content or "" for c in chunk.choices)
            usage = chunk.usage or usage
        details = usage.prompt_tokens_details
        out.append((usage.prompt_tokens, details.cached_tokens, getattr(details, "cache_write_tokens", 0) or 0))
        messages.append({"role": "assistant", "content": text})
    return out


def _responses_turns(gw) -> list[tuple[int, int, int]]:
    """The same conversation from a Responses client (stateless, as Codex: the whole input each turn)."""
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-ant-user", max_retries=0)
    items: list[dict] = []
    tools = [{"type": "function", **t["function"]} for t in TOOLS]
    out = []
    for question in QUESTIONS:
        items.append({"role": "user", "content": question})
        with client.responses.stream(model="claude-opus-4-1", instructions=SYSTEM, input=items, tools=tools,
                                     store=False, prompt_cache_key="codex-conversation-1") as events:
            final = events.get_final_response()
        details = final.usage.input_tokens_details
        out.append((final.usage.input_tokens, details.cached_tokens, getattr(details, "cache_write_tokens", 0) or 0))
        items.append({"role": "assistant", "content": final.output_text})
    return out


@pytest.mark.parametrize("conversation", [_chat_turns, _responses_turns], ids=["chat", "responses"])
def test_an_openai_client_on_anthropic_reads_its_conversation_prefix_from_the_cache(
        gw, caching_anthropic, conversation) -> None:
    turns = conversation(gw)
    assert turns[0][1] == 0 and turns[0][2] > 0  # the first turn writes, and the client can see it
    prefix_read = [cached / previous for (previous, _, _), (_, cached, _) in zip(turns, turns[1:], strict=False)]
    share = sum(c for _, c, _ in turns[1:]) / sum(p for p, _, _ in turns[1:])
    print(f"\n{conversation.__name__}: prefix read from cache per turn (2-10) min {min(prefix_read):.1%}; "
          f"share of all input tokens read {share:.1%} (direct: no cache at all)")
    assert min(prefix_read) >= 0.8
    sent = caching_anthropic.requests[-1].json()
    assert sum("cache_control" in b for m in sent["messages"] for b in m["content"]) == 2
    assert "prompt_cache_key" not in sent


# -- markers and fallbacks keep caches warm ------------------------------------------------------------


def test_a_marked_turn_to_another_provider_leaves_the_first_providers_prefix_as_it_cached_it(
        gw, caching_anthropic, caching_openai) -> None:
    session = ClaudeCodeSession(model="claude-opus-4-1")
    session.messages[0]["content"][-1]["text"] = "hello"  # a plain first prompt (the recording asks for a tool)
    first, content, cold = _claude_code_turn(gw.url, session)
    session.answered(content, prompt="<system-reminder>[LUNAROUTE:gpt]</system-reminder>")
    _claude_code_turn(gw.url, session)
    assert len(caching_openai.requests) == 1 and "LUNAROUTE" not in caching_openai.requests[0].body.decode()
    session.answered([{"type": "text", "text": "Hello from mock OpenAI"}], prompt="and back")
    _, _, warm = _claude_code_turn(gw.url, session)
    turn_1, turn_3 = (r.json() for r in caching_anthropic.requests)
    n = len(first["messages"])
    assert _prefix_hash(turn_3, n) == _prefix_hash(turn_1, n) == _prefix_hash(first, n)
    assert cold["cache_read_input_tokens"] == 0 and warm["cache_read_input_tokens"] >= cold[
        "cache_creation_input_tokens"]


def test_a_fallback_attempt_does_not_poison_the_primarys_cache(gw, caching_anthropic, caching_openai) -> None:
    session = ClaudeCodeSession(model=WITH_FALLBACK)
    session.messages[0]["content"][-1]["text"] = "hello"
    _, content, cold = _claude_code_turn(gw.url, session)
    session.answered(content, prompt="second question")
    caching_anthropic.fail_next(529, OVERLOADED)
    second, content, _ = _claude_code_turn(gw.url, session)
    assert len(caching_openai.requests) == 1  # the fallback answered, translated and keyed
    assert caching_openai.requests[0].json()["prompt_cache_key"] == caching.cache_key("gpt", SESSION_ID)
    failed = caching_anthropic.requests[1]
    # the primary's attempt got the client's request, nothing of the fallback's translation
    assert json.loads(failed.body) == second
    session.answered(content, prompt="third question")
    _, _, warm = _claude_code_turn(gw.url, session)
    assert warm["cache_read_input_tokens"] >= cold["cache_creation_input_tokens"] > 0


# -- visible ---------------------------------------------------------------------------------------------


def test_cache_reads_and_writes_are_counted_per_provider_and_logged(gw) -> None:
    _chat_turns(gw)
    status, _, body = gw.get("/metrics")
    assert status == 200
    counted = {kind: float(value) for kind, value in re.findall(
        r'^lunaroute_cache_tokens_total\{kind="(read|write)",provider="anthropic"\} (\S+)$', body.decode(), re.M)}
    assert counted["read"] > 0 and counted["write"] > 0
    assert re.search(r"usage lunaroute:anthropic input=\d+ output=\d+ cache_read=[1-9]\d* cache_write=\d+", gw.log())
