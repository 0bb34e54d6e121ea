"""Golden contract fixtures: every translation row of the spec has a directory in fixtures/translate.

Each directory holds `case.json` (client, provider, kind, optional target/stream options, a `doc`
sentence saying which behaviour it pins) plus the input and the expected output a reviewer can open:

- request:  request.<client>.json  → request.<provider>.json  (or `expect_error.param`), prompt caching
            applied as the gateway does (`caching.prepare`, with the client's `headers` from case.json)
- response: response.<provider>.json → response.<client>.json
- stream:   stream.<provider>.sse  → stream.<client>.sse
- error:    error.<provider>.json|txt (+ `status`) → error.<client>.json (`{"status": …, "body": …}`)
- client == provider (passthrough): the input must come out byte for byte.

Streams are fed one byte at a time *and* in one piece; both must give the expected transcript.
`LUNAROUTE_REGEN_GOLDEN=1 pytest tests/test_translate_golden.py` rewrites the expected files (review the
diff before committing).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import orjson
import pytest

from extproc.dialects import (
    DIALECTS,
    Target,
    TranslationError,
    anthropic,
    caching,
    count_tokens_estimate,
    openai_chat,
    translator_for,
)
from extproc.dialects.base import ClientTool
from extproc.sse import SSEParser

ROOT = Path(__file__).parent / "fixtures" / "translate"
CASES = sorted(p.name for p in ROOT.iterdir() if (p / "case.json").exists())
REGEN = os.environ.get("LUNAROUTE_REGEN_GOLDEN") == "1"
DEFAULT_TARGET = {"name": "provider"}
_CREATED = re.compile(rb'"created(_at)?":\d+')


def _dump(path: Path, obj: object) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def _events(raw: bytes) -> list[tuple[str | None, object]]:
    parser = SSEParser()
    events = parser.feed(raw) + parser.close()
    out = []
    for e in events:
        try:
            data = orjson.loads(e.data)
        except orjson.JSONDecodeError:
            data = e.data
        out.append((e.event, _normalize(data) if isinstance(data, dict) else data))
    return out


def _normalize(obj: dict) -> dict:
    """Timestamps (`created`, a Responses `created_at`, also inside an event's `response`) are set to 0."""
    obj = {**obj, **{k: 0 for k in ("created", "created_at") if k in obj}}
    if isinstance(obj.get("response"), dict):
        obj["response"] = _normalize(obj["response"])
    return obj


def _options(raw: dict) -> dict:
    """Options from case.json; `client_tools` maps a provider-side function name to the client's tool
    (`{"name": …, "namespace": …, "custom": …}`) there, to a `ClientTool` for the translator."""
    tools = raw.get("client_tools")
    return {**raw, **({"client_tools": {k: ClientTool(**v) for k, v in tools.items()}} if tools else {})}


def _check(expected_path: Path, actual: object) -> None:
    if REGEN:
        _dump(expected_path, actual)
    assert json.loads(expected_path.read_text()) == actual


@pytest.mark.parametrize("case", CASES)
def test_translation_matches_golden_fixture(case: str) -> None:
    d = ROOT / case
    meta = json.loads((d / "case.json").read_text())
    client, provider, kind = meta["client"], meta["provider"], meta["kind"]
    translator = translator_for(client, provider)
    target = Target(**{"dialect": provider, **DEFAULT_TARGET, **meta.get("target", {})})

    if client == provider:
        _check_identity(d, translator, kind, client, meta)
    elif kind == "request":
        body = json.loads((d / f"request.{client}.json").read_text())
        if "expect_error" in meta:
            with pytest.raises(TranslationError) as info:
                translator.request_body(body, target)
            assert info.value.param == meta["expect_error"]["param"]
            return
        out = translator.request_body(body, target)
        caching.prepare(out, body, client, target, meta.get("headers", {}))
        _check(d / f"request.{provider}.json", out)
    elif kind == "response":
        body = json.loads((d / f"response.{provider}.json").read_text())
        out = translator.response_body(body, target, **_options(meta.get("response", {}))).body
        _check(d / f"response.{client}.json", _normalize(out))
    elif kind == "stream":
        raw = (d / f"stream.{provider}.sse").read_bytes()
        options = _options(meta.get("stream", {}))
        whole = translator.stream(target, **options)
        out = whole.feed(raw) + whole.close()
        bytewise = translator.stream(target, **options)
        split = b"".join(bytewise.feed(raw[i : i + 1]) for i in range(len(raw))) + bytewise.close()
        assert _events(split) == _events(out)
        expected = d / f"stream.{client}.sse"
        if REGEN:  # timestamps are normalized when comparing; keep the file stable for review
            expected.write_bytes(_CREATED.sub(lambda m: m.group(0).split(b":")[0] + b":0", out))
        assert _events(out) == _events(expected.read_bytes())
    elif kind == "error":
        source = d / f"error.{provider}.json"
        raw = source.read_bytes() if source.exists() else (d / f"error.{provider}.txt").read_bytes()
        status, body = translator.error(meta["status"], raw)
        result = {"status": status, "body": orjson.loads(body)}
        _check(d / f"error.{client}.json", result)
    else:
        raise AssertionError(f"unknown fixture kind {kind!r}")


def _check_identity(d: Path, translator, kind: str, dialect: str, meta: dict) -> None:
    """Same dialect on both sides: whatever goes in comes out byte for byte."""
    if kind == "stream":
        raw = (d / f"stream.{dialect}.sse").read_bytes()
        stream = translator.stream()
        out = b"".join(stream.feed(raw[i : i + 7]) for i in range(0, len(raw), 7)) + stream.close()
        assert out == raw
    elif kind == "error":
        raw = (d / f"error.{dialect}.json").read_bytes()
        assert translator.error(meta["status"], raw) == (meta["status"], raw)
    else:
        raise AssertionError(f"unknown passthrough fixture kind {kind!r}")


# ------------------------------------------------------------------ the gateway's own bodies and small maps


def test_registry_has_a_translator_for_every_dialect_pair() -> None:
    for client in DIALECTS:
        for provider in DIALECTS:
            translator = translator_for(client, provider)
            assert (translator.client, translator.provider) == (client, provider)


def test_paths_are_rewritten_only_for_the_chat_endpoints() -> None:
    assert translator_for("anthropic", "openai").request_path("/v1/messages") == "/v1/chat/completions"
    assert translator_for("openai", "anthropic").request_path("/v1/chat/completions") == "/v1/messages"
    assert translator_for("anthropic", "openai").request_path("/v1/models") == "/v1/models"
    assert translator_for("openai", "openai").request_path("/v1/embeddings") == "/v1/embeddings"


def test_passthrough_request_and_response_bodies_are_the_same_objects() -> None:
    body = {"model": "m", "messages": [], "cache_control": {"type": "ephemeral"}}
    translator = translator_for("anthropic", "anthropic")
    assert translator.request_body(body, Target(name="a", dialect="anthropic")) is body
    assert translator.response_body(body).body is body


@pytest.mark.parametrize(
    ("choice", "expected"),
    [({"type": "auto"}, "auto"), ({"type": "none"}, "none"), ({"type": "any"}, "required")],
)
def test_anthropic_tool_choice_maps_to_openai(choice: dict, expected: str) -> None:
    body = {"model": "m", "max_tokens": 5, "messages": [], "tools": [{"name": "t", "input_schema": {}}],
            "tool_choice": choice}
    out = translator_for("anthropic", "openai").request_body(body, Target(name="p", dialect="openai"))
    assert out["tool_choice"] == expected
    assert "parallel_tool_calls" not in out
    assert "strict" not in out["tools"][0]["function"]


@pytest.mark.parametrize(("budget", "effort"), [(1024, "low"), (8000, "medium"), (31999, "high")])
def test_thinking_budget_picks_reasoning_effort(budget: int, effort: str) -> None:
    body = {"model": "m", "max_tokens": 64000, "messages": [], "thinking": {"type": "enabled", "budget_tokens": budget}}
    out = translator_for("anthropic", "openai").request_body(body, Target(name="p", dialect="openai"))
    assert out["reasoning_effort"] == effort
    off = Target(name="p", dialect="openai", reasoning_effort=False)
    assert "reasoning_effort" not in translator_for("anthropic", "openai").request_body(body, off)


def test_reasoning_can_be_dropped_from_responses() -> None:
    body = {"id": "x", "model": "m", "choices": [{"message": {"reasoning_content": "hmm", "content": "hi"},
                                                  "finish_reason": "stop"}]}
    target = Target(name="p", dialect="openai", reasoning="drop")
    out = translator_for("anthropic", "openai").response_body(body, target).body
    assert out["content"] == [{"type": "text", "text": "hi"}]


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"), ("stop_sequence", "stop"),
     ("refusal", "content_filter"), ("pause_turn", "stop")],
)
def test_anthropic_stop_reasons_map_to_openai_finish_reasons(stop: str, finish: str) -> None:
    body = {"id": "msg_1", "model": "m", "content": [], "stop_reason": stop, "usage": {}}
    out = translator_for("openai", "anthropic").response_body(body).body
    assert out["choices"][0]["finish_reason"] == finish


