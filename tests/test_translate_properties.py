"""Property tests: chunking never changes a translated stream; random requests never crash a translator."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.dialects import DIALECTS, Target, TranslationError, translator_for
from extproc.dialects.base import ClientTool
from extproc.sse import SSEParser, encode_json

FIXTURES = Path(__file__).parent / "fixtures" / "translate"
R = "openai-responses"
# Every fixture stream in dialect X is a provider stream for a client of each other dialect.
PROVIDER_STREAMS = sorted((path, client) for path in FIXTURES.glob("*/stream.*.sse") for client in DIALECTS
                          if client != path.name.split(".")[1])
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TARGET_OPENAI = Target(name="p", dialect="openai")
TARGET_ANTHROPIC = Target(name="p", dialect="anthropic")


def _events(raw: bytes) -> list[tuple[str | None, object]]:
    parser = SSEParser()
    return [(e.event, orjson.loads(e.data) if e.data.startswith("{") else e.data)
            for e in parser.feed(raw) + parser.close()]


def _translate(raw: bytes, cuts: list[int], client: str, provider: str, **options: object) -> bytes:
    stream = translator_for(client, provider).stream(None, **options)
    bounds = [0, *sorted(set(cuts)), len(raw)]
    out = b"".join(stream.feed(raw[a:b]) for a, b in zip(bounds, bounds[1:], strict=False))
    return out + stream.close()


# ------------------------------------------------------------------------------------- chunk invariance


@SETTINGS
@given(data=st.data())
def test_any_split_of_a_fixture_stream_gives_the_same_client_events(data: st.DataObject) -> None:
    path, client = data.draw(st.sampled_from(PROVIDER_STREAMS))
    raw = path.read_bytes()
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))
    provider = path.name.split(".")[1]
    whole = _events(_translate(raw, [], client, provider, include_usage=True))
    split = _events(_translate(raw, cuts, client, provider, include_usage=True))
    assert _timeless(split) == _timeless(whole)


def _timeless(events: list) -> list:
    """Events with their timestamps (`created`, a Responses `response.created_at`) set to 0."""
    for _, payload in events:
        if isinstance(payload, dict):
            for holder in (payload, payload.get("response")):
                if isinstance(holder, dict):
                    holder.update({k: 0 for k in ("created", "created_at") if k in holder})
    return events


_text = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12)
_delta = st.one_of(
    st.builds(lambda t: {"content": t}, _text),
    st.builds(lambda t: {"reasoning_content": t}, _text),
    st.builds(lambda t: {"content": t, "tool_calls": []}, _text),
    st.builds(lambda i, t: {"tool_calls": [{"index": i, "function": {"arguments": t}}]}, st.integers(0, 2), _text),
)


_small_json = st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=6)


@st.composite
def openai_streams(draw: st.DrawFn) -> tuple[bytes, dict[int, str], bool]:
    """A provider stream: every tool call announced (id + name) before its argument fragments.

    A tool's arguments are mostly a JSON object cut into fragments, sometimes arbitrary text. Returns the
    raw stream, each tool's whole arguments, and whether the provider finished (finish_reason or [DONE]).
    """
    deltas = draw(st.lists(_delta, max_size=25))
    fragments: dict[int, int] = {}
    for delta in deltas:
        for call in delta.get("tool_calls") or ():
            fragments[call["index"]] = fragments.get(call["index"], 0) + 1
    pieces: dict[int, list[str]] = {}
    for i, n in fragments.items():
        if draw(st.booleans()):
            text = orjson.dumps(draw(st.dictionaries(st.text(max_size=4), _small_json, max_size=3))).decode()
            cuts = sorted(draw(st.lists(st.integers(0, len(text)), min_size=n - 1, max_size=n - 1)))
            pieces[i] = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    chunks: list[dict] = [{"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    announced: set[int] = set()
    args: dict[int, str] = {}
    for delta in deltas:
        for call in delta.get("tool_calls") or ():
            i = call["index"]
            if i in pieces:
                call["function"]["arguments"] = pieces[i].pop(0)
            if i not in announced:
                announced.add(i)
                call.update({"id": f"call_{i}", "type": "function"})
                call["function"]["name"] = f"tool{i}"
            args[i] = args.get(i, "") + call["function"]["arguments"]
        chunks.append({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": delta}]})
    finished = draw(st.booleans())
    if finished:
        chunks.append({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if draw(st.booleans()):
        chunks.append({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    raw = b"".join(encode_json(c) for c in chunks)
    if draw(st.booleans()):
        raw += b"data: [DONE]\n\n"
        finished = True
    return raw, args, finished


def _whole_object(text: str) -> bool:
    """Complete JSON object arguments, or none at all (blank means `{}`)."""
    if not text.strip():
        return True
    try:
        return isinstance(orjson.loads(text), dict)
    except orjson.JSONDecodeError:
        return False


@SETTINGS
@given(stream=openai_streams(), data=st.data())
def test_openai_stream_becomes_well_formed_anthropic_events_under_any_split(
    stream: tuple[bytes, dict[int, str], bool], data: st.DataObject
) -> None:
    raw, args, finished = stream
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=30))
    out = _translate(raw, cuts, "anthropic", "openai", input_tokens_estimate=10)
    assert _events(out) == _events(_translate(raw, [], "anthropic", "openai", input_tokens_estimate=10))
    events = [payload for _, payload in _events(out)]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and events[0]["message"]["usage"]["input_tokens"] > 0
    live = next(iter(args), None)  # the first tool call streams live, the others are buffered
    if not finished or (live is not None and not _whole_object(args[live])):
        # cut off, or the live tool's arguments turned out broken: an error, never a normal finish
        assert kinds[-1] == "error" and events[-1]["error"]["type"] == "api_error"
        assert "message_delta" not in kinds and "message_stop" not in kinds
        return
    assert kinds[-2:] == ["message_delta", "message_stop"]
    open_index = None
    tool_inputs: dict[str, str] = {}
    for e in events[1:-2]:
        if e["type"] == "content_block_start":
            assert open_index is None, "a block opened before the previous one closed"
            open_index = e["index"]
            if e["content_block"]["type"] == "tool_use":
                tool_inputs[e["content_block"]["name"]] = ""
                current_tool = e["content_block"]["name"]
            else:
                current_tool = None
        elif e["type"] == "content_block_delta":
            assert e["index"] == open_index
            if current_tool:
                tool_inputs[current_tool] += e["delta"]["partial_json"]
        elif e["type"] == "content_block_stop":
            assert e["index"] == open_index
            open_index = None
    assert open_index is None
    expected = {f"tool{i}": text if _whole_object(text) else orjson.dumps({"raw_arguments": text}).decode()
                for i, text in args.items()}
    assert tool_inputs == expected


# ------------------------------------------------------------------------------------- request robustness

_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 10**6) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
_anthropic_block = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=20)}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": st.text(max_size=5), "name": st.text(max_size=5),
                           "input": st.dictionaries(st.text(max_size=4), _json, max_size=3)}),
    st.fixed_dictionaries({"type": st.just("tool_result"), "tool_use_id": st.text(max_size=5),
                           "content": st.text(max_size=10) | st.just([{"type": "text", "text": "x"}]),
                           "is_error": st.booleans()}),
    st.fixed_dictionaries({"type": st.just("thinking"), "thinking": st.text(max_size=10),
                           "signature": st.text(max_size=5)}),
    st.fixed_dictionaries({"type": st.just("image"), "source": st.fixed_dictionaries(
        {"type": st.sampled_from(["base64", "url", "file"]), "media_type": st.just("image/png"),
         "data": st.text(max_size=5), "url": st.text(max_size=5)})}),
    st.fixed_dictionaries({"type": st.sampled_from(["document", "search_result", "server_tool_use"])}),
    _json,
)
_anthropic_request = st.fixed_dictionaries(
    {
        "model": st.text(max_size=10),
        "max_tokens": st.integers(1, 200_000),
        "messages": st.lists(st.fixed_dictionaries({
            "role": st.sampled_from(["user", "assistant", "system", "tool"]),
            "content": st.text(max_size=20) | st.lists(_anthropic_block, max_size=4),
        }), max_size=5),
    },
    optional={
        "system": st.text(max_size=20) | st.lists(st.fixed_dictionaries({"type": st.just("text"),
                                                                          "text": st.text(max_size=20)})),
        "tools": st.lists(st.fixed_dictionaries({"name": st.text(max_size=5)},
                                                optional={"type": st.text(max_size=5), "input_schema": _json})),
        "tool_choice": st.fixed_dictionaries({"type": st.sampled_from(["auto", "any", "tool", "none", "x"])},
                                             optional={"name": st.text(max_size=4),
                                                       "disable_parallel_tool_use": st.booleans()}),
        "thinking": st.fixed_dictionaries({"type": st.sampled_from(["enabled", "adaptive", "disabled"])},
                                          optional={"budget_tokens": st.integers(0, 64000)}),
        "metadata": st.fixed_dictionaries({"user_id": st.text(max_size=100)}),
        "stop_sequences": st.lists(st.text(max_size=4), max_size=3),
        "stream": st.booleans(),
        "temperature": st.floats(0, 1),
    },
)
_openai_part = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": st.text(max_size=9)}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
        {"url": st.sampled_from(["data:image/png;base64,AAAA", "https://x/y.png", ""])})}),
    _json,
)
_openai_call = st.fixed_dictionaries({
    "id": st.text(max_size=4),
    "type": st.just("function"),
    "function": st.fixed_dictionaries(
        {"name": st.text(max_size=4), "arguments": st.sampled_from(['{"a":1}', "", "[1]", "{"])}
    ),
})
_openai_message = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "user"]),
                           "content": st.text(max_size=20) | st.lists(_openai_part, max_size=3)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": st.none() | st.text(max_size=10)},
                          optional={"tool_calls": st.lists(_openai_call, max_size=2),
                                    "reasoning_content": st.text(max_size=5)}),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": st.text(max_size=4),
                           "content": st.text(max_size=10)}),
    _json,
)
_openai_request = st.fixed_dictionaries(
    {"model": st.text(max_size=10), "messages": st.lists(_openai_message, max_size=5)},
    optional={
        "max_tokens": st.integers(1, 100_000),
        "max_completion_tokens": st.integers(1, 100_000),
        "n": st.integers(1, 3),
        "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=3),
        "tools": st.lists(st.fixed_dictionaries({"type": st.sampled_from(["function", "web_search"]),
                                                 "function": st.fixed_dictionaries({"name": st.text(max_size=4)})})),
        "tool_choice": st.sampled_from(["auto", "none", "required", "bogus"])
        | st.just({"type": "function", "function": {"name": "f"}}),
        "parallel_tool_calls": st.booleans(),
        "reasoning_effort": st.sampled_from(["minimal", "low", "medium", "high", "none"]),
        "response_format": st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
        "temperature": st.floats(0, 2),
        "stream": st.booleans(),
    },
)


def _survives(client: str, provider: str, body: dict, target: Target) -> None:
    try:
        out = translator_for(client, provider).request_body(body, target)
    except TranslationError as exc:
        assert exc.status == 400 and exc.message
        return
    orjson.dumps(out)  # whatever comes out must serialize


@SETTINGS
@given(body=_anthropic_request, clamp=st.none() | st.integers(1, 10_000))
def test_random_anthropic_requests_translate_or_raise_translation_error(body: dict, clamp: int | None) -> None:
    _survives("anthropic", "openai", body, Target(name="p", dialect="openai", max_tokens=clamp))


@SETTINGS
@given(body=_openai_request, clamp=st.none() | st.integers(1, 10_000))
def test_random_openai_requests_translate_or_raise_translation_error(body: dict, clamp: int | None) -> None:
    _survives("openai", "anthropic", body, Target(name="p", dialect="anthropic", max_tokens=clamp))


@SETTINGS
@given(body=st.dictionaries(st.sampled_from(["model", "messages", "system", "tools", "max_tokens", "stream",
                                             "tool_choice", "thinking", "metadata", "stop", "n"]), _json))
def test_arbitrary_json_bodies_never_raise_anything_but_translation_error(body: dict) -> None:
    _survives("anthropic", "openai", body, TARGET_OPENAI)
    _survives("openai", "anthropic", body, TARGET_ANTHROPIC)


@SETTINGS
@given(raw=st.binary(max_size=300), status=st.integers(400, 599))
def test_any_error_body_becomes_a_json_envelope_in_the_client_dialect(raw: bytes, status: int) -> None:
    for client, provider in (("anthropic", "openai"), ("openai", "anthropic")):
        new_status, body = translator_for(client, provider).error(status, raw)
        assert 400 <= new_status < 600
        envelope = orjson.loads(body)
        assert isinstance(envelope["error"]["message"], str)


# ------------------------------------------------------------------ malformed provider output never raises

_OPENAI_KEYS = ["id", "model", "choices", "usage", "error", "index", "delta", "message", "finish_reason",
                "stop_reason", "tool_calls", "function", "name", "arguments", "content", "reasoning_content",
                "refusal", "prompt_tokens", "completion_tokens", "prompt_tokens_details", "cached_tokens",
                "completion_tokens_details", "reasoning_tokens", "code"]
_ANTHROPIC_KEYS = ["type", "message", "id", "model", "usage", "index", "content_block", "delta", "text",
                   "thinking", "partial_json", "name", "input", "stop_reason", "error", "content",
                   "input_tokens", "output_tokens", "cache_read_input_tokens", "output_tokens_details"]
_ANTHROPIC_TYPES = ["message_start", "content_block_start", "content_block_delta", "content_block_stop",
                    "message_delta", "message_stop", "error", "text", "tool_use", "thinking", "text_delta",
                    "input_json_delta", "thinking_delta"]


def _shaped(keys: list[str], values: st.SearchStrategy) -> st.SearchStrategy:
    """Random JSON whose object keys are the dialect's own field names, so the odd shapes hit real code."""
    leaves = st.none() | st.booleans() | st.integers(-3, 10**6) | st.floats(allow_nan=False) | values
    return st.recursive(
        leaves,
        lambda children: st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(keys), children,
                                                                          max_size=5),
        max_leaves=20,
    )


