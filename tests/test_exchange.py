"""The request pipeline without gRPC or Envoy: dicts and bytes in, `Reply`s out."""

from __future__ import annotations

import gzip

import orjson

from extproc import config
from extproc.attempts import AttemptExchange, usable_chain
from extproc.exchange import Exchange
from extproc.gateway import Gateway
from extproc.observe import metrics
from extproc.wire import (
    ATTEMPTS_HEADER,
    CHAIN_HEADER,
    CLUSTER_HEADER,
    FALLBACK_HEADER,
    Chain,
    decode_chain,
    encode_chain,
)

RAW = {
    "providers": {
        "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com"},
        "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "gpt-5.1"},
        "local": {"type": "openai", "base_url": "http://127.0.0.1:11434/v1"},
    },
    "routing": {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]},
}
CFG = config.parse(RAW, env={})

MESSAGES = {":method": "POST", ":path": "/v1/messages?beta=true", "x-api-key": "sk-ant-user",
            "anthropic-beta": "b1", "accept-encoding": "gzip, br"}
OPENAI_JSON = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-5.1",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 10, "completion_tokens": 3, "total_tokens": 13}}


def _exchange(doc: dict, headers: dict | None = None) -> tuple[Exchange, object]:
    ex = Exchange(Gateway(CFG))
    ex.on_request_headers(headers or MESSAGES, end_of_stream=False)
    return ex, ex.on_request_body(orjson.dumps(doc))


def test_rule_with_fallbacks_names_every_attempts_cluster_and_keeps_the_client_body() -> None:
    doc = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    _, reply = _exchange(doc)
    h = reply.set_headers
    assert h[CLUSTER_HEADER] == "provider_anthropic"
    assert h[FALLBACK_HEADER.format(1)] == "provider_gpt"
    assert h[ATTEMPTS_HEADER] == "2"
    chain = decode_chain(h[CHAIN_HEADER])
    assert chain.providers == ("anthropic", "gpt") and chain.models == {"gpt": "gpt-5.1"}
    assert chain.stash["anthropic-beta"] == "b1" and chain.query == "?beta=true"
    assert reply.body is None  # untouched: each attempt translates for its own provider


def test_an_attempt_on_the_fallback_translates_and_restores_what_it_needs() -> None:
    chain = Chain(client="anthropic", path="/v1/messages", query="?beta=true", providers=("anthropic", "gpt"),
                  models={"gpt": "gpt-5.1"}, stash={"anthropic-beta": "b1"})
    attempt = AttemptExchange(Gateway(CFG), "gpt")
    attempt.on_request_headers({CHAIN_HEADER: encode_chain(chain), "x-envoy-attempt-count": "2",
                                "x-api-key": "sk-ant-user", "anthropic-beta": "b1", "content-length": "90"}, False)
    reply = attempt.on_request_body(orjson.dumps({"model": "claude-x", "max_tokens": 5,
                                                  "messages": [{"role": "user", "content": "hi"}]}))
    assert reply.set_headers[":path"] == "/v1/chat/completions"  # no ?beta=true for OpenAI
    assert orjson.loads(reply.body)["model"] == "gpt-5.1"
    assert reply.set_headers["content-length"] == str(len(reply.body))
    assert {"x-api-key", "authorization", "anthropic-beta"} <= set(reply.remove_headers)
    back = attempt.on_response_headers({":status": "200", "content-type": "application/json"})
    assert back.response_body_mode == "BUFFERED"
    out = attempt.on_response_body(orjson.dumps(OPENAI_JSON), True)
    assert orjson.loads(out.body)["content"][0]["text"] == "hi"


def test_a_failed_attempt_with_another_provider_next_drops_retry_after() -> None:
    chain = Chain(client="anthropic", path="/v1/messages", query="", providers=("anthropic", "gpt"))
    attempt = AttemptExchange(Gateway(CFG), "anthropic")
    attempt.on_request_headers({CHAIN_HEADER: encode_chain(chain), "x-envoy-attempt-count": "1"}, False)
    attempt.on_request_body(b'{"model": "claude-x", "max_tokens": 5, "messages": []}')
    reply = attempt.on_response_headers({":status": "529", "retry-after": "30"})
    assert "retry-after" in reply.remove_headers


PICKED = config.parse({
    "providers": {
        "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com"},
        "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "gpt-5.1",
                "models": ["gpt-5.1", "gpt-5-mini"], "max_tokens_by_model": {"gpt-5-mini": 100, "*": 50}},
    },
    "routing": {"rules": [{"model": "gpt-*", "provider": "gpt"}]},
}, env={})


