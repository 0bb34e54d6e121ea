"""Markers, provider preferences and fallbacks through the real Envoy.

Fallbacks are Envoy's retries: the route re-selects the cluster per attempt and each provider
cluster's per-attempt ext_proc re-translates and re-authenticates the request for that provider.
"""

from __future__ import annotations

import copy
import json

import anthropic
import openai
import pytest

from tests.conftest import FIXTURES, TEST_OPENAI_KEY

pytestmark = pytest.mark.e2e

OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
HEADERS = {"content-type": "application/json", "x-api-key": "sk-ant-user", "anthropic-version": "2023-06-01"}


def _recorded(name: str) -> dict:
    return json.loads((FIXTURES / "claude_code" / f"{name}.json").read_text())["body"]


def _with_plugin_marker(body: dict, provider: str) -> dict:
    """What the client-side plugin does: a <system-reminder> block carrying the marker before the prompt."""
    body = copy.deepcopy(body)
    prompt = next(m for m in reversed(body["messages"]) if m["role"] == "user" and any(
        b.get("type") == "text" for b in m["content"]))
    prompt["content"].insert(-1, {"type": "text", "text": f"<system-reminder>[LUNAROUTE:{provider}]</system-reminder>"})
    return body


def _post(gw, body: dict, headers: dict | None = None) -> tuple[int, dict, bytes]:
    return gw.get("/v1/messages?beta=true", method="POST", body=json.dumps({**body, "stream": False}).encode(),
                  headers={**HEADERS, **(headers or {})})


def _anthropic(gw) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-user", max_retries=0)


# -- markers ----------------------------------------------------------------------------------------


def test_marker_sends_the_turn_to_the_marked_provider_stripped_and_with_its_model(
        gateway, anthropic_mock, openai_mock) -> None:
    first = _with_plugin_marker(_recorded("recorded_first_turn"), "gpt")
    status, headers, body = _post(gateway, first)
    assert status == 200, body
    answer = json.loads(body)
    assert answer["stop_reason"] == "tool_use"  # the recorded prompt asks for a Read call
    assert answer["content"][-1]["name"] == "Read"
    assert headers["x-lunaroute-provider"] == "gpt"
    sent = openai_mock.requests[-1]
    assert "LUNAROUTE" not in sent.body.decode()
    assert sent.json()["model"] == "gpt-mock"
    assert anthropic_mock.requests == []


def test_tool_loop_follow_ups_of_a_marked_turn_stay_on_the_marked_provider(gateway, anthropic_mock,
                                                                           openai_mock) -> None:
    followup = _with_plugin_marker(_recorded("recorded_tool_followup"), "gpt")
    assert followup["messages"][-1]["content"][0]["type"] == "tool_result"  # the last message is only results
    status, _, body = _post(gateway, followup)
    assert status == 200, body
    sent = openai_mock.requests[-1].json()
    assert sent["messages"][-1]["role"] == "tool"
    assert "LUNAROUTE" not in json.dumps(sent)
    assert anthropic_mock.requests == []


def test_next_turn_without_marker_goes_back_to_the_default(gateway, anthropic_mock, openai_mock) -> None:
    status, _, _ = _post(gateway, _recorded("recorded_first_turn"))
    assert status == 200
    assert len(anthropic_mock.requests) == 1 and openai_mock.requests == []


def test_unknown_marker_is_stripped_and_routed_by_default(gateway, anthropic_mock) -> None:
    status, _, _ = _post(gateway, _with_plugin_marker(_recorded("recorded_first_turn"), "nosuch"))
    assert status == 200
    assert "LUNAROUTE" not in anthropic_mock.requests[-1].body.decode()
    _, _, metrics = gateway.get("/metrics")
    assert "lunaroute_unknown_markers_total" in metrics.decode()


# -- provider preferences ------------------------------------------------------------------------------


def test_x_provider_order_picks_the_provider(gateway, openai_mock) -> None:
    msg = _anthropic(gateway).messages.create(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"X-Provider": json.dumps({"order": ["gpt"], "allow_fallbacks": False})})
    assert msg.content[0].text == "Hello from mock OpenAI"
    assert openai_mock.requests[-1].headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"


def test_provider_object_in_the_body_is_honoured_and_removed(gateway, anthropic_mock) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-ant-user", max_retries=0)
    client.chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}],
                                   extra_body={"provider": {"only": ["anthropic"]}})
    assert "provider" not in anthropic_mock.requests[-1].json()


def test_ignore_removes_a_provider(gateway, anthropic_mock, openai_mock) -> None:
    _anthropic(gateway).messages.create(model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}],
                                        extra_headers={"X-Provider": '{"ignore": ["anthropic"]}'})
    assert anthropic_mock.requests == [] and len(openai_mock.requests) == 1


def test_invalid_preferences_are_a_400_in_the_client_dialect(gateway) -> None:
    with pytest.raises(anthropic.BadRequestError) as err:
        _anthropic(gateway).messages.create(model="claude-x", max_tokens=10,
                                            messages=[{"role": "user", "content": "hi"}],
                                            extra_headers={"X-Provider": '{"only": ["nosuch"]}'})
    assert "nosuch" in err.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        _anthropic(gateway).messages.create(model="claude-x", max_tokens=10,
                                            messages=[{"role": "user", "content": "hi"}],
                                            extra_headers={"X-Provider": "{not json"})


# -- fallbacks ---------------------------------------------------------------------------------------