_openai_json = _shaped(_OPENAI_KEYS, st.sampled_from(["stop", "length", "tool_calls", "", "{\"a", "x"]))
_anthropic_json = _shaped(_ANTHROPIC_KEYS, st.sampled_from([*_ANTHROPIC_TYPES, "end_turn", "{\"a", "x"]))


def _sse(chunks: list[object], names: list[str | None]) -> bytes:
    return b"".join(encode_json(c, names[n % len(names)] if names else None) for n, c in enumerate(chunks))


@SETTINGS
@given(chunks=st.lists(st.dictionaries(st.sampled_from(_OPENAI_KEYS), _openai_json, max_size=5), max_size=8),
       done=st.booleans())
def test_random_json_objects_as_openai_chunks_never_raise(chunks: list[dict], done: bool) -> None:
    raw = _sse(chunks, []) + (b"data: [DONE]\n\n" if done else b"")
    events = _events(_translate(raw, [], "anthropic", "openai", input_tokens_estimate=3))
    assert events, "the client always gets an ending: message_stop or an error event"
    assert events[-1][1]["type"] in ("message_stop", "error")


@SETTINGS
@given(chunks=st.lists(st.dictionaries(st.sampled_from(_ANTHROPIC_KEYS), _anthropic_json, max_size=5),
                       max_size=8),
       names=st.lists(st.sampled_from([None, *_ANTHROPIC_TYPES]), max_size=3))
