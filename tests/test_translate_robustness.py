"""Wrongly typed requests, unreadable responses, cut-off streams, usage details and per-model caps."""

from __future__ import annotations

import orjson
import pytest

from extproc.dialects import Target, TranslationError, translator_for
from extproc.dialects.anthropic.from_chat import usage_to_anthropic
from extproc.dialects.openai_chat.from_anthropic import usage_to_openai
from extproc.sse import SSEParser, encode_json

TO_OPENAI = Target(name="p", dialect="openai")
TO_ANTHROPIC = Target(name="p", dialect="anthropic")
ANTHROPIC_OK = {"model": "m", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
OPENAI_OK = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


def _events(raw: bytes) -> list[tuple[str | None, object]]:
    parser = SSEParser()
    out = []
    for e in parser.feed(raw) + parser.close():
        out.append((e.event, orjson.loads(e.data) if e.data.startswith("{") else e.data))
    return out


# -------------------------------------------------------------------------- wrongly typed request fields


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("messages", "hello", "messages"),
        ("messages", {"role": "user", "content": "hi"}, "messages"),
        ("stop_sequences", "END", "stop_sequences"),
        ("stop_sequences", ["END", 3], "stop_sequences"),
        ("tool_choice", "auto", "tool_choice"),
        ("system", 42, "system"),
        ("system", {"type": "text", "text": "x"}, "system"),
        ("system", ["plain string block"], "system[0]"),
        ("max_tokens", "100", "max_tokens"),
        ("max_tokens", 0, "max_tokens"),
        ("max_tokens", -5, "max_tokens"),
        ("max_tokens", 1.5, "max_tokens"),
        ("max_tokens", True, "max_tokens"),
        ("tools", {"name": "Bash"}, "tools"),
        ("tools", ["Bash"], "tools[0]"),
        ("temperature", "0.5", "temperature"),
        ("metadata", "user-1", "metadata"),
        ("thinking", {"type": "enabled", "budget_tokens": "lots"}, "thinking"),
    ],
)
def test_wrongly_typed_anthropic_request_field_is_a_400_naming_the_field(field: str, value: object,
                                                                          param: str) -> None:
    with pytest.raises(TranslationError) as info:
        translator_for("anthropic", "openai").request_body({**ANTHROPIC_OK, field: value}, TO_OPENAI)
    assert (info.value.status, info.value.param) == (400, param)


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("messages", "hello", "messages"),
        ("messages", {"role": "user", "content": "hi"}, "messages"),
        ("max_tokens", "5", "max_tokens"),
        ("max_tokens", -5, "max_tokens"),
        ("max_completion_tokens", "5", "max_completion_tokens"),
        ("max_completion_tokens", 0, "max_completion_tokens"),
        ("user", 12345, "user"),
        ("user", {"id": "u"}, "user"),
        ("stop", 7, "stop"),
        ("stop", ["END", None], "stop"),
        ("temperature", "0.7", "temperature"),
        ("temperature", True, "temperature"),
        ("top_p", [0.9], "top_p"),
        ("tools", {"type": "function"}, "tools"),
        ("tools", ["f"], "tools[0]"),
    ],
)
def test_wrongly_typed_openai_request_field_is_a_400_naming_the_field(field: str, value: object,
                                                                       param: str) -> None:
    with pytest.raises(TranslationError) as info:
        translator_for("openai", "anthropic").request_body({**OPENAI_OK, field: value}, TO_ANTHROPIC)
    assert (info.value.status, info.value.param) == (400, param)


def test_wrong_type_error_message_names_the_field_for_both_sdks() -> None:
    with pytest.raises(TranslationError) as info:
        translator_for("openai", "anthropic").request_body({**OPENAI_OK, "max_tokens": "5"}, TO_ANTHROPIC)
    assert info.value.message == "max_tokens must be a positive integer, not '5'"


def test_a_malformed_message_is_a_400_naming_the_message() -> None:
    body = {**ANTHROPIC_OK, "messages": [{"role": "user", "content": "hi"},
                                         {"role": "user", "content": [{"type": "image", "source": "x"}]}]}
    with pytest.raises(TranslationError) as info:
        translator_for("anthropic", "openai").request_body(body, TO_OPENAI)
    assert info.value.param == "messages[1]"


