"""The incremental SSE parser: events come out whole however the bytes were split."""

from __future__ import annotations

import pytest

from extproc.sse import MAX_LINE_BYTES, EventTooLarge, SSEEvent, SSEParser, encode, encode_json


def parse_all(*chunks: bytes) -> list[SSEEvent]:
    parser = SSEParser()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += parser.feed(chunk)
    return events + parser.close()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_line_ending_style_gives_the_same_events(newline: bytes) -> None:
    raw = b"event: ping\ndata: {}\n\ndata: a\ndata: b\n\n".replace(b"\n", newline)
    assert parse_all(raw) == [SSEEvent("ping", "{}"), SSEEvent(None, "a\nb")]


def test_crlf_split_between_chunks_is_one_line_end() -> None:
    assert parse_all(b"data: x\r", b"\n\r", b"\n") == [SSEEvent(None, "x")]


def test_event_split_inside_field_name_value_and_utf8_character() -> None:
    raw = "event: content_block_delta\ndata: {\"text\":\"héllo ✓\"}\n\n".encode()
    events = parse_all(*(raw[i : i + 1] for i in range(len(raw))))
    assert events == [SSEEvent("content_block_delta", '{"text":"héllo ✓"}')]


def test_partial_event_is_kept_until_its_blank_line_arrives() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: one\n") == []
    assert parser.feed(b"\n") == [SSEEvent(None, "one")]


def test_comments_and_unknown_fields_are_ignored() -> None:
    raw = b": keep-alive\nid: 7\nretry: 100\nfoo: bar\ndata: x\n\n: OPENROUTER PROCESSING\n\n"
    assert parse_all(raw) == [SSEEvent(None, "x")]


def test_one_leading_space_is_stripped_and_no_space_is_fine() -> None:
    assert parse_all(b"data:x\n\ndata:  y\n\n") == [SSEEvent(None, "x"), SSEEvent(None, " y")]


def test_event_name_resets_after_each_event() -> None:
    assert parse_all(b"event: a\ndata: 1\n\ndata: 2\n\n") == [SSEEvent("a", "1"), SSEEvent(None, "2")]


def test_blank_lines_without_data_dispatch_nothing() -> None:
    assert parse_all(b"\n\n\nevent: lonely\n\n") == []


def test_last_event_without_blank_line_is_dispatched_at_close() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: [DONE]") == []
    assert parser.close() == [SSEEvent(None, "[DONE]")]


def test_leading_byte_order_mark_is_skipped() -> None:
    assert parse_all(b"\xef\xbb\xbfdata: x\n\n") == [SSEEvent(None, "x")]


def test_encoder_output_parses_back() -> None:
    raw = encode("line1\nline2", "message_start") + encode_json({"a": 1}) + encode_json({"b": 2}, "x")
    assert parse_all(raw) == [
        SSEEvent("message_start", "line1\nline2"),
        SSEEvent(None, '{"a":1}'),
        SSEEvent("x", '{"b":2}'),
    ]


def test_huge_event_fed_in_tiny_chunks_is_kept_in_pieces_and_joined_once() -> None:
    payload = b"x" * 400_000
    raw = b"data: " + payload + b"\n\n"
    parser = SSEParser()
    events: list[SSEEvent] = []
    chunks = 0
    for i in range(0, len(raw) - 2, 64):
        events += parser.feed(raw[i : min(i + 64, len(raw) - 2)])
        chunks += 1
    # linear: each chunk is kept as it came (no re-scan or re-join of what came before)
    assert len(parser._pending) == chunks and events == []
    events += parser.feed(b"\n\n")
    assert events == [SSEEvent(None, payload.decode())]


def test_a_line_without_end_stops_growing_at_the_cap() -> None:
    parser = SSEParser()
    chunk = b"x" * (1 << 20)
    with pytest.raises(EventTooLarge):
        for _ in range((MAX_LINE_BYTES >> 20) + 2):
            parser.feed(chunk)