def test_the_model_a_claude_code_user_picked_is_the_model_sent_and_clamped_for() -> None:
    ex = Exchange(Gateway(PICKED))
    ex.on_request_headers(MESSAGES, end_of_stream=False)
    doc = {"model": "gpt-5-mini", "max_tokens": 9000, "messages": [{"role": "user", "content": "hi"}]}
    sent = orjson.loads(ex.on_request_body(orjson.dumps(doc)).body)
    assert sent["model"] == "gpt-5-mini" and sent["max_tokens"] == 100


def test_a_fallback_attempt_sends_the_requests_model_when_the_chain_overrides_none() -> None:
    chain = Chain(client="anthropic", path="/v1/messages", query="", providers=("anthropic", "gpt"))
    attempt = AttemptExchange(Gateway(PICKED), "gpt")
    attempt.on_request_headers({CHAIN_HEADER: encode_chain(chain), "x-envoy-attempt-count": "2"}, False)
    reply = attempt.on_request_body(orjson.dumps({"model": "gpt-5-mini", "max_tokens": 9000,
                                                  "messages": [{"role": "user", "content": "hi"}]}))
    sent = orjson.loads(reply.body)
    assert sent["model"] == "gpt-5-mini" and sent["max_tokens"] == 100


def test_passthrough_providers_cannot_follow_a_keyed_one() -> None:
    assert usable_chain(CFG, ("gpt", "anthropic", "local")) == ("gpt",)
    assert usable_chain(CFG, ("anthropic", "local", "gpt")) == ("anthropic", "local", "gpt")