def test_well_typed_optional_fields_still_translate() -> None:
    body = {**ANTHROPIC_OK, "system": [{"type": "text", "text": "s"}], "stop_sequences": ["END"],
            "tool_choice": {"type": "auto"}, "tools": [], "temperature": 0, "metadata": {}}
    out = translator_for("anthropic", "openai").request_body(body, TO_OPENAI)
    assert out["stop"] == ["END"] and out["temperature"] == 0
    body = {**OPENAI_OK, "max_tokens": 5, "stop": "END", "user": "u", "temperature": 1.5, "top_p": 1}
    out = translator_for("openai", "anthropic").request_body(body, TO_ANTHROPIC)
    assert (out["max_tokens"], out["stop_sequences"], out["temperature"]) == (5, ["END"], 1)


# -------------------------------------------------------------------------------- unreadable responses


@pytest.mark.parametrize(
    "body",
    [
        {"choices": ["x"]},
        {"choices": "abc"},
        {"choices": {"0": {}}},
        {},
        {"choices": [{"message": "hi"}]},
        {"choices": [{"message": {"content": 5}}]},
        {"choices": [{"message": {"tool_calls": ["call"]}}]},
        {"choices": [{"message": {"tool_calls": [{"function": {"arguments": "{}"}}]}}]},
        {"choices": [{"message": {"tool_calls": [{"function": "f"}]}}]},
    ],
)
def test_unreadable_openai_response_is_a_502_not_a_crash(body: dict) -> None:
    with pytest.raises(TranslationError) as info:
        translator_for("anthropic", "openai").response_body(body)
    assert info.value.status == 502 and "provider's response was not understood" in info.value.message


@pytest.mark.parametrize(
    "body",
    [
        {"content": "hello"},
        {"content": ["hello"]},
        {},
        {"content": [{"type": "text", "text": 5}]},
        {"content": [{"type": "tool_use", "input": {}}]},
        {"content": [{"type": "tool_use", "name": "t", "input": {1, 2}}]},
    ],
)
def test_unreadable_anthropic_response_is_a_502_not_a_crash(body: dict) -> None:
    with pytest.raises(TranslationError) as info:
        translator_for("openai", "anthropic").response_body(body)
    assert info.value.status == 502 and "provider's response was not understood" in info.value.message


def test_odd_but_harmless_response_fields_are_tolerated() -> None:
    body = {"id": 7, "choices": [{"message": {"content": "hi", "refusal": 3}, "finish_reason": ["stop"]}],
            "usage": {"prompt_tokens": "12", "completion_tokens": None}}
    out = translator_for("anthropic", "openai").response_body(body).body
    assert out["content"] == [{"type": "text", "text": "hi"}] and out["stop_reason"] == "end_turn"
    assert out["usage"]["input_tokens"] == 0
    body = {"id": "msg_1", "content": [], "stop_reason": {"x": 1}, "usage": "lots"}
    out = translator_for("openai", "anthropic").response_body(body).body
    assert out["choices"][0]["finish_reason"] == "stop" and out["usage"]["prompt_tokens"] == 0


# --------------------------------------------------------------------------------------------- streams


def _openai_stream(*chunks: dict, done: bool = False) -> bytes:
    return b"".join(encode_json(c) for c in chunks) + (b"data: [DONE]\n\n" if done else b"")


def _tool_chunk(args: str, **extra: object) -> dict:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "Read", "arguments": args}}
    return {"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"tool_calls": [call]}, **extra}]}


def _to_anthropic(raw: bytes) -> list[dict]:
    stream = translator_for("anthropic", "openai").stream(None, input_tokens_estimate=5)
    return [payload for _, payload in _events(stream.feed(raw) + stream.close())]


def test_openai_stream_cut_off_mid_tool_call_ends_with_error_not_tool_use() -> None:
    events = _to_anthropic(_openai_stream(_tool_chunk('{"file_pa')))
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "error" and events[-1]["error"]["type"] == "api_error"
    assert "ended early" in events[-1]["error"]["message"]
    assert "message_delta" not in kinds and "message_stop" not in kinds and "content_block_stop" not in kinds


def test_openai_stream_with_done_but_no_finish_reason_finishes_normally() -> None:
    events = _to_anthropic(_openai_stream(_tool_chunk('{"file_path": "a"}'), done=True))
    assert [e["type"] for e in events][-2:] == ["message_delta", "message_stop"]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"


def test_openai_stream_finished_for_length_keeps_partial_tool_arguments() -> None:
    events = _to_anthropic(_openai_stream(_tool_chunk('{"file_pa', finish_reason="length"), done=True))
    assert events[-2]["delta"]["stop_reason"] == "max_tokens" and events[-1]["type"] == "message_stop"


def test_openai_stream_usage_in_finish_chunk_without_earlier_usage_finalizes_at_once() -> None:
    finish = {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 9, "completion_tokens": 1}}
    stream = translator_for("anthropic", "openai").stream(None, input_tokens_estimate=5)
    kinds = [p["type"] for _, p in _events(stream.feed(_openai_stream(finish)))]
    assert kinds[-2:] == ["message_delta", "message_stop"]


