"""Anthropic passthrough, bypass and the gateway's own endpoints, through a real Envoy.

The gateway runs as users run it (`lunaroute up`), against mock providers on loopback, and is driven
with the official SDKs.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.conftest import FIXTURES, TEST_OPENAI_KEY

pytestmark = pytest.mark.e2e

CLIENT_KEY = "sk-ant-client-own-key"


def _client_credential(headers: dict[str, str]) -> str:
    """The SDK sends its key as x-api-key or as a bearer token depending on its version."""
    return headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")


def _client(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=CLIENT_KEY, max_retries=0)


def test_non_stream_message_passes_through_byte_for_byte(gateway, anthropic_mock) -> None:
    msg = _client(gateway).messages.create(
        model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text == "Hello from mock Anthropic"
    assert msg.usage.input_tokens == 21
    seen = anthropic_mock.requests[-1]
    assert seen.path == "/v1/messages"
    assert _client_credential(seen.headers) == CLIENT_KEY
    assert "x-lunaroute-cluster" not in seen.headers
    assert json.loads(seen.body)["messages"] == [{"role": "user", "content": "hi"}]


def test_claude_code_request_reaches_the_provider_unchanged(gateway, anthropic_mock) -> None:
    raw = (FIXTURES / "claude_code" / "request.json").read_bytes()
    status, headers, body = gateway.get(
        "/v1/messages?beta=true", method="POST", body=raw,
        headers={"content-type": "application/json", "x-api-key": CLIENT_KEY, "anthropic-version": "2023-06-01",
                 "anthropic-beta": "interleaved-thinking-2025-05-14,context-1m-2025-08-07",
                 "accept-encoding": "gzip, deflate, br, zstd", "x-claude-code-session-id": "s-1"})
    assert status == 200
    seen = anthropic_mock.requests[-1]
    assert seen.body == raw  # prompt caching and thinking signatures depend on exact bytes
    assert seen.query == "beta=true"
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14,context-1m-2025-08-07"
    assert seen.headers["anthropic-version"] == "2023-06-01"
    # Envoy reads the usage of the fast path's responses (envoy_config.metering): they come uncompressed,
    # as the Python path asks for the responses it reads
    assert seen.headers["accept-encoding"] == "identity"
    assert "content-encoding" not in headers
    assert headers.get("x-lunaroute-provider") == "anthropic"


def test_streaming_message_passes_through(gateway, anthropic_mock) -> None:
    with _client(gateway).messages.stream(
            model="claude-sonnet-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "Hello from mock Anthropic"
    assert final.stop_reason == "end_turn"
    assert json.loads(anthropic_mock.requests[-1].body)["stream"] is True


def test_count_tokens_passes_through(gateway, anthropic_mock) -> None:
    result = _client(gateway).messages.count_tokens(
        model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
    assert result.input_tokens == 4242
    assert anthropic_mock.requests[-1].path == "/v1/messages/count_tokens"


def test_embeddings_bypass_to_the_bypass_provider_with_its_key(gateway, openai_mock) -> None:
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="client-key", max_retries=0)
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(result.data) == 2
    seen = openai_mock.requests[-1]
    assert seen.path == "/v1/embeddings"
    assert seen.headers["authorization"] == f"Bearer {TEST_OPENAI_KEY}"


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "PATCH", "DELETE"])
def test_unknown_paths_and_methods_bypass(gateway, openai_mock, method: str) -> None:
    body = b"{}" if method in ("POST", "PUT", "PATCH") else None
    status, _, raw = gateway.get("/v1/files/file-abc?purpose=x", method=method, body=body,
                                 headers={"content-type": "application/json"})
    assert status == 200
    assert json.loads(raw) == {"echo": "/v1/files/file-abc", "method": method}
    assert openai_mock.requests[-1].query == "purpose=x"


@pytest.mark.parametrize("method", ["HEAD", "GET"])
def test_root_answers_200_without_credentials(gateway, method: str) -> None:
    status, _, _ = gateway.get("/", method=method)
    assert status == 200


def test_healthz_and_readyz(gateway) -> None:
    assert gateway.get("/healthz")[0] == 200
    status, _, body = gateway.get("/readyz")
    assert status == 200 and json.loads(body)["status"] == "ready"


def test_metrics_count_requests_and_phase_times(gateway) -> None:
    # `clear` routes by default, through Python (a plain request would take Envoy's fast path)
    _client(gateway).messages.create(model="claude-x", max_tokens=8,
                                     messages=[{"role": "user", "content": "[LUNAROUTE:clear] hi"}])
    status, headers, body = gateway.get("/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'lunaroute_requests_total{path="python",provider="anthropic",route="messages"}' in text
    assert 'lunaroute_routing_decisions_total{provider="anthropic",reason="default"}' in text
    assert 'lunaroute_extproc_phase_seconds_bucket{le="0.001",phase="request_body"}' in text
    assert CLIENT_KEY not in text and TEST_OPENAI_KEY not in text


def test_malformed_json_gets_an_anthropic_error_and_the_server_keeps_serving(gateway) -> None:
    status, _, body = gateway.get("/v1/messages", method="POST", body=b'{"model": "x", "messages": [',
                                  headers={"content-type": "application/json", "x-api-key": CLIENT_KEY})
    assert status == 400
    err = json.loads(body)
    assert err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in err["error"]["message"]
    assert gateway.get("/readyz")[0] == 200


def test_malformed_json_on_chat_completions_gets_an_openai_error(gateway) -> None:
    status, _, body = gateway.get("/v1/chat/completions", method="POST", body=b"[1, 2",
                                  headers={"content-type": "application/json"})
    assert status == 400
    assert "not valid JSON" in json.loads(body)["error"]["message"]


def test_large_body_is_accepted(gateway, anthropic_mock) -> None:
    big = "x" * (3 * 1024 * 1024)
    msg = _client(gateway).messages.create(model="claude-x", max_tokens=8,
                                           messages=[{"role": "user", "content": big}])
    assert msg.content[0].text == "Hello from mock Anthropic"
    assert len(anthropic_mock.requests[-1].body) > 3 * 1024 * 1024


def test_provider_errors_pass_through_unmodified(gateway, anthropic_mock) -> None:
    overloaded = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    anthropic_mock.fail_next(529, overloaded, count=5)
    with pytest.raises(anthropic.APIStatusError) as err:
        _client(gateway).messages.create(model="claude-x", max_tokens=8,
                                         messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 529
    assert err.value.body == overloaded


@pytest.mark.parametrize(("method", "path"), [("HEAD", "/api/hello"), ("POST", "/api/event_logging/batch")])
def test_claude_code_side_calls_never_fail_when_bypass_is_not_anthropic(gateway, openai_mock, method, path) -> None:
    status, _, _ = gateway.get(path, method=method, body=b"{}" if method == "POST" else None,
                               headers={"content-type": "application/json"})
    assert status == 200
    assert openai_mock.requests == []  # Claude Code's telemetry is not sent to the OpenAI bypass provider
