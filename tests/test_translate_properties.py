"""Property tests: chunking never changes a translated stream; random requests never crash a translator."""

from __future__ import annotations

from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from extproc.dialects import Target, TranslationError, translator_for
from extproc.sse import SSEParser, encode_json

FIXTURES = Path(__file__).parent / "fixtures" / "translate"
PROVIDER_STREAMS = sorted(FIXTURES.glob("*/stream.*.sse"))
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


def _dialects(path: Path) -> tuple[str, str]:
    provider = path.name.split(".")[1]
    return ("anthropic" if provider == "openai" else "openai"), provider


# ------------------------------------------------------------------------------------- chunk invariance


@SETTINGS
@given(data=st.data())
def test_any_split_of_a_fixture_stream_gives_the_same_client_events(data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(PROVIDER_STREAMS))
    raw = path.read_bytes()
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=40))
    client, provider = _dialects(path)
    whole = _events(_translate(raw, [], client, provider, include_usage=True))
    split = _events(_translate(raw, cuts, client, provider, include_usage=True))
    for events in (whole, split):
        for _, payload in events:
            if isinstance(payload, dict) and "created" in payload:
                payload["created"] = 0
    assert split == whole


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
        out = translator_for(client, provider).response_body(body, None)
    except TranslationError as exc:
        assert exc.status == 502 and "not understood" in exc.message
        return
    orjson.dumps(out)
