"""Session records: each request with its bodies, usage, cost and timings, written off the request
path into a SQLite store, never a header or a key."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from extproc import config
from extproc.exchange import Exchange
from extproc.gateway import Gateway
from extproc.observe import metrics, sessions
from extproc.observe.recording import anonymise_ip
from extproc.observe.sessions import RecordWriter
from extproc.session_id import session_id

OPENAI_JSON = {"id": "c1", "object": "chat.completion", "created": 1, "model": "gpt-5.1",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
               "usage": {"prompt_tokens": 1000, "completion_tokens": 300, "total_tokens": 1300,
                         "prompt_tokens_details": {"cached_tokens": 400}}}


def _gateway(tmp_path: Path, **recording: object) -> Gateway:
    return Gateway(config.parse({
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
            "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "gpt-5.1"},
        },
        "recording": {"enabled": True, "dir": str(tmp_path), **recording},
    }, env={}))


def _turns(gw: Gateway, session: str) -> list[dict]:
    gw.close()  # flushes the writer thread
    with sessions.open_db(gw.cfg.recording.dir, create=False) as db:
        return list(sessions.turns(db, session))


def test_a_translated_turn_is_recorded_with_both_requests_the_response_usage_and_cost(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    ex = Exchange(gw, sealed=True)  # behind the gateway's own Envoy, whose gate wrote x-lunaroute-peer
    ex.on_request_headers({":method": "POST", ":path": "/v1/messages", "x-api-key": "sk-ant-very-secret-key-0123",
                           "x-claude-code-session-id": "abc-123", "x-lunaroute-peer": "203.0.113.77:5123"}, False)
    sent = {"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "[LUNAROUTE:gpt] hi"}]}
    ex.on_request_body(orjson.dumps(sent))
    ex.on_response_headers({":status": "200", "content-type": "application/json"})
    ex.on_response_body(orjson.dumps(OPENAI_JSON), True)
    ex.close()
    (turn,) = _turns(gw, "abc-123")
    assert turn["request"] == sent
    assert turn["provider_request"]["model"] == "gpt-5.1" and turn["provider_request"]["messages"][-1] == {
        "role": "user", "content": "hi"}
    assert turn["response"]["content"] == [{"type": "text", "text": "hi"}]  # as the client got it
    assert (turn["provider"], turn["reason"], turn["model"], turn["sent_model"]) == ("gpt", "marker", "claude-x",
                                                                                   "gpt-5.1")
    assert (turn["status"], turn["outcome"], turn["input"], turn["output"], turn["cache_read"]) == (
        200, "ok", 1000, 300, 400)
    # gpt-5.1: $1.25 / MTok fresh input, $0.125 cached, $10 output
    assert turn["cost_usd"] == pytest.approx((600 * 1.25 + 400 * 0.125 + 300 * 10) / 1e6)
    assert turn["client_ip"] == "203.0.113.0/24"
    assert turn["duration_ms"] >= 0 and turn["overhead_ms"] > 0
    assert b"sk-ant-very-secret" not in (tmp_path / sessions.DB_NAME).read_bytes()


def test_a_stream_is_recorded_as_its_final_message_with_time_to_first_token(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    ex = Exchange(gw)
    ex.on_request_headers({":method": "POST", ":path": "/v1/messages", "x-claude-code-session-id": "s1"}, False)
    ex.on_request_body(orjson.dumps({"model": "claude-sonnet-4-5", "max_tokens": 5, "stream": True,
                                     "messages": [{"role": "user", "content": "hello"}]}))
    ex.on_response_headers({":status": "200", "content-type": "text/event-stream"})
    events = [
        {"type": "message_start", "message": {"id": "m", "role": "assistant", "model": "claude-sonnet-4-5",
                                              "usage": {"input_tokens": 10, "cache_read_input_tokens": 90,
                                                        "cache_creation_input_tokens": 50, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hel"}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "lo"}},
        {"type": "content_block_stop", "index": 0},
        {"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "t", "name": "Read",
                                                                       "input": {}}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": '{"pa'}},
        {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": 'th":"a"}'}},
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 20}},
        {"type": "message_stop"},
    ]
    sse = [f"event: {e['type']}\ndata: {orjson.dumps(e).decode()}\n\n".encode() for e in events]
    for chunk in sse[:-1]:
        ex.on_response_body(chunk, False)
    ex.on_response_body(sse[-1], True)
    (turn,) = _turns(gw, "s1")
    assert turn["response"]["content"] == [{"type": "text", "text": "Hello"},
                                           {"type": "tool_use", "id": "t", "name": "Read", "input": {"path": "a"}}]
    assert turn["response"]["stop_reason"] == "tool_use"
    assert turn["stream"] is True and turn["ttft_ms"] is not None
    # input: fresh tokens, cache reads and cache writes, as in every dialect
    assert (turn["input"], turn["cache_read"], turn["cache_write"], turn["output"]) == (150, 90, 50, 20)
    # claude-sonnet-4*: $3 fresh input, $0.30 cache read, $3.75 cache write, $15 output per MTok
    assert turn["cost_usd"] == pytest.approx((10 * 3 + 90 * 0.30 + 50 * 3.75 + 20 * 15) / 1e6)


def test_a_stream_cut_off_is_recorded_as_interrupted_with_what_came(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    ex = Exchange(gw)
    ex.on_request_headers({":method": "POST", ":path": "/v1/messages", "x-session-id": "cut"}, False)
    ex.on_request_body(orjson.dumps({"model": "claude-x", "max_tokens": 5, "stream": True,
                                     "messages": [{"role": "user", "content": "hello"}]}))
    ex.on_response_headers({":status": "200", "content-type": "text/event-stream"})
    ex.on_response_body(b'event: message_start\ndata: {"type":"message_start","message":{"usage":'
                        b'{"input_tokens":7,"output_tokens":1}}}\n\n', False)
    ex.close()  # the stream ended without end_of_stream
    (turn,) = _turns(gw, "cut")
    assert turn["outcome"] == "interrupted" and turn["input"] == 7


def test_sessions_come_from_claude_codes_header_then_metadata_then_other_headers() -> None:
    meta = {"metadata": {"user_id": orjson.dumps({"device_id": "d", "session_id": "from-meta"}).decode()}}
    assert session_id({"x-claude-code-session-id": "cc-1", "x-session-id": "x"}, meta) == "cc-1"
    assert session_id({"x-session-id": "x"}, meta) == "from-meta"
    assert session_id({"x-session-id": "x", "session-id": "codex"}, {}) == "x"
    assert session_id({"session-id": "codex"}, {}) == "codex"
    assert session_id({"x-request-id": "req-9"}, {}) is None  # a request is no session (records name rows by it)
    assert session_id({"x-claude-code-session-id": "../../etc/passwd", "x-session-id": "a" * 129}, {}) is None


def test_client_addresses_are_kept_only_as_their_network() -> None:
    assert anonymise_ip("198.51.100.23:40000") == "198.51.100.0/24"
    assert anonymise_ip("[2001:db8:1234:5678::1]:443") == "2001:db8:1234::/48"
    assert anonymise_ip("2001:db8:1234:5678::1") == "2001:db8:1234::/48"
    assert anonymise_ip("not an address") is None


def test_a_full_queue_drops_records_and_counts_them_without_waiting(tmp_path: Path) -> None:
    writer = RecordWriter(str(tmp_path), queue_size=1)
    writer.queue.put(writer._STOP)  # the writer stops at once; the queue stays full behind it
    time.sleep(0.05)
    writer.queue.put({"ts": 0.0})
    before = metrics.RECORDS_DROPPED.labels("queue_full")._value.get()
    assert writer.submit({"ts": 1.0}) is False  # a blocking put would never return: the writer has stopped
    assert metrics.RECORDS_DROPPED.labels("queue_full")._value.get() == before + 1


def test_retention_deletes_old_records_and_the_oldest_beyond_the_byte_budget(tmp_path: Path) -> None:
    with sessions.open_db(str(tmp_path)) as db:
        now = time.time()
        for i, ts in enumerate((now - 40 * 86400, now - 3, now - 2, now - 1)):
            sessions.insert(db, {"ts": ts, "session": f"s{i}", "request": b"x" * 2000, "usage": {}}, None)
        size = db.execute("SELECT body_bytes FROM records LIMIT 1").fetchone()[0]
        assert sessions.enforce_retention(db, max_age_days=30, max_bytes=2 * size) == 2
        assert [r[0] for r in db.execute("SELECT session FROM records ORDER BY ts")] == ["s2", "s3"]
        assert sessions.enforce_retention(db, max_age_days=30, max_bytes=1 << 30, max_sessions=1) == 1
        assert [r[0] for r in db.execute("SELECT session FROM records")] == ["s3"]  # the newest session stays


def test_recording_is_off_by_default() -> None:
    assert Gateway(config.load(env={})).recorder is None


def test_a_fallback_chain_is_recorded_under_the_provider_that_answered(tmp_path: Path) -> None:
    gw = Gateway(config.parse({
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
            "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "gpt-5.1"},
        },
        "routing": {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]},
        "recording": {"enabled": True, "dir": str(tmp_path)},
    }, env={}))
    ex = Exchange(gw)
    ex.on_request_headers({":method": "POST", ":path": "/v1/messages", "x-session-id": "chain"}, False)
    reply = ex.on_request_body(orjson.dumps({"model": "claude-x", "max_tokens": 5,
                                             "messages": [{"role": "user", "content": "hi"}]}))
    assert reply.response_header_mode is None  # the record reads the response the attempts translated
    ex.on_response_headers({":status": "200", "content-type": "application/json", "x-lunaroute-provider": "gpt"})
    ex.on_response_body(orjson.dumps({"type": "message", "role": "assistant", "content": [
        {"type": "text", "text": "from the fallback"}], "usage": {"input_tokens": 3, "output_tokens": 2}}), True)
    (turn,) = _turns(gw, "chain")
    assert turn["provider"] == "gpt" and turn["response"]["content"][0]["text"] == "from the fallback"
    assert (turn["input"], turn["output"], turn["outcome"]) == (3, 2, "ok")


# -- issue #23 and the console's aggregates -------------------------------------------------------

def _sse(events: list[dict]) -> bytes:
    return b"".join(f"event: {e['type']}\ndata: {orjson.dumps(e).decode()}\n\n".encode() for e in events)


def test_pii_split_across_stream_deltas_is_masked_and_the_raw_events_are_not_kept(tmp_path: Path) -> None:
    """Each delta alone holds half a card number: only the reassembled answer shows it whole."""
    from extproc.observe.pii import Redactor

    halves = ["Your card is 4111 1111", " 1111 1111, and mail jane", ".doe@example.com."]
    events = [{"type": "message_start", "message": {"id": "m", "role": "assistant", "usage": {"input_tokens": 3}}},
              {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
              *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": h}}
                for h in halves),
              {"type": "content_block_stop", "index": 0}, {"type": "message_stop"}]
    record = {"client": "anthropic", "stream": True, "request": b'{"messages":[]}', "response": _sse(events)}
    doc = sessions.decode_bodies(sessions.encode_bodies(record, Redactor().redact))
    assert doc["response"]["content"][0]["text"] == "Your card is [CREDIT_CARD], and mail [EMAIL]."
    assert doc["events"] is None and doc["events_withheld"] == "pii"
    stored = orjson.dumps(doc)
    assert b"4111" not in stored and b"jane" not in stored


def test_a_stream_without_pii_keeps_its_raw_events(tmp_path: Path) -> None:
    from extproc.observe.pii import Redactor

    events = [{"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "plain"}}]
    record = {"client": "anthropic", "stream": True, "request": b"{}", "response": _sse(events)}
    doc = sessions.decode_bodies(sessions.encode_bodies(record, Redactor().redact))
    assert "plain" in doc["events"] and "events_withheld" not in doc


def test_the_store_is_private_even_in_a_directory_that_already_exists(tmp_path: Path) -> None:
    directory = tmp_path / "shared"
    directory.mkdir(mode=0o755)
    old_umask = os.umask(0o022)
    try:
        with sessions.open_db(str(directory)) as db:
            sessions.insert(db, {"ts": time.time(), "session": "s", "usage": {}}, None)
            for name in (sessions.DB_NAME, sessions.DB_NAME + "-wal", sessions.DB_NAME + "-shm"):
                assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600, name
    finally:
        os.umask(old_umask)


def test_an_older_looser_store_is_tightened_when_opened(tmp_path: Path) -> None:
    (tmp_path / sessions.DB_NAME).touch(mode=0o644)
    os.chmod(tmp_path / sessions.DB_NAME, 0o644)
    sessions.open_db(str(tmp_path)).close()
    assert stat.S_IMODE((tmp_path / sessions.DB_NAME).stat().st_mode) == 0o600


def _record(ts: float, session: str, **fields: object) -> dict:
    return {"ts": ts, "session": session, "client": "anthropic", "provider": "anthropic", "model": "claude-x",
            "key": "alice", "status": 200, "outcome": "ok", "usage": {"input": 10, "output": 2}, "cost_usd": 0.5,
            "duration_ms": 100.0, "overhead_ms": 0.5, **fields}


def test_aggregates_are_kept_with_each_record_and_back_filled_for_an_older_store(tmp_path: Path) -> None:
    now = time.time()
    rows = [_record(now - 7200, "a"), _record(now - 60, "a", provider="gpt", sent_model="gpt-5"),
            _record(now - 30, "b", status=500, outcome="error", key="bob")]
    with sessions.open_db(str(tmp_path / "new")) as db:
        for r in rows:
            sessions.insert(db, r, None)
        kept = _aggregates(db)
    # the same records in a store written before the aggregates existed, opened now
    old = tmp_path / "old"
    with sessions.open_db(str(old)) as db:
        for r in rows:
            sessions.insert(db, r, None)
        db.executescript("DROP TABLE agg_hour; DROP TABLE agg_day; DROP TABLE session_index; DROP TABLE session_dims;"
                         "PRAGMA user_version = 0;")
    with sessions.open_db(str(old), create=False) as db:
        assert _aggregates(db) == kept
    assert kept["sessions"] == [("a", 2, 0, 1.0, "gpt", "gpt-5"), ("b", 1, 1, 0.5, "anthropic", "claude-x")]
    assert kept["day_requests"] == 3 and kept["errors"] == 1
    assert kept["dims"] == [("a", "anthropic", "claude-x", "alice"), ("a", "gpt", "gpt-5", "alice"),
                            ("b", "anthropic", "claude-x", "bob")]


def _aggregates(db) -> dict:
    return {
        "sessions": db.execute("SELECT session, requests, errors, cost_usd, provider, model FROM session_index "
                               "ORDER BY session").fetchall(),
        "dims": db.execute("SELECT * FROM session_dims ORDER BY 1, 2, 3, 4").fetchall(),
        "day_requests": db.execute("SELECT SUM(requests) FROM agg_day").fetchone()[0],
        "errors": db.execute("SELECT SUM(errors) FROM agg_hour").fetchone()[0],
        "hours": db.execute("SELECT bucket, provider, model, key, requests, cost_usd FROM agg_hour "
                            "ORDER BY 1, 2, 3, 4").fetchall(),
    }


def test_retention_forgets_the_sessions_it_emptied(tmp_path: Path) -> None:
    now = time.time()
    with sessions.open_db(str(tmp_path)) as db:
        sessions.insert(db, _record(now - 40 * 86400, "old"), None)
        sessions.insert(db, _record(now, "new"), None)
        sessions.enforce_retention(db, max_age_days=30, max_bytes=1 << 30)
        assert [r[0] for r in db.execute("SELECT session FROM session_index")] == ["new"]
        assert [r[0] for r in db.execute("SELECT DISTINCT session FROM session_dims")] == ["new"]


HOSTILE = "[/x] [bold red]boom[/] \x1b]8;;http://evil.example\x1b\\link\x1b]8;;\x1b\\ \x1b]0;pwned\x07 \x1b[31mred"


def test_sessions_cli_prints_client_text_literally_without_terminal_escapes(tmp_path: Path) -> None:
    """`[/x]` crashed Rich's markup parser; escape sequences set links, colours and the title."""
    store = tmp_path / "store"
    with sessions.open_db(str(store)) as db:
        sessions.insert(db, {**_record(time.time(), "s1", model=HOSTILE),
                             "request": orjson.dumps({"messages": [{"role": "user", "content": HOSTILE}]}),
                             "response": orjson.dumps({"content": [{"type": "text", "text": HOSTILE}]})}, None)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"providers: {{anthropic: {{type: anthropic, base_url: 'https://api.anthropic.com'}}}}\n"
                   f"recording: {{dir: '{store}'}}\n", encoding="utf-8")
    for args in (["show", "s1"], ["stats", "--by", "model"], ["list"]):
        out = subprocess.run([sys.executable, "-m", "extproc.cli", "sessions", *args, "--config", str(cfg)],
                             capture_output=True, text=True, timeout=60, check=False,
                             env={**os.environ, "COLUMNS": "400", "TERM": "xterm-256color"})
        assert out.returncode == 0, out.stderr
        assert "\x1b" not in out.stdout and "\x07" not in out.stdout
        if args[0] != "list":
            assert "[/x] [bold red]boom[/]" in out.stdout  # shown as written, not styled
