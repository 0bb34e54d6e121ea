"""Dialect translation through the real Envoy, driven by the official SDKs, both ways.

`openai_gateway` sends Anthropic-dialect requests to an OpenAI-type provider; the standard `gateway`
(Anthropic default) serves OpenAI-SDK clients from the Anthropic mock.
"""

from __future__ import annotations

import base64
import json

import anthropic
import openai
import pytest

from tests.conftest import TEST_OPENAI_KEY

pytestmark = pytest.mark.e2e

WEATHER = {"name": "get_weather", "description": "Weather for a city",
           "input_schema": {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
                            "properties": {"city": {"type": "string"},
                                           "n": {"type": "integer", "maximum": 9007199254740991}},
                            "required": ["city"]}}
TIME = {"name": "get_time", "description": "Time in a city",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}
OPENAI_TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}


def _anthropic(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="client-key", max_retries=0)


def _openai(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-ant-client", max_retries=0)


# -- Anthropic client → OpenAI provider ---------------------------------------------------------------


def test_anthropic_sdk_non_stream_is_answered_by_the_openai_provider(openai_gateway, openai_mock) -> None:
    msg = _anthropic(openai_gateway).messages.create(
        model="claude-sonnet-4-5", max_tokens=100, system="Be brief.",
        messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from mock OpenAI"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens == 20 and msg.usage.cache_read_input_tokens == 10
    assert msg.usage.output_tokens == 9
    seen = openai_mock.requests[-1]
    assert seen.path == "/v1/chat/completions"
    sent = seen.json()
    assert sent["model"] == "gpt-mock"  # the provider's model override
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert seen.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"  # injected by Envoy
    assert "x-api-key" not in seen.headers and "anthropic-version" not in seen.headers


def test_anthropic_sdk_stream_gets_anthropic_events(openai_gateway, openai_mock) -> None:
    with _anthropic(openai_gateway).messages.stream(
            model="claude-sonnet-4-5", max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert final.content[0].text == "Hello from mock OpenAI"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 9
    assert events[0] == "message_start" and events[-1] == "message_stop"
    sent = openai_mock.requests[-1].json()
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_anthropic_sdk_tool_round_trip(openai_gateway, openai_mock) -> None:
    client = _anthropic(openai_gateway)
    first = client.messages.create(model="claude-x", max_tokens=100, tools=[WEATHER],
                                   messages=[{"role": "user", "content": "use the tool please"}])
    assert first.stop_reason == "tool_use"
    call = next(b for b in first.content if b.type == "tool_use")
    assert call.name == "get_weather" and call.input == {"city": "Paris", "n": 0}
    sent_tools = openai_mock.requests[-1].json()["tools"]
    assert sent_tools[0]["function"]["parameters"]["properties"]["n"]["maximum"] == 9007199254740991
    assert "strict" not in sent_tools[0]["function"]
    second = client.messages.create(
        model="claude-x", max_tokens=100, tools=[WEATHER],
        messages=[{"role": "user", "content": "use the tool please"},
                  {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]}])
    assert second.content[0].text == "tool said: sunny"
    sent = openai_mock.requests[-1].json()["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.id
    assert sent[-1] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}


def test_anthropic_sdk_streams_parallel_tool_calls_as_complete_blocks(openai_gateway) -> None:
    with _anthropic(openai_gateway).messages.stream(
            model="claude-x", max_tokens=100, tools=[WEATHER, TIME],
            messages=[{"role": "user", "content": "use the tool in parallel"}]) as stream:
        final = stream.get_final_message()
    calls = [b for b in final.content if b.type == "tool_use"]
    assert [(c.name, c.input) for c in calls] == [("get_weather", {"city": "Paris", "n": 0}),
                                                  ("get_time", {"city": "Paris", "n": 1})]
    assert [c.id for c in calls] == ["call_mock0", "call_mock1"]
    assert final.stop_reason == "tool_use"


def test_anthropic_sdk_image_becomes_a_data_url(openai_gateway, openai_mock) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\nfake").decode()
    _anthropic(openai_gateway).messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": png}},
        {"type": "text", "text": "what is this"}]}])
    parts = openai_mock.requests[-1].json()["messages"][-1]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}


def test_count_tokens_is_estimated_locally_for_openai_providers(openai_gateway, openai_mock) -> None:
    result = _anthropic(openai_gateway).messages.count_tokens(
        model="claude-x", messages=[{"role": "user", "content": "hello there " * 100}])
    assert result.input_tokens > 100
    assert openai_mock.requests == []


