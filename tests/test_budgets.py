"""Daily token budgets: the stores (SQLite, and a real Redis server), the accounting, and the meter
that counts an untranslated response's usage without touching its bytes."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import time
from pathlib import Path

import orjson
import pytest

from extproc import config
from extproc.exchange import Exchange, Gateway
from extproc.observe.budgets import Budgets, RedisStore, SqliteStore, open_store, today
from extproc.responses import UsageMeter
from tests.mock_providers import free_port


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
                RedisStore(url).used("probe", today())
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def test_sqlite_store_adds_up_per_provider_and_day(tmp_path: Path) -> None:
    store = open_store(str(tmp_path / "b.sqlite"))
    assert isinstance(store, SqliteStore)
    store.add("gpt", "2026-11-25", 10)
    store.add("gpt", "2026-11-25", 5)
    store.add("gpt", "2026-11-26", 1)
    assert store.used("gpt", "2026-11-25") == 15 and store.used("other", "2026-11-25") == 0
    assert SqliteStore(str(tmp_path / "b.sqlite")).used("gpt", "2026-11-26") == 1  # another worker sees it


def test_redis_store_is_shared_by_every_client(redis_url: str) -> None:
    a, b = open_store(redis_url), open_store(redis_url)
    a.add("gpt", "2026-11-25", 7)
    b.add("gpt", "2026-11-25", 3)
    assert a.used("gpt", "2026-11-25") == 10


def test_a_spent_budget_says_why_and_unbudgeted_providers_are_never_spent(tmp_path: Path) -> None:
    budgets = Budgets(config.BudgetsConfig(store=str(tmp_path / "b.sqlite"), daily_tokens={"gpt": 100}))
    assert budgets.spent("gpt") is None
    budgets.charge("gpt", 60)
    budgets.charge("anthropic", 10_000)  # not budgeted: not counted
    assert budgets.spent("gpt") is None
    budgets.charge("gpt", 40)
    assert "daily token budget of provider 'gpt' is spent (100 of 100 tokens)" in budgets.spent("gpt")
    assert budgets.spent("anthropic") is None


def test_an_unreachable_store_fails_open() -> None:
    budgets = Budgets(config.BudgetsConfig(store=f"redis://127.0.0.1:{free_port()}/0", daily_tokens={"gpt": 1}))
    budgets.charge("gpt", 10)
    assert budgets.spent("gpt") is None


def test_budget_names_must_be_configured_providers() -> None:
    with pytest.raises(config.ConfigError, match="budgets.daily_tokens.gtp: unknown provider 'gtp'"):
        config.parse({"budgets": {"daily_tokens": {"gtp": 5}}}, env={})


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
    meter = UsageMeter()
    mode = meter.on_headers(200, {"content-type": "text/event-stream", "content-encoding": "gzip"})
    assert mode.response_body_mode == "STREAMED" and not mode.remove_headers
    raw = gzip.compress(ANTHROPIC_SSE)
    replies = [meter.on_body(raw[i:i + 17], i + 17 >= len(raw)) for i in range(0, len(raw), 17)]
    assert all(r.body is None and not r.set_headers for r in replies)  # the client gets the provider's bytes
    assert meter.usage == {"input": 26, "output": 7, "cache_read": 5}  # input includes the cache reads


def test_the_meter_counts_a_json_response_and_ignores_errors() -> None:
    meter = UsageMeter()
    meter.on_headers(200, {"content-type": "application/json"})
    meter.on_body(orjson.dumps({"usage": {"prompt_tokens": 30, "completion_tokens": 9}}), True)
    assert meter.usage == {"input": 30, "output": 9}
    failed = UsageMeter()
    assert failed.on_headers(529, {"content-type": "application/json"}).response_body_mode is None


def test_the_meter_counts_a_passthrough_responses_api_stream() -> None:
    meter = UsageMeter()
    meter.on_headers(200, {"content-type": "text/event-stream"})
    usage = {"input_tokens": 40, "input_tokens_details": {"cached_tokens": 8}, "output_tokens": 11, "total_tokens": 51}
    meter.on_body(b'event: response.created\ndata: {"type":"response.created","response":{"usage":null}}\n\n'
                  b'event: response.completed\ndata: ' + orjson.dumps(
                      {"type": "response.completed", "response": {"id": "resp_1", "usage": usage}}) + b"\n\n", True)
    assert meter.usage == {"input": 40, "output": 11, "cache_read": 8}


def test_a_spent_provider_is_skipped_for_its_fallback_and_alone_it_is_a_429(tmp_path: Path) -> None:
    cfg = config.parse({
        "providers": {
            "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com", "auth": "passthrough"},
            "gpt": {"type": "openai", "base_url": "https://api.openai.com/v1", "api_key_env": "K", "model": "g"},
        },
        "routing": {"rules": [{"model": "claude-*", "provider": "anthropic", "fallbacks": ["gpt"]}]},
        "budgets": {"store": str(tmp_path / "b.sqlite"), "daily_tokens": {"anthropic": 10, "gpt": 10}},
    }, env={})
    gw = Gateway(cfg)
    gw.budgets.charge("anthropic", 10)

    def send(model: str):
        ex = Exchange(gw)
        ex.on_request_headers({":method": "POST", ":path": "/v1/messages"}, False)
        return ex.on_request_body(orjson.dumps({"model": model, "max_tokens": 5,
                                                "messages": [{"role": "user", "content": "hi"}]}))

    assert send("claude-x").set_headers["x-lunaroute-cluster"] == "provider_gpt"
    gw.budgets.charge("gpt", 10)
    reply = send("claude-x")
    assert reply.immediate.status == 429
    assert orjson.loads(reply.immediate.body)["error"]["type"] == "rate_limit_error"