def test_openai_stream_with_usage_on_every_chunk_waits_for_the_last_usage() -> None:
    def chunk(delta: dict, completion: int, finish: str | None = None) -> dict:
        return {"id": "c", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                "usage": {"prompt_tokens": 9, "completion_tokens": completion}}

    stream = translator_for("anthropic", "openai").stream(None, input_tokens_estimate=5)
    early = stream.feed(_openai_stream(chunk({"content": "hi"}, 1), chunk({}, 2, "stop")))
    assert b"message_delta" not in early  # more usage may follow the finish chunk
    rest = stream.feed(_openai_stream(chunk({}, 3))) + stream.close()  # no [DONE]: end of stream finalizes
    delta = next(p for _, p in _events(rest) if p["type"] == "message_delta")
    assert delta["usage"]["output_tokens"] == 3 and stream.usage["output"] == 3


def _to_openai(raw: bytes) -> list[object]:
    stream = translator_for("openai", "anthropic").stream(None, include_usage=True)
    return [payload for _, payload in _events(stream.feed(raw) + stream.close())]


_START = {"type": "message_start", "message": {"id": "msg_1", "model": "claude", "usage": {"input_tokens": 3}}}


def test_anthropic_stream_cut_before_message_stop_ends_with_error_chunk_even_after_message_delta() -> None:
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 2}}
    out = _to_openai(encode_json(_START, "message_start") + encode_json(delta, "message_delta"))
    assert "[DONE]" not in out
    assert out[-1]["error"]["type"] == "server_error" and "ended early" in out[-1]["error"]["message"]


def test_anthropic_stream_without_any_data_ends_with_error_chunk() -> None:
    out = _to_openai(b"")
    assert len(out) == 1 and "without any data" in out[0]["error"]["message"]


def test_anthropic_stream_reasoning_tokens_reach_the_openai_usage_chunk() -> None:
    delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn"},
             "usage": {"output_tokens": 20, "output_tokens_details": {"thinking_tokens": 12}}}
    raw = b"".join(encode_json(e) for e in (_START, delta, {"type": "message_stop"}))
    out = _to_openai(raw)
    assert out[-1] == "[DONE]"
    assert out[-2]["usage"]["completion_tokens_details"] == {"reasoning_tokens": 12}


# ----------------------------------------------------------------------------------------------- usage


def test_openai_reasoning_tokens_become_anthropic_thinking_tokens_and_back() -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 40, "prompt_tokens_details": {"cached_tokens": 60},
             "completion_tokens_details": {"reasoning_tokens": 25}}
    anthropic = usage_to_anthropic(usage)
    assert anthropic == {"input_tokens": 40, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 60,
                         "output_tokens": 40, "output_tokens_details": {"thinking_tokens": 25}}
    back = usage_to_openai(anthropic)
    assert back == {"prompt_tokens": 100, "completion_tokens": 40, "total_tokens": 140,
                    "prompt_tokens_details": {"cached_tokens": 60},
                    "completion_tokens_details": {"reasoning_tokens": 25}}


def test_usage_without_reasoning_tokens_has_no_details_field() -> None:
    assert "output_tokens_details" not in usage_to_anthropic({"prompt_tokens": 1, "completion_tokens": 1,
                                                             "completion_tokens_details": {"reasoning_tokens": 0}})
    assert "completion_tokens_details" not in usage_to_openai({"input_tokens": 1, "output_tokens": 1})