def test_openai_provider_errors_reach_claude_code_in_anthropic_wording(openai_gateway, openai_mock) -> None:
    openai_mock.fail_next(400, {"error": {"message": "This model's maximum context length is 128000 tokens. "
                                          "However, your messages resulted in 130532 tokens.",
                                          "type": "invalid_request_error", "code": "context_length_exceeded"}})
    with pytest.raises(anthropic.BadRequestError) as err:
        _anthropic(openai_gateway).messages.create(model="claude-x", max_tokens=10,
                                                   messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["error"]["type"] == "invalid_request_error"
    assert err.value.body["error"]["message"] == "prompt is too long: 130532 tokens > 128000 maximum"


def test_unsupported_feature_is_a_400_naming_the_field(openai_gateway, openai_mock) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        _anthropic(openai_gateway).messages.create(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
            tools=[{"type": "web_search_20250305", "name": "web_search"}])
    assert "tools" in err.value.body["error"]["message"]
    assert openai_mock.requests == []


def test_models_lists_configured_models_in_anthropic_shape(openai_gateway) -> None:
    ids = [m.id for m in _anthropic(openai_gateway).models.list()]
    assert ids == ["gpt-mock", "gpt-mock-mini"]


# -- OpenAI client → Anthropic provider ---------------------------------------------------------------


def test_openai_sdk_non_stream_is_answered_by_the_anthropic_provider(gateway, anthropic_mock) -> None:
    result = _openai(gateway).chat.completions.create(
        model="claude-sonnet-4-5", messages=[{"role": "system", "content": "Be brief."},
                                              {"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == "Hello from mock Anthropic"
    assert result.choices[0].finish_reason == "stop"
    assert result.usage.prompt_tokens == 26 and result.usage.completion_tokens == 7
    seen = anthropic_mock.requests[-1]
    assert seen.path == "/v1/messages"
    sent = seen.json()
    assert sent["system"] == "Be brief." or sent["system"][0]["text"] == "Be brief."
    assert sent["max_tokens"] > 0
    assert seen.headers["x-api-key"] == "sk-ant-client"  # the client's own key, as Anthropic expects it
    assert seen.headers["anthropic-version"]


def test_openai_sdk_stream_with_usage(gateway) -> None:
    stream = _openai(gateway).chat.completions.create(
        model="claude-x", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from mock Anthropic"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7


def test_openai_sdk_tools_round_trip(gateway, anthropic_mock) -> None:
    client = _openai(gateway)
    first = client.chat.completions.create(model="claude-x", tools=[OPENAI_TOOL],
                                           messages=[{"role": "user", "content": "use the tool"}])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.id == "toolu_mock1" and json.loads(call.function.arguments) == {"city": "Paris"}
    second = client.chat.completions.create(model="claude-x", tools=[OPENAI_TOOL], messages=[
        {"role": "user", "content": "use the tool"},
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"}])
    assert second.choices[0].message.content == "tool said: sunny"
    sent = anthropic_mock.requests[-1].json()["messages"]
    assert sent[-1]["content"][0] == {"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}


def test_openai_sdk_streamed_tool_call(gateway) -> None:
    stream = _openai(gateway).chat.completions.create(
        model="claude-x", tools=[OPENAI_TOOL], stream=True, messages=[{"role": "user", "content": "use the tool"}])
    args, names = "", []
    for c in stream:
        for tc in (c.choices[0].delta.tool_calls or []) if c.choices else []:
            if tc.function and tc.function.name:
                names.append(tc.function.name)
            args += (tc.function.arguments or "") if tc.function else ""
    assert names == ["get_weather"] and json.loads(args) == {"city": "Paris"}


def test_anthropic_overload_reaches_openai_clients_as_an_openai_error(gateway, anthropic_mock) -> None:
    anthropic_mock.fail_next(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                             count=5)
    with pytest.raises(openai.APIStatusError) as err:
        _openai(gateway).chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 503
    assert err.value.body["message"] == "Overloaded" or err.value.body["error"]["message"] == "Overloaded"


def test_unfaithful_openai_parameter_is_rejected_in_openai_dialect(gateway, anthropic_mock) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        _openai(gateway).chat.completions.create(model="claude-x", n=2, messages=[{"role": "user", "content": "hi"}])
    assert "n" in str(err.value.body)
    assert anthropic_mock.requests == []


def test_models_adds_configured_models_to_the_default_providers_own_list(gateway, anthropic_mock) -> None:
    ids = [m.id for m in _anthropic(gateway).models.list()]
    assert ids == ["claude-mock-1", "gpt-mock", "gpt-mock-mini"]  # Claude Code keeps the claude-* ones
    assert anthropic_mock.requests[-1].path == "/v1/models"
    assert _anthropic(gateway).models.retrieve("gpt-mock").id == "gpt-mock"  # answered locally