@pytest.mark.parametrize(
    ("status", "kind"),
    [(400, "invalid_request_error"), (401, "authentication_error"), (403, "permission_error"),
     (404, "not_found_error"), (413, "request_too_large"), (429, "rate_limit_error"), (500, "api_error"),
     (503, "overloaded_error"), (529, "overloaded_error"), (418, "invalid_request_error"), (599, "api_error")],
)
def test_gateway_errors_in_anthropic_dialect_use_the_right_type(status: int, kind: str) -> None:
    body = orjson.loads(anthropic.error_body(status, "boom", "model"))
    assert body == {"type": "error", "error": {"type": kind, "message": "model: boom"}}


def test_gateway_errors_in_openai_dialect_name_the_param() -> None:
    body = orjson.loads(openai_chat.error_body(429, "slow down", "model"))
    assert body == {"error": {"message": "slow down", "type": "rate_limit_error", "param": "model",
                              "code": "rate_limit_exceeded"}}


def test_stream_errors_are_shaped_for_each_sdk() -> None:
    assert anthropic.stream_error_event(529, "Overloaded").startswith(b"event: error\ndata: ")
    chunk = openai_chat.stream_error_chunk(503, "Overloaded")
    assert chunk.startswith(b"data: {\"error\"") and b"event:" not in chunk
    event = SSEParser().feed(DIALECTS["openai-responses"].stream_error(502, "translation failed"))[0]
    data = orjson.loads(event.data)
    assert (event.event, data["type"], data["message"]) == ("error", "error", "translation failed")
    assert data["error"]["message"] == "translation failed"  # what the OpenAI SDK raises as APIError


