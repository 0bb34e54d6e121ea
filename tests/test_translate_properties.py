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


@st.composite
def openai_streams(draw: st.DrawFn) -> tuple[bytes, dict[int, str]]:
    """A provider stream: every tool call announced (id + name) before its argument fragments."""
    chunks: list[dict] = [{"id": "c1", "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant"}}]}]
    announced: set[int] = set()
    args: dict[int, str] = {}
    for delta in draw(st.lists(_delta, max_size=25)):
        for call in delta.get("tool_calls") or ():
            i = call["index"]
            if i not in announced:
                announced.add(i)
                call.update({"id": f"call_{i}", "type": "function"})
                call["function"]["name"] = f"tool{i}"
            args[i] = args.get(i, "") + call["function"]["arguments"]
        chunks.append({"id": "c1", "model": "m", "choices": [{"index": 0, "delta": delta}]})
    if draw(st.booleans()):
        chunks.append({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    if draw(st.booleans()):
        chunks.append({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}})
    raw = b"".join(encode_json(c) for c in chunks)
    if draw(st.booleans()):
        raw += b"data: [DONE]\n\n"
    return raw, args


@SETTINGS
@given(stream=openai_streams(), data=st.data())
def test_openai_stream_becomes_well_formed_anthropic_events_under_any_split(
    stream: tuple[bytes, dict[int, str]], data: st.DataObject
) -> None:
    raw, args = stream
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=30))
    out = _translate(raw, cuts, "anthropic", "openai", input_tokens_estimate=10)
    assert _events(out) == _events(_translate(raw, [], "anthropic", "openai", input_tokens_estimate=10))
    events = [payload for _, payload in _events(out)]
    kinds = [e["type"] for e in events]
    assert kinds[0] == "message_start" and events[0]["message"]["usage"]["input_tokens"] > 0
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
    assert tool_inputs == {f"tool{i}": text for i, text in args.items()}


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
