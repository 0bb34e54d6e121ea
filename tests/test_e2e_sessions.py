"""Session recording through the real Envoy with both SDKs, read back with `lunaroute sessions`: the
records hold what was sent and what came back, usage and cost as the mocks reported them, and never
a key — not in the store, not in the logs, not in the metrics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import anthropic
import openai
import orjson
import pytest

from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config
from tests.test_e2e_faults import _workers

pytestmark = pytest.mark.e2e

GATEWAY_KEY = "lr-test-gateway-key-alice-0123456789"
PROMPT = "hello recorder, mail jane.doe@example.com, card 4111 1111 1111 1111"


def metric_samples(text: str):
    """Sum of a metric's samples with these labels (any others; all workers)."""
    def total(name: str, **labels: str) -> float:
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith((name + "{", name + " ")) and all(w in line for w in wanted))
    return total


def sessions_cli(gw: Gateway, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "extproc.cli", "sessions", *args, "--config", str(gw.config_path)],
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def recorded(tmp_path, anthropic_mock, openai_mock):
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["recording"] = {"enabled": True, "dir": str(tmp_path / "sessions")}
    cfg["pricing"] = {"gpt-mock*": {"input_per_mtok": 2, "output_per_mtok": 8, "cache_read_per_mtok": 0.5}}
    cfg["access"] = {"keys": [{"name": "alice", "key_env": "LR_TEST_GW_KEY"}]}
    gw = Gateway(tmp_path, cfg, workers=2).start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY,
                                                       "LR_TEST_GW_KEY": GATEWAY_KEY})
    yield gw
    gw.stop()


def test_a_session_is_recorded_and_shown_as_sent_with_usage_and_cost(recorded: Gateway, anthropic_mock) -> None:
    gw = recorded
    claude = anthropic.Anthropic(base_url=gw.url, api_key=GATEWAY_KEY, max_retries=0,
                                 default_headers={"x-claude-code-session-id": "e2e-session-1"})
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=50,
                                messages=[{"role": "user", "content": PROMPT}]) as stream:
        assert "".join(stream.text_stream) == "Hello from mock Anthropic"
    assert anthropic_mock.requests[-1].json()["messages"][0]["content"] == PROMPT  # pii.redact_requests is off
    marked = [{"role": "user", "content": "[LUNAROUTE:gpt] translate me"}]
    assert claude.messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=marked).content[0].text == (
        "Hello from mock OpenAI")
    chat = openai.OpenAI(base_url=gw.url + "/v1", api_key=GATEWAY_KEY, max_retries=0,
                         default_headers={"x-session-id": "e2e-session-2"})
    parts = chat.chat.completions.create(model="claude-sonnet-4-5", stream=True,
                                         messages=[{"role": "user", "content": "stream me"}])
    assert "".join(c.choices[0].delta.content or "" for c in parts if c.choices) == "Hello from mock Anthropic"
    deadline = time.monotonic() + 5
    while True:  # a stream's end reaches the worker just after the client has its last event
        status, _, metrics_text = gw.get("/metrics")
        done = metric_samples(metrics_text.decode())("gen_ai_client_token_usage_count", gen_ai_token_type="input")
        if done == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200
    assert gw.stop() == 0  # SIGTERM flushes the writers

    shown = sessions_cli(gw, "show", "e2e-session-1", "--json")
    assert shown.returncode == 0, shown.stderr
    first, second = orjson.loads(shown.stdout)
    # recorded as sent, PII masked (pii.mode's default); the provider got the prompt untouched
    assert first["request"]["messages"] == [{"role": "user", "content": "hello recorder, mail [EMAIL], card "
                                                                        "[CREDIT_CARD]"}]
    assert first["provider_request"] is None  # passthrough: the provider got the client's bytes
    assert first["response"]["content"] == [{"type": "text", "text": "Hello from mock Anthropic"}]
    assert (first["provider"], first["key"], first["status"], first["outcome"], first["stream"]) == (
        "anthropic", "alice", 200, "ok", True)
    assert (first["input"], first["output"], first["cache_read"]) == (26, 7, 5)  # the mock's 21 + 5 cached, 7
    assert first["cost_usd"] == pytest.approx((21 * 3 + 5 * 0.30 + 7 * 15) / 1e6)  # shipped claude-sonnet-4 price
    assert first["ttft_ms"] > 0 and first["client_ip"] == "127.0.0.0/24"

    assert second["request"]["messages"] == marked
    assert second["provider_request"]["model"] == "gpt-mock"
    assert second["provider_request"]["messages"][-1]["content"] == "translate me"  # marker stripped
    assert second["response"]["content"][0]["text"] == "Hello from mock OpenAI"  # in the client's dialect
    assert (second["provider"], second["reason"], second["input"], second["output"], second["cache_read"]) == (
        "gpt", "marker", 30, 9, 10)
    assert second["cost_usd"] == pytest.approx((20 * 2 + 10 * 0.5 + 9 * 8) / 1e6)  # the configured price

    (chat_turn,) = orjson.loads(sessions_cli(gw, "show", "e2e-session-2", "--json").stdout)
    assert chat_turn["client"] == "openai" and chat_turn["response"]["choices"][0]["message"]["content"] == (
        "Hello from mock Anthropic")
    assert (chat_turn["outcome"], chat_turn["input"], chat_turn["output"]) == ("ok", 26, 7)

    listed = {s["session"]: s for s in orjson.loads(sessions_cli(gw, "list", "--json").stdout)}
    assert listed["e2e-session-1"]["requests"] == 2 and listed["e2e-session-1"]["providers"] == ["anthropic", "gpt"]
    assert listed["e2e-session-1"]["cost_usd"] == pytest.approx(first["cost_usd"] + second["cost_usd"])
    (by_key,) = orjson.loads(sessions_cli(gw, "stats", "--by", "key", "--json").stdout)
    assert (by_key["key"], by_key["requests"]) == ("alice", 3)

    table = sessions_cli(gw, "show", "e2e-session-1")
    assert table.returncode == 0 and "hello recorder" in table.stdout and "Hello from mock OpenAI" in table.stdout
    assert "jane.doe" not in table.stdout
    exported = sessions_cli(gw, "export", "e2e-session-1").stdout
    assert len(exported.splitlines()) == 2

    metric = metric_samples(metrics_text.decode())  # one worker answers for both
    assert metric("gen_ai_client_token_usage_count", gen_ai_token_type="input") == 3
    assert metric("gen_ai_client_token_usage_sum", gen_ai_token_type="input") == 26 + 30 + 26
    assert metric("gen_ai_client_token_usage_sum", gen_ai_token_type="output") == 7 + 9 + 7
    assert metric("lunaroute_cache_tokens_total", kind="read") == 5 + 10 + 5
    assert metric("gen_ai_server_time_to_first_token_count") == 3
    assert metric("lunaroute_gateway_overhead_seconds_count") == 3
    assert metric("lunaroute_cost_usd_total") == pytest.approx(first["cost_usd"] + second["cost_usd"]
                                                               + chat_turn["cost_usd"])

    for where, text in (("log", gw.log()), ("metrics", metrics_text.decode()), ("export", exported),
                        ("list", sessions_cli(gw, "list").stdout)):
        assert GATEWAY_KEY not in text and TEST_OPENAI_KEY not in text and "jane.doe" not in text, where
    for path in (gw.workdir / "sessions").iterdir():  # the store, its WAL
        raw = path.read_bytes()
        assert GATEWAY_KEY.encode() not in raw and TEST_OPENAI_KEY.encode() not in raw and b"jane.doe" not in raw


