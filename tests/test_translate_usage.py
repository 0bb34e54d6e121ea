"""Usage as translators report it (`Translated.usage`, a stream's `usage`) and as a dialect's own bodies and
events carry it (`DialectSpec.usage_in`): one normalised shape, read where each dialect writes it, never
guessed from the keys of a body; and one cut-off wording for a stream that ends early, whatever the pair.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from extproc.dialects import DIALECTS, Target, translator_for
from extproc.dialects.base import ClientTool
from extproc.dialects.stream import CUT_OFF, NO_DATA
from extproc.sse import SSEParser, encode_json

FIXTURES = Path(__file__).parent / "fixtures" / "translate"


def _cases(kind: str) -> list[str]:
    out = []
    for case in sorted(p.name for p in FIXTURES.iterdir() if (p / "case.json").exists()):
        meta = json.loads((FIXTURES / case / "case.json").read_text())
        if meta["kind"] == kind and meta["client"] != meta["provider"]:
            out.append(case)
    return out


def _events(raw: bytes) -> list[dict]:
    parser = SSEParser()
    out = []
    for event in parser.feed(raw) + parser.close():
        try:
            doc = orjson.loads(event.data)
        except orjson.JSONDecodeError:
            continue
        if isinstance(doc, dict):
            out.append(doc)
    return out


def _options(raw: dict) -> dict:
    tools = raw.get("client_tools")
    return {**raw, **({"client_tools": {k: ClientTool(**v) for k, v in tools.items()}} if tools else {})}


# ------------------------------------------------------------------------------- each dialect's own usage


@pytest.mark.parametrize(("dialect", "usage", "expected"), [
    ("openai", {"prompt_tokens": 100, "completion_tokens": 20,
                "prompt_tokens_details": {"cached_tokens": 30, "cache_write_tokens": 10},
                "completion_tokens_details": {"reasoning_tokens": 5}},
     {"input": 100, "output": 20, "cache_read": 30, "cache_write": 10, "reasoning": 5}),
    ("openai", {"prompt_tokens": 7, "completion_tokens": 0}, {"input": 7, "output": 0}),
    ("anthropic", {"input_tokens": 60, "cache_read_input_tokens": 30, "cache_creation_input_tokens": 10,
                   "output_tokens": 20, "output_tokens_details": {"thinking_tokens": 5}},
     {"input": 90, "output": 20, "cache_read": 30, "cache_write": 10, "reasoning": 5}),
    ("openai-responses", {"input_tokens": 100, "output_tokens": 20,
                          "input_tokens_details": {"cached_tokens": 30},
                          "output_tokens_details": {"reasoning_tokens": 5}},
     {"input": 100, "output": 20, "cache_read": 30, "reasoning": 5}),
    ("anthropic", {"input_tokens": "12", "output_tokens": None}, {"input": 0, "output": 0}),
    ("openai", None, {}),
])
def test_each_dialect_reads_its_own_usage_object(dialect: str, usage: object, expected: dict) -> None:
    assert DIALECTS[dialect].usage(usage) == expected


def test_usage_is_read_where_each_dialect_puts_it_in_a_stream() -> None:
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 10, "output_tokens": 1}}}
    assert DIALECTS["anthropic"].usage_in(start) == {"input": 10, "output": 1}
    delta = {"type": "message_delta", "usage": {"output_tokens": 15}}
    assert DIALECTS["anthropic"].usage_in(delta) == {"input": 0, "output": 15}
    done = {"type": "response.completed", "response": {"usage": {"input_tokens": 4, "output_tokens": 2}}}
    assert DIALECTS["openai-responses"].usage_in(done) == {"input": 4, "output": 2}
    chunk = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}}
    assert DIALECTS["openai"].usage_in(chunk) == {"input": 4, "output": 2}
    for dialect in DIALECTS:
        assert DIALECTS[dialect].usage_in({"type": "ping"}) == {}


def test_a_passthrough_stream_goes_byte_for_byte_and_reads_the_usage_on_the_way() -> None:
    raw = (encode_json({"type": "message_start", "message": {"usage": {"input_tokens": 10, "output_tokens": 1}}},
                       "message_start")
           + encode_json({"type": "message_delta", "usage": {"output_tokens": 15}}, "message_delta")
           + b"event: ping\ndata: not json\n\n")
    stream = translator_for("anthropic", "anthropic").stream()
    out = b"".join(stream.feed(raw[i:i + 5]) for i in range(0, len(raw), 5)) + stream.close()
    assert out == raw and stream.usage == {"input": 10, "output": 15}
    body = {"type": "message", "usage": {"input_tokens": 3, "output_tokens": 4}}
    translated = translator_for("anthropic", "anthropic").response_body(body)
    assert translated.body is body and translated.usage == {"input": 3, "output": 4}


# ---------------------------------------------------------------------------- translators report usage


@pytest.mark.parametrize("case", _cases("response"))
def test_a_translated_response_reports_the_usage_its_client_receives(case: str) -> None:
    meta = json.loads((FIXTURES / case / "case.json").read_text())
    client, provider = meta["client"], meta["provider"]
    body = json.loads((FIXTURES / case / f"response.{provider}.json").read_text())
    target = Target(**{"name": "provider", "dialect": provider, **meta.get("target", {})})
    out, usage = translator_for(client, provider).response_body(body, target, **_options(meta.get("response", {})))
    assert usage == DIALECTS[client].usage(out["usage"])
    assert set(usage) >= {"input", "output"}


def _failed(client: str, events: list[dict]) -> bool:
    kinds = {e.get("type") for e in events}
    return "error" in kinds or "response.failed" in kinds or any("error" in e for e in events)


@pytest.mark.parametrize("case", _cases("stream"))
def test_a_translated_stream_reports_the_usage_of_its_last_event(case: str) -> None:
    """The usage a stream translator reports once done is the usage its client's stream ends with."""
    meta = json.loads((FIXTURES / case / "case.json").read_text())
    client, provider = meta["client"], meta["provider"]
    raw = (FIXTURES / case / f"stream.{provider}.sse").read_bytes()
    target = Target(**{"name": "provider", "dialect": provider, **meta.get("target", {})})
    stream = translator_for(client, provider).stream(target, **{**_options(meta.get("stream", {})),
                                                                "include_usage": True})
    events = _events(stream.feed(raw) + stream.close())
    assert stream.done
    if _failed(client, events):
        return  # an error event carries no usage to compare with
    last = [u for e in events if (u := DIALECTS[client].usage_in(e))][-1]
    assert stream.usage == last


