"""Every request metered, the fast path included, through the real Envoy and workers.

The fast path never reaches a worker while a request is in flight (no `route` line in the log); Envoy
reads its usage and ships it in its access log, and the workers settle it. After a mixed run the
metrics equal what the mock providers reported, per provider, model and gateway key; a key's budget
spent through fast-path traffic is then refused by Envoy itself.
"""

from __future__ import annotations

import time

import anthropic
import openai
import pytest

from tests.conftest import TEST_OPENAI_KEY, Gateway, standard_config
from tests.test_e2e_sessions import metric_samples

pytestmark = pytest.mark.e2e

ALICE = "lr-test-metering-alice-0123456789"
BOB = "lr-test-metering-bob-0123456789ab"
MSG = [{"role": "user", "content": "hi"}]


def _routed_by_python(gw: Gateway) -> int:
    return gw.log().count("INFO lunaroute: route ")


def _metrics_until(gw: Gateway, done, tries: int = 100):  # noqa: ANN001, ANN202 - a predicate on the totals
    """/metrics once `done(total)` holds (the access log is flushed every second), bounded."""
    total = metric_samples(gw.get("/metrics")[2].decode())
    for _ in range(tries):
        if done(total):
            break
        time.sleep(0.1)
        total = metric_samples(gw.get("/metrics")[2].decode())
    return total


@pytest.fixture(scope="module")
def metered(tmp_path_factory, anthropic_mock, openai_mock):
    cfg = standard_config(anthropic_mock.base_url, openai_mock.base_url)
    cfg["routing"] = {"rules": [{"model": "gpt-*", "provider": "gpt"},
                                {"model": "chain-*", "provider": "anthropic", "fallbacks": ["gpt"]}]}
    cfg["access"] = {"keys": [{"name": "alice", "key_env": "LR_TEST_ALICE"},
                              {"name": "bob", "key_env": "LR_TEST_BOB"}]}
    workdir = tmp_path_factory.mktemp("metered")
    # bob's budget on Anthropic: 100 tokens a day, spent by three fast-path answers of its mock (33 each).
    # (A budget on the Chat Completions provider would send chat to Python, which asks for stream usage.)
    cfg["budgets"] = {"store": str(workdir / "budgets.sqlite"),
                      "limits": [{"name": "bob-daily", "key": "bob", "provider": "anthropic", "tokens": 100}]}
    gw = Gateway(workdir, cfg, workers=2)
    gw.start(env={"LR_TEST_OPENAI_KEY": TEST_OPENAI_KEY, "LR_TEST_ALICE": ALICE, "LR_TEST_BOB": BOB})
    yield gw
    gw.stop()


