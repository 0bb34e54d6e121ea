"""Budgets: the stores (SQLite, and a real Redis server) reserve atomically, limits pick their
counters by key, provider and session, usage settles the reservation, a spent budget is a 429 in the
client's dialect that names it and its reset, an unreachable store fails open at once; and the meter
that counts an untranslated response's usage without touching its bytes."""

from __future__ import annotations

import calendar
import gzip
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import orjson
import pytest

from extproc import config
from extproc.exchange import Exchange
from extproc.gateway import Gateway
from extproc.observe import metrics
from extproc.observe.budgets import Budgets, RedisStore, SqliteStore, open_store, period_bounds
from extproc.responses import UsageMeter
from tests.mock_providers import free_port

PROVIDERS = {
    "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
    "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "gpt-5.1"},
}


@pytest.fixture(scope="module")
def redis_url():
    server = shutil.which("redis-server")
    if server is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not installed; .ci/run installs it")
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                RedisStore(url).used("probe")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _budgets(tmp_path: Path, *limits: dict, store: str | None = None) -> Budgets:
    return Budgets(config.BudgetsConfig(store=store or str(tmp_path / "b.sqlite"),
                                        limits=[config.BudgetLimit(**lim) for lim in limits]))


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_a_store_reserves_all_or_nothing_and_refuses_what_would_overrun(kind, tmp_path, request) -> None:
    store = open_store(str(tmp_path / "b.sqlite") if kind == "sqlite" else request.getfixturevalue("redis_url"))
    assert isinstance(store, SqliteStore if kind == "sqlite" else RedisStore)
    a, b = f"{kind}-{time.time()}-a", f"{kind}-{time.time()}-b"
    assert store.reserve([(a, 60, 100, 60), (b, 5, 10, 60)]) is None
    assert store.reserve([(a, 30, 100, 60), (b, 6, 10, 60)]) == (1, 5.0)  # b would overrun: nothing taken
    assert store.used(a) == 60 and store.used(b) == 5
    store.add([(a, -20, 60)])
    assert store.reserve([(a, 60, 100, 60)]) is None and store.used(a) == 100
    assert store.reserve([(a, 1, 100, 60)]) == (0, 100.0)


def test_a_request_larger_than_a_whole_budget_runs_only_on_a_fresh_one(tmp_path) -> None:
    store = open_store(str(tmp_path / "b.sqlite"))
    assert store.reserve([("k", 500, 100, 60)]) is None
    assert store.reserve([("k", 500, 100, 60)]) == (0, 500.0)


def test_concurrent_reservations_never_overshoot_across_processes_sharing_the_file(tmp_path) -> None:
    path = str(tmp_path / "b.sqlite")
    admitted = []

    def worker() -> None:
        store = SqliteStore(path)  # a connection of its own, as another worker process has
        for _ in range(10):
            if store.reserve([("shared", 7, 100, 60)]) is None:
                admitted.append(7)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sum(admitted) == 98 and SqliteStore(path).used("shared") == 98  # 14 × 7; a 15th would overrun


def test_limits_draw_on_a_counter_per_key_provider_and_session_per_period(tmp_path) -> None:
    budgets = _budgets(tmp_path, {"name": "per-key", "key": "*", "usd": 5},
                       {"name": "gpt-month", "provider": "gpt", "tokens": 1000, "period": "month"},
                       {"name": "sessions", "session": "*", "tokens": 500})
    now = calendar.timegm((2026, 12, 31, 22, 0, 0))
    res = budgets.plan("alice", "gpt", "s-1", 100, 0.01, 80, now=now)
    assert [d.key for d in res.draws] == ["lunaroute:budget:per-key:key=alice:2026-12-31",
                                          "lunaroute:budget:gpt-month:provider=gpt:2026-12",
                                          "lunaroute:budget:sessions:session=s-1:2026-12-31"]
    assert [d.resets for d in res.draws] == [calendar.timegm((2027, 1, 1, 0, 0, 0))] * 3
    assert [d.limit.name for d in budgets.plan(None, "anthropic", "s-2", 1, 0, 1, now=now).draws] == ["sessions"]
    assert _budgets(tmp_path, {"name": "bob", "key": "bob", "usd": 1}).plan("alice", "gpt", None, 1, 0, 1) is None
    assert period_bounds("day", now) == ("2026-12-31", float(calendar.timegm((2027, 1, 1, 0, 0, 0))))


def test_settling_replaces_the_reservation_by_the_usage(tmp_path) -> None:
    budgets = _budgets(tmp_path, {"name": "t", "provider": "gpt", "tokens": 1000})
    res = budgets.plan(None, "gpt", None, 300, 0.0, 200)
    assert budgets.reserve(res) is None and budgets.store.used(res.draws[0].key) == 300
    budgets.settle(res, 120, 0.0)
    budgets.settle(res, 999, 0.0)  # once only
    budgets.flush()
    assert budgets.store.used(res.draws[0].key) == 120
    cut = budgets.plan(None, "gpt", None, 300, 0.0, 200)
    budgets.reserve(cut)
    budgets.settle(cut, None, None)  # a stream cut before the provider reported usage: the input estimate
    budgets.flush()
    assert budgets.store.used(res.draws[0].key) == 320