def test_random_json_objects_as_anthropic_events_never_raise(chunks: list[dict], names: list) -> None:
    events = _events(_translate(_sse(chunks, names), [], "openai", "anthropic", include_usage=True))
    assert events, "the client always gets an ending: [DONE] or an error chunk"
    assert events[-1][1] == "[DONE]" or "error" in events[-1][1]


@SETTINGS
@given(body=st.dictionaries(st.sampled_from(_OPENAI_KEYS), _openai_json, max_size=6))
def test_random_openai_responses_translate_or_raise_a_502(body: dict) -> None:
    _response_survives("anthropic", "openai", body)


@SETTINGS
@given(body=st.dictionaries(st.sampled_from(_ANTHROPIC_KEYS), _anthropic_json, max_size=6))
def test_random_anthropic_responses_translate_or_raise_a_502(body: dict) -> None:
    _response_survives("openai", "anthropic", body)


def _response_survives(client: str, provider: str, body: dict) -> None:
    try:
        out = translator_for(client, provider).response_body(body, None).body
    except TranslationError as exc:
        assert exc.status == 502 and "not understood" in exc.message
        return
    orjson.dumps(out)


# ------------------------------------------------------------------------------------ the Responses dialect

_FINAL = ("response.completed", "response.incomplete", "response.failed")


