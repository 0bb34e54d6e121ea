"""Side doors to a provider's key, closed in Envoy's routes and the gate (issue 23's second round),
through the real Envoy and workers with the official SDKs and raw sockets:

- the models API forwards reads of `/v1/models` and `/v1/models/{id}` only (no DELETE of a fine-tune,
  no deeper path), in Envoy's routes and the Python classifier alike;
- Anthropic's credentials never reach a bypass provider of another vendor;
- a bypass provider with `endpoint_prefixes` gets only those paths;
- a body that stalls gets a 408 (`timeouts.request_s`) and stops holding an ext_proc slot, and an idle
  connection is closed (`timeouts.idle_connection_s`).
"""

from __future__ import annotations

import hashlib
import json
import socket

import anthropic
import openai
import pytest

from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config

pytestmark = pytest.mark.e2e

BOB = "lr-bob-5e4d3c2b1a0f9e8d7c6b5a4f3e2d1c0b"  # limited to gpt-5* models
CLAUDE_LOGIN = "sk-ant-oat01-users-own-claude-login-token"
ANTHROPIC_KEY = "sk-ant-api03-users-own-anthropic-key"
MESSAGE = {"model": "claude-x", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def models_gateway(tmp_path_factory, anthropic_mock, openai_mock):
    """The issue's setup: the OpenAI-type provider (with its own key) is the default, and bob's key is
    limited to gpt-5* models."""
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["default_provider"] = "gpt"
    cfg["access"] = {"keys": [{"name": "bob", "key_sha256": hashlib.sha256(BOB.encode()).hexdigest(),
                               "models": ["gpt-5*"]}]}
    gw = Gateway(tmp_path_factory.mktemp("models"), cfg, workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    yield gw
    gw.stop()


def test_the_models_api_forwards_reads_only(models_gateway, openai_mock, anthropic_mock) -> None:
    client = openai.OpenAI(base_url=models_gateway.url + "/v1", api_key=BOB, max_retries=0)
    assert [m.id for m in client.models.list()]  # reads still work
    # OpenAI deletes a fine-tuned model this way: never forwarded, whoever asks
    with pytest.raises(openai.APIStatusError) as err:
        client.models.delete("ft:gpt-4o-mini:org:custom:abc123")
    assert err.value.status_code == 405
    assert "accepts GET and HEAD only" in err.value.body["message"]  # OpenAI's envelope
    # a deeper path, from an Anthropic client: 404 in Anthropic's envelope
    status, _, body = models_gateway.get("/v1/models/x/anything", method="POST", body=b"{}", headers={
        "content-type": "application/json", "anthropic-version": "2023-06-01", "x-api-key": BOB})
    assert status == 404, body
    assert json.loads(body)["type"] == "error"
    status, _, _ = models_gateway.get("/v1/models/x/anything", headers={"authorization": f"Bearer {BOB}"})
    assert status == 404
    forwarded = [(r.method, r.path) for r in openai_mock.requests + anthropic_mock.requests]
    assert all(method == "GET" and path == "/v1/models" for method, path in forwarded), forwarded


@pytest.fixture(scope="module")
def openai_bypass(tmp_path_factory, anthropic_mock, openai_mock):
    """Keyless; the bypass provider is OpenAI-type, takes the client's own credentials, and serves
    only embeddings."""
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["providers"]["compat"] = {"type": "openai", "base_url": openai_mock.base_url + "/v1", "auth": "passthrough",
                                  "endpoint_prefixes": ["/v1/embeddings"]}
    cfg["bypass"] = {"enabled": True, "provider": "compat"}
    gw = Gateway(tmp_path_factory.mktemp("openai_bypass"), cfg, workers=1)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    yield gw
    gw.stop()


@pytest.mark.parametrize("credentials", [
    {"x-api-key": ANTHROPIC_KEY},
    {"authorization": f"Bearer {CLAUDE_LOGIN}"},
    {"x-api-key": ANTHROPIC_KEY, "authorization": f"bearer  {CLAUDE_LOGIN}"},
])
def test_anthropic_credentials_never_reach_an_openai_type_bypass_provider(openai_bypass, openai_mock,
                                                                          credentials: dict) -> None:
    status, _, body = openai_bypass.get("/v1/embeddings", method="POST", body=b'{"input":"x","model":"e"}',
                                        headers={"content-type": "application/json", **credentials})
    assert status == 200, body
    seen = openai_mock.requests[-1]
    assert seen.path == "/v1/embeddings"
    assert "x-api-key" not in seen.headers and "authorization" not in seen.headers
    assert not any("sk-ant-" in v for v in seen.headers.values())


def test_an_openai_key_still_passes_through_to_the_openai_type_bypass_provider(openai_bypass, openai_mock) -> None:
    client = openai.OpenAI(base_url=openai_bypass.url + "/v1", api_key="sk-proj-users-own", max_retries=0)
    assert client.embeddings.create(input="x", model="e").data
    assert openai_mock.requests[-1].headers["authorization"] == "Bearer sk-proj-users-own"


def test_endpoint_prefixes_limit_what_the_bypass_provider_gets(openai_bypass, openai_mock) -> None:
    client = openai.OpenAI(base_url=openai_bypass.url + "/v1", api_key="sk-proj-users-own", max_retries=0)
    with pytest.raises(openai.NotFoundError) as err:
        client.files.list()
    assert "endpoint_prefixes" in err.value.message
    status, _, body = openai_bypass.get("/v1/embeddingsX", method="POST", body=b"{}",
                                        headers={"content-type": "application/json"})
    assert status == 404, body
    assert openai_mock.requests == []


# -- slow clients ------------------------------------------------------------------------------------


def _stall(gw: Gateway) -> socket.socket:
    """A request whose headers arrive and whose body never finishes (not a fast-path candidate, so it
    holds an ext_proc stream while Envoy waits for the rest)."""
    sock = socket.create_connection(("127.0.0.1", gw.port), timeout=60)
    sock.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n"
                 b"x-api-key: sk-ant-user\r\nanthropic-version: 2023-06-01\r\nx-model: claude-x\r\n"
                 b"content-length: 100000\r\n\r\n{\"model\":")
    return sock


def _status_of(sock: socket.socket) -> int:
    data = b""
    while b"\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return int(data.split(b" ", 2)[1]) if data else 0


def test_stalled_bodies_get_408_and_free_their_slots(tmp_path, anthropic_mock, openai_mock) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["limits"] = {"max_concurrent_requests": 2}
    cfg["timeouts"] = {"request_s": 2, "idle_connection_s": 2}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    try:
        stalled = [_stall(gw), _stall(gw)]  # every ext_proc slot held
        try:
            assert [_status_of(s) for s in stalled] == [408, 408]
        finally:
            for s in stalled:
                s.close()
        # after them, a request that needs the workers (a marker) from another client is served
        client = anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-user", max_retries=0)
        marked = {**MESSAGE, "messages": [{"role": "user", "content": "[LUNAROUTE:anthropic] hi"}]}
        assert client.messages.create(**marked).content[0].text == "Hello from mock Anthropic"
        # a connection that never sends a request is closed, not kept for an hour
        idle = socket.create_connection(("127.0.0.1", gw.port), timeout=60)
        try:
            assert idle.recv(1) == b""
        finally:
            idle.close()
    finally:
        gw.stop()
