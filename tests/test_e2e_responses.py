"""The OpenAI Responses API (`/v1/responses`) through the real Envoy, driven by the official SDKs.

A Responses client (the `openai` SDK's `client.responses`) on a Chat Completions provider
(`openai_gateway`), on an Anthropic provider (`gateway`) and on a Responses provider
(`responses_gateway`, passthrough); and Anthropic and Chat clients on that Responses-only provider.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.conftest import TEST_OPENAI_KEY
from tests.mock_providers import Scripted

pytestmark = pytest.mark.e2e

WEATHER = {"type": "function", "name": "get_weather", "description": "Weather for a city", "strict": False,
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files with a patch."}


def _client(gw) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-client", max_retries=0)


def _round_trip(gw, stream: bool) -> tuple[object, object]:
    """A tool call, then its output sent back statelessly (the whole input again, store: false)."""
    client = _client(gw)
    ask = [{"role": "user", "content": [{"type": "input_text", "text": "use the tool please"}]}]
    kwargs = {"model": "gpt-x", "instructions": "Be brief.", "tools": [WEATHER], "store": False}
    if stream:
        with client.responses.stream(input=ask, **kwargs) as events:
            kinds = [e.type for e in events]
            first = events.get_final_response()
        assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
        assert "response.function_call_arguments.delta" in kinds
    else:
        first = client.responses.create(input=ask, **kwargs)
    call = next(item for item in first.output if item.type == "function_call")
    assert call.name == "get_weather" and json.loads(call.arguments)["city"] == "Paris"
    follow_up = [*ask, {"type": "function_call", "call_id": call.call_id, "name": call.name,
                        "arguments": call.arguments},
                 {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}]
    if stream:
        with client.responses.stream(input=follow_up, **kwargs) as events:
            second = events.get_final_response()
    else:
        second = client.responses.create(input=follow_up, **kwargs)
    return first, second


# -- a Responses client on a Chat Completions provider -------------------------------------------------------


def test_responses_create_is_answered_by_a_chat_provider(openai_gateway, openai_mock) -> None:
    response = _client(openai_gateway).responses.create(model="gpt-x", instructions="Be brief.", input="hi")
    _, _, metrics = openai_gateway.get("/metrics")
    assert 'lunaroute_translations_total{client="openai-responses",provider="openai"}' in metrics.decode()
    assert response.output_text == "Hello from mock OpenAI"
    assert response.status == "completed"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (30, 9)
    assert response.usage.input_tokens_details.cached_tokens == 10
    seen = openai_mock.requests[-1]
    assert seen.path == "/v1/chat/completions"
    assert seen.json()["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    assert seen.json()["model"] == "gpt-mock"  # the provider's model override
    assert seen.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_responses_tool_round_trip_on_a_chat_provider(openai_gateway, openai_mock, stream: bool) -> None:
    _, second = _round_trip(openai_gateway, stream)
    assert second.output_text == "tool said: sunny, 21C"
    sent = openai_mock.requests[-1].json()
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "assistant", "tool"]
    assert sent["messages"][2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert sent["tools"][0]["function"]["name"] == "get_weather"


def test_responses_stream_text_events_arrive_in_order(openai_gateway) -> None:
    with _client(openai_gateway).responses.stream(model="gpt-x", input="hi") as events:
        seen = list(events)
    kinds = [e.type for e in seen]
    assert kinds == ["response.created", "response.in_progress", "response.output_item.added",
                     "response.content_part.added", *["response.output_text.delta"] * 4, "response.output_text.done",
                     "response.content_part.done", "response.output_item.done", "response.completed"]
    assert [e.sequence_number for e in seen] == list(range(len(seen)))
    assert seen[-1].response.output_text == "Hello from mock OpenAI"


def test_custom_tool_calls_come_back_as_custom_tool_call_items(openai_gateway, openai_mock) -> None:
    response = _client(openai_gateway).responses.create(
        model="gpt-x", tools=[APPLY_PATCH], input='use the tool apply_patch {"input": "*** Begin Patch"}')
    call = response.output[0]
    assert (call.type, call.name, call.input) == ("custom_tool_call", "apply_patch", "*** Begin Patch")
    tool = openai_mock.requests[-1].json()["tools"][0]
    assert tool["function"]["parameters"]["required"] == ["input"]


def test_previous_response_id_on_a_chat_provider_is_a_400_naming_it(openai_gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(openai_gateway).responses.create(model="gpt-x", input="and then?", previous_response_id="resp_1")
    assert info.value.body["param"] == "previous_response_id"
    assert "openai-responses" in info.value.body["message"]


def test_input_tokens_are_estimated_when_the_provider_cannot_count(openai_gateway, openai_mock) -> None:
    count = _client(openai_gateway).responses.input_tokens.count(model="gpt-x", input="x" * 400)
    assert count.input_tokens >= 100
    assert not openai_mock.requests


def test_provider_errors_reach_the_sdk_in_the_responses_shape(openai_gateway, openai_mock) -> None:
    openai_mock.fail_next(429, {"error": {"message": "slow down", "type": "requests", "code": "rate_limit_exceeded"}},
                          count=3)
    with pytest.raises(openai.RateLimitError) as info:
        _client(openai_gateway).responses.create(model="gpt-x", input="hi")
    assert info.value.body["code"] == "rate_limit_exceeded" and info.value.body["message"] == "slow down"


# -- a Responses client on an Anthropic provider -------------------------------------------------------------


def test_responses_create_is_answered_by_an_anthropic_provider(gateway, anthropic_mock) -> None:
    response = _client(gateway).responses.create(model="claude-sonnet-4-5", instructions="Be brief.", input="hi",
                                                 max_output_tokens=300)
    assert response.output_text == "Hello from mock Anthropic"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (26, 7)  # 21 + 5 cache reads
    seen = anthropic_mock.requests[-1]
    assert seen.path == "/v1/messages"
    sent = seen.json()
    assert sent["system"] == [{"type": "text", "text": "Be brief."}] and sent["max_tokens"] == 300
    assert seen.headers["x-api-key"] == "sk-client"  # auth: passthrough, moved into Anthropic's header


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_responses_tool_round_trip_on_an_anthropic_provider(gateway, anthropic_mock, stream: bool) -> None:
    first, second = _round_trip(gateway, stream)
    assert first.output[0].type == "message" and first.output[0].content[0].text == "Let me check."
    assert second.output_text == "tool said: sunny, 21C"
    sent = anthropic_mock.requests[-1].json()
    assert sent["messages"][1]["content"][0]["type"] == "tool_use"
    assert sent["messages"][2]["content"][0] == {"type": "tool_result", "tool_use_id": "toolu_mock1",
                                                 "content": "sunny, 21C"}


def test_json_schema_output_on_an_anthropic_provider_comes_back_as_json_text(gateway, anthropic_mock) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    response = _client(gateway).responses.create(model="claude-x", input="use the tool to answer", text={
        "format": {"type": "json_schema", "name": "city", "schema": schema}})
    assert json.loads(response.output_text) == {"city": "Paris"}  # the mock's call of the forced tool
    sent = anthropic_mock.requests[-1].json()
    assert sent["tool_choice"] == {"type": "tool", "name": "json_response"}
    assert sent["tools"][0]["input_schema"] == schema


def test_json_schema_output_without_an_object_root_on_an_anthropic_provider_is_a_400_naming_text_format(
        gateway) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        _client(gateway).responses.create(model="claude-x", input="hi", text={"format": {
            "type": "json_schema", "name": "cities", "schema": {"type": "array"}}})
    assert info.value.body["param"] == "text.format"


def test_a_marker_in_the_last_user_input_routes_the_turn(gateway, openai_mock, anthropic_mock) -> None:
    client = _client(gateway)
    marked = [{"role": "user", "content": [{"type": "input_text", "text": "[LUNAROUTE:gpt] use the tool please"}]}]
    first = client.responses.create(model="claude-x", tools=[WEATHER], input=marked)
    call = first.output[0]
    # the follow-up's last item is a function_call_output: it does not count, the turn stays on gpt
    client.responses.create(model="claude-x", tools=[WEATHER], input=[
        *marked, {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
        {"type": "function_call_output", "call_id": call.call_id, "output": "rain"}])
    assert len(openai_mock.requests) == 2 and not anthropic_mock.requests
    assert openai_mock.requests[0].json()["messages"][-1]["content"] == "use the tool please"


# -- a Responses provider ------------------------------------------------------------------------------------


def test_responses_clients_pass_through_byte_for_byte(responses_gateway, responses_mock) -> None:
    raw = b'{"model":"resp-mock","input":"hi","store":false,"previous_response_id":null}'
    status, headers, body = responses_gateway.get("/v1/responses", method="POST", body=raw, headers={
        "content-type": "application/json", "authorization": "Bearer sk-client"})
    assert status == 200 and json.loads(body)["output"][0]["content"][0]["text"] == "Hello from mock Responses"
    seen = responses_mock.requests[-1]
    assert (seen.path, seen.body) == ("/v1/responses", raw)
    assert seen.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_responses_tool_round_trip_passes_through(responses_gateway, responses_mock, stream: bool) -> None:
    _, second = _round_trip(responses_gateway, stream=stream)
    assert second.output_text == "tool said: sunny, 21C"
    assert responses_mock.requests[-1].json()["input"][-1]["type"] == "function_call_output"


def test_input_tokens_come_from_a_responses_provider(responses_gateway) -> None:
    assert _client(responses_gateway).responses.input_tokens.count(model="m", input="hi").input_tokens == 777


def test_a_chat_client_is_served_by_a_responses_provider(responses_gateway, responses_mock) -> None:
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    client = _client(responses_gateway)
    ask = [{"role": "user", "content": "use the tool please"}]
    first = client.chat.completions.create(model="gpt-x", messages=ask, tools=[tool], max_tokens=200)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    sent = responses_mock.requests[-1].json()
    assert (sent["store"], sent["max_output_tokens"], sent["tools"][0]["strict"]) == (False, 200, False)
    follow_up = [*ask, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                 {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    chunks = list(client.chat.completions.create(model="gpt-x", messages=follow_up, tools=[tool], stream=True,
                                                 stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "tool said: sunny"
    assert chunks[-1].usage.prompt_tokens == 40
    assert responses_mock.requests[-1].path == "/v1/responses"


def test_an_anthropic_client_is_served_by_a_responses_provider(responses_gateway, responses_mock) -> None:
    client = anthropic.Anthropic(base_url=responses_gateway.url, api_key="client-key", max_retries=0)
    tools = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]
    ask = [{"role": "user", "content": "use the tool please"}]
    with client.messages.stream(model="claude-x", max_tokens=100, tools=tools, messages=ask) as stream:
        first = stream.get_final_message()
    call = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and call.input == {"city": "Paris"}
    second = client.messages.create(model="claude-x", max_tokens=100, tools=tools, messages=[
        *ask, {"role": "assistant", "content": [call.model_dump()]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "cloudy"}]}])
    assert second.content[0].text == "tool said: cloudy"
    seen = responses_mock.requests[-1]
    assert seen.path == "/v1/responses" and "x-api-key" not in seen.headers
    assert seen.json()["input"][-1] == {"type": "function_call_output", "call_id": call.id, "output": "cloudy"}


# -- fallbacks and failures ----------------------------------------------------------------------------------


def test_a_responses_client_falls_back_across_dialects(fallback_gateway, anthropic_mock, openai_mock) -> None:
    anthropic_mock.fail_next(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    with _client(fallback_gateway).responses.stream(model="claude-x", input="hi") as events:
        final = events.get_final_response()
    assert final.output_text == "Hello from mock OpenAI"
    assert anthropic_mock.requests[-1].path == "/v1/messages"  # attempt 1: translated for Anthropic
    assert openai_mock.requests[-1].path == "/v1/chat/completions"  # attempt 2: re-translated for Chat


def test_a_provider_failing_mid_stream_ends_the_stream_with_response_failed(openai_gateway, openai_mock) -> None:
    base = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    openai_mock.script.append(Scripted(200, b"", "text/event-stream", chunks=[
        b"data: " + json.dumps({**base, "choices": [{"index": 0, "delta": {"content": "Hal"}}]}).encode() + b"\n\n",
        b'data: {"error": {"message": "the model crashed", "type": "server_error", "code": "server_error"}}\n\n']))
    with _client(openai_gateway).responses.stream(model="gpt-x", input="hi") as events:
        seen = list(events)
    assert seen[-1].type == "response.failed"
    assert seen[-1].response.error.message == "the model crashed"
    assert "response.completed" not in [e.type for e in seen]


def test_stored_response_apis_go_to_the_responses_provider_as_sent(responses_gateway, responses_mock) -> None:
    status, _, _ = responses_gateway.get("/v1/responses/resp_1/cancel", method="POST", body=b'{"x": 1}',
                                         headers={"content-type": "application/json"})
    assert status == 200
    seen = responses_mock.requests[-1]
    assert (seen.method, seen.path, seen.body) == ("POST", "/v1/responses/resp_1/cancel", b'{"x": 1}')
    assert seen.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"


def test_stored_response_apis_without_a_responses_provider_are_a_404(openai_gateway, openai_mock) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        _client(openai_gateway).responses.retrieve("resp_1")
    assert "openai-responses" in info.value.body["message"]
    assert not openai_mock.requests