def _check_responses_grammar(events: list) -> list[dict]:
    """The Responses stream grammar a client (the OpenAI SDK's accumulator, Codex) relies on: created and
    in_progress first, sequence numbers 0, 1, 2…, every item added once and done before the next one is
    added, content only for the open item, exactly one final event, last, with usage and every item."""
    payloads = [p for _, p in events]
    assert [e for e, _ in events] == [p["type"] for p in payloads], "the event name is the data's type"
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    assert payloads[0]["type"] == "response.created"
    final = payloads[-1]
    assert final["type"] in _FINAL and sum(p["type"] in _FINAL for p in payloads) == 1
    open_index, done = None, []
    for p in payloads[1:-1]:
        if p["type"] == "response.output_item.added":
            assert open_index is None and p["output_index"] == len(done)
            open_index = p["output_index"]
        elif p["type"] == "response.output_item.done":
            assert p["output_index"] == open_index
            done.append(p["item"])
            open_index = None
        elif "output_index" in p:
            assert p["output_index"] == open_index, p
    if final["type"] != "response.failed":
        assert open_index is None and final["response"]["output"] == done
        assert final["response"]["usage"]["total_tokens"] >= 0
    return payloads


@SETTINGS
@given(stream=openai_streams(), data=st.data())
def test_chat_stream_becomes_a_well_formed_responses_stream_under_any_split(
    stream: tuple[bytes, dict[int, str], bool], data: st.DataObject
) -> None:
    raw, args, finished = stream
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=30))
    custom = data.draw(st.sets(st.sampled_from(["tool0", "tool1", "tool2"])))
    tools = {name: ClientTool(name, custom=True) for name in custom}
    out = _translate(raw, cuts, R, "openai", client_tools=tools)
    whole = _translate(raw, [], R, "openai", client_tools=tools)
    assert _timeless(_events(out)) == _timeless(_events(whole))
    payloads = _check_responses_grammar(_events(out))
    if not finished:
        assert payloads[-1]["type"] == "response.failed"
        return
    calls = {i["name"]: i for i in payloads[-1]["response"]["output"] if i["type"].endswith("_call")}
    assert set(calls) == {f"tool{i}" for i in args}
    for i, text in args.items():
        call = calls[f"tool{i}"]
        if f"tool{i}" in custom:  # unwrapped back into the raw string, never the JSON wrapper
            assert call["type"] == "custom_tool_call"
            wrapped = orjson.loads(text) if _whole_object(text) and text.strip() else None
            if isinstance(wrapped, dict) and isinstance(wrapped.get("input"), str):
                assert call["input"] == wrapped["input"]
        else:
            assert call["type"] == "function_call" and call["arguments"] == text


