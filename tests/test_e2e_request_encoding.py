"""Request bodies a client compressed (`content-encoding: gzip|br|zstd`), through the real Envoy: read
decoded, with a cap, before routing; forwarded as sent when nothing changes; an encoding the gateway
cannot read is a 415 in the client's dialect."""

from __future__ import annotations

import gzip
import json

import brotli
import pytest
import zstandard

pytestmark = pytest.mark.e2e

MESSAGES = "/v1/messages"
CHAT = "/v1/chat/completions"


def _body(prompt: str, **extra: object) -> bytes:
    return json.dumps({"model": "claude-x", "max_tokens": 20, "messages": [{"role": "user", "content": prompt}],
                       **extra}).encode()


def _post(gw, path: str, body: bytes, encoding: str, **headers: str) -> tuple[int, dict]:
    status, _, raw = gw.get(path, method="POST", body=body, headers={
        "content-type": "application/json", "content-encoding": encoding, "x-api-key": "sk-ant-user",
        "anthropic-version": "2023-06-01", **headers})
    return status, json.loads(raw)


def test_a_gzip_body_with_a_marker_is_routed_and_reaches_the_openai_provider_decoded(gateway, openai_mock) -> None:
    status, reply = _post(gateway, MESSAGES, gzip.compress(_body("[LUNAROUTE:gpt] hi")), "gzip")
    assert status == 200 and reply["content"][0]["text"] == "Hello from mock OpenAI"
    seen = openai_mock.requests[-1]
    assert "content-encoding" not in seen.headers
    assert seen.json()["messages"][-1]["content"] == "hi"


@pytest.mark.parametrize(("encoding", "compress"), [("br", brotli.compress),
                                                     ("zstd", lambda b: zstandard.ZstdCompressor().compress(b))])
def test_brotli_and_zstd_bodies_are_read_too(gateway, openai_mock, encoding: str, compress) -> None:
    status, reply = _post(gateway, MESSAGES, compress(_body("[LUNAROUTE:gpt] hi")), encoding)
    assert status == 200 and reply["content"][0]["text"] == "Hello from mock OpenAI"


def test_a_compressed_passthrough_goes_to_the_provider_as_sent(gateway, anthropic_mock) -> None:
    sent = gzip.compress(_body("hi"))
    status, reply = _post(gateway, MESSAGES, sent, "gzip")
    assert status == 200 and reply["content"][0]["text"] == "Hello from mock Anthropic"
    assert anthropic_mock.requests[-1].headers["content-encoding"] == "gzip"


@pytest.mark.parametrize(("path", "shape"), [(MESSAGES, "anthropic"), (CHAT, "openai")])
def test_an_encoding_the_gateway_cannot_read_is_a_415_in_the_clients_dialect(gateway, path: str, shape: str) -> None:
    status, err = _post(gateway, path, b"\x1f\x9d\x90compressed", "compress")
    assert status == 415
    message = err["error"]["message"]
    assert "compress" in message and (err["type"] == "error" if shape == "anthropic" else "code" in err["error"])


def test_a_compression_bomb_is_a_413_not_a_worker_out_of_memory(gateway) -> None:
    bomb = gzip.compress(b'{"model": "m", "messages": [], "pad": "' + b"a" * (40 * 1024 * 1024) + b'"}')
    status, err = _post(gateway, MESSAGES, bomb, "gzip")
    assert status == 413 and err["error"]["type"] == "request_too_large"


def test_corrupt_gzip_is_a_400(gateway) -> None:
    status, err = _post(gateway, CHAT, b"\x1f\x8b\x08\x00garbage", "gzip", authorization="Bearer k")
    assert status == 400 and "gzip" in err["error"]["message"]
