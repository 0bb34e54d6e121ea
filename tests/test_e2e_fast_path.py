"""The fast path through the real Envoy: requests that need no decision never reach Python.

A request is seen by Python when a worker logs its routing decision (`route POST …`); fast-path
requests leave no such line, reach the provider byte for byte, and still say which provider answered.
"""

from __future__ import annotations

import json
import time

import openai
import pytest

from tests.conftest import FIXTURES, TEST_OPENAI_KEY, Gateway, standard_config

pytestmark = pytest.mark.e2e

HEADERS = {"content-type": "application/json", "x-api-key": "sk-ant-user", "anthropic-version": "2023-06-01"}


def _routed_by_python(gw: Gateway) -> int:
    return gw.log().count("INFO lunaroute: route ")


def _claude_code_body() -> bytes:
    body = json.loads((FIXTURES / "claude_code" / "recorded_first_turn.json").read_text())["body"]
    return json.dumps({**body, "stream": False}).encode()


@pytest.fixture(scope="module")
def ruled(tmp_path_factory, anthropic_mock, openai_mock):
    """gpt-* models go to the keyed OpenAI-type provider by a rule; the rest to Anthropic."""
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["routing"] = {"rules": [{"model": "gpt-*", "provider": "gpt"}]}
    gw = Gateway(tmp_path_factory.mktemp("ruled"), cfg, workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    yield gw
    gw.stop()


def test_a_plain_claude_code_request_never_reaches_python(gateway, anthropic_mock) -> None:
    before = _routed_by_python(gateway)
    raw = _claude_code_body()
    status, headers, body = gateway.get("/v1/messages?beta=true", method="POST", body=raw, headers=HEADERS)
    assert status == 200, body
    assert headers["x-lunaroute-provider"] == "anthropic"
    seen = anthropic_mock.requests[-1]
    assert seen.body == raw  # byte for byte
    assert (seen.path, seen.query) == ("/v1/messages", "beta=true")
    assert seen.headers["x-api-key"] == "sk-ant-user"
    assert not [h for h in seen.headers if h.startswith("x-lunaroute-")]
    assert _routed_by_python(gateway) == before


def test_count_tokens_for_an_anthropic_default_goes_fast(gateway, anthropic_mock) -> None:
    before = _routed_by_python(gateway)
    status, _, body = gateway.get("/v1/messages/count_tokens", method="POST", headers=HEADERS,
                                  body=b'{"model":"claude-x","messages":[{"role":"user","content":"hi"}]}')
    assert status == 200 and json.loads(body) == {"input_tokens": 4242}
    assert _routed_by_python(gateway) == before


@pytest.mark.parametrize(("body", "headers"), [
    (b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"[LUNAROUTE:gpt] hi"}]}', {}),
    (b'{"model":"claude-x","max_tokens":5,"provider":{"only":["anthropic"]},'
     b'"messages":[{"role":"user","content":"hi"}]}', {}),
    (b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}',
     {"x-provider": '{"only":["anthropic"]}'}),
    (b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}', {"x-model": "claude-y"}),
])
def test_markers_and_preferences_go_through_python(gateway, body: bytes, headers: dict) -> None:
    before = _routed_by_python(gateway)
    status, _, answer = gateway.get("/v1/messages", method="POST", body=body, headers={**HEADERS, **headers})
    assert status == 200, answer
    assert _routed_by_python(gateway) == before + 1


@pytest.mark.parametrize("body", [b"not json", b"[1, 2]", b'{"model": 5, "messages": []}'])
def test_bodies_python_would_refuse_are_refused_by_python(gateway, anthropic_mock, body: bytes) -> None:
    status, _, answer = gateway.get("/v1/messages", method="POST", body=body, headers=HEADERS)
    assert status == 400, answer
    assert json.loads(answer)["type"] == "error"
    assert anthropic_mock.requests == []


def test_a_model_rule_to_a_keyed_provider_of_the_clients_dialect_goes_fast(ruled, openai_mock) -> None:
    before = _routed_by_python(ruled)
    client = openai.OpenAI(base_url=ruled.url + "/v1", api_key="sk-users-own", max_retries=0)
    reply = client.chat.completions.create(model="gpt-mock", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "Hello from mock OpenAI"
    seen = openai_mock.requests[-1]
    assert seen.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"  # the provider's key, not the user's
    assert seen.path == "/v1/chat/completions"
    assert _routed_by_python(ruled) == before
    # a model no rule sends to gpt goes to the Anthropic default: translated, so Python
    client.chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert _routed_by_python(ruled) == before + 1


def test_a_body_above_the_fast_path_limit_goes_through_python(tmp_path, anthropic_mock, openai_mock) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["limits"] = {"fast_path_max_bytes": 1000}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    try:
        small = b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
        assert gw.get("/v1/messages", method="POST", body=small, headers=HEADERS)[0] == 200
        assert _routed_by_python(gw) == 0
        status, _, _ = gw.get("/v1/messages", method="POST", body=_claude_code_body(), headers=HEADERS)
        assert status == 200
        assert _routed_by_python(gw) == 1
    finally:
        gw.stop()


def test_recording_turns_the_fast_path_off(tmp_path, anthropic_mock, openai_mock) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["recording"] = {"enabled": True, "dir": str(tmp_path / "records")}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    try:
        body = b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}'
        assert gw.get("/v1/messages", method="POST", body=body, headers=HEADERS)[0] == 200
        assert _routed_by_python(gw) == 1
    finally:
        gw.stop()


def test_metrics_count_the_requests_the_fast_path_served(gateway) -> None:
    """Python never sees them: Envoy's access log tells the workers, after the response."""
    def served() -> float:
        text = gateway.get("/metrics")[2].decode()
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("lunaroute_requests_total{") and 'path="fast"' in line)
    before = served()
    for _ in range(3):
        gateway.get("/v1/messages", method="POST", headers=HEADERS,
                    body=b'{"model":"claude-x","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}')
    for _ in range(100):  # the access log is flushed every second
        if served() >= before + 3:
            break
        time.sleep(0.1)
    assert served() == before + 3


def test_preferences_spelled_with_a_json_escape_still_go_through_python(gateway) -> None:
    before = _routed_by_python(gateway)
    body = (b'{"model":"claude-x","max_tokens":5,"\\u0070rovider":{"only":["anthropic"]},'
            b'"messages":[{"role":"user","content":"hi"}]}')
    status, _, answer = gateway.get("/v1/messages", method="POST", body=body, headers=HEADERS)
    assert status == 200, answer
    assert _routed_by_python(gateway) == before + 1


def test_preferences_behind_any_json_escape_go_through_python(gateway) -> None:
    before = _routed_by_python(gateway)
    body = (b'{"model":"claude-x","max_tokens":5,"pro\\u0076ider":{"only":["anthropic"]},'
            b'"messages":[{"role":"user","content":"hi"}]}')
    assert gateway.get("/v1/messages", method="POST", body=body, headers=HEADERS)[0] == 200
    assert _routed_by_python(gateway) == before + 1