@SETTINGS
@given(stream=openai_streams(), data=st.data())
def test_chat_streams_through_anthropic_and_back_keep_the_responses_grammar(
    stream: tuple[bytes, dict[int, str], bool], data: st.DataObject
) -> None:
    """Chat → Anthropic events (a real Anthropic-shaped stream) → Responses through the composed translator."""
    raw, _, _ = stream
    anthropic_stream = _translate(raw, [], "anthropic", "openai", input_tokens_estimate=3)
    cuts = data.draw(st.lists(st.integers(0, len(anthropic_stream)), max_size=30))
    out = _translate(anthropic_stream, cuts, R, "anthropic")
    assert _timeless(_events(out)) == _timeless(_events(_translate(anthropic_stream, [], R, "anthropic")))
    _check_responses_grammar(_events(out))


_R_KEYS = ["type", "response", "id", "model", "output", "usage", "output_index", "item", "delta", "item_id",
           "call_id", "name", "arguments", "status", "error", "message", "code", "input_tokens", "output_tokens",
           "incomplete_details", "reason", "created_at", "content", "text", "summary"]
_R_TYPES = ["response.created", "response.output_item.added", "response.output_text.delta",
            "response.function_call_arguments.delta", "response.output_item.done", "response.completed",
            "response.incomplete", "response.failed", "response.reasoning_summary_text.delta", "error",
            "function_call", "message", "reasoning", "custom_tool_call", "output_text"]