def test_kill_9_of_a_worker_loses_at_most_the_records_in_flight(tmp_path, anthropic_mock, openai_mock) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["recording"] = {"enabled": True, "dir": str(tmp_path / "sessions")}
    gw = Gateway(tmp_path, cfg, workers=2).start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY})
    ok: list[int] = []
    stop = threading.Event()
    clients = 4

    def client(n: int) -> None:
        body = orjson.dumps({"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
        while not stop.is_set():
            status, _, _ = gw.get("/v1/messages", method="POST", body=body, headers={
                "content-type": "application/json", "x-api-key": "sk-ant-user", "x-session-id": "kill-9"})
            if status == 200:
                ok.append(n)
            time.sleep(0.02)  # a steady load the writer keeps up with (a flood fills its bounded queue, by design)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    try:
        for t in threads:
            t.start()
        time.sleep(1.0)
        victim = next(iter(_workers(gw)))
        os.kill(victim, signal.SIGKILL)
        time.sleep(1.5)
    finally:
        stop.set()
        for t in threads:
            t.join(15)
        gw.stop()
    (row,) = [s for s in orjson.loads(sessions_cli(gw, "list", "--json").stdout) if s["session"] == "kill-9"]
    assert len(ok) > 20 and len(ok) - clients <= row["requests"] <= len(ok)


def test_pii_split_across_a_streams_deltas_never_reaches_the_store(recorded: Gateway, anthropic_mock) -> None:
    """Issue #23: the provider streams a card number and an address in pieces; each event alone holds
    no whole value, so only the reassembled answer can be redacted, and the raw events are not kept."""
    def sse(kind: str, data: dict) -> bytes:
        return f"event: {kind}\ndata: {orjson.dumps({'type': kind, **data}).decode()}\n\n".encode()

    pieces = ["card 4111 1111", " 1111 1111 and mail jane", ".doe@example.com"]
    anthropic_mock.stream_next([
        sse("message_start", {"message": {"id": "m", "type": "message", "role": "assistant", "model": "claude-x",
                                          "content": [], "usage": {"input_tokens": 5, "output_tokens": 1}}}),
        sse("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        *(sse("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": p}}) for p in pieces),
        sse("content_block_stop", {"index": 0}),
        sse("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9}}),
        sse("message_stop", {})])
    claude = anthropic.Anthropic(base_url=recorded.url, api_key=GATEWAY_KEY, max_retries=0,
                                 default_headers={"x-claude-code-session-id": "split-pii"})
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=50,
                                messages=[{"role": "user", "content": "read it back"}]) as stream:
        assert "".join(stream.text_stream) == "".join(pieces)  # the client gets the answer untouched
    assert recorded.stop() == 0  # SIGTERM flushes the writers
    (turn,) = orjson.loads(sessions_cli(recorded, "show", "split-pii", "--json").stdout)
    assert turn["response"]["content"][0]["text"] == "card [CREDIT_CARD] and mail [EMAIL]"
    assert turn["events"] is None and turn["events_withheld"] == "pii"
    for path in (recorded.workdir / "sessions").iterdir():
        raw = path.read_bytes()
        assert b"4111" not in raw and b"jane" not in raw, path.name