def test_a_gzip_compressed_translated_response_is_decoded_and_sent_plain() -> None:
    headers = {**MESSAGES, ":path": "/v1/messages"}
    ex, reply = _exchange({"model": "claude-x", "max_tokens": 5,
                           "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}, headers)
    assert reply.set_headers["accept-encoding"] == "identity"
    mode = ex.on_response_headers({":status": "200", "content-type": "application/json", "content-encoding": "gzip"})
    assert "content-encoding" in mode.remove_headers and "content-length" in mode.remove_headers
    out = ex.on_response_body(gzip.compress(orjson.dumps(OPENAI_JSON)), True)
    assert orjson.loads(out.body)["content"][0]["text"] == "hi"
    assert out.set_headers["content-length"] == str(len(out.body))


def test_translated_responses_feed_the_latency_and_throughput_used_by_sort() -> None:
    gw = Gateway(CFG)
    ex = Exchange(gw)
    ex.on_request_headers({**MESSAGES, ":path": "/v1/messages"}, False)
    ex.on_request_body(orjson.dumps({"model": "m", "max_tokens": 5,
                                     "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}))
    ex.on_response_headers({":status": "200", "content-type": "application/json"})
    ex.on_response_body(orjson.dumps(OPENAI_JSON), True)
    assert gw.observed.ttfb("gpt") is not None and gw.observed.throughput("gpt") is not None


def test_untranslated_responses_skip_python_except_a_sample_for_latency() -> None:
    gw = Gateway(CFG)
    skipped = 0
    for _ in range(gw.SAMPLE_EVERY):
        ex = Exchange(gw)
        ex.on_request_headers({**MESSAGES, ":path": "/v1/messages"}, False)
        reply = ex.on_request_body(b'{"model": "other", "max_tokens": 5, "messages": []}')
        skipped += reply.response_header_mode == "SKIP"
    assert skipped == gw.SAMPLE_EVERY - 1


def test_internal_headers_a_client_sends_are_removed() -> None:
    forged = {**MESSAGES, ":path": "/v1/messages", CHAIN_HEADER: '{"c":"anthropic","p":"/v1/secret","n":["gpt"]}',
              ATTEMPTS_HEADER: "3", FALLBACK_HEADER.format(1): "provider_gpt"}
    _, reply = _exchange({"model": "other", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]},
                         forged)
    assert {CHAIN_HEADER, ATTEMPTS_HEADER, FALLBACK_HEADER.format(1)} <= set(reply.remove_headers)
    assert reply.set_headers[CLUSTER_HEADER] == "provider_anthropic"


def _credentials_sent(provider: dict, client_headers: dict, path: str = "/v1/messages") -> tuple[dict, list]:
    cfg = config.parse({"providers": {"p": provider}}, env={})
    ex = Exchange(Gateway(cfg))
    ex.on_request_headers({":method": "POST", ":path": path, **client_headers}, False)
    body = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    reply = ex.on_request_body(orjson.dumps(body))
    return reply.set_headers, reply.remove_headers


def test_a_client_key_never_reaches_a_provider_of_the_other_dialect_by_default() -> None:
    set_, removed = _credentials_sent({"type": "openai", "base_url": "https://api.deepseek.com"},
                                      {"x-api-key": "sk-ant-secret"})
    assert "x-api-key" in removed and "authorization" not in set_


def test_explicit_passthrough_moves_the_client_key_into_the_providers_header() -> None:
    set_, removed = _credentials_sent({"type": "openai", "base_url": "http://127.0.0.1:1/v1", "auth": "passthrough"},
                                      {"x-api-key": "sk-own"})
    assert set_["authorization"] == "Bearer sk-own" and "x-api-key" in removed


def test_auth_none_sends_no_credentials_at_all() -> None:
    set_, removed = _credentials_sent({"type": "anthropic", "base_url": "http://127.0.0.1:1", "auth": "none"},
                                      {"x-api-key": "sk-own"})
    assert "x-api-key" in removed


def test_same_dialect_provider_without_auth_setting_gets_the_clients_own_key() -> None:
    set_, removed = _credentials_sent({"type": "anthropic", "base_url": "http://127.0.0.1:1"}, {"x-api-key": "k"})
    assert "x-api-key" not in removed and "x-api-key" not in set_


def _translated_exchange() -> Exchange:
    ex = Exchange(Gateway(CFG))
    ex.on_request_headers({**MESSAGES, ":path": "/v1/messages"}, False)
    ex.on_request_body(orjson.dumps({"model": "m", "max_tokens": 5, "stream": True,
                                     "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}))
    return ex


def test_a_response_the_translator_cannot_read_becomes_a_502_in_the_client_dialect() -> None:
    ex = _translated_exchange()
    ex.on_response_headers({":status": "200", "content-type": "application/json"})
    out = ex.on_response_body(b'{"choices": ["x"], "usage": 7}', True)
    assert out.set_headers[":status"] == "502"
    assert orjson.loads(out.body)["type"] == "error"


def test_a_broken_stream_ends_with_the_client_dialects_error_event() -> None:
    ex = _translated_exchange()
    ex.on_response_headers({":status": "200", "content-type": "text/event-stream", "content-encoding": "gzip"})
    out = ex.on_response_body(b"definitely not gzip", False)  # the decoder fails
    assert out.body.startswith(b"event: error")
    assert ex.on_response_body(b"more", True).body == b""


# -- provider quirks as config -----------------------------------------------------------------------------

STRICT = config.parse({"providers": {
    "gemini": {"type": "openai", "base_url": "https://generativelanguage.googleapis.com/v1beta/openai",
               "api_key_env": "K", "forward_headers": ["x-request-id", "user-agent"],
               "tool_schema": {"drop_keys": ["$schema", "propertyNames", "exclusiveMinimum", "const"]}}}}, env={})
CLAUDE_TOOL = {"name": "Edit", "input_schema": {
    "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
    "properties": {"const": {"type": "string", "const": "x"},
                   "n": {"type": "integer", "exclusiveMinimum": 0},
                   "tags": {"type": "object", "propertyNames": {"pattern": "^[a-z]+$"},
                            "additionalProperties": {"anyOf": [{"const": 1}, {"type": "string"}]}}},
    "required": ["const"]}}


def test_a_strict_provider_gets_tool_schemas_without_the_keywords_it_rejects() -> None:
    ex = Exchange(Gateway(STRICT))
    ex.on_request_headers(MESSAGES, end_of_stream=False)
    reply = ex.on_request_body(orjson.dumps({"model": "m", "max_tokens": 5, "tools": [CLAUDE_TOOL],
                                             "messages": [{"role": "user", "content": "hi"}]}))
    assert reply.set_headers[":path"] == "/v1beta/openai/chat/completions"
    schema = orjson.loads(reply.body)["tools"][0]["function"]["parameters"]
    assert schema == {"type": "object", "required": ["const"], "properties": {  # a property named const stays
        "const": {"type": "string"}, "n": {"type": "integer"},
        "tags": {"type": "object", "additionalProperties": {"anyOf": [{}, {"type": "string"}]}}}}


def test_a_strict_provider_gets_clean_schemas_from_a_client_of_its_own_dialect_too() -> None:
    ex = Exchange(Gateway(STRICT))
    ex.on_request_headers({":method": "POST", ":path": "/v1/chat/completions", "authorization": "Bearer k"}, False)
    tool = {"type": "function", "function": {"name": "f", "parameters": {"$schema": "x", "type": "object"}}}
    reply = ex.on_request_body(orjson.dumps({"model": "m", "tools": [tool], "messages": []}))
    assert orjson.loads(reply.body)["tools"][0]["function"]["parameters"] == {"type": "object"}
    assert reply.set_headers["content-length"] == str(len(reply.body))


def test_forward_headers_lets_only_the_listed_client_headers_through() -> None:
    ex = Exchange(Gateway(STRICT))
    headers = {":method": "POST", ":path": "/v1/chat/completions", "authorization": "Bearer k",
               "content-type": "application/json", "x-request-id": "r1", "user-agent": "codex",
               "x-codex-turn-metadata": "{…}", "openai-organization": "org-1"}
    ex.on_request_headers(headers, end_of_stream=False)
    reply = ex.on_request_body(orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}]}))
    assert {"x-codex-turn-metadata", "openai-organization"} <= set(reply.remove_headers)
    assert not {"x-request-id", "user-agent", "content-type", ":path"} & set(reply.remove_headers)


def test_a_translated_stream_is_full_duplex_so_the_gateway_can_end_it_when_the_provider_stalls() -> None:
    ex = _translated_exchange()
    headers = ex.on_response_headers({":status": "200", "content-type": "text/event-stream"})
    assert headers.response_body_mode == "FULL_DUPLEX_STREAMED"
    chunk = b'data: {"id":"c","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"}}]}\n\n'
    out = ex.on_response_body(chunk, False)
    assert out.end_of_stream is False and b"message_start" in out.body
    assert ex.response.streaming
    ended = ex.response.stalled(30)
    assert ended.end_of_stream is True
    assert ended.body.startswith(b"event: error") and b"overloaded_error" in ended.body
    assert not ex.response.streaming


def test_a_compressed_body_with_fallbacks_reaches_every_attempt_decoded() -> None:
    doc = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    ex = Exchange(Gateway(CFG))
    ex.on_request_headers({**MESSAGES, "content-encoding": "gzip"}, end_of_stream=False)
    reply = ex.on_request_body(gzip.compress(orjson.dumps(doc)))
    assert decode_chain(reply.set_headers[CHAIN_HEADER]).providers == ("anthropic", "gpt")
    assert orjson.loads(reply.body) == doc and "content-encoding" in reply.remove_headers


def _attempt_on_gpt(gw: Gateway) -> AttemptExchange:
    chain = Chain(client="anthropic", path="/v1/messages", query="", providers=("anthropic", "gpt"),
                  models={"gpt": "gpt-5.1"})
    attempt = AttemptExchange(gw, "gpt")
    attempt.on_request_headers({CHAIN_HEADER: encode_chain(chain), "x-envoy-attempt-count": "2",
                                "x-claude-code-session-id": "s1"}, False)
    attempt.on_request_body(orjson.dumps({"model": "claude-x", "max_tokens": 5,
                                          "messages": [{"role": "user", "content": "hi"}]}))
    return attempt


def _sample(counter: object, *labels: str) -> float:
    return counter.labels(*labels)._value.get()  # type: ignore[attr-defined]


def test_a_fallback_attempts_response_feeds_latency_and_token_metrics() -> None:
    """Budgets and session records of a chain are settled by the request phase's exchange (which
    reserved them); the attempt's own answer feeds the metrics and `sort: latency/throughput`."""
    gw = Gateway(CFG)
    before = _sample(metrics.TOKENS, "gpt", "output")
    attempt = _attempt_on_gpt(gw)
    attempt.on_response_headers({":status": "200", "content-type": "application/json"})
    attempt.on_response_body(orjson.dumps(OPENAI_JSON), True)
    assert gw.observed.ttfb("gpt") is not None and gw.observed.throughput("gpt") is not None
    assert _sample(metrics.TOKENS, "gpt", "output") == before + 3


def test_every_attempts_status_is_counted_failures_included() -> None:
    gw = Gateway(CFG)
    before = _sample(metrics.RESPONSES, "messages", "gpt", "529")
    attempt = _attempt_on_gpt(gw)
    attempt.on_response_headers({":status": "529", "content-type": "application/json"})
    assert _sample(metrics.RESPONSES, "messages", "gpt", "529") == before + 1