def test_529_falls_back_to_a_provider_of_the_other_dialect(fallback_gateway, anthropic_mock, openai_mock) -> None:
    anthropic_mock.fail_next(529, OVERLOADED, headers={"retry-after": "30"})
    msg = _anthropic(fallback_gateway).messages.create(model="claude-x", max_tokens=10,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from mock OpenAI"
    assert len(anthropic_mock.requests) == 1
    first = anthropic_mock.requests[0]
    # attempt 1: the client's own key (the SDK sends it as x-api-key or bearer), Anthropic dialect
    assert "sk-ant-user" in (first.headers.get("x-api-key"), first.headers.get("authorization", "")[7:])
    second = openai_mock.requests[-1]
    assert second.path == "/v1/chat/completions"  # attempt 2: re-translated, re-authenticated
    assert second.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"
    assert "x-api-key" not in second.headers and "anthropic-beta" not in second.headers
    assert second.json()["model"] == "gpt-mock"
    assert int(second.headers["content-length"]) == len(second.body)


def test_streaming_falls_back_too(fallback_gateway, anthropic_mock, openai_mock) -> None:
    anthropic_mock.fail_next(529, OVERLOADED)
    with _anthropic(fallback_gateway).messages.stream(
            model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
    assert text == "Hello from mock OpenAI"
    assert openai_mock.requests[-1].json()["stream"] is True


def test_without_failure_the_first_provider_answers_untouched(fallback_gateway, anthropic_mock, openai_mock) -> None:
    msg = _anthropic(fallback_gateway).messages.create(model="claude-x", max_tokens=10,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from mock Anthropic"
    assert openai_mock.requests == []
    seen = anthropic_mock.requests[-1]
    assert seen.json() == {"model": "claude-x", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def test_when_every_provider_fails_the_client_gets_the_last_error_in_its_dialect(
        fallback_gateway, anthropic_mock, openai_mock) -> None:
    anthropic_mock.fail_next(529, OVERLOADED)
    openai_mock.fail_next(503, {"error": {"message": "upstream busy", "type": "server_error"}})
    with pytest.raises(anthropic.APIStatusError) as err:
        _anthropic(fallback_gateway).messages.create(model="claude-x", max_tokens=10,
                                                     messages=[{"role": "user", "content": "hi"}])
    assert err.value.body["type"] == "error"
    assert "upstream busy" in err.value.body["error"]["message"]


def test_fallbacks_are_counted(fallback_gateway, anthropic_mock) -> None:
    anthropic_mock.fail_next(529, OVERLOADED)
    _anthropic(fallback_gateway).messages.create(model="claude-x", max_tokens=10,
                                                 messages=[{"role": "user", "content": "hi"}])
    _, _, text = fallback_gateway.get("/metrics")
    assert 'lunaroute_fallbacks_total{from_provider="anthropic",to_provider="gpt"}' in text.decode()


def test_a_forged_chain_header_cannot_steer_the_gateway(fallback_gateway, anthropic_mock, openai_mock) -> None:
    forged = {"x-lunaroute-chain": json.dumps({"c": "anthropic", "p": "/v1/organization/secret", "q": "",
                                               "n": ["gpt"], "m": {}, "s": {}}),
              "x-lunaroute-attempts": "2", "x-lunaroute-fallback-1": "provider_gpt"}
    msg = _anthropic(fallback_gateway).messages.create(model="other-model", max_tokens=10,
                                                      messages=[{"role": "user", "content": "hi"}],
                                                      extra_headers=forged)
    assert msg.content[0].text == "Hello from mock Anthropic"
    assert openai_mock.requests == []
    assert not any(h.startswith("x-lunaroute-") for h in anthropic_mock.requests[-1].headers)


def test_a_500_from_the_first_provider_also_falls_back(fallback_gateway, anthropic_mock, openai_mock) -> None:
    anthropic_mock.fail_next(500, {"type": "error", "error": {"type": "api_error", "message": "boom"}})
    msg = _anthropic(fallback_gateway).messages.create(model="claude-x", max_tokens=10,
                                                      messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from mock OpenAI"
    assert not any(h.startswith("x-lunaroute-") for h in openai_mock.requests[-1].headers)


# -- paths that are not a Messages or Chat request stay what they are ----------------------------------------


def test_a_message_batch_reaches_the_anthropic_provider_as_sent_even_with_an_openai_default(
        openai_gateway, anthropic_mock, openai_mock) -> None:
    body = json.dumps({"requests": [{"custom_id": "a", "params": {"model": "claude-x", "max_tokens": 5,
                                                                   "messages": [{"role": "user", "content": "hi"}]}}]})
    status, _, _ = openai_gateway.get("/v1/messages/batches", method="POST", body=body.encode(), headers={
        "content-type": "application/json", "x-api-key": "sk-ant-user", "anthropic-version": "2023-06-01"})
    assert status == 200
    seen = anthropic_mock.requests[-1]
    assert (seen.path, seen.body) == ("/v1/messages/batches", body.encode())
    assert seen.headers["x-api-key"] == "sk-ant-user"
    assert openai_mock.requests == []  # never routed a second time, never with the gateway's OpenAI key


def test_a_stored_chat_completion_is_fetched_from_the_openai_bypass_provider(gateway, openai_mock) -> None:
    status, _, body = gateway.get("/v1/chat/completions/chatcmpl-123", headers={"authorization": "Bearer k"})
    assert status == 200
    seen = openai_mock.requests[-1]
    assert (seen.method, seen.path) == ("GET", "/v1/chat/completions/chatcmpl-123")
    assert json.loads(body)["echo"] == "/v1/chat/completions/chatcmpl-123"