def test_a_mixed_run_is_counted_once_with_the_mocks_usage(metered, anthropic_mock, openai_mock) -> None:
    claude = anthropic.Anthropic(base_url=metered.url, api_key=ALICE, max_retries=0)
    gpt = openai.OpenAI(base_url=metered.url + "/v1", api_key=ALICE, max_retries=0)
    python_before = _routed_by_python(metered)
    # fast path: Anthropic JSON and SSE (21 input + 5 cache reads, 7 output each), OpenAI JSON and SSE
    # with include_usage (30 prompt incl. 10 cached, 9 completion each)
    claude.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=MSG)
    with claude.messages.stream(model="claude-sonnet-4-5", max_tokens=5, messages=MSG) as stream:
        assert "".join(stream.text_stream) == "Hello from mock Anthropic"
    gpt.chat.completions.create(model="gpt-mock", messages=MSG)
    chunks = list(gpt.chat.completions.create(model="gpt-mock", messages=MSG, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[-1].usage is not None
    assert _routed_by_python(metered) == python_before  # none of them reached a worker
    # the Python path: a marker (a decision), translated to the OpenAI mock
    claude.messages.create(model="gpt-mock", max_tokens=5,
                           messages=[{"role": "user", "content": "[LUNAROUTE:gpt] hi"}])
    assert _routed_by_python(metered) == python_before + 1
    # a fallback chain: Anthropic is overloaded, the OpenAI mock answers (translated)
    anthropic_mock.fail_next(529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
    claude.messages.create(model="chain-x", max_tokens=5, messages=MSG)
    assert _routed_by_python(metered) == python_before + 2

    total = _metrics_until(metered, lambda t: t("lunaroute_requests_total", path="fast") >= 4)
    assert total("lunaroute_requests_total", path="fast", provider="anthropic", route="messages") == 2
    assert total("lunaroute_requests_total", path="fast", provider="gpt", route="chat") == 2
    assert total("lunaroute_requests_total", path="python", provider="gpt", route="messages") == 1
    assert total("lunaroute_responses_total", path="fast", provider="anthropic", status="200") == 2
    assert total("lunaroute_tokens_total", provider="anthropic", direction="input") == 2 * 26
    assert total("lunaroute_tokens_total", provider="anthropic", direction="output") == 2 * 7
    assert total("lunaroute_cache_tokens_total", provider="anthropic", kind="read") == 2 * 5
    # gpt: two fast-path answers, the marker-routed one and the chain's
    assert total("lunaroute_tokens_total", provider="gpt", direction="input") == 4 * 30
    assert total("lunaroute_tokens_total", provider="gpt", direction="output") == 4 * 9
    assert total("lunaroute_cache_tokens_total", provider="gpt", kind="read") == 4 * 10
    assert total("lunaroute_key_tokens_total", key="alice", provider="anthropic", model="claude-sonnet-4-5",
                 kind="input") == 2 * 26
    assert total("lunaroute_key_tokens_total", key="alice", provider="gpt", model="gpt-mock",
                 kind="output") == 4 * 9  # by key too, fast path and Python path alike
    # cost at the default price of claude-sonnet-4*: $3 / $15 per Mtok, cache reads $0.30
    assert total("lunaroute_key_cost_usd_total", key="alice", provider="anthropic") == pytest.approx(
        2 * (21 * 3 + 5 * 0.3 + 7 * 15) / 1e6)
    assert total("gen_ai_client_token_usage_count", gen_ai_provider_name="anthropic",
                 gen_ai_request_model="claude-sonnet-4-5", gen_ai_token_type="output") == 2
    assert total("gen_ai_server_time_to_first_token_count", gen_ai_provider_name="gpt") >= 2
    assert "lunaroute_fast_path_requests" not in metered.get("/metrics")[2].decode()


def test_a_budget_spent_on_the_fast_path_is_refused_by_envoy(metered, anthropic_mock) -> None:
    claude = anthropic.Anthropic(base_url=metered.url, api_key=BOB, max_retries=0)
    python_before = _routed_by_python(metered)
    for _ in range(3):  # 3 × 33 tokens: under 100 until the third has been charged
        claude.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=MSG)
    served = len(anthropic_mock.requests)
    refused = None
    for _ in range(100):  # charged after the response: Envoy learns within the log's flush and a pass
        try:
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=MSG)
        except anthropic.RateLimitError as err:
            refused = err
            break
        time.sleep(0.1)
    assert refused is not None
    overrun = len(anthropic_mock.requests) - served  # requests admitted before Envoy knew
    assert "the budget 'bob-daily' is spent" in str(refused) and "tokens this day" in str(refused)
    assert refused.response.headers["retry-after"].isdigit()
    assert refused.body["type"] == "error" and refused.body["error"]["type"] == "rate_limit_error"
    for _ in range(3):  # and stays refused, by Envoy: no worker sees them, the mock neither
        with pytest.raises(anthropic.RateLimitError):
            claude.messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=MSG)
    assert len(anthropic_mock.requests) == served + overrun
    assert _routed_by_python(metered) == python_before
    # the other key is not concerned
    anthropic.Anthropic(base_url=metered.url, api_key=ALICE, max_retries=0).messages.create(
        model="claude-sonnet-4-5", max_tokens=5, messages=MSG)