def test_models_lists_in_both_dialects() -> None:
    a = orjson.loads(anthropic.models_body(["claude-x", "anthropic/y"]))
    assert a["data"][0] == {"type": "model", "id": "claude-x", "display_name": "claude-x",
                            "created_at": a["data"][0]["created_at"]}
    assert (a["has_more"], a["first_id"], a["last_id"]) == (False, "claude-x", "anthropic/y")
    o = orjson.loads(openai_chat.models_body(["gpt-5"]))
    assert o["object"] == "list" and o["data"][0]["id"] == "gpt-5" and o["data"][0]["object"] == "model"


def test_token_estimate_counts_every_block_kind_and_is_never_zero() -> None:
    assert count_tokens_estimate({"messages": [{"role": "user", "content": "x"}]}) >= 1
    small = {"messages": [{"role": "user", "content": "hello"}]}
    big = {
        "system": [{"type": "text", "text": "s" * 400}],
        "messages": [
            {"role": "user", "content": "hello"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "Bash",
                                               "input": {"command": "c" * 400}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r" * 400}]},
        ],
        "tools": [{"name": "Bash", "input_schema": {"type": "object", "description": "d" * 400}}],
    }
    assert count_tokens_estimate(big) >= count_tokens_estimate(small) + 400
    assert orjson.loads(anthropic.count_tokens_body(big)) == {"input_tokens": count_tokens_estimate(big)}