_responses_json = _shaped(_R_KEYS, st.sampled_from([*_R_TYPES, "max_output_tokens", "{\"a", "x"]))


@SETTINGS
@given(chunks=st.lists(st.dictionaries(st.sampled_from(_R_KEYS), _responses_json, max_size=5), max_size=8),
       names=st.lists(st.sampled_from([None, *_R_TYPES]), max_size=3))
def test_random_json_objects_as_responses_events_never_raise(chunks: list[dict], names: list) -> None:
    raw = _sse(chunks, names)
    chat = _events(_translate(raw, [], "openai", R, include_usage=True))
    assert chat[-1][1] == "[DONE]" or "error" in chat[-1][1]
    anthropic_events = _events(_translate(raw, [], "anthropic", R, input_tokens_estimate=3))
    assert anthropic_events[-1][1]["type"] in ("message_stop", "error")


@SETTINGS
@given(chunks=st.lists(st.dictionaries(st.sampled_from(_OPENAI_KEYS), _openai_json, max_size=5), max_size=8),
       done=st.booleans())
def test_random_json_objects_as_chat_chunks_always_end_a_responses_stream(chunks: list[dict], done: bool) -> None:
    raw = _sse(chunks, []) + (b"data: [DONE]\n\n" if done else b"")
    events = _events(_translate(raw, [], R, "openai"))
    assert events and events[-1][1]["type"] in _FINAL
    assert [p["sequence_number"] for _, p in events] == list(range(len(events)))


