"""Errors Envoy produces itself reach each client in its own dialect, never as plain text."""

from __future__ import annotations

import json

import anthropic
import openai
import pytest

from tests.conftest import Gateway
from tests.mock_providers import free_port

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def dead_gateway(tmp_path_factory: pytest.TempPathFactory):
    """Providers whose ports nobody listens on: every upstream connect fails."""
    config = {
        "default_provider": "anthropic",
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": f"http://127.0.0.1:{free_port()}"},
            "gpt": {"type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1"},
        },
        "retries": {"num_retries": 0},
        "limits": {"max_request_bytes": 1024 * 1024},
    }
    gw = Gateway(tmp_path_factory.mktemp("dead"), config, workers=1).start()
    yield gw
    gw.stop()


def test_unreachable_anthropic_provider_is_an_anthropic_error(dead_gateway) -> None:
    client = anthropic.Anthropic(base_url=dead_gateway.url, api_key="k", max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as err:
        client.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "api_error"  # not overloaded: nothing answered at all
    message = err.value.body["error"]["message"]
    assert "could not reach the provider behind cluster provider_anthropic" in message
    assert "upstream connect error" in message


def test_unreachable_provider_reaches_an_openai_client_as_an_openai_error(dead_gateway) -> None:
    client = openai.OpenAI(base_url=dead_gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:  # translated: the Anthropic provider is the default
        client.chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 502
    assert err.value.body["type"] == "server_error"
    assert "provider_anthropic" in err.value.body["message"]


def test_too_large_body_is_a_413_in_the_client_dialect(dead_gateway) -> None:
    status, headers, body = dead_gateway.get("/v1/messages", method="POST", body=b"x" * (2 * 1024 * 1024),
                                             headers={"content-type": "application/json"})
    assert status == 413
    err = json.loads(body)
    assert err["type"] == "error" and err["error"]["type"] == "request_too_large"


def test_gateway_errors_are_not_rewritten(dead_gateway) -> None:
    status, _, body = dead_gateway.get("/v1/messages", method="POST", body=b"{bad",
                                       headers={"content-type": "application/json"})
    assert status == 400
    assert "not valid JSON" in json.loads(body)["error"]["message"]


def test_unreachable_provider_reaches_a_responses_client_as_an_openai_error(dead_gateway) -> None:
    client = openai.OpenAI(base_url=dead_gateway.url + "/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:  # translated: the Anthropic provider is the default
        client.responses.create(model="claude-x", input="hi")
    assert err.value.status_code == 502
    assert err.value.body["type"] == "server_error" and "upstream connect error" in err.value.body["message"]


def test_too_large_responses_body_is_a_413_in_the_openai_envelope(dead_gateway) -> None:
    status, _, body = dead_gateway.get("/v1/responses", method="POST", body=b"x" * (2 * 1024 * 1024),
                                       headers={"content-type": "application/json"})
    assert status == 413
    assert json.loads(body)["error"]["type"] == "invalid_request_error"
