"""A client's mistakes, however odd, are 400s in its own dialect: never a 500, never a traceback."""

from __future__ import annotations

import logging

import orjson
import pytest

from extproc.attempts import AttemptExchange
from extproc.errors import nested_too_deeply
from extproc.exchange import Exchange
from extproc.gateway import Gateway
from extproc.wire import CHAIN_HEADER, Chain, encode_chain
from tests.test_exchange import CFG, MESSAGES

CHAT = {":method": "POST", ":path": "/v1/chat/completions", "authorization": "Bearer sk-user"}


def _nested(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _body_reply(headers: dict, raw: bytes):
    ex = Exchange(Gateway(CFG))
    ex.on_request_headers(headers, end_of_stream=False)
    return ex.on_request_body(raw)


def test_a_non_string_system_text_block_is_counted_as_nothing_by_the_token_estimate(caplog) -> None:
    prompt = [{"type": "text", "text": ["x"]}, {"type": "text", "text": "[LUNAROUTE:local] hi"}]
    doc = {"model": "claude-x", "system": [{"type": "text", "text": 123}, {"type": "text", "text": None}],
           "messages": [{"role": "user", "content": prompt}]}
    with caplog.at_level(logging.ERROR):
        reply = _body_reply({**MESSAGES, ":path": "/v1/messages/count_tokens"}, orjson.dumps(doc))
    assert reply.immediate.status == 200 and orjson.loads(reply.immediate.body)["input_tokens"] >= 1
    assert not caplog.records


DEEP = orjson.Fragment(_nested(600))  # orjson reads 1024 levels, writes 255


@pytest.mark.parametrize(("headers", "text", "tool"), [
    (MESSAGES, "[LUNAROUTE:gpt] hi", {"name": "t", "input_schema": DEEP}),  # to the OpenAI provider
    (CHAT, "hi", {"type": "function", "function": {"name": "t", "parameters": DEEP}}),  # to the Anthropic default
], ids=["anthropic-client", "openai-client"])
def test_a_body_nested_too_deep_to_translate_is_a_400_in_the_client_dialect(headers, text, tool, caplog) -> None:
    raw = orjson.dumps({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": text}],
                        "tools": [tool]})
    with caplog.at_level(logging.ERROR):
        reply = _body_reply(headers, raw)
    assert reply.immediate.status == 400
    err = orjson.loads(reply.immediate.body)
    assert "nested too deeply" in err["error"]["message"]
    assert (err.get("type") == "error") is (headers is MESSAGES)  # Anthropic's envelope, or OpenAI's
    assert not caplog.records


def test_json_nested_deeper_than_orjson_reads_is_a_400() -> None:
    reply = _body_reply(MESSAGES, b'{"model":"m","x":' + _nested(1100) + b"}")
    assert reply.immediate.status == 400 and b"not valid JSON" in reply.immediate.body


def test_a_chain_attempt_refuses_a_body_nested_too_deep_to_translate_with_a_400() -> None:
    chain = Chain(client="anthropic", path="/v1/messages", query="", providers=("anthropic", "gpt"),
                  models={"gpt": "gpt-5.1"})
    attempt = AttemptExchange(Gateway(CFG), "gpt")
    attempt.on_request_headers({CHAIN_HEADER: encode_chain(chain), "x-envoy-attempt-count": "2"}, False)
    raw = orjson.dumps({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}],
                        "tools": [{"name": "t", "input_schema": DEEP}]})
    reply = attempt.on_request_body(raw)
    assert reply.immediate.status == 400 and b"nested too deeply" in reply.immediate.body


def test_only_the_depth_limit_counts_as_the_clients_mistake() -> None:
    with pytest.raises(TypeError) as exc:
        orjson.dumps(orjson.loads(b"[" * 300 + b"]" * 300))
    assert nested_too_deeply(exc.value)
    assert nested_too_deeply(RecursionError())
    assert not nested_too_deeply(TypeError("unsupported operand"))
    assert not nested_too_deeply(ValueError("Recursion limit"))