_r_part = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["input_text", "output_text", "text"]),
                           "text": st.text(max_size=9)}),
    st.fixed_dictionaries({"type": st.just("input_image"),
                           "image_url": st.sampled_from(["https://x/y.png", "", None])}),
    st.fixed_dictionaries({"type": st.just("input_file")}, optional={"file_data": st.text(max_size=4)}),
    _json,
)
_r_item = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "developer", "tool"]),
                           "content": st.text(max_size=20) | st.lists(_r_part, max_size=3)},
                          optional={"type": st.just("message")}),
    st.fixed_dictionaries({"type": st.sampled_from(["function_call", "custom_tool_call"]),
                           "call_id": st.text(max_size=4), "name": st.text(max_size=4)},
                          optional={"arguments": st.sampled_from(['{"a":1}', "", "[1]", "{"]), "input": _json}),
    st.fixed_dictionaries({"type": st.sampled_from(["function_call_output", "custom_tool_call_output"]),
                           "call_id": st.text(max_size=4),
                           "output": st.text(max_size=9) | st.lists(_r_part, max_size=2)}),
    st.fixed_dictionaries({"type": st.just("reasoning"), "summary": st.lists(
        st.fixed_dictionaries({"type": st.just("summary_text"), "text": st.text(max_size=6)}), max_size=2)},
                          optional={"encrypted_content": st.text(max_size=6)}),
    st.fixed_dictionaries({"type": st.sampled_from(["item_reference", "web_search_call", "local_shell_call"])}),
    _json,
)
_r_tool = st.one_of(
    st.fixed_dictionaries({"type": st.just("function"), "name": st.text(max_size=4)},
                          optional={"parameters": _json, "strict": st.booleans()}),
    st.fixed_dictionaries({"type": st.just("custom"), "name": st.text(max_size=4)},
                          optional={"format": st.fixed_dictionaries({"type": st.sampled_from(["text", "grammar"])})}),
    st.fixed_dictionaries({"type": st.sampled_from(["web_search", "mcp", "file_search"])}),
    _json,
)
_responses_request = st.fixed_dictionaries(
    {"model": st.text(max_size=10), "input": st.text(max_size=20) | st.lists(_r_item, max_size=6)},
    optional={
        "instructions": st.text(max_size=10) | _json,
        "tools": st.lists(_r_tool, max_size=3),
        "tool_choice": st.sampled_from(["auto", "none", "required", "bogus"])
        | st.fixed_dictionaries({"type": st.sampled_from(["function", "custom", "web_search"]),
                                 "name": st.text(max_size=3)}),
        "parallel_tool_calls": st.booleans(),
        "max_output_tokens": st.integers(-1, 100_000),
        "reasoning": st.fixed_dictionaries({"effort": st.sampled_from(["minimal", "low", "medium", "high", "none"])})
        | _json,
        "text": st.fixed_dictionaries({"format": st.fixed_dictionaries(
            {"type": st.sampled_from(["text", "json_object", "json_schema", "bogus"])})}) | _json,
        "previous_response_id": st.none() | st.text(max_size=4),
        "store": st.booleans(),
        "stream": st.booleans(),
        "temperature": st.floats(0, 2),
        "truncation": st.sampled_from(["auto", "disabled"]),
    },
)


@SETTINGS
@given(body=_responses_request, clamp=st.none() | st.integers(1, 10_000))
def test_random_responses_requests_translate_or_raise_translation_error(body: dict, clamp: int | None) -> None:
    for provider in ("openai", "anthropic"):
        _survives(R, provider, body, Target(name="p", dialect=provider, max_tokens=clamp))


@SETTINGS
@given(chat=_openai_request, anthropic_body=_anthropic_request)
def test_random_requests_for_a_responses_provider_translate_or_raise_translation_error(
        chat: dict, anthropic_body: dict) -> None:
    target = Target(name="p", dialect=R)
    _survives("openai", R, chat, target)
    _survives("anthropic", R, anthropic_body, target)


@SETTINGS
@given(body=st.dictionaries(st.sampled_from(_R_KEYS), _responses_json, max_size=6))
def test_random_responses_api_responses_translate_or_raise_a_502(body: dict) -> None:
    _response_survives("openai", R, body)
    _response_survives("anthropic", R, body)


@SETTINGS
@given(body=st.dictionaries(st.sampled_from(_OPENAI_KEYS), _openai_json, max_size=6))
def test_random_chat_responses_translate_to_the_responses_api_or_raise_a_502(body: dict) -> None:
    _response_survives(R, "openai", body)


@SETTINGS
@given(raw=st.binary(max_size=300), status=st.integers(400, 599))
def test_any_error_body_becomes_an_envelope_for_and_from_responses_clients(raw: bytes, status: int) -> None:
    for client, provider in ((R, "openai"), (R, "anthropic"), ("openai", R), ("anthropic", R)):
        new_status, body = translator_for(client, provider).error(status, raw)
        assert 400 <= new_status < 600
        assert isinstance(orjson.loads(body)["error"]["message"], str)