def test_anthropic_response_reasoning_tokens_reach_the_openai_response() -> None:
    body = {"id": "msg_1", "content": [{"type": "text", "text": "hi"}], "stop_reason": "end_turn",
            "usage": {"input_tokens": 5, "output_tokens": 9, "output_tokens_details": {"thinking_tokens": 4}}}
    out = translator_for("openai", "anthropic").response_body(body).body
    assert out["usage"]["completion_tokens_details"] == {"reasoning_tokens": 4}


# --------------------------------------------------------------------------------------- per-model caps

_CAPS = (("gpt-5*", 128000), ("deepseek-*", 8192), ("*-mini", 16384))


@pytest.mark.parametrize(
    ("model", "cap"),
    [("gpt-5-mini", 128000), ("deepseek-chat", 8192), ("o4-mini", 16384), ("qwen3", 32000), (None, 32000)],
)
def test_max_tokens_cap_first_matching_model_pattern_wins_else_target_max_tokens(model: str | None,
                                                                                  cap: int) -> None:
    target = Target(name="p", dialect="openai", max_tokens=32000, max_tokens_by_model=_CAPS)
    assert target.max_tokens_for(model) == cap


def test_max_tokens_cap_without_any_limit_is_none() -> None:
    assert Target(name="p", dialect="openai", max_tokens_by_model=_CAPS).max_tokens_for("qwen3") is None


def test_anthropic_client_max_tokens_clamped_by_the_outgoing_models_cap() -> None:
    target = Target(name="p", dialect="openai", max_tokens=32000, max_tokens_by_model=_CAPS)
    body = {**ANTHROPIC_OK, "model": "deepseek-chat", "max_tokens": 64000}
    out = translator_for("anthropic", "openai").request_body(body, target)
    assert out["model"] == "deepseek-chat" and out["max_tokens"] == 8192
    plain = Target(name="p", dialect="openai", max_tokens=32000, max_tokens_by_model=_CAPS)
    out = translator_for("anthropic", "openai").request_body({**ANTHROPIC_OK, "max_tokens": 64000}, plain)
    assert out["max_tokens"] == 32000  # model "m" matches no pattern: Target.max_tokens


def test_openai_client_max_tokens_and_thinking_clamped_by_the_outgoing_models_cap() -> None:
    caps = (("claude-haiku-*", 4096),)
    target = Target(name="p", dialect="anthropic", max_tokens=64000, max_tokens_by_model=caps)
    body = {**OPENAI_OK, "model": "claude-haiku-4-5", "max_completion_tokens": 50000}
    assert translator_for("openai", "anthropic").request_body(body, target)["max_tokens"] == 4096
    body = {**body, "max_completion_tokens": 2000, "reasoning_effort": "medium"}
    out = translator_for("openai", "anthropic").request_body(body, target)
    assert out["max_tokens"] == 4096 and out["thinking"] == {"type": "enabled", "budget_tokens": 4095}
    other = {**OPENAI_OK, "model": "claude-sonnet-4-5", "max_completion_tokens": 50000}
    assert translator_for("openai", "anthropic").request_body(other, target)["max_tokens"] == 50000


# -------------------------------------------------- what other gateways' translator test suites expect

TO_RESPONSES = Target(name="p", dialect="openai-responses")
TARGETS = {"openai": TO_OPENAI, "anthropic": TO_ANTHROPIC, "openai-responses": TO_RESPONSES}
CHAT_TOOL = {"type": "function", "function": {"name": "get", "parameters": {"type": "object"}}}


@pytest.mark.parametrize(("client", "provider"), [("anthropic", "openai"), ("openai", "anthropic"),
                                                  ("openai", "openai-responses")])
@pytest.mark.parametrize("content", [0, True, {"type": "text", "text": "hi"}])
def test_user_content_that_is_neither_text_nor_parts_is_a_400_not_a_prefill(client: str, provider: str,
                                                                            content: object) -> None:
    ok = ANTHROPIC_OK if client == "anthropic" else OPENAI_OK
    body = {**ok, "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a"},
                               {"role": "user", "content": content}]}
    with pytest.raises(TranslationError) as err:
        translator_for(client, provider).request_body(body, TARGETS[provider])
    assert err.value.param == "messages[2].content" and err.value.status == 400


@pytest.mark.parametrize("provider", ["anthropic", "openai-responses"])
@pytest.mark.parametrize("tool", [{"type": "function"}, {"type": "function", "function": {"description": "x"}},
                                  {"type": "function", "function": "get"}])