def test_an_unreachable_store_fails_open_at_once_and_is_counted() -> None:
    budgets = Budgets(config.BudgetsConfig(store=f"redis://127.0.0.1:{free_port()}/0", timeout_ms=200,
                                           limits=[config.BudgetLimit(name="t", provider="*", tokens=1)]))
    res = budgets.plan(None, "gpt", None, 10, 0.0, 10)
    assert budgets.reserve(res) is None and not res.reserved
    asked: list[object] = []
    real = budgets.store

    class Counting:  # the same unreachable store, counting how often it is asked
        def __getattr__(self, name: str) -> object:
            asked.append(name)
            return getattr(real, name)

    budgets.store = Counting()  # type: ignore[assignment]
    errors = metrics.BUDGET_STORE_ERRORS.labels("reserve")._value.get()
    assert budgets.reserve(budgets.plan(None, "gpt", None, 10, 0.0, 10)) is None
    assert asked == []  # skipped for a second after an error: no waiting per request
    assert metrics.BUDGET_STORE_ERRORS.labels("reserve")._value.get() == errors + 1


def _send(gw: Gateway, path: str, body: dict, **headers: str):
    ex = Exchange(gw)
    ex.on_request_headers({":method": "POST", ":path": path, **headers}, False)
    return ex, ex.on_request_body(orjson.dumps(body))


@pytest.mark.parametrize(("path", "error_type"), [("/v1/messages", "rate_limit_error"),
                                                  ("/v1/chat/completions", "rate_limit_exceeded")])
def test_a_spent_budget_is_a_429_in_the_clients_dialect_naming_it_and_its_reset(tmp_path, path, error_type) -> None:
    gw = Gateway(config.parse({"providers": PROVIDERS, "budgets": {
        "store": str(tmp_path / "b.sqlite"), "limits": [{"name": "daily-usd", "provider": "*", "usd": 0.01}]}},
        env={}))
    body = {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}
    ex, _ = _send(gw, path, body)
    # the estimate: ~4 bytes a token of input plus max_tokens of output, at claude-sonnet-4's price
    assert ex.reservation.tokens == len(orjson.dumps(body)) // 4 + 100 and ex.reservation.usd > 0
    gw.budgets.store.add([(ex.reservation.draws[0].key, 0.01, 60)])
    assert gw.budgets.reserve(ex.reservation) is not None
    reply = ex.over_budget(gw.budgets.reserve(ex.reservation))
    assert reply.immediate.status == 429 and 0 < int(reply.immediate.headers["retry-after"]) <= 86400
    error = orjson.loads(reply.immediate.body)["error"]
    assert error["type"] == "rate_limit_error" and error.get("code", error_type) == error_type
    assert "the budget 'daily-usd' is spent ($0.0100 of $0.01 this day); it resets at " in error["message"]


def test_budget_names_must_be_configured_providers_and_limits_well_formed() -> None:
    with pytest.raises(config.ConfigError, match="budgets.daily_tokens.gtp: unknown provider 'gtp'"):
        config.parse({"budgets": {"daily_tokens": {"gtp": 5}}}, env={})
    with pytest.raises(config.ConfigError, match="exactly one of usd or tokens"):
        config.parse({"budgets": {"limits": [{"name": "x", "key": "*", "usd": 1, "tokens": 5}]}}, env={})
    with pytest.raises(config.ConfigError, match="at least one of key, provider, session"):
        config.parse({"budgets": {"limits": [{"name": "x", "usd": 1}]}}, env={})


ANTHROPIC_SSE = b"".join([
    b'event: message_start\ndata: {"type":"message_start","message":{"id":"m","usage":'
    b'{"input_tokens":21,"cache_read_input_tokens":5,"output_tokens":1}}}\n\n',
    b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
    b'"text":"hi"}}\n\n',
    b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
    b'"usage":{"output_tokens":7}}\n\n',
    b'event: message_stop\ndata: {"type":"message_stop"}\n\n',
])


def test_the_meter_counts_a_compressed_stream_and_leaves_every_byte_alone() -> None:
    meter = UsageMeter("anthropic")
    mode = meter.on_headers(200, {"content-type": "text/event-stream", "content-encoding": "gzip"})
    assert mode.response_body_mode == "STREAMED" and not mode.remove_headers
    raw = gzip.compress(ANTHROPIC_SSE)
    replies = [meter.on_body(raw[i:i + 17], i + 17 >= len(raw)) for i in range(0, len(raw), 17)]
    assert all(r.body is None and not r.set_headers for r in replies)  # the client gets the provider's bytes
    assert meter.usage == {"input": 26, "output": 7, "cache_read": 5}  # input includes the cache reads


def test_the_meter_counts_a_json_response_and_ignores_errors() -> None:
    meter = UsageMeter("openai")
    meter.on_headers(200, {"content-type": "application/json"})
    meter.on_body(orjson.dumps({"usage": {"prompt_tokens": 30, "completion_tokens": 9}}), True)
    assert meter.usage == {"input": 30, "output": 9}
    failed = UsageMeter("openai")
    assert failed.on_headers(529, {"content-type": "application/json"}).response_body_mode is None


def test_the_meter_counts_a_passthrough_responses_api_stream() -> None:
    meter = UsageMeter("openai-responses")
    meter.on_headers(200, {"content-type": "text/event-stream"})
    usage = {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 11, "total_tokens": 51}
    meter.on_body(b'event: response.created\ndata: {"type":"response.created","response":{"usage":null}}\n\n'
                  b'event: response.completed\ndata: ' + orjson.dumps(
                      {"type": "response.completed", "response": {"id": "resp_1", "usage": usage}}) + b"\n\n", True)
    assert meter.usage == {"input": 40, "output": 11, "cache_read": 8}
