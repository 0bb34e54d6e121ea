"""Budgets through the real Envoy: usage of an untranslated stream is counted on the way past, a spent
budget is a 429 in the client's dialect naming it, two gateways sharing a real Redis hold one budget
between them, and a Redis that stops mid-run stalls nothing.

Fast-path requests are charged after the response and refused by Envoy once the workers have told it
the budget is spent (they log `spent budgets refused by Envoy: …` when they do)."""

from __future__ import annotations

import threading
import time

import anthropic
import openai
import pytest

from extproc.observe.budgets import SqliteStore
from tests.conftest import Gateway, standard_config

pytestmark = pytest.mark.e2e

ALICE = "lr-test-gateway-key-alice-0123456789"


def told_envoy(gw: Gateway, scope: str) -> None:
    """Until the gateway's workers have written `scope` (key/provider) into Envoy's spent file."""
    for _ in range(100):
        if f"spent budgets refused by Envoy: {scope}" in gw.log():
            return
        time.sleep(0.1)
    raise AssertionError(f"the workers never told Envoy that {scope} is spent:\n{gw.log()[-3000:]}")


def test_a_spent_daily_token_budget_answers_429_after_the_stream_that_spent_it(tmp_path, anthropic_mock,
                                                                               openai_mock) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["budgets"] = {"store": str(tmp_path / "budgets.sqlite"), "daily_tokens": {"anthropic": 30}}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    try:
        client = anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-user", max_retries=0)
        with client.messages.stream(model="claude-x", max_tokens=5,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            assert "".join(stream.text_stream) == "Hello from mock Anthropic"  # untouched passthrough
        key = f"lunaroute:budget:daily_tokens.anthropic:provider=anthropic:{time.strftime('%Y-%m-%d', time.gmtime())}"
        store, deadline = SqliteStore(str(tmp_path / "budgets.sqlite")), time.monotonic() + 5
        while store.used(key) != 33 and time.monotonic() < deadline:
            time.sleep(0.05)  # the settling thread writes the usage
        told_envoy(gw, "-/anthropic")
        time.sleep(0.2)  # Envoy reloads the file it watches
        with pytest.raises(anthropic.RateLimitError) as err:  # 21 + 5 cached + 7 output > 30
            client.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert "the budget 'daily_tokens.anthropic' is spent (33 of 30 tokens this day)" in str(err.value)
        assert len(anthropic_mock.requests) == 1
    finally:
        gw.stop()


def test_a_key_budget_holds_across_two_gateways_sharing_redis(tmp_path, anthropic_mock, openai_mock,
                                                              redis_server) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["access"] = {"keys": [{"name": "alice", "key_env": "LR_TEST_ALICE"}]}
    # one mock answer costs $0.0001695 at claude-sonnet-4's price: the first request spends the budget
    cfg["budgets"] = {"store": redis_server.url, "limits": [{"name": "alice-daily", "key": "alice", "usd": 0.0001}]}
    env = {"LR_TEST_OPENAI_KEY": "k", "LR_TEST_ALICE": ALICE}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, second = Gateway(tmp_path / "a", cfg, workers=1), Gateway(tmp_path / "b", cfg, workers=1)
    first.start(env=env)
    try:
        second.start(env=env)
        claude = anthropic.Anthropic(base_url=first.url, api_key=ALICE, max_retries=0)
        with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=5,
                                    messages=[{"role": "user", "content": "hi"}]) as stream:
            assert "".join(stream.text_stream) == "Hello from mock Anthropic"
        day = time.strftime("%Y-%m-%d", time.gmtime())
        key = f"lunaroute:budget:alice-daily:key=alice:{day}"
        spent = (21 * 3 + 5 * 0.3 + 7 * 15) / 1e6
        deadline = time.monotonic() + 5
        while float(redis_server.client.get(key) or 0) != pytest.approx(spent) and time.monotonic() < deadline:
            time.sleep(0.05)  # the reservation, then the settlement by the first gateway's thread
        assert float(redis_server.client.get(key)) == pytest.approx(spent)
        told_envoy(second, "alice/anthropic")  # the second gateway's workers read the shared store
        time.sleep(0.2)  # Envoy reloads the file it watches

        with pytest.raises(anthropic.RateLimitError) as err:
            anthropic.Anthropic(base_url=second.url, api_key=ALICE, max_retries=0).messages.create(
                model="claude-sonnet-4-5", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        assert "the budget 'alice-daily' is spent ($0.0002 of $0.0001 this day); it resets at " in str(err.value)
        assert err.value.response.headers["retry-after"].isdigit()
        with pytest.raises(openai.RateLimitError) as chat_err:
            openai.OpenAI(base_url=second.url + "/v1", api_key=ALICE, max_retries=0).chat.completions.create(
                model="claude-sonnet-4-5", messages=[{"role": "user", "content": "hi"}])
        assert "alice-daily" in str(chat_err.value)
        assert len(anthropic_mock.requests) == 1
        for _ in range(100):  # Envoy's refusal is counted from its access log, after the response
            status, _, text = second.get("/metrics")
            if b'lunaroute_budget_rejections_total{budget="alice-daily"} 2.0' in text:
                break
            time.sleep(0.1)
        assert b'lunaroute_budget_rejections_total{budget="alice-daily"} 2.0' in text
        for where, blob in (("log a", first.log()), ("log b", second.log()), ("metrics", text.decode())):
            assert ALICE not in blob, where
    finally:
        second.stop()
        first.stop()


def test_redis_stopped_mid_run_stalls_no_stream_and_new_requests_fail_open(tmp_path, anthropic_mock, openai_mock,
                                                                           redis_server) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["budgets"] = {"store": redis_server.url, "limits": [{"name": "all", "provider": "*", "tokens": 10_000_000}]}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    anthropic_mock.pause_s = 0.25  # each stream takes a couple of seconds
    client = anthropic.Anthropic(base_url=gw.url, api_key="sk-ant-user", max_retries=0, timeout=20)
    results: list[str] = []

    def stream() -> None:
        with client.messages.stream(model="claude-x", max_tokens=5,
                                    messages=[{"role": "user", "content": "hi"}]) as s:
            results.append("".join(s.text_stream))

    try:
        threads = [threading.Thread(target=stream) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(0.5)  # the streams are under way, their reservations taken
        redis_server.stop()
        anthropic_mock.pause_s = 0.002
        for _ in range(5):  # each waits at most budgets.timeout_ms for the store, then fails open
            reply = client.messages.create(model="claude-x", max_tokens=5,
                                           messages=[{"role": "user", "content": "hi"}])
            assert reply.content[0].text == "Hello from mock Anthropic"
        for t in threads:
            t.join(20)
        assert results == ["Hello from mock Anthropic"] * 4
        _, _, text = gw.get("/metrics")
        assert b"lunaroute_budget_store_errors_total" in text
    finally:
        anthropic_mock.pause_s = 0.002
        gw.stop()


def test_an_openai_stream_without_include_usage_is_charged_and_the_client_gets_no_usage_chunk(
        tmp_path, anthropic_mock, openai_mock) -> None:
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["default_provider"] = "gpt"
    cfg["budgets"] = {"store": str(tmp_path / "budgets.sqlite"),
                      "limits": [{"name": "gpt-tokens", "provider": "gpt", "tokens": 1_000_000}]}
    gw = Gateway(tmp_path, cfg, workers=1).start(env={"LR_TEST_OPENAI_KEY": "k"})
    try:
        chat = openai.OpenAI(base_url=gw.url + "/v1", api_key="any", max_retries=0)
        chunks = list(chat.chat.completions.create(model="gpt-mock", stream=True,
                                                   messages=[{"role": "user", "content": "hi"}]))
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from mock OpenAI"
        assert all(c.choices and c.usage is None for c in chunks)  # as the client asked: no usage chunk
        assert openai_mock.requests[-1].json()["stream_options"] == {"include_usage": True}  # asked upstream
        with_usage = list(chat.chat.completions.create(model="gpt-mock", stream=True,
                                                       stream_options={"include_usage": True},
                                                       messages=[{"role": "user", "content": "hi"}]))
        assert with_usage[-1].usage.total_tokens == 39  # a client that asked keeps it
        key = f"lunaroute:budget:gpt-tokens:provider=gpt:{time.strftime('%Y-%m-%d', time.gmtime())}"
        store = SqliteStore(str(tmp_path / "budgets.sqlite"))
        deadline = time.monotonic() + 5
        while store.used(key) != 78 and time.monotonic() < deadline:  # both reservations settled
            time.sleep(0.05)
        assert store.used(key) == 78  # 30 + 9 per request, both charged
    finally:
        gw.stop()