def test_a_stream_reports_usage_as_soon_as_the_provider_does_and_is_done_only_at_its_end() -> None:
    stream = translator_for("openai", "anthropic").stream()
    start = {"type": "message_start", "message": {"id": "m", "model": "c", "usage": {
        "input_tokens": 12, "cache_read_input_tokens": 3, "output_tokens": 1}}}
    stream.feed(encode_json(start, "message_start"))
    assert stream.usage == {"input": 15, "output": 1, "cache_read": 3} and not stream.done
    stream.feed(encode_json({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                             "usage": {"output_tokens": 9}}, "message_delta"))
    assert stream.usage["output"] == 9 and not stream.done
    stream.feed(encode_json({"type": "message_stop"}, "message_stop"))
    assert stream.done and stream.usage == {"input": 15, "output": 9, "cache_read": 3}


# ------------------------------------------------------------------------------ one cut-off, every pair

_BEGUN = {
    "openai": encode_json({"id": "c", "model": "m", "choices": [{"index": 0, "delta": {"content": "hi"}}]}),
    "anthropic": encode_json({"type": "message_start", "message": {"id": "m", "model": "c", "usage": {}}},
                             "message_start"),
    "openai-responses": encode_json({"type": "response.created", "response": {"id": "resp_1", "model": "m"}},
                                    "response.created"),
}


def _error_text(client: str, raw: bytes) -> str:
    last = _events(raw)[-1]
    if client == "openai-responses":
        return last["response"]["error"]["message"] if last["type"] == "response.failed" else last["message"]
    return last["error"]["message"]


@pytest.mark.parametrize("pair", [(c, p) for c in DIALECTS for p in DIALECTS if c != p])
def test_a_stream_cut_before_its_end_ends_with_one_wording_in_every_client_dialect(pair: tuple[str, str]) -> None:
    client, provider = pair
    stream = translator_for(client, provider).stream(None, input_tokens_estimate=5)
    out = stream.feed(_BEGUN[provider]) + stream.close()
    assert _error_text(client, out) == CUT_OFF and stream.done
    empty = translator_for(client, provider).stream(None, input_tokens_estimate=5)
    assert _error_text(client, empty.feed(b"") + empty.close()) in (NO_DATA, CUT_OFF)