def test_a_function_tool_without_a_named_function_is_a_400(provider: str, tool: dict) -> None:
    with pytest.raises(TranslationError) as err:
        translator_for("openai", provider).request_body({**OPENAI_OK, "tools": [tool]}, TARGETS[provider])
    assert err.value.param == "tools[0].function"


def test_an_anthropic_tool_without_a_name_is_a_400() -> None:
    with pytest.raises(TranslationError) as err:
        translator_for("anthropic", "openai").request_body(
            {**ANTHROPIC_OK, "tools": [{"input_schema": {"type": "object"}}]}, TO_OPENAI)
    assert err.value.param == "tools[0].name"


@pytest.mark.parametrize(("client", "provider", "choice"), [
    ("anthropic", "openai", {"type": "any"}), ("openai", "anthropic", "required"),
    ("openai", "openai-responses", "auto"), ("openai-responses", "openai", "required")])
def test_tool_choice_without_tools_is_not_sent(client: str, provider: str, choice: object) -> None:
    ok = {"model": "m", "input": "hi"} if client == "openai-responses" else \
        ANTHROPIC_OK if client == "anthropic" else OPENAI_OK
    out = translator_for(client, provider).request_body({**ok, "tool_choice": choice}, TARGETS[provider])
    assert "tool_choice" not in out


def test_tool_choice_with_tools_still_goes() -> None:
    out = translator_for("openai", "anthropic").request_body(
        {**OPENAI_OK, "tools": [CHAT_TOOL], "tool_choice": "required"}, TO_ANTHROPIC)
    assert out["tool_choice"] == {"type": "any"}


def test_reasoning_effort_xhigh_thinks_harder_than_high() -> None:
    def budget(effort: str) -> int:
        body = {**OPENAI_OK, "max_tokens": 64000, "reasoning_effort": effort}
        return translator_for("openai", "anthropic").request_body(body, TO_ANTHROPIC)["thinking"]["budget_tokens"]
    assert budget("xhigh") > budget("high")


# -------------------------------------------- response_format json_schema to Anthropic: a forced tool


ANSWER = {"type": "tool_use", "id": "toolu_1", "name": "json_response", "input": {"city": "Paris", "celsius": 21}}


def test_the_forced_tools_call_comes_back_as_the_json_text_of_the_answer() -> None:
    body = {"id": "msg_1", "model": "m", "content": [ANSWER], "stop_reason": "tool_use", "usage": {}}
    choice = translator_for("openai", "anthropic").response_body(body).body["choices"][0]
    assert choice["finish_reason"] == "stop" and "tool_calls" not in choice["message"]
    assert orjson.loads(choice["message"]["content"]) == ANSWER["input"]


def test_the_forced_tools_streamed_input_comes_back_as_content() -> None:
    events = [("message_start", {"type": "message_start", "message": {"id": "msg_1", "model": "m", "usage": {}}}),
              ("content_block_start", {"type": "content_block_start", "index": 0,
                                       "content_block": {**ANSWER, "input": {}}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "input_json_delta", "partial_json": '{"city": "Par'}}),
              ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                       "delta": {"type": "input_json_delta", "partial_json": 'is", "celsius": 21}'}}),
              ("content_block_stop", {"type": "content_block_stop", "index": 0}),
              ("message_delta", {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {}}),
              ("message_stop", {"type": "message_stop"})]
    stream = translator_for("openai", "anthropic").stream()
    out = stream.feed(b"".join(encode_json(e, name) for name, e in events)) + stream.close()
    chunks = [d for _, d in _events(out) if isinstance(d, dict) and d.get("choices")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert orjson.loads(text) == ANSWER["input"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert not any("tool_calls" in c["choices"][0]["delta"] for c in chunks)


def test_json_schema_beside_tools_or_with_a_non_object_schema_is_a_400() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}
    tools = [{"type": "function", "function": {"name": "get"}}]
    with pytest.raises(TranslationError) as err:
        translator_for("openai", "anthropic").request_body({**OPENAI_OK, "response_format": fmt, "tools": tools},
                                                           TO_ANTHROPIC)
    assert err.value.param == "response_format"
    array = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "array"}}}
    with pytest.raises(TranslationError) as err:
        translator_for("openai", "anthropic").request_body({**OPENAI_OK, "response_format": array}, TO_ANTHROPIC)
    assert err.value.param == "response_format.json_schema.schema"
